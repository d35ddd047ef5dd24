"""Sharpness against closed forms on quadratics, and ASAM's invariance on a ReLU MLP."""
import numpy as np
import pytest
import torch
from torch import nn

from landscape.probes import sharpness
from landscape.probes._testing import Quadratic, classification_data, quadratic_loss, spd_matrix, tiny_mlp


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


def test_keskar_sharpness_equals_the_separable_box_maximum():
    # diagonal A with curvature of both signs, away from the minimum: the box maximum is
    # separable, and for negative curvature it is interior (L-BFGS-B must find it)
    lam = np.array([3.0, 1.0, 0.5, -0.5, -2.0, 0.0])
    w_star = np.zeros(6)
    w = np.array([0.01, -0.02, 0.5, 0.001, -0.004, 1.0])
    q = Quadratic(np.diag(lam), w_star, c=0.2, w0=w)
    eps = 0.01
    b = eps * (np.abs(w) + 1)
    u = w - w_star
    best = []
    for li, ui, bi in zip(lam, u, b):
        cands = [-bi, bi] + ([-ui] if abs(ui) <= bi else [])
        best.append(max(0.5 * li * (ui + y) ** 2 for y in cands))
    base = q.value(w)
    expected = 100 * (q.c + sum(best) - base) / (1 + base)
    s = sharpness(q, DUMMY, rho=eps, kind="keskar", loss_fn=quadratic_loss(q))
    assert s == pytest.approx(expected, rel=1e-6)


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
    kw = dict(rho=0.5, steps=5, eta=0.0)
    sa = sharpness(a, data, kind="adaptive", **kw)
    sb = sharpness(b, data, kind="adaptive", **kw)
    assert sa == pytest.approx(sb, rel=1e-9)
    sam_a = sharpness(a, data, rho=0.05, kind="sam", steps=5)
    sam_b = sharpness(b, data, rho=0.05, kind="sam", steps=5)
    assert abs(sam_a - sam_b) > 0.05 * abs(sam_a)


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
