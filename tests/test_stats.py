"""Seed summaries: t-intervals, and no interval from fewer than three runs."""
from __future__ import annotations

import math

import numpy as np
from scipy import stats

from landscape.stats import fmt, summarize


def test_interval_is_the_student_t_interval():
    vals = [1.0, 2.0, 4.0, 7.0]
    s = summarize(vals)
    lo, hi = stats.t.interval(0.95, len(vals) - 1, loc=np.mean(vals), scale=stats.sem(vals))
    assert math.isclose(s.low, lo) and math.isclose(s.high, hi)
    assert fmt(s, 2) == f"3.50 ± {s.half_width:.2f} (n=4, 95% CI)"


def test_fewer_than_three_runs_are_listed_not_averaged():
    assert fmt(summarize([0.25, 0.5]), 2) == "0.25 / 0.50 (n=2)"
    assert fmt(summarize([3.0, 4.0])) == "3 / 4 (n=2)"
    assert math.isnan(summarize([1.0]).half_width)


def test_diverged_runs_are_left_out_and_counted_out():
    s = summarize([1.0, float("nan"), 3.0, float("inf"), 2.0])
    assert s.n == 3 and s.mean == 2.0
    assert fmt(summarize([float("nan")])) == "n/a"
