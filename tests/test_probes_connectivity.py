"""Linear interpolation, barriers and Bezier curves against formulas and hand computations."""
import copy

import numpy as np
import pytest
import torch
from torch import nn

from landscape.probes import barrier, bezier_curve, evaluate_loss, interpolate
from landscape.probes._testing import (Quadratic, classification_data, quadratic_loss, spd_matrix,
                                       tiny_mlp)


pytestmark = pytest.mark.usefixtures("one_thread")


DUMMY = [(torch.zeros(3, 1), torch.zeros(3))]


def test_interpolation_equals_the_quadratic_formula():
    A = spd_matrix([3.0, 1.0, 0.5, 0.1])
    rng = np.random.default_rng(0)
    wa, wb = rng.standard_normal(4), rng.standard_normal(4)
    qa = Quadratic(A, np.zeros(4), c=0.1, w0=wa)
    qb = Quadratic(A, np.zeros(4), c=0.1, w0=wb)
    ts = np.linspace(-0.5, 1.5, 9)
    z = interpolate(qa, qb, DUMMY, ts, loss_fn=quadratic_loss(qa))
    np.testing.assert_allclose(z, [qa.value((1 - t) * wa + t * wb) for t in ts], rtol=1e-12)


def test_barrier_is_max_minus_mean_of_endpoints():
    assert barrier([1.0, 3.0, 2.0]) == pytest.approx(1.5)
    assert barrier(np.array([0.2, 0.1, 0.4])) == pytest.approx(0.1)
    assert barrier([2.0, 1.0, 0.0]) == pytest.approx(1.0)  # the max may be an endpoint
    with pytest.raises(ValueError, match="1-D"):
        barrier(np.zeros((2, 3)))


def test_interpolation_endpoints_are_the_models_and_metrics_stack():
    data = classification_data()
    a, b = tiny_mlp(0), tiny_mlp(1)
    z = interpolate(a, b, data, [0.0, 0.5, 1.0], metric=("loss", "error"))
    assert z.shape == (2, 3)
    assert z[0, 0] == evaluate_loss(a, data) and z[0, 2] == evaluate_loss(b, data)
    assert z[1, 0] == evaluate_loss(a, data, metric="error")


def bn_model(seed: int) -> nn.Module:
    """BN MLP whose running statistics have been moved away from their defaults."""
    m = tiny_mlp(seed, batchnorm=True)
    m.train()
    g = torch.Generator().manual_seed(seed + 10)
    with torch.no_grad():
        for _ in range(3):
            m(2 + 3 * torch.randn(50, 6, generator=g, dtype=torch.float64))
    return m.eval()


def manual_recompute(model: nn.Module, batches) -> nn.Module:
    """Running statistics as the cumulative average of per-batch mean / unbiased variance."""
    m = copy.deepcopy(model).eval()
    lin, bn = m[0], m[1]
    with torch.no_grad():
        hs = [lin(x) for x, _ in batches]
        bn.running_mean.copy_(torch.stack([h.mean(0) for h in hs]).mean(0))
        bn.running_var.copy_(torch.stack([h.var(0, unbiased=True) for h in hs]).mean(0))
    return m


def test_bn_statistics_are_recomputed_at_every_point_of_the_path():
    data = classification_data(batch=80)
    bn_data = classification_data(seed=5, batch=64)
    a, b = bn_model(0), bn_model(1)
    ts = [0.0, 0.3, 1.0]
    z = interpolate(a, b, data, ts, bn="recompute", bn_data=bn_data)
    ref = []
    for t in ts:
        m = copy.deepcopy(a)
        with torch.no_grad():
            for p, pa, pb in zip(m.parameters(), a.parameters(), b.parameters()):
                p.copy_(torch.lerp(pa, pb, t))
        ref.append(evaluate_loss(manual_recompute(m, bn_data), data))
    np.testing.assert_allclose(z, ref, rtol=1e-10)
    # stale statistics (the models' own) give a different loss at the endpoints
    assert abs(z[0] - evaluate_loss(a, data)) > 1e-3


def test_bn_statistics_can_be_interpolated_instead():
    data = classification_data()
    a, b = bn_model(0), bn_model(1)
    z = interpolate(a, b, data, [0.0, 0.5, 1.0], bn="interpolate")
    assert z[0] == evaluate_loss(a, data) and z[2] == evaluate_loss(b, data)
    m = copy.deepcopy(a)
    with torch.no_grad():
        for p, pa, pb in zip(m.parameters(), a.parameters(), b.parameters()):
            p.copy_(torch.lerp(pa, pb, 0.5))
        m[1].running_mean.copy_(torch.lerp(a[1].running_mean, b[1].running_mean, 0.5))
        m[1].running_var.copy_(torch.lerp(a[1].running_var, b[1].running_var, 0.5))
    assert z[1] == pytest.approx(evaluate_loss(m, data), rel=1e-12)


class Ring(nn.Module):
    """Two parameters; with :func:`ring_loss` every point of the unit circle is a minimum."""

    def __init__(self, w):
        super().__init__()
        self.w = nn.Parameter(torch.tensor(w, dtype=torch.float64))

    def forward(self, x):
        return self.w.expand(x.shape[0], -1)


def ring_loss(out, y):
    return (((out ** 2).sum(1) - 1) ** 2).mean()


def test_trained_bezier_curve_goes_around_the_barrier_of_the_straight_line():
    a, b = Ring([1.0, 0.0]), Ring([-0.6, 0.8])
    data = [DUMMY[0]] * 10
    ts = np.linspace(0, 1, 41)
    line = interpolate(a, b, data, ts, loss_fn=ring_loss)
    assert barrier(line) == pytest.approx(0.64)  # the chord's midpoint has |w|^2 = 0.2
    curve = bezier_curve(a, b, data, loss_fn=ring_loss, epochs=20, lr=0.05)
    along = curve.evaluate(a, data, ts, loss_fn=ring_loss)
    assert barrier(along) < 0.02 * barrier(line)
    assert along[0] == line[0] and along[-1] == line[-1]  # the curve ends at the models
    assert curve.history[-1] < curve.history[0]
    assert a.w.tolist() == [1.0, 0.0] and b.w.tolist() == [-0.6, 0.8]


def test_bezier_curve_trains_with_batchnorm_and_leaves_the_models_alone():
    data = classification_data()
    a, b = bn_model(0), bn_model(1)
    sa = copy.deepcopy(a.state_dict())
    curve = bezier_curve(a, b, data, epochs=3, lr=0.05)
    assert all(torch.equal(v, a.state_dict()[k]) for k, v in sa.items())
    z = curve.evaluate(a, data, [0.0, 0.5, 1.0], metric="both")
    assert z.shape == (2, 3) and np.all(np.isfinite(z))


@pytest.mark.parametrize("call, message", [
    (lambda a, b, d: interpolate(a, b, d, [0, 1], bn="stale"), "bn='stale'"),
    (lambda a, b, d: interpolate(a, tiny_mlp(0, sizes=(6, 9, 3)), d, [0, 1]), "same parameters"),
    (lambda a, b, d: interpolate(a, b, d, []), "ts"),
    (lambda a, b, d: bezier_curve(a, b, d, epochs=0), "epochs=0"),
])
def test_connectivity_rejects_bad_arguments(call, message):
    with pytest.raises(ValueError, match=message):
        call(tiny_mlp(0), tiny_mlp(1), classification_data())
