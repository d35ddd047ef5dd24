"""Scale-out on a real Slurm cluster: the Slurm profile submits every job through sbatch, and the
numbers equal a local run's, bit for bit.

``scripts/slurm_cluster.sh`` starts a single-node cluster on this machine (munged, slurmctld and
slurmd of Debian's ``slurm-wlm``, no cgroups, no slurmdbd; installed first where missing). The toy
study of ``tests/test_parallel.py`` (two MLP configurations, two seeds, smoke budgets) then runs up
to its probe notebooks in one copy of the repository through ``--profile workflow/profiles/slurm``
and in another with ``--cores 1``. Each Slurm job must have gone through sbatch (one per
Snakemake job, COMPLETED, listed by ``sacct -c`` from the jobcomp file and by ``squeue``), and
``probes.json`` and the training metrics must be identical to the local run's. The cluster is shut
down afterwards, also on failure, and no daemon of it may be left.

The real profile asks for 4 cores per training and probe job, more than this node's 2. The test
overrides only what this node needs on the command line: 1 thread and 1 CPU per job (so that the
numbers are comparable with a 1-thread local run), 2 GB, 30 min; squeue for job states (sacct
needs slurmdbd, which this cluster does not have); no retries (a retried job would be a second
sbatch job for one Snakemake job).

Skipped, with the reason, where it cannot run: not Linux, not root (the daemons run as root), or
slurm-wlm/munge missing and not installable. ``make slurm-check`` sets ``LANDSCAPE_SLURM_CHECK=1``,
which turns each of these skips into a failure.
"""
from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from test_parallel import CONFIGS, copy_with_toy, run_workflow, training_metrics

from landscape.store import read_json

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "scripts" / "slurm_cluster.sh"
PROFILE = "workflow/profiles/slurm"
REQUIRED = os.environ.get("LANDSCAPE_SLURM_CHECK") == "1"

# What this 2-core node needs instead of the real profile's cluster-sized requests.
NODE_OVERRIDES = [
    "--set-threads", "train=1", "probe_notebook=1",
    "--set-resources",
    *(f"{rule}:{k}={v}" for rule in ("train", "probe_notebook")
      for k, v in (("cpus_per_task", 1), ("mem_mb", 2000), ("runtime", 30))),
    "--slurm-status-command", "squeue",  # no slurmdbd: plain sacct has no jobs to show
    "--slurm-init-seconds-before-status-checks", "5",
    "--retries", "0",
]

pytestmark = pytest.mark.slow


def _cannot_run(reason: str):
    if REQUIRED:
        pytest.fail(f"make slurm-check cannot run here: {reason}")
    pytest.skip(reason)


def _free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _script(*args: str, env: dict, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SCRIPT), *args], env=env, capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A running single-node cluster; yields its state folder (bin/ holds its client commands)."""
    if not sys.platform.startswith("linux"):
        _cannot_run("the test cluster needs Linux (Debian's slurm-wlm and munge)")
    if os.geteuid() != 0:
        _cannot_run("not root: the test cluster's munged, slurmctld and slurmd run as root "
                    "(and slurm-wlm/munge are installed with apt-get)")
    ctld, slurmd = _free_ports(2)
    env = dict(os.environ, PYTHON=sys.executable, SLURM_CHECK_CTLD_PORT=str(ctld),
               SLURM_CHECK_SLURMD_PORT=str(slurmd),
               PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    for var in [v for v in env if v.startswith(("SLURM_", "SBATCH_", "SRUN_")) and "CHECK" not in v]:
        env.pop(var)
    installed = _script("install", env=env, timeout=900)
    if installed.returncode != 0:
        _cannot_run(f"slurm-wlm, munge or the executor plugin missing and not installable: "
                    f"{(installed.stdout + installed.stderr).strip()[-1500:]}")
    # munged's socket path must stay short (a Unix socket name has at most 107 bytes)
    base = tmp_path_factory.mktemp("slurm")
    state = base if len(str(base)) < 60 else Path(tempfile.mkdtemp(prefix="slurm-"))
    try:
        started = _script("start", str(state), env=env, timeout=300)
        assert started.returncode == 0, started.stdout + started.stderr
        yield state
    finally:
        stopped = _script("stop", str(state), env=env, timeout=300)
        left = _script("pids", str(state), env=env).stdout.split()
        assert stopped.returncode == 0 and not left, (stopped.stdout + stopped.stderr, left)
        if state != base:
            shutil.rmtree(state, ignore_errors=True)


def _env(dst: Path, data_root: Path, cluster: Path) -> dict:
    env = dict(os.environ, PYTHONPATH=str(dst / "lib"), LANDSCAPE_DATA=str(data_root),
               PATH=f"{cluster / 'bin'}:{Path(sys.executable).parent}:{os.environ['PATH']}")
    for var in [v for v in env if v.startswith(("SLURM_", "SBATCH_", "SRUN_"))]:
        env.pop(var)
    for var in ("LANDSCAPE_ARTEFACTS", "LANDSCAPE_CONFIGS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        env.pop(var, None)
    return env


def _probes(dst: Path) -> dict[str, dict]:
    out = {}
    for c in CONFIGS:
        p = read_json(dst / "book" / "runs" / "toy" / c / "probes.json")
        p.pop("provenance", None)  # commit, versions, host: not a measured number
        out[c] = p
    return out


def _rows(text: str) -> list[list[str]]:
    return [line.split("|") for line in text.splitlines() if line.strip()]


def test_slurm_profile_runs_every_job_through_sbatch_with_the_numbers_of_a_local_run(
        tmp_path, data_root, cluster):
    # ---- through the Slurm profile, on the cluster
    dst = copy_with_toy(tmp_path / "slurm")
    env = _env(dst, data_root, cluster)
    targets = [f"book/runs/toy/{c}/probes.json" for c in CONFIGS]
    cmd = [sys.executable, "-m", "snakemake", *targets, "-s", "workflow/Snakefile",
           "--profile", PROFILE, *NODE_OVERRIDES,
           "--config", "profile=smoke", "studies=[toy]", f"data_root={data_root}"]
    done = subprocess.run(cmd, cwd=dst, env=env, capture_output=True, text=True, timeout=1500)
    log = done.stdout + done.stderr
    assert done.returncode == 0, log[-8000:] + "\n" + (cluster / "slurmctld.log").read_text()[-3000:]
    assert f"Using profile {PROFILE}" in log
    run_id = re.search(r"SLURM run ID: (\S+)", log).group(1)
    submitted = dict(re.findall(r"Job (\d+) has been submitted with SLURM jobid (\d+)", log))
    expected_jobs = 2 * len(CONFIGS)  # one train and one probe_notebook job per configuration
    assert len(submitted) == expected_jobs, log[-4000:]
    slurm_ids = set(submitted.values())
    assert len(slurm_ids) == expected_jobs  # one sbatch job per Snakemake job

    # ---- what Slurm saw: slurmctld (squeue, finished jobs kept for MinJobAge) and the job
    # completion file (sacct -c reads it; plain sacct needs slurmdbd)
    def client(*args: str) -> str:
        out = subprocess.run(list(args), env=env, capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stdout + out.stderr
        return out.stdout

    queue = _rows(client("squeue", "--states=all", "--noheader", "-o", "%i|%j|%T|%k|%C|%P"))
    assert {r[0] for r in queue} == slurm_ids, queue  # no other job on the cluster
    for job_id, name, state, comment, cpus, partition in queue:
        assert (name, state, cpus, partition) == (run_id, "COMPLETED", "1", "cpu"), queue
    rules = sorted(re.match(r"rule_(\w+?)_wildcards_toy_(narrow|wide)", r[3]).groups() for r in queue)
    assert rules == sorted((rule, c) for rule in ("probe_notebook", "train") for c in CONFIGS), rules

    sacct = _rows(client("sacct", "-c", "--parsable2", "--noheader",
                         "--format=JobID,JobName,State,Partition,NCPUS"))
    assert sorted(r[0] for r in sacct) == sorted(slurm_ids), sacct
    assert all(r[1:] == [run_id, "COMPLETED", "cpu", "1"] for r in sacct), sacct
    jobcomp = (cluster / "jobcomp.txt").read_text().splitlines()
    assert len(jobcomp) == expected_jobs and all("JobState=COMPLETED" in j for j in jobcomp), jobcomp
    print("squeue --states=all (JobID|Name|State|Comment|CPUs|Partition):",
          *("|".join(r) for r in queue), sep="\n  ")
    print("sacct -c (JobID|JobName|State|Partition|NCPUS):", *("|".join(r) for r in sacct),
          sep="\n  ")

    slurm = (_probes(dst), training_metrics(dst))

    # ---- locally, one job at a time
    local_dst = copy_with_toy(tmp_path / "local")
    local_run = run_workflow(local_dst, 1, data_root)
    assert local_run.returncode == 0, local_run.stdout[-3000:] + local_run.stderr[-6000:]
    local = (_probes(local_dst), training_metrics(local_dst))

    (p_slurm, m_slurm), (p_local, m_local) = slurm, local
    assert len(m_slurm) == 4 and set(m_slurm) == set(m_local)  # 2 configurations x 2 seeds
    assert m_slurm == m_local
    for c in CONFIGS:
        assert {"lambda_max", "slices", "surface", "paths", "test_acc"} <= set(p_slurm[c])
        assert p_slurm[c] == p_local[c], c  # every number, exactly
