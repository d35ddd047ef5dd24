"""Shared fixtures: the data root (``$LANDSCAPE_DATA``, else ../shared/data) and temp artefacts."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _data_root() -> Path | None:
    for cand in (os.environ.get("LANDSCAPE_DATA"), REPO.parent / "shared" / "data", REPO / "data"):
        if cand and (Path(cand) / "FashionMNIST" / "raw").exists():
            return Path(cand).resolve()
    return None


@pytest.fixture(scope="session")
def data_root() -> Path:
    root = _data_root()
    if root is None:
        pytest.fail("no dataset folder: set LANDSCAPE_DATA to a folder with MNIST and FashionMNIST "
                    "(torchvision layout)")
    return root


@pytest.fixture()
def artefacts(tmp_path, monkeypatch) -> Path:
    """Point the artefact store at a fresh temporary folder."""
    root = tmp_path / "artefacts"
    monkeypatch.setenv("LANDSCAPE_ARTEFACTS", str(root))
    return root
