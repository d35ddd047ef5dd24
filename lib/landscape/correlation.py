r"""Does a measure track generalisation? Rank correlations with intervals that resample
configurations, partial and granulated Kendall τ, leave-one-configuration-out prediction (plain
and nested), and the verdict sentences the question pages glue.

**Kendall's τ-b** between a measure :math:`x` and a target :math:`y` (generalisation gap, test
error, …) over :math:`n` models counts concordant minus discordant pairs,

.. math:: \tau_b = \frac{n_c - n_d}{\sqrt{(n_0 - n_x)(n_0 - n_y)}},

with :math:`n_0 = n(n-1)/2` pairs and :math:`n_x, n_y` the pairs tied in :math:`x`, :math:`y`.

**What is resampled.** Seeds of one configuration are not independent models: they share every
hyper-parameter and often land close together. A bootstrap over models treats three near-copies
as three pieces of evidence and gives intervals that are too narrow. Every interval here is a
*cluster* bootstrap when ``clusters`` (the configuration of each model) is given: configurations
are drawn with replacement and each drawn configuration brings all its seeds. Without
``clusters`` each model is its own cluster (the ordinary bootstrap). The point estimate is the
same either way — only the interval changes. Replicates are computed exactly as τ-b of the
resampled models: a replicate that repeats model :math:`i` :math:`w_i` times has
:math:`n_c - n_d = \tfrac12 \sum_{ij} w_i w_j\, \mathrm{sgn}(x_i-x_j)\,\mathrm{sgn}(y_i-y_j)`
and untied pairs :math:`\tfrac12 \sum_{ij} w_i w_j\, [x_i \ne x_j]`, so all replicates are a few
matrix products.

**p-values.** For multiplicity control (:mod:`landscape.multiplicity`) each interval comes with a
two-sided *bootstrap* p-value for "the statistic is zero": twice the smaller share of replicates
on either side of zero, :math:`p = \min\{1, 2(1 + \min(\#\{\tau^* \le 0\}, \#\{\tau^* \ge 0\}))
/ (B + 1)\}` — the smallest :math:`1 - \text{level}` at which the percentile interval would
exclude zero (up to the +1, which keeps :math:`p \ge 2/(B+1)`: Holm's correction over
:math:`m` intervals can keep a finding only if :math:`2/(B+1) < \alpha/m`, so :math:`B` must be
well above :math:`2m/\alpha`). It resamples the same configurations as the interval.

Jiang et al. (2020, "Fantastic Generalization Measures and Where to Find Them") argue that a
pooled τ can be driven by one hyper-parameter; their *granulated* τ averages, over each axis of
a factorial design, the τ within groups of models that differ only along that axis.
"""
from __future__ import annotations

import math
from collections import Counter
from typing import Callable, Hashable, Mapping, Sequence

import numpy as np
import pandas as pd
from scipy import stats

__all__ = [
    "MIN_CLUSTERS", "kendall_tau", "partial_kendall_tau", "factorial_axes", "granulated_tau",
    "common_models", "equal_size_pool", "loo_prediction", "select_by_loo", "nested_loo",
    "interval_text", "skill_strength", "tau_verdict", "nested_verdict", "choice_verdict", "skill_verdict",
    "invariance_verdict", "training_state_verdict",
]

#: Fewest clusters (configurations) from which an interval is computed. With G clusters a
#: bootstrap has C(2G-1, G) distinct resamples: 10 for G = 3, 35 for G = 4.
MIN_CLUSTERS = 4

_CHUNK = 500  # bootstrap replicates per matrix product (bounds memory at n models)


# ---------------------------------------------------------------------------------------------
# helpers: finite rows, cluster codes, resampling weights, intervals
# ---------------------------------------------------------------------------------------------

def _codes(labels: Sequence[Hashable] | None, n: int) -> np.ndarray:
    """Integer codes 0..G-1 of the cluster labels, in order of first appearance (None: 0..n-1)."""
    if labels is None:
        return np.arange(n)
    labels = list(labels)
    if len(labels) != n:
        raise ValueError(f"clusters has {len(labels)} labels for {n} values")
    index: dict = {}
    return np.array([index.setdefault(c, len(index)) for c in labels], dtype=int)


def _finite(*cols: Sequence[float], clusters=None) -> tuple[list[np.ndarray], np.ndarray]:
    """The columns as float arrays without the rows where any value is not finite, and the
    cluster codes of the rows kept (each row its own cluster when ``clusters`` is None)."""
    arrs = [pd.to_numeric(pd.Series(list(c) if not isinstance(c, pd.Series) else c.to_list()),
                          errors="coerce").to_numpy(float) for c in cols]
    n = len(arrs[0])
    if any(len(a) != n for a in arrs):
        raise ValueError("the columns have different lengths")
    keep = np.logical_and.reduce([np.isfinite(a) for a in arrs]) if arrs else np.ones(n, bool)
    codes = _codes(clusters, n)[keep]
    return [a[keep] for a in arrs], _codes(codes.tolist(), len(codes))


def _weights(codes: np.ndarray, n_boot: int, rng: np.random.Generator):
    """Chunks of bootstrap weights, shape (replicates, rows): the number of times each row is in
    a resample that draws the clusters with replacement (each drawn cluster brings all its rows)."""
    g = int(codes.max()) + 1
    left = n_boot
    while left > 0:
        b = min(_CHUNK, left)
        counts = rng.multinomial(g, np.full(g, 1.0 / g), size=b)
        yield counts[:, codes].astype(float)
        left -= b


def _sgn(v: np.ndarray) -> np.ndarray:
    return np.sign(v[:, None] - v[None, :])


def _tau_w(W: np.ndarray, sx: np.ndarray, sy: np.ndarray) -> np.ndarray:
    """τ-b of each weighted resample (rows of ``W``), from the sign matrices of x and y."""
    num = ((W @ (sx * sy)) * W).sum(1)
    tx = ((W @ np.abs(sx)) * W).sum(1)
    ty = ((W @ np.abs(sy)) * W).sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return num / np.sqrt(tx * ty)


def _partial(txy, txz, tyz):
    with np.errstate(invalid="ignore", divide="ignore"):
        return (txy - txz * tyz) / np.sqrt((1 - txz ** 2) * (1 - tyz ** 2))


def _summary(est: float, boots: np.ndarray, level: float) -> dict:
    """Percentile interval and bootstrap p-value (see the module docstring) of the replicates."""
    boots = boots[np.isfinite(boots)]
    if not np.isfinite(est) or len(boots) < 2:
        return {"low": math.nan, "high": math.nan, "p": math.nan, "n_boot": len(boots)}
    a = (1 - level) / 2
    lo, hi = np.quantile(boots, [a, 1 - a])
    tail = min(int((boots <= 0).sum()), int((boots >= 0).sum()))
    p = min(1.0, 2 * (tail + 1) / (len(boots) + 1))
    return {"low": float(lo), "high": float(hi), "p": float(p), "n_boot": len(boots)}


def _nan_result(n: int, g: int, resampled: str, **extra) -> dict:
    return {"tau": math.nan, "low": math.nan, "high": math.nan, "p": math.nan, "n": n,
            "n_clusters": g, "resampled": resampled, **extra}


# ---------------------------------------------------------------------------------------------
# Kendall τ, partial τ
# ---------------------------------------------------------------------------------------------

def kendall_tau(x: Sequence[float], y: Sequence[float], clusters: Sequence[Hashable] | None = None,
                n_boot: int = 2000, seed: int = 0, level: float = 0.95) -> dict:
    r"""Kendall τ-b of ``x`` and ``y`` with a (cluster) bootstrap interval and p-value.

    Pairs with a non-finite value are dropped. With ``clusters`` (one label per pair: the
    configuration of each model) the bootstrap draws configurations with replacement, all seeds
    of a drawn configuration together; without it, it draws models. The point estimate does not
    depend on ``clusters``. Replicates with no untied pair in x or y are skipped.

    Parameters:
        x, y: the measure and the target, one value per model.
        clusters: the cluster (configuration) of each model, or None for independent models.
        n_boot: bootstrap replicates (see the module docstring for the p-value's floor).
        seed: seed of the resampling.
        level: coverage of the percentile interval.

    Returns:
        ``{"tau", "low", "high", "p", "n", "n_clusters", "resampled", "n_boot"}``: τ-b, the
        interval, the two-sided bootstrap p-value for τ = 0, the number of pairs and clusters
        used, ``"configurations"`` or ``"models"``, and the replicates kept. τ is NaN for fewer
        than 3 pairs; the interval and p are NaN for fewer than :data:`MIN_CLUSTERS` clusters.

    Example:
        >>> r = kendall_tau([1, 2, 3, 4, 5, 6], [1, 3, 2, 4, 6, 5], clusters="aabbcc")
        >>> round(r["tau"], 3), r["n"], r["n_clusters"], bool(np.isnan(r["low"]))  # 3 configurations
        (0.733, 6, 3, True)
    """
    (x, y), codes = _finite(x, y, clusters=clusters)
    n, g = len(x), (int(codes.max()) + 1 if len(codes) else 0)
    resampled = "models" if clusters is None else "configurations"
    if n < 3:
        return _nan_result(n, g, resampled, n_boot=0)
    tau = float(stats.kendalltau(x, y).statistic)
    out = {"tau": tau, "n": n, "n_clusters": g, "resampled": resampled}
    if g < MIN_CLUSTERS:
        return {**out, "low": math.nan, "high": math.nan, "p": math.nan, "n_boot": 0}
    sx, sy = _sgn(x), _sgn(y)
    rng = np.random.default_rng(seed)
    boots = np.concatenate([_tau_w(W, sx, sy) for W in _weights(codes, n_boot, rng)])
    return {**out, **_summary(tau, boots, level)}


def partial_kendall_tau(x: Sequence[float], y: Sequence[float], z: Sequence[float],
                        clusters: Sequence[Hashable] | None = None, n_boot: int = 2000,
                        seed: int = 0, level: float = 0.95) -> dict:
    r"""Kendall's partial τ of ``x`` and ``y`` given ``z`` (Kendall 1942), with a (cluster)
    bootstrap interval and p-value.

    .. math:: \tau_{xy\cdot z} = \frac{\tau_{xy} - \tau_{xz}\,\tau_{yz}}
              {\sqrt{(1 - \tau_{xz}^2)(1 - \tau_{yz}^2)}}

    from the three τ-b's. Used for "does the measure track the generalisation gap beyond what
    the training loss explains?" (x a measure, y the gap, z the training loss). Rows with any
    non-finite value are dropped; each replicate recomputes all three τ's on the same resample
    (configurations when ``clusters`` is given, as in :func:`kendall_tau`). NaN when
    :math:`|\tau_{xz}| = 1` or :math:`|\tau_{yz}| = 1` (z determines the order).

    Parameters:
        x, y: the two variables whose association is wanted.
        z: the variable held fixed.
        clusters, n_boot, seed, level: as in :func:`kendall_tau`.

    Returns:
        As :func:`kendall_tau`, plus ``tau_xy``, ``tau_xz``, ``tau_yz``.

    Example (by hand: τ_xy = τ_xz = 2/3, τ_yz = 1/3, so τ_xy·z = (4/9)/√(40/81) = 2/√10):
        >>> r = partial_kendall_tau([1, 2, 3, 4], [1, 3, 2, 4], [1, 2, 4, 3])
        >>> round(r["tau"], 4), round(2 / 10 ** 0.5, 4)
        (0.6325, 0.6325)
    """
    (x, y, z), codes = _finite(x, y, z, clusters=clusters)
    n, g = len(x), (int(codes.max()) + 1 if len(codes) else 0)
    resampled = "models" if clusters is None else "configurations"
    if n < 3:
        return _nan_result(n, g, resampled, n_boot=0, tau_xy=math.nan, tau_xz=math.nan, tau_yz=math.nan)
    t = {k: float(stats.kendalltau(a, b).statistic) for k, a, b in
         (("tau_xy", x, y), ("tau_xz", x, z), ("tau_yz", y, z))}
    tau = float(_partial(t["tau_xy"], t["tau_xz"], t["tau_yz"]))
    out = {"tau": tau, "n": n, "n_clusters": g, "resampled": resampled, **t}
    if g < MIN_CLUSTERS or not np.isfinite(tau):
        return {**out, "low": math.nan, "high": math.nan, "p": math.nan, "n_boot": 0}
    sx, sy, sz = _sgn(x), _sgn(y), _sgn(z)
    rng = np.random.default_rng(seed)
    boots = np.concatenate([_partial(_tau_w(W, sx, sy), _tau_w(W, sx, sz), _tau_w(W, sy, sz))
                            for W in _weights(codes, n_boot, rng)])
    return {**out, **_summary(tau, boots, level)}


# ---------------------------------------------------------------------------------------------
# granulated τ over the factorial axes of a design
# ---------------------------------------------------------------------------------------------

def _text(df: pd.DataFrame, axes: Sequence[str]) -> pd.DataFrame:
    """The axes' values as text, a missing value (None, NaN) being the level ``"None"``."""
    def one(v):
        return "None" if v is None or (isinstance(v, float) and math.isnan(v)) else str(v)
    return pd.DataFrame({a: [one(v) for v in df[a].tolist()] for a in axes}, index=df.index, dtype=object)


def _design(df: pd.DataFrame, axes: Sequence[str]) -> pd.DataFrame:
    """The distinct combinations of the axes' values (as text: a missing value is a level)."""
    return _text(df, axes).drop_duplicates()


def _why_not_factorial(design: pd.DataFrame, axis: str, axes: Sequence[str]) -> str | None:
    values = design[axis].nunique()
    if values < 2:
        return "it takes one value"
    others = [a for a in axes if a != axis]
    if not others:
        return None
    per = design.groupby(others)[axis].nunique()
    if (per < values).any():
        return f"{int((per < values).sum())} of {len(per)} combinations of the other axes lack some of its {values} values"
    return None


def factorial_axes(df: pd.DataFrame, axes: Sequence[str]) -> list[str]:
    """The axes along which the design of ``df`` is factorial.

    The design is factorial along ``axis`` when it takes at least two values and every
    combination of the *other* axes' values that occurs in ``df`` occurs with every value of
    ``axis`` — the condition under which Jiang et al.'s per-axis τ compares like with like. A
    missing value (None, NaN: an option a model does not have) counts as a value.

    Parameters:
        df: one row per model; the axes are columns.
        axes: every hyper-parameter column that varies in the design.

    Returns:
        The factorial axes, in the order given. Pass them to :func:`granulated_tau` with the
        others as ``fixed``.

    Example (a 2 × 2 grid in lr and batch, plus one extra configuration that varies only
    width): lr and batch are factorial only among the width-1 models, so none of the three is
    factorial over the whole design:
        >>> d = pd.DataFrame({"lr": [1, 1, 2, 2, 1], "batch": [8, 16, 8, 16, 8], "width": [1, 1, 1, 1, 2]})
        >>> factorial_axes(d, ["lr", "batch"]), factorial_axes(d, ["lr", "batch", "width"])
        (['lr', 'batch'], [])
    """
    design = _design(df, axes)
    return [a for a in axes if _why_not_factorial(design, a, axes) is None]


def granulated_tau(df: pd.DataFrame, measure: str, target: str, axes: Sequence[str],
                   fixed: Sequence[str] = ()) -> dict:
    r"""Jiang et al.'s granulated τ over the factorial ``axes`` of a design.

    For each axis :math:`i` of ``axes``, :math:`\psi_i` is the mean, over the groups of models
    equal in every other design column (the other ``axes`` and every ``fixed`` one), of
    τ-b(measure, target) within the group — the group's models differ only along :math:`i`,
    seeds included; the granulated τ is the mean of the :math:`\psi_i` over ``axes``. The
    ``fixed`` columns (axes along which the design is not factorial) are held constant inside
    every group but not averaged over. Rows with a non-finite measure or target are dropped
    first. No interval is computed.

    Parameters:
        df: one row per model, with the measure, the target and the design columns.
        measure, target: column names.
        axes: the axes to average over; the design must be factorial along each, given all the
            other design columns (:func:`factorial_axes` of ``axes + fixed``).
        fixed: the other design columns that vary, held fixed within groups.

    Returns:
        ``{axis: ψ_axis for each axis, "mean": mean over the axes}`` (NaN where no group had
        two distinct values).

    Raises:
        ValueError: (one line) naming the axes along which the design is not factorial, and why.

    Example: on a full grid every axis is allowed:
        >>> d = pd.DataFrame({"lr": [1, 1, 2, 2], "batch": [8, 16, 8, 16],
        ...                   "m": [1.0, 2.0, 3.0, 4.0], "gap": [1.0, 2.0, 3.0, 5.0]})
        >>> granulated_tau(d, "m", "gap", ["lr", "batch"])
        {'lr': 1.0, 'batch': 1.0, 'mean': 1.0}
    """
    axes, fixed = list(axes), [f for f in fixed if f not in axes]
    design_cols = axes + fixed
    num = lambda c: pd.to_numeric(df[c], errors="coerce")  # noqa: E731
    d = df[np.isfinite(num(measure)) & np.isfinite(num(target))]
    design = _design(d, design_cols)
    bad = {a: why for a in axes if (why := _why_not_factorial(design, a, design_cols)) is not None}
    if bad:
        raise ValueError("granulated τ needs factorial axes; not factorial: "
                         + "; ".join(f"{a} ({why})" for a, why in bad.items())
                         + " (pass factorial_axes(df, axes) as axes, the rest as fixed)")
    out = {}
    text = _text(d, design_cols)
    for axis in axes:
        others = [a for a in design_cols if a != axis]
        groups = d.groupby([text[a] for a in others]) if others else [(None, d)]
        taus = []
        for _, grp in groups:
            if text.loc[grp.index, axis].nunique() < 2 or len(grp) < 2:
                continue
            t = stats.kendalltau(pd.to_numeric(grp[measure]), pd.to_numeric(grp[target])).statistic
            if np.isfinite(t):
                taus.append(t)
        out[axis] = float(np.mean(taus)) if taus else math.nan
    vals = [v for v in out.values() if np.isfinite(v)]
    out["mean"] = float(np.mean(vals)) if vals else math.nan
    return out


# ---------------------------------------------------------------------------------------------
# which models are compared
# ---------------------------------------------------------------------------------------------

def common_models(df: pd.DataFrame, columns: Sequence[str]) -> pd.DataFrame:
    """The models (rows) on which every one of ``columns`` is finite: the one common set on which
    measures are compared, so that a difference between two measures' τ is not a difference
    between two sets of models. ``len(result)`` is the count to state.

    Example:
        >>> d = pd.DataFrame({"a": [1.0, np.nan, 3.0], "b": [1.0, 2.0, None], "c": [0, 1, 2]})
        >>> common_models(d, ["a", "c"]).index.tolist(), len(common_models(d, ["a", "b"]))
        ([0, 2], 1)
    """
    missing = [c for c in columns if c not in df]
    if missing:
        raise ValueError(f"common_models: no column {', '.join(missing)}")
    keep = np.ones(len(df), bool)
    for c in columns:
        keep &= np.isfinite(pd.to_numeric(df[c], errors="coerce").to_numpy(float))
    return df[keep]


def equal_size_pool(df: pd.DataFrame, measure: str, size: str, group: str = "study",
                    label: str | None = None) -> tuple[pd.DataFrame, dict]:
    """Pool ``measure`` only over the models measured with the most common ``size``.

    λ_max of a subset's Hessian depends on the subset's size (it is a convex function of the
    matrix, so a smaller subset gives a larger value on average): values from different sizes
    must not be ranked together. The most common size is the one of the most models with a
    finite ``measure`` (ties: the larger size); every other model's ``measure`` becomes NaN.

    Parameters:
        df: one row per model.
        measure: the column to restrict.
        size: the column with each model's subset size (missing sizes are left out too).
        group: the column naming the source (study) in the note.
        label: how the note names the measure (default: ``measure``).

    Returns:
        The restricted copy, and ``{"size", "kept", "left_out", "note"}``: the size kept, the
        groups kept, ``{group: [their sizes]}`` of the groups (partly) left out, and the
        sentence that says so.

    Example:
        >>> d = pd.DataFrame({"study": list("aabbc"), "hs": [128, 128, 128, 128, 500],
        ...                   "lambda_max": [1.0, 2.0, 3.0, 4.0, 50.0]})
        >>> pooled, info = equal_size_pool(d, "lambda_max", "hs", label="λ_max")
        >>> pooled["lambda_max"].isna().tolist(), info["note"]
        ([False, False, False, False, True], 'λ_max is pooled over the models whose Hessian used 128 training examples (a, b); left out: c (500)')
    """
    out = df.copy()
    label = label or measure
    vals = pd.to_numeric(out[measure], errors="coerce")
    sizes = pd.to_numeric(out[size], errors="coerce") if size in out else pd.Series(np.nan, index=out.index)
    have = np.isfinite(vals) & np.isfinite(sizes)
    if not have.any():
        out[measure] = np.nan
        return out, {"size": None, "kept": [], "left_out": {},
                     "note": f"no model records {label} with its Hessian subset size"}
    counts = sizes[have].value_counts()
    mode = max(counts.index, key=lambda s: (counts[s], s))
    keep = have & (sizes == mode)
    out.loc[~keep, measure] = np.nan
    kept = list(dict.fromkeys(out.loc[keep, group]))
    left = {}
    for g, s in zip(out.loc[~keep & np.isfinite(vals), group], sizes[~keep & np.isfinite(vals)]):
        left.setdefault(g, [])
        s = "not recorded" if not np.isfinite(s) else int(s)
        if s not in left[g]:
            left[g].append(s)
    mode = int(mode)
    note = f"{label} is pooled over the models whose Hessian used {mode} training examples ({', '.join(map(str, kept))})"
    note += ("; left out: " + ", ".join(f"{g} ({'/'.join(map(str, s))})" for g, s in left.items())
             if left else "; no study was left out")
    return out, {"size": mode, "kept": kept, "left_out": left, "note": note}


# ---------------------------------------------------------------------------------------------
# leave-one-configuration-out prediction, plain and nested
# ---------------------------------------------------------------------------------------------

def _line(x: np.ndarray, y: np.ndarray, x_new: np.ndarray) -> np.ndarray:
    """Least-squares line of y on x (slope 0 if x is constant), evaluated at ``x_new``."""
    mx, my = x.mean(), y.mean()
    sxx = ((x - mx) ** 2).sum()
    b = ((x - mx) * (y - my)).sum() / sxx if sxx > 1e-12 * max(1.0, (x ** 2).sum()) else 0.0
    return my + b * (x_new - mx)


def _logo(x: np.ndarray, y: np.ndarray, codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For every row, the prediction of the line fitted without the row's cluster, and the mean of
    y without it (leave one cluster out, all clusters at once from per-cluster sums)."""
    s = x.std()
    x = (x - x.mean()) / (s if s > 0 else 1.0)  # affine in x: the fitted predictions are unchanged
    y0 = y.mean()
    yc = y - y0
    g = int(codes.max()) + 1
    sums = [np.bincount(codes, w, minlength=g) for w in (np.ones_like(x), x, yc, x * x, x * yc)]
    n, sx, sy, sxx, sxy = (v.sum() - v for v in sums)  # totals without each cluster
    with np.errstate(invalid="ignore", divide="ignore"):
        mx, my = sx / n, sy / n
        vxx, vxy = sxx - n * mx ** 2, sxy - n * mx * my
        b = np.where(vxx > 1e-10 * n, vxy / vxx, 0.0)
    pred = my[codes] + b[codes] * (x - mx[codes]) + y0
    return pred, my[codes] + y0


def _skill_boot(err: np.ndarray, err0: np.ndarray, codes: np.ndarray, n_boot: int, seed: int,
                level: float) -> dict:
    """Skill 1 − Σerr/Σerr0 with a bootstrap over clusters of the out-of-sample errors."""
    mae, mae0 = float(err.mean()), float(err0.mean())
    skill = 1 - mae / mae0 if mae0 > 0 else math.nan
    out = {"mae": mae, "mae_baseline": mae0, "skill": skill}
    g = int(codes.max()) + 1
    if g < MIN_CLUSTERS or not np.isfinite(skill):
        return {**out, "low": math.nan, "high": math.nan, "p": math.nan, "n_boot": 0}
    rng = np.random.default_rng(seed)
    with np.errstate(invalid="ignore", divide="ignore"):
        boots = np.concatenate([1 - (W @ err) / (W @ err0) for W in _weights(codes, n_boot, rng)])
    return {**out, **_summary(skill, boots, level)}


def loo_prediction(x: Sequence[float], y: Sequence[float], groups: Sequence[Hashable] | None = None,
                   n_boot: int = 2000, seed: int = 0, level: float = 0.95) -> dict:
    r"""Leave-one-configuration-out linear prediction of ``y`` from ``x``, against the mean.

    For each configuration (``groups``; each model alone when None) a least-squares line of y on
    x is fitted to the *other* configurations' models and predicts this configuration's models;
    the baseline predicts them by the other models' mean. With :math:`e_i, e^0_i` the absolute
    errors, ``skill`` :math:`= 1 - \sum e_i / \sum e^0_i` (0: no better than the mean, 1:
    perfect, < 0: worse). Its interval and bootstrap p-value resample the held-out
    configurations' errors (configurations with replacement; the fits are not redone). Holding
    out whole configurations keeps a model's seed-mates out of its own fit.

    Parameters:
        x: the predictor, one value per model.
        y: the outcome.
        groups: the configuration of each model, or None for leave-one-model-out.
        n_boot, seed, level: as in :func:`kendall_tau`.

    Returns:
        ``{"mae", "mae_baseline", "skill", "low", "high", "p", "n", "n_groups", "n_boot"}``;
        NaN for fewer than 4 models or 3 configurations (the interval: fewer than
        :data:`MIN_CLUSTERS`).

    Example:
        >>> round(loo_prediction([0, 1, 2, 3, 4, 5], [1, 3, 5, 7, 9, 11])["skill"], 6)
        1.0
    """
    (x, y), codes = _finite(x, y, clusters=groups)
    n, g = len(x), (int(codes.max()) + 1 if len(codes) else 0)
    nan = {"mae": math.nan, "mae_baseline": math.nan, "skill": math.nan, "low": math.nan,
           "high": math.nan, "p": math.nan, "n": n, "n_groups": g, "n_boot": 0}
    if n < 4 or g < 3:
        return nan
    pred, base = _logo(x, y, codes)
    return {**_skill_boot(np.abs(pred - y), np.abs(base - y), codes, n_boot, seed, level), "n": n, "n_groups": g}


def select_by_loo(X: pd.DataFrame, y: np.ndarray, groups: Sequence[Hashable]) -> str:
    """The column of ``X`` whose leave-one-configuration-out line predicts ``y`` best (smallest
    mean absolute error; ties: the first column). This is the selection step that
    :func:`nested_loo` runs on the training configurations of each fold.

    Example:
        >>> X = pd.DataFrame({"noise": [3, 1, 4, 1, 5, 9], "signal": [0, 1, 2, 3, 4, 5]})
        >>> select_by_loo(X, np.array([0.0, 2, 4, 6, 8, 10]), list("aabbcc"))
        'signal'
    """
    codes = _codes(groups, len(X))
    y = np.asarray(y, float)
    errs = {}
    for k in X.columns:
        x = X[k].to_numpy(float)
        errs[k] = float(np.abs(_logo(x, y, codes)[0] - y).mean())
    return min(X.columns, key=lambda k: errs[k])


def nested_loo(X: pd.DataFrame, y: Sequence[float], groups: Sequence[Hashable],
               select: Callable[[pd.DataFrame, np.ndarray, np.ndarray], str] | None = None,
               n_boot: int = 2000, seed: int = 0, level: float = 0.95) -> dict:
    r"""Nested leave-one-configuration-out prediction: the best predictor is chosen inside the loop.

    For each configuration :math:`g` in turn: the models of :math:`g` are held out; ``select``
    chooses one column of ``X`` using only the other configurations' models (by default
    :func:`select_by_loo`, itself a leave-one-configuration-out comparison *within* them); a
    line of y on the chosen column, fitted to those same models, predicts the held-out models;
    the baseline predicts them by those models' mean. The held-out models never enter their
    own fold's selection or fit, so the skill :math:`1 - \sum e_i / \sum e^0_i` estimates what
    "pick the best early measure, then predict" achieves on a new configuration — not the
    optimistic skill of the best candidate found on all the data. Interval and p-value as in
    :func:`loo_prediction` (configurations resampled; fits and choices not redone).

    Parameters:
        X: one column per candidate predictor, one row per model; rows with any non-finite
            candidate or outcome are dropped (one common set of models). ``select`` receives
            the training rows with their original index.
        y: the outcome, aligned with ``X`` by position.
        groups: the configuration of each model, aligned by position.
        select: ``select(X_train, y_train, groups_train) -> column``.
        n_boot, seed, level: as in :func:`kendall_tau`.

    Returns:
        As :func:`loo_prediction`, plus ``chosen`` (``{column: number of folds}``, most chosen
        first) and ``folds`` (per fold: ``held_out`` configuration, ``chosen`` column, ``test``
        the index labels scored). NaN for fewer than 4 configurations.

    Example:
        >>> X = pd.DataFrame({"noise": [3, 1, 4, 1, 5, 9, 2, 6], "signal": [0, 1, 2, 3, 4, 5, 6, 7]})
        >>> r = nested_loo(X, [0.0, 2, 4, 6, 8, 10, 12, 14], list("aabbccdd"))
        >>> round(r["skill"], 6), r["chosen"]
        (1.0, {'signal': 4})
    """
    select = select or select_by_loo
    X = X.copy()
    yv = pd.to_numeric(pd.Series(list(y)), errors="coerce").to_numpy(float)
    labels = np.asarray(list(groups), dtype=object)
    if len(yv) != len(X) or len(labels) != len(X):
        raise ValueError("nested_loo: X, y and groups have different lengths")
    keep = np.isfinite(yv) & np.logical_and.reduce(
        [np.isfinite(pd.to_numeric(X[c], errors="coerce").to_numpy(float)) for c in X.columns])
    X, yv, labels = X[keep].astype(float), yv[keep], labels[keep]
    codes = _codes(labels.tolist(), len(yv))
    n, g = len(yv), (int(codes.max()) + 1 if len(codes) else 0)
    if n < 4 or g < 4 or X.shape[1] == 0:
        return {"mae": math.nan, "mae_baseline": math.nan, "skill": math.nan, "low": math.nan,
                "high": math.nan, "p": math.nan, "n": n, "n_groups": g, "n_boot": 0, "chosen": {}, "folds": []}
    pred, base = np.empty(n), np.empty(n)
    folds = []
    for k in range(g):
        te = codes == k
        tr = ~te
        col = select(X[tr], yv[tr], labels[tr])
        if col not in X.columns:
            raise ValueError(f"nested_loo: select returned {col!r}, not a column of X")
        xc = X[col].to_numpy(float)
        pred[te] = _line(xc[tr], yv[tr], xc[te])
        base[te] = yv[tr].mean()
        folds.append({"held_out": labels[te][0], "chosen": col, "test": X.index[te].tolist()})
    res = _skill_boot(np.abs(pred - yv), np.abs(base - yv), codes, n_boot, seed, level)
    chosen = dict(Counter(f["chosen"] for f in folds).most_common())
    return {**res, "n": n, "n_groups": g, "chosen": chosen, "folds": folds}


# ---------------------------------------------------------------------------------------------
# verdicts: the sentences the pages glue, computed from the numbers
# ---------------------------------------------------------------------------------------------

def interval_text(est: float, low: float, high: float, digits: int = 2) -> str:
    """``est [low, high]``, or ``est (no interval)`` / ``n/a`` where they are not finite.

    Example:
        >>> interval_text(0.312, 0.1, 0.5), interval_text(0.3, float("nan"), float("nan"))
        ('0.31 [0.10, 0.50]', '0.30 (no interval)')
    """
    if not np.isfinite(est):
        return "n/a"
    if not (np.isfinite(low) and np.isfinite(high)):
        return f"{est:.{digits}f} (no interval)"
    return f"{est:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"


#: Skill thresholds for :func:`skill_strength`: the share of the mean's error removed.
STRENGTH = ((2 / 3, "strongly"), (1 / 3, "moderately"), (0.0, "weakly"))


def skill_strength(skill: float, low: float, high: float) -> str:
    """A word for a prediction skill read with its interval: ``strongly`` (skill ≥ 2/3: two
    thirds of the mean's error removed), ``moderately`` (≥ 1/3), ``weakly`` (> 0) — each only
    when the interval lies above zero; ``no better than the mean`` when it contains zero,
    ``worse than the mean`` when it lies below; ``without an interval`` / ``not computable``.

    Example:
        >>> [skill_strength(*s) for s in [(0.8, 0.7, 0.9), (0.2, 0.05, 0.3), (0.2, -0.1, 0.4), (-0.5, -0.9, -0.1)]]
        ['strongly', 'weakly', 'no better than the mean', 'worse than the mean']
    """
    if not np.isfinite(skill):
        return "not computable"
    if not (np.isfinite(low) and np.isfinite(high)):
        return "without an interval"
    if high < 0:
        return "worse than the mean"
    if low <= 0:
        return "no better than the mean"
    return next(word for t, word in STRENGTH if skill >= t)


def _names(labels: Sequence[str]) -> str:
    labels = list(labels)
    return labels[0] if len(labels) == 1 else ", ".join(labels[:-1]) + " and " + labels[-1]


def tau_verdict(table: pd.DataFrame, what: str, m: int | None = None, label: str = "label") -> str:
    """Which τ intervals of ``table`` exclude zero, and which of those survive Holm's and
    Benjamini–Hochberg's corrections.

    Parameters:
        table: rows with ``label``, ``tau``, ``low``, ``high`` and (from
            :func:`landscape.multiplicity.adjust_pvalues`) ``holm`` and ``bh``.
        what: the association, as the sentence names it ("τ with the generalisation gap").
        m: the family size the corrections were over (default: ``table.attrs["m"]``).
        label: the column naming each measure.

    Example:
        >>> t = pd.DataFrame({"label": ["λ_max", "tr H"], "tau": [0.4, 0.1], "low": [0.2, -0.1],
        ...                   "high": [0.6, 0.3], "holm": [True, False], "bh": [True, False]})
        >>> print(tau_verdict(t, "τ with the gap", m=12))  # doctest: +NORMALIZE_WHITESPACE
        the 95 % interval of λ_max (τ = +0.40) for its τ with the gap excluded zero, those of the
        other measures did not; it survived Holm's correction over the 12 intervals read against
        zero and Benjamini–Hochberg's
    """
    m = table.attrs.get("m") if m is None else m
    t = table[np.isfinite(table["tau"].astype(float))]
    if t.empty:
        return f"no {what} could be computed"
    t = t[np.isfinite(t["low"].astype(float))]
    if t.empty:
        return f"no {what} had an interval (too few configurations)"
    sig = t[(t["low"] > 0) | (t["high"] < 0)]
    if sig.empty:
        return (f"no measure's 95 % interval for its {what} excluded zero "
                f"(τ between {t['tau'].min():+.2f} and {t['tau'].max():+.2f})")
    one = len(sig) == 1
    listed = _names([f"{r[label]} (τ = {r['tau']:+.2f})" for _, r in sig.iterrows()])
    rest = "" if len(sig) == len(t) else ", those of the other measures did not"
    head = (f"the 95 % interval{'' if one else 's'} of {listed} for {'its' if one else 'their'} {what} "
            f"excluded zero{rest}")
    fam = f" over the {m} intervals read against zero" if m else ""
    h, b = sig.loc[sig["holm"].astype(bool), label].tolist(), sig.loc[sig["bh"].astype(bool), label].tolist()
    if one:
        if h:
            return head + f"; it survived Holm's correction{fam} and Benjamini–Hochberg's"
        if b:
            return head + f"; it survived Benjamini–Hochberg's correction{fam} but not Holm's"
        return head + f"; it did not survive Holm's nor Benjamini–Hochberg's correction{fam}"
    k = len(sig)
    if len(h) == k:
        return head + f"; all {k} survived Holm's correction{fam} (and so Benjamini–Hochberg's)"
    holm_part = f"{_names(h)} survived Holm's" if h else "none survived Holm's"
    if len(b) == k:
        return head + f"; after correction{fam}, {holm_part}, all {k} Benjamini–Hochberg's"
    if h and h == b:
        return head + f"; after correction{fam}, {_names(h)} survived Holm's and Benjamini–Hochberg's, the others neither"
    return (head + f"; after correction{fam}, {holm_part}"
            + (f" and {_names(b)} Benjamini–Hochberg's" if b else " nor Benjamini–Hochberg's"))


def nested_verdict(res: Mapping, labels: Mapping[str, str] | None = None) -> str:
    """What the nested loop chose and how well it predicted: ``"<most chosen> (chosen in a of
    F folds; also: …), nested skill s [lo, hi]: <strength>"``.

    Example:
        >>> nested_verdict({"chosen": {"loss": 5, "lam": 1}, "skill": 0.4, "low": 0.1, "high": 0.6},
        ...                {"loss": "loss after epoch 1", "lam": "λ_max"})
        'loss after epoch 1 (chosen in 5 of 6 folds; also λ_max in 1), nested skill 0.40 [0.10, 0.60]: moderately'
    """
    labels = labels or {}
    chosen = dict(res.get("chosen") or {})
    if not chosen:
        return "no nested prediction (fewer than 4 configurations)"
    f = sum(chosen.values())
    (top, k), *others = chosen.items()
    also = "; also " + ", ".join(f"{labels.get(c, c)} in {v}" for c, v in others) if others else ""
    return (f"{labels.get(top, top)} (chosen in {k} of {f} folds{also}), nested skill "
            f"{interval_text(res['skill'], res['low'], res['high'])}: "
            f"{skill_strength(res['skill'], res['low'], res['high'])}")


def choice_verdict(results: Mapping[str, Mapping], kinds: Mapping[str, Sequence[str]]) -> str:
    """How often each kind of candidate was chosen inside the nested loops, counted over the folds
    of every study (:func:`nested_loo` results).

    Parameters:
        results: ``{study: nested_loo(...) result}``.
        kinds: ``{phrase: [candidate columns]}``; a chosen column of no kind counts as "another
            candidate".

    Example:
        >>> choice_verdict({"a": {"chosen": {"loss": 3, "lam0": 1}}, "b": {"chosen": {"lam1": 4}}},
        ...                {"the loss": ["loss"], "a curvature measure": ["lam0", "lam1"], "a gradient norm": ["g"]})
        'inside the loop, the loss was chosen in 3 of 8 folds, a curvature measure in 5 and a gradient norm in 0 (2 studies)'
    """
    counts = Counter()
    for r in results.values():
        counts.update(r.get("chosen") or {})
    total = sum(counts.values())
    if not total:
        return "no study had enough configurations for a nested prediction"
    of_kind = {k: sum(counts[c] for c in cols) for k, cols in kinds.items()}
    other = total - sum(of_kind.values())
    items = list(of_kind.items()) + ([("another candidate", other)] if other else [])
    parts = [f"{k} was chosen in {v} of {total} folds" if i == 0 else f"{k} in {v}" for i, (k, v) in enumerate(items)]
    n = sum(1 for r in results.values() if r.get("chosen"))
    return f"inside the loop, {_names(parts)} ({n} {'study' if n == 1 else 'studies'})"


def skill_verdict(results: Mapping[str, Mapping], names: Mapping[str, str] | None = None,
                  outcome: str = "the final test accuracy") -> str:
    """The headline of a prediction page: per study, how well the early measure chosen inside a
    nested leave-one-configuration-out loop predicted the outcome (:func:`skill_strength` of
    its skill), and in how many studies its interval lay above zero.

    Parameters:
        results: ``{study: nested_loo(...) result}``.
        names: how the sentence names each study.
        outcome: the outcome, as the sentence names it.

    Example:
        >>> skill_verdict({"a": {"skill": 0.5, "low": 0.2, "high": 0.7},
        ...                "b": {"skill": 0.1, "low": -0.2, "high": 0.3}}, {"a": "study A", "b": "study B"})  # doctest: +NORMALIZE_WHITESPACE
        'chosen inside the leave-one-configuration-out loop, early measurements predicted the
        final test accuracy better than the mean (interval above zero) in 1 of 2 studies:
        moderately in study A (skill 0.50 [0.20, 0.70]) and no better than the mean in study B
        (skill 0.10 [-0.20, 0.30])'
    """
    names = names or {}
    parts, above, counted = [], 0, 0
    for s, r in results.items():
        word = skill_strength(r["skill"], r["low"], r["high"])
        if np.isfinite(r["low"]):
            counted += 1
            above += r["low"] > 0
        parts.append(f"{word} in {names.get(s, s)} (skill {interval_text(r['skill'], r['low'], r['high'])})")
    if not parts:
        return "no study had early measurements to predict from"
    return (f"chosen inside the leave-one-configuration-out loop, early measurements predicted "
            f"{outcome} better than the mean (interval above zero) in {above} of {counted} "
            f"{'study' if counted == 1 else 'studies'}: " + _names(parts))


def invariance_verdict(spread: Mapping[str, float], tol: float = 0.01) -> str:
    """Which quantities changed under a function-preserving reparametrisation and which did not.

    Parameters:
        spread: ``{label: (max − min) / max |value|}`` across the reparametrisations tried.
        tol: the relative change below which a quantity counts as unchanged.

    Example:
        >>> invariance_verdict({"loss": 0.0, "λ_max": 0.94, "adaptive sharpness": 0.003})
        'λ_max changed by 94.0 % of its largest value across the rescalings, while loss (0.0 %) and adaptive sharpness (0.3 %) stayed within 1 %'
    """
    pct = lambda v: f"{100 * v:.1f} %"  # noqa: E731
    spread = {k: float(v) for k, v in spread.items() if np.isfinite(v)}
    changed = [k for k, v in spread.items() if v > tol]
    same = [k for k, v in spread.items() if v <= tol]
    if not spread:
        return "no quantity could be compared across the rescalings"
    one = len(changed) == 1
    head = (f"{_names(changed)} changed by {_names([pct(spread[k]) for k in changed])} of "
            + ("its largest value" if one else "their largest values respectively")
            + " across the rescalings") if changed else ""
    tail = (_names([f"{k} ({pct(spread[k])})" for k in same]) + f" stayed within {100 * tol:g} %") if same else ""
    if head and tail:
        return f"{head}, while {tail}"
    return head or ("every quantity compared — " + tail)


def training_state_verdict(reached: Sequence, grad_norm: Sequence[float]) -> str:
    """How many models reached their stopping criterion, and the spread of the end point's
    gradient norm ‖g‖ (a sharpness value cannot be read without it). Missing entries (None,
    NaN) count as not recorded.

    Example:
        >>> training_state_verdict([True, False, None], [0.01, 0.2, float("nan")])
        '1 of 2 models with a recorded state reached their stopping criterion (not recorded for 1); the gradient norm at the end point had median 0.105 (range 0.01–0.2, 2 models)'
    """
    rec = [bool(r) for r in reached if r is not None and not (isinstance(r, float) and math.isnan(r))]
    n_missing = len(list(reached)) - len(rec)
    g = np.asarray([v for v in pd.to_numeric(pd.Series(list(grad_norm), dtype=object), errors="coerce")
                    if np.isfinite(v)], float)
    first = (f"{sum(rec)} of {len(rec)} models with a recorded state reached their stopping criterion"
             + (f" (not recorded for {n_missing})" if n_missing else "")) if rec else \
        "no model records whether it reached its stopping criterion"
    second = (f"the gradient norm at the end point had median {np.median(g):.3g} "
              f"(range {g.min():.3g}–{g.max():.3g}, {len(g)} models)") if len(g) else \
        "no model records its gradient norm at the end point"
    return f"{first}; {second}"
