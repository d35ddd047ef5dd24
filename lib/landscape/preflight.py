"""Checks the workflow runs before it builds its graph, so that a bad study name, a malformed
configuration or missing data stops it with one line and nothing written."""
from __future__ import annotations

import sys
from pathlib import Path

from .config import ConfigError, Study, load_study
from .data import DataNotFound, data_root, load, raw_paths

__all__ = ["files_present", "check", "check_or_exit"]


def files_present(name: str, root) -> bool:
    """Whether the raw files torchvision reads for ``name`` exist under ``root`` (no loading)."""
    return all(p.exists() for p in raw_paths(name, Path(root)))


def check(studies: list[str], profile: str, root=None) -> dict[str, Study]:
    """Load and validate ``studies`` under ``profile`` and make sure their datasets are present
    (downloading them when missing and a network exists). Raises ConfigError or DataNotFound."""
    loaded = {s: load_study(s, profile) for s in studies}
    root = data_root(root)
    for name in sorted({r.train.dataset for st in loaded.values() for r in st.runs}):
        if not files_present(name, root):
            load(name, train=True, root=root)  # downloads, or raises DataNotFound in one line
            load(name, train=False, root=root)
    return loaded


def check_or_exit(studies: list[str], profile: str, root=None) -> dict[str, Study]:
    """:func:`check`, printing ``error: …`` and exiting with status 2 on a refusal."""
    try:
        return check(studies, profile, root)
    except (ConfigError, DataNotFound, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2)
