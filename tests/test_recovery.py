"""The README's commands work as printed: a relative data root.

* A relative ``LANDSCAPE_DATA`` is made absolute where it is read (Makefile, ``ensure_probes``)
  before any process that runs in another folder gets it.
"""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def test_the_makefile_hands_on_an_absolute_data_root(tmp_path):
    """``make test LANDSCAPE_DATA=../shared/data``: the recipe's processes (pytest, which copies
    the repository elsewhere) see the absolute folder, not a path relative to another cwd."""
    show = 'show-data: ; @echo "$$LANDSCAPE_DATA"'
    out = subprocess.run(["make", "-s", "--eval", show, "show-data", "LANDSCAPE_DATA=../shared/data"],
                         cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == os.path.abspath(REPO / ".." / "shared" / "data")
    unset = {k: v for k, v in os.environ.items() if k != "LANDSCAPE_DATA"}
    out = subprocess.run(["make", "-s", "--eval", show, "show-data"], cwd=REPO, env=unset,
                         capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""  # unset stays unset (the default ./data applies)


def test_the_test_suite_exports_an_absolute_data_root():
    """conftest re-exports a relative ``$LANDSCAPE_DATA`` as absolute for the subprocesses."""
    if os.environ.get("LANDSCAPE_DATA"):
        assert Path(os.environ["LANDSCAPE_DATA"]).is_absolute()


@pytest.mark.parametrize("how", ["argument", "environment", "default"])
def test_ensure_probes_hands_the_workflow_an_absolute_data_root(how, tmp_path, monkeypatch):
    """The Colab path: the workflow runs in the repository's folder, so ``ensure_probes`` passes
    the data root resolved from the caller's folder, as ``data_root=`` and ``$LANDSCAPE_DATA``."""
    from landscape import report

    calls = []
    monkeypatch.setattr(report, "missing_probes", lambda *a, **k: ["book/runs/s/c/probes.json"])
    monkeypatch.setattr(report.subprocess, "run", lambda cmd, **kw: calls.append((cmd, kw))
                        or subprocess.CompletedProcess(cmd, 0, "", ""))
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("LANDSCAPE_DATA", raising=False)
    if how == "environment":
        monkeypatch.setenv("LANDSCAPE_DATA", "rel/data")
    report.ensure_probes("smoke", ["fmnist-batchnorm"], data_root="rel/data" if how == "argument" else None)
    (cmd, kw), = calls
    want = str(tmp_path / ("data" if how == "default" else "rel/data"))
    assert cmd[-1] == f"data_root={want}" and kw["env"]["LANDSCAPE_DATA"] == want
    assert kw["cwd"] == report._repo_root()
