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
* What a probe cannot measure is refused in one line that starts with the probe's name and says
  what to do (:func:`probe_name`): a model whose forward returns a dict or a tuple with the
  default loss (pass a ``loss_fn`` that picks the logits), a ``loss_fn`` that does not reduce to
  a scalar, a non-finite loss (naming the batch and whether its inputs, the model's outputs or
  the loss are at fault), a ``DataLoader`` that holds different examples on each pass, and a
  model PyTorch cannot differentiate twice (the Hessian probes).
"""
from __future__ import annotations

import math
import sys
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
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


_PROBE_MODULES = ("landscape.probes", "landscape.resumable")


def probe_name() -> str:
    """Name of the public probe being run: the outermost public function (or method, as
    ``Class.method``) of ``landscape.probes`` on the call stack, e.g. ``hessian_eigenvalues``
    when it runs ``HessianOperator.matvec`` inside; ``"landscape"`` outside any probe.

    Only called to word an error message, so walking the stack costs nothing in a probe that
    succeeds.
    """
    name = "landscape"
    frame = sys._getframe(1)
    while frame is not None:
        module = frame.f_globals.get("__name__", "")
        code = frame.f_code
        if module.startswith(_PROBE_MODULES) and not code.co_name.startswith("_"):
            qual = getattr(code, "co_qualname", code.co_name)
            if "<" not in qual:  # not a lambda, comprehension or local function
                name = qual
        frame = frame.f_back
    return name


def _describe(obj: Any) -> str:
    if isinstance(obj, Tensor):
        return f"a tensor of shape {tuple(obj.shape)}"
    if isinstance(obj, Mapping):
        keys = [repr(k) for k in list(obj)[:6]]
        return "a dict (keys " + ", ".join(keys) + (", ..." if len(obj) > 6 else "") + ")"
    if isinstance(obj, (tuple, list)):
        return f"a {type(obj).__name__} of {len(obj)}"
    return f"a {type(obj).__name__}"


def _scores(t: Any) -> bool:
    return isinstance(t, Tensor) and t.is_floating_point() and t.dim() == 2


def _pick_logits(out: Any) -> str:
    """Python for the part of a non-tensor model output that most likely holds the logits."""
    if isinstance(out, Mapping):
        keys = list(out)
        key = next((k for k in keys if k == "logits"),
                   next((k for k in keys if _scores(out[k])), keys[0] if keys else "logits"))
        return f"out[{key!r}]"
    fields = getattr(out, "_fields", None)  # a namedtuple
    if fields and "logits" in fields:
        return "out.logits"
    if isinstance(out, (tuple, list)):
        return f"out[{next((i for i, t in enumerate(out) if _scores(t)), 0)}]"
    if hasattr(out, "logits"):
        return "out.logits"
    return "out.<logits>"


def _not_scores_message(out: Any) -> str:
    return (f"{probe_name()}: the model returned {_describe(out)}, but the default loss is "
            f"cross-entropy on a tensor of class scores; pass loss_fn=lambda out, y: "
            f"F.cross_entropy({_pick_logits(out)}, y)")


class _CheckedLoss:
    """``loss_fn`` with the checks every probe needs: a tensor of class scores for the default
    cross-entropy, a scalar result, and a finite one (else :func:`nonfinite_message`)."""

    def __init__(self, fn: LossFn, default: bool) -> None:
        self.fn, self.default = fn, default

    def __call__(self, out: Any, y: Any) -> Tensor:
        if self.default and not isinstance(out, Tensor):
            raise TypeError(_not_scores_message(out))
        loss = self.fn(out, y)
        if not isinstance(loss, Tensor) or loss.numel() != 1:
            raise ValueError(f"{probe_name()}: loss_fn returned {_describe(loss)}; it must return "
                             "the batch's mean loss as a scalar tensor: use reduction='mean' "
                             "(or .mean())")
        if not bool(torch.isfinite(loss.detach()).all()):
            value = float(loss.detach().reshape(()))
            raise ValueError(nonfinite_message(f"the loss is {value}", out))
        return loss


def resolve_loss_fn(loss_fn: LossFn | None) -> LossFn:
    """``None`` means cross-entropy with mean reduction over the batch (nats).

    The result is wrapped with the checks of the module docstring: a model output that is not a
    tensor with the default loss, a loss that is not a scalar tensor or not finite are refused
    in one line.
    """
    if isinstance(loss_fn, _CheckedLoss):
        return loss_fn
    if loss_fn is None:
        return _CheckedLoss(F.cross_entropy, default=True)
    if not callable(loss_fn):
        raise ValueError(f"loss_fn must be callable(outputs, targets) -> scalar, got {loss_fn!r}")
    return _CheckedLoss(loss_fn, default=False)


def has_nonfinite(obj: Any) -> bool:
    """True when a floating tensor in ``obj`` (a tensor, or a dict/list/tuple of them) holds
    NaN or Inf."""
    if isinstance(obj, Tensor):
        return obj.is_floating_point() and not bool(torch.isfinite(obj).all())
    if isinstance(obj, Mapping):
        return any(has_nonfinite(v) for v in obj.values())
    if isinstance(obj, (tuple, list)):
        return any(has_nonfinite(v) for v in obj)
    return False


def nonfinite_message(what: str, out: Any = None, batch: tuple | None = None) -> str:
    """One line on a non-finite loss, gradient or Hessian-vector product (``what``, e.g. "the
    loss is nan"): the probe, the batch (``(name, index, size, inputs)``; default: the last one
    a :class:`DataPasses` yielded), and which of inputs, model outputs or loss_fn to check."""
    where, x = "on a batch", None
    batch = batch if batch is not None else last_batch()
    if batch is not None:
        name, index, n, x = batch
        where = f"on batch {index} of {name} (0-based, {n} samples)"
    if x is not None and has_nonfinite(x):
        hint = ("its inputs contain NaN or Inf: check the data (missing values, a normalisation "
                "dividing by a zero standard deviation) before probing")
    elif out is None or has_nonfinite(out):
        hint = ("its inputs are finite: check the model's weights and buffers for NaN or Inf (a "
                "diverged run?), or probe closer to its weights")
    else:
        hint = ("the inputs and the model's outputs are finite: check loss_fn (a log of 0?) and "
                "the targets")
    return f"{probe_name()}: {what} {where}; {hint}"


def second_derivative_error(err: RuntimeError) -> NotImplementedError | None:
    """The one-line refusal for a model PyTorch cannot differentiate twice, or None when ``err``
    is another error (raised by the Hessian probes around their second backward pass)."""
    first = str(err).strip().splitlines()[0] if str(err).strip() else ""
    if "derivative for" not in first or "not implemented" not in first:
        return None
    return NotImplementedError(
        f"{probe_name()}: the model uses an operation PyTorch cannot differentiate twice "
        f"({first}); the Hessian probes need second derivatives: replace that layer (e.g. nn.Hardsigmoid by "
        "nn.Sigmoid), or use the first-order probes (loss_surface, sharpness, interpolate, "
        "gradient_norms)")


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
# The batch a DataPasses yielded last (name, index, size, inputs): read only to word the message
# on a non-finite loss, which the loss check raises without knowing where its batch came from.
_LAST_BATCH = threading.local()


def last_batch() -> tuple | None:
    """``(name, index, size, inputs)`` of the batch a :class:`DataPasses` yielded last (for
    error messages), or None."""
    return getattr(_LAST_BATCH, "batch", None)


def _check_loader(data: Any, name: str) -> None:
    """Refuse a DataLoader whose passes hold different examples (the probes pass many times)."""
    from torch.utils.data import (DataLoader, RandomSampler, SubsetRandomSampler,
                                  WeightedRandomSampler)

    if not isinstance(data, DataLoader):
        return
    batches = data.batch_sampler
    sampler = getattr(batches, "sampler", None) if batches is not None else data.sampler
    resampled = isinstance(sampler, WeightedRandomSampler) or (
        isinstance(sampler, RandomSampler)
        and (sampler.replacement or getattr(sampler, "_num_samples", None) is not None))
    if resampled:
        raise ValueError(
            f"{probe_name()}: {name} is a DataLoader whose sampler draws examples at random "
            "(with replacement or a num_samples), so it holds different examples on each pass, "
            "and the probes pass over the data many times; use a fixed subset "
            "(torch.utils.data.Subset) with shuffle=False")
    drop_last = getattr(batches, "drop_last", False) if batches is not None else data.drop_last
    if drop_last and isinstance(sampler, (RandomSampler, SubsetRandomSampler)):
        raise ValueError(
            f"{probe_name()}: {name} is a DataLoader with shuffle=True and drop_last=True, so it "
            "holds different examples on each pass, and the probes pass over the data many times "
            "(a Hessian would change between products); use drop_last=False (or shuffle=False)")


def _pair_hint(batch: Any) -> str:
    if isinstance(batch, Mapping):
        keys = list(batch)[:2]
        pick = ", ".join(f"b[{k!r}]" for k in keys) if len(keys) == 2 else "b[...], b[...]"
        return (f"a dict with keys {', '.join(map(repr, list(batch)))}; pass (inputs, targets) "
                f"pairs, e.g. [({pick}) for b in loader]")
    if isinstance(batch, (tuple, list)):
        return (f"a {type(batch).__name__} of length {len(batch)}; pass (inputs, targets) pairs, "
                "e.g. [(b[0], b[1]) for b in loader]")
    return f"a {type(batch).__name__}; wrap a single batch as [(inputs, targets)]"


class DataPasses:
    """Re-iterable view of ``data`` yielding ``(inputs, targets, batch_size)`` on ``device``.

    Tensors in inputs given as a dict, list or tuple are moved too. A ``DataLoader`` that holds
    different examples on each pass (drawing with replacement, or shuffling with
    ``drop_last=True``) is refused: the probes pass over the data many times.
    """

    def __init__(self, data: Iterable, device: torch.device, name: str = "data") -> None:
        if data is None or isinstance(data, (Tensor, str, bytes)) or not isinstance(data, Iterable):
            raise ValueError(f"{name} must be an iterable of (inputs, targets) batches, "
                             f"got {type(data).__name__}")
        _check_loader(data, name)
        if isinstance(data, Iterator):  # one-shot: keep the batches for the many passes to come
            data = list(data)
        self.data, self.device, self.name = data, device, name

    def __iter__(self) -> Iterator[tuple[Any, Any, int]]:
        empty = True
        last = None
        try:
            for index, batch in enumerate(self.data):
                if (isinstance(batch, Tensor) or not isinstance(batch, (tuple, list))
                        or len(batch) != 2):
                    raise ValueError(f"{probe_name()}: {self.name} must yield (inputs, targets) "
                                     "pairs, got " + _pair_hint(batch))
                x, y = batch
                x, y = _to(x, self.device), _to(y, self.device)
                n = batch_size(x, y)
                if n > 0:
                    empty = False
                    last = _LAST_BATCH.batch = (self.name, index, n, x)
                    yield x, y, n
        finally:  # (a generator dropped mid-way ends here later: leave a newer batch alone)
            if last is not None and getattr(_LAST_BATCH, "batch", None) is last:
                _LAST_BATCH.batch = None
        if empty:
            raise ValueError(f"{probe_name()}: {self.name} yielded no samples")


def _to(t: Any, device: torch.device) -> Any:
    if isinstance(t, Tensor):
        return t.to(device, non_blocking=True) if t.device != device else t
    if type(t) is dict:
        return {k: _to(v, device) for k, v in t.items()}
    if type(t) in (tuple, list):
        return type(t)(_to(v, device) for v in t)
    return t


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
            if not isinstance(out, Tensor):
                raise ValueError(f"{probe_name()}: metric='accuracy'/'error' needs class scores "
                                 f"of shape (batch, classes), but the model returned "
                                 f"{_describe(out)}; use metric='loss' (with a loss_fn that picks "
                                 "the logits), or wrap the model so that it returns the logits")
            if out.dim() != 2 or not isinstance(y, Tensor):
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
            if not all(g is None or bool(torch.isfinite(g).all()) for g in gs):
                raise ValueError(nonfinite_message("the gradient is not finite"))
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
