"""Which examples each measurement uses: a run's probes measure what that run was trained on.

Defect found in review: the probe subset was drawn with seed 0 from the whole training split,
the training subset with the run's own seed, so for seeds 1 and 2 only a few percent of the
probed examples had been trained on. These tests fail on that behaviour.
"""
from __future__ import annotations

import pytest
import torch

from landscape.config import list_profiles, list_studies, load_study
from landscape.subsets import SPLIT_SIZES, probe_indices, subset_indices, train_indices


def _cases():
    for profile in list_profiles():
        for name in list_studies(profile=profile):
            yield name, profile


@pytest.mark.parametrize("study,profile", list(_cases()))
def test_every_runs_probe_subset_is_inside_its_own_training_subset(study, profile):
    S = load_study(study, profile)
    n_probe, n_hess = S.budget.eval_subset, S.budget.hessian_subset or S.budget.eval_subset
    for run in S.runs:
        train = set(train_indices(run.train).tolist())
        probe = probe_indices(run.train, n_probe)
        hess = probe_indices(run.train, n_hess)
        assert len(probe) == min(n_probe, len(train))
        assert set(probe.tolist()) <= train, (run.config, run.seed)
        assert set(hess.tolist()) <= set(probe.tolist())  # the Hessian subset is a part of it


@pytest.mark.parametrize("study,profile", list(_cases()))
def test_seeds_of_a_configuration_share_their_training_examples(study, profile):
    """A path between two seeds then runs over examples both were trained on."""
    S = load_study(study, profile)
    for config in S.configs:
        runs = S.runs_of(config)
        first = train_indices(runs[0].train)
        for r in runs[1:]:
            assert torch.equal(train_indices(r.train), first), (config, r.seed)


def test_subset_indices_are_nested_and_seeded():
    a, b = subset_indices(1000, 100, seed=0), subset_indices(1000, 300, seed=0)
    assert set(a.tolist()) <= set(b.tolist())
    assert not torch.equal(a, subset_indices(1000, 100, seed=1))
    assert torch.equal(subset_indices(1000, None, seed=5), torch.arange(1000))


def test_probe_data_holds_the_runs_training_examples(data_root):
    """The tensors behind the probe batches are rows of the run's own training subset."""
    from landscape.data import load, subset
    from landscape.subsets import probe_data

    S = load_study("sgd-noise", "smoke")
    run = S.runs_of(S.configs and next(iter(S.configs)))[1]  # seed 1: not the data seed
    batches = probe_data([run], 64, 32, data_root)
    full = load(run.train.dataset, train=True, root=data_root)
    trained_on = subset(full, run.train.train_subset, seed=run.train.data_seed)
    rows = {tuple(r.flatten()[::37].tolist()) for r in trained_on.x}
    xs = torch.cat([x for x, _ in batches])
    assert len(xs) == 64 and all(tuple(r.flatten()[::37].tolist()) in rows for r in xs)


def test_probe_data_refuses_runs_with_different_training_examples(data_root):
    from dataclasses import replace

    from landscape.config import RunSpec
    from landscape.subsets import probe_data

    S = load_study("sgd-noise", "smoke")
    a = S.runs[0]
    b = RunSpec(a.study, a.config, 9, replace(a.train, data_seed=7, seed=9))
    with pytest.raises(ValueError, match="different training examples"):
        probe_data([a, b], 32, 32, data_root)


def test_split_sizes_match_the_datasets(data_root):
    from landscape.data import load

    for name in ("mnist", "fashion_mnist"):
        assert (len(load(name, True, data_root)), len(load(name, False, data_root))) == SPLIT_SIZES[name]
