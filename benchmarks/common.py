"""Shared machinery of the benchmarks: interleaved repeats, ratio summaries, result rows, the
benchmark models and data, and machine information.

Why interleaved: this host has 2 cores shared with other jobs, and its speed drifts by up to 2x
between minutes (DESIGN.md). Every benchmark therefore runs both sides in one process, one after
the other inside each repeat, and reports the per-repeat ratio (min / median / max over repeats);
absolute seconds are printed for reference only. The order inside a repeat alternates (A B, then
B A, ...) so that a steady drift of the host's load does not favour the side that runs first.
"""
from __future__ import annotations

import copy
import datetime as _dt
import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

import landscape as ls
from landscape.data import Batches, Data


# ----------------------------------------------------------------------------------------------
# interleaving and ratios
# ----------------------------------------------------------------------------------------------
def interleave(sides: dict[str, Callable[[int], Any]], repeats: int,
               log: Callable[[str], None] = print, label: str = "") -> dict[str, list[Any]]:
    """Call every side once per repeat, ``sides[name](repeat)``, alternating the order.

    Repeat 0 runs the sides in the given order, repeat 1 in reverse, and so on (A B, B A, ...).
    Returns each side's results in repeat order, so ``out["a"][r]`` and ``out["b"][r]`` were
    measured next to each other.
    """
    names = list(sides)
    out: dict[str, list[Any]] = {n: [] for n in names}
    for r in range(repeats):
        order = names if r % 2 == 0 else names[::-1]
        for n in order:
            out[n].append(sides[n](r))
        log(f"  {label} repeat {r + 1}/{repeats} done")
    return out


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    """``(fn(), seconds)`` by ``time.perf_counter``."""
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def spread(values) -> dict[str, Any]:
    """min / median / max of a list of numbers (None entries dropped), plus the values."""
    vals = [float(v) for v in values if v is not None and np.isfinite(v)]
    if not vals:
        return {"min": None, "median": None, "max": None, "values": []}
    return {"min": min(vals), "median": statistics.median(vals), "max": max(vals), "values": vals}


@dataclass
class Row:
    """One line of the results table.

    ``ratio`` is the per-repeat ratio named in ``ratio_def`` (min / median / max / values);
    ``target`` says which direction is good (``">= 5"`` or ``"<= 2.5"``) and ``met`` is decided
    on every repeat ("yes"), on the median only ("median only") or not at all ("no"); "n/a" when
    the row has no target or no data.
    """

    benchmark: str            # short name of the benchmark (1..5)
    case: str                 # what exactly was measured
    ours: str                 # our side, in words and numbers
    baseline: str             # the other side, in words and numbers
    ratio_def: str            # e.g. "speed-up (baseline s / ours s)"
    ratio: dict[str, Any]     # spread() of per-repeat ratios
    target: str               # e.g. ">= 5" (the ratio's target), "" for none
    met: str = "n/a"
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def judge(self) -> "Row":
        self.met = judge(self.ratio, self.target)
        return self

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def judge(ratio: dict[str, Any], target: str) -> str:
    """"yes" when every repeat meets ``target`` (">= x" or "<= x"), "median only" when the
    median does, "no" otherwise, "n/a" without a target or data."""
    if not target or ratio.get("median") is None:
        return "n/a"
    op, bound = target.split()
    bound = float(bound)
    ok = (lambda v: v >= bound) if op == ">=" else (lambda v: v <= bound)
    if all(ok(v) for v in ratio["values"]):
        return "yes"
    return "median only" if ok(ratio["median"]) else "no"


def fmt_ratio(r: dict[str, Any], digits: int = 2) -> str:
    if r.get("median") is None:
        return "—"
    return f"{r['min']:.{digits}f} / {r['median']:.{digits}f} / {r['max']:.{digits}f}"


def med(values) -> float:
    return statistics.median(values)


# ----------------------------------------------------------------------------------------------
# models and data shared by several benchmarks
# ----------------------------------------------------------------------------------------------
CNN_OPTIONS = {"channels": [32, 64], "fc": [128], "batch_norm": True}   # the fmnist-batchnorm CNN
MLP_OPTIONS = {"widths": [128]}                                         # MLP-128 of the MNIST sweep
RESNET_OPTIONS: dict[str, Any] = {}                                     # ResNet-20, skip + BN

_CACHE: dict[Any, Any] = {}


def dataset(name: str, root, n: int, seed: int = 0) -> Data:
    """A fixed, seeded subset of the training split (``landscape.subset``: a smaller ``n`` is a
    prefix-subset of a larger one)."""
    return ls.subset(ls.load_data(name, train=True, root=root), n, seed=seed)


def train_briefly(model: nn.Module, data: Data, epochs: int, lr: float = 0.05,
                  batch: int = 64) -> nn.Module:
    """A few epochs of momentum SGD, so probes see a partly trained network (non-zero BN shifts,
    which loss-landscapes' filter normalisation needs: it divides by the norm of every 1-D
    tensor). Returns the model in eval mode."""
    opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    model.train()
    batches = Batches(data, batch, shuffle=True, seed=0)
    for epoch in range(epochs):
        batches.set_epoch(epoch)
        for x, y in batches:
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(model(x), y).backward()
            opt.step()
    return model.eval()


def trained(family: str, dataset_name: str, root, n: int, epochs: int) -> tuple[nn.Module, Data]:
    """The benchmark's ``family`` model (seed 0) briefly trained on ``n`` images; cached per run
    of the harness so that benchmarks 1 and 2 probe the same network. Returns (model, data)."""
    key = (family, dataset_name, str(root), n, epochs)
    if key not in _CACHE:
        data = dataset(dataset_name, root, n)
        torch.manual_seed(0)
        opts = {"cnn": CNN_OPTIONS, "mlp": MLP_OPTIONS, "resnet": RESNET_OPTIONS}[family]
        model = ls.build_model(family, opts, data.shape)
        _CACHE[key] = (train_briefly(model, data, epochs), data)
    model, data = _CACHE[key]
    return copy.deepcopy(model).eval(), data


def channels_last(model: nn.Module, batches) -> tuple[nn.Module, list]:
    """A channels-last copy of ``model`` and the batches as channels-last tensors."""
    m = copy.deepcopy(model).to(memory_format=torch.channels_last)
    return m, [(x.contiguous(memory_format=torch.channels_last), y) for x, y in batches]


# ----------------------------------------------------------------------------------------------
# machine
# ----------------------------------------------------------------------------------------------
def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _version(mod: str) -> str:
    try:
        from importlib.metadata import version
        return version(mod)
    except Exception:  # noqa: BLE001 - informational only
        return "not installed"


def machine_info() -> dict[str, Any]:
    """What the timings depend on: CPU, cores, threads, library versions, load, date."""
    try:
        load = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        load = None
    return {
        "date": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
        "omp_num_threads_env": os.environ.get("OMP_NUM_THREADS"),
        "load_average_1_5_15": load,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "torchvision": _version("torchvision"),
        "mkldnn": bool(torch.backends.mkldnn.is_available()),
        "landscape": ls.__version__,
        "loss_landscapes": _version("loss-landscapes"),
        "hessian_eigenthings": _version("hessian-eigenthings"),
        "gpu_used": False,
    }
