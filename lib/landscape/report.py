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
from .config import Study, _repo_root
from .store import CorruptArtefact, read_json, write_json

__all__ = ["glue", "Plain", "check_parameters", "divergence_note", "save_figure", "provenance",
           "current_provenance", "caption", "glue_provenance", "pool_provenance",
           "write_artefact", "read_artefact", "missing_probes", "ensure_probes"]

# Provenance of what the running notebook has measured (``provenance``) or read (``read_artefact``):
# pooled by ``current_provenance`` and attached to every figure and artefact it writes afterwards.
_SOURCES: list[dict] = []


def glue(key: str, value: Any, display: bool = False) -> None:
    """``myst_nb.glue`` when available (the book build), else a no-op (e.g. on Colab)."""
    try:
        from myst_nb import glue as _glue
    except ImportError:  # pragma: no cover - Colab lacks myst_nb
        return
    _glue(key, value, display=display)


def save_figure(fig, out_dir: str | Path, name: str, key: str | None = None) -> Path:
    """Save ``fig`` as ``<out_dir>/<name>.png`` (for ``{figure}`` in the book) and glue it.

    The provenance of what the notebook measured or read so far (:func:`current_provenance`) goes
    into the image twice: a one-line caption under the axes (:func:`caption`) and, in full, the
    PNG's ``landscape:provenance`` text chunk.
    """
    import json

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name}.png"
    prov = current_provenance()
    meta = {}
    if prov:
        import textwrap

        # wrapped to the figure's width (about 20 characters of 6-pt text per inch), so that a
        # long line does not widen the saved image
        text = textwrap.fill(caption(prov), width=max(40, int(fig.get_figwidth() * 20)))
        box = fig.get_tightbbox(fig.canvas.get_renderer())  # inches; below every label
        fig.text(box.x0 / fig.get_figwidth(), (box.y0 - 0.05) / fig.get_figheight(), text,
                 fontsize=6, color="0.35", ha="left", va="top", transform=fig.transFigure)
        meta = {"landscape:provenance": json.dumps(prov, sort_keys=True)}
    fig.savefig(path, dpi=110, bbox_inches="tight", metadata=meta)
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
    """Where a number came from: configuration hashes, commit, versions, subset sizes, BN mode.

    Also registered as a source of the running notebook (see :func:`current_provenance`).
    """
    import numpy
    import torch

    prov = {
        "study": study.name, "profile": study.profile, "keys": [r.key for r in runs],
        "git_commit": _git_commit(), "landscape": __version__, "torch": torch.__version__,
        "numpy": numpy.__version__, "python": platform.python_version(),
        "eval_subset": study.budget.eval_subset,
        "hessian_subset": study.budget.hessian_subset or study.budget.eval_subset,
        "bn_mode": study.probes.bn_mode,
        # the one BN policy of every probe (see notebooks/q2_landscape.ipynb and subsets.py)
        "bn_stats": "recomputed on the probe subset where not the weights' own",
        "stop_loss": runs[0].train.stop_loss if runs else None,
        "max_epochs": runs[0].train.epochs if runs else None, **extra,
    }
    _SOURCES.append(prov)
    return prov


def _values(provs: list[dict], key: str) -> list:
    out = []
    for p in provs:
        v = p.get(key)
        for x in (v if isinstance(v, list) else [v]):
            if x is not None and x not in out:
                out.append(x)
    return out


def pool_provenance(provs: list[dict]) -> dict:
    """One provenance record for numbers pooled over several sources (studies, configurations).

    A field on which all sources agree keeps its value; otherwise it becomes the list of the
    distinct values. ``keys`` (the run hashes) is always the union, in order of appearance.
    """
    provs = [p for p in provs if p]
    if not provs:
        return {}
    fields = []
    for p in provs:
        fields += [k for k in p if k not in fields]
    out: dict = {}
    for k in fields:
        vals = _values(provs, k)
        out[k] = vals if (k in ("keys", "studies") or len(vals) != 1) else vals[0]
    if "study" in out:
        out["studies"] = _values(provs, "study")
        del out["study"]
    return out


def current_provenance() -> dict:
    """The pooled provenance of everything this notebook measured or read so far."""
    return pool_provenance(_SOURCES)


def _short(v: Any) -> str:
    return "/".join(str(x) for x in v) if isinstance(v, list) else str(v)


def caption(prov: dict, max_keys: int = 6) -> str:
    """A one-line provenance caption: run hashes, commit, versions, subset sizes, BN mode."""
    if not prov:
        return ""
    keys = prov.get("keys", [])
    shown = ", ".join(keys[:max_keys]) + (f" +{len(keys) - max_keys} more" if len(keys) > max_keys else "")
    return (f"runs {shown or 'none'} · commit {_short(prov.get('git_commit'))} · landscape "
            f"{_short(prov.get('landscape'))}, torch {_short(prov.get('torch'))} · profile "
            f"{_short(prov.get('profile'))} · probe subset {_short(prov.get('eval_subset'))} "
            f"(Hessian {_short(prov.get('hessian_subset'))}) of each run's own training examples · "
            + (f"trained to loss ≤ {_short(prov.get('stop_loss'))} or {_short(prov.get('max_epochs'))} "
               "epochs · " if prov.get("stop_loss") is not None else "")
            + f"BN {_short(prov.get('bn_mode'))} mode, running statistics "
            + ("recomputed on the probe subset where not the weights' own" if prov.get("bn_stats")
               else "as trained"))


def glue_provenance(key: str = "provenance") -> str:
    """Glue the caption line of :func:`current_provenance` (for the book page) and return it."""
    text = caption(current_provenance())
    glue(key, Plain(text))
    return text


def write_artefact(out_dir: str | Path, name: str, payload: dict) -> Path:
    """Atomically write a JSON artefact ``<out_dir>/<name>.json`` (checksummed), with the
    notebook's :func:`current_provenance` under ``provenance`` unless the payload has its own."""
    prov = current_provenance()
    if prov and "provenance" not in payload:
        payload = {**payload, "provenance": prov}
    return write_json(Path(out_dir) / f"{name}.json", payload)


def read_artefact(out_dir: str | Path, name: str) -> dict:
    """Read ``<out_dir>/<name>.json``; its ``provenance`` becomes a source of this notebook."""
    payload = read_json(Path(out_dir) / f"{name}.json")
    if isinstance(payload, dict) and isinstance(payload.get("provenance"), dict):
        _SOURCES.append(payload["provenance"])
    return payload


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


def _runs_dir() -> Path:
    return _repo_root() / "book" / "runs"  # where the workflow writes the executed notebooks


def missing_probes(profile: str, studies: list[str] | None = None,
                   runs_dir: str | Path | None = None) -> list[str]:
    """The ``<study>/<config>/probes.json`` artefacts of ``studies`` (None: every study that runs
    under ``profile``) that ``runs_dir`` (default ``<repo>/book/runs``) lacks, holds from another
    profile, or holds unreadable; as paths relative to the repository."""
    from .config import list_studies, load_study

    runs = Path(runs_dir) if runs_dir is not None else _runs_dir()
    out = []
    for name in studies or list_studies(profile=profile):
        for c in load_study(name, profile).configs:
            try:
                ok = read_json(runs / name / c / "probes.json")["provenance"]["profile"] == profile
            except (FileNotFoundError, CorruptArtefact, KeyError, TypeError):
                ok = False
            if not ok:
                out.append(f"book/runs/{name}/{c}/probes.json")
    return out


def ensure_probes(profile: str, studies: list[str] | None = None, data_root: str | None = None,
                  cores: int | None = None) -> Path:
    """Compute the per-configuration artefacts a pooled notebook reads, where they are missing.

    For a notebook opened outside the report's workflow (on Colab, from a fresh clone): runs the
    workflow itself (Snakemake: training, then the probe notebook of each configuration) for
    exactly the missing ``book/runs/<study>/<config>/probes.json`` of ``studies`` under
    ``profile``; trained runs already cached are reused, nothing is computed when nothing is
    missing. Returns ``<repo>/book/runs``, the folder to read them from.

    Raises:
        FileNotFoundError: the package is installed without its repository (no workflow).
        RuntimeError: the workflow failed, or another run of it is in progress in this clone
            (its last lines in the message).
    """
    import os
    import sys

    root = _repo_root()
    snakefile = root / "workflow" / "Snakefile"
    if not snakefile.exists():
        raise FileNotFoundError(f"{snakefile} not found: install the package from a clone of the "
                                "repository (pip install -e .) to compute artefacts")
    todo = missing_probes(profile, studies)
    if not todo:
        return _runs_dir()
    from .data import data_root as resolve_data_root

    cores = cores or os.cpu_count() or 1
    # Absolute, resolved here where it is read: the workflow runs in the repository's folder,
    # where a relative data root (argument, $LANDSCAPE_DATA or ./data) would mean another folder.
    data = str(resolve_data_root(data_root))
    print(f"computing {len(todo)} missing configuration artefacts under profile {profile!r} "
          f"with {cores} cores (training and probes; cached runs are reused) ...", flush=True)
    # Through the launcher (landscape.launch): a stale lock of an interrupted run is recovered,
    # and a run already in progress in this clone is refused instead of raced.
    # --force: a listed artefact is missing or stale (another profile), so it is always redone;
    # --rerun-incomplete: so are the outputs of jobs an interrupted run left half-written;
    # the targets come first: --config takes every word after it
    cmd = [sys.executable, "-m", "landscape", "workflow", "--", *todo, "-s", str(snakefile),
           "--cores", str(cores), "--quiet", "rules", "--force", "--rerun-incomplete",
           "--config", f"profile={profile}"]
    if studies:
        cmd.append(f"studies=[{','.join(studies)}]")
    cmd.append(f"data_root={data}")
    env = dict(os.environ, LANDSCAPE_DATA=data,
               PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    out = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True)
    if out.returncode != 0:
        tail = "\n".join((out.stdout + out.stderr).strip().splitlines()[-15:])
        raise RuntimeError(f"the workflow failed computing the artefacts:\n{tail}")
    return _runs_dir()

