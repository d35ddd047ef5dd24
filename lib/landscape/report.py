"""Glue between the library and the book: evaluation subsets, artefacts, figures and glue.

The research-question notebooks call these so that they stay short: every number they glue and
every figure they save goes through here, with the provenance (configuration hash, git commit,
library versions, subset size, BN mode) attached.
"""
from __future__ import annotations

import functools
import platform
import subprocess
from pathlib import Path
from typing import Any

from . import __version__
from .config import Study
from .data import Batches, load, subset
from .store import read_json, write_json

__all__ = ["eval_data", "glue", "Plain", "check_parameters", "divergence_note", "save_figure", "provenance", "write_artefact", "read_artefact"]


def eval_data(study: Study, data_root=None, split: str = "train", n: int | None = None) -> Batches:
    """The study's fixed evaluation subset: ``n`` (default ``budget.eval_subset``) examples of
    ``split`` drawn with seed 0 — the same for every run and probe, and a smaller ``n`` gives a
    subset of a larger one — in batches of ``budget.eval_batch``."""
    if split not in ("train", "test"):
        raise ValueError(f"split = {split!r} is not one of: train, test")
    data = load(study.dataset, train=(split == "train"), root=data_root)
    return Batches(subset(data, n or study.budget.eval_subset, seed=0), study.budget.eval_batch)


def glue(key: str, value: Any, display: bool = False) -> None:
    """``myst_nb.glue`` when available (the book build), else a no-op (e.g. on Colab)."""
    try:
        from myst_nb import glue as _glue
    except ImportError:  # pragma: no cover - Colab lacks myst_nb
        return
    _glue(key, value, display=display)


def save_figure(fig, out_dir: str | Path, name: str, key: str | None = None) -> Path:
    """Save ``fig`` as ``<out_dir>/<name>.png`` (for ``{figure}`` in the book) and glue it."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name}.png"
    fig.savefig(path, dpi=110, bbox_inches="tight")
    if key:
        glue(key, fig, display=False)
    return path


@functools.lru_cache(maxsize=1)
def _git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], capture_output=True, text=True,
                              cwd=Path(__file__).parent, timeout=10).stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def provenance(study: Study, runs=(), **extra: Any) -> dict:
    """Where a number came from: configuration hashes, commit, versions, subset size, BN mode."""
    import numpy
    import torch

    return {
        "study": study.name, "profile": study.profile, "keys": [r.key for r in runs],
        "git_commit": _git_commit(), "landscape": __version__, "torch": torch.__version__,
        "numpy": numpy.__version__, "python": platform.python_version(),
        "eval_subset": study.budget.eval_subset, "bn_mode": study.probes.bn_mode, **extra,
    }


def write_artefact(out_dir: str | Path, name: str, payload: dict) -> Path:
    """Atomically write a JSON artefact ``<out_dir>/<name>.json`` (checksummed)."""
    return write_json(Path(out_dir) / f"{name}.json", payload)


def read_artefact(out_dir: str | Path, name: str) -> dict:
    return read_json(Path(out_dir) / f"{name}.json")


class Plain:
    """A glued value shown as plain text (``{glue:text}`` of a ``str`` would show its quotes)."""

    def __init__(self, text: Any) -> None:
        self.text = str(text)

    def __repr__(self) -> str:
        return self.text


_PARAM_TYPES = {"study": (str,), "config": (str,), "profile": (str,), "data_root": (str, type(None)),
                "out_dir": (str,), "runs_dir": (str,)}


def check_parameters(**params: Any) -> None:
    """Refuse notebook parameters of the wrong type with one line (papermill passes ``-p`` values
    through YAML, so ``-p seed x`` or ``-p study 3`` arrive with the wrong type)."""
    for name, value in params.items():
        allowed = _PARAM_TYPES.get(name)
        if allowed and not isinstance(value, allowed):
            kinds = " or ".join("None" if t is type(None) else t.__name__ for t in allowed)
            raise TypeError(f"notebook parameter {name} = {value!r} must be {kinds}")


def divergence_note(trained) -> str:
    """One sentence on the runs that diverged (empty when none did)."""
    bad = [t for t in trained if t.diverged]
    if not bad:
        return f"All {len(trained)} runs trained to the end."
    parts = []
    for t in bad:
        o = t.metrics["outcome"]
        parts.append(f"seed {t.run.seed} at epoch {o['epoch']}, step {o['step']} "
                     f"(last finite loss {o['last_finite_loss']:.4g})")
    return (f"{len(bad)} of {len(trained)} runs diverged (NaN/Inf loss): " + "; ".join(parts)
            + ". Their probes are skipped.")
