"""Scale-out: parallel equals serial, and the Slurm profile is well formed.

The workflow with ``--cores 2`` gives exactly the numbers of ``--cores 1``.
Two clean copies of the repository each get a tiny toy study (two MLP configurations, two seeds,
smoke budgets shrunk further under ``budgets: smoke:``) and run Snakemake up to the per-configuration
probe notebooks (explicit ``probes.json`` targets, ``studies=[toy]``; no summaries, no book). Every
job runs one thread (the workflow sets ``OMP_NUM_THREADS={threads}``), so running jobs side by side
must change nothing: the probes and the training metrics are compared exactly.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import copy_repo
import yaml

from landscape.store import read_json


REPO = Path(__file__).resolve().parents[1]
PROFILE = REPO / "workflow" / "profiles" / "slurm" / "config.yaml"

TOY = """name: toy
title: Toy study for the parallel-equals-serial test
source: ""
defaults:
  dataset: mnist
  model: {name: mlp, widths: [32]}
  optimizer: {name: momentum, lr: 0.05}
  batch_size: 64
  epochs: 2
configs:
  - {name: narrow, label: Narrow, model: {name: mlp, widths: [16]}}
  - {name: wide, label: Wide, model: {name: mlp, widths: [64]}}
seeds: 0
probes:
  measures: [curves, slice, surface, hessian, sharpness, interpolation]
budgets:
  smoke:
    epochs: 2
    train_subset: 512
    test_subset: 128
    seeds: 2
    eval_subset: 128
    hessian_subset: 64
    slice_points: 5
    surface_points: 3
    interp_points: 3
    lanczos_iters: 8
"""
CONFIGS = ("narrow", "wide")


def copy_with_toy(dst: Path) -> Path:
    """A copy of the repository (conftest.copy_repo) with the toy study added."""
    copy_repo(dst)
    (dst / "configs" / "studies" / "toy.yaml").write_text(TOY)
    return dst


def run_workflow(dst: Path, cores: int, data_root: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(dst / "lib"), LANDSCAPE_DATA=str(data_root),
               PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    for var in ("LANDSCAPE_ARTEFACTS", "LANDSCAPE_CONFIGS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        env.pop(var, None)
    targets = [f"book/runs/toy/{c}/probes.json" for c in CONFIGS]
    cmd = [sys.executable, "-m", "snakemake", *targets, "-s", "workflow/Snakefile",
           "--cores", str(cores), "--quiet", "rules",
           "--config", "profile=smoke", "studies=[toy]", f"data_root={data_root}"]
    return subprocess.run(cmd, cwd=dst, env=env, capture_output=True, text=True, timeout=900)


def training_metrics(dst: Path) -> dict[str, dict]:
    out = {}
    for path in sorted((dst / "artefacts" / "runs" / "toy").glob("*/seed*/metrics.json")):
        m = read_json(path)
        m.pop("train_seconds")
        m["history"] = [{k: v for k, v in h.items() if k != "seconds"} for h in m["history"]]
        out[str(path.relative_to(dst))] = m
    return out


@pytest.mark.slow
def test_two_cores_give_exactly_the_numbers_of_one_core(tmp_path, data_root):
    results = {}
    for cores in (2, 1):
        dst = copy_with_toy(tmp_path / f"cores{cores}")
        done = run_workflow(dst, cores, data_root)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-6000:]
        probes = {}
        for c in CONFIGS:
            p = read_json(dst / "book" / "runs" / "toy" / c / "probes.json")
            p.pop("provenance", None)  # commit, versions: the same, but not a measured number
            probes[c] = p
        results[cores] = (probes, training_metrics(dst))
        assert not (dst / "_build").exists()  # stopped at the probe notebooks, as asked

    (p2, m2), (p1, m1) = results[2], results[1]
    assert len(m2) == 4 and set(m2) == set(m1)  # 2 configurations x 2 seeds
    assert m2 == m1
    for c in CONFIGS:
        assert {"lambda_max", "slices", "surface", "paths", "test_acc"} <= set(p2[c]), sorted(p2[c])
        assert len(p2[c]["lambda_max"]) == 2
        assert p2[c] == p1[c], c  # every number, exactly


# --------------------------------------------------------------------------- Slurm profile
def snakefile_rules() -> set[str]:
    import re

    return set(re.findall(r"^rule (\w+):", (REPO / "workflow" / "Snakefile").read_text(), re.MULTILINE))


def test_slurm_profile_has_the_executor_plugin_keys_and_names_only_existing_rules():
    cfg = yaml.safe_load(PROFILE.read_text())
    assert cfg["executor"] == "slurm"
    assert isinstance(cfg["jobs"], int) and cfg["jobs"] >= 100  # a Q3-sized sweep at once
    assert isinstance(cfg["latency-wait"], int) and cfg["latency-wait"] >= 30
    assert isinstance(cfg["retries"], int) and cfg["retries"] >= 1
    res = cfg["default-resources"]
    assert {"slurm_partition", "runtime", "mem_mb", "cpus_per_task"} <= set(res)
    assert isinstance(res["slurm_partition"], str) and res["slurm_partition"]
    assert all(isinstance(res[k], int) and res[k] > 0 for k in ("runtime", "mem_mb", "cpus_per_task"))
    rules = snakefile_rules()
    assert {"train", "probe_notebook", "book"} <= rules
    referenced = set(cfg.get("set-threads", {})) | set(cfg.get("set-resources", {}))
    assert referenced and referenced <= rules, f"not rules of the Snakefile: {referenced - rules}"
    for rule, threads in cfg["set-threads"].items():  # Slurm gives each job the cores it uses
        cpus = cfg["set-resources"].get(rule, {}).get("cpus_per_task", res["cpus_per_task"])
        assert cpus == threads, rule
    assert not (REPO / "workflow" / "profiles" / "default").exists()  # loaded on every run
    assert not (REPO / "profiles" / "default").exists()


@pytest.mark.slow
def test_snakemake_accepts_the_slurm_profile(tmp_path, data_root):
    """A dry run with the profile (its executor swapped for ``dryrun``, the plugin being absent
    here): Snakemake parses it and gives the train jobs the profile's threads and resources."""
    dst = copy_with_toy(tmp_path / "repo")
    env = dict(os.environ, PYTHONPATH=str(dst / "lib"), LANDSCAPE_DATA=str(data_root),
               PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    for var in ("LANDSCAPE_ARTEFACTS", "LANDSCAPE_CONFIGS"):
        env.pop(var, None)
    out = subprocess.run([sys.executable, "-m", "snakemake", "-s", "workflow/Snakefile",
                          "--profile", "workflow/profiles/slurm", "--executor", "dryrun",
                          "--config", "profile=smoke", "studies=[toy]"],
                         cwd=dst, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    log = out.stdout + out.stderr
    train = log[log.index("rule train:"):][:1500]
    assert "threads: 4" in train and "cpus_per_task=4" in train and "slurm_partition=" in train
    assert "runtime=720" in train
    assert not (dst / "artefacts" / "runs").exists()  # a dry run
