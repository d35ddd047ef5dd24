"""Random directions in weight space, normalised per filter, per layer or not at all.

Filter normalisation (Li, Xu, Taylor, Studer & Goldstein 2018, "Visualizing the Loss Landscape of
Neural Nets"): draw ``d ~ N(0, I)`` shaped like the weights; for every parameter tensor with
``dim > 1`` rescale each output slice (index 0: a conv filter, a row of a linear layer)

    d_i <- d_i * ||w_i|| / ||d_i||

so a unit step along d moves each filter by its own norm, which removes the scale invariance of
ReLU/BN networks from the picture. Tensors with ``dim <= 1`` (biases, BN affine parameters) are
zeroed with ``ignore="biasbn"``; otherwise they are set equal to the weights, as in Li et al.'s
code.

Directions are lists of tensors, one per trainable parameter (``requires_grad``) in
``named_parameters`` order. Draws use a CPU generator seeded with ``seed``, so the same seed gives
the same direction on any device.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from ._common import as_generator, check_choice, check_model, trainable

__all__ = ["random_direction", "random_plane", "orthogonalize", "normalize_direction"]

NORMS = ("filter", "layer", "none")
IGNORES = ("biasbn", None)
_EPS = 1e-10


def _check(norm: str, ignore: str | None) -> None:
    check_choice("norm", norm, NORMS)
    check_choice("ignore", ignore, IGNORES)


def _slices(t: Tensor, per: str) -> Tensor:
    """View ``t`` as (slices, elements): one row per filter, one row per tensor, or global."""
    if per == "filter" and t.dim() > 1:
        return t.reshape(t.shape[0], -1)
    return t.reshape(1, -1)


@torch.no_grad()
def normalize_direction(direction: Sequence[Tensor], weights: Sequence[Tensor],
                        norm: str = "filter", ignore: str | None = "biasbn") -> list[Tensor]:
    """Return ``direction`` rescaled against ``weights`` (see the module docstring).

    ``norm="filter"``: each output slice of each ``dim > 1`` tensor gets its weight slice's norm;
    ``"layer"``: each tensor gets its weight tensor's norm; ``"none"``: unchanged. With
    ``ignore="biasbn"`` tensors with ``dim <= 1`` are zeroed; with ``ignore=None`` they are set to
    the weights (filter) or scaled to the weight norm (layer).
    The result is on the weights' device (a direction given on another device is copied there).

    Raises:
        ValueError: for an unknown ``norm``/``ignore`` or mismatched shapes.
    """
    _check(norm, ignore)
    if len(direction) != len(weights):
        raise ValueError(f"direction has {len(direction)} tensors, weights {len(weights)}")
    out = []
    for d, w in zip(direction, weights):
        if d.shape != w.shape:
            raise ValueError(f"direction tensor of shape {tuple(d.shape)} does not match weight "
                             f"shape {tuple(w.shape)}")
        d = d.detach().to(w.device, copy=True)  # the weights' device, whatever the direction's
        if w.dim() <= 1 and ignore == "biasbn":
            d.zero_()
        elif norm == "filter" and w.dim() <= 1:
            d.copy_(w)  # Li et al.'s choice for biases when they are not ignored
        elif norm in ("filter", "layer"):
            ds, ws = _slices(d, norm), _slices(w.detach(), norm)
            scale = ws.norm(dim=1, keepdim=True) / (ds.norm(dim=1, keepdim=True) + _EPS)
            ds.mul_(scale)
        out.append(d)
    return out


def _gaussian_like(params: Sequence[Tensor], gen: torch.Generator) -> list[Tensor]:
    """Gaussian tensors shaped like ``params``: drawn on the CPU generator ``gen`` (the same draws
    on any device), then moved to each parameter's device."""
    return [torch.randn(p.shape, generator=gen, dtype=p.dtype).to(p.device) for p in params]


def random_direction(model: nn.Module, seed: int = 0, norm: str = "filter",
                     ignore: str | None = "biasbn") -> list[Tensor]:
    """A Gaussian random direction in the trainable parameters, filter-normalised by default.

    Measures nothing itself: it is the axis of a loss surface (:func:`loss_surface`). One
    tensor per trainable parameter (``requires_grad``), ``named_parameters`` order, same dtype
    and device. The model is only read.

    Args:
        model: the network whose weights set the scale.
        seed: seed of the Gaussian draw (CPU generator: identical on any device).
        norm: ``"filter"`` (Li et al. 2018), ``"layer"`` (per tensor) or ``"none"``.
        ignore: ``"biasbn"`` zeroes tensors with ``dim <= 1``; None keeps them (set equal to the
            weights for ``"filter"``, as in Li et al.'s code).

    Raises:
        ValueError: for an unknown ``norm``/``ignore``, a negative seed, or a model without
            trainable parameters.

    Example:
        >>> d = random_direction(model, seed=0)  # filter-normalised, biases/BN zeroed
    """
    check_model(model)
    _check(norm, ignore)
    _, params = trainable(model)
    gen = as_generator(seed)
    return normalize_direction(_gaussian_like(params, gen), params, norm, ignore)


@torch.no_grad()
def orthogonalize(d1: Sequence[Tensor], d2: Sequence[Tensor], norm: str = "filter") -> list[Tensor]:
    """Return ``d2`` made orthogonal to ``d1`` while keeping ``d2``'s normalisation.

    Gram-Schmidt is applied per slice: per output slice of each ``dim > 1`` tensor for
    ``norm="filter"``, per tensor for ``"layer"``, on the whole flat vector for ``"none"``; each
    slice is then rescaled to its previous norm. Orthogonal slices make the full vectors
    orthogonal, and every slice keeps its norm, so a filter-normalised ``d2`` stays
    filter-normalised. (A slice with a single element cannot be made orthogonal and is zeroed.)

    Raises:
        ValueError: for an unknown ``norm`` or mismatched tensors.
    """
    check_choice("norm", norm, NORMS)
    if len(d1) != len(d2) or any(a.shape != b.shape for a, b in zip(d1, d2)):
        raise ValueError("d1 and d2 must be lists of tensors with the same shapes")
    if norm == "none":
        v1 = torch.cat([a.reshape(-1) for a in d1]).double()
        v2 = torch.cat([b.reshape(-1) for b in d2]).double()
        n2 = v2.norm()
        v2 = v2 - (v1 @ v2) / (v1 @ v1 + _EPS ** 2) * v1
        v2 = v2 * (n2 / (v2.norm() + _EPS))
        chunks = torch.split(v2, [b.numel() for b in d2])
        return [c.view_as(b).to(b.dtype) for c, b in zip(chunks, d2)]
    out = []
    for a, b in zip(d1, d2):
        a2, b2 = _slices(a.double(), norm), _slices(b.detach().clone().double(), norm)
        nb = b2.norm(dim=1, keepdim=True)
        coef = (a2 * b2).sum(1, keepdim=True) / ((a2 * a2).sum(1, keepdim=True) + _EPS ** 2)
        b2 = b2 - coef * a2
        nb_new = b2.norm(dim=1, keepdim=True)
        b2 = torch.where(nb_new > _EPS * nb.clamp(min=1.0), b2 * nb / nb_new.clamp(min=1e-300),
                         torch.zeros_like(b2))
        out.append(b2.reshape(b.shape).to(b.dtype))
    return out


def random_plane(model: nn.Module, seed: int = 0, norm: str = "filter",
                 ignore: str | None = "biasbn", orthogonal: bool = True
                 ) -> tuple[list[Tensor], list[Tensor]]:
    """Two random directions spanning a plane for a 2D loss surface.

    The first is :func:`random_direction` ``(model, seed, norm, ignore)``; the second is the next
    Gaussian draw of the same generator, normalised the same way and, with ``orthogonal``,
    orthogonalised against the first slice by slice (:func:`orthogonalize`), so both stay
    filter-normalised and are exactly orthogonal.

    Raises:
        ValueError: for an unknown ``norm``/``ignore`` or a negative seed.

    Example:
        >>> dx, dy = random_plane(model, seed=0)
        >>> z = loss_surface(model, batches, [dx, dy], (xs, ys))
    """
    check_model(model)
    _check(norm, ignore)
    _, params = trainable(model)
    gen = as_generator(seed)
    d1 = normalize_direction(_gaussian_like(params, gen), params, norm, ignore)
    d2 = normalize_direction(_gaussian_like(params, gen), params, norm, ignore)
    if orthogonal:
        d2 = orthogonalize(d1, d2, norm)
    return d1, d2
