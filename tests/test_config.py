"""Configuration validation: every bad input is one line naming the key, the value and what is allowed."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from landscape.config import ConfigError, load_study

GOOD = """
name: {name}
title: t
defaults:
  dataset: mnist
  model: {{name: mlp, widths: [16]}}
  optimizer: {{name: sgd, lr: 0.1}}
  batch_size: 64
  epochs: 1
configs:
  - name: a
  - name: b
    model: {{widths: [32]}}
seeds: 0
"""


def write_tree(root: Path, study_text: str, name: str = "toy") -> Path:
    (root / "studies").mkdir(parents=True, exist_ok=True)
    (root / "profiles").mkdir(parents=True, exist_ok=True)
    (root / "profiles" / "smoke.yaml").write_text("seeds: 2\nepochs: 1\ntrain_subset: 128\n")
    (root / "studies" / f"{name}.yaml").write_text(study_text)
    return root


def test_good_study_resolves_runs_per_config_and_seed(tmp_path):
    root = write_tree(tmp_path, GOOD.format(name="toy"))
    s = load_study("toy", "smoke", root=root)
    assert [(r.config, r.seed) for r in s.runs] == [("a", 0), ("a", 1), ("b", 0), ("b", 1)]
    assert s.runs[2].train.model.options == {"widths": [32]}
    assert s.runs[0].train.train_subset == 128
    assert len({r.key for r in s.runs}) == 4  # seed and model enter the hash


def test_hash_is_stable_and_changes_with_any_setting(tmp_path):
    root = write_tree(tmp_path, GOOD.format(name="toy"))
    k1 = load_study("toy", "smoke", root=root).runs[0].key
    assert load_study("toy", "smoke", root=root).runs[0].key == k1
    write_tree(tmp_path, GOOD.format(name="toy").replace("lr: 0.1", "lr: 0.2"))
    assert load_study("toy", "smoke", root=root).runs[0].key != k1


BAD = [
    ("optimizer: {name: sgd, lr: 0.1}", "optimizer: {name: adamw, lr: 0.1}", "optimizer.name = 'adamw'"),
    ("optimizer: {name: sgd, lr: 0.1}", "optimizer: {name: sgd, lr: -1}", "optimizer.lr = -1"),
    ("optimizer: {name: sgd, lr: 0.1}", "optimizer: {name: sgd, lr: 0}", "optimizer.lr = 0"),
    ("optimizer: {name: sgd, lr: 0.1}", "optimizer: {name: sgd, lr: fast}", "optimizer.lr = 'fast'"),
    ("optimizer: {name: sgd, lr: 0.1}", "optimizer: {name: sgd, lrr: 0.1}", "optimizer.lrr is not a known key"),
    ("batch_size: 64", "batch_size: 0", "batch_size = 0"),
    ("batch_size: 64", "batch_size: 1.5", "batch_size = 1.5"),
    ("dataset: mnist", "dataset: imagenet", "dataset = 'imagenet'"),
    ("model: {name: mlp, widths: [16]}", "model: {name: transformer}", "model.name = 'transformer'"),
    ("model: {name: mlp, widths: [16]}", "model: {name: mlp, depth: 3}", "model.depth is not an option"),
    ("model: {name: mlp, widths: [16]}", "model: {name: mlp, widths: [0]}", "model.widths = [0]"),
    ("epochs: 1", "epochs: -3", "epochs = -3"),
    ("seeds: 0", "seeds: -1", "seeds = -1"),
    ("  - name: a", "  - name: ../../x", "is not a valid name"),
    ("title: t", "title: t\nschedule_typo: 3", "schedule_typo is not a known key"),
    ("configs:", "configs: []\nnotes:", "configs must be a non-empty list"),
    ("title: t", "title: [unclosed", "is not valid YAML"),
]


@pytest.mark.parametrize("old,new,expected", BAD, ids=[b[2] for b in BAD])
def test_bad_study_is_refused_with_one_line(tmp_path, old, new, expected):
    text = GOOD.format(name="toy")
    assert old in text
    root = write_tree(tmp_path, text.replace(old, new, 1))
    with pytest.raises(ConfigError) as err:
        load_study("toy", "smoke", root=root)
    msg = str(err.value)
    assert expected in msg and "\n" not in msg


def test_unknown_study_and_profile_and_unsafe_names_are_refused(tmp_path):
    root = write_tree(tmp_path, GOOD.format(name="toy"))
    with pytest.raises(ConfigError, match="study = 'nope' is not one of: toy"):
        load_study("nope", "smoke", root=root)
    with pytest.raises(ConfigError, match="profile = 'huge' is not one of: smoke"):
        load_study("toy", "huge", root=root)
    with pytest.raises(ConfigError, match="not a valid name"):
        load_study("../../etc/passwd", "smoke", root=root)


def test_bad_budget_in_profile_is_refused(tmp_path):
    root = write_tree(tmp_path, GOOD.format(name="toy"))
    (root / "profiles" / "smoke.yaml").write_text("seeds: 0\n")
    with pytest.raises(ConfigError, match="budget.seeds = 0 must be a positive integer"):
        load_study("toy", "smoke", root=root)


@pytest.mark.parametrize("args,expected", [
    (["check", "--study", "no-such-study", "--profile", "smoke"], "is not one of"),
    (["check", "--study", "../x", "--profile", "smoke"], "not a valid name"),
    (["train", "--study", "fmnist-batchnorm", "--profile", "nope"], "profile = 'nope'"),
    (["train", "--study", "fmnist-batchnorm", "--profile", "smoke", "--config", "xx"], "config = 'xx'"),
])
def test_cli_errors_are_one_line_exit_2_and_write_nothing(artefacts, args, expected):
    out = subprocess.run([sys.executable, "-m", "landscape", *args], capture_output=True, text=True)
    assert out.returncode == 2
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0]
    assert not artefacts.exists()


def test_shipped_studies_validate_under_every_profile():
    from landscape.config import list_profiles, list_studies

    assert "fmnist-batchnorm" in list_studies()
    for profile in list_profiles():
        for study in list_studies(profile=profile):
            assert load_study(study, profile).runs
