"""Uncertainty over seeds: means with t confidence intervals, formatted one way everywhere."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from scipy import stats as _st

__all__ = ["Summary", "summarize", "fmt"]


@dataclass(frozen=True)
class Summary:
    """Mean of ``n`` finite values with a two-sided ``level`` t-interval half-width (NaN if n < 2)."""

    mean: float
    half_width: float
    n: int
    values: tuple[float, ...]
    level: float = 0.95

    @property
    def low(self) -> float:
        return self.mean - self.half_width

    @property
    def high(self) -> float:
        return self.mean + self.half_width


def summarize(values: Sequence[float], level: float = 0.95) -> Summary:
    """Summarise per-seed values: mean and t-interval (Student, n-1 degrees of freedom).

    Non-finite values (a diverged run) are left out of the mean and counted out of ``n``.
    """
    vals = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    n = len(vals)
    if n == 0:
        return Summary(float("nan"), float("nan"), 0, (), level)
    mean = float(np.mean(vals))
    if n < 2:
        return Summary(mean, float("nan"), 1, tuple(vals), level)
    sem = float(np.std(vals, ddof=1)) / math.sqrt(n)
    half = float(_st.t.ppf(0.5 + level / 2, n - 1)) * sem
    return Summary(mean, half, n, tuple(vals), level)


def _num(x: float, digits: int) -> str:
    if not math.isfinite(x):
        return "n/a"
    if x != 0 and (abs(x) >= 1e5 or abs(x) < 10 ** (-digits)):
        return f"{x:.{digits}e}"
    return f"{x:.{digits}f}"


def fmt(s: Summary, digits: int = 3) -> str:
    """``mean ± half-width (n=…)`` for n ≥ 3; the individual values for n < 3 (an interval from
    two points is not worth printing)."""
    if s.n == 0:
        return "n/a"
    if s.n < 3:
        counts = all(float(v).is_integer() for v in s.values)
        return " / ".join(str(int(v)) if counts else _num(v, digits) for v in s.values) + f" (n={s.n})"
    return f"{_num(s.mean, digits)} ± {_num(s.half_width, digits)} (n={s.n}, {int(s.level * 100)}% CI)"
