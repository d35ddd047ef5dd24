"""Datasets: offline loading, normalisation, subsets, batching, and the missing-data error."""
from __future__ import annotations

import pickle
import subprocess
import sys

import numpy as np
import pytest
import torch

from landscape import data as D


def test_mnist_and_fashion_load_as_normalised_tensors(data_root):
    for name in ("mnist", "fashion_mnist"):
        tr = D.load(name, train=True, root=data_root)
        te = D.load(name, train=False, root=data_root)
        assert tr.x.shape == (60000, 1, 28, 28) and te.x.shape == (10000, 1, 28, 28)
        assert tr.x.dtype == torch.float32 and tr.y.dtype == torch.int64
        assert abs(tr.x.mean().item()) < 0.02 and abs(tr.x.std().item() - 1) < 0.02
        assert torch.bincount(tr.y).tolist()[:2] == ([5923, 6742] if name == "mnist" else [6000, 6000])


def test_subset_is_seeded_and_fixed(data_root):
    full = D.load("mnist", root=data_root)
    a, b, c = D.subset(full, 100, seed=3), D.subset(full, 100, seed=3), D.subset(full, 100, seed=4)
    assert torch.equal(a.y, b.y) and not torch.equal(a.x, c.x)
    assert D.subset(full, None) is full


def test_batches_cover_the_data_once_and_shuffle_reproducibly(data_root):
    small = D.subset(D.load("mnist", root=data_root), 300, seed=0)
    b = D.Batches(small, 128, shuffle=True, seed=1)
    b.set_epoch(2)
    ys = torch.cat([y for _, y in b])
    assert len(b) == 3 and sorted(ys.tolist()) == sorted(small.y.tolist())
    b2 = D.Batches(small, 128, shuffle=True, seed=1)
    b2.set_epoch(2)
    assert torch.equal(ys, torch.cat([y for _, y in b2]))
    b2.set_epoch(3)
    assert not torch.equal(ys, torch.cat([y for _, y in b2]))


def test_missing_data_offline_is_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("LANDSCAPE_OFFLINE", "1")
    D._load_cached.cache_clear()
    with pytest.raises(D.DataNotFound) as err:
        D.load("fashion_mnist", root=tmp_path / "empty")
    msg = str(err.value)
    assert "Fashion-MNIST not found under" in msg and str(tmp_path / "empty") in msg
    assert "LANDSCAPE_DATA" in msg and "\n" not in msg
    assert not (tmp_path / "empty" / "FashionMNIST").exists()


def test_missing_data_cli_exits_2_and_writes_nothing(tmp_path, artefacts):
    env = {"LANDSCAPE_OFFLINE": "1", "LANDSCAPE_ARTEFACTS": str(artefacts), "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-m", "landscape", "train", "--study", "fmnist-batchnorm",
                          "--profile", "smoke", "--data-root", str(tmp_path / "nodata")],
                         capture_output=True, text=True, env=env)
    assert out.returncode == 2, out.stderr
    assert out.stderr.strip().count("\n") == 0 and "Fashion-MNIST not found" in out.stderr
    assert not artefacts.exists()


def test_cifar10_path_reads_a_cifar_format_folder(tmp_path, monkeypatch):
    """CIFAR-10 is not available offline: write a tiny folder in its python-pickle format and read
    it through the same torchvision path (its md5 check is bypassed for the fixture only)."""
    from torchvision.datasets import CIFAR10

    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(0)
    names = [n for n, _ in CIFAR10.train_list] + [n for n, _ in CIFAR10.test_list]
    for n in names:
        batch = {"data": rng.integers(0, 256, (4, 3072), dtype=np.uint8), "labels": list(range(4))}
        with open(folder / n, "wb") as fh:
            pickle.dump(batch, fh)
    with open(folder / "batches.meta", "wb") as fh:
        pickle.dump({"label_names": [f"c{i}" for i in range(10)]}, fh)
    import torchvision.datasets.cifar as tv_cifar

    monkeypatch.setattr(CIFAR10, "_check_integrity", lambda self: True)
    monkeypatch.setattr(tv_cifar, "check_integrity", lambda *a, **k: True)
    D._load_cached.cache_clear()
    tr = D.load("cifar10", train=True, root=tmp_path)
    assert tr.x.shape == (20, 3, 32, 32) and tr.y.tolist()[:4] == [0, 1, 2, 3]
    first = pickle.load(open(folder / "data_batch_1", "rb"))["data"][0].reshape(3, 32, 32)
    mean, std = D.DATASET_INFO["cifar10"][2][0], D.DATASET_INFO["cifar10"][3][0]
    assert torch.allclose(tr.x[0, 0], (torch.tensor(first[0]).float() / 255 - mean) / std, atol=1e-5)
    D._load_cached.cache_clear()


def test_batched_augmentation_crops_and_flips_whole_batches():
    x = torch.arange(2 * 1 * 8 * 8, dtype=torch.float32).view(2, 1, 8, 8)
    g = torch.Generator().manual_seed(0)
    out = D._augment(x, g)
    assert out.shape == x.shape
    # every output row is a (possibly flipped) window of the zero-padded input
    for i in range(2):
        padded = torch.nn.functional.pad(x[i, 0], (4, 4, 4, 4))
        windows = [padded[r:r + 8, c:c + 8] for r in range(9) for c in range(9)]
        assert any(torch.equal(out[i, 0], w) or torch.equal(out[i, 0], w.flip(-1)) for w in windows)
