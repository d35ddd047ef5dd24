"""Mode connectivity: loss along the straight line and along a trained Bezier curve between two
minima, and the barrier on such a path.

Linear path (Goodfellow et al. 2015; Frankle et al. 2020, "Linear Mode Connectivity and the
Lottery Ticket Hypothesis"):

    theta(t) = (1 - t) theta_a + t theta_b

Quadratic Bezier curve (Garipov et al. 2018, "Loss Surfaces, Mode Connectivity, and Fast
Ensembling of DNNs"):

    phi(t) = (1 - t)^2 theta_a + 2 t (1 - t) theta + t^2 theta_b

with the bend ``theta`` trained to minimise ``E_{t ~ U(0, 1)} L(phi(t))``.

Barrier (Frankle et al. 2020): ``max_t f(t) - (f(0) + f(1)) / 2`` of the loss or the error.

BatchNorm: running statistics belong to one set of weights, so a point on a path needs its own.
``bn="recompute"`` (default) resets them and re-estimates them on ``bn_data`` at every point
(BN layers in train mode, everything else in eval mode, cumulative average over batches as in
``torch.optim.swa_utils.update_bn``); ``bn="interpolate"`` interpolates the running statistics
along the same path as the weights (cheaper, an approximation). Models without BN are unaffected.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor, nn
from torch.func import functional_call

from ._common import (BN_TYPES, DataPasses, LossFn, as_generator, check_choice, check_int,
                      channels_last, check_model, check_positive, evaluate_metrics, has_batchnorm,
                      model_device, parse_metric, probe_state, progress_callback, recompute_bn,
                      resolve_loss_fn)

__all__ = ["interpolate", "barrier", "bezier_curve", "BezierCurve"]

BN_MODES = ("recompute", "interpolate")


def _state(model: nn.Module) -> tuple[list[str], list[Tensor], list[str], list[Tensor]]:
    pn, pv = zip(*model.named_parameters()) if any(True for _ in model.parameters()) else ((), ())
    bn, bv = zip(*model.named_buffers()) if any(True for _ in model.buffers()) else ((), ())
    return list(pn), [p.detach() for p in pv], list(bn), [b.detach() for b in bv]


def _check_pair(a: nn.Module, b: nn.Module) -> None:
    na, va, ba, bva = _state(a)
    nb, vb, bb, bvb = _state(b)
    if na != nb or any(x.shape != y.shape for x, y in zip(va, vb)):
        raise ValueError("model_a and model_b must have the same parameters (names and shapes)")
    if ba != bb or any(x.shape != y.shape for x, y in zip(bva, bvb)):
        raise ValueError("model_a and model_b must have the same buffers (names and shapes)")


def _check_ts(ts: Iterable[float]) -> np.ndarray:
    t = np.asarray(ts, dtype=float)
    if t.ndim != 1 or t.size == 0 or not np.all(np.isfinite(t)):
        raise ValueError(f"ts must be a non-empty 1-D array of finite numbers, got {ts!r}")
    return t


PointFn = Callable[[float], tuple[list[Tensor], list[Tensor] | None]]


def _evaluate_path(vessel: nn.Module, point: PointFn, data: Iterable, ts: np.ndarray,
                   loss_fn: LossFn | None, metric, bn: str, bn_data: Iterable | None,
                   progress) -> np.ndarray:
    """Evaluate ``vessel`` with the parameters/buffers returned by ``point(t)`` for each t."""
    names, single = parse_metric(metric)
    loss_fn = resolve_loss_fn(loss_fn)
    device = model_device(vessel)
    passes = DataPasses(data, device)
    bn_passes = DataPasses(bn_data, device, "bn_data") if bn_data is not None else passes
    use_bn = has_batchnorm(vessel)
    out = np.empty((len(names), len(ts)))
    step, close = progress_callback(progress, len(ts), "path")
    params = list(vessel.parameters())
    buffers = list(vessel.buffers())
    with channels_last(vessel, passes) as passes:
        try:
            for i, t in enumerate(ts):
                pv, bv = point(float(t))
                with torch.no_grad():
                    for p, v in zip(params, pv):
                        p.copy_(v)
                    if bv is not None:
                        for b, v in zip(buffers, bv):
                            b.copy_(v)
                if use_bn and bn == "recompute":
                    recompute_bn(vessel, bn_passes)
                vessel.eval()
                out[:, i] = evaluate_metrics(vessel, passes, loss_fn, names)
                step(i)
        finally:
            close()
    return out[0] if single else out


def _lerp_buffers(ba: Sequence[Tensor], bb: Sequence[Tensor], t: float) -> list[Tensor]:
    # integer buffers (num_batches_tracked) are not interpolated: keep model_a's
    return [torch.lerp(x, y.to(x.dtype), t) if x.is_floating_point() else x for x, y in zip(ba, bb)]


def interpolate(model_a: nn.Module, model_b: nn.Module, data: Iterable, ts: Iterable[float],
                bn: str = "recompute", bn_data: Iterable | None = None, *,
                loss_fn: LossFn | None = None, metric: str | Sequence[str] = "loss",
                progress: bool | Callable[[int, int], None] = False) -> np.ndarray:
    """Loss (and/or error) along the straight line between two models' weights.

    Measures ``L((1 - t) theta_a + t theta_b)`` for each ``t`` in ``ts``: the sample-weighted mean
    loss over all of ``data`` (nats for cross-entropy), or accuracy/error fractions. All
    parameters are interpolated (trainable or not). Evaluation in eval mode. BN running
    statistics are recomputed on ``bn_data`` (default: ``data``) at every point with
    ``bn="recompute"``, or interpolated linearly with ``bn="interpolate"``. ``model_a`` serves as
    the vessel: its mode, parameters and buffers are restored exactly afterwards; ``model_b`` is
    only read.

    Args:
        model_a, model_b: two networks of the same architecture.
        data: iterable of ``(inputs, targets)`` batches to evaluate on.
        ts: path positions (0 = model_a, 1 = model_b; values outside [0, 1] extrapolate).
        bn: ``"recompute"`` or ``"interpolate"`` (ignored for models without BN).
        bn_data: batches for re-estimating BN statistics (use training data); default ``data``.
        loss_fn: ``loss_fn(outputs, targets)`` -> batch-mean loss; None = cross-entropy.
        metric: ``"loss"``, ``"accuracy"``, ``"error"``, ``"both"`` (loss, accuracy) or a
            sequence, e.g. ``("loss", "error")``.
        progress: True for a tqdm bar, or a callable ``progress(i, total)``.

    Returns:
        shape ``(len(ts),)`` for one metric, ``(n_metrics, len(ts))`` for several.

    Raises:
        ValueError: for models of different architectures, an unknown ``bn`` or metric, or
            malformed ``ts``/``data``.

    Example:
        >>> ts = np.linspace(0, 1, 11)
        >>> loss, err = interpolate(a, b, test, ts, bn_data=train, metric=("loss", "error"))
        >>> barrier(loss), barrier(err)
    """
    check_model(model_a, "model_a")
    check_model(model_b, "model_b")
    check_choice("bn", bn, BN_MODES)
    _check_pair(model_a, model_b)
    t_arr = _check_ts(ts)
    _, pa, _, ba = _state(model_a)
    _, pb, _, bb = _state(model_b)
    with probe_state(model_a, model_b):
        pa, pb = [p.clone() for p in pa], [p.clone() for p in pb]  # model_a may be model_b
        ba, bb = [b.clone() for b in ba], [b.clone() for b in bb]

        def point(t: float):
            ps = [torch.lerp(x, y, t) for x, y in zip(pa, pb)]
            return ps, (_lerp_buffers(ba, bb, t) if bn == "interpolate" else None)

        return _evaluate_path(model_a, point, data, t_arr, loss_fn, metric, bn, bn_data, progress)


def barrier(values: Sequence[float] | np.ndarray) -> float:
    """Barrier height on a path: ``max(values) - (values[0] + values[-1]) / 2``.

    ``values`` are a metric along a path ordered from one end to the other (e.g. the output of
    :func:`interpolate`); the barrier is in the metric's units (Frankle et al. 2020). A value
    <= 0 means no barrier: the path never rises above the endpoints' mean.

    Raises:
        ValueError: if ``values`` is not 1-D with at least 2 finite entries.
    """
    v = np.asarray(values, dtype=float)
    if v.ndim != 1 or v.size < 2 or not np.all(np.isfinite(v)):
        raise ValueError(f"values must be a 1-D array of at least 2 finite numbers, got shape "
                         f"{v.shape}")
    return float(v.max() - 0.5 * (v[0] + v[-1]))


@dataclass
class BezierCurve:
    """A trained quadratic Bezier curve ``phi(t) = (1-t)^2 a + 2t(1-t) bend + t^2 b``.

    Attributes:
        start, bend, end: parameter tensors (all parameters, ``named_parameters`` order).
        start_buffers, end_buffers: the end models' buffers (used by ``bn="interpolate"``).
        history: mean training loss of each epoch.
    """

    start: list[Tensor]
    bend: list[Tensor]
    end: list[Tensor]
    start_buffers: list[Tensor]
    end_buffers: list[Tensor]
    history: list[float] = field(default_factory=list)

    def point(self, t: float) -> list[Tensor]:
        """Parameters at ``t`` (t = 0: start, t = 1: end, exactly)."""
        c0, c1, c2 = (1 - t) ** 2, 2 * t * (1 - t), t ** 2
        return [c0 * a + c1 * m + c2 * b for a, m, b in zip(self.start, self.bend, self.end)]

    def evaluate(self, model: nn.Module, data: Iterable, ts: Iterable[float],
                 loss_fn: LossFn | None = None, metric: str | Sequence[str] = "loss",
                 bn: str = "recompute", bn_data: Iterable | None = None, *,
                 progress: bool | Callable[[int, int], None] = False) -> np.ndarray:
        """Loss (and/or error) along the curve, like :func:`interpolate` along the line.

        ``model`` (same architecture; e.g. model_a) is the vessel whose weights are set to
        ``phi(t)``; its mode, parameters and buffers are restored afterwards. Evaluation in eval
        mode; BN statistics recomputed on ``bn_data`` (default ``data``) at every point, or
        interpolated linearly between the end models' (``bn="interpolate"``).

        Raises:
            ValueError: for a model that does not match the curve, an unknown ``bn``/metric or
                malformed ``ts``/``data``.
        """
        check_model(model)
        check_choice("bn", bn, BN_MODES)
        _, pv, _, bv = _state(model)
        if len(pv) != len(self.start) or any(p.shape != s.shape for p, s in zip(pv, self.start)):
            raise ValueError("model does not match the curve's parameters")
        t_arr = _check_ts(ts)
        with probe_state(model):
            def point(t: float):
                if bn == "interpolate":
                    return self.point(t), _lerp_buffers(self.start_buffers, self.end_buffers, t)
                return self.point(t), None

            return _evaluate_path(model, point, data, t_arr, loss_fn, metric, bn, bn_data, progress)


def bezier_curve(model_a: nn.Module, model_b: nn.Module, train_data: Iterable, *,
                 loss_fn: LossFn | None = None, epochs: int = 10, lr: float = 0.05,
                 momentum: float = 0.9, weight_decay: float = 0.0, seed: int = 0,
                 progress: bool | Callable[[int, int], None] = False) -> BezierCurve:
    """Train the bend of a quadratic Bezier curve between two minima (Garipov et al. 2018).

    Minimises ``E_{t ~ U(0,1)} L(phi(t))`` over the bend ``theta`` (initialised at the midpoint of
    the end points) by SGD with momentum, one ``t`` drawn per batch; only parameters with
    ``requires_grad`` in ``model_a`` are bent, the others follow the straight line. During
    training BN layers use batch statistics (train mode, as Garipov et al.), every other
    module is in eval mode (no dropout). Neither model is changed: ``model_a`` serves as the
    functional template and is restored exactly (mode, parameters, buffers).

    Evaluate the result with :meth:`BezierCurve.evaluate` (eval mode, BN statistics recomputed
    per point) and :func:`barrier`.

    Args:
        model_a, model_b: the end points (same architecture).
        train_data: iterable of ``(inputs, targets)`` batches used for training.
        loss_fn: ``loss_fn(outputs, targets)`` -> batch-mean loss; None = cross-entropy.
        epochs: passes over ``train_data``.
        lr, momentum, weight_decay: SGD settings for the bend.
        seed: seed of the ``t`` draws.
        progress: True for a tqdm bar over epochs, or a callable ``progress(i, total)``.

    Returns:
        :class:`BezierCurve` with the trained ``bend`` and per-epoch ``history``.

    Raises:
        ValueError: for models of different architectures, ``epochs < 1``, ``lr <= 0``,
            ``momentum``/``weight_decay`` < 0, or malformed ``train_data``.

    Example:
        >>> curve = bezier_curve(a, b, train, epochs=20)
        >>> barrier(curve.evaluate(a, test, np.linspace(0, 1, 21), bn_data=train))
    """
    check_model(model_a, "model_a")
    check_model(model_b, "model_b")
    _check_pair(model_a, model_b)
    epochs = check_int("epochs", epochs, 1)
    lr = check_positive("lr", lr)
    momentum = check_positive("momentum", momentum, allow_zero=True)
    weight_decay = check_positive("weight_decay", weight_decay, allow_zero=True)
    loss_fn_ = resolve_loss_fn(loss_fn)
    gen = as_generator(seed)
    names, pa, bnames, ba = _state(model_a)
    _, pb, _, bb = _state(model_b)
    trainable_mask = [p.requires_grad for p in model_a.parameters()]
    passes = DataPasses(train_data, model_device(model_a), "train_data")
    step, close = progress_callback(progress, epochs, "bezier")
    with probe_state(model_a, model_b):
        start = [p.clone() for p in pa]
        end = [p.clone() for p in pb]
        bend = [(0.5 * (a + b)).clone().requires_grad_(m)
                for a, b, m in zip(start, end, trainable_mask)]
        opt = torch.optim.SGD([m for m, k in zip(bend, trainable_mask) if k], lr=lr,
                              momentum=momentum, weight_decay=weight_decay)
        model_a.eval()
        for m in model_a.modules():
            if isinstance(m, BN_TYPES):
                m.train()
        buffers = {n: b.clone() for n, b in zip(bnames, ba)}  # BN updates these, not model_a's
        history = []
        try:
            for epoch in range(epochs):
                total, n = 0.0, 0
                for x, y, bs in passes:
                    t = float(torch.rand((), generator=gen))
                    c0, c1, c2 = (1 - t) ** 2, 2 * t * (1 - t), t ** 2
                    with torch.enable_grad():
                        params = {nm: c0 * a + c1 * m + c2 * b
                                  for nm, a, m, b in zip(names, start, bend, end)}
                        loss = loss_fn_(functional_call(model_a, (params, buffers), (x,)), y)
                        opt.zero_grad(set_to_none=True)
                        loss.backward()
                    opt.step()
                    total += float(loss.detach()) * bs
                    n += bs
                history.append(total / n)
                step(epoch)
        finally:
            close()
        curve = BezierCurve(start=start, bend=[m.detach().clone() for m in bend], end=end,
                            start_buffers=[b.clone() for b in ba],
                            end_buffers=[b.clone() for b in bb],
                            history=history)
    return curve
