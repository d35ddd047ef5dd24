"""Training: cache by config hash, exact resumption, recorded divergence, determinism."""
from __future__ import annotations

import math
import os
import subprocess
import sys

import pytest
import torch

from landscape.config import load_study
from landscape.store import read_json
from landscape.train import load_trained, lr_factor, train_run

STUDY = """
name: toy
defaults:
  dataset: mnist
  model: {{name: {model}}}
  optimizer: {{name: {opt}, lr: {lr}}}
  schedule: {{name: cosine, warmup_epochs: 0.5}}
  batch_size: 64
  epochs: 3
  train_subset: 512
  test_subset: 256
configs:
  - name: a
seeds: 0
"""


@pytest.fixture()
def toy(tmp_path, monkeypatch, artefacts, data_root):
    def make(model="mlp", opt="momentum", lr=0.05):
        root = tmp_path / "configs"
        (root / "studies").mkdir(parents=True, exist_ok=True)
        (root / "profiles").mkdir(exist_ok=True)
        (root / "profiles" / "t.yaml").write_text("seeds: 1\n")
        (root / "studies" / "toy.yaml").write_text(STUDY.format(model=model, opt=opt, lr=lr))
        monkeypatch.setenv("LANDSCAPE_CONFIGS", str(root))
        return load_study("toy", "t").runs[0]
    return make


def test_second_call_does_no_work(toy, data_root):
    run = toy()
    first = train_run(run, data_root=data_root, progress=False)
    stamp = os.stat(run.dir / "metrics.json").st_mtime_ns
    second = train_run(run, data_root=data_root, progress=False)
    assert os.stat(run.dir / "metrics.json").st_mtime_ns == stamp
    assert second.metrics["history"] == first.metrics["history"]
    assert first.metrics["history"][-1]["test_acc"] > 0.6  # it learned something
    assert not (run.dir / "checkpoint.pt").exists()


def test_interrupted_run_resumes_to_the_same_result(toy, data_root, tmp_path, monkeypatch):
    run = toy(model="cnn", opt="sam")
    with pytest.raises(KeyboardInterrupt):
        train_run(run, data_root=data_root, progress=False, stop_after_epoch=1)
    assert (run.dir / "checkpoint.pt").exists() and not (run.dir / "metrics.json").exists()
    resumed = train_run(run, data_root=data_root, progress=False)
    assert resumed.metrics["resumed"] is True
    monkeypatch.setenv("LANDSCAPE_ARTEFACTS", str(tmp_path / "other"))
    fresh = train_run(run, data_root=data_root, progress=False)
    assert fresh.metrics["resumed"] is False
    strip = lambda h: [{k: v for k, v in e.items() if k != "seconds"} for e in h]  # noqa: E731
    assert strip(resumed.metrics["history"]) == strip(fresh.metrics["history"])
    for p, q in zip(resumed.model.state_dict().values(), fresh.model.state_dict().values()):
        assert torch.equal(p, q)


def test_divergence_is_recorded_with_epoch_step_and_last_finite_loss(toy, data_root):
    run = toy(opt="sgd", lr=1e6)
    t = train_run(run, data_root=data_root, progress=False)
    o = t.metrics["outcome"]
    assert o["diverged"] is True and o["epoch"] == 1 and o["step"] >= 1
    assert o["last_finite_loss"] is not None and o["last_finite_loss"] == o["last_finite_loss"]
    assert load_trained(run).diverged


def test_truncated_metrics_are_detected_and_the_run_redone(toy, data_root):
    run = toy()
    train_run(run, data_root=data_root, progress=False)
    text = (run.dir / "metrics.json").read_text()
    (run.dir / "metrics.json").write_text(text[: len(text) // 2])
    t = train_run(run, data_root=data_root, progress=False)
    assert read_json(run.dir / "metrics.json")["history"] == t.metrics["history"]


def test_schedule_warms_up_then_follows_cosine_to_zero(toy):
    spec = toy().train
    assert lr_factor(spec, 0, 8) == pytest.approx(1 / 4)
    assert lr_factor(spec, 3, 8) == pytest.approx(1.0)
    assert lr_factor(spec, 23, 8) == pytest.approx(0.5 * (1 + math.cos(math.pi * 19 / 20)))


def test_same_seed_gives_identical_metrics_in_separate_processes(toy, data_root, tmp_path):
    toy()
    code = ("import json,sys; from landscape.config import load_study; from landscape.train import train_run;"
            "t=train_run(load_study('toy','t').runs[0], data_root=sys.argv[1], progress=False);"
            "print(json.dumps([{k:v for k,v in h.items() if k!='seconds'} for h in t.metrics['history']]))")
    outs = []
    for i in range(2):
        env = dict(os.environ, LANDSCAPE_ARTEFACTS=str(tmp_path / f"proc{i}"))
        outs.append(subprocess.run([sys.executable, "-c", code, str(data_root)], env=env,
                                   capture_output=True, text=True, check=True).stdout)
    assert outs[0] == outs[1] and len(outs[0]) > 10


def _bn_buffers(model):
    return {k: v.clone() for k, v in model.state_dict().items() if "running" in k or "num_batches" in k}


def test_a_sam_step_leaves_bn_statistics_as_a_plain_forward_pass_would():
    """SAM's second forward pass (at the ascent point w + e) must not move BN running statistics:
    after a SAM step they equal those of one train-mode forward pass at the unperturbed w (the
    reference implementations freeze them there)."""
    import copy

    import torch.nn.functional as F

    from landscape.models import build_model
    from landscape.train import _sam_step

    torch.manual_seed(0)
    model = build_model("cnn", {"channels": [4, 8], "fc": [16], "batch_norm": True}, (1, 28, 28), 10).train()
    x, y = torch.randn(32, 1, 28, 28), torch.randint(0, 10, (32,))
    ref = copy.deepcopy(model)
    ref(x)  # the plain forward pass at w
    F.cross_entropy(model(x), y).backward()
    _sam_step(model, F.cross_entropy, x, y, rho=0.5)
    got, want = _bn_buffers(model), _bn_buffers(ref)
    assert got.keys() == want.keys() and got
    for k in want:
        assert torch.equal(got[k], want[k]), k
    assert all(p.grad is not None for p in model.parameters())  # the ascent gradient is there


def test_training_stops_at_the_criterion_and_records_it(toy, data_root):
    """With ``stop_loss`` the run stops after the first epoch whose eval-mode training loss is at
    most the target, and says so; a target it cannot reach runs to the cap and says that."""
    from dataclasses import replace

    from landscape.config import RunSpec

    run = toy(opt="momentum", lr=0.05)
    easy = RunSpec(run.study, "easy", 0, replace(run.train, epochs=6, stop_loss=1.0))
    t = train_run(easy, data_root=data_root)
    c = t.metrics["criterion"]
    assert c["reached"] and c["epochs"] < 6 and c["train_loss"] <= 1.0
    assert len(t.metrics["history"]) == c["epochs"] + 1  # epoch 0 and the epochs trained
    hard = RunSpec(run.study, "hard", 0, replace(run.train, epochs=2, stop_loss=1e-6))
    c = train_run(hard, data_root=data_root).metrics["criterion"]
    assert not c["reached"] and c["epochs"] == 2 and c["train_loss"] > 1e-6
    plain = train_run(run, data_root=data_root).metrics["criterion"]
    assert plain["stop_loss"] is None and not plain["reached"] and plain["train_loss"] > 0


def test_initial_bn_statistics_are_recomputed_on_the_probe_data(toy, data_root):
    """``init.pt`` holds BN's default statistics (0, 1), which belong to no weights: measuring at
    initialisation needs them recomputed on the probe subset, and refuses to go without."""
    from landscape.data import Batches, load, subset
    from landscape.probes._common import DataPasses, recompute_bn

    run = toy(model="cnn")
    from dataclasses import replace

    from landscape.config import RunSpec
    run = RunSpec(run.study, "bn", 0, replace(run.train, epochs=1, model=replace(
        run.train.model, options={"channels": [4, 8], "fc": [16], "batch_norm": True})))
    t = train_run(run, data_root=data_root)
    data = Batches(subset(load("mnist", True, data_root), 128, seed=0), 64)
    with pytest.raises(ValueError, match="batch norm"):
        t.init_model()
    m = t.init_model(bn_data=data)
    mean = next(v for k, v in m.state_dict().items() if k.endswith("running_mean"))
    assert mean.abs().max() > 1e-3  # not the identity's zeros
    ref = t.init_model(bn_data=data)
    recompute_bn(ref, DataPasses(data, torch.device("cpu")))
    for k, v in ref.state_dict().items():
        assert torch.allclose(m.state_dict()[k].float(), v.float()), k
