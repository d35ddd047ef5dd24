"""Sharpness against closed forms on quadratics, its standard error and first-order term, and
which kinds are invariant to the function-preserving rescaling T_alpha of a ReLU MLP."""
import doctest
import importlib

import numpy as np
import pytest
import torch
from scipy.optimize import brentq
from torch import nn

from landscape.probes import sharpness, sharpness_estimate
from landscape.probes._testing import Quadratic, classification_data, quadratic_loss, spd_matrix, tiny_mlp
from landscape.reparam import rescale_layers


pytestmark = pytest.mark.usefixtures("one_thread")


DUMMY = [(torch.zeros(4, 1), torch.zeros(4))]
LAM = np.array([4.0, 2.5, 2.0, 1.0, 0.5, 0.25, 0.1, 0.0])


def at_minimum(lam=LAM, c=0.3, seed=0):
    rng = np.random.default_rng(seed)
    w_star = rng.standard_normal(len(lam)) + 2.0  # away from 0 so |w| matters for ASAM/Keskar
    return Quadratic(spd_matrix(lam, seed), w_star, c=c)


def test_sam_sharpness_at_a_minimum_is_half_rho_squared_lambda_max():
    q = at_minimum()
    rho = 0.05
    s = sharpness(q, DUMMY, rho=rho, kind="sam", steps=40, loss_fn=quadratic_loss(q))
    assert s == pytest.approx(0.5 * rho ** 2 * LAM.max(), rel=1e-8)
    # with the default budget (20 steps) it is already within 0.1 %
    s20 = sharpness(q, DUMMY, rho=rho, kind="sam", loss_fn=quadratic_loss(q))
    assert s20 == pytest.approx(0.5 * rho ** 2 * LAM.max(), rel=1e-3)
    assert s20 <= 0.5 * rho ** 2 * LAM.max() * (1 + 1e-12)  # never above the true maximum


def test_adaptive_sharpness_equals_the_rescaled_closed_form():
    q = at_minimum()
    rho, eta = 0.1, 0.01
    t = np.abs(q.w.detach().numpy()) + eta
    lam_t = np.linalg.eigvalsh(t[:, None] * q.A.numpy() * t[None, :]).max()
    s = sharpness(q, DUMMY, rho=rho, kind="adaptive", steps=60, eta=eta, loss_fn=quadratic_loss(q))
    assert s == pytest.approx(0.5 * rho ** 2 * lam_t, rel=1e-8)


def test_random_sharpness_matches_the_expected_increase_over_the_sphere():
    q = at_minimum()
    rho, n, draws = 0.2, len(LAM), 4000
    A = q.A.numpy()
    mean = 0.5 * rho ** 2 * np.trace(A) / n
    # Var(u^T A u) for u uniform on the unit sphere
    var = 2 * (n * np.trace(A @ A) - np.trace(A) ** 2) / (n ** 2 * (n + 2))
    se = 0.5 * rho ** 2 * np.sqrt(var / draws)
    s = sharpness(q, DUMMY, rho=rho, kind="random", n_draws=draws, loss_fn=quadratic_loss(q))
    assert abs(s - mean) <= 4 * se, (s, mean, se)


@pytest.mark.parametrize("eps", [1e-3, 5e-4, 1e-2])  # Keskar et al.'s 1e-3 and 5e-4
def test_keskar_sharpness_equals_the_separable_box_maximum(eps):
    # diagonal A with curvature of both signs, away from the minimum: the box maximum is
    # separable, and for negative curvature it is interior (L-BFGS-B must find it)
    lam = np.array([3.0, 1.0, 0.5, -0.5, -2.0, 0.0])
    w_star = np.zeros(6)
    w = np.array([0.01, -0.02, 0.5, 0.001, -0.004, 1.0]) * (eps / 0.01)  # interior optima exist
    q = Quadratic(np.diag(lam), w_star, c=0.2, w0=w)
    b = eps * (np.abs(w) + 1)
    u = w - w_star
    best = []
    for li, ui, bi in zip(lam, u, b):
        cands = [-bi, bi] + ([-ui] if abs(ui) <= bi else [])
        best.append(max(0.5 * li * (ui + y) ** 2 for y in cands))
    base = q.value(w)
    expected = 100 * (q.c + sum(best) - base) / (1 + base)
    est = sharpness_estimate(q, DUMMY, rho=eps, kind="keskar", loss_fn=quadratic_loss(q))
    # to 1e-6 relative, or 1e-9 nats of loss rise (L-BFGS-B's default ftol stops it there)
    assert est.value == pytest.approx(expected, rel=1e-6, abs=100 * 1e-9 / (1 + base))
    # first-order term: the box corner along sign(g), g = A (w - w*)
    g = lam * u
    assert est.first_order == pytest.approx(100 * np.sum(b * np.abs(g)) / (1 + base), rel=1e-12)
    assert np.isnan(est.stderr) and est.method == "keskar"


def relu_mlp() -> nn.Module:
    return tiny_mlp(0, nn.ReLU, sizes=(6, 16, 3))


def test_adaptive_sharpness_is_invariant_to_relu_rescaling_but_sam_is_not():
    data = classification_data()
    a = relu_mlp()
    b = relu_mlp()
    with torch.no_grad():  # same function: layer 1 x 4, layer 2 / 4
        b[0].weight.mul_(4.0)
        b[0].bias.mul_(4.0)
        b[2].weight.div_(4.0)
    with torch.no_grad():
        x = data[0][0]
        torch.testing.assert_close(a(x), b(x))
    kw = dict(rho=0.5, steps=5)  # the default eta = 0
    sa = sharpness(a, data, kind="adaptive", **kw)
    sb = sharpness(b, data, kind="adaptive", **kw)
    assert sa == pytest.approx(sb, rel=1e-9)
    sam_a = sharpness(a, data, rho=0.05, kind="sam", steps=5)
    sam_b = sharpness(b, data, rho=0.05, kind="sam", steps=5)
    assert abs(sam_a - sam_b) > 0.05 * abs(sam_a)


def test_adaptive_sharpness_at_the_default_eta_is_invariant_under_t_alpha_and_asams_eta_is_not():
    data, a = classification_data(), relu_mlp()
    b = rescale_layers(a, 10.0)  # T_alpha, alpha = 10: layer 1 x 10, layer 2 / 10
    with torch.no_grad():
        torch.testing.assert_close(a(data[0][0]), b(data[0][0]))
    kw = dict(rho=0.5, steps=5, kind="adaptive")
    sa, sb = sharpness(a, data, **kw), sharpness(b, data, **kw)
    assert sa > 0 and sb == pytest.approx(sa, rel=1e-6)
    # ASAM's eta = 0.01 is comparable to the shrunk layer's weights (mean |w| 0.012 after / 10):
    # the offset, not the landscape, moves the number
    old_a, old_b = (sharpness(m, data, eta=0.01, **kw) for m in (a, b))
    assert abs(old_b - old_a) > 0.1 * old_a, (old_a, old_b)


def test_adaptive_sharpness_at_eta_zero_never_perturbs_zero_weights():
    # one coordinate of the quadratic sits at w = 0: its ball radius is 0, so the maximum is the
    # closed form of the other coordinates alone
    lam = np.array([3.0, 2.0, 1.0])
    w = np.array([0.0, 1.0, -2.0])
    q = Quadratic(np.diag(lam), w, w0=w)  # at the minimum
    rho = 0.1
    t = np.abs(w)
    expected = 0.5 * rho ** 2 * np.max(lam * t ** 2)  # diagonal: max_k lam_k t_k^2
    s = sharpness(q, DUMMY, rho=rho, kind="adaptive", steps=60, loss_fn=quadratic_loss(q))
    assert s == pytest.approx(expected, rel=1e-8)
    # all weights zero: the ball is the single point w, the sharpness 0
    z = Quadratic(np.diag(lam), np.zeros(3))
    assert sharpness(z, DUMMY, rho=rho, kind="adaptive", loss_fn=quadratic_loss(z)) == 0.0


def test_keskar_sharpness_is_not_invariant_under_t_alpha_and_grows_without_bound():
    data, a = classification_data(), relu_mlp()
    vals = [sharpness(rescale_layers(a, alpha), data, rho=1e-3, kind="keskar")
            for alpha in (1.0, 10.0, 100.0)]
    assert vals[0] > 0 and vals[0] < vals[1] < vals[2], vals
    assert vals[2] > 10 * vals[0], vals  # the same function, a tenfold "sharper" minimum


def test_keskar_at_their_epsilon_is_close_to_its_first_order_term_on_a_tiny_mlp():
    # at eps = 1e-3 the box is so small that the loss is nearly linear in it: the maximum is
    # the corner along sign(g) plus a second-order correction of relative size ~1e-2
    model, data = relu_mlp(), classification_data()
    est = sharpness_estimate(model, data, rho=1e-3, kind="keskar")
    assert est.first_order > 0
    assert est.value == pytest.approx(est.first_order, rel=0.05)


def trust_region_max(A, g, rho):
    """max_{||e|| <= rho} g.e + e^T A e / 2 for symmetric A: e = (mu I - A)^{-1} g, ||e|| = rho."""
    lam, V = np.linalg.eigh(A)
    gh = V.T @ g
    mu = brentq(lambda m: np.sum((gh / (m - lam)) ** 2) - rho ** 2,
                lam[-1] + 1e-12 * (1 + abs(lam[-1])), lam[-1] + np.linalg.norm(g) / rho + 1.0)
    e = gh / (mu - lam)
    return gh @ e + 0.5 * np.sum(lam * e ** 2)


@pytest.mark.parametrize("offset", [0.01, 0.1, 1.0])  # ||g|| from below to far above rho lambda_max
def test_sam_sharpness_away_from_a_minimum_is_the_trust_region_maximum_beside_rho_grad_norm(offset):
    q0 = at_minimum()
    rng = np.random.default_rng(1)
    w = q0.w_star.numpy() + offset * rng.standard_normal(len(LAM))
    q = Quadratic(q0.A.numpy(), q0.w_star.numpy(), c=0.3, w0=w)
    A, rho = q.A.numpy(), 0.05
    g = A @ (w - q.w_star.numpy())
    est = sharpness_estimate(q, DUMMY, rho=rho, kind="sam", steps=100, loss_fn=quadratic_loss(q))
    assert est.first_order == pytest.approx(rho * np.linalg.norm(g), rel=1e-12)
    assert est.value == pytest.approx(trust_region_max(A, g, rho), rel=1e-8)
    # rho ||g|| <= S <= rho ||g|| + rho^2 lambda_max / 2
    assert est.first_order <= est.value * (1 + 1e-12)
    assert est.value <= est.first_order + 0.5 * rho ** 2 * LAM.max() + 1e-12
    assert np.isnan(est.stderr) and est.n_samples == 0 and est.method == "sam"
    if np.linalg.norm(g) > 10 * rho * LAM.max():  # the gradient regime: SAM measures ||g||
        assert est.value / est.first_order < 1.05


def test_adaptive_first_order_term_is_rho_times_the_scaled_gradient_norm():
    lam = np.array([3.0, 2.0, 1.0])
    w_star, w = np.zeros(3), np.array([0.5, -1.0, 2.0])
    q = Quadratic(np.diag(lam), w_star, w0=w)
    est = sharpness_estimate(q, DUMMY, rho=0.1, kind="adaptive", loss_fn=quadratic_loss(q))
    assert est.first_order == pytest.approx(0.1 * np.linalg.norm(np.abs(w) * lam * w), rel=1e-12)


def sphere_moments(A, rho, g=None):
    """Mean and variance of rho g.u + rho^2 u^T A u / 2 for u uniform on the unit sphere."""
    n = A.shape[0]
    mean = 0.5 * rho ** 2 * np.trace(A) / n
    var_q = 2 * (n * np.trace(A @ A) - np.trace(A) ** 2) / (n ** 2 * (n + 2))
    var = 0.25 * rho ** 4 * var_q + (0 if g is None else rho ** 2 * (g @ g) / n)
    return mean, var  # g.u and u^T A u are uncorrelated (odd vs even in u)


def test_random_sharpness_stderr_matches_the_exact_sampling_spread():
    q = at_minimum()
    rho, draws = 0.2, 2000
    mean, var = sphere_moments(q.A.numpy(), rho)
    est = sharpness_estimate(q, DUMMY, rho=rho, kind="random", n_draws=draws,
                             loss_fn=quadratic_loss(q))
    assert est.stderr == pytest.approx(np.sqrt(var / draws), rel=0.15)
    assert abs(est.value - mean) <= 4 * est.stderr
    assert est.n_samples == draws and est.first_order == 0.0 and est.method == "random"
    assert est.value == sharpness(q, DUMMY, rho=rho, kind="random", n_draws=draws,
                                  loss_fn=quadratic_loss(q))


def test_random_sharpness_interval_covers_the_truth_over_seeds_away_from_a_minimum():
    # away from the minimum the first-order term rho g.u dominates the spread, not the mean
    q0 = at_minimum()
    w = q0.w_star.numpy() + 0.1
    q = Quadratic(q0.A.numpy(), q0.w_star.numpy(), w0=w)
    g = q.A.numpy() @ (w - q.w_star.numpy())
    rho = 0.2
    mean, var = sphere_moments(q.A.numpy(), rho, g)
    z = []
    for seed in range(40):
        est = sharpness_estimate(q, DUMMY, rho=rho, kind="random", seed=seed,
                                 loss_fn=quadratic_loss(q))  # the default 20 draws
        z.append((est.value - mean) / est.stderr)
    z = np.abs(z)
    assert np.mean(z <= 2) >= 0.8, z
    assert np.mean(z <= 0.25) <= 0.5, z
    one = sharpness_estimate(q, DUMMY, rho=rho, kind="random", n_draws=1, loss_fn=quadratic_loss(q))
    assert np.isnan(one.stderr)


def test_sharpness_module_examples_run_as_written():
    mod = importlib.import_module("landscape.probes.sharpness")
    result = doctest.testmod(mod)
    assert result.attempted >= 10 and result.failed == 0


def test_several_ascent_steps_find_at_least_sams_one_step_increase():
    model, data = tiny_mlp(0, nn.Softplus), classification_data()
    one = sharpness(model, data, rho=0.5, kind="sam", steps=1)
    many = sharpness(model, data, rho=0.5, kind="sam", steps=10)
    assert many >= one > 0
    assert many > 1.01 * one  # the extra steps matter on a curved net


@pytest.mark.parametrize("kwargs, message", [
    (dict(kind="sharp"), "kind='sharp'"),
    (dict(rho=0.0), "rho=0.0"),
    (dict(steps=0), "steps=0"),
    (dict(kind="random", n_draws=0), "n_draws=0"),
])
def test_sharpness_rejects_bad_arguments_by_name(kwargs, message):
    with pytest.raises(ValueError, match=message):
        sharpness(tiny_mlp(), classification_data(), **kwargs)
