"""Seed summaries: t-intervals, no interval from fewer than three runs, every number at the
precision its interval supports, counts as integers and capped counts as lower bounds."""
from __future__ import annotations

import doctest
import math
import re

import numpy as np
import pytest
from scipy import stats

import landscape.stats
from landscape.stats import decimals_for, fmt, fmt_count, fmt_pm, fmt_value, summarize


def test_interval_is_the_student_t_interval():
    vals = [1.0, 2.0, 4.0, 7.0]
    s = summarize(vals)
    lo, hi = stats.t.interval(0.95, len(vals) - 1, loc=np.mean(vals), scale=stats.sem(vals))
    assert math.isclose(s.low, lo) and math.isclose(s.high, hi)
    assert s.half_width == pytest.approx(4.2100, abs=1e-4)
    assert fmt(s, 2) == "3.5 ± 4.2 (n=4, 95% CI)"  # two significant digits of 4.21 decide the decimals


def test_half_width_decides_the_decimals_of_the_issue_examples():
    # the ResNet-20 page printed 88.59 ± 176.18 against 84.56 ± 55.22
    assert fmt_pm(88.59, 176.18) == "90 ± 180"
    assert fmt_pm(84.56, 55.22) == "85 ± 55"
    assert fmt_pm(0.850493, 0.004123) == "0.8505 ± 0.0041"
    assert fmt_pm(-12.3456, 0.789) == "-12.35 ± 0.79"


def test_rounding_that_carries_into_the_next_digit_keeps_two_significant_digits():
    assert decimals_for(0.0996) == 2 and fmt_pm(1.23456, 0.0996) == "1.23 ± 0.10"
    assert decimals_for(99.7) == -1 and fmt_pm(1234.5, 99.7) == "1230 ± 100"


@pytest.mark.parametrize("seed", range(3))
def test_half_width_has_two_significant_digits_and_the_mean_its_decimal_place(seed):
    rng = np.random.default_rng(seed)
    for _ in range(300):
        mean = rng.normal() * 10.0 ** rng.integers(-3, 5)
        hw = abs(rng.normal()) * 10.0 ** rng.integers(-3, 5) + 1e-3
        text = fmt_pm(mean, hw)
        match = re.fullmatch(r"\((\S+) ± (\S+)\)e([+-]\d+)", text)
        m, h, scale = (*match.groups()[:2], 10.0 ** int(match.group(3))) if match else (*text.split(" ± "), 1.0)
        h2 = float(f"{hw:.2g}")                        # two significant digits, computed independently
        d = 1 - math.floor(math.log10(h2))             # ... and the decimal place where they end
        assert float(h) * scale == pytest.approx(h2, rel=1e-9), text
        assert float(m) * scale == pytest.approx(round(mean, d), rel=1e-9, abs=1e-12 * scale), text


def test_zero_and_negligible_half_widths_read_plus_minus_zero():
    assert fmt(summarize([3.0, 3.0, 3.0])) == "3 ± 0 (n=3, 95% CI)"
    assert fmt(summarize([0.1, 0.1, 0.1]), 4) == "0.1000 ± 0 (n=3, 95% CI)"  # not 1.0000000000000002e-01


def test_extreme_magnitudes_share_one_power_of_ten():
    assert fmt_pm(1.234e-5, 2.1e-7) == "(1.234 ± 0.021)e-05"
    assert fmt_pm(2.5e6, 3.3e4) == "(2.500 ± 0.033)e+06"


def test_fewer_than_three_runs_are_listed_not_averaged():
    assert fmt(summarize([0.25, 0.5]), 2) == "0.25 / 0.50 (n=2)"
    assert fmt(summarize([3.0, 4.0])) == "3 / 4 (n=2)"
    assert fmt(summarize([88.59, 84.56])) == "88.6 / 84.6 (n=2)"  # significant digits, not decimals
    assert math.isnan(summarize([1.0]).half_width)


def test_lone_values_keep_their_significant_digits():
    assert fmt_value(1613.77) == "1610" and fmt_value(0.0713) == "0.0713" and fmt_value(7.0) == "7"
    assert fmt_value(float("nan")) == "n/a"


def test_diverged_runs_are_left_out_and_counted_out():
    s = summarize([1.0, float("nan"), 3.0, float("inf"), 2.0])
    assert s.n == 3 and s.mean == 2.0
    assert fmt(summarize([float("nan")])) == "n/a"


def test_capped_counts_read_at_least_k_not_a_mean():
    # the issue: "negative eigenvalues among the computed" read 3.0000 ± 0.0000 where k = 3 caps it
    text = fmt_count([3, 3, 3], cap=3, lower_bound=True)
    assert text == "≥ 3 (all 3 runs)" and "±" not in text and "." not in text
    assert fmt_count([5, 1, 3], cap=3, lower_bound=True) == "≥ 3 / ≥ 1 / ≥ 3 (n=3)"
    assert fmt_count([2, 3], cap=[3, 5], lower_bound=True) == "≥ 2 / ≥ 3 (n=2)"


def test_counts_are_integers_and_only_capped_ones_are_bounds():
    assert fmt_count([6.0, 6.0, 6.0]) == "6 (all 3 runs)"
    assert fmt_count([4, 2], cap=3) == "≥ 3 / 2 (n=2)"
    assert fmt_count([None, float("nan")]) == "n/a"


def test_docstring_examples_run():
    assert doctest.testmod(landscape.stats, raise_on_error=False).failed == 0
