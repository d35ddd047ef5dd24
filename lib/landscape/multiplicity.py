r"""Many intervals read against zero: Holm's and Benjamini–Hochberg's adjustments, and the sentence
that says which findings survive them.

A page that reads :math:`m` intervals against zero at level :math:`1-\alpha` finds about
:math:`\alpha m` of them "significant" by chance even when nothing is there (with m = 70 and
α = 0.05, three or four). Two corrections are reported side by side:

* **Holm** (1979) controls the family-wise error rate — the probability of *any* false claim —
  at α, under any dependence between the tests. With the p-values sorted,
  :math:`p_{(1)} \le \dots \le p_{(m)}`, the adjusted values are

  .. math:: \tilde p_{(i)} = \max_{j \le i} \min\{1, (m - j + 1)\, p_{(j)}\},

  and a claim survives when :math:`\tilde p \le \alpha`.
* **Benjamini–Hochberg** (1995) controls the false discovery rate — the expected share of false
  claims among those made — at α, for independent or positively dependent tests (the bootstrap
  p-values of one page share data, so read it as the less conservative of the two):

  .. math:: \tilde p_{(i)} = \min_{j \ge i} \min\{1, m\, p_{(j)} / j\}.

Non-finite p-values (a test that could not be computed) are not part of the family: they do not
count in :math:`m` and stay NaN. Where the p-values come from is the caller's choice; the
report's come from :func:`landscape.correlation.kendall_tau` (a bootstrap p-value over
configurations).
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

__all__ = ["holm", "benjamini_hochberg", "adjust_pvalues", "multiplicity_verdict"]


def _adjusted(p: Sequence[float], sorted_adjust) -> np.ndarray:
    """Apply ``sorted_adjust`` (ascending p-values -> their adjusted values) to the finite entries
    of ``p`` (which must lie in [0, 1]), in the input order; non-finite entries stay NaN and are
    not counted in the family."""
    p = np.asarray(p, dtype=float).ravel()
    ok = np.isfinite(p)
    if np.any((p[ok] < 0) | (p[ok] > 1)):
        raise ValueError("p-values must lie in [0, 1]")
    out = np.full(p.shape, np.nan)
    q = p[ok]
    if len(q):
        order = np.argsort(q, kind="stable")
        res = np.empty(len(q))
        res[order] = sorted_adjust(q[order])
        out[ok] = res
    return out


def holm(p: Sequence[float]) -> np.ndarray:
    r"""Holm's step-down adjusted p-values (family-wise error control under any dependence).

    :math:`\tilde p_{(i)} = \max_{j \le i} \min\{1, (m-j+1) p_{(j)}\}` over the :math:`m` finite
    p-values, returned in the input order; non-finite entries stay NaN and are not counted.

    Parameters:
        p: the family's p-values.

    Returns:
        The adjusted p-values; a finding survives at level α when its value is ≤ α.

    Example:
        >>> holm([0.01, 0.04, 0.03, 0.005]).round(3).tolist()
        [0.03, 0.06, 0.06, 0.02]
    """
    def step_down(q):
        return np.maximum.accumulate(np.minimum(1.0, (len(q) - np.arange(len(q))) * q))
    return _adjusted(p, step_down)


def benjamini_hochberg(p: Sequence[float]) -> np.ndarray:
    r"""Benjamini–Hochberg adjusted p-values (false discovery rate control; also called q-values).

    :math:`\tilde p_{(i)} = \min_{j \ge i} \min\{1, m p_{(j)} / j\}` over the :math:`m` finite
    p-values, in the input order; non-finite entries stay NaN and are not counted. Equals
    ``scipy.stats.false_discovery_control(p, method="bh")`` on finite input.

    Parameters:
        p: the family's p-values.

    Returns:
        The adjusted p-values; the findings with a value ≤ α are the procedure's discoveries at a
        false discovery rate of α.

    Example:
        >>> benjamini_hochberg([0.01, 0.04, 0.03, 0.005]).round(3).tolist()
        [0.02, 0.04, 0.04, 0.02]
    """
    def step_up(q):
        adj = q * len(q) / np.arange(1, len(q) + 1)
        return np.minimum(1.0, np.minimum.accumulate(adj[::-1])[::-1])
    return _adjusted(p, step_up)


def adjust_pvalues(table: pd.DataFrame, p: str = "p", alpha: float = 0.05) -> pd.DataFrame:
    """The table with both adjustments of its column ``p``, the whole table being one family.

    Adds ``p_holm``, ``p_bh`` (adjusted p-values, :func:`holm` and :func:`benjamini_hochberg`),
    and the booleans ``raw`` (p ≤ α, uncorrected), ``holm`` and ``bh`` (adjusted value ≤ α). Rows
    with a non-finite p are left out of the family (NaN, False). ``table.attrs["m"]`` holds the
    family size and ``table.attrs["alpha"]`` the level.

    Parameters:
        table: one row per finding read against zero.
        p: the column of p-values.
        alpha: the level (family-wise error for Holm, false discovery rate for BH).

    Example:
        >>> t = adjust_pvalues(pd.DataFrame({"label": list("abcd"), "p": [0.01, 0.04, 0.03, 0.005]}))
        >>> t[["holm", "bh"]].sum().tolist(), t.attrs["m"]
        ([2, 4], 4)
    """
    out = table.copy()
    pv = out[p].to_numpy(dtype=float)
    out["p_holm"], out["p_bh"] = holm(pv), benjamini_hochberg(pv)
    fin = np.isfinite(pv)
    out["raw"] = fin & (np.where(fin, pv, 1.0) <= alpha)
    out["holm"] = out["p_holm"].fillna(1.0).to_numpy() <= alpha
    out["bh"] = out["p_bh"].fillna(1.0).to_numpy() <= alpha
    out.attrs = {**table.attrs, "m": int(fin.sum()), "alpha": alpha}
    return out


def _names(labels: Sequence[str], most: int | None = None) -> str:
    labels = list(labels)
    if not labels:
        return "none"
    if most is not None and len(labels) > most:
        return ", ".join(labels[:most]) + f" and {len(labels) - most} more (see the tables)"
    return labels[0] if len(labels) == 1 else ", ".join(labels[:-1]) + " and " + labels[-1]


def multiplicity_verdict(table: pd.DataFrame, label: str = "label",
                         what: str = "intervals read against zero on this page", most: int = 8) -> str:
    """The sentence saying how many findings of a family survive each correction, and which.

    Parameters:
        table: the output of :func:`adjust_pvalues` (columns ``raw``, ``holm``, ``bh``; its
            ``attrs`` give the family size and level).
        label: the column naming each finding in the sentence.
        what: how the sentence names the family.
        most: the most findings named per correction (the rest are counted).

    Example:
        >>> t = adjust_pvalues(pd.DataFrame({"label": list("abcd"), "p": [0.01, 0.04, 0.03, 0.005]}))
        >>> print(multiplicity_verdict(t))  # doctest: +NORMALIZE_WHITESPACE
        of the 4 intervals read against zero on this page, 4 had p ≤ 0.05 uncorrected; 2
        survived Holm's correction (family-wise error 5 %): a and d; 4 survived
        Benjamini–Hochberg's (false discovery rate 5 %): a, b, c and d
    """
    m, alpha = table.attrs.get("m"), table.attrs.get("alpha", 0.05)
    if m is None:
        raise ValueError("multiplicity_verdict needs the output of adjust_pvalues")
    if m == 0:
        return f"no {what} could be computed"
    pct = f"{100 * alpha:g} %"
    raw, h, b = (table.loc[table[c], label].astype(str).tolist() for c in ("raw", "holm", "bh"))
    return (f"of the {m} {what}, {len(raw)} had p ≤ {alpha:g} uncorrected; {len(h)} survived Holm's "
            f"correction (family-wise error {pct})" + (f": {_names(h, most)}" if h else "")
            + f"; {len(b)} survived Benjamini–Hochberg's (false discovery rate {pct})"
            + (f": {_names(b, most)}" if b else ""))
