"""Start the report's workflow so that rerunning the same command works after any interruption.

    python -m landscape workflow -- <snakemake arguments>

Snakemake marks a running workflow with files under ``.snakemake/locks/`` and deletes them when
it exits; a hard kill (``kill -9``, the OOM killer, a closed laptop lid on a cluster node) leaves
them behind, and the next run of the same command stops with ``LockException: Directory cannot
be locked`` until someone runs ``snakemake --unlock`` (``--rerun-incomplete`` does not clear
them). Those files cannot tell a dead run from a live one, so this launcher keeps a lock of its
own that can: an exclusive ``flock`` on ``.snakemake/landscape-run.lock``, which the kernel
releases the moment the process holding it dies, however it dies. With that lock held, no other
launched run is alive, so Snakemake's lock files are stale and are removed with
``snakemake --unlock`` before the run starts; with it held by another process, the launcher
refuses with one line and exit status 2.

Runs started with ``python -m snakemake`` directly bypass the launcher and are not seen by it.
Torch-free: it starts in a fraction of a second.
"""
from __future__ import annotations

import fcntl
import os
import subprocess
import sys
from pathlib import Path

LOCK_NAME = "landscape-run.lock"


class AnotherRun(RuntimeError):
    """Another launched run of the workflow in this directory is alive."""


def workdir(args: list[str], cwd: str | os.PathLike) -> Path:
    """The folder whose ``.snakemake/`` the run uses: ``-d``/``--directory`` of ``args`` if
    given (relative to ``cwd``), else ``cwd``. (The report's Snakefile sets ``workdir:`` to the
    repository root, so run it from there, as ``make report`` and ``ensure_probes`` do.)"""
    for i, a in enumerate(args):
        if a in ("-d", "--directory") and i + 1 < len(args):
            return (Path(cwd) / args[i + 1]).resolve()
        if a.startswith("--directory="):
            return (Path(cwd) / a.split("=", 1)[1]).resolve()
    return Path(cwd).resolve()


def acquire(meta: Path) -> int:
    """Take the exclusive, non-blocking flock on ``meta/landscape-run.lock`` and write this
    process's pid into it; return its descriptor. Raises ``AnotherRun`` (with the holder's pid)
    when a live process holds it."""
    meta.mkdir(parents=True, exist_ok=True)
    # O_RDWR without O_TRUNC: the holder's pid must stay readable until we own the lock.
    fd = os.open(meta / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        pid = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise AnotherRun(pid) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def stale_locks(meta: Path) -> list[Path]:
    """Snakemake's lock files under ``meta/locks/`` (stale once we hold our own lock)."""
    locks = meta / "locks"
    return sorted(p for p in locks.iterdir() if p.is_file()) if locks.is_dir() else []


def run_workflow(args: list[str], cwd: str | os.PathLike | None = None) -> int:
    """Run ``python -m snakemake *args`` in ``cwd`` (default: the current folder) under the
    launcher's lock; does not return on success (the process becomes Snakemake). Returns 2, after
    one line on stderr, when another launched run is alive, or the status of a failed unlock."""
    cwd = Path(cwd or os.getcwd())
    meta = workdir(args, cwd) / ".snakemake"
    try:
        fd = acquire(meta)
    except AnotherRun as err:
        print(f"error: another run of this workflow is in progress (pid {err}) in {meta.parent}; "
              "wait for it to finish or stop it, then rerun this command", file=sys.stderr)
        return 2
    snakemake = [sys.executable, "-m", "snakemake"]
    if stale_locks(meta):
        # Same arguments (same Snakefile, directory and --config, which the Snakefile reads
        # while it is parsed), --unlock first: --config takes every word after it.
        out = subprocess.run([*snakemake, "--unlock", *args], cwd=cwd, capture_output=True, text=True)
        if out.returncode != 0:
            sys.stderr.write(out.stdout + out.stderr)
            return out.returncode
        print(f"recovered a stale Snakemake lock left by an interrupted run ({meta / 'locks'})",
              flush=True)
    # Exec, not a child process: Snakemake inherits the descriptor and so holds the flock itself,
    # and the kernel releases it exactly when the run ends, however it ends (a wrapper process
    # could be killed while Snakemake lives on, or live on after it). Its jobs do not inherit it
    # (subprocess closes descriptors), so an orphaned job cannot keep the lock.
    os.set_inheritable(fd, True)
    os.chdir(cwd)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, [*snakemake, *args])
    return 1  # not reached
