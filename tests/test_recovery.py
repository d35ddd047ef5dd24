"""The README's commands work as printed: a relative data root, and a rerun after a hard kill.

* A relative ``LANDSCAPE_DATA`` is made absolute where it is read (Makefile, ``ensure_probes``)
  before any process that runs in another folder gets it.
* ``python -m landscape workflow`` refuses while another run is live, recovers Snakemake's stale
  lock after a ``kill -9``, and hands its own lock to Snakemake, which holds it while it runs.
"""
from __future__ import annotations

import fcntl
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LIB_ENV = dict(os.environ, PYTHONPATH=str(REPO / "lib"))


def _launch(args: list[str], cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "landscape", "workflow", "--", *args], cwd=cwd,
                          env=LIB_ENV, capture_output=True, text=True, timeout=timeout)


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


def test_the_launcher_refuses_while_another_run_holds_its_lock(tmp_path):
    """(a) This process holds the launcher's flock: the launcher says so in one line, exits 2,
    and leaves Snakemake's lock files (those of the live run) alone."""
    meta = tmp_path / ".snakemake"
    (meta / "locks").mkdir(parents=True)
    lock = meta / "locks" / "0.output.lock"
    lock.write_text("some/output\n")
    with open(meta / "landscape-run.lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        held.write(f"{os.getpid()}\n")
        held.flush()
        out = _launch(["--cores", "1"], tmp_path)
    assert out.returncode == 2 and out.stdout == ""
    assert out.stderr.startswith(f"error: another run of this workflow is in progress (pid {os.getpid()})")
    assert len(out.stderr.splitlines()) == 1
    assert lock.read_text() == "some/output\n" and sorted(os.listdir(meta / "locks")) == ["0.output.lock"]


SNAKEFILE = """
rule all:
    output: "held.txt"
    # a job of the run: is the launcher's lock held (by Snakemake, exec'd into) while it runs?
    shell: "flock -n .snakemake/landscape-run.lock true && echo free > {output} || echo held > {output}"
"""


def test_the_launcher_recovers_a_stale_lock_and_snakemake_holds_its_lock(tmp_path):
    """A stale Snakemake lock (its run is dead: nobody holds the launcher's lock) is removed with
    one line, the run completes, and during the run the lock is held by Snakemake itself."""
    (tmp_path / "Snakefile").write_text(SNAKEFILE)
    (tmp_path / ".snakemake" / "locks").mkdir(parents=True)
    (tmp_path / ".snakemake" / "locks" / "0.output.lock").write_text(str(tmp_path / "held.txt") + "\n")
    out = _launch(["--cores", "1", "--quiet"], tmp_path)
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.count("recovered a stale Snakemake lock left by an interrupted run") == 1
    assert (tmp_path / "held.txt").read_text().strip() == "held"
    assert not list((tmp_path / ".snakemake" / "locks").glob("*.lock"))
    with open(tmp_path / ".snakemake" / "landscape-run.lock") as f:  # released at exit
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
