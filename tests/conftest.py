"""Shared fixtures: the data root (``$LANDSCAPE_DATA``, else ../shared/data) and temp artefacts."""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]

# A relative $LANDSCAPE_DATA means the folder relative to where pytest was started; made absolute
# once, here, because tests hand the environment to processes that run elsewhere (a copy of the
# repository), where the relative path would name another folder.
if os.environ.get("LANDSCAPE_DATA"):
    os.environ["LANDSCAPE_DATA"] = str(Path(os.environ["LANDSCAPE_DATA"]).expanduser().resolve())


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


@pytest.fixture(scope="module")
def one_thread():
    """Tiny ops: one thread is faster, and much faster when the host's 2 cores are shared."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def copy_repo(dst: Path) -> Path:
    """Copy the repository's tracked and new (not ignored) files to ``dst``, symlinks kept."""
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO,
                           capture_output=True, text=True, check=True).stdout.split("\n")
    for f in filter(None, files):
        src = REPO / f
        if src.is_symlink():
            (dst / f).parent.mkdir(parents=True, exist_ok=True)
            os.symlink(os.readlink(src), dst / f)
        elif src.is_file():
            (dst / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst / f)
    return dst
