"""Decoded datasets are cached as checksummed tensors: a job reads them without torchvision."""
from __future__ import annotations

import os
import subprocess
import sys

import torch

from landscape import data as D

CODE = """
import sys, time
t = time.perf_counter()
from landscape.data import load
d = load("fashion_mnist", train=False)
print(len(d), "torchvision" in sys.modules, round(time.perf_counter() - t, 3), float(d.x.sum()))
"""


def _load_in_fresh_process(env):
    out = subprocess.run([sys.executable, "-c", CODE], env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    n, imported, _, total = out.stdout.split()
    return int(n), imported == "True", float(total)


def test_a_second_process_reads_the_cache_without_torchvision(tmp_path, data_root):
    env = dict(os.environ, LANDSCAPE_ARTEFACTS=str(tmp_path), LANDSCAPE_DATA=str(data_root))
    first = _load_in_fresh_process(env)
    assert first[:2] == (10_000, True)  # decoded by torchvision, then cached
    assert list((tmp_path / "cache" / "data").glob("fashion_mnist-test-*.pt"))
    second = _load_in_fresh_process(env)
    assert second[:2] == (10_000, False) and second[2] == first[2]  # the same tensors


def test_a_corrupted_cache_is_detected_and_decoded_again(tmp_path, data_root, monkeypatch):
    monkeypatch.setenv("LANDSCAPE_ARTEFACTS", str(tmp_path))
    D._load_cached.cache_clear()
    ref = D.load("mnist", train=False, root=data_root)
    (cache,) = (tmp_path / "cache" / "data").glob("mnist-test-*.pt")
    c = torch.load(cache, weights_only=True)
    c["x"][0, 0, 0] ^= 0xFF  # an edited image: the checksum no longer matches
    torch.save(c, cache)
    D._load_cached.cache_clear()
    again = D.load("mnist", train=False, root=data_root)
    assert torch.equal(again.x, ref.x) and torch.equal(again.y, ref.y)
    D._load_cached.cache_clear()
