"""The README's commands work as printed: a relative data root, and a rerun after a hard kill.

* A relative ``LANDSCAPE_DATA`` is made absolute where it is read (Makefile, ``ensure_probes``)
  before any process that runs in another folder gets it.
* ``python -m landscape workflow`` (what ``make report`` and ``ensure_probes`` call) refuses
  while another run is live, recovers Snakemake's stale lock after a ``kill -9``, and hands its
  own lock to Snakemake, which holds it while it runs.
"""
from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import copy_repo

REPO = Path(__file__).resolve().parents[1]
LIB_ENV = dict(os.environ, PYTHONPATH=str(REPO / "lib"))


def _launch(args: list[str], cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "landscape", "workflow", "--", *args], cwd=cwd,
                          env=LIB_ENV, capture_output=True, text=True, timeout=timeout)


def test_the_makefile_hands_on_an_absolute_data_root(tmp_path):
    """``make test LANDSCAPE_DATA=../shared/data``: the recipe's processes (pytest, which copies
    the repository elsewhere) see the absolute folder, not a path relative to another cwd."""
    show = 'show-data: ; @echo "$$LANDSCAPE_DATA"'
    # run as under `make test ...`, the outer make's command-line variables would reach this make
    # through MAKEFLAGS: leave them out, so each call sees only its own arguments
    clean = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
    out = subprocess.run(["make", "-s", "--eval", show, "show-data", "LANDSCAPE_DATA=../shared/data"],
                         cwd=REPO, env=clean, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == os.path.abspath(REPO / ".." / "shared" / "data")
    unset = {k: v for k, v in clean.items() if k != "LANDSCAPE_DATA"}
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
    the data root resolved from the caller's folder, as ``data_root=`` and ``$LANDSCAPE_DATA``,
    through the launcher."""
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
    assert cmd[1:5] == ["-m", "landscape", "workflow", "--"]
    assert kw["cwd"] == report._repo_root() and "--rerun-incomplete" in cmd


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


@pytest.mark.slow
def test_rerunning_make_report_after_a_hard_kill_completes(tmp_path, data_root):
    """(b) The README's report command in a copy of the repository, killed with SIGKILL (whole
    process group) while Snakemake holds its lock and a job runs, then the same command again:
    it recovers the stale lock and completes. (Before the launcher: LockException.)"""
    dst = copy_repo(tmp_path / "repo")
    venv = Path(sys.prefix)
    # -o: never (re)install from the copy into the venv the tests run in
    cmd = ["make", "report", "PROFILE=smoke", "STUDIES=fmnist-batchnorm", f"LANDSCAPE_DATA={data_root}",
           f"VENV={venv}", "-o", f"{venv}/.installed"]
    env = dict(os.environ, PYTHONPATH=str(dst / "lib"))
    for var in ("LANDSCAPE_ARTEFACTS", "LANDSCAPE_CONFIGS", "MAKEFLAGS", "MFLAGS"):
        env.pop(var, None)
    meta = dst / ".snakemake"
    first = subprocess.Popen(cmd, cwd=dst, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while not (list(meta.glob("locks/*.lock")) and list(meta.glob("incomplete/*"))):
            assert first.poll() is None, first.stdout.read().decode()[-3000:]
            assert time.monotonic() < deadline, "no job started within 120 s"
            time.sleep(0.2)
        # meanwhile the same command again: refused by the lock the live Snakemake holds
        second = subprocess.run(cmd, cwd=dst, env=env, capture_output=True, text=True, timeout=120)
        assert second.returncode == 2 and "error: another run of this workflow is in progress (pid " \
            in second.stderr, second.stdout[-2000:] + second.stderr[-2000:]
    finally:
        os.killpg(first.pid, signal.SIGKILL)  # the OOM killer / kill -9: no cleanup runs
        first.wait()
    assert list(meta.glob("locks/*.lock")), "the kill left no stale lock: nothing was tested"
    again = subprocess.run(cmd, cwd=dst, env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert "recovered a stale Snakemake lock" in again.stdout
    assert (dst / "book" / "runs" / "fmnist-batchnorm" / "summary.ipynb").exists()
    assert not list(meta.glob("locks/*.lock"))
