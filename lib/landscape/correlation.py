"""Does a measure track generalisation? Rank correlations with bootstrap intervals, Jiang et al.'s
granulated Kendall τ, and leave-one-out prediction.

Kendall's τ between a measure and a target (generalisation gap, test error, …) counts concordant
minus discordant pairs of models (τ-b, with ties). Its 95 % interval is a percentile bootstrap
over models. Jiang et al. (2020, "Fantastic Generalization Measures and Where to Find Them")
argue that a pooled τ can be driven by one hyper-parameter; their *granulated* τ averages, over
each hyper-parameter axis, the τ computed within groups of models that differ only in that axis.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd
from scipy import stats

__all__ = ["kendall_tau", "granulated_tau", "loo_prediction"]


def _finite_pairs(x: Sequence[float], y: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """``x`` and ``y`` as float arrays, without the pairs where either value is not finite."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    keep = np.isfinite(x) & np.isfinite(y)
    return x[keep], y[keep]


def kendall_tau(x: Sequence[float], y: Sequence[float], n_boot: int = 2000, seed: int = 0,
                level: float = 0.95) -> dict:
    """Kendall τ-b of ``x`` and ``y`` (pairs with a non-finite value dropped) with a percentile
    bootstrap interval over the pairs; ``n`` is the number of pairs used."""
    x, y = _finite_pairs(x, y)
    n = len(x)
    if n < 3:
        return {"tau": float("nan"), "low": float("nan"), "high": float("nan"), "n": n}
    tau = stats.kendalltau(x, y).statistic
    rng = np.random.default_rng(seed)
    boots = []
    for _ in range(n_boot):
        idx = rng.integers(0, n, n)
        if np.ptp(x[idx]) == 0 or np.ptp(y[idx]) == 0:
            continue
        boots.append(stats.kendalltau(x[idx], y[idx]).statistic)
    a = (1 - level) / 2
    lo, hi = np.quantile(boots, [a, 1 - a]) if boots else (np.nan, np.nan)
    return {"tau": float(tau), "low": float(lo), "high": float(hi), "n": n}


def granulated_tau(df: pd.DataFrame, measure: str, target: str, axes: Sequence[str]) -> dict:
    """Jiang et al.'s granulated τ: for each hyper-parameter ``axis``, the mean over groups of rows
    equal in every other axis of τ(measure, target) within the group (groups with < 2 distinct
    values of the axis are skipped); returns ``{axis: τ_axis, "mean": mean over axes}``."""
    out = {}
    for axis in axes:
        others = [a for a in axes if a != axis]
        taus = []
        groups = df.groupby(others, dropna=False) if others else [(None, df)]
        for _, g in groups:
            g = g[np.isfinite(g[measure]) & np.isfinite(g[target])]
            if g[axis].nunique() < 2 or len(g) < 2:
                continue
            t = stats.kendalltau(g[measure], g[target]).statistic
            if np.isfinite(t):
                taus.append(t)
        out[axis] = float(np.mean(taus)) if taus else float("nan")
    vals = [v for v in out.values() if np.isfinite(v)]
    out["mean"] = float(np.mean(vals)) if vals else float("nan")
    return out


def loo_prediction(x: Sequence[float], y: Sequence[float]) -> dict:
    """Leave-one-out linear prediction of ``y`` from ``x``: mean absolute error of the fit against
    that of predicting the training mean (the baseline). ``skill`` = 1 − mae/mae_baseline."""
    x, y = _finite_pairs(x, y)
    n = len(x)
    if n < 4:
        return {"mae": float("nan"), "mae_baseline": float("nan"), "skill": float("nan"), "n": n}
    err, base = [], []
    for i in range(n):
        m = np.arange(n) != i
        A = np.vstack([x[m], np.ones(m.sum())]).T
        coef, *_ = np.linalg.lstsq(A, y[m], rcond=None)
        err.append(abs(coef[0] * x[i] + coef[1] - y[i]))
        base.append(abs(y[m].mean() - y[i]))
    mae, mae0 = float(np.mean(err)), float(np.mean(base))
    return {"mae": mae, "mae_baseline": mae0, "skill": 1 - mae / mae0 if mae0 > 0 else float("nan"), "n": n}
