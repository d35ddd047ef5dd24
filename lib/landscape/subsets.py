"""Which examples each measurement uses.

The rule (a referee's first question of any landscape number): a run's *training-loss* measures —
its loss at the end, Hessian, sharpness, surfaces, barriers — are taken on examples that run was
trained on; *test* measures on the test split.

* **Training subset.** Every run of a configuration trains on the same ``train_subset`` examples
  of the training split, drawn with ``TrainSpec.data_seed`` (default 0); the run's ``seed`` sets
  its initialisation and batch order only. A path between two seeds therefore runs over examples
  both were trained on. (With ``train_subset: null`` — the ``paper`` profile — it is the whole
  split.)
* **Probe subset.** ``n`` examples of that training subset, drawn with seed 0: the same for every
  seed of a configuration, and a smaller ``n`` gives a part of a larger one (the Hessian subset is
  inside the probe subset).
* **Test subset.** ``n`` examples of the test split, drawn with seed 0.

Indices are positions in the dataset's split (see :data:`SPLIT_SIZES`), so which examples a run
uses can be checked without loading any data.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

__all__ = ["SPLIT_SIZES", "subset_indices", "train_indices", "probe_indices", "probe_data", "test_data"]

# (training split, test split) sizes of each dataset, as torchvision reads them
SPLIT_SIZES = {"mnist": (60_000, 10_000), "fashion_mnist": (60_000, 10_000), "cifar10": (50_000, 10_000)}


def subset_indices(n_total: int, n: int | None, seed: int = 0) -> Tensor:
    """Sorted positions of a seeded random subset of ``n`` of ``n_total`` items (all when ``n`` is
    None or ≥ ``n_total``). The first ``n`` of one seeded permutation: for one seed, a smaller
    ``n`` gives a subset of a larger one.

    Example:
        >>> subset_indices(10, 3, seed=0).tolist()
        [1, 4, 7]
        >>> set(subset_indices(10, 3).tolist()) <= set(subset_indices(10, 6).tolist())
        True
    """
    if n is None or n >= n_total:
        return torch.arange(n_total)
    if n <= 0:
        raise ValueError(f"subset size n = {n!r} must be positive")
    g = torch.Generator().manual_seed(int(seed))
    return torch.randperm(n_total, generator=g)[:n].sort().values


def train_indices(spec, n_total: int | None = None) -> Tensor:
    """Positions in the training split of the examples a run with ``spec`` (a ``TrainSpec``)
    trains on."""
    n_total = n_total or SPLIT_SIZES[spec.dataset][0]
    return subset_indices(n_total, spec.train_subset, spec.data_seed)


def probe_indices(spec, n: int | None, n_total: int | None = None) -> Tensor:
    """Positions in the training split of the probe subset of a run: ``n`` of its own training
    examples, drawn with seed 0 (all of them when ``n`` is None or larger)."""
    train = train_indices(spec, n_total)
    return train[subset_indices(len(train), n, seed=0)]


def _one_training_set(runs: Sequence) -> object:
    runs = list(runs)
    if not runs:
        raise ValueError("probe_data needs at least one run")
    first = runs[0].train
    for r in runs[1:]:
        t = r.train
        if (t.dataset, t.train_subset, t.data_seed) != (first.dataset, first.train_subset, first.data_seed):
            raise ValueError(f"runs {runs[0].config}/seed{runs[0].seed} and {r.config}/seed{r.seed} were "
                             "trained on different training examples (dataset, train_subset or "
                             "data_seed differ): probe them one at a time")
    return first


def probe_data(runs: Sequence, n: int | None, batch_size: int, data_root=None):
    """The probe subset of ``runs`` (which must share their training examples) as evaluation
    batches: ``n`` examples of their own training subset (see the module docstring).

    Raises:
        ValueError: the runs were trained on different examples.
    """
    from .data import Batches, Data, load

    spec = _one_training_set(runs)
    full = load(spec.dataset, train=True, root=data_root)
    idx = probe_indices(spec, n, len(full))
    return Batches(Data(full.name, full.x[idx].contiguous(), full.y[idx].contiguous()), batch_size)


def test_data(dataset: str, n: int | None, batch_size: int, data_root=None):
    """``n`` examples of the test split of ``dataset`` (seed 0) as evaluation batches."""
    from .data import Batches, load, subset

    return Batches(subset(load(dataset, train=False, root=data_root), n, seed=0), batch_size)


test_data.__test__ = False  # not a pytest test
