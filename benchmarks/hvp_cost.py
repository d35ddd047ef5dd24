"""Benchmark 4: the cost of one Hessian-vector product over the cost of one gradient, same batch.

Batch of ``hvp_batch`` (256) images, model in eval mode (as every probe runs it), float32,
gradient w.r.t. all trainable parameters by ``torch.autograd.grad``. Each HVP variant is timed
next to a gradient in the same repeat and the ratio is taken per repeat:

* library default: ``HessianOperator(model, [(x, y)]).matvec(v)`` — double backward
  (Pearlmutter), float64 vector in and out; what ``hessian_eigenvalues``, ``hessian_trace`` and
  ``hessian_density`` use unless asked otherwise. Its default ``reuse_graph=None`` keeps the
  first-order graph between products for data of up to ``REUSE_GRAPH_MAX_SAMPLES`` samples (this
  batch of 256 is), so a product in steady state is the second backward only.
* ``reuse_graph=False``: forward, first-order graph and double backward for every product (what
  the default does on larger data, to bound memory).
* forward-over-reverse: ``torch.func.jvp`` of ``torch.func.grad`` (one of the issue's techniques).
* channels-last (conv nets): the library default on a channels-last model and batch.

Models: MLP-128 on MNIST, the Fashion-MNIST CNN with BN, ResNet-20 (skip + BN) on Fashion-MNIST.
"""
from __future__ import annotations

import copy
import math

import torch
import torch.nn.functional as F
from torch.func import functional_call, grad, jvp

import landscape as ls
from landscape.probes import HessianOperator

from .common import CNN_OPTIONS, MLP_OPTIONS, RESNET_OPTIONS, Row, dataset, interleave, med, spread, timed

MODELS = {
    "mlp": ("MLP-128", "mnist", MLP_OPTIONS),
    "cnn": ("CNN+BN", "fashion_mnist", CNN_OPTIONS),
    "resnet": ("ResNet-20", "fashion_mnist", RESNET_OPTIONS),
}


def _per_call(fn, calls: int) -> float:
    """Seconds per call of ``fn`` over ``calls`` back-to-back calls (small models: a single
    call of a few milliseconds is below this host's timing noise)."""
    def go():
        for _ in range(calls):
            fn()
    return timed(go)[1] / calls


def _sides(model, x, y, min_seconds: float = 0.25) -> dict:
    params = [p for p in model.parameters() if p.requires_grad]
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    buffers = dict(model.named_buffers())
    gen = torch.Generator().manual_seed(0)
    op = HessianOperator(model, [(x, y)])
    v = torch.randn(op.size, dtype=torch.float64, generator=gen)
    op.matvec(v)  # the default keeps the first-order graph of this small batch after one product
    assert op._graphs is not None
    op_rebuild = HessianOperator(model, [(x, y)], reuse_graph=False)
    vs = tuple(c.view_as(p).float() for c, p in zip(torch.split(v, [p.numel() for p in params]), params))

    def loss_of(ps):
        return F.cross_entropy(functional_call(model, {**dict(zip(names, ps)), **buffers}, (x,)), y)

    fns = {
        "gradient": lambda: torch.autograd.grad(F.cross_entropy(model(x), y), params),
        "HVP, library default": lambda: op.matvec(v),
        "HVP, reuse_graph=False": lambda: op_rebuild.matvec(v),
        "HVP, torch.func jvp(grad)": lambda: jvp(grad(loss_of), (tuple(params),), (vs,)),
    }
    if any(isinstance(m, torch.nn.Conv2d) for m in model.modules()):
        m_cl = copy.deepcopy(model).to(memory_format=torch.channels_last)
        op_cl = HessianOperator(m_cl, [(x.contiguous(memory_format=torch.channels_last), y)])
        op_cl.matvec(v)
        fns["HVP, library default, channels_last"] = lambda: op_cl.matvec(v)
    # the same number of back-to-back calls for every side, enough for >= min_seconds of gradients
    calls = max(1, math.ceil(min_seconds / max(timed(fns["gradient"])[1], 1e-6)))
    return {k: (lambda r, f=f: _per_call(f, calls)) for k, f in fns.items()}, calls


def run(budget, root, log) -> tuple[list[Row], dict]:
    rows, details = [], {}
    for family in budget.hvp_models:
        label, ds_name, opts = MODELS[family]
        data = dataset(ds_name, root, budget.hvp_batch)
        torch.manual_seed(0)
        model = ls.build_model(family, opts, data.shape).eval()
        sides, calls = _sides(model, data.x, data.y, budget.hvp_min_seconds)
        res = interleave(sides, budget.hvp_repeats, log, f"hvp {label}")
        g = res.pop("gradient")
        ratios = {k: spread([h / t for h, t in zip(v, g)]) for k, v in res.items()}
        details[family] = {"model": label, "params": ls.count_params(model),
                           "batch": budget.hvp_batch, "calls_per_timing": calls, "gradient_s": spread(g),
                           "hvp_s": {k: spread(v) for k, v in res.items()}, "ratios": ratios}
        best = min(ratios, key=lambda k: ratios[k]["median"])
        rows.append(Row(
            benchmark="4 HVP / gradient",
            case=f"{label} ({ls.count_params(model):,} params), batch {budget.hvp_batch}",
            ours=f"HessianOperator.matvec (library default): {med(res['HVP, library default']) * 1e3:.0f} ms",
            baseline=f"one gradient: {med(g) * 1e3:.0f} ms",
            ratio_def="cost ratio (HVP s / gradient s)",
            ratio=ratios["HVP, library default"],
            target="<= 2.5",
            note=f"cheapest variant: {best}, median {ratios[best]['median']:.2f}x",
        ).judge())
    return rows, details
