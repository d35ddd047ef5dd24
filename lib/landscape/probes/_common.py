"""Shared machinery of the probes: argument checks, the eval-mode/restore guard, flat parameter
vectors, and sample-weighted evaluation of a loss (and its gradient) over a whole dataset.

Conventions every probe inherits from here (DESIGN.md, "Correctness conventions"):

* ``data`` is any iterable of ``(inputs, targets)`` batches. A one-shot iterator (a generator) is
  materialised into a list once, because probes pass over the data many times.
* The loss over ``data`` is the sample-weighted mean ``sum_b loss_b * n_b / sum_b n_b``, where
  ``loss_b = loss_fn(model(inputs_b), targets_b)`` is a per-batch mean; ``loss_fn=None`` is
  cross-entropy, so losses are in nats.
* The parameters a probe differentiates or perturbs are those with ``requires_grad``, in
  ``model.named_parameters()`` order ("trainable parameters" below).
* :func:`probe_state` puts models in eval mode for the probe's duration and restores every
  module's train/eval flag, every parameter and every buffer bit-identically afterwards, also
  when the probe raises.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

LossFn = Callable[[Tensor, Any], Tensor]

METRICS = ("loss", "accuracy", "error")


# --------------------------------------------------------------------------------------------
# argument checks
# --------------------------------------------------------------------------------------------
def check_choice(name: str, value: Any, allowed: Sequence[Any]) -> None:
    """Raise ValueError naming ``value`` and the allowed values when ``value`` is not allowed."""
    if value not in allowed:
        raise ValueError(f"{name}={value!r} is not allowed; use one of "
                         f"{', '.join(map(repr, allowed))}")


def check_int(name: str, value: Any, minimum: int) -> int:
    """Return ``value`` as int; raise ValueError unless it is an integer >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name}={value!r} must be an integer >= {minimum}")
    return int(value)


def check_positive(name: str, value: Any, allow_zero: bool = False) -> float:
    """Return ``value`` as float; raise ValueError unless it is a finite number > 0 (or >= 0)."""
    ok = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
    ok = ok and math.isfinite(value) and (value >= 0 if allow_zero else value > 0)
    if not ok:
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name}={value!r} must be a finite number {bound}")
    return float(value)


def check_model(model: Any, name: str = "model") -> nn.Module:
    if not isinstance(model, nn.Module):
        raise ValueError(f"{name} must be a torch.nn.Module, got {type(model).__name__}")
    return model


def resolve_loss_fn(loss_fn: LossFn | None) -> LossFn:
    """``None`` means cross-entropy with mean reduction over the batch (nats)."""
    if loss_fn is None:
        return F.cross_entropy
    if not callable(loss_fn):
        raise ValueError(f"loss_fn must be callable(outputs, targets) -> scalar, got {loss_fn!r}")
    return loss_fn


def parse_metric(metric: str | Sequence[str]) -> tuple[tuple[str, ...], bool]:
    """Return (metric names, single). ``"both"`` means ``("loss", "accuracy")``.

    A single name gives results of the grid's shape; a sequence stacks results along a new
    leading axis in the order given.
    """
    if isinstance(metric, str):
        if metric == "both":
            return ("loss", "accuracy"), False
        check_choice("metric", metric, METRICS + ("both",))
        return (metric,), True
    names = tuple(metric)
    if not names:
        raise ValueError("metric must name at least one of 'loss', 'accuracy', 'error'")
    for m in names:
        check_choice("metric", m, METRICS)
    return names, False


# --------------------------------------------------------------------------------------------
# data
# --------------------------------------------------------------------------------------------
class DataPasses:
    """Re-iterable view of ``data`` yielding ``(inputs, targets, batch_size)`` on ``device``."""

    def __init__(self, data: Iterable, device: torch.device, name: str = "data") -> None:
        if data is None or isinstance(data, (Tensor, str, bytes)) or not isinstance(data, Iterable):
            raise ValueError(f"{name} must be an iterable of (inputs, targets) batches, "
                             f"got {type(data).__name__}")
        if isinstance(data, Iterator):  # one-shot: keep the batches for the many passes to come
            data = list(data)
        self.data, self.device, self.name = data, device, name

    def __iter__(self) -> Iterator[tuple[Any, Any, int]]:
        empty = True
        for batch in self.data:
            if isinstance(batch, Tensor) or not isinstance(batch, (tuple, list)) or len(batch) != 2:
                raise ValueError(
                    f"{self.name} must yield (inputs, targets) pairs, got a "
                    f"{type(batch).__name__}" + (f" of length {len(batch)}"
                                                 if isinstance(batch, (tuple, list)) else "")
                    + "; wrap a single batch as [(inputs, targets)]")
            x, y = batch
            x, y = _to(x, self.device), _to(y, self.device)
            n = batch_size(x, y)
            if n > 0:
                empty = False
                yield x, y, n
        if empty:
            raise ValueError(f"{self.name} yielded no samples")


def _to(t: Any, device: torch.device) -> Any:
    return t.to(device, non_blocking=True) if isinstance(t, Tensor) and t.device != device else t


def batch_size(x: Any, y: Any) -> int:
    """Samples in a batch: the targets' leading dimension, else the inputs'."""
    for t in (y, x):
        if isinstance(t, Tensor) and t.dim() >= 1:
            return int(t.shape[0])
    raise ValueError("cannot tell the batch size: neither inputs nor targets is a tensor "
                     "with a leading batch dimension")


def model_device(model: nn.Module) -> torch.device:
    for t in model.parameters():
        return t.device
    for t in model.buffers():
        return t.device
    return torch.device("cpu")


# --------------------------------------------------------------------------------------------
# parameters
# --------------------------------------------------------------------------------------------
def trainable(model: nn.Module) -> tuple[list[str], list[nn.Parameter]]:
    """Names and tensors of the parameters with ``requires_grad`` (named_parameters order)."""
    names, params = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            names.append(name)
            params.append(p)
    if not params:
        raise ValueError("model has no parameters with requires_grad=True; the probes act on "
                         "exactly those")
    return names, params


def flat(tensors: Iterable[Tensor], dtype: torch.dtype | None = None) -> Tensor:
    """Concatenate tensors into one detached 1-D tensor (optionally cast)."""
    out = torch.cat([t.detach().reshape(-1) for t in tensors])
    return out if dtype is None else out.to(dtype)


def unflat(vec: Tensor, like: Sequence[Tensor]) -> list[Tensor]:
    """Split a 1-D tensor into tensors shaped (and typed) like ``like``."""
    sizes = [t.numel() for t in like]
    if vec.dim() != 1 or vec.numel() != sum(sizes):
        raise ValueError(f"flat vector has shape {tuple(vec.shape)}; the trainable parameters "
                         f"need a 1-D vector of {sum(sizes)} elements")
    return [c.view_as(t).to(t.dtype) for c, t in zip(torch.split(vec, sizes), like)]


def flatten_params(model: nn.Module) -> Tensor:
    """Trainable parameters (``requires_grad``) of ``model`` as one detached 1-D tensor.

    The order is ``model.named_parameters()``; this is the coordinate system of every flat
    vector the probes accept or return (Hessian eigenvectors, PCA directions).
    """
    return flat(trainable(check_model(model))[1]).clone()


@torch.no_grad()
def set_params(params: Sequence[Tensor], values: Sequence[Tensor]) -> None:
    for p, v in zip(params, values):
        p.copy_(v)


# --------------------------------------------------------------------------------------------
# the eval-mode / restore guard
# --------------------------------------------------------------------------------------------
class _Snapshot:
    def __init__(self, model: nn.Module) -> None:
        self.modes = [(m, m.training) for m in model.modules()]
        self.params = [(p, p.detach().clone(), p.requires_grad) for p in model.parameters()]
        self.buffers = [(b, b.detach().clone()) for b in model.buffers()]

    @torch.no_grad()
    def restore(self) -> None:
        for p, saved, rg in self.params:
            p.copy_(saved)
            p.requires_grad_(rg)
        for b, saved in self.buffers:
            b.copy_(saved)
        for m, mode in self.modes:
            m.training = mode


@contextmanager
def probe_state(*models: nn.Module) -> Iterator[None]:
    """Put ``models`` in eval mode; on exit restore modes, parameters and buffers exactly.

    Parameters and buffers are copied once on entry and written back with ``copy_`` on exit
    (bit-identical), also when the body raises.
    """
    snaps = [_Snapshot(m) for m in models]
    try:
        for m in models:
            m.eval()
        yield
    finally:
        for s in reversed(snaps):
            s.restore()


class _ChannelsLastPasses:
    """``DataPasses`` whose 4-D inputs come out in channels-last memory format."""

    def __init__(self, passes: "DataPasses") -> None:
        self.passes = passes

    def __iter__(self) -> Iterator[tuple[Any, Any, int]]:
        for x, y, b in self.passes:
            if isinstance(x, Tensor) and x.dim() == 4:
                x = x.contiguous(memory_format=torch.channels_last)
            yield x, y, b


@contextmanager
def channels_last(model: nn.Module, passes: "DataPasses") -> Iterator[Any]:
    """Evaluate a convolutional network in channels-last memory format; yield the passes to use.

    Why: on the CPU, oneDNN's convolutions run faster on NHWC tensors (a loss surface of the
    CNN+BN is 1.27x faster, ``python -m benchmarks --only surface``). Only the strides of the 4-D
    parameters and inputs change, never a value; on exit every 4-D parameter and buffer gets its
    own memory format back, also when the body raises. Models without ``Conv2d`` and
    non-CPU devices pass through unchanged (cuDNN chooses its own layout).
    """
    convs = any(isinstance(m, nn.Conv2d) for m in model.modules())
    if not convs or model_device(model).type != "cpu":
        yield passes
        return
    tensors = [t for t in list(model.parameters()) + list(model.buffers()) if t.dim() == 4]
    was_cl = [t.is_contiguous(memory_format=torch.channels_last) and not t.is_contiguous()
              for t in tensors]
    try:
        with torch.no_grad():
            for t in tensors:
                t.data = t.data.contiguous(memory_format=torch.channels_last)
        yield _ChannelsLastPasses(passes)
    finally:
        with torch.no_grad():
            for t, cl in zip(tensors, was_cl):
                t.data = t.data.contiguous(memory_format=torch.channels_last if cl
                                           else torch.contiguous_format)


BN_TYPES = (nn.modules.batchnorm._BatchNorm,)


def has_batchnorm(model: nn.Module) -> bool:
    return any(isinstance(m, BN_TYPES) for m in model.modules())


@torch.no_grad()
def recompute_bn(model: nn.Module, data: DataPasses) -> None:
    """Reset BN running statistics and re-estimate them from ``data`` (BN layers only in train
    mode, every other module in eval mode, cumulative average over batches as in
    ``torch.optim.swa_utils.update_bn``). Leaves the model in eval mode."""
    bns = [m for m in model.modules() if isinstance(m, BN_TYPES)]
    if not bns:
        return
    momenta = [m.momentum for m in bns]
    try:
        model.eval()
        for m in bns:
            m.reset_running_stats()
            m.momentum = None  # cumulative moving average: every batch counts equally
            m.train()
        for x, _, _ in data:
            model(x)
    finally:
        for m, mom in zip(bns, momenta):
            m.momentum = mom
        model.eval()


# --------------------------------------------------------------------------------------------
# sample-weighted evaluation over a dataset
# --------------------------------------------------------------------------------------------
@torch.no_grad()
def evaluate_metrics(model: nn.Module, data: DataPasses, loss_fn: LossFn,
                     metrics: Sequence[str]) -> list[float]:
    """Sample-weighted mean of each metric over all of ``data`` (model used as is)."""
    need_loss = "loss" in metrics
    need_acc = "accuracy" in metrics or "error" in metrics
    loss_sum = torch.zeros((), dtype=torch.float64)
    correct = 0
    n = 0
    for x, y, b in data:
        out = model(x)
        if need_loss:
            loss_sum = loss_sum + loss_fn(out, y).detach().double().cpu() * b
        if need_acc:
            if not isinstance(out, Tensor) or out.dim() != 2 or not isinstance(y, Tensor):
                raise ValueError("accuracy/error need class scores of shape (batch, classes) "
                                 "and integer targets")
            correct += int((out.argmax(dim=1) == y).sum())
        n += b
    values = {"loss": float(loss_sum) / n, "accuracy": correct / n, "error": 1.0 - correct / n}
    return [values[m] for m in metrics]


def loss_and_grad(model: nn.Module, params: Sequence[Tensor], data: DataPasses,
                  loss_fn: LossFn) -> tuple[float, list[Tensor]]:
    """Sample-weighted dataset loss and its gradient w.r.t. ``params`` (model used as is)."""
    total = torch.zeros((), dtype=torch.float64)
    grads = [torch.zeros_like(p) for p in params]
    n = 0
    with torch.enable_grad():
        for x, y, b in data:
            loss = loss_fn(model(x), y)
            gs = torch.autograd.grad(loss, params, allow_unused=True)
            for acc, g in zip(grads, gs):
                if g is not None:
                    acc.add_(g, alpha=b)
            total = total + loss.detach().double().cpu() * b
            n += b
    for g in grads:
        g.div_(n)
    return float(total) / n, grads


def progress_callback(progress: bool | Callable[[int, int], None], total: int, desc: str):
    """Return (step(i), close()) for ``progress``: False, True (tqdm) or a callable(i, total)."""
    if callable(progress):
        return (lambda i: progress(i, total)), (lambda: None)
    if progress:
        from tqdm.auto import tqdm
        bar = tqdm(total=total, desc=desc)
        return (lambda i: bar.update(1)), bar.close
    return (lambda i: None), (lambda: None)


def as_generator(seed: int) -> torch.Generator:
    """A CPU generator seeded with ``seed`` (draws are identical whatever the model's device)."""
    check_int("seed", seed, 0)
    return torch.Generator(device="cpu").manual_seed(int(seed))


def to_numpy(a: Any) -> np.ndarray:
    if isinstance(a, Tensor):
        return a.detach().cpu().numpy()
    return np.asarray(a)
