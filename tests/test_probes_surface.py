"""Loss surfaces against closed forms on a quadratic and against direct evaluation on an MLP."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from landscape.probes import evaluate_loss, flatten_params, loss_surface, random_direction, random_plane
from landscape.probes._testing import Quadratic, classification_data, quadratic_loss, spd_matrix, tiny_mlp


pytestmark = pytest.mark.usefixtures("one_thread")


DUMMY = [(torch.zeros(3, 1), torch.zeros(3)), (torch.zeros(2, 1), torch.zeros(2))]


@pytest.fixture
def quad():
    lam = np.array([5.0, 3.0, 2.0, 1.0, 0.5, 0.2, 0.1, 0.05, 0.0, -0.3, 1.5, 2.5])
    rng = np.random.default_rng(1)
    return Quadratic(spd_matrix(lam), rng.standard_normal(12), c=0.7, shape=(3, 4),
                     w0=rng.standard_normal(12))


def test_1d_surface_equals_the_quadratic_closed_form(quad):
    d = random_direction(quad, seed=0)  # filter-normalised rows of the (3, 4) weight
    a = np.linspace(-2, 2, 9)
    z = loss_surface(quad, DUMMY, [d], a, loss_fn=quadratic_loss(quad))
    w, v = quad.w.detach().numpy().ravel(), d[0].numpy().ravel()
    np.testing.assert_allclose(z, [quad.value(w + s * v) for s in a], rtol=1e-12)


def test_2d_surface_equals_the_quadratic_closed_form_with_ij_indexing(quad):
    dx, dy = random_plane(quad, seed=1)
    xs, ys = np.linspace(-1, 1, 5), np.linspace(-0.5, 1.5, 4)
    z = loss_surface(quad, DUMMY, [dx, dy], (xs, ys), loss_fn=quadratic_loss(quad))
    w = quad.w.detach().numpy().ravel()
    vx, vy = dx[0].numpy().ravel(), dy[0].numpy().ravel()
    ref = np.array([[quad.value(w + a * vx + b * vy) for b in ys] for a in xs])
    assert z.shape == (5, 4)
    np.testing.assert_allclose(z, ref, rtol=1e-12)
    # flat directions give the same surface
    z2 = loss_surface(quad, DUMMY, [torch.from_numpy(vx), vy], (xs, ys), loss_fn=quadratic_loss(quad))
    np.testing.assert_allclose(z2, z, rtol=1e-14)


def test_surface_centre_is_evaluated_and_equals_the_model_loss():
    model, data = tiny_mlp(), classification_data()
    dx, dy = random_plane(model, seed=0)
    xs = ys = np.linspace(-1, 1, 5)
    z = loss_surface(model, data, [dx, dy], (xs, ys), metric="both")
    loss0, acc0 = evaluate_loss(model, data, metric="both")
    assert z.shape == (2, 5, 5)
    assert z[0, 2, 2] == loss0 and z[1, 2, 2] == acc0  # bit-identical weights at the centre
    assert np.all(z[0] >= 0) and np.all((z[1] >= 0) & (z[1] <= 1))


def test_surface_loss_is_the_sample_weighted_mean_over_all_batches():
    model, data = tiny_mlp(), classification_data(batch=80)  # 80, 80, 40
    x = torch.cat([b[0] for b in data])
    y = torch.cat([b[1] for b in data])
    d = random_direction(model, seed=2)
    a = np.array([-0.5, 0.0, 0.7])
    z = loss_surface(model, data, [d], a, metric=("loss", "error"))
    ref = []
    for s in a:
        with torch.no_grad():
            saved = [p.clone() for p in model.parameters()]
            for p, di in zip(model.parameters(), d):
                p.add_(di, alpha=s)
            out = model(x)
            ref.append([F.cross_entropy(out, y).item(), (out.argmax(1) != y).double().mean().item()])
            for p, w in zip(model.parameters(), saved):
                p.copy_(w)
    np.testing.assert_allclose(z.T, ref, rtol=1e-12)


def test_surface_reports_progress_and_rejects_bad_coords():
    model, data = tiny_mlp(), classification_data()
    d = random_direction(model, seed=0)
    seen = []
    loss_surface(model, data, [d], [0.0, 1.0, 2.0], progress=lambda i, n: seen.append((i, n)))
    assert seen == [(0, 3), (1, 3), (2, 3)]
    with pytest.raises(ValueError, match="coords"):
        loss_surface(model, data, [d, d], np.linspace(0, 1, 3))
    with pytest.raises(ValueError, match="metric='acc'"):
        loss_surface(model, data, [d], [0.0], metric="acc")
    with pytest.raises(ValueError, match="83 elements"):
        loss_surface(model, data, [torch.zeros(82)], [0.0])


def test_flatten_params_is_the_coordinate_system_of_flat_directions():
    model, data = tiny_mlp(), classification_data()
    d = random_direction(model, seed=0)
    flat = torch.cat([t.reshape(-1) for t in d])
    assert flatten_params(model).shape == flat.shape
    a = np.array([0.3])
    assert loss_surface(model, data, [flat], a)[0] == loss_surface(model, data, [d], a)[0]


def _tiny_cnn(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Conv2d(2, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.ReLU(),
                               torch.nn.Flatten(), torch.nn.Linear(4 * 6 * 6, 3)).double()


@pytest.mark.parametrize("start_channels_last", [False, True])
def test_conv_surface_runs_channels_last_and_restores_each_tensors_memory_format(start_channels_last):
    from landscape.probes._common import DataPasses, channels_last
    model = _tiny_cnn(0)
    if start_channels_last:
        model = model.to(memory_format=torch.channels_last)
    g = torch.Generator().manual_seed(0)
    data = [(torch.randn(20, 2, 8, 8, generator=g, dtype=torch.float64), torch.arange(20) % 3)]
    strides = [t.stride() for t in list(model.parameters()) + list(model.buffers())]
    xs = np.linspace(-0.5, 0.5, 5)
    d = random_direction(model, seed=1)
    z = loss_surface(model, data, [d], xs)
    assert [t.stride() for t in list(model.parameters()) + list(model.buffers())] == strides
    # the same values as a plain NCHW evaluation, point by point
    w = [p.detach().clone() for p in model.parameters()]
    ref = []
    with torch.no_grad():
        for a in xs:
            for p, p0, dp in zip(model.parameters(), w, d):
                p.copy_(p0 + a * dp)
            ref.append(F.cross_entropy(model.eval()(data[0][0].contiguous()), data[0][1]).item())
            for p, p0 in zip(model.parameters(), w):
                p.copy_(p0)
    np.testing.assert_allclose(z, ref, rtol=1e-12)
    assert z[2] == evaluate_loss(model, data)  # the centre is the model's own loss, bit for bit
    # inside the context the 4-D weights and inputs are channels-last
    with channels_last(model, DataPasses(data, torch.device("cpu"))) as passes:
        conv = model[0].weight
        assert conv.is_contiguous(memory_format=torch.channels_last) and not conv.is_contiguous()
        x, _, _ = next(iter(passes))
        assert x.is_contiguous(memory_format=torch.channels_last)
