"""Extreme Hessian eigenvalues by the Lanczos method with full reorthogonalisation.

Lanczos (Lanczos 1950; Golub & Van Loan, *Matrix Computations*, ch. 10) builds an orthonormal
Krylov basis ``Q_m`` of ``span{q, Hq, ..., H^(m-1) q}`` and the tridiagonal ``T_m = Q_m^T H Q_m``;
the eigenvalues ``theta_i`` of ``T_m`` (Ritz values) converge to the extreme eigenvalues of H
first. With full reorthogonalisation the residual of a Ritz pair ``(theta_i, y_i = Q_m s_i)`` is

    || H y_i - theta_i y_i || = beta_m * |s_i[m]|,

and there is an eigenvalue of H within that distance of ``theta_i``. We stop when the wanted
pairs' residuals are below ``tol * max|theta|`` or when ``max_iter`` Hessian-vector products are
spent, and report ``converged`` accordingly.

Why not hessian-eigenthings' ``lanczos``: its default budget is ``min(2k, n-1)`` steps (2 steps for
k=1; 10-28 % error on the top eigenvalue, DESIGN.md), it runs a fixed number of steps rather than
stopping on the residual, drops reorthogonalisation above 50 steps, and its breakdown test is an
absolute 1e-12. The products themselves come from :class:`~landscape.probes.hvp.HessianOperator`.

Limitation (any single-vector Krylov method): a multiple eigenvalue is found once per Krylov
breakdown; after a breakdown we restart with a fresh random vector orthogonal to the basis,
which recovers further copies only if the budget allows.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
import scipy.linalg
import torch
from torch import Tensor, nn

from ._common import (LossFn, as_generator, check_choice, check_int, check_model, check_positive,
                      probe_state)
from .hvp import HessianOperator

__all__ = ["Spectrum", "lanczos", "hessian_eigenvalues", "conditioning"]

WHICH = ("largest", "smallest")


@dataclass(frozen=True)
class Spectrum:
    """Extreme eigenvalues of a Hessian.

    Attributes:
        values: the ``k`` eigenvalues found, sorted ascending (numpy float64); loss units per
            squared parameter unit.
        converged: True when every value's residual is below ``tol * max|theta|`` (or the whole
            space was spanned); False when the iteration budget ran out first.
        n_hvp: Hessian-vector products used.
        residuals: ``||H y - theta y||`` of each Ritz pair (same order as ``values``); an exact
            eigenvalue lies within this distance of each value.
        vectors: unit Ritz vectors as columns, shape (n_params, k), same order as ``values``
            (flat in ``flatten_params`` order), or None when not requested.
        which: ``"largest"`` or ``"smallest"``.
    """

    values: np.ndarray
    converged: bool
    n_hvp: int
    residuals: np.ndarray
    vectors: np.ndarray | None = None
    which: str = "largest"


@dataclass(frozen=True)
class _LanczosResult:
    theta: np.ndarray          # all Ritz values, ascending
    residuals: np.ndarray      # per Ritz value
    s: np.ndarray              # eigenvectors of T
    basis: Tensor              # (m, n) Lanczos vectors as rows
    converged: bool
    steps: int


class _Basis:
    """Rows of orthonormal float64 vectors in a buffer that doubles when full (amortised
    O(m n) copying instead of re-stacking the whole basis at every step)."""

    def __init__(self, size: int, cap: int, device) -> None:
        self.cap, self.n = cap, 0
        self.buf = torch.empty(min(cap, 16), size, dtype=torch.float64, device=device)

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> Tensor:
        return self.buf[i]

    def append(self, v: Tensor) -> None:
        if self.n == self.buf.shape[0]:
            grown = torch.empty(min(2 * self.n, self.cap), self.buf.shape[1],
                                dtype=self.buf.dtype, device=self.buf.device)
            grown[:self.n] = self.buf[:self.n]
            self.buf = grown
        self.buf[self.n] = v
        self.n += 1

    def project_out(self, w: Tensor) -> Tensor:
        Q = self.buf[:self.n]
        return w - Q.T @ (Q @ w) if self.n else w

    def matrix(self, m: int) -> Tensor:
        return self.buf[:m]


def _wanted(theta: np.ndarray, k: int, which: str) -> np.ndarray:
    """Indices (into ascending ``theta``) of the wanted Ritz values."""
    m = len(theta)
    k = min(k, m)
    if which == "largest":
        return np.arange(m - k, m)
    if which == "smallest":
        return np.arange(0, k)
    lo, hi = np.arange(0, k), np.arange(max(k, m - k), m)  # "both": k at each end
    return np.concatenate([lo, hi])


def lanczos(matvec: Callable[[Tensor], Tensor], size: int, k: int, which: str = "largest", *,
            max_iter: int = 100, tol: float = 1e-6, seed: int = 0,
            device: torch.device | str = "cpu", v0: Tensor | None = None,
            fixed_steps: bool = False) -> _LanczosResult:
    """Lanczos with full reorthogonalisation on a symmetric operator given by ``matvec``.

    ``matvec`` maps a float64 1-D tensor of length ``size`` to its product. ``which`` is
    ``"largest"``, ``"smallest"`` or ``"both"`` (k at each end). Runs until the wanted Ritz
    pairs' residuals are ``<= tol * max|theta|``, the space is exhausted, or ``max_iter``
    products are spent. Returns the raw result (Ritz values ascending, residuals, basis).

    ``v0`` is the starting vector (default: Gaussian from ``seed``). With ``fixed_steps`` the
    convergence test is off and a breakdown ends the run (what quadrature wants: T_m then
    carries the exact spectral measure of ``v0``).
    """
    check_choice("which", which, WHICH + ("both",))
    k = check_int("k", k, 1)
    max_iter = check_int("max_iter", max_iter, 1)
    tol = check_positive("tol", tol)
    if k > size:
        raise ValueError(f"k={k} exceeds the operator size {size}")
    gen = as_generator(seed)
    Q = _Basis(size, min(max_iter, size) + 1, device)

    def fresh() -> Tensor | None:
        for _ in range(3):
            q = torch.randn(size, generator=gen, dtype=torch.float64).to(device)
            for _ in range(2):
                q = Q.project_out(q)
            nq = torch.linalg.vector_norm(q)
            if nq > 1e-8:
                return q / nq
        return None

    if v0 is None:
        Q.append(fresh())
    else:
        v0 = v0.to(device=device, dtype=torch.float64)
        Q.append(v0 / torch.linalg.vector_norm(v0))
    alphas: list[float] = []
    betas: list[float] = []  # betas[j] couples basis[j] and basis[j+1]
    converged = False
    steps = 0
    theta = s = res = None
    restart = False
    for j in range(max_iter):
        q = Q[j]
        w = matvec(q).to(torch.float64)
        steps += 1
        a = float(torch.dot(q, w))
        alphas.append(a)
        w = w - a * q
        if j > 0 and betas[j - 1] != 0.0:
            w = w - betas[j - 1] * Q[j - 1]
        for _ in range(2):  # full reorthogonalisation, twice is enough (Giraud et al. 2005)
            w = Q.project_out(w)
        b = float(torch.linalg.vector_norm(w))
        d = np.asarray(alphas)
        e = np.asarray(betas)
        if len(d) == 1:
            theta, s = d.copy(), np.ones((1, 1))
        else:
            theta, s = scipy.linalg.eigh_tridiagonal(d, e)
        scale = max(float(np.max(np.abs(theta))), np.finfo(float).tiny)
        res = b * np.abs(s[-1, :])
        idx = _wanted(theta, k, which)
        if len(Q) == size:  # the whole space is spanned: T is similar to H
            res = np.zeros_like(res)
            converged = True
            break
        breakdown = b <= 1e-10 * scale
        if fixed_steps and breakdown:
            converged = True
            break
        done = len(theta) >= min(k, size) and bool(np.all(res[idx] <= tol * scale))
        if not fixed_steps and not breakdown and not restart and done:
            converged = True
            break
        restart = False
        if breakdown:  # invariant subspace found: continue from a fresh orthogonal direction
            nxt = fresh()
            if nxt is None:
                converged = True
                break
            betas.append(0.0)
            Q.append(nxt)
            restart = True
        else:
            betas.append(b)
            Q.append(w / b)
    # the last basis vector was never multiplied: drop it so the basis matches T
    return _LanczosResult(theta=theta, residuals=res, s=s, basis=Q.matrix(len(alphas)),
                          converged=converged, steps=steps)


def _run(model: nn.Module, data: Iterable, loss_fn: LossFn | None, k: int, which: str,
         max_iter: int, tol: float, seed: int, reuse_graph: bool | None, return_vectors: bool):
    op = HessianOperator(model, data, loss_fn, reuse_graph=reuse_graph)
    r = lanczos(op.matvec, op.size, k, which, max_iter=max_iter, tol=tol, seed=seed,
                device=op.device)
    idx = _wanted(r.theta, k, which)
    vectors = None
    if return_vectors:
        Q = r.basis  # (m, n)
        S = torch.from_numpy(np.ascontiguousarray(r.s[:, idx])).to(Q.device)
        vectors = (Q.T @ S).cpu().numpy()
    return r, idx, vectors, op.n_hvp


def hessian_eigenvalues(model: nn.Module, data: Iterable, k: int = 5, which: str = "largest",
                        loss_fn: LossFn | None = None, max_iter: int = 100, tol: float = 1e-6, *,
                        seed: int = 0, return_vectors: bool = False,
                        reuse_graph: bool | None = None) -> Spectrum:
    """The ``k`` largest or smallest eigenvalues of the loss Hessian, by Lanczos.

    Measures the extreme eigenvalues (algebraic order: ``"smallest"`` are the most negative) of
    the Hessian of the sample-weighted mean loss over all of ``data`` w.r.t. the trainable
    parameters (``requires_grad``), in loss units per squared parameter unit (nats for the
    default cross-entropy). The model is in eval mode (BN running statistics, no dropout);
    its mode and weights are restored afterwards.

    Method: Lanczos with full reorthogonalisation and exact Hessian-vector products (Pearlmutter
    1994; Ghorbani et al. 2019, "An Investigation into Neural Net Optimization via Hessian
    Eigenvalue Density"), stopping when every wanted Ritz pair has residual
    ``||Hy - theta y|| <= tol * max|theta|`` or after ``max_iter`` products; ``converged`` says
    which. The residual bounds the error: an exact eigenvalue lies within it.

    Args:
        model: the network.
        data: iterable of ``(inputs, targets)`` batches.
        k: number of eigenvalues.
        which: ``"largest"`` or ``"smallest"``.
        loss_fn: ``loss_fn(outputs, targets)`` -> batch-mean loss; None = cross-entropy.
        max_iter: budget of Hessian-vector products (= Lanczos steps). The basis holds up to
            ``max_iter`` float64 vectors: ``8 * max_iter * n_params`` bytes.
        tol: relative residual at which a Ritz pair counts as converged.
        seed: seed of the random starting vector.
        return_vectors: also return the unit eigenvectors (flat, ``flatten_params`` order).
        reuse_graph: keep first-order graphs between products (faster, more memory);
            None: automatic, as in :class:`HessianOperator`.

    Returns:
        :class:`Spectrum` with ascending ``values``, ``converged``, ``n_hvp``, ``residuals``.

    Raises:
        ValueError: if ``which`` is not ``"largest"``/``"smallest"``, ``k < 1`` or larger than
            the number of trainable parameters, ``max_iter < 1``, ``tol <= 0``, or ``data``
            is not an iterable of batches.

    Example:
        >>> spec = hessian_eigenvalues(model, batches, k=5, which="largest")
        >>> spec.values[-1], spec.converged
    """
    check_model(model)
    check_choice("which", which, WHICH)
    check_int("k", k, 1)
    check_int("max_iter", max_iter, 1)
    check_positive("tol", tol)
    with probe_state(model):
        r, idx, vectors, n_hvp = _run(model, data, loss_fn, k, which, max_iter, tol, seed,
                                      reuse_graph, return_vectors)
    return Spectrum(values=r.theta[idx].copy(), converged=r.converged, n_hvp=n_hvp,
                    residuals=r.residuals[idx].copy(), vectors=vectors, which=which)


def conditioning(model: nn.Module, data: Iterable, k: int = 5, loss_fn: LossFn | None = None,
                 max_iter: int = 200, tol: float = 1e-6, *, seed: int = 0,
                 reuse_graph: bool | None = None) -> dict:
    """A conditioning summary of the loss Hessian from converged extreme eigenvalues.

    One Lanczos run converges the ``k`` largest and ``k`` smallest eigenvalues of the Hessian of
    the sample-weighted mean loss over ``data`` w.r.t. the trainable parameters
    (``requires_grad``), model in eval mode (BN running statistics), mode and weights restored.
    Eigenvalues are in loss units per squared parameter unit (nats for cross-entropy).

    A ratio ``lambda_max / lambda_min`` is only a condition number when the Hessian is positive
    definite; near a minimum of a network it usually is not (negative and near-zero eigenvalues,
    Sagun et al. 2017; Ghorbani et al. 2019). So the summary reports the sign structure and
    gives ``ratio`` only when ``lambda_min > 0`` and the run converged; a ratio of a top
    eigenvalue to a few-step power-iteration estimate of it (the anchors' kappa ~ 1.00) is never
    reported.

    Cost: up to ``max_iter`` Hessian-vector products and ``8 * max_iter * n_params`` bytes for
    the Lanczos basis; ``tol`` is the relative residual, as in :func:`hessian_eigenvalues`.

    Returns:
        dict with ``lambda_max``, ``lambda_min`` (extreme computed eigenvalues), ``n_negative``
        (computed eigenvalues below ``-max(residual, 1e-8 |lambda_max|)``, i.e. certainly
        negative; a lower bound on the Hessian's count, equal to ``k`` means "at least k"),
        ``n_computed``, ``ratio`` (``lambda_max / lambda_min`` or None), ``negative_ratio``
        (``|lambda_min| / lambda_max`` when ``lambda_min < 0`` and ``lambda_max > 0``, else
        None), ``largest``/``smallest`` (lists, ascending), ``converged``, ``residual_max`` (the largest
        residual ``||H y - theta y||`` of the reported Ritz pairs), ``n_hvp``.

    Raises:
        ValueError: for ``k < 1``, ``max_iter < 1``, ``tol <= 0`` or malformed ``data``.
    """
    check_model(model)
    check_int("k", k, 1)
    check_int("max_iter", max_iter, 1)
    check_positive("tol", tol)
    with probe_state(model):
        r, idx, _, n_hvp = _run(model, data, loss_fn, k, "both", max_iter, tol, seed,
                                reuse_graph, False)
    theta, res = r.theta, r.residuals
    sel = np.unique(idx)
    m = len(theta)
    kk = min(k, m)
    lam_max, lam_min = float(theta[-1]), float(theta[0])
    floor = 1e-8 * max(abs(lam_max), abs(lam_min))
    n_negative = int(np.sum(theta[sel] < -np.maximum(res[sel], floor)))
    ratio = lam_max / lam_min if (lam_min > 0 and r.converged) else None
    neg_ratio = abs(lam_min) / lam_max if (lam_min < 0 < lam_max) else None
    return {
        "lambda_max": lam_max,
        "lambda_min": lam_min,
        "n_negative": n_negative,
        "n_computed": int(len(sel)),
        "ratio": ratio,
        "negative_ratio": neg_ratio,
        "largest": theta[m - kk:].tolist(),
        "smallest": theta[:kk].tolist(),
        "converged": bool(r.converged),
        "residual_max": float(np.max(res[sel])) if len(sel) else float("nan"),
        "n_hvp": int(n_hvp),
    }
