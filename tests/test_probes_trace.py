"""Trace estimators (Hutch++, XTrace, Hutchinson) against the exact trace of quadratics with known,
outlier-heavy spectra: unbiased, standard errors that match the spread over seeds, and XTrace's
lower error at equal numbers of Hessian-vector products."""
import doctest
import importlib
import inspect

import numpy as np
import pytest
import torch
from hessian_eigenthings import hutch_plus_plus

from landscape.probes import hessian_trace
from landscape.probes._testing import (Quadratic, classification_data, dense_hessian,
                                       quadratic_loss, spd_matrix, tiny_mlp)
from landscape.probes.xtrace import xtrace

pytestmark = pytest.mark.usefixtures("one_thread")

DUMMY = [(torch.zeros(1, 1), torch.zeros(1))]


def outlier_spectrum(n=300, outliers=(1000.0, 300.0, 100.0, 30.0, 10.0), seed=0, low=0.0):
    """A few large outliers over a bulk in [low, 1], like a network's Hessian."""
    bulk = np.random.default_rng(seed).uniform(low, 1.0, n - len(outliers))
    return np.r_[outliers, bulk]


class Dense:
    """A dense symmetric matrix with the operator protocol the estimators take."""

    dtype, device = torch.float64, torch.device("cpu")

    def __init__(self, A):
        self.A = torch.as_tensor(A, dtype=torch.float64)
        self.size = self.A.shape[0]

    def matvec(self, v):
        return self.A @ v


def quadratic(lam, seed=1):
    return Quadratic(spd_matrix(lam, seed), np.zeros(len(lam)))


@pytest.mark.parametrize("method", ["hutchpp", "xtrace"])
def test_trace_is_exact_when_the_sketch_holds_the_whole_range(method):
    lam = np.r_[[50.0, 20.0, -3.0, 1.0], np.zeros(36)]  # rank 4, indefinite, n = 40
    q = quadratic(lam)
    est = hessian_trace(q, DUMMY, loss_fn=quadratic_loss(q), n_probes=18, method=method, seed=3)
    assert est.value == pytest.approx(lam.sum(), abs=1e-9)
    assert est.stderr < 1e-9


def test_default_budget_is_at_least_30_products():
    default = inspect.signature(hessian_trace).parameters["n_probes"].default
    assert default >= 30
    q = quadratic(outlier_spectrum(n=50))
    for method in ("hutchpp", "xtrace"):
        assert hessian_trace(q, DUMMY, loss_fn=quadratic_loss(q), method=method).n_hvp == default


@pytest.mark.parametrize("method", ["hutchpp", "xtrace"])
def test_trace_stderr_matches_the_spread_over_seeds_on_an_outlier_spectrum(method):
    lam = outlier_spectrum()
    q = quadratic(lam)
    vals, ses = [], []
    for seed in range(50):
        est = hessian_trace(q, DUMMY, loss_fn=quadratic_loss(q), n_probes=30, method=method,
                            seed=seed)
        assert est.n_hvp == 30 and est.method == method
        vals.append(est.value)
        ses.append(est.stderr)
    err, ses = np.array(vals) - lam.sum(), np.array(ses)
    spread = np.sqrt(np.mean(err ** 2))
    assert abs(err.mean()) <= 3 * spread / np.sqrt(len(err))  # unbiased
    rms_se = np.sqrt(np.mean(ses ** 2))  # E[se^2] is the variance for Hutch++ (see its docstring)
    assert 0.5 <= rms_se / spread <= 2.0, (rms_se, spread)
    assert np.mean(np.abs(err) <= 2 * ses) >= 0.75


def errors(A, m, seeds, method):
    tr = float(np.trace(A))
    op = Dense(A)
    out = []
    for seed in seeds:
        if method == "xtrace":
            r = xtrace(op, m, torch.Generator().manual_seed(seed))
        else:
            r = hutch_plus_plus(op, num_matvecs=m, seed=seed)  # what hessian_trace calls
        out.append(r.estimate - tr)
    return np.array(out)


SPECTRA = {  # n = 400: a few large outliers over a bulk, as network Hessians have
    "5 outliers, bulk in [0, 1]": outlier_spectrum(n=400),
    "5 outliers, bulk in [-0.3, 1]": outlier_spectrum(n=400, low=-0.3),
    "20 outliers 1000 k^-1.5, bulk in [0, 1]": outlier_spectrum(
        n=400, outliers=1000.0 * np.arange(1, 21) ** -1.5),
}


@pytest.mark.parametrize("m", [30, 60])
@pytest.mark.parametrize("spectrum", list(SPECTRA))
def test_xtrace_has_lower_error_than_hutchpp_at_equal_products_on_outlier_spectra(m, spectrum):
    A = spd_matrix(SPECTRA[spectrum], seed=1)
    seeds = range(50)
    err = {k: errors(A, m, seeds, k) for k in ("hutchpp", "xtrace")}
    rmse = {k: np.sqrt(np.mean(e ** 2)) for k, e in err.items()}
    # measured here: Hutch++ / XTrace RMSE 1.37-1.93 at m = 30, 1.54-3.16 at m = 60
    assert rmse["xtrace"] < rmse["hutchpp"] / 1.15, rmse
    assert abs(err["xtrace"].mean()) <= 3 * rmse["xtrace"] / np.sqrt(50)  # unbiased


def test_xtrace_of_the_tiny_mlps_hessian_covers_the_dense_trace():
    model, data = tiny_mlp(0, torch.nn.Softplus), classification_data()
    true = np.trace(dense_hessian(model, data))
    z = []
    for seed in range(20):
        est = hessian_trace(model, data, n_probes=30, method="xtrace", seed=seed)
        assert est.n_hvp == 30 and est.n_samples == 15 and est.stderr > 0
        z.append((est.value - true) / est.stderr)
    z = np.abs(z)
    assert np.mean(z <= 2) >= 0.75, z
    assert np.mean(z <= 0.25) <= 0.5, z


@pytest.mark.parametrize("n_probes, message", [(3, "n_probes=3"), (12, "num_matvecs=12")])
def test_xtrace_rejects_budgets_outside_its_range_by_name(n_probes, message):
    q = quadratic(np.arange(1.0, 6.0))  # n = 5: at most 2 * 4 products
    with pytest.raises(ValueError, match=message):
        hessian_trace(q, DUMMY, loss_fn=quadratic_loss(q), n_probes=n_probes, method="xtrace")


@pytest.mark.parametrize("module", ["landscape.probes.xtrace", "landscape.probes.hutchpp"])
def test_trace_module_examples_run_as_written(module):
    result = doctest.testmod(importlib.import_module(module))
    assert result.attempted >= 4 and result.failed == 0
