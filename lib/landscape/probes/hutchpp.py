"""Hessian trace by Hutch++ (Meyer, Musco, Musco & Woodruff 2021), XTrace (Epperly, Tropp &
Webber 2024) or plain Hutchinson.

Hutch++ spends a budget of ``m`` Hessian-vector products in three thirds:

    S ~ Rademacher(n, m/3),  Q = orth(H S),  G ~ Rademacher(n, m/3),  P = I - Q Q^T
    tr(H) ~= tr(Q^T H Q) + (3/m) * sum_i g_i^T P H P g_i

The first term is exact on the sketched subspace; the second is Hutchinson's estimator on the
deflated remainder, so the estimate is unbiased and its variance only involves the Frobenius
norm of the *deflated* Hessian (O(1/m) error instead of Hutchinson's O(1/sqrt(m)) when the
spectrum is dominated by a few outliers, as Hessians of networks are). The standard error is the
sample standard deviation of the ``g_i^T P H P g_i`` over sqrt(m/3): the low-rank part carries
no sampling noise given Q. Since ``E[estimate | Q] = tr(H)`` exactly, the variance of the estimate
is the mean over Q of this conditional variance, so the standard error is honest (the tests check
it against the spread over seeds on quadratics of known spectrum).

XTrace (``method="xtrace"``, :mod:`landscape.probes.xtrace`) spends ``m/2`` products on a sketch
and ``m/2`` on its image and re-uses every probe both as a sketch vector and as a residual probe
(leave one out). At equal budgets its root-mean-square error over 50 seeds was 1.4-1.9x below
Hutch++'s at 30 products and 1.5-3.2x below at 60, on spectra of n = 400 with 5 or 20 large
outliers over a bulk in [0, 1] or [-0.3, 1] (``tests/test_probes_trace.py``).

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

from ._common import LossFn, as_generator, check_choice, check_int, check_model, probe_state
from .hvp import HessianOperator
from .xtrace import xtrace

__all__ = ["Estimate", "hessian_trace"]

METHODS = ("hutchpp", "xtrace", "hutchinson")
_MIN_PROBES = {"hutchpp": 6, "xtrace": 4, "hutchinson": 2}


@dataclass(frozen=True)
class Estimate:
    """A stochastic estimate with its standard error.

    Attributes:
        value: the estimate.
        stderr: its standard error (sample std of the stochastic part / sqrt(samples)); NaN
            where the number has no sampling error to report (a deterministic ascent, see
            :func:`~landscape.probes.sharpness.sharpness_estimate`, or a single sample).
        n_hvp: Hessian-vector products used (0 for sharpness, which uses gradients).
        method: ``"hutchpp"``, ``"xtrace"``, ``"hutchinson"``, or the sharpness kind.
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
    Rademacher probes, XTrace (Epperly et al. 2024, "XTrace: making the most of every sample in
    stochastic trace estimation") with Gaussian probes, or Hutchinson (1989); see the module
    docstrings for the formulas. The standard error comes from the Hutchinson part (for Hutch++:
    of the deflated remainder; for XTrace: the spread of its leave-one-out estimates), so it
    shrinks like ``1/sqrt(n_probes)`` or faster. The default budget is 60 products: the error bar
    then rests on 20 residual samples (Hutch++) or 30 leave-one-out estimates (XTrace); with
    fewer than 30 products it rests on under 10 and is itself too noisy to read.

    Args:
        model: the network.
        data: iterable of ``(inputs, targets)`` batches.
        loss_fn: ``loss_fn(outputs, targets)`` -> batch-mean loss; None = cross-entropy.
        n_probes: budget of Hessian-vector products. Hutch++ uses ``3 * (n_probes // 3)`` of
            them (a third each for the sketch, its trace and the residual probes) and needs at
            least 6; XTrace uses ``2 * (n_probes // 2)``, needs at least 4 and fewer than twice
            the number of parameters; Hutchinson uses all of them and needs at least 2.
        method: ``"hutchpp"``, ``"xtrace"`` or ``"hutchinson"``.
        seed: seed of the random probes.
        reuse_graph: keep first-order graphs between products (faster, more memory);
            None: automatic, as in :class:`HessianOperator`.

    Returns:
        :class:`Estimate` with ``value``, ``stderr``, ``n_hvp``.

    Raises:
        ValueError: if ``method`` is not one of ``METHODS``, ``n_probes`` is below the method's
            minimum (or too large for XTrace), ``seed`` is negative, or ``data`` is malformed.

    Example:
        A quadratic "model" with Hessian spectrum {4, 2, 1, 0.5, 0, 0}, trace 7.5; with rank 4
        below the sketch size, Hutch++ and XTrace are exact.

        >>> import torch
        >>> from landscape.probes._testing import Quadratic, quadratic_loss, spd_matrix
        >>> q = Quadratic(spd_matrix([4.0, 2.0, 1.0, 0.5, 0.0, 0.0]), torch.zeros(6))
        >>> data = [(torch.zeros(1, 1), torch.zeros(1))]
        >>> est = hessian_trace(q, data, loss_fn=quadratic_loss(q), n_probes=18)
        >>> round(est.value, 6), est.n_hvp, est.n_samples
        (7.5, 18, 6)
        >>> est = hessian_trace(q, data, loss_fn=quadratic_loss(q), n_probes=10, method="xtrace")
        >>> round(est.value, 6), est.n_hvp, est.n_samples
        (7.5, 10, 5)
    """
    # hessian-eigenthings is imported here so the rest of the probes work without it.
    from hessian_eigenthings import hutch_plus_plus, hutchinson

    check_model(model)
    check_choice("method", method, METHODS)
    check_int("n_probes", n_probes, _MIN_PROBES[method])
    gen = as_generator(seed)
    with probe_state(model):
        op = HessianOperator(model, data, loss_fn, reuse_graph=reuse_graph)
        if method == "xtrace":
            r = xtrace(op, n_probes, gen)
        elif method == "hutchpp":
            r = hutch_plus_plus(op, num_matvecs=n_probes, seed=seed)
        else:
            r = hutchinson(op, num_samples=n_probes, distribution="rademacher", seed=seed)
    return Estimate(value=float(r.estimate), stderr=float(r.stderr), n_hvp=op.n_hvp,
                    method=method, n_samples=int(r.samples.numel()))
