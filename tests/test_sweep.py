"""Sweeps: a ``sweep:`` grid in a study expands to validated configurations with no code change."""
from __future__ import annotations

import time
from pathlib import Path

import pytest

from landscape.config import NAME_RE, ConfigError, load_study


HEAD = """
name: toy
defaults:
  dataset: mnist
  model: {name: mlp, widths: [16]}
  optimizer: {name: momentum, lr: 0.01, momentum: 0.9}
  batch_size: 64
  epochs: 2
seeds: 0
"""

SWEEP = HEAD + """
sweep:
  name: "mlp-w{model.widths[0]}-lr{optimizer.lr}-b{batch_size}"
  grid:
    model.widths: [[32], [128], [512]]
    optimizer.lr: [0.01, 0.05, 0.1]
    batch_size: [32, 128]
"""


def write(root: Path, text: str) -> Path:
    (root / "studies").mkdir(parents=True, exist_ok=True)
    (root / "profiles").mkdir(parents=True, exist_ok=True)
    (root / "profiles" / "smoke.yaml").write_text("seeds: 2\nepochs: 1\ntrain_subset: 128\n")
    (root / "studies" / "toy.yaml").write_text(text)
    return root


def test_sweep_expands_to_the_cartesian_product_with_generated_names(tmp_path):
    s = load_study("toy", "smoke", root=write(tmp_path, SWEEP))
    assert len(s.configs) == 18 and len(s.runs) == 36  # 3 x 3 x 2 configurations, 2 seeds each
    names = list(s.configs)
    assert names[:4] == ["mlp-w32-lr0p01-b32", "mlp-w32-lr0p01-b128", "mlp-w32-lr0p05-b32",
                         "mlp-w32-lr0p05-b128"]  # grid order, last key fastest
    assert names[-1] == "mlp-w512-lr0p1-b128"
    assert all(NAME_RE.match(n) for n in names) and len(set(names)) == 18
    assert len({r.key for r in s.runs}) == 36


def test_sweep_overrides_are_applied_on_top_of_defaults_and_recorded(tmp_path):
    s = load_study("toy", "smoke", root=write(tmp_path, SWEEP))
    spec = s.runs_of("mlp-w128-lr0p05-b32")[0].train
    assert spec.model.name == "mlp" and spec.model.options == {"widths": [128]}
    assert spec.optimizer.lr == 0.05 and spec.batch_size == 32
    assert spec.optimizer.name == "momentum" and spec.optimizer.momentum == 0.9  # from defaults
    assert spec.epochs == 1 and spec.train_subset == 128  # the profile's budget still applies
    meta = s.configs["mlp-w128-lr0p05-b32"]
    assert meta["values"] == {"model.widths": [128], "optimizer.lr": 0.05, "batch_size": 32}
    assert meta["label"] == "widths=128, lr=0.05, batch_size=32"
    by_lr: dict[float, list[str]] = {}
    for name, m in s.configs.items():  # what a notebook does to group runs by a hyper-parameter
        by_lr.setdefault(m["values"]["optimizer.lr"], []).append(name)
    assert sorted(by_lr) == [0.01, 0.05, 0.1] and all(len(v) == 6 for v in by_lr.values())


def test_sweep_and_written_configs_combine_and_names_must_stay_unique(tmp_path):
    text = HEAD + """
configs:
  - {name: base, label: Base}
  - {name: adam, optimizer: {name: adam, lr: 0.001}}
sweep:
  - label: "SGD lr {optimizer.lr}"
    grid:
      optimizer.name: [sgd]
      optimizer.lr: [0.1, 1e-3]
  - grid:
      model: [{name: cnn, channels: [8, 16]}, {name: mlp, widths: [8, 8]}]
      schedule.name: [constant, cosine]
"""
    s = load_study("toy", "smoke", root=write(tmp_path, text))
    assert list(s.configs) == ["base", "adam", "namesgd-lr0p1", "namesgd-lr0p001",
                               "modelcnn-8x16-nameconstant", "modelcnn-8x16-namecosine",
                               "modelmlp-8x8-nameconstant", "modelmlp-8x8-namecosine"]
    assert s.configs["adam"]["values"] == {"optimizer.name": "adam", "optimizer.lr": 0.001}
    assert s.configs["namesgd-lr0p001"]["label"] == "SGD lr 0.001"  # 1e-3 read as a number
    cnn = s.runs_of("modelcnn-8x16-namecosine")[0].train
    assert cnn.model.name == "cnn" and cnn.model.options == {"channels": [8, 16]}  # mlp widths dropped
    assert cnn.schedule.name == "cosine"
    clash = text.replace("- {name: adam,", "- {name: namesgd-lr0p1,")
    with pytest.raises(ConfigError, match="'namesgd-lr0p1' is used twice"):
        load_study("toy", "smoke", root=write(tmp_path, clash))


def test_study_may_have_a_sweep_and_no_configs_but_not_neither(tmp_path):
    assert "configs:" not in SWEEP
    with pytest.raises(ConfigError, match="configs must be a non-empty list"):
        load_study("toy", "smoke", root=write(tmp_path, HEAD))


BAD = [
    ("optimizer.lrr: [0.1]", "sweep.grid.optimizer.lrr is not a known key"),
    ("learning_rate: [0.1]", "sweep.grid.learning_rate is not a known key"),
    ("seed: [1, 2]", "sweep.grid.seed is not a known key"),
    ("model.depth: [3]", "model.depth is not an option of model 'mlp'"),
    ("optimizer.lr: [0.1, -1]", "sweep[mlp-w16-lr-1]: optimizer.lr = -1 must be a positive number"),
    ("optimizer.lr: [.inf]", "optimizer.lr = inf must be a positive number"),
    ("optimizer.name: [adamw]", "optimizer.name = 'adamw' is not one of"),
    ("batch_size: [0]", "batch_size = 0 must be a positive integer"),
    ("dataset: [imagenet]", "dataset = 'imagenet' is not one of"),
    ("optimizer.lr: []", "sweep.grid.optimizer.lr = [] must be a non-empty list"),
    ("optimizer.lr: 0.1", "sweep.grid.optimizer.lr = 0.1 must be a non-empty list"),
]


@pytest.mark.parametrize("line,expected", BAD, ids=[b[1] for b in BAD])
def test_bad_grid_is_refused_with_one_line_naming_the_key(tmp_path, line, expected):
    text = HEAD + f"""
sweep:
  name: "mlp-w{{model.widths[0]}}-lr{{optimizer.lr}}"
  grid:
    {line}
"""
    with pytest.raises(ConfigError) as err:
        load_study("toy", "smoke", root=write(tmp_path, text))
    assert expected in str(err.value) and "\n" not in str(err.value)
    assert str(err.value).startswith("toy.yaml: ")


@pytest.mark.parametrize("block,expected", [
    ('  name: "w{model.widths[0]}"\n  grid: {optimizer.lr: [0.1, 0.2]}',
     "gives 'w16' for both"),
    ('  name: "w{model.depth}"\n  grid: {optimizer.lr: [0.1]}', "refers to 'depth' which"),
    ('  name: "x{lr}"\n  grid: {optimizer.lr: [0.1]}', "refers to 'lr' which"),
    ('  name: "{model.name}"\n  grid: {optimizer.lr: [0.1]}\n  seeds: 3', "sweep.seeds is not a known key"),
    ('  grid: []', "sweep.grid = [] must be a non-empty mapping"),
    ('  name: "' + "x" * 70 + '"\n  grid: {optimizer.lr: [0.1]}', "is not a valid name"),
], ids=["name-collision", "unset-key", "unknown-field", "unknown-sweep-key", "empty-grid", "too-long"])
def test_bad_sweep_block_is_refused_with_one_line(tmp_path, block, expected):
    with pytest.raises(ConfigError) as err:
        load_study("toy", "smoke", root=write(tmp_path, HEAD + "sweep:\n" + block + "\n"))
    assert expected in str(err.value) and "\n" not in str(err.value)


def test_sweep_of_over_a_hundred_configurations_resolves_quickly(tmp_path):
    text = HEAD + """
sweep:
  grid:
    model.widths: [[16], [32], [64], [128], [256]]
    optimizer.lr: [0.001, 0.003, 0.01, 0.03, 0.1]
    batch_size: [32, 64, 128, 256, 512]
"""
    root = write(tmp_path, text)
    (root / "profiles" / "paper.yaml").write_text("seeds: 3\n")
    t0 = time.perf_counter()
    s = load_study("toy", "paper", root=root)
    seconds = time.perf_counter() - t0
    assert len(s.configs) == 125 and len(s.runs) == 375
    assert len({r.key for r in s.runs}) == 375 and len({r.dir for r in s.runs}) == 375
    assert seconds < 2.0, f"resolving 125 configurations took {seconds:.2f} s"
    print(f"125 configurations x 3 seeds resolved in {seconds * 1000:.0f} ms")


def test_shipped_studies_record_values_for_every_configuration():
    from landscape.config import list_studies

    for profile in ("smoke", "paper"):
        for study in list_studies(profile=profile):
            s = load_study(study, profile)
            assert all(set(m) >= {"label", "description", "values"} for m in s.configs.values())


def test_q3_population_is_a_sweep_file_of_over_a_hundred_configurations_in_paper_only(data_root):
    import os
    import subprocess
    import sys

    from landscape.config import list_studies

    s = load_study("q3-population", "paper")
    assert len(s.configs) >= 100 and len(s.runs) == 3 * len(s.configs) >= 300
    assert {"model.widths", "optimizer.lr", "batch_size", "optimizer.weight_decay"} <= set(
        next(iter(s.configs.values()))["values"])  # the varied hyper-parameters, for granulated tau
    assert "q3-population" in list_studies(profile="paper")
    assert "q3-population" not in list_studies(profile="quick") + list_studies(profile="smoke")
    with pytest.raises(ConfigError, match="runs only under the profile"):
        load_study("q3-population", "quick")
    # the workflow plans one training job per configuration (its seeds in one process) and one
    # probe job per configuration, without any code change (dry run)
    repo = Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, "-m", "snakemake", "-s", "workflow/Snakefile", "--dry-run",
                          "--quiet", "rules", "--config", "profile=paper", "studies=[q3-population]",
                          f"data_root={data_root}"], cwd=repo, capture_output=True, text=True,
                         env=dict(os.environ, PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}"))
    assert out.returncode == 0, out.stderr[-3000:]
    counts = dict(line.split()[:2] for line in out.stdout.splitlines()
                  if len(line.split()) == 2 and line.split()[1].isdigit())
    assert int(counts["train"]) == len(s.configs) and int(counts["probe_notebook"]) == len(s.configs)
