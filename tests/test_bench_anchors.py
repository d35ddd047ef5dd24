"""Side by side with the anchors: where loss-landscapes 3.0.6 and hessian-eigenthings 1.0.0a5
(with their defaults) disagree with the exact answer, and ours does not.

Each test asserts both halves: the anchor's error is large (so the comparison is not vacuous)
and ours is at rounding level. Measured numbers are in benchmarks/bench_probes_vs_anchors.py.
"""
import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from landscape.probes import (HessianOperator, evaluate_loss, flatten_params, hessian_eigenvalues,
                              loss_surface, random_plane)
from landscape.probes._testing import (Quadratic, classification_data, dense_hessian,
                                       quadratic_loss, same_state, spd_matrix, state_of, tiny_mlp)

he = pytest.importorskip("hessian_eigenthings", reason="hessian-eigenthings==1.0.0a5 not importable")
ll = pytest.importorskip("loss_landscapes", reason="loss-landscapes==3.0.6 not importable")
from loss_landscapes.metrics import Loss, Metric  # noqa: E402
from loss_landscapes.model_interface.model_parameters import orthogonal_to, rand_u_like  # noqa: E402
from loss_landscapes.model_interface.model_wrapper import wrap_model  # noqa: E402


pytestmark = pytest.mark.usefixtures("one_thread")


def he_operator(model, data, **kw):
    return he.HessianOperator(model, data, he.supervised_loss(F.cross_entropy), **kw)


def rel(a, b) -> float:
    return float(np.linalg.norm(np.asarray(a) - np.asarray(b)) / np.linalg.norm(np.asarray(b)))


# ------------------------------------------------------------------ hessian-eigenthings
def test_eigenthings_default_lanczos_stops_after_two_steps_ours_converges():
    model, data = tiny_mlp(0, nn.Softplus), classification_data(batch=100)  # equal batches
    lam_max = np.linalg.eigvalsh(dense_hessian(model, data))[-1]
    r = he.lanczos(he_operator(model, data), k=1, which="LA", seed=0)  # default max_iter
    assert r.iterations == 2 and not bool(r.converged[0])
    assert abs(r.eigenvalues[0].item() - lam_max) / lam_max > 0.1   # measured: 16 %
    ours = hessian_eigenvalues(model, data, k=1)
    assert ours.converged and abs(ours.values[-1] - lam_max) / lam_max < 1e-10


def test_eigenthings_few_step_power_iteration_misses_ours_does_not():
    model, data = tiny_mlp(0, nn.Tanh), classification_data(batch=100)  # small spectral gap
    ev = np.linalg.eigvalsh(dense_hessian(model, data))
    op = he_operator(model, data)
    lam, _, _, _, conv = he.power_iteration_one(op, max_iter=5, seed=0)
    assert not conv and abs(lam - ev[-1]) / ev[-1] > 0.1            # measured: 14 %
    top2 = he.deflated_power_iteration(op, k=2, max_iter=5, seed=0).eigenvalues.numpy()
    assert abs(top2[0] / top2[1] - ev[-1] / ev[-2]) > 1.0          # a "ratio" of 4.8 vs 1.23
    ours = hessian_eigenvalues(model, data, k=2)
    np.testing.assert_allclose(ours.values, ev[-2:], rtol=1e-10)


def test_eigenthings_operator_weights_batches_equally_ours_by_size():
    model, data = tiny_mlp(0, nn.Softplus), classification_data(batch=80)  # 80, 80, 40
    H = dense_hessian(model, data)
    v = torch.randn(H.shape[0], dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    ref = H @ v.numpy()
    assert rel(he_operator(model, data).matvec(v).numpy(), ref) > 0.01   # measured: 3.3 %
    assert rel(HessianOperator(model, data).matvec(v).numpy(), ref) < 1e-13


def test_eigenthings_finite_difference_hvp_is_wrong_on_relu_in_float32_ours_is_exact():
    model64, data64 = tiny_mlp(0, nn.ReLU, sizes=(6, 16, 3)), classification_data(batch=100)
    H = dense_hessian(model64, data64)
    model, data = copy.deepcopy(model64).float(), [(x.float(), y) for x, y in data64]
    v = torch.randn(H.shape[0], generator=torch.Generator().manual_seed(0))
    ref = H @ v.double().numpy()
    fd = he_operator(model, data, method="finite_difference").matvec(v)
    assert rel(fd.double().numpy(), ref) > 0.2                            # measured: 85 %
    ours = HessianOperator(model, data).matvec(v.double())
    assert rel(ours.numpy(), ref) < 1e-5                                   # float32 rounding


def test_eigenthings_operator_moves_bn_statistics_ours_leaves_them():
    data = classification_data()
    model = tiny_mlp(0, batchnorm=True).train()
    before = state_of(model)
    he_operator(model, data).matvec(torch.zeros(sum(p.numel() for p in model.parameters()),
                                                 dtype=torch.float64))
    assert not torch.equal(model[1].running_mean, before["buffers"][0][1])  # train-mode BN ran
    model = tiny_mlp(0, batchnorm=True).train()
    before = state_of(model)
    hessian_eigenvalues(model, data, k=1, max_iter=5)
    assert same_state(model, before)


# ------------------------------------------------------------------ loss-landscapes
class _Positions(Metric):
    """A 'metric' returning the flat weights it is evaluated at."""

    def __call__(self, wrapper):
        return torch.cat([t.detach().reshape(-1).clone()
                          for t in wrapper.get_module_parameters().parameters]).numpy()


def test_loss_landscapes_random_plane_is_not_a_grid_and_moves_the_model():
    model = tiny_mlp(0)
    w = flatten_params(model).numpy()
    torch.manual_seed(0)
    X = ll.random_plane(model, _Positions(), distance=1, steps=4, normalization="filter") - w
    # on a grid, consecutive rows are one equal step apart; theirs shifts every other row by
    # one step of the second direction (the serpentine walk is re-ordered but not re-aligned)
    step_y = np.linalg.norm(X[0, 1] - X[0, 0])
    defect = np.linalg.norm((X[2, 0] - X[1, 0]) - (X[1, 0] - X[0, 0])) / step_y
    assert defect > 1.0                                                    # measured: 2.0 steps
    moved = torch.cat([p.detach().reshape(-1) for p in model.parameters()]).numpy() - w
    assert np.linalg.norm(moved) > 0.1                                     # left off-centre
    assert not any(p.requires_grad for p in model.parameters())            # and frozen


def test_loss_landscapes_surface_disagrees_with_the_closed_form_ours_agrees():
    lam = np.array([5.0, 3.0, 2.0, 1.0, 0.5, 0.2])
    q = Quadratic(spd_matrix(lam), np.zeros(6), w0=np.linspace(-1, 1, 6), shape=(2, 3))
    data = [(torch.zeros(2, 1), torch.zeros(2))]
    loss = quadratic_loss(q)
    torch.manual_seed(0)
    positions = ll.random_plane(copy.deepcopy(q), _Positions(), distance=1, steps=4)
    torch.manual_seed(0)
    z_ll = ll.random_plane(copy.deepcopy(q), Loss(loss, *data[0]), distance=1, steps=4)
    w = q.w.detach().numpy().ravel()
    # read the grid loss-landscapes *claims* from its first row and column
    step_x = positions[1, 0] - positions[0, 0]
    step_y = positions[0, 1] - positions[0, 0]
    origin = positions[0, 0]
    claimed = np.array([[q.value(origin + i * step_x + j * step_y) for j in range(4)]
                        for i in range(4)])
    assert np.max(np.abs(z_ll - claimed)) > 1e-2 * np.max(np.abs(claimed))
    dx, dy = random_plane(q, seed=0)
    xs = ys = np.linspace(-1, 1, 4)
    z = loss_surface(q, data, [dx, dy], (xs, ys), loss_fn=loss)
    vx, vy = dx[0].numpy().ravel(), dy[0].numpy().ravel()
    exact = np.array([[q.value(w + a * vx + b * vy) for b in ys] for a in xs])
    np.testing.assert_allclose(z, exact, rtol=1e-12)


def test_loss_landscapes_directions_are_uniform_not_orthogonal_and_keep_biases():
    model = tiny_mlp(0)
    start = wrap_model(copy.deepcopy(model)).get_module_parameters()
    torch.manual_seed(0)
    d1 = rand_u_like(start)
    d2 = orthogonal_to(d1)
    assert min(float(t.min()) for t in d1.parameters) >= 0.0          # uniform on [0, 1)
    d1.filter_normalize_(start)
    d2.filter_normalize_(start)
    v1 = torch.cat([t.reshape(-1) for t in d1.parameters])
    v2 = torch.cat([t.reshape(-1) for t in d2.parameters])
    assert float(v1 @ v2 / (v1.norm() * v2.norm())) > 0.05            # measured cos: 0.17
    assert all(float(t.abs().sum()) > 0 for t in d1.parameters if t.dim() == 1)  # biases kept
    e1, e2 = random_plane(model, seed=0)
    u1 = torch.cat([t.reshape(-1) for t in e1])
    u2 = torch.cat([t.reshape(-1) for t in e2])
    assert abs(float(u1 @ u2)) < 1e-12 * float(u1.norm() * u2.norm())
    assert all(float(t.abs().sum()) == 0 for t in e1 if t.dim() == 1)


def test_loss_landscapes_filter_normalisation_divides_by_zero_on_a_zero_bias_ours_does_not():
    model = tiny_mlp(0)
    with torch.no_grad():
        model[0].bias.zero_()  # as BN shifts and many biases are at initialisation
    torch.manual_seed(0)
    with pytest.raises(ZeroDivisionError):
        ll.random_plane(copy.deepcopy(model), _Positions(), steps=2, normalization="filter")
    for ignore in ("biasbn", None):
        d = random_plane(model, seed=0, ignore=ignore)
        assert all(torch.isfinite(t).all() for t in d[0] + d[1])


def test_loss_landscapes_metric_sees_one_batch_ours_the_whole_dataset():
    model, data = tiny_mlp(0), classification_data()
    x = torch.cat([b[0] for b in data])
    y = torch.cat([b[1] for b in data])
    with torch.no_grad():
        full = F.cross_entropy(model(x), y).item()
    one_batch = Loss(F.cross_entropy, *data[0])(wrap_model(copy.deepcopy(model)))
    assert abs(one_batch - full) > 1e-3                                    # measured: 0.018
    assert evaluate_loss(model, data) == pytest.approx(full, rel=1e-13)
