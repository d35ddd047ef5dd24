"""Reliability: runs killed with SIGKILL resume to exactly the uninterrupted result, and corrupted
artefacts are detected and recomputed, never silently used.

The kill tests run the real entry points in subprocesses (``python -m landscape train``, a script
calling ``loss_surface_resumable``), kill them with SIGKILL once their first checkpoint or row is on
disk, rerun them, and compare with an uninterrupted run bit for bit. Every subprocess uses one
thread, so results do not depend on how busy the machine is.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import landscape as ls
from landscape.config import load_study
from landscape.store import CorruptArtefact, load_torch, read_json, write_json
from landscape.train import load_trained, train_run


REPO = Path(__file__).resolve().parents[1]

TOY = """
name: toy
defaults:
  dataset: mnist
  model: {{name: mlp, widths: [{width}]}}
  optimizer: {{name: momentum, lr: 0.05}}
  schedule: {{name: cosine}}
  batch_size: {batch}
  epochs: {epochs}
  train_subset: {n}
  test_subset: 256
configs:
  - name: a
seeds: 0
"""


def write_toy(root: Path, width=128, batch=16, epochs=12, n=2048) -> Path:
    """A configs tree with one study ``toy`` (one MLP configuration) and a profile ``t`` (1 seed)."""
    (root / "studies").mkdir(parents=True, exist_ok=True)
    (root / "profiles").mkdir(parents=True, exist_ok=True)
    (root / "profiles" / "t.yaml").write_text("seeds: 1\n")
    (root / "studies" / "toy.yaml").write_text(TOY.format(width=width, batch=batch, epochs=epochs, n=n))
    return root


def env_for(configs: Path, artefacts: Path, data_root: Path) -> dict:
    return dict(os.environ, LANDSCAPE_CONFIGS=str(configs), LANDSCAPE_ARTEFACTS=str(artefacts),
                LANDSCAPE_DATA=str(data_root), OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")


def wait_for(predicate, proc: subprocess.Popen, timeout: float = 120.0) -> None:
    """Poll ``predicate`` every millisecond until it holds; fail if ``proc`` ends first."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"process ended (rc {proc.returncode}) before it could be killed: {err[-2000:]}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail("timed out waiting for the process to reach the kill point")
        time.sleep(0.001)


def strip_timing(metrics: dict) -> dict:
    out = {k: v for k, v in metrics.items() if k not in ("train_seconds", "resumed")}
    out["history"] = [{k: v for k, v in h.items() if k != "seconds"} for h in metrics["history"]]
    return out


def assert_same_tensors(a: dict, b: dict) -> None:
    assert list(a) == list(b)
    for k in a:
        assert torch.equal(a[k], b[k]), k


# --------------------------------------------------------------------------- training under SIGKILL
def test_training_killed_with_sigkill_resumes_to_the_uninterrupted_result(tmp_path, data_root):
    configs = write_toy(tmp_path / "configs")
    cmd = [sys.executable, "-m", "landscape", "train", "--study", "toy", "--profile", "t",
           "--data-root", str(data_root), "--no-progress"]
    killed_env = env_for(configs, tmp_path / "killed", data_root)
    run_dir = None

    proc = subprocess.Popen(cmd, env=killed_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def checkpoint_exists() -> bool:
        nonlocal run_dir
        found = list((tmp_path / "killed").glob("runs/toy/a/seed0-*/checkpoint.pt"))
        if found:
            run_dir = found[0].parent
        return bool(found)

    wait_for(checkpoint_exists, proc)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    assert proc.returncode == -signal.SIGKILL
    assert not (run_dir / "metrics.json").exists(), "the run finished before the kill"
    epoch_at_kill = load_torch(run_dir / "checkpoint.pt")["epoch"]
    assert 1 <= epoch_at_kill < 12

    again = subprocess.run(cmd, env=killed_env, capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    fresh = subprocess.run(cmd, env=env_for(configs, tmp_path / "fresh", data_root),
                           capture_output=True, text=True)
    assert fresh.returncode == 0, fresh.stderr

    fresh_dir = tmp_path / "fresh" / run_dir.relative_to(tmp_path / "killed")
    resumed_m, fresh_m = read_json(run_dir / "metrics.json"), read_json(fresh_dir / "metrics.json")
    assert resumed_m["resumed"] is True and fresh_m["resumed"] is False
    assert len(resumed_m["history"]) == 13  # epoch 0 (init) + 12 epochs
    assert strip_timing(resumed_m) == strip_timing(fresh_m)
    for name in ("init.pt", "model.pt"):
        assert_same_tensors(load_torch(run_dir / name), load_torch(fresh_dir / name))
    traj_a, traj_b = load_torch(run_dir / "trajectory.pt"), load_torch(fresh_dir / "trajectory.pt")
    assert traj_a["steps"] == traj_b["steps"] and torch.equal(traj_a["weights"], traj_b["weights"])
    assert not (run_dir / "checkpoint.pt").exists()
    print(f"killed after epoch {epoch_at_kill} of 12; resumed run equals the uninterrupted one")


# --------------------------------------------------------------------------- resumable surface
SURFACE_SCRIPT = """
import sys, time
import numpy as np, torch
import landscape as ls
from landscape.data import Batches, load, subset

mode, state, out, counter, delay, data_root = sys.argv[1:7]
torch.manual_seed(0)
model = ls.build_model("mlp", {"widths": [32]}, (1, 28, 28)).eval()
data = Batches(subset(load("mnist", root=data_root), 300, seed=0), 100)
dirs = ls.random_plane(model, seed=0)
xs, ys = np.linspace(-1, 1, 8), np.linspace(-0.5, 0.5, 5)

def row_done(i, n):
    with open(counter, "a") as fh:
        fh.write(f"{i}\\n")
    time.sleep(float(delay))

if mode == "resumable":
    z = ls.loss_surface_resumable(model, data, dirs, (xs, ys), state, metric="both", progress=row_done)
else:
    z = ls.loss_surface(model, data, dirs, (xs, ys), metric="both")
np.save(out, z)
"""


def test_surface_killed_with_sigkill_resumes_from_the_saved_rows_bit_for_bit(tmp_path, data_root):
    script = tmp_path / "surface.py"
    script.write_text(SURFACE_SCRIPT)
    state = tmp_path / "state" / "surface.json"
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")

    def run(mode, out, counter, delay, background=False):
        args = [sys.executable, str(script), mode, str(state), str(out), str(counter), str(delay),
                str(data_root)]
        if background:
            return subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        done = subprocess.run(args, env=env, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        return done

    def rows_in(counter: Path) -> list[int]:
        return [int(x) for x in counter.read_text().split()] if counter.exists() else []

    first = tmp_path / "first.txt"
    proc = run("resumable", tmp_path / "killed.npy", first, 0.25, background=True)
    wait_for(lambda: len(rows_in(first)) >= 3, proc)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    assert proc.returncode == -signal.SIGKILL and not (tmp_path / "killed.npy").exists()
    saved = [i for i, r in enumerate(read_json(state)["rows"]) if r is not None]
    assert 3 <= len(saved) < 8

    second = tmp_path / "second.txt"
    run("resumable", tmp_path / "resumed.npy", second, 0)
    recomputed = rows_in(second)
    assert sorted(recomputed) == sorted(set(range(8)) - set(saved))  # only the missing rows
    assert len(recomputed) < 8

    run("plain", tmp_path / "plain.npy", tmp_path / "unused.txt", 0)
    resumed, plain = np.load(tmp_path / "resumed.npy"), np.load(tmp_path / "plain.npy")
    assert resumed.shape == plain.shape == (2, 8, 5)
    assert resumed.tobytes() == plain.tobytes()  # bit for bit
    print(f"killed with {len(saved)} of 8 rows saved; the rerun computed {len(recomputed)} rows")

    third = tmp_path / "third.txt"  # finished: a cache, nothing recomputed
    run("resumable", tmp_path / "again.npy", third, 0)
    assert rows_in(third) == [] and np.load(tmp_path / "again.npy").tobytes() == plain.tobytes()


class Tiny(nn.Module):
    def __init__(self, bn: bool = True) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(6, 8), nn.BatchNorm1d(8) if bn else nn.Identity(),
                                 nn.ReLU(), nn.Linear(8, 3))

    def forward(self, x):
        return self.net(x)


@pytest.fixture()
def tiny():
    torch.manual_seed(0)
    model = Tiny()
    model.net[1].running_mean.normal_()  # non-trivial BN statistics
    g = torch.Generator().manual_seed(1)
    data = [(torch.randn(10, 6, generator=g), torch.randint(0, 3, (10,), generator=g)) for _ in range(3)]
    dirs = ls.random_plane(model, seed=3)
    return model, data, dirs, (np.linspace(-1, 1, 5), np.linspace(-1, 1, 4))


def rows_computed(model, data, dirs, coords, path, **kw):
    seen: list[int] = []
    z = ls.loss_surface_resumable(model, data, dirs, coords, path, progress=lambda i, n: seen.append(i), **kw)
    return z, seen


def test_resumable_surface_equals_loss_surface_exactly_and_restores_the_model(tiny, tmp_path):
    model, data, dirs, coords = tiny
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.train()
    for metric in ("loss", "both", ("error", "loss")):
        z, seen = rows_computed(model, data, dirs, coords, tmp_path / f"{metric}.json", metric=metric)
        ref = ls.loss_surface(model, data, dirs, coords, metric=metric)
        assert z.shape == ref.shape and z.tobytes() == ref.tobytes() and seen == [0, 1, 2, 3, 4]
    assert model.training
    assert_same_tensors(model.state_dict(), before)
    z1, seen = rows_computed(model, iter(data), [dirs[0]], coords[0], tmp_path / "one.json")
    assert seen == [0, 1, 2, 3, 4]
    assert z1.tobytes() == ls.loss_surface(model, data, [dirs[0]], coords[0]).tobytes()


def test_resumable_surface_recomputes_when_weights_directions_coords_or_data_change(tiny, tmp_path):
    model, data, dirs, (xs, ys) = tiny
    path = tmp_path / "s.json"
    rows_computed(model, data, dirs, (xs, ys), path)
    assert rows_computed(model, data, dirs, (xs, ys), path)[1] == []  # same inputs: cached

    changed = [
        ("coords", dict(coords=(xs, ys * 2))),
        ("directions", dict(dirs=ls.random_plane(model, seed=4))),
        ("data", dict(data=data[:2])),
    ]
    for what, kw in changed:
        args = dict(dirs=dirs, coords=(xs, ys), data=data) | kw
        other = tmp_path / f"{what}.json"
        other.write_bytes(path.read_bytes())  # the finished state of the original inputs
        with pytest.warns(UserWarning, match="other inputs"):
            z, seen = rows_computed(model, args["data"], args["dirs"], args["coords"], other)
        assert seen == [0, 1, 2, 3, 4], what
        ref = ls.loss_surface(model, args["data"], args["dirs"], args["coords"])
        assert z.tobytes() == ref.tobytes(), what
    with torch.no_grad():
        model.net[1].running_var.mul_(2)  # a buffer, not a parameter: still part of the hash
    with pytest.warns(UserWarning, match="other inputs"):
        z, seen = rows_computed(model, data, dirs, (xs, ys), path)
    assert seen == [0, 1, 2, 3, 4]
    assert z.tobytes() == ls.loss_surface(model, data, dirs, (xs, ys)).tobytes()


def test_resumable_surface_uses_only_the_rows_saved_for_the_same_inputs(tiny, tmp_path):
    """A partial state file (rows 1 and 3 done) is completed by computing the other rows only."""
    model, data, dirs, coords = tiny
    path = tmp_path / "s.json"
    full, _ = rows_computed(model, data, dirs, coords, path)
    state = read_json(path)
    state["rows"] = [r if i in (1, 3) else None for i, r in enumerate(state["rows"])]
    write_json(path, state)
    z, seen = rows_computed(model, data, dirs, coords, path)
    assert seen == [0, 2, 4] and z.tobytes() == full.tobytes()


# --------------------------------------------------------------------------- corrupted artefacts
def truncate(path: Path, keep: float = 0.5) -> None:
    payload = path.read_bytes()
    path.write_bytes(payload[: int(len(payload) * keep)])


@pytest.fixture()
def toy_run(tmp_path, monkeypatch, artefacts, data_root):
    write_toy(tmp_path / "configs", width=32, batch=64, epochs=3, n=512)
    monkeypatch.setenv("LANDSCAPE_CONFIGS", str(tmp_path / "configs"))
    return load_study("toy", "t").runs[0]


def test_truncated_model_pt_is_detected_and_the_run_retrained(toy_run, data_root):
    first = train_run(toy_run, data_root=data_root, progress=False)
    weights = {k: v.clone() for k, v in first.model.state_dict().items()}
    truncate(toy_run.dir / "model.pt")
    with pytest.raises(CorruptArtefact, match="model.pt"):
        load_trained(toy_run)
    stamp = os.stat(toy_run.dir / "metrics.json").st_mtime_ns
    again = train_run(toy_run, data_root=data_root, progress=False)
    assert os.stat(toy_run.dir / "metrics.json").st_mtime_ns != stamp  # redone, not loaded
    assert_same_tensors(load_torch(toy_run.dir / "model.pt"), weights)
    assert strip_timing(again.metrics) == strip_timing(first.metrics)


def test_truncated_checkpoint_is_detected_and_training_starts_over(toy_run, data_root, tmp_path, monkeypatch):
    with pytest.raises(KeyboardInterrupt):
        train_run(toy_run, data_root=data_root, progress=False, stop_after_epoch=1)
    truncate(toy_run.dir / "checkpoint.pt")
    with pytest.raises(CorruptArtefact, match="checkpoint.pt"):
        load_torch(toy_run.dir / "checkpoint.pt")
    redone = train_run(toy_run, data_root=data_root, progress=False)
    assert redone.metrics["resumed"] is False  # the bad checkpoint was not used
    monkeypatch.setenv("LANDSCAPE_ARTEFACTS", str(tmp_path / "fresh"))
    fresh = train_run(toy_run, data_root=data_root, progress=False)
    assert strip_timing(redone.metrics) == strip_timing(fresh.metrics)
    assert_same_tensors(redone.model.state_dict(), fresh.model.state_dict())


def test_truncated_or_edited_json_artefacts_are_refused(tmp_path):
    from landscape import report

    payload = {"lambda_max": [12.5, 13.25], "test_acc": [0.91, 0.92]}
    report.write_artefact(tmp_path, "probes", payload)
    assert report.read_artefact(tmp_path, "probes") == payload
    path = tmp_path / "probes.json"
    good = path.read_text()
    for bad in (good[: len(good) // 2], good[:-3], "", "not json",
                good.replace("12.5", "125.0"),                      # edited: checksum mismatch
                json.dumps({"data": payload})):                     # no checksum at all
        path.write_text(bad)
        with pytest.raises(CorruptArtefact):
            report.read_artefact(tmp_path, "probes")


def test_truncated_surface_state_is_detected_and_recomputed(tiny, tmp_path):
    model, data, dirs, coords = tiny
    path = tmp_path / "s.json"
    full, _ = rows_computed(model, data, dirs, coords, path)
    for keep in (0.5, 0.0):
        truncate(path, keep)
        with pytest.warns(UserWarning, match="recomputing"):
            z, seen = rows_computed(model, data, dirs, coords, path)
        assert seen == [0, 1, 2, 3, 4] and z.tobytes() == full.tobytes()
        read_json(path)  # rewritten whole


@pytest.mark.slow
def test_summary_notebook_refuses_a_truncated_probes_json(tmp_path, data_root):
    """The summary reads probes.json through the checksum: a truncated one stops it with the file
    named (recompute it by deleting the file and rerunning the workflow)."""
    configs = write_toy(tmp_path / "configs")
    runs = tmp_path / "runs"
    write_json(runs / "a" / "probes.json", {"config": "a", "lambda_max": [1.0]})
    truncate(runs / "a" / "probes.json")
    out = subprocess.run(
        [sys.executable, "-m", "papermill", "--no-progress-bar", str(REPO / "notebooks" / "study_summary.ipynb"),
         str(tmp_path / "out.ipynb"), "-p", "study", "toy", "-p", "profile", "t",
         "-p", "runs_dir", str(runs), "-p", "out_dir", str(tmp_path / "fig")],
        env=env_for(configs, tmp_path / "art", data_root), capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode != 0
    assert "CorruptArtefact" in out.stderr + out.stdout and "probes.json" in out.stderr + out.stdout
