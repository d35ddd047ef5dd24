r"""XTrace (Epperly, Tropp & Webber 2024): a trace estimator that uses every product twice.

Epperly, Tropp & Webber (2024), "XTrace: making the most of every sample in stochastic trace
estimation", SIAM J. Matrix Anal. Appl. 45(1). With ``m = 2 s`` matrix-vector products:

.. math::

    Y = A \Omega,\quad \Omega = [\omega_1 \dots \omega_s] \sim N(0, I_n),\qquad Y = QR,\qquad
    Z = A Q

    t_i = \operatorname{tr}(Q_{(i)}^\top A Q_{(i)})
          + v_i^\top A v_i,\qquad v_i = \sqrt{\tfrac{n - s + 1}{\|r_i\|^2}}\, r_i,\quad
          r_i = (I - Q_{(i)} Q_{(i)}^\top)\,\omega_i

    \widehat{\operatorname{tr}}(A) = \tfrac1s \sum_i t_i,\qquad
    \mathrm{se} = \operatorname{std}(t_1..t_s) / \sqrt{s}

where :math:`Q_{(i)}` is an orthonormal basis of ``A`` applied to every probe but the i-th. Each
:math:`t_i` is Hutch++ with the roles "sketch" and "residual probe" shared out so that no sample
is spent on one role only (the "exchangeability principle"): it is unbiased because
:math:`Q_{(i)}` does not depend on :math:`\omega_i`, and :math:`v_i` is uniform on the sphere of
radius :math:`\sqrt{n-s+1}` in the complement of :math:`Q_{(i)}`, so
:math:`\mathbb{E}[v_i v_i^\top \mid Q_{(i)}] = I - Q_{(i)} Q_{(i)}^\top` (the paper's normalised
estimator). No product beyond the ``2 s`` is needed: with :math:`s_i` the i-th column of
:math:`R^{-\top}`, normalised, :math:`Q_{(i)} Q_{(i)}^\top = Q (I - s_i s_i^\top) Q^\top`, and
``A r_i = y_i - Z (I - s_i s_i^T) Q^T omega_i``.

The standard error is the paper's error estimate. The :math:`t_i` share their products, so they
are exchangeable, not independent: the estimate is a heuristic, checked against the spread over
seeds in ``tests/test_probes_trace.py`` (calibrated within a factor of 2 there).

When ``A`` has rank at most ``s - 1`` the estimate is exact (up to rounding).
"""
from __future__ import annotations

import math
from typing import NamedTuple, Protocol

import torch
from torch import Tensor

__all__ = ["xtrace", "TraceSamples"]


class Operator(Protocol):
    """What :func:`xtrace` multiplies by: a square, symmetric operator on 1-D tensors."""

    size: int

    @property
    def dtype(self) -> torch.dtype: ...

    @property
    def device(self) -> torch.device: ...

    def matvec(self, v: Tensor) -> Tensor: ...


class TraceSamples(NamedTuple):
    """A trace estimate, its standard error and the per-probe estimates it averages."""

    estimate: float
    stderr: float
    samples: Tensor


def xtrace(operator: Operator, num_matvecs: int, generator: torch.Generator) -> TraceSamples:
    """Estimate ``tr(A)`` with XTrace from ``2 * (num_matvecs // 2)`` products ``A v``.

    See the module docstring for the maths. Probes are Gaussian, drawn on the CPU from
    ``generator`` in float64 (so the draws do not depend on the device); the products are
    ``operator.matvec`` on vectors of ``operator.dtype``.

    Args:
        operator: has ``size`` (n), ``dtype``, ``device`` and ``matvec(v)`` for 1-D ``v``;
            assumed symmetric (a Hessian).
        num_matvecs: budget; ``s = num_matvecs // 2`` probes, at least 2 and at most ``n - 1``.
        generator: CPU random generator.

    Returns:
        :class:`TraceSamples` ``(estimate, stderr, samples)``; ``samples`` holds the ``s``
        leave-one-out estimates ``t_i`` (float64, CPU).

    Raises:
        ValueError: if ``num_matvecs // 2`` is below 2 or not below ``n``.

    Example:
        >>> from landscape.probes._testing import spd_matrix
        >>> class Dense:
        ...     def __init__(self, A): self.A, self.size = A, A.shape[0]
        ...     dtype, device = torch.float64, torch.device("cpu")
        ...     def matvec(self, v): return self.A @ v
        >>> A = torch.as_tensor(spd_matrix([100.0, 10.0] + [0.0] * 48))  # rank 2, n = 50
        >>> r = xtrace(Dense(A), 10, torch.Generator().manual_seed(0))  # s = 5 > rank + 1
        >>> round(r.estimate, 6), r.stderr < 1e-9
        (110.0, True)
    """
    n = int(operator.size)
    s = int(num_matvecs) // 2
    if s < 2 or s >= n:
        raise ValueError(f"num_matvecs={num_matvecs!r}: xtrace needs 2 <= num_matvecs // 2 < n "
                         f"= {n} (the number of parameters)")
    dev, dt = operator.device, operator.dtype

    def A(v: Tensor) -> Tensor:
        return operator.matvec(v.to(device=dev, dtype=dt)).to(device="cpu", dtype=torch.float64)

    omega = torch.randn(n, s, generator=generator, dtype=torch.float64)
    Y = torch.stack([A(omega[:, i]) for i in range(s)], dim=1)
    Q, R = torch.linalg.qr(Y)
    Z = torch.stack([A(Q[:, i]) for i in range(s)], dim=1)
    H = Q.T @ Z                                            # Q^T A Q, s x s
    S = torch.linalg.inv(R).T                              # column i is orthogonal to R_(-i)
    S = S / S.norm(dim=0, keepdim=True)
    W = Q.T @ omega                                        # Q^T omega_i in column i
    samples = torch.empty(s, dtype=torch.float64)
    for i in range(s):
        si = S[:, i]
        wi = W[:, i] - (si @ W[:, i]) * si                 # (I - s s^T) Q^T omega_i
        r = omega[:, i] - Q @ wi                           # (I - Q_(i) Q_(i)^T) omega_i
        Ar = Y[:, i] - Z @ wi
        scale = (n - s + 1) / float(r @ r)                 # ||v_i||^2 = n - s + 1
        samples[i] = torch.trace(H) - si @ H @ si + scale * (r @ Ar)
    est = float(samples.mean())
    se = float(samples.std(unbiased=True)) / math.sqrt(s)
    return TraceSamples(est, se, samples)
