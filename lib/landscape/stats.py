"""Uncertainty over seeds: means with t confidence intervals, formatted one way everywhere.

Seeds of one configuration are its unit of replication: a configuration's value is the mean over
its seeds, with a two-sided Student t interval (``n - 1`` degrees of freedom). Every number is
printed to the precision its interval supports: the half-width is rounded to two significant
digits and the mean to the same decimal place (:func:`fmt_pm`), so ``88.59 ± 176.18`` reads
``90 ± 180``. Counts are integers; a count that is only a lower bound (the negative eigenvalues
among a top-k/bottom-k Lanczos run's Ritz values) reads ``≥ c`` (:func:`fmt_count`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from scipy import stats as _st

__all__ = ["Summary", "summarize", "fmt", "fmt_pm", "fmt_value", "fmt_count", "decimals_for"]


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
    r"""Summarise per-seed values: mean and t-interval (Student, n-1 degrees of freedom).

    .. math:: \bar x \pm t_{1-(1-\mathrm{level})/2,\;n-1}\, s/\sqrt n

    Non-finite values (a diverged run) are left out of the mean and counted out of ``n``.

    Example:
        >>> s = summarize([1.0, 2.0, 3.0])
        >>> s.mean, round(s.half_width, 3), s.n
        (2.0, 2.484, 3)
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


def decimals_for(half_width: float, sig: int = 2) -> int:
    r"""The decimal place at which ``sig`` significant digits of ``half_width`` end.

    .. math:: d = \mathrm{sig} - 1 - \lfloor \log_{10} h \rfloor

    Negative ``d`` means rounding to tens, hundreds, …; the half-width's rounding is taken into
    account (``0.0996`` has two significant digits ``0.10``, so ``d = 2``).

    Example:
        >>> decimals_for(176.18), decimals_for(0.0123), decimals_for(0.0996), decimals_for(4.21)
        (-1, 3, 2, 1)
    """
    if not (half_width > 0 and math.isfinite(half_width)):
        raise ValueError(f"half_width = {half_width!r} must be positive and finite")
    e = math.floor(math.log10(half_width))
    d = sig - 1 - e
    if abs(round(half_width, d)) >= 10.0 ** (e + 1):  # 0.0996 -> 0.10: one place fewer
        d -= 1
    return d


def _fixed(x: float, d: int) -> str:
    """``x`` rounded at decimal place ``d`` (negative: tens, hundreds, …), without ``-0``."""
    r = round(x, d) + 0.0
    if d <= 0:
        return str(int(r))
    return f"{r:.{d}f}"


def fmt_value(x: float, digits: int = 3) -> str:
    """A lone value (no interval to decide its precision) to ``digits`` significant digits.

    Integers print as integers; magnitudes at or above 1e5 or below 1e-4 in scientific notation.

    Example:
        >>> fmt_value(88.59), fmt_value(0.5, 2), fmt_value(1613.77), fmt_value(3.0), fmt_value(2.5e-6)
        ('88.6', '0.50', '1610', '3', '2.50e-06')
    """
    if x is None or not math.isfinite(x):
        return "n/a"
    if float(x).is_integer() and abs(x) < 1e5:
        return str(int(x))
    if abs(x) >= 1e5 or abs(x) < 1e-4:
        return f"{x:.{digits - 1}e}"
    e = math.floor(math.log10(abs(x)))
    d = digits - 1 - e
    if abs(round(x, d)) >= 10.0 ** (e + 1):
        d -= 1
    return _fixed(x, d)


def fmt_pm(mean: float, half_width: float, sig: int = 2, digits: int = 3) -> str:
    r"""``mean ± half_width`` at the precision the interval supports.

    The half-width keeps ``sig`` significant digits and the mean is rounded at the same decimal
    place (:func:`decimals_for`). Magnitudes at or above 1e5, or a half-width below 1e-4, use one
    shared power of ten: ``(1.23 ± 0.05)e-05``. A zero half-width (identical values) prints the
    mean to ``digits`` significant digits and ``± 0`` (so does one below 1e-9 of the mean: the
    rounding error of a mean of equal values); a missing one the mean alone.

    Example:
        >>> fmt_pm(88.59, 176.18), fmt_pm(84.56, 55.22), fmt_pm(0.85049, 0.00412)
        ('90 ± 180', '85 ± 55', '0.8505 ± 0.0041')
        >>> fmt_pm(-0.3, 0.0996), fmt_pm(1.234e-5, 2.1e-7), fmt_pm(3.0, 0.0), fmt_pm(0.1, 4e-17)
        ('-0.30 ± 0.10', '(1.234 ± 0.021)e-05', '3 ± 0', '0.100 ± 0')
    """
    if mean is None or not math.isfinite(mean):
        return "n/a"
    if half_width is None or not math.isfinite(half_width):
        return fmt_value(mean, digits)
    if half_width <= 1e-9 * abs(mean):  # identical values, up to rounding in the mean
        return f"{fmt_value(mean, digits)} ± 0"
    big = max(abs(mean), half_width)
    if big >= 1e5 or half_width < 1e-4:
        e = math.floor(math.log10(big))
        m, h = mean / 10.0 ** e, half_width / 10.0 ** e
        d = decimals_for(h, sig)
        return f"({_fixed(m, d)} ± {_fixed(h, d)})e{e:+03d}"
    d = decimals_for(half_width, sig)
    return f"{_fixed(mean, d)} ± {_fixed(half_width, d)}"


def fmt(s: Summary, digits: int = 3) -> str:
    """One configuration's value over its seeds, as printed everywhere in the book.

    n ≥ 3: ``mean ± half-width (n=…, 95% CI)`` at the precision the interval supports
    (:func:`fmt_pm`; ``digits`` only matters for a zero half-width). n < 3: the individual values
    to ``digits`` significant digits (an interval from two points is not worth printing), as
    integers when they all are.

    Example:
        >>> fmt(summarize([88.0, 260.0, -82.0]))
        '90 ± 420 (n=3, 95% CI)'
        >>> fmt(summarize([0.8505, 0.849]), 4), fmt(summarize([3.0, 3.0])), fmt(summarize([]))
        ('0.8505 / 0.8490 (n=2)', '3 / 3 (n=2)', 'n/a')
    """
    if s.n == 0:
        return "n/a"
    if s.n < 3:
        counts = all(float(v).is_integer() for v in s.values)
        return " / ".join(str(int(v)) if counts else fmt_value(v, digits) for v in s.values) + f" (n={s.n})"
    return f"{fmt_pm(s.mean, s.half_width, digits=digits)} (n={s.n}, {int(round(s.level * 100))}% CI)"


def fmt_count(values: Sequence[float | None], cap: int | Sequence[int | None] | None = None,
              lower_bound: bool = False) -> str:
    """Per-run counts as integers; a capped count reads ``≥ cap``.

    ``cap`` (one value or one per run) is the most the measurement can return (``k`` of a
    top-k/bottom-k Lanczos run). With ``lower_bound=True`` every count is only a lower bound and
    reads ``≥ min(count, cap)``: the negative eigenvalues certified among ``k`` computed Ritz
    values say nothing about the rest of the spectrum. Runs that agree are printed once.

    Example:
        >>> fmt_count([3, 3, 3], cap=3, lower_bound=True)
        '≥ 3 (all 3 runs)'
        >>> fmt_count([2, 5, 3], cap=3, lower_bound=True), fmt_count([6, 6], cap=None)
        ('≥ 2 / ≥ 3 / ≥ 3 (n=3)', '6 (all 2 runs)')
        >>> fmt_count([4, 1], cap=3)
        '≥ 3 / 1 (n=2)'
    """
    caps = list(cap) if isinstance(cap, (list, tuple)) else [cap] * len(values)
    texts = []
    for c, k in zip(values, caps):
        if c is None or (isinstance(c, float) and not math.isfinite(c)):
            continue
        c = int(c)
        if lower_bound:
            texts.append(f"≥ {min(c, int(k)) if k is not None else c}")
        elif k is not None and c >= int(k):
            texts.append(f"≥ {int(k)}")
        else:
            texts.append(str(c))
    if not texts:
        return "n/a"
    if len(texts) > 1 and len(set(texts)) == 1:
        return f"{texts[0]} (all {len(texts)} runs)"
    return " / ".join(texts) + f" (n={len(texts)})"
