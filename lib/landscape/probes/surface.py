"""Loss (and accuracy) along one direction or over a plane in weight space.

    f(a)    = L(w + a d)                   1 direction, coords = a 1-D array
    f(a, b) = L(w + a d_x + b d_y)         2 directions, coords = (xs, ys),
                                           result[i, j] at (xs[i], ys[j])

with ``L`` the sample-weighted mean loss over all of ``data`` (Li et al. 2018, "Visualizing the
Loss Landscape of Neural Nets"; Goodfellow, Vinyals & Saxe 2015 for 1D slices). Each grid point
sets the weights in place with ``copy_`` of ``w + a d_x + b d_y`` (no model copies), evaluates
under ``torch.no_grad``, and the original weights are written back at the end.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ._common import (DataPasses, LossFn, channels_last, check_model, evaluate_metrics,
                      model_device, parse_metric, probe_name, probe_state, progress_callback,
                      resolve_loss_fn, trainable)

__all__ = ["loss_surface", "evaluate_loss", "as_directions"]


def _check_finite(which: str, d: list[Tensor], names: Sequence[str]) -> list[Tensor]:
    for t, name in zip(d, names):
        if t.is_floating_point() and not bool(torch.isfinite(t).all()):
            raise ValueError(f"{probe_name()}: {which} has NaN or Inf entries in {name!r}; a "
                             "direction must be finite (check how it was built, e.g. a "
                             "normalisation dividing by a zero norm)")
    return d


def _as_direction(d: Any, params: Sequence[Tensor], n_total: int, which: str) -> list[Tensor]:
    if isinstance(d, np.ndarray):
        d = torch.from_numpy(d)
    if isinstance(d, Tensor):
        if d.dim() != 1 or d.numel() != n_total:
            raise ValueError(f"{which}: a flat direction must be 1-D with {n_total} elements "
                             f"(the trainable parameters), got shape {tuple(d.shape)}")
        sizes = [p.numel() for p in params]
        return [c.reshape(p.shape).to(device=p.device, dtype=p.dtype)
                for c, p in zip(torch.split(d.detach(), sizes), params)]
    if isinstance(d, (list, tuple)):
        if len(d) != len(params):
            raise ValueError(f"{which}: a direction needs one tensor per trainable parameter "
                             f"({len(params)}), got {len(d)}")
        out = []
        for t, p in zip(d, params):
            t = torch.as_tensor(t)
            if t.shape != p.shape:
                raise ValueError(f"{which}: tensor of shape {tuple(t.shape)} does not match "
                                 f"parameter shape {tuple(p.shape)}")
            out.append(t.detach().to(device=p.device, dtype=p.dtype))
        return out
    raise ValueError(f"{which}: expected a list of tensors or a flat vector, got "
                     f"{type(d).__name__}")


def as_directions(model: nn.Module, directions: Any) -> list[list[Tensor]]:
    """Normalise ``directions`` to a list of per-parameter tensor lists.

    Accepts a sequence of 1 or 2 directions, each a list of tensors shaped like the trainable
    parameters or a flat 1-D tensor/array (``flatten_params`` order); a bare single direction
    (a list of parameter-shaped tensors) is accepted too.
    """
    names, params = trainable(model)
    n_total = sum(p.numel() for p in params)
    if isinstance(directions, (Tensor, np.ndarray)):
        directions = [directions]
    if not isinstance(directions, (list, tuple)) or len(directions) == 0:
        raise ValueError("directions must be a list of 1 or 2 directions")
    first = directions[0]
    bare = (isinstance(first, (Tensor, np.ndarray)) and len(directions) == len(params)
            and all(tuple(np.shape(t)) == tuple(p.shape) for t, p in zip(directions, params))
            and not (len(directions) <= 2 and all(np.ndim(t) == 1 and np.size(t) == n_total
                                                   for t in directions)))
    if bare:
        directions = [directions]
    if len(directions) not in (1, 2):
        raise ValueError(f"directions must hold 1 or 2 directions, got {len(directions)}")
    return [_check_finite(f"directions[{i}]", _as_direction(d, params, n_total, f"directions[{i}]"),
                          names) for i, d in enumerate(directions)]


def _finite_axis(a: np.ndarray, name: str) -> np.ndarray:
    bad = np.flatnonzero(~np.isfinite(a))
    if bad.size:
        raise ValueError(f"{probe_name()}: {name}[{bad[0]}] = {a[bad[0]]} is not a finite number; "
                         f"every coordinate must be finite (here {bad.size} of {a.size} are not)")
    return a


def _coords(coords: Any, n_dirs: int) -> list[np.ndarray]:
    """The grid axes as float arrays; refuses empty, non-1-D and non-finite coordinates."""
    if n_dirs == 1:
        a = np.asarray(coords, dtype=float)
        if a.ndim != 1 or a.size == 0:
            raise ValueError(f"with one direction coords must be a non-empty 1-D array, got "
                             f"shape {a.shape}")
        return [_finite_axis(a, "coords")]
    if not isinstance(coords, (list, tuple)) or len(coords) != 2:
        raise ValueError("with two directions coords must be a pair (xs, ys) of 1-D arrays")
    out = [np.asarray(c, dtype=float) for c in coords]
    if any(c.ndim != 1 or c.size == 0 for c in out):
        raise ValueError(f"xs and ys must be non-empty 1-D arrays, got shapes "
                         f"{[c.shape for c in out]}")
    return [_finite_axis(c, name) for c, name in zip(out, ("xs", "ys"))]


def loss_surface(model: nn.Module, data: Iterable, directions: Any, coords: Any,
                 loss_fn: LossFn | None = None, metric: str | Sequence[str] = "loss", *,
                 progress: bool | Callable[[int, int], None] = False) -> np.ndarray:
    """Loss (or accuracy/error) on a line or plane through the model's weights.

    Measures ``L(w + a d_x + b d_y)``: the sample-weighted mean loss over all of ``data`` (nats
    for the default cross-entropy), accuracy or error (fractions in [0, 1]), at each grid
    point. Only the trainable parameters (``requires_grad``) move. Model in eval mode: BN uses
    its running statistics, which are *not* re-estimated at perturbed weights (as in Li et al.
    2018); mode and weights are restored exactly afterwards, also on error. The centre
    ``a = b = 0`` is evaluated like any point when it is in ``coords`` and equals the model's own
    loss exactly.

    Args:
        model: the network (its current weights are the centre).
        data: iterable of ``(inputs, targets)`` batches (train or test subset).
        directions: 1 or 2 directions, each a list of parameter-shaped tensors (e.g. from
            :func:`random_plane`) or a flat vector (e.g. from :func:`pca_directions`).
        coords: 1 direction: 1-D array of steps ``a``; 2 directions: ``(xs, ys)``.
        loss_fn: ``loss_fn(outputs, targets)`` -> batch-mean loss; None = cross-entropy.
        metric: ``"loss"``, ``"accuracy"``, ``"error"``, ``"both"`` (= loss and accuracy) or a
            sequence of these.
        progress: True for a tqdm bar, or a callable ``progress(i, total)`` called per point.

    Returns:
        shape ``(len(a),)`` or ``(len(xs), len(ys))`` for one metric; several metrics are
        stacked on a leading axis in the order asked (``"both"``: loss, accuracy). For contour
        plots use ``plt.contour(xs, ys, z.T)``.

    Raises:
        ValueError: for directions that do not match the trainable parameters or hold NaN/Inf,
            coords of the wrong shape or not finite, an unknown metric, or a non-finite loss
            at a grid point (the line names the batch and what to check).
        TypeError: for a model returning a dict or tuple with ``loss_fn=None`` (the line gives
            the ``loss_fn`` to pass).

    Example:
        >>> dx, dy = random_plane(model, seed=0)
        >>> xs = ys = np.linspace(-1, 1, 21)
        >>> z = loss_surface(model, batches, [dx, dy], (xs, ys))
    """
    check_model(model)
    names, single = parse_metric(metric)
    dirs = as_directions(model, directions)
    axes = _coords(coords, len(dirs))
    loss_fn = resolve_loss_fn(loss_fn)
    passes = DataPasses(data, model_device(model))
    shape = tuple(len(a) for a in axes)
    out = np.empty((len(names),) + shape)
    total = int(np.prod(shape))
    step, close = progress_callback(progress, total, "loss surface")
    with probe_state(model), channels_last(model, passes) as passes:
        _, params = trainable(model)
        w0 = [p.detach().clone() for p in params]
        try:
            for i, index in enumerate(np.ndindex(*shape)):
                with torch.no_grad():
                    for p, w, *ds in zip(params, w0, *dirs):
                        p.copy_(w)
                        for d, ax, k in zip(ds, axes, index):
                            if ax[k] != 0.0:
                                p.add_(d, alpha=float(ax[k]))
                out[(slice(None),) + index] = evaluate_metrics(model, passes, loss_fn, names)
                step(i)
        finally:
            close()
    return out[0] if single else out


def evaluate_loss(model: nn.Module, data: Iterable, loss_fn: LossFn | None = None,
                  metric: str | Sequence[str] = "loss") -> float | np.ndarray:
    """Sample-weighted mean loss (or accuracy/error) of ``model`` over all of ``data``.

    ``sum_b loss_b * n_b / n`` in nats for the default cross-entropy; accuracy/error as fractions.
    Model in eval mode (BN running statistics), mode and weights restored.

    Returns:
        a float for one metric, an array in the order asked for several (``"both"``: loss,
        accuracy).

    Raises:
        ValueError: for an unknown metric or malformed ``data``.
    """
    check_model(model)
    names, single = parse_metric(metric)
    loss_fn = resolve_loss_fn(loss_fn)
    with probe_state(model), channels_last(model, DataPasses(data, model_device(model))) as passes:
        vals = evaluate_metrics(model, passes, loss_fn, names)
    return vals[0] if single else np.asarray(vals)
