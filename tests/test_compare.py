"""Differences between configurations: Welch intervals that cover, seeds-needed figures that match
the closed forms and the textbook tables, and measures shown with what they need to be read."""
from __future__ import annotations

import doctest
import math

import numpy as np
import pytest
from scipy import stats

import landscape.compare
from landscape.compare import (Claim, WRITEUP_CLAIMS, claims_for, compare_claim, count_caps, criterion_cell,
                               fmt_difference, fmt_seeds, measure_cell, one_sample_difference, power_difference,
                               seeds_needed, seeds_needed_normal, study_table, welch_difference)
from landscape.config import load_study


def test_welch_interval_matches_scipys_welch_test():
    rng = np.random.default_rng(0)
    a, b = rng.normal(1.0, 0.5, 4), rng.normal(0.0, 2.0, 6)
    d = welch_difference(a, b)
    ci = stats.ttest_ind(a, b, equal_var=False).confidence_interval(0.95)
    assert d.low == pytest.approx(ci.low) and d.high == pytest.approx(ci.high)
    assert d.method == "Welch t" and (d.n_a, d.n_b) == (4, 6)


def test_welch_interval_covers_a_known_normal_difference_95_percent_of_the_time():
    rng = np.random.default_rng(1)
    true = 0.7
    hits = 0
    reps = 800
    for _ in range(reps):
        d = welch_difference(rng.normal(true, 1.0, 3), rng.normal(0.0, 3.0, 5))
        hits += d.low <= true <= d.high
    assert 0.93 <= hits / reps <= 0.97


def test_a_large_known_difference_resolves_and_a_null_one_does_not():
    rng = np.random.default_rng(2)
    big = welch_difference(rng.normal(10.0, 1.0, 5), rng.normal(0.0, 1.0, 5))
    assert big.resolved and big.sign == 1 and big.estimate == pytest.approx(10.0, abs=2.0)
    # the ResNet-20 numbers: 88.59 ± 176.18 against 84.56 ± 55.22 over three seeds
    a = 88.59 + 176.18 / stats.t.ppf(0.975, 2) * np.sqrt(3) * np.array([-1.0, 0.0, 1.0]) / np.sqrt(2)
    b = 84.56 + 55.22 / stats.t.ppf(0.975, 2) * np.sqrt(3) * np.array([-1.0, 0.0, 1.0]) / np.sqrt(2)
    d = welch_difference(a, b)
    assert not d.resolved and d.sign == 0
    assert d.seeds_needed > 1000  # a difference of 4 against spreads of 100: thousands of seeds


def test_one_sample_interval_is_the_t_interval():
    x = [0.2, 0.5, 0.3, 0.4]
    d = one_sample_difference(x, reference=0.1)
    lo, hi = stats.t.interval(0.95, 3, loc=np.mean(x) - 0.1, scale=stats.sem(x))
    assert (d.low, d.high) == (pytest.approx(lo), pytest.approx(hi)) and d.n_b == 0


def test_fewer_than_two_seeds_give_no_interval_and_no_verdict_basis():
    d = welch_difference([1.0], [2.0, 3.0])
    assert math.isnan(d.half_width) and not d.resolved and math.isnan(d.seeds_needed)
    assert welch_difference([], [1.0, 2.0]).n_a == 0
    assert "no interval" in fmt_difference(d)


@pytest.mark.parametrize("effect, n", [(0.5, 64), (0.8, 26), (1.0, 17)])
def test_seeds_needed_matches_cohens_tables(effect, n):
    # two-sample t test, equal variances, two-sided 5 %, 80 % power (Cohen 1988, Table 2.4.1)
    assert seeds_needed(effect, 1.0, 1.0) == n


def test_seeds_needed_agrees_with_the_closed_form_and_exceeds_it_slightly():
    for delta, sa, sb in [(0.3, 1.0, 2.0), (5.0, 20.0, 8.0), (0.01, 0.05, 0.02)]:
        z = stats.norm.ppf(0.975) + stats.norm.ppf(0.8)
        closed = math.ceil(z ** 2 * (sa ** 2 + sb ** 2) / delta ** 2)
        assert seeds_needed_normal(delta, sa, sb) == closed
        n = seeds_needed(delta, sa, sb)
        assert closed <= n <= closed + 3  # the t test needs one to three more than the normal answer


def test_seeds_needed_is_the_smallest_n_with_the_wanted_power():
    for delta, sa, sb in [(1.0, 1.0, 3.0), (2.0, 0.5, 1.5), (0.4, 0.3, None)]:
        n = seeds_needed(delta, sa, sb)
        assert power_difference(delta, sa, sb, n) >= 0.8
        assert n == 2 or power_difference(delta, sa, sb, n - 1) < 0.8


def test_power_at_seeds_needed_is_what_simulated_welch_tests_reach():
    delta, sa, sb = 1.0, 1.0, 2.0
    n = seeds_needed(delta, sa, sb)
    rng = np.random.default_rng(3)
    a = rng.normal(delta, sa, (4000, n))
    b = rng.normal(0.0, sb, (4000, n))
    p = stats.ttest_ind(a, b, axis=1, equal_var=False).pvalue
    assert np.mean(p < 0.05) == pytest.approx(power_difference(delta, sa, sb, n), abs=0.025)
    assert np.mean(p < 0.05) >= 0.77


def test_zero_difference_needs_infinitely_many_seeds():
    assert seeds_needed(0.0, 1.0, 1.0) == math.inf and fmt_seeds(math.inf) == "∞"
    assert fmt_seeds(14129) == "14,000" and fmt_seeds(17) == "17"


def test_difference_is_printed_at_its_intervals_precision():
    d = welch_difference([88.0, 260.0, -82.0], [10.0, 30.0, 20.0])
    assert fmt_difference(d) == "+70 ± 420 (Welch t 95% CI, n = 3 vs 3)"


def _probes(**kw):
    base = {"label": "X", "seeds": [0, 1, 2]}
    return base | kw


def test_lower_bound_counts_at_their_cap_are_not_compared():
    P = {"a": _probes(label="A", n_negative=[3, 3, 3], top_k=3, converged=[True] * 3),
         "b": _probes(label="B", n_negative=[1, 2, 1], top_k=3, converged=[True] * 3)}
    r = compare_claim(Claim("k", "n_negative", "a", "b", "greater", "A has more"), P)
    assert r.difference is None and r.capped == ("A",)
    # the cap comes from top_k, else from the length of each run's bottom list
    assert count_caps({"seeds": [0, 1], "bottom": [[-1, -2], [-1, -2, -3]]}) == [2, 3]
    assert count_caps({"seeds": [0]}) == [None]


def test_claim_on_a_missing_measure_is_reported_not_measured():
    P = {"a": _probes(lambda_max=[1.0, 2.0, 3.0]), "b": _probes()}
    assert not compare_claim(Claim("k", "lambda_max", "a", "b", "greater", "t"), P).measured


def test_unconverged_runs_and_diverged_runs_are_recorded_beside_the_difference():
    P = {"a": _probes(label="A", lambda_max=[1.0, 2.0, 3.0], converged=[True, False, True]),
         "b": _probes(label="B", lambda_max=[4.0, 5.0], seeds=[0, 1], converged=[True, True],
                      diverged=[{"seed": 2, "epoch": 3}])}
    r = compare_claim(Claim("k", "lambda_max", "a", "b", "less", "t"), P)
    assert r.unconverged == {"A": [1]} and r.diverged == {"B": 1} and r.difference.n_b == 2


def test_every_registered_claim_names_configurations_of_its_study():
    for study, claims in WRITEUP_CLAIMS.items():
        configs = load_study(study, "quick").configs
        keys = [c.key for c in claims]
        assert len(keys) == len(set(keys)), study
        for c in claims:
            assert c.a in configs and (c.b is None or c.b in configs), (study, c.key)
    assert claims_for("sgd-noise") == ()


def test_eigenvalues_carry_convergence_and_residual_and_mark_unconverged_runs():
    p = _probes(lambda_max=[10.0, 12.0, 11.0], converged=[True, False, True], residual=[1e-4, 0.3, 2e-4])
    cell = measure_cell(p, "lambda_max")
    assert cell.startswith("11.0 ± 2.5 (n=3, 95% CI)")
    assert "converged 2 of 3" in cell and "residual ≤ 0.3" in cell and "† not converged: seed 1" in cell


def test_eigenvalue_cells_read_old_artefacts_without_residuals():
    cell = measure_cell(_probes(lambda_max=[10.0, 12.0, 11.0], converged=[True] * 3), "lambda_max")
    assert "converged 3 of 3" in cell and "residual not recorded" in cell
    assert "not recorded" in measure_cell(_probes(lambda_max=[1.0, 2.0, 3.0]), "lambda_max")


def test_negative_counts_read_at_least_min_of_count_and_k():
    cell = measure_cell(_probes(n_negative=[3, 3, 3], top_k=3, converged=[True] * 3), "n_negative")
    assert cell == "≥ 3 (all 3 runs), among k = 3 computed"
    cell = measure_cell(_probes(n_negative=[2, 3], seeds=[0, 1], bottom=[[-1, -2, 0.5], [-1, -2, -3]],
                                converged=[True, False]), "n_negative")
    assert cell.startswith("≥ 2 / ≥ 3 (n=2)") and "seed 1 did not converge: certifies no sign" in cell


def test_sam_sharpness_is_shown_beside_its_first_order_term():
    p = _probes(sharpness_sam=[0.10, 0.12, 0.11], sam_first_order=[0.05, 0.06, 0.055],
                grad_norm=[1.0, 1.2, 1.1], lambda_max=[10.0, 30.0, 40.0])
    cell = measure_cell(p, "sharpness_sam", rho=0.05)
    assert "ρ‖g‖ = 0.055 ± 0.012" in cell
    assert "‖g‖ ≥ ρλ_max in 1 of 3 runs" in cell  # ρλ_max = 0.5, 1.5, 2.0: only the first ‖g‖ exceeds it
    # without sam_first_order, ρ‖g‖ is computed from the gradient norm; without either, said so
    assert "ρ‖g‖ = " in measure_cell(_probes(sharpness_sam=[0.1] * 3, grad_norm=[1.0] * 3), "sharpness_sam", rho=0.05)
    assert "ρ‖g‖ = not recorded" in measure_cell(_probes(sharpness_sam=[0.1, 0.2, 0.3]), "sharpness_sam", rho=0.05)


def test_stochastic_estimates_carry_their_standard_error():
    assert measure_cell(_probes(trace=[10.0, 11.0, 12.0], trace_stderr=[0.1, 0.3, 0.2]), "trace").endswith(
        "estimator s.e. ≤ 0.3")
    assert "Monte Carlo s.e. ≤ 0.002" in measure_cell(
        _probes(sharpness_random=[0.1, 0.2, 0.3], sharpness_random_stderr=[0.001, 0.002, 0.001]), "sharpness_random")


def test_criterion_cell_says_whether_runs_reached_their_criterion():
    p = _probes(criterion_reached=[True, False, True], epochs_trained=[4, 6, 4])
    assert criterion_cell(p) == "reached in 2 of 3 runs; epochs trained: 4 / 6 / 4 (n=3)"
    assert criterion_cell(_probes()) == "not recorded"


def test_study_table_keeps_the_strings_the_pipeline_test_looks_for():
    # tests/test_pipeline.py looks for fmt(summarize(lambda_max)) and fmt(summarize(test_acc), 4) on the page
    from landscape.stats import fmt, summarize
    p = _probes(seeds=[0, 1], lambda_max=[57.18, 37.51], test_acc=[0.8505, 0.8412], converged=[True, True])
    rows = {r["key"]: r for r in study_table({"bn": p}, {"bn": {"lambda_max": 57.18}}, 0.05)}
    assert fmt(summarize(p["lambda_max"])) in rows["lambda_max"]["shown"]["bn"]
    assert fmt(summarize(p["test_acc"]), 4) in rows["test_acc"]["shown"]["bn"]
    assert rows["lambda_max"]["shown"]["bn"].endswith("write-up: 57.18")
    assert {"criterion", "subsets"} <= set(rows)


def test_docstring_examples_run():
    assert doctest.testmod(landscape.compare, raise_on_error=False).failed == 0
