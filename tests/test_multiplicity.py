"""Holm and Benjamini–Hochberg adjustments: hand-computed examples, scipy, NaN handling, verdict."""
from __future__ import annotations

import doctest

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from landscape import multiplicity
from landscape.multiplicity import adjust_pvalues, benjamini_hochberg, holm, multiplicity_verdict

P = [0.01, 0.04, 0.03, 0.005]  # m = 4; sorted 0.005, 0.01, 0.03, 0.04


def test_holm_matches_the_hand_computed_example():
    # 4·0.005 = 0.02, 3·0.01 = 0.03, 2·0.03 = 0.06, 1·0.04 = 0.04 → running max 0.06
    assert holm(P) == pytest.approx([0.03, 0.06, 0.06, 0.02])


def test_bh_matches_the_hand_computed_example():
    # 4·0.005/1 = 0.02, 4·0.01/2 = 0.02, 4·0.03/3 = 0.04, 4·0.04/4 = 0.04 → running min from the top
    assert benjamini_hochberg(P) == pytest.approx([0.02, 0.04, 0.04, 0.02])


def test_holm_matches_its_definition_by_brute_force():
    rng = np.random.default_rng(0)
    p = rng.uniform(size=25) ** 3
    order = np.argsort(p)
    m = len(p)
    want = np.empty(m)
    for i, k in enumerate(order):
        want[k] = min(1.0, max((m - j) * p[order[j]] for j in range(i + 1)))
    assert holm(p) == pytest.approx(want)


@pytest.mark.skipif(not hasattr(stats, "false_discovery_control"), reason="scipy < 1.11")
def test_bh_matches_scipy_false_discovery_control():
    rng = np.random.default_rng(1)
    for m in (1, 2, 7, 70):
        p = rng.uniform(size=m) ** 2
        p[: m // 3] /= 100  # some real effects
        assert benjamini_hochberg(p) == pytest.approx(stats.false_discovery_control(p, method="bh"))


def test_bh_is_never_more_conservative_than_holm_and_both_at_least_raw():
    p = np.random.default_rng(2).uniform(size=40) ** 4
    h, b = holm(p), benjamini_hochberg(p)
    assert np.all(b <= h + 1e-15) and np.all(h >= p) and np.all(b >= p) and h.max() <= 1


def test_non_finite_p_values_stay_out_of_the_family():
    p = [0.01, np.nan, 0.04, 0.03, 0.005]
    assert holm(p)[[0, 2, 3, 4]] == pytest.approx(holm(P))  # m = 4, not 5
    assert np.isnan(holm(p)[1]) and np.isnan(benjamini_hochberg(p)[1])
    assert np.isnan(holm([np.nan])).all() and holm([]).size == 0
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        holm([0.5, 1.5])


def test_adjust_pvalues_flags_survivors_and_records_the_family():
    t = adjust_pvalues(pd.DataFrame({"label": list("abcde"), "p": P + [np.nan]}))
    assert t.attrs == {"m": 4, "alpha": 0.05}
    assert t["holm"].tolist() == [True, False, False, True, False]
    assert t["bh"].tolist() == [True, True, True, True, False]
    assert t["raw"].tolist() == [True, True, True, True, False]


def test_multiplicity_verdict_names_survivors_of_each_correction():
    v = multiplicity_verdict(adjust_pvalues(pd.DataFrame({"label": list("abcd"), "p": P})))
    assert v.startswith("of the 4 intervals read against zero on this page, 4 had p ≤ 0.05 uncorrected")
    assert "2 survived Holm's correction (family-wise error 5 %): a and d" in v
    assert "4 survived Benjamini–Hochberg's (false discovery rate 5 %): a, b, c and d" in v
    none = adjust_pvalues(pd.DataFrame({"label": ["x", "y"], "p": [0.5, 0.9]}))
    assert multiplicity_verdict(none).endswith("0 survived Holm's correction (family-wise error 5 %); "
                                               "0 survived Benjamini–Hochberg's (false discovery rate 5 %)")
    many = adjust_pvalues(pd.DataFrame({"label": [f"m{i}" for i in range(12)], "p": [1e-4] * 12}))
    assert "12 survived Holm's correction (family-wise error 5 %): m0, m1, m2, m3, m4, m5, m6, m7 and 4 more" \
        in multiplicity_verdict(many)
    with pytest.raises(ValueError, match="adjust_pvalues"):
        multiplicity_verdict(pd.DataFrame({"label": [], "p": []}))


def test_docstring_examples_run():
    assert doctest.testmod(multiplicity, optionflags=doctest.NORMALIZE_WHITESPACE).failed == 0
