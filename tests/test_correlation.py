"""Rank correlations (intervals over configurations, partial τ), granulated τ over factorial axes,
plain and nested leave-one-configuration-out prediction, the verdicts, and function-preserving
rescaling."""
from __future__ import annotations

import doctest

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats
from torch import nn

import landscape as ls
from landscape import correlation
from landscape.correlation import (common_models, equal_size_pool, factorial_axes, granulated_tau,
                                   invariance_verdict, kendall_tau, loo_prediction, nested_loo,
                                   nested_verdict, partial_kendall_tau, select_by_loo, skill_strength,
                                   skill_verdict, tau_verdict, training_state_verdict)
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


# --- intervals that resample configurations -------------------------------------------------

def test_weighted_replicate_equals_scipy_tau_b_of_the_explicit_resample():
    # the bootstrap computes each replicate from resampling weights; with ties and repeats it
    # must be exactly scipy's τ-b of the resampled models
    rng = np.random.default_rng(0)
    x = rng.integers(0, 5, 20).astype(float)
    y = x + rng.integers(0, 3, 20)
    for _ in range(5):
        idx = rng.integers(0, 20, 20)
        W = np.bincount(idx, minlength=20)[None, :].astype(float)
        got = correlation._tau_w(W, correlation._sgn(x), correlation._sgn(y))[0]
        assert got == pytest.approx(stats.kendalltau(x[idx], y[idx]).statistic, abs=1e-12)


def _near_copies(rng, n_configs=12, seeds=3, noise=0.05):
    """Configurations with independent (measure, target); their seeds are near-copies."""
    u, v = rng.normal(size=n_configs), rng.normal(size=n_configs)
    x = np.repeat(u, seeds) + noise * rng.normal(size=n_configs * seeds)
    y = np.repeat(v, seeds) + noise * rng.normal(size=n_configs * seeds)
    return x, y, np.repeat([f"c{i}" for i in range(n_configs)], seeds)


def test_cluster_interval_of_near_copies_is_wider_has_nominal_coverage_and_same_estimate():
    rng = np.random.default_rng(2)
    covered = {"models": 0, "configurations": 0}
    reps = 200
    for r in range(reps):
        x, y, cl = _near_copies(rng)
        naive = kendall_tau(x, y, n_boot=400, seed=r)
        clus = kendall_tau(x, y, clusters=cl, n_boot=400, seed=r)
        assert clus["tau"] == naive["tau"] and clus["resampled"] == "configurations"
        assert clus["n_clusters"] == 12 and naive["n_clusters"] == 36
        covered["models"] += naive["low"] <= 0 <= naive["high"]  # the true τ is 0
        covered["configurations"] += clus["low"] <= 0 <= clus["high"]
        if r < 20:
            assert clus["high"] - clus["low"] > naive["high"] - naive["low"]
    assert 0.90 <= covered["configurations"] / reps <= 0.99  # nominal 0.95 (SE 0.015)
    assert covered["models"] / reps < 0.87                     # resampling seeds overstates


def test_no_interval_from_fewer_than_four_configurations():
    r = kendall_tau(np.arange(9.0), np.arange(9.0) ** 2, clusters=np.repeat(["a", "b", "c"], 3))
    assert r["tau"] == pytest.approx(1.0) and r["n_clusters"] == 3
    assert np.isnan(r["low"]) and np.isnan(r["p"])


def test_bootstrap_p_value_agrees_with_the_interval():
    rng = np.random.default_rng(3)
    x = rng.normal(size=40)
    strong = kendall_tau(x, x + 0.3 * rng.normal(size=40), n_boot=2000)
    assert strong["low"] > 0 and strong["p"] == pytest.approx(2 / 2001)  # the floor: no replicate ≤ 0
    noise = kendall_tau(x, rng.normal(size=40), n_boot=2000)
    assert noise["low"] < 0 < noise["high"] and noise["p"] > 0.05
    for r in (strong, noise):  # p < 1 − level exactly when the percentile interval excludes 0 (up to +1)
        assert (r["p"] < 0.05) == (r["low"] > 0 or r["high"] < 0)


# --- partial τ --------------------------------------------------------------------------------

def test_partial_tau_matches_the_hand_computed_example():
    # x = 1 2 3 4, y = 1 3 2 4, z = 1 2 4 3: τ_xy = τ_xz = 4/6, τ_yz = 2/6, so
    # τ_xy·z = (2/3 − 2/9) / sqrt((5/9)(8/9)) = 4/√40
    r = partial_kendall_tau([1, 2, 3, 4], [1, 3, 2, 4], [1, 2, 4, 3])
    assert (r["tau_xy"], r["tau_xz"], r["tau_yz"]) == pytest.approx((2 / 3, 2 / 3, 1 / 3))
    assert r["tau"] == pytest.approx(4 / np.sqrt(40))
    assert partial_kendall_tau([1, 3, 2, 4], [1, 2, 3, 4], [1, 2, 4, 3])["tau"] == pytest.approx(r["tau"])


def test_partial_tau_removes_an_association_carried_by_the_training_loss():
    rng = np.random.default_rng(4)
    z = np.repeat(rng.normal(size=15), 2)                  # the training loss, 15 configurations
    x = z + 0.3 * rng.normal(size=30)                      # a measure that follows the loss
    y = z + 0.3 * rng.normal(size=30)                      # a gap that follows the loss
    cl = np.repeat(np.arange(15), 2)
    raw, part = kendall_tau(x, y, clusters=cl), partial_kendall_tau(x, y, z, clusters=cl)
    assert raw["low"] > 0.2
    assert part["low"] < 0 < part["high"] and abs(part["tau"]) < 0.25
    assert part["n"] == 30 and part["n_clusters"] == 15


# --- granulated τ only over factorial axes ---------------------------------------------------

def _grid_with_extra():
    rows = [{"lr": lr, "b": b, "width": 1, "m": lr * b, "gap": lr + b} for lr in (1, 2, 3) for b in (8, 16)]
    rows.append({"lr": 1, "b": 8, "width": 2, "m": 5.0, "gap": 1.0})  # varies width alone
    return pd.DataFrame(rows)


def test_factorial_axes_leaves_out_axes_with_a_missing_combination():
    d = _grid_with_extra()
    assert factorial_axes(d, ["lr", "b"]) == ["lr", "b"]
    assert factorial_axes(d, ["lr", "b", "width"]) == []
    assert factorial_axes(d[d.width == 1], ["lr", "b", "width"]) == ["lr", "b"]  # width: one value


def test_granulated_tau_refuses_a_non_factorial_axis_in_one_line():
    d = _grid_with_extra()
    with pytest.raises(ValueError, match=r"not factorial: .*width") as e:
        granulated_tau(d, "m", "gap", ["lr", "b", "width"])
    assert "\n" not in str(e.value)
    g = granulated_tau(d[d.width == 1], "m", "gap", ["lr", "b"])
    assert set(g) == {"lr", "b", "mean"} and g["lr"] == pytest.approx(1.0)


def test_granulated_tau_holds_the_non_factorial_axes_fixed():
    # model A has the full lr × b grid, model B only lr = 1: only b is factorial; its groups must
    # hold lr and model fixed — three groups of two, not one group of all six
    rows = [{"lr": lr, "b": b, "model": mo} for mo in "AB" for lr in (1, 2) for b in (8, 16) if mo == "A" or lr == 1]
    d = pd.DataFrame(rows).assign(m=[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], gap=[1.0, 2.0, 4.0, 3.0, 2.0, 1.0])
    assert factorial_axes(d, ["lr", "b", "model"]) == ["b"]
    g = granulated_tau(d, "m", "gap", ["b"], fixed=["lr", "model"])
    assert g["b"] == pytest.approx((1 - 1 - 1) / 3) and g["mean"] == g["b"]
    assert granulated_tau(d, "m", "gap", ["b"])["b"] != pytest.approx(g["b"])  # pooled: another number
    with pytest.raises(ValueError, match="not factorial: lr"):
        granulated_tau(d, "m", "gap", ["lr", "b"], fixed=["model"])


def test_a_missing_option_counts_as_a_level_of_the_design():
    # CNNs have no width option and MLPs no channels: None is a value, not a dropped row
    d = pd.DataFrame({"width": [32, 128, None, None], "channels": [None, None, "16", "32"]})
    assert factorial_axes(d, ["width", "channels"]) == []
    assert factorial_axes(d.assign(channels=None), ["width", "channels"]) == ["width"]


# --- one common set of models; equal Hessian subsets ------------------------------------------

def test_common_models_keeps_only_rows_finite_in_every_measure():
    d = pd.DataFrame({"a": [1.0, np.nan, 3.0, 4.0], "b": [1.0, 2.0, None, 4.0], "c": [np.inf, 1, 2, 3]})
    assert common_models(d, ["a", "b", "c"]).index.tolist() == [3]
    assert common_models(d, ["a"]).index.tolist() == [0, 2, 3]
    with pytest.raises(ValueError, match="no column z"):
        common_models(d, ["z"])


def test_equal_size_pool_keeps_the_most_common_size_and_names_what_it_left_out():
    d = pd.DataFrame({"study": ["a"] * 4 + ["b"] * 2 + ["c"] * 2,
                      "hs": [128] * 4 + [500] * 2 + [500, None], "lam": [1.0, 2, 3, 4, 5, 6, 7, 8]})
    pooled, info = equal_size_pool(d, "lam", "hs", label="λ_max")
    assert info["size"] == 128 and info["kept"] == ["a"]
    assert info["left_out"] == {"b": [500], "c": [500, "not recorded"]}
    assert pooled["lam"].notna().tolist() == [True] * 4 + [False] * 4
    assert "128" in info["note"] and "b (500)" in info["note"] and d["lam"].notna().all()
    tie = pd.DataFrame({"study": list("aabb"), "hs": [64, 64, 256, 256], "lam": [1.0, 2, 3, 4]})
    assert equal_size_pool(tie, "lam", "hs")[1]["size"] == 256  # a tie goes to the larger subset


# --- leave-one-configuration-out prediction, plain and nested ----------------------------------

def test_loo_prediction_by_configuration_equals_explicit_refits():
    rng = np.random.default_rng(5)
    x = rng.normal(size=18)
    y = 2 * x + rng.normal(size=18)
    groups = np.repeat(np.arange(6), 3)
    err, base = [], []
    for g in range(6):
        tr, te = groups != g, groups == g
        b, a = np.polyfit(x[tr], y[tr], 1)
        err += list(abs(a + b * x[te] - y[te]))
        base += list(abs(y[tr].mean() - y[te]))
    r = loo_prediction(x, y, groups=groups)
    assert r["mae"] == pytest.approx(np.mean(err)) and r["mae_baseline"] == pytest.approx(np.mean(base))
    assert r["n_groups"] == 6 and r["low"] < r["skill"] < r["high"]


def _candidates(rng, n_configs=10, seeds=3, k=8):
    groups = np.repeat([f"c{i}" for i in range(n_configs)], seeds)
    X = pd.DataFrame({f"noise{j}": np.repeat(rng.normal(size=n_configs), seeds) for j in range(k)})
    y = np.repeat(rng.normal(size=n_configs), seeds) + 0.1 * rng.normal(size=n_configs * seeds)
    return X, y, groups


def test_nested_loo_never_selects_on_the_held_out_configuration():
    rng = np.random.default_rng(6)
    X, y, groups = _candidates(rng)
    X.index = [f"m{i}" for i in range(len(X))]
    seen = []

    def spy(X_tr, y_tr, g_tr):  # the default selection, instrumented with the rows it is given
        seen.append(set(X_tr.index))
        return select_by_loo(X_tr, y_tr, g_tr)

    r = nested_loo(X, y, groups, select=spy)
    assert len(seen) == len(r["folds"]) == 10
    for rows, fold in zip(seen, r["folds"]):
        held = set(X.index[groups == fold["held_out"]])
        assert set(fold["test"]) == held and not rows & held and rows | held == set(X.index)
    plain = nested_loo(X, y, groups)
    assert plain["skill"] == r["skill"] and plain["chosen"] == r["chosen"]


def test_nested_loo_is_not_fooled_by_the_best_of_many_noise_candidates():
    rng = np.random.default_rng(7)
    X, y, groups = _candidates(rng, k=12)
    side_by_side = max(loo_prediction(X[c], y, groups=groups)["skill"] for c in X)
    nested = nested_loo(X, y, groups)
    assert nested["skill"] < side_by_side and nested["skill"] < 0.05
    assert nested["low"] < 0  # its interval includes "no better than the mean"


def test_nested_loo_finds_a_real_predictor_in_every_fold():
    rng = np.random.default_rng(8)
    X, y, groups = _candidates(rng)
    X["signal"] = y + 0.05 * rng.normal(size=len(y))
    r = nested_loo(X, y, groups)
    assert r["chosen"] == {"signal": 10} and r["skill"] > 0.8 and r["low"] > 0.5
    assert np.isnan(nested_loo(X.iloc[:9], y[:9], groups[:9])["skill"])  # 3 configurations: none


# --- verdicts -----------------------------------------------------------------------------------

def test_skill_strength_reads_the_skill_with_its_interval():
    assert skill_strength(0.7, 0.5, 0.8) == "strongly"
    assert skill_strength(0.4, 0.1, 0.6) == "moderately"
    assert skill_strength(0.1, 0.02, 0.2) == "weakly"
    assert skill_strength(0.5, -0.01, 0.8) == "no better than the mean"
    assert skill_strength(-0.3, -0.5, -0.1) == "worse than the mean"
    assert skill_strength(0.5, np.nan, np.nan) == "without an interval"
    assert skill_strength(np.nan, np.nan, np.nan) == "not computable"


def _tau_rows(**cols):
    return pd.DataFrame({"label": ["A", "B", "C"], **cols})


def test_tau_verdict_names_the_intervals_excluding_zero_and_their_survivors():
    none = _tau_rows(tau=[0.1, -0.1, 0.0], low=[-0.1, -0.3, -0.2], high=[0.3, 0.1, 0.2],
                     holm=[False] * 3, bh=[False] * 3)
    assert tau_verdict(none, "τ with the gap", m=9).startswith("no measure's 95 % interval")
    two = _tau_rows(tau=[0.5, -0.4, 0.0], low=[0.3, -0.6, -0.2], high=[0.7, -0.1, 0.2],
                    holm=[True, False, False], bh=[True, True, False])
    v = tau_verdict(two, "τ with the gap", m=9)
    assert "A (τ = +0.50) and B (τ = -0.40)" in v and "other measures did not" in v
    assert "over the 9 intervals" in v and "A survived Holm's, all 2 Benjamini–Hochberg's" in v
    assert "all 2 survived Holm's correction over the 9" in tau_verdict(two.assign(holm=True), "τ", m=9)
    three = pd.concat([two, two.assign(label=["D", "E", "F"], holm=False, bh=False)], ignore_index=True)
    assert "A survived Holm's and A and B Benjamini–Hochberg's" in tau_verdict(three, "τ", m=9)
    same = three.assign(bh=three["holm"])
    assert "A survived Holm's and Benjamini–Hochberg's, the others neither" in tau_verdict(same, "τ", m=9)
    lost = two.assign(holm=False, bh=False)
    assert "none survived Holm's nor Benjamini–Hochberg's" in tau_verdict(lost, "τ", m=9)
    assert "too few configurations" in tau_verdict(none.assign(low=np.nan, high=np.nan), "τ")


def test_prediction_verdicts_come_from_the_numbers():
    res = {"chosen": {"loss": 9, "lam": 3}, "skill": 0.2, "low": 0.05, "high": 0.35}
    assert nested_verdict(res, {"loss": "the loss"}) == \
        "the loss (chosen in 9 of 12 folds; also lam in 3), nested skill 0.20 [0.05, 0.35]: weakly"
    assert "fewer than 4 configurations" in nested_verdict({"chosen": {}})
    v = skill_verdict({"s1": res, "s2": {"skill": 0.0, "low": -0.2, "high": 0.2},
                       "s3": {"skill": np.nan, "low": np.nan, "high": np.nan}})
    assert "in 1 of 2 studies" in v and "weakly in s1" in v and "no better than the mean in s2" in v
    assert "not computable in s3" in v


def test_invariance_and_training_state_verdicts():
    v = invariance_verdict({"loss": 1e-9, "λ_max": 0.9, "SAM sharpness": 0.5, "adaptive": 0.002})
    assert v.startswith("λ_max and SAM sharpness changed by 90.0 % and 50.0 % of their largest values respectively")
    assert invariance_verdict({"λ_max": 0.5}) == "λ_max changed by 50.0 % of its largest value across the rescalings"
    assert "loss (0.0 %) and adaptive (0.2 %) stayed within 1 %" in v
    assert training_state_verdict([], []) == ("no model records whether it reached its stopping criterion; "
                                              "no model records its gradient norm at the end point")
    assert training_state_verdict([True, True, False], [1e-3, 2e-3, 0.5]).startswith(
        "2 of 3 models with a recorded state reached")


def test_docstring_examples_run():
    assert doctest.testmod(correlation, optionflags=doctest.NORMALIZE_WHITESPACE).failed == 0
