"""Curvature probes against the dense Hessian of a tiny float64 MLP (83 parameters, 200 samples
in batches of 80/80/40) built with torch.autograd.functional.hessian."""
import numpy as np
import pytest
import torch

from landscape.probes import (HessianOperator, conditioning, hessian_density, hessian_eigenvalues,
                              hessian_trace)
from landscape.probes._testing import (Quadratic, classification_data, dense_hessian,
                                       quadratic_loss, spd_matrix, tiny_mlp)


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def problem():
    model = tiny_mlp(0, torch.nn.Softplus)  # softplus: an outlier eigenvalue, like real nets
    data = classification_data()
    H = dense_hessian(model, data)
    return model, data, H, np.linalg.eigvalsh(H)


def test_hvp_matches_dense_hessian_with_sample_weighted_batches(problem):
    model, data, H, _ = problem
    op = HessianOperator(model, data)
    v = torch.randn(op.size, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    assert op.size == H.shape[0] == 83
    np.testing.assert_allclose(op.matvec(v).numpy(), H @ v.numpy(), rtol=0, atol=1e-13)
    op2 = HessianOperator(model, data, reuse_graph=True)
    for _ in range(2):  # the cached graphs give the same product on reuse
        np.testing.assert_allclose(op2.matvec(v).numpy(), H @ v.numpy(), rtol=0, atol=1e-13)
    assert op.n_hvp == 1 and op2.n_hvp == 2


def test_automatic_graph_reuse_keeps_graphs_only_for_small_data(problem, monkeypatch):
    import landscape.probes.hvp as hvp
    model, data, H, _ = problem
    v = torch.randn(83, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    small = HessianOperator(model, data)  # 200 samples <= 1024: graphs kept after the first pass
    small.matvec(v)
    assert small.reuse_graph and small._graphs is not None and len(small._graphs) == 3
    monkeypatch.setattr(hvp, "REUSE_GRAPH_MAX_SAMPLES", 100)  # now 200 samples are "too many"
    big = HessianOperator(model, data)
    for _ in range(2):  # rebuilt each time, same exact products
        np.testing.assert_allclose(big.matvec(v).numpy(), H @ v.numpy(), rtol=0, atol=1e-13)
    assert not big.reuse_graph and big._graphs is None
    forced = HessianOperator(model, data, reuse_graph=True)  # an explicit choice is obeyed
    forced.matvec(v)
    assert forced._graphs is not None


@pytest.mark.parametrize("which", ["largest", "smallest"])
def test_lanczos_matches_dense_top5_and_bottom5(problem, which):
    model, data, _, ev = problem
    spec = hessian_eigenvalues(model, data, k=5, which=which)
    ref = ev[-5:] if which == "largest" else ev[:5]
    assert spec.converged
    assert np.all(np.diff(spec.values) >= 0)  # sorted ascending
    np.testing.assert_allclose(spec.values, ref, rtol=1e-6)
    assert np.all(np.abs(spec.values - ref) <= spec.residuals + 1e-12)  # residual bounds the error
    assert 5 <= spec.n_hvp <= 83


def test_lanczos_eigenvectors_satisfy_the_eigen_equation(problem):
    model, data, H, _ = problem
    spec = hessian_eigenvalues(model, data, k=3, return_vectors=True)
    V = spec.vectors
    assert V.shape == (83, 3)
    np.testing.assert_allclose(V.T @ V, np.eye(3), atol=1e-10)
    true_res = np.linalg.norm(H @ V - V * spec.values, axis=0)
    np.testing.assert_allclose(true_res, spec.residuals, rtol=1e-3, atol=1e-12)  # reported honestly
    assert np.all(true_res <= 1e-6 * spec.values[-1])  # the default tol, relative to |theta|max


def test_lanczos_reports_not_converged_when_the_budget_is_too_small(problem):
    model, data, _, ev = problem
    spec = hessian_eigenvalues(model, data, k=1, max_iter=2)
    assert not spec.converged and spec.n_hvp == 2
    assert abs(spec.values[-1] - ev[-1]) <= spec.residuals[-1] + 1e-12  # still an honest bound


def test_hessian_is_over_parameters_with_requires_grad_only(problem):
    model, data, H, _ = problem
    model = tiny_mlp(0, torch.nn.Softplus)
    model[0].weight.requires_grad_(False)  # first 48 coordinates frozen
    Hsub = H[48:, 48:]
    spec = hessian_eigenvalues(model, data, k=2)
    assert HessianOperator(model, data).size == 35
    np.testing.assert_allclose(spec.values, np.linalg.eigvalsh(Hsub)[-2:], rtol=1e-8)


def test_trace_lies_within_two_reported_standard_errors(problem):
    model, data, H, _ = problem
    true = np.trace(H)
    for method in ("hutchpp", "hutchinson"):
        z = []
        for seed in range(20):
            est = hessian_trace(model, data, n_probes=30, method=method, seed=seed)
            assert est.n_hvp == 30 and est.stderr > 0
            z.append((est.value - true) / est.stderr)
        z = np.abs(np.array(z))
        assert np.mean(z <= 2) >= 0.8, (method, z)     # the interval covers the truth
        assert np.mean(z <= 0.25) <= 0.5, (method, z)  # and is not inflated


def test_trace_standard_error_shrinks_like_inverse_sqrt_probes(problem):
    model, data, _, _ = problem
    def mean_se(method, n):  # root-mean-square over seeds: stderr^2 is unbiased for var/n
        return np.sqrt(np.mean([hessian_trace(model, data, n_probes=n, method=method,
                                              seed=s).stderr ** 2 for s in range(30)]))
    ratio = mean_se("hutchinson", 48) / mean_se("hutchinson", 12)
    assert 0.4 <= ratio <= 0.6, ratio                  # 1/sqrt(4) = 0.5
    ratio_pp = mean_se("hutchpp", 48) / mean_se("hutchpp", 12)
    assert ratio_pp <= 0.6, ratio_pp                   # deflation makes Hutch++ shrink faster


def test_hutchpp_is_more_accurate_than_hutchinson_for_the_same_budget(problem):
    model, data, H, _ = problem
    true = np.trace(H)
    err = {m: np.sqrt(np.mean([(hessian_trace(model, data, n_probes=30, method=m, seed=s).value
                                - true) ** 2 for s in range(10)]))
           for m in ("hutchpp", "hutchinson")}
    assert err["hutchpp"] < err["hutchinson"], err


def test_slq_moments_match_the_dense_spectrum(problem):
    model, data, H, ev = problem
    n = len(ev)
    m1, m2 = np.trace(H) / n, np.trace(H @ H) / n
    dens = hessian_density(model, data, n_probes=40, n_iter=20, seed=0)
    # Each probe's quadrature reproduces v^T H v and ||Hv||^2 exactly, so the moments are
    # Hutchinson estimates with unit Rademacher probes: allow 4 of their exact standard errors.
    se1 = np.sqrt(2 * (np.sum(H ** 2) - np.sum(np.diag(H) ** 2)) / 40) / n
    H2 = H @ H
    se2 = np.sqrt(2 * (np.sum(H2 ** 2) - np.sum(np.diag(H2) ** 2)) / 40) / n
    assert abs(dens.moment(1) - m1) <= 4 * se1, (dens.moment(1), m1, se1)
    assert abs(dens.moment(2) - m2) <= 4 * se2, (dens.moment(2), m2, se2)
    assert dens.n_hvp == 40 * 20
    np.testing.assert_allclose(dens.weights.sum(), 1.0, atol=1e-12)
    # the broadened density integrates to 1 and keeps the moments (plus sigma^2 for the 2nd)
    g, phi = dens.grid, dens.density
    np.testing.assert_allclose(np.trapezoid(phi, g), 1.0, atol=1e-6)
    np.testing.assert_allclose(np.trapezoid(g * phi, g), dens.moment(1), atol=1e-6)
    np.testing.assert_allclose(np.trapezoid(g ** 2 * phi, g), dens.moment(2) + dens.sigma ** 2,
                               rtol=1e-5)


def test_slq_with_a_full_krylov_space_recovers_the_exact_spectrum(problem):
    model, data, _, ev = problem
    dens = hessian_density(model, data, n_probes=1, n_iter=200)  # capped at n = 83
    assert dens.n_hvp <= 83
    # Ritz values with non-negligible weight are exact eigenvalues
    nodes = dens.nodes[dens.weights > 1e-8]
    assert np.max(np.min(np.abs(nodes[:, None] - ev[None, :]), axis=1)) < 1e-8


def test_conditioning_reports_sign_structure_not_a_fake_ratio(problem):
    model, data, _, ev = problem
    c = conditioning(model, data, k=5)
    assert c["converged"]
    np.testing.assert_allclose([c["lambda_max"], c["lambda_min"]], [ev[-1], ev[0]], rtol=1e-8)
    assert c["n_negative"] == 5  # the 5 smallest are all clearly negative here
    assert c["ratio"] is None and c["negative_ratio"] == pytest.approx(-ev[0] / ev[-1])
    # positive definite quadratic: the ratio is the condition number
    lam = np.array([10.0, 5, 3, 2, 1, 0.5, 0.25, 0.1])
    q = Quadratic(spd_matrix(lam), np.zeros(8))
    c = conditioning(q, [(torch.zeros(4, 1), torch.zeros(4))], k=2, loss_fn=quadratic_loss(q))
    assert c["n_negative"] == 0
    assert c["ratio"] == pytest.approx(100.0, rel=1e-8)


@pytest.mark.parametrize("call, message", [
    (lambda m, d: hessian_eigenvalues(m, d, which="middle"), "which='middle'"),
    (lambda m, d: hessian_eigenvalues(m, d, k=0), "k=0"),
    (lambda m, d: hessian_eigenvalues(m, d, k=84), "k=84"),
    (lambda m, d: hessian_eigenvalues(m, d, tol=-1.0), "tol=-1.0"),
    (lambda m, d: hessian_trace(m, d, method="exact"), "method='exact'"),
    (lambda m, d: hessian_trace(m, d, n_probes=3), "n_probes=3"),
    (lambda m, d: hessian_density(m, d, sigma=0.0), "sigma=0.0"),
    (lambda m, d: hessian_density(m, d, n_iter=0), "n_iter=0"),
])
def test_curvature_probes_reject_bad_arguments_by_name(problem, call, message):
    model, data, _, _ = problem
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        call(model, data)


def test_curvature_of_a_custom_loss_matches_its_known_spectrum():
    lam = np.array([4.0, 2.0, 1.0, -0.5, -1.5, 0.3])
    q = Quadratic(spd_matrix(lam, seed=3), np.ones(6), w0=np.zeros(6))
    data = [(torch.zeros(5, 1), torch.zeros(5))]
    loss = quadratic_loss(q)
    np.testing.assert_allclose(hessian_eigenvalues(q, data, k=2, loss_fn=loss).values, [2, 4])
    np.testing.assert_allclose(hessian_eigenvalues(q, data, k=2, which="smallest",
                                                   loss_fn=loss).values, [-1.5, -0.5])
    assert hessian_trace(q, data, loss_fn=loss, n_probes=18).value == pytest.approx(lam.sum())
