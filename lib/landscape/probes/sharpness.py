r"""Sharpness: how much the loss can rise under a bounded weight perturbation.

Four definitions, all on the sample-weighted mean loss ``L`` over all of ``data``, perturbing the
trainable parameters (``requires_grad``) with the model in eval mode (BN running statistics, not
re-estimated at perturbed weights):

``"sam"`` (Foret et al. 2021, "Sharpness-Aware Minimization"):
    ``max_{||e||_2 <= rho} L(w + e) - L(w)``, in loss units (nats). Solved by projected
    normalised-gradient ascent from SAM's own first step ``e_0 = rho g / ||g||``:
    ``e <- P_ball(e + step_size * rho * g(w+e) / ||g(w+e)||)`` for ``steps`` steps; the largest
    loss seen is reported, so it is never below SAM's one-step value. On a quadratic at its
    minimum the answer is ``rho^2 lambda_max / 2``; away from it (Hessian positive
    semi-definite) it is the trust-region maximum, between ``rho ||g||`` and
    ``rho ||g|| + rho^2 lambda_max / 2``. When ``||g|| >~ rho lambda_max`` the number measures
    the gradient, not the curvature: read it beside its first-order term ``rho ||g||``
    (:attr:`Estimate.first_order` of :func:`sharpness_estimate`).
``"adaptive"`` (Kwon et al. 2021, "ASAM"; with ``eta = 0`` as in Andriushchenko et al. 2023,
    "A modern look at the relationship between sharpness and generalization"):
    ``max_{||e / t||_2 <= rho} L(w + e) - L(w)`` with ``t = |w| + eta`` elementwise, in nats;
    the same ascent in the rescaled variable ``e / t``. ``rho`` is dimensionless: the vector of
    relative changes ``e_i / |w_i|`` has Euclidean norm at most ``rho`` (so no weight moves by
    more than ``rho`` times its size).
    Default ``eta = 0``: ASAM's ``eta = 0.01`` is about half a typical first-layer MNIST weight
    (default init: mean ``|w|`` = 0.018), so it is not a small offset, and after a rescaling
    ``T_alpha`` (below) it dominates ``t`` on the shrunk layer and the number measures ``eta``.
    A weight that is exactly 0 has ``t_i = 0`` at ``eta = 0``: its ball radius is 0 and it is
    never perturbed (its scale is 0, so no relative perturbation of it exists). Where
    ``t * g = 0`` (a stationary point) the ascent starts from a random direction; where every
    ``t_i = 0`` the ball is the single point ``w`` and the sharpness is 0.
``"random"``:
    ``E_u[L(w + rho u)] - L(w)`` for ``u`` uniform on the unit sphere (a Gaussian draw
    normalised to length rho), averaged over ``n_draws`` independent draws, in nats: the
    average-case counterpart, ``rho^2 tr(H) / (2 n)`` to second order (the first-order term
    ``rho g.u`` averages to 0). Its standard error is the sample standard deviation of the
    ``n_draws`` rises over ``sqrt(n_draws)`` (Monte Carlo error for these data).
``"keskar"`` (Keskar et al. 2017, "On Large-Batch Training for Deep Learning: Generalization
    Gap and Sharp Minima", metric 2.1 with ``A = I_n``):
    ``100 * (max_{|e_i| <= rho (|w_i| + 1)} L(w + e) - L(w)) / (1 + L(w))``, a percentage;
    ``rho`` is their epsilon (they used 1e-3 and 5e-4). Maximised with L-BFGS-B (``steps``
    iterations; they used 10) from the box corner along the gradient's sign. The box is large
    in high dimension: its corner lies ``rho * ||(|w| + 1)||_2 >= rho sqrt(n)`` from ``w``
    (0.65 for ``rho = 1e-3`` and the 422k-parameter CNN), so values of hundreds of percent are
    normal for networks.

Cost, in passes over ``data``: ``"sam"``/``"adaptive"`` ``steps + 1`` gradients and one loss;
``"random"`` ``n_draws + 1`` losses; ``"keskar"`` one gradient plus one per L-BFGS-B function
evaluation (about ``steps + 1``, a few more where a line search backtracks). No Hessian-vector
products. Measured for ``"keskar"`` at ``rho = 1e-3`` with the default 10 iterations on the
Fashion-MNIST CNN with BN (422k parameters, 256 examples in batches of 128, 2 epochs trained):
12 gradients, 9-15 s on this 2-core CPU under load 5-8 (0.4 s per gradient unloaded, so about
5 s); ``"sam"`` with 10 steps: 11 gradients and one loss.

Reparametrisation. ``T_alpha`` multiplies one layer's weights and bias by ``alpha > 0`` and the
next layer's weights by ``1 / alpha`` (:func:`landscape.reparam.rescale_layers`); with a ReLU
between them the function, hence every loss, is unchanged (Dinh et al. 2017, "Sharp Minima Can
Generalize For Deep Nets"). ``"adaptive"`` at ``eta = 0`` is exactly invariant: ``T_alpha`` is a
diagonal linear map and ``t = |w|`` scales with it, so it maps the ball at ``w`` onto the ball at
``T_alpha w`` (with ``eta > 0`` it is not: ASAM's ``eta = 0.01`` changes by 25 % at
``alpha = 10`` on the tests' ReLU MLP). ``"sam"`` and ``"random"`` are not invariant.
``"keskar"`` is not invariant either: its box keeps a half-width of at least ``rho`` on the
layer scaled by ``1 / alpha``, whose weights shrink like ``1 / alpha``, so the relative
perturbation there grows like ``alpha`` and the value can be driven arbitrarily high (tests: at
``rho = 1e-3`` it grows 47-fold from ``alpha = 1`` to 100).

Example (a quadratic "model" with Hessian spectrum {4, 1}, at its minimum):
    >>> import torch
    >>> from landscape.probes._testing import Quadratic, quadratic_loss, spd_matrix
    >>> q = Quadratic(spd_matrix([4.0, 1.0]), torch.ones(2))
    >>> data = [(torch.zeros(1, 1), torch.zeros(1))]
    >>> round(sharpness(q, data, rho=0.1, kind="sam", loss_fn=quadratic_loss(q)), 6)  # rho^2*4/2
    0.02
"""
from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch
from torch import Tensor, nn

from ._common import (DataPasses, LossFn, as_generator, check_choice, check_int, check_model,
                      check_positive, evaluate_metrics, flat, loss_and_grad, model_device,
                      probe_state, resolve_loss_fn, set_params, trainable)
from .hutchpp import Estimate

__all__ = ["sharpness", "sharpness_estimate"]

KINDS = ("sam", "adaptive", "random", "keskar")
_DEFAULT_STEPS = {"sam": 20, "adaptive": 20, "keskar": 10}


def _norm(ts: list[Tensor]) -> float:
    return float(torch.sqrt(sum((t.double() ** 2).sum() for t in ts)))


def _ascent(model, params, w0, passes, loss_fn, rho, steps, step_size, scale, gen, g0):
    """Projected normalised-gradient ascent in delta (e = scale * delta, ||delta|| <= rho)."""
    def tdir(g):  # gradient w.r.t. delta
        return [gi * si for gi, si in zip(g, scale)] if scale is not None else list(g)

    def put(delta):
        e = [d * s for d, s in zip(delta, scale)] if scale is not None else delta
        set_params(params, [w + ei for w, ei in zip(w0, e)])

    d = tdir(g0)
    nd = _norm(d)
    if nd == 0.0:  # exactly stationary: start from a random direction
        d = [torch.randn(p.shape, generator=gen, dtype=p.dtype).to(p.device) for p in params]
        nd = _norm(d)
    delta = [di * (rho / nd) for di in d]
    best = -np.inf
    for _ in range(steps):
        put(delta)
        loss, g = loss_and_grad(model, params, passes, loss_fn)
        best = max(best, loss)
        d = tdir(g)
        nd = _norm(d)
        if nd == 0.0:
            break
        delta = [x + (step_size * rho / nd) * di for x, di in zip(delta, d)]
        nx = _norm(delta)
        if nx > rho:
            delta = [x * (rho / nx) for x in delta]
    put(delta)
    best = max(best, evaluate_metrics(model, passes, loss_fn, ("loss",))[0])
    return best


def _keskar(model, params, w0, passes, loss_fn, rho, steps, gen, g0):
    from scipy.optimize import Bounds, minimize

    w_flat = flat(w0, torch.float64).cpu().numpy()
    bound = rho * (np.abs(w_flat) + 1.0)
    sizes = [p.numel() for p in params]
    best = [-np.inf]

    def f(y: np.ndarray):
        yt = torch.from_numpy(y)
        e = [c.reshape(p.shape).to(device=p.device, dtype=p.dtype)
             for c, p in zip(torch.split(yt, sizes), params)]
        set_params(params, [w + ei for w, ei in zip(w0, e)])
        loss, g = loss_and_grad(model, params, passes, loss_fn)
        best[0] = max(best[0], loss)
        return -loss, -flat(g, torch.float64).cpu().numpy()

    sign = np.sign(flat(g0, torch.float64).cpu().numpy())
    zero = sign == 0
    if zero.any():
        rnd = torch.randint(0, 2, (int(zero.sum()),), generator=gen).numpy() * 2.0 - 1.0
        sign[zero] = rnd
    y0 = bound * sign
    minimize(f, y0, jac=True, method="L-BFGS-B", bounds=Bounds(-bound, bound),
             options={"maxiter": steps})
    return best[0]


def sharpness(model: nn.Module, data: Iterable, rho: float = 0.05, kind: str = "sam",
              steps: int | None = None, seed: int = 0, *, loss_fn: LossFn | None = None,
              step_size: float = 1.0, eta: float = 0.0, n_draws: int = 20) -> float:
    """Sharpness of the loss at the model's weights, as a float (see the module docstring).

    The value of :func:`sharpness_estimate` with the same arguments; use that function for the
    standard error of ``"random"`` and for the first-order term ``rho ||g||``.

    Measures the rise of the sample-weighted mean loss over all of ``data`` under a bounded
    perturbation of the trainable parameters (``requires_grad``): worst case in an L2 ball
    (``"sam"``, nats), in a weight-scaled ball (``"adaptive"``, nats), on average over the
    sphere (``"random"``, nats), or worst case in Keskar's box as a percentage of ``1 + L``
    (``"keskar"``). Model in eval mode (BN running statistics; BN statistics are not
    re-estimated at perturbed weights); mode and weights restored exactly afterwards.

    Args:
        model: the network.
        data: iterable of ``(inputs, targets)`` batches.
        rho: radius (``"sam"``, ``"random"``; parameter units), radius in units of ``|w|``
            (``"adaptive"``), or Keskar's epsilon (``"keskar"``; they used 1e-3 and 5e-4 --
            pass it, the default 0.05 is SAM's).
        kind: ``"sam"``, ``"adaptive"``, ``"random"`` or ``"keskar"``.
        steps: ascent steps (``"sam"``/``"adaptive"``, default 20; each one gradient over
            ``data``) or L-BFGS-B iterations (``"keskar"``, default 10); unused by ``"random"``.
        seed: seed of the random start (only used at an exactly stationary point) and of the
            ``"random"`` draws.
        loss_fn: ``loss_fn(outputs, targets)`` -> batch-mean loss; None = cross-entropy.
        step_size: ascent step in units of the radius (``"sam"``/``"adaptive"``).
        eta: ASAM's offset in ``t = |w| + eta``; default 0, the reparametrisation-invariant
            choice (zero weights are then not perturbed).
        n_draws: perturbations averaged by ``"random"``.

    Returns:
        the sharpness as a float (loss units, or percent for ``"keskar"``).

    Raises:
        ValueError: for an unknown ``kind``, ``rho <= 0``, ``steps < 1``, ``n_draws < 1``,
            ``step_size <= 0``, ``eta < 0`` or malformed ``data``.

    Example: see the module docstring.
    """
    return sharpness_estimate(model, data, rho, kind, steps, seed, loss_fn=loss_fn,
                              step_size=step_size, eta=eta, n_draws=n_draws).value


def sharpness_estimate(model: nn.Module, data: Iterable, rho: float = 0.05, kind: str = "sam",
                       steps: int | None = None, seed: int = 0, *,
                       loss_fn: LossFn | None = None, step_size: float = 1.0, eta: float = 0.0,
                       n_draws: int = 20) -> Estimate:
    """Sharpness with its standard error and its first-order term.

    Same arguments, definitions, units and eval mode as :func:`sharpness` (module docstring).

    Returns:
        :class:`~landscape.probes.hutchpp.Estimate` with

        * ``value``: the sharpness (nats; percent for ``"keskar"``);
        * ``stderr``: for ``"random"`` the sample standard deviation of the ``n_draws`` loss
          rises over ``sqrt(n_draws)`` (NaN for one draw). NaN for ``"sam"``, ``"adaptive"``
          and ``"keskar"``: they are deterministic ascents on fixed data with no sampling to
          report; their error is the optimiser's, one-sided (the value is a loss actually
          reached, so a lower bound of the maximum), and shrinks with ``steps``;
        * ``first_order``: the maximum over the same perturbation set of the linearised rise
          ``g . e`` at ``g = grad L(w)`` (full-batch gradient over ``data``): ``rho ||g||`` for
          ``"sam"``, ``rho || t * g ||`` for ``"adaptive"``,
          ``100 rho sum_i (|w_i| + 1) |g_i| / (1 + L)`` for ``"keskar"``, and 0 for ``"random"``
          (the linear term averages out over the sphere). When it is comparable to ``value``
          the sharpness measures the gradient, not curvature;
        * ``n_samples``: ``n_draws`` for ``"random"``, 0 otherwise; ``n_hvp`` 0;
          ``method``: the kind.

    Raises:
        ValueError: as :func:`sharpness`.

    Example (a quadratic away from its minimum: ``g = A (w - w*)``, ``||g|| = 2``):
        >>> import torch
        >>> from landscape.probes._testing import Quadratic, quadratic_loss
        >>> q = Quadratic(torch.diag(torch.tensor([4.0, 1.0])), torch.zeros(2), w0=[0.5, 0.0])
        >>> data = [(torch.zeros(1, 1), torch.zeros(1))]
        >>> est = sharpness_estimate(q, data, rho=0.01, kind="sam", loss_fn=quadratic_loss(q))
        >>> round(est.first_order, 6), round(est.value, 6)  # rho ||g||, rho ||g|| + rho^2 4 / 2
        (0.02, 0.0202)
        >>> est = sharpness_estimate(q, data, rho=0.01, kind="random", n_draws=100,
        ...                          loss_fn=quadratic_loss(q))
        >>> est.stderr > 0, est.first_order, est.n_samples
        (True, 0.0, 100)
    """
    check_model(model)
    check_choice("kind", kind, KINDS)
    rho = check_positive("rho", rho)
    steps = _DEFAULT_STEPS.get(kind, 1) if steps is None else check_int("steps", steps, 1)
    step_size = check_positive("step_size", step_size)
    eta = check_positive("eta", eta, allow_zero=True)
    n_draws = check_int("n_draws", n_draws, 1)
    gen = as_generator(seed)
    loss_fn = resolve_loss_fn(loss_fn)
    passes = DataPasses(data, model_device(model))
    nan = float("nan")
    with probe_state(model):
        _, params = trainable(model)
        w0 = [p.detach().clone() for p in params]
        if kind == "random":
            base = evaluate_metrics(model, passes, loss_fn, ("loss",))[0]
            rises = []
            for _ in range(n_draws):
                u = [torch.randn(p.shape, generator=gen, dtype=p.dtype).to(p.device)
                     for p in params]
                nu = _norm(u)
                set_params(params, [w + (rho / nu) * ui for w, ui in zip(w0, u)])
                rises.append(evaluate_metrics(model, passes, loss_fn, ("loss",))[0] - base)
            r = np.asarray(rises)
            se = float(r.std(ddof=1) / np.sqrt(n_draws)) if n_draws > 1 else nan
            return Estimate(float(r.mean()), se, 0, kind, n_draws, first_order=0.0)
        base, g0 = loss_and_grad(model, params, passes, loss_fn)
        if kind == "keskar":
            worst = _keskar(model, params, w0, passes, loss_fn, rho, steps, gen, g0)
            lin = rho * float(sum(((w.abs() + 1.0) * g.abs()).double().sum()
                                  for w, g in zip(w0, g0)))
            return Estimate(100.0 * (worst - base) / (1.0 + base), nan, 0, kind, 0,
                            first_order=100.0 * lin / (1.0 + base))
        scale = [w.abs() + eta for w in w0] if kind == "adaptive" else None
        worst = _ascent(model, params, w0, passes, loss_fn, rho, steps, step_size, scale, gen, g0)
        lin = rho * _norm([g * t for g, t in zip(g0, scale)] if scale is not None else g0)
        return Estimate(worst - base, nan, 0, kind, 0, first_order=lin)
