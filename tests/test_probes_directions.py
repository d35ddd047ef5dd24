"""Directions (Li et al. 2018 filter normalisation) and PCA directions of a trajectory."""
import numpy as np
import pytest
import torch
from torch import nn

from landscape.probes import (flatten_params, orthogonalize, pca_directions, random_direction,
                              random_plane)
from landscape.probes._testing import tiny_mlp


pytestmark = pytest.mark.usefixtures("one_thread")


def small_convnet() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(2, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 3, 3),
                         nn.Flatten(), nn.Linear(3 * 4 * 4, 5)).double()


def slice_norms(t: torch.Tensor) -> torch.Tensor:
    return t.reshape(t.shape[0], -1).norm(dim=1)


@pytest.mark.parametrize("make", [tiny_mlp, small_convnet])
def test_filter_normalised_slices_have_the_weight_slice_norms(make):
    model = make()
    d = random_direction(model, seed=0)
    params = [p for p in model.parameters()]
    assert len(d) == len(params)
    for di, p in zip(d, params):
        assert di.shape == p.shape and di.dtype == p.dtype
        if p.dim() > 1:
            torch.testing.assert_close(slice_norms(di), slice_norms(p.detach()), rtol=1e-9, atol=0)
        else:  # biases and BN affine parameters are zeroed (ignore="biasbn")
            assert torch.count_nonzero(di) == 0


def test_ignore_none_keeps_biases_as_the_weights_like_li_et_al():
    model = small_convnet()
    d = random_direction(model, seed=0, ignore=None)
    for di, p in zip(d, model.parameters()):
        if p.dim() <= 1:
            assert torch.equal(di, p.detach())


def test_layer_normalisation_gives_each_tensor_its_weight_norm():
    model = small_convnet()
    d = random_direction(model, seed=0, norm="layer", ignore=None)
    for di, p in zip(d, model.parameters()):
        torch.testing.assert_close(di.norm(), p.detach().norm(), rtol=1e-9, atol=0)


def test_unnormalised_direction_is_standard_gaussian():
    model = tiny_mlp(0, sizes=(50, 40, 10))
    v = torch.cat([t.reshape(-1) for t in random_direction(model, seed=0, norm="none", ignore=None)])
    assert abs(float(v.mean())) < 0.05 and abs(float(v.std()) - 1) < 0.05  # not uniform[0, 1)


def test_same_seed_same_direction_other_seed_other_direction():
    model = tiny_mlp()
    a, b, c = (random_direction(model, seed=s) for s in (3, 3, 4))
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    assert not all(torch.equal(x, y) for x, y in zip(a, c))


@pytest.mark.parametrize("norm", ["filter", "layer", "none"])
def test_random_plane_is_orthogonal_and_keeps_its_normalisation(norm):
    model = small_convnet()
    d1, d2 = random_plane(model, seed=0, norm=norm)
    assert all(torch.equal(x, y) for x, y in zip(d1, random_direction(model, 0, norm=norm)))
    v1 = torch.cat([t.reshape(-1) for t in d1])
    v2 = torch.cat([t.reshape(-1) for t in d2])
    assert abs(float(v1 @ v2)) <= 1e-10 * float(v1.norm() * v2.norm())
    if norm == "filter":
        for t, p in zip(d2, model.parameters()):
            if p.dim() > 1:
                torch.testing.assert_close(slice_norms(t), slice_norms(p.detach()), rtol=1e-9, atol=0)
    if norm == "none":
        d2_raw = random_plane(model, seed=0, norm=norm, orthogonal=False)[1]
        torch.testing.assert_close(v2.norm(), torch.cat([t.reshape(-1) for t in d2_raw]).norm())


def test_orthogonalize_rejects_unknown_norm_by_name():
    d = random_direction(tiny_mlp(), 0)
    with pytest.raises(ValueError, match="norm='filters'"):
        orthogonalize(d, d, norm="filters")
    with pytest.raises(ValueError, match="ignore='bias'"):
        random_direction(tiny_mlp(), 0, ignore="bias")


def test_pca_recovers_the_plane_a_trajectory_moves_in():
    rng = np.random.default_rng(0)
    n, T = 300, 40
    basis, _ = np.linalg.qr(rng.standard_normal((n, 2)))
    t = np.linspace(0, 1, T)
    coeff = np.stack([3 * (1 - t) ** 2, np.sin(3 * t) * (1 - t)], axis=1)  # spirals to the end
    end = rng.standard_normal(n)
    traj = end + coeff @ basis.T + 1e-6 * rng.standard_normal((T, n))
    pca = pca_directions(torch.from_numpy(traj), k=2)
    U = torch.stack(pca.directions).numpy().T
    # the principal plane is the plane of the motion: principal angles ~ 0
    np.testing.assert_allclose(np.linalg.svd(U.T @ basis, compute_uv=False), [1, 1], atol=1e-8)
    np.testing.assert_allclose(U.T @ U, np.eye(2), atol=1e-12)
    assert pca.explained_variance_ratio.sum() == pytest.approx(1.0, abs=1e-9)
    # explained variance equals numpy's PCA of the centred differences
    X = traj - traj[-1]
    s = np.linalg.svd(X - X.mean(0), compute_uv=False)
    np.testing.assert_allclose(pca.explained_variance_ratio, (s ** 2 / (s ** 2).sum())[:2], rtol=1e-9)
    # the path ends at the origin (the final model, the surface's centre) and is reproduced
    np.testing.assert_allclose(pca.coords[-1], [0, 0], atol=1e-12)
    np.testing.assert_allclose(pca.coords @ U.T, X, atol=1e-4)
    np.testing.assert_allclose(pca.project(traj), pca.coords, atol=1e-12)


def test_pca_accepts_a_list_of_flattened_models_and_checks_k():
    models = [tiny_mlp(s) for s in range(4)]
    pca = pca_directions([flatten_params(m) for m in models], k=3)
    assert len(pca.directions) == 3 and pca.coords.shape == (4, 3)
    with pytest.raises(ValueError, match="k=4"):
        pca_directions([flatten_params(m) for m in models], k=4)
