"""Findings computed from numbers: each verdict on synthetic inputs whose answer is known."""
from __future__ import annotations

import doctest

import numpy as np
import pytest

import landscape.verdicts
from landscape.compare import Claim, compare_claim
from landscape.verdicts import (association_verdict, claim_verdict, eos_verdict, gradient_decay_verdict,
                                indefiniteness_verdict, trained_verdict)


# --------------------------------------------------------------------------------- claims

def _two(a, b, key="m", **extra):
    return {"x": {"label": "X", "seeds": list(range(len(a))), key: a, **extra},
            "y": {"label": "Y", "seeds": list(range(len(b))), key: b, **extra}}


@pytest.mark.parametrize("direction, status", [("greater", "supported"), ("less", "contradicted")])
def test_claim_verdict_follows_the_sign_of_a_resolved_difference(direction, status):
    P = _two([2.0, 2.1, 1.9], [1.0, 1.1, 0.9])
    v = claim_verdict(compare_claim(Claim("k", "m", "x", "y", direction, "X vs Y"), P))
    assert v.status == status and "excludes 0" in v.sentence and v.data["low"] > 0


def test_unresolved_claim_says_how_many_seeds_would_resolve_it():
    P = _two([1.0, 3.0, 2.0], [1.5, 2.5, 2.2])
    v = claim_verdict(compare_claim(Claim("k", "m", "x", "y", "greater", "X above Y"), P))
    assert v.status == "unresolved" and "contains 0" in v.sentence
    assert "seeds per configuration would resolve" in v.sentence and "80 % power" in v.sentence
    assert v.data["seeds_needed"] > 3


def test_claims_without_enough_runs_or_measures_are_not_decided():
    one = _two([1.0], [2.0, 3.0, 4.0])
    assert claim_verdict(compare_claim(Claim("k", "m", "x", "y", "greater", "t"), one)).status == "untestable"
    none = _two([1.0, 2.0], [2.0, 3.0], key="other")
    assert claim_verdict(compare_claim(Claim("k", "m", "x", "y", "greater", "t"), none)).status == "not measured"
    capped = _two([3, 3, 3], [2, 1, 2], key="n_negative", top_k=3, converged=[True] * 3)
    v = claim_verdict(compare_claim(Claim("k", "n_negative", "x", "y", "greater", "t"), capped))
    assert v.status == "capped" and "≥ k" in v.sentence


def test_one_sample_claim_tests_against_its_reference():
    P = {"x": {"label": "X", "seeds": [0, 1], "barrier_loss": [0.5]}}  # one barrier from two seeds
    v = claim_verdict(compare_claim(Claim("k", "barrier_loss", "x", None, "greater", "a barrier"), P))
    assert v.status == "untestable"
    P["x"]["barrier_loss"] = [0.5, 0.6, 0.55]
    assert claim_verdict(compare_claim(Claim("k", "barrier_loss", "x", None, "greater", "a barrier"), P)).status \
        == "supported"


# ------------------------------------------------------------------------- indefiniteness

def _hess(lmax, lmin, nneg, conv, res, k=3):
    n = len(lmax)
    return {"label": "C", "seeds": list(range(n)), "lambda_max": lmax, "lambda_min": lmin, "n_negative": nneg,
            "converged": conv, "residual": res, "top_k": k}


def test_converged_runs_with_a_certified_negative_eigenvalue_are_indefinite():
    P = {"a": _hess([5.0, 6.0, 7.0], [-1.0, -2.0, -0.5], [3, 3, 1], [True] * 3, [1e-3] * 3)}
    v = indefiniteness_verdict(P)
    assert v.status == "all indefinite" and v.data["configs"]["a"]["indefinite"] == 3
    assert v.data["configs"]["a"]["n_negative"] == "≥ 3 / ≥ 3 / ≥ 1 (n=3)"  # lower bounds, not a mean


def test_an_unconverged_run_cannot_certify_a_sign():
    P = {"a": _hess([5.0, 6.0], [-1.0, -2.0], [3, 3], [True, False], [1e-3, 1e-3])}
    v = indefiniteness_verdict(P)
    assert v.status == "partly"
    assert v.data["configs"]["a"]["indefinite"] == 1 and v.data["configs"]["a"]["uncertified"] == 1
    none = indefiniteness_verdict({"a": _hess([5.0], [-1.0], [3], [False], [1e-3])})
    assert none.status == "none certified"


def test_a_negative_ritz_value_within_its_residual_certifies_nothing():
    # λ_min = -0.01 with residual 0.1: an eigenvalue lies within 0.1 of it, possibly above 0
    v = indefiniteness_verdict({"a": _hess([5.0], [-0.01], [0], [True], [0.1])})
    assert v.status == "none certified" and v.data["configs"]["a"]["uncertified"] == 1


def test_no_negative_among_the_computed_is_not_called_definite():
    v = indefiniteness_verdict({"a": _hess([5.0, 4.0], [0.5, 0.4], [0, 0], [True, True], [1e-3, 1e-3])})
    assert v.status == "none certified" and v.data["configs"]["a"]["no negative found"] == 2
    assert "among those computed" in v.sentence


def test_diverged_configurations_and_top_only_studies_are_left_out():
    P = {"a": _hess([5.0], [-1.0], [3], [True], [1e-3]),
         "gone": {"label": "G", "seeds": [], "diverged": [{"seed": 0, "epoch": 1}]},
         "top": {"label": "T", "seeds": [0], "lambda_max": [3.0], "converged": [True]}}
    v = indefiniteness_verdict(P)
    assert v.status == "all indefinite" and set(v.data["configs"]) == {"a"} and v.data["diverged"] == ["G"]
    assert indefiniteness_verdict({"top": P["top"]}).status == "not measured"


# ------------------------------------------------------------------------------ training

def test_trained_verdict_tells_diverged_chance_and_trained_apart():
    assert trained_verdict({"label": "A", "seeds": [0, 1], "test_acc": [0.85, 0.86]}, 0.1).status == "trained"
    assert trained_verdict({"label": "A", "seeds": [0, 1], "test_acc": [0.1, 0.12]}, 0.1).status == "did not train"
    div = {"label": "A", "seeds": [], "test_acc": [], "diverged": [{"seed": 0, "epoch": 10}, {"seed": 1, "epoch": 9}]}
    v = trained_verdict(div, 0.1)
    assert v.status == "diverged" and "2 of 2" in v.sentence and "epochs 10, 9" in v.sentence
    mixed = {"label": "A", "seeds": [1], "test_acc": [0.8], "diverged": [{"seed": 0, "epoch": 3}]}
    assert trained_verdict(mixed, 0.1).status == "mixed"


def test_gradient_decay_verdict_compares_each_run_with_the_heuristic():
    assert gradient_decay_verdict([0.01, 0.05, 0.1]).status == "as predicted"
    assert gradient_decay_verdict([0.5, 0.9, 2.0]).status == "less than predicted"
    assert gradient_decay_verdict([0.05, 0.9]).status == "mixed"
    assert gradient_decay_verdict([]).status == "no runs"


# --------------------------------------------------------------------------- association

def test_association_is_stated_only_when_the_interval_excludes_zero():
    neg = association_verdict({"tau": -0.4, "low": -0.7, "high": -0.1, "n": 18}, "η/B", "λ_max",
                              if_negative="more noise went with flatter minima")
    assert neg.status == "negative" and neg.sentence.endswith("more noise went with flatter minima.")
    assert association_verdict({"tau": 0.4, "low": 0.1, "high": 0.7, "n": 18}, "x", "y").status == "positive"
    assert association_verdict({"tau": 0.4, "low": -0.1, "high": 0.7, "n": 18}, "x", "y").status == "none detected"
    assert association_verdict({"tau": float("nan"), "low": float("nan"), "high": float("nan"), "n": 2},
                               "x", "y").status == "too few"


# ------------------------------------------------------------------------ edge of stability

def _gd(lam, thr=20.0, every=10, loss=None, converged=None, diverged=False):
    steps = every * (len(lam) - 1)
    loss = loss if loss is not None else list(np.linspace(2.3, 0.3, steps + 1))
    return {"lr": 2.0 / thr, "threshold": thr, "eig_step": [every * i for i in range(len(lam))],
            "lambda_max": list(lam), "converged": converged or [True] * len(lam), "step": list(range(len(loss))),
            "loss": loss, "diverged": diverged}


def test_eos_verdict_finds_the_known_crossing_step_and_the_hover():
    lam = [2, 5, 8, 11, 14, 17, 19.9, 20.4, 19.6, 21.0, 20.2, 19.8]  # first ≥ 20 at index 7
    v = eos_verdict(_gd(lam))
    assert v.status == "edge of stability" and v.data["crossing_step"] == 70
    assert v.data["median_ratio"] == pytest.approx(np.median(lam[7:]) / 20)
    assert "step 70" in v.sentence and "the edge of stability" in v.sentence


def test_eos_verdict_without_a_crossing_is_below_threshold_only_when_every_estimate_converged():
    lam = [2, 4, 6, 8, 10]
    assert eos_verdict(_gd(lam)).status == "below threshold"
    # an unconverged Ritz value is a lower bound on λ_max: staying below is then not established
    v = eos_verdict(_gd(lam, converged=[True, True, False, True, True]))
    assert v.status == "not established" and "lower bounds" in v.sentence


def test_eos_verdict_counts_a_crossing_shown_by_an_unconverged_estimate():
    lam = [2, 10, 21, 20, 20.5]
    v = eos_verdict(_gd(lam, converged=[True, True, False, True, True]))
    assert v.data["crossing_step"] == 20 and v.status == "edge of stability" and "lower bounds" in v.sentence


def test_eos_verdict_separates_staying_above_falling_back_stalling_and_diverging():
    assert eos_verdict(_gd([2, 10, 21, 40, 45, 50])).status == "crossed, stayed above"
    assert eos_verdict(_gd([2, 10, 21, 8, 7, 6])).status == "crossed, fell back"
    flat = _gd([2, 10, 21, 20, 20.5], loss=[1.0] * 41)
    assert eos_verdict(flat).status == "crossed, loss stalled"
    gone = _gd([2, 10, 21], loss=[2.0, 1.5, float("nan")], diverged=True)
    assert eos_verdict(gone).status == "diverged"


def test_docstring_examples_run():
    assert doctest.testmod(landscape.verdicts, raise_on_error=False).failed == 0
