"""Rank correlations, granulated τ, leave-one-out prediction and function-preserving rescaling."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn

import landscape as ls
from landscape.correlation import granulated_tau, kendall_tau, loo_prediction
from landscape.reparam import rescale_layers


def test_kendall_tau_is_one_for_monotone_data_and_interval_contains_it():
    x = np.arange(10.0)
    r = kendall_tau(x, x ** 3)
    assert r["tau"] == pytest.approx(1.0) and r["high"] == pytest.approx(1.0) and r["n"] == 10
    r = kendall_tau(x, -x)
    assert r["tau"] == pytest.approx(-1.0)


def test_kendall_tau_of_two_points_is_not_reported():
    assert np.isnan(kendall_tau([1, 2], [2, 1])["tau"])  # the write-up's r = -1 from two models


def test_bootstrap_interval_of_noise_covers_zero():
    rng = np.random.default_rng(1)
    r = kendall_tau(rng.normal(size=40), rng.normal(size=40))
    assert r["low"] < 0 < r["high"]


def test_granulated_tau_separates_axes():
    # the measure tracks the target along lr but is reversed along batch size
    rows = []
    for lr in (0.01, 0.1, 1.0):
        for b in (16, 64, 256):
            rows.append({"lr": lr, "b": b, "measure": np.log(lr) - np.log(b), "target": np.log(lr) + np.log(b)})
    g = granulated_tau(pd.DataFrame(rows), "measure", "target", ["lr", "b"])
    assert g["lr"] == pytest.approx(1.0) and g["b"] == pytest.approx(-1.0) and g["mean"] == pytest.approx(0.0)


def test_loo_prediction_is_perfect_on_a_line_and_useless_on_noise():
    x = np.linspace(0, 1, 12)
    assert loo_prediction(x, 3 * x + 1)["skill"] == pytest.approx(1.0)
    rng = np.random.default_rng(0)
    assert loo_prediction(rng.normal(size=30), rng.normal(size=30))["skill"] < 0.2


def test_relu_rescaling_preserves_the_function_and_changes_raw_sharpness_only():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3)).double()
    x, y = torch.randn(64, 6, dtype=torch.float64), torch.randint(0, 3, (64,))
    data = [(x, y)]
    scaled = rescale_layers(model, 4.0)
    assert torch.allclose(model(x), scaled(x), atol=1e-12)
    lam = ls.hessian_eigenvalues(model, data, k=1).values[-1]
    lam_s = ls.hessian_eigenvalues(scaled, data, k=1).values[-1]
    assert abs(lam_s / lam - 1) > 0.5  # lambda_max is not invariant
    with pytest.raises(ValueError, match="alpha"):
        rescale_layers(model, 0.0)
