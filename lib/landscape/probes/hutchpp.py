"""Hessian trace by Hutch++ (Meyer, Musco, Musco & Woodruff 2021), or plain Hutchinson.

Hutch++ spends a budget of ``m`` Hessian-vector products in three thirds:

    S ~ Rademacher(n, m/3),  Q = orth(H S),  G ~ Rademacher(n, m/3),  P = I - Q Q^T
    tr(H) ~= tr(Q^T H Q) + (3/m) * sum_i g_i^T P H P g_i

The first term is exact on the sketched subspace; the second is Hutchinson's estimator on the
deflated remainder, so the estimate is unbiased and its variance only involves the Frobenius
norm of the *deflated* Hessian (O(1/m) error instead of Hutchinson's O(1/sqrt(m)) when the
spectrum is dominated by a few outliers, as Hessians of networks are). The standard error is the
sample standard deviation of the ``g_i^T P H P g_i`` over sqrt(m/3): the low-rank part carries
no sampling noise given Q.

Plain Hutchinson (Hutchinson 1989): ``tr(H) ~= mean_i z_i^T H z_i``, z Rademacher, standard error
``std / sqrt(m)``. Use all products of a run rather than an early-stopping rule (the anchors'
early-stopped Hutchinson is 10-20 % off, DESIGN.md).

The estimators are hessian-eigenthings' ``hutch_plus_plus`` / ``hutchinson`` (wrapped, not
forked), applied to this package's sample-weighted, eval-mode :class:`HessianOperator`.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from torch import nn

from ._common import LossFn, check_choice, check_int, check_model, probe_state
from .hvp import HessianOperator

__all__ = ["Estimate", "hessian_trace"]

METHODS = ("hutchpp", "hutchinson")


@dataclass(frozen=True)
class Estimate:
    """A stochastic estimate with its standard error.

    Attributes:
        value: the estimate.
        stderr: its standard error (sample std of the stochastic part / sqrt(samples)); NaN
            where the number has no sampling error to report (a deterministic ascent, see
            :func:`~landscape.probes.sharpness.sharpness_estimate`, or a single sample).
        n_hvp: Hessian-vector products used (0 for sharpness, which uses gradients).
        method: ``"hutchpp"``, ``"hutchinson"``, or the sharpness kind.
        n_samples: number of random probes behind ``stderr``.
        first_order: sharpness only: the rise the same perturbation set gives to the linearised
            loss, e.g. ``rho * ||g||`` for ``"sam"`` (None for traces).
    """

    value: float
    stderr: float
    n_hvp: int
    method: str
    n_samples: int
    first_order: float | None = None


def hessian_trace(model: nn.Module, data: Iterable, loss_fn: LossFn | None = None,
                  n_probes: int = 60, method: str = "hutchpp", seed: int = 0, *,
                  reuse_graph: bool | None = None) -> Estimate:
    """Trace of the loss Hessian, with a standard error.

    Measures ``tr(H)``, the sum of all eigenvalues of the Hessian of the sample-weighted mean loss
    over all of ``data`` w.r.t. the trainable parameters (``requires_grad``), in loss units per
    squared parameter unit (nats for cross-entropy). Model in eval mode (BN running statistics);
    its mode and weights are restored afterwards.

    Method: Hutch++ (Meyer et al. 2021, "Hutch++: Optimal Stochastic Trace Estimation") with
    Rademacher probes, or Hutchinson (1989); see the module docstring for the formulas. The
    standard error comes from the Hutchinson part (for Hutch++: of the deflated remainder), so
    it shrinks like ``1/sqrt(n_probes)`` or faster.

    Args:
        model: the network.
        data: iterable of ``(inputs, targets)`` batches.
        loss_fn: ``loss_fn(outputs, targets)`` -> batch-mean loss; None = cross-entropy.
        n_probes: budget of Hessian-vector products. Hutch++ uses ``3 * (n_probes // 3)`` of
            them (a third each for the sketch, its trace and the residual probes) and needs at
            least 6; Hutchinson uses all of them and needs at least 2.
        method: ``"hutchpp"`` or ``"hutchinson"``.
        seed: seed of the random probes.
        reuse_graph: keep first-order graphs between products (faster, more memory);
            None: automatic, as in :class:`HessianOperator`.

    Returns:
        :class:`Estimate` with ``value``, ``stderr``, ``n_hvp``.

    Raises:
        ValueError: if ``method`` is not ``"hutchpp"``/``"hutchinson"``, ``n_probes`` is below
            the method's minimum, ``seed`` is negative, or ``data`` is malformed.

    Example:
        >>> est = hessian_trace(model, batches, n_probes=60)
        >>> f"{est.value:.3g} +- {est.stderr:.2g}"
    """
    # hessian-eigenthings is imported here so the rest of the probes work without it.
    from hessian_eigenthings import hutch_plus_plus, hutchinson

    check_model(model)
    check_choice("method", method, METHODS)
    check_int("n_probes", n_probes, 6 if method == "hutchpp" else 2)
    check_int("seed", seed, 0)
    with probe_state(model):
        op = HessianOperator(model, data, loss_fn, reuse_graph=reuse_graph)
        if method == "hutchpp":
            r = hutch_plus_plus(op, num_matvecs=n_probes, seed=seed)
        else:
            r = hutchinson(op, num_samples=n_probes, distribution="rademacher", seed=seed)
    return Estimate(value=float(r.estimate), stderr=float(r.stderr), n_hvp=op.n_hvp,
                    method=method, n_samples=int(r.samples.numel()))
