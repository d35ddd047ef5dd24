"""Hessian spectral density by stochastic Lanczos quadrature (SLQ).

For a unit probe ``v`` (Rademacher / sqrt(n)), ``m`` Lanczos steps from ``v`` give
``T_m = S diag(theta) S^T``; the nodes ``theta_j`` and weights ``tau_j = S[0, j]^2`` form the
m-point Gauss quadrature of the spectral measure of H seen from v:

    v^T f(H) v ~= sum_j tau_j f(theta_j)       (exact for polynomials of degree <= 2m - 1)

Averaging over probes estimates ``(1/n) tr f(H)``, i.e. integrals against the eigenvalue density
``phi(t) = (1/n) sum_i delta(t - lambda_i)`` (Ubaru, Chen & Saad 2017, "Fast estimation of
tr(f(A)) via stochastic Lanczos quadrature"). Replacing the deltas by Gaussians of width sigma
gives the smoothed density plotted by Ghorbani, Krishnan & Xiao 2019 ("An Investigation into
Neural Net Optimization via Hessian Eigenvalue Density"):

    phi_sigma(t) = (1/n_probes) sum_probes sum_j tau_j N(t; theta_j, sigma^2)

The first two moments of the quadrature, ``sum tau theta`` and ``sum tau theta^2``, equal the
Hutchinson estimates ``v^T H v`` and ``||H v||^2`` exactly, so they estimate ``tr(H)/n`` and
``tr(H^2)/n`` without bias.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ._common import LossFn, as_generator, check_int, check_model, check_positive, probe_state
from .hvp import HessianOperator
from .lanczos import lanczos

__all__ = ["Density", "hessian_density"]


@dataclass(frozen=True)
class Density:
    """A smoothed eigenvalue density and the raw quadrature behind it.

    Attributes:
        grid: eigenvalue abscissae (loss units per squared parameter unit).
        density: ``phi_sigma`` on ``grid`` (integrates to ~1 over a grid covering the nodes).
        nodes: all probes' Ritz values, concatenated.
        weights: matching quadrature weights, summing to 1 over all probes.
        sigma: Gaussian broadening width used.
        n_hvp: Hessian-vector products used.
        n_probes: number of random probes.
    """

    grid: np.ndarray
    density: np.ndarray
    nodes: np.ndarray
    weights: np.ndarray
    sigma: float
    n_hvp: int
    n_probes: int

    def moment(self, p: int) -> float:
        """Quadrature estimate of ``(1/n) tr(H^p)`` (p = 1: mean eigenvalue)."""
        return float(np.sum(self.weights * self.nodes ** p))


def broaden(nodes: np.ndarray, weights: np.ndarray, grid: np.ndarray, sigma: float) -> np.ndarray:
    """``sum_j weights_j N(grid; nodes_j, sigma^2)`` (Gaussian broadening of a discrete measure)."""
    z = (grid[:, None] - nodes[None, :]) / sigma
    return (np.exp(-0.5 * z * z) @ weights) / (sigma * np.sqrt(2.0 * np.pi))


def hessian_density(model: nn.Module, data: Iterable, loss_fn: LossFn | None = None,
                    n_probes: int = 5, n_iter: int = 50, grid: int | np.ndarray = 512,
                    sigma: float | None = None, seed: int = 0, *,
                    reuse_graph: bool | None = None) -> Density:
    """Eigenvalue density of the loss Hessian by stochastic Lanczos quadrature.

    Measures the density of eigenvalues (fraction of eigenvalues per unit eigenvalue) of the
    Hessian of the sample-weighted mean loss over all of ``data`` w.r.t. the trainable
    parameters (``requires_grad``); eigenvalues in loss units per squared parameter unit (nats
    for cross-entropy). Model in eval mode (BN running statistics); mode and weights restored.

    Method: SLQ (Ubaru et al. 2017; Ghorbani et al. 2019): ``n_probes`` Rademacher probes, each
    ``n_iter`` Lanczos steps with full reorthogonalisation, Gaussian broadening of width
    ``sigma``. Cost: ``n_probes * n_iter`` Hessian-vector products (fewer if the Krylov space is
    exhausted). The quadrature moments (:meth:`Density.moment`) are unbiased estimates of
    ``tr(H^p)/n`` for ``p <= 2 n_iter - 1``.

    Args:
        model: the network.
        data: iterable of ``(inputs, targets)`` batches.
        loss_fn: ``loss_fn(outputs, targets)`` -> batch-mean loss; None = cross-entropy.
        n_probes: random probe vectors.
        n_iter: Lanczos steps per probe (capped at the number of parameters).
        grid: number of evenly spaced points spanning the nodes +- 5 sigma, or the points.
        sigma: broadening width; None = 1/200 of the nodes' range.
        seed: seed of the probes.
        reuse_graph: keep first-order graphs between products (faster, more memory);
            None: automatic, as in :class:`HessianOperator`.

    Returns:
        :class:`Density` with ``grid``, ``density``, raw ``nodes``/``weights``, ``n_hvp``.

    Raises:
        ValueError: for ``n_probes < 1``, ``n_iter < 1``, ``sigma <= 0``, a grid that is neither
            an integer >= 2 nor a 1-D array, or malformed ``data``.

    Example:
        >>> dens = hessian_density(model, batches, n_probes=5, n_iter=50)
        >>> plt.semilogy(dens.grid, dens.density)
    """
    check_model(model)
    n_probes = check_int("n_probes", n_probes, 1)
    n_iter = check_int("n_iter", n_iter, 1)
    if sigma is not None:
        sigma = check_positive("sigma", sigma)
    if isinstance(grid, (int, np.integer)) and not isinstance(grid, bool):
        check_int("grid", grid, 2)
    else:
        g = np.asarray(grid, dtype=float)
        if g.ndim != 1 or g.size < 1:
            raise ValueError(f"grid must be an integer >= 2 or a 1-D array of points, got {grid!r}")
    gen = as_generator(seed)
    nodes, weights = [], []
    with probe_state(model):
        op = HessianOperator(model, data, loss_fn, reuse_graph=reuse_graph)
        steps = min(n_iter, op.size)
        for _ in range(n_probes):
            v = torch.randint(0, 2, (op.size,), generator=gen, dtype=torch.float64) * 2 - 1
            r = lanczos(op.matvec, op.size, 1, "largest", max_iter=steps, device=op.device,
                        v0=v, fixed_steps=True)
            nodes.append(r.theta)
            weights.append(r.s[0, :] ** 2 / n_probes)
    nodes_a, weights_a = np.concatenate(nodes), np.concatenate(weights)
    lo, hi = float(nodes_a.min()), float(nodes_a.max())
    if sigma is None:
        sigma = max(hi - lo, 1e-12 * max(abs(lo), abs(hi), 1.0)) / 200.0
    if isinstance(grid, (int, np.integer)):
        grid_a = np.linspace(lo - 5 * sigma, hi + 5 * sigma, int(grid))
    else:
        grid_a = np.asarray(grid, dtype=float)
    return Density(grid=grid_a, density=broaden(nodes_a, weights_a, grid_a, sigma),
                   nodes=nodes_a, weights=weights_a, sigma=float(sigma), n_hvp=op.n_hvp,
                   n_probes=n_probes)
