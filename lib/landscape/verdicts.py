r"""Findings computed from the numbers: every sentence of the book that states a finding is one of
these functions' outputs, glued in, never typed.

Each verdict returns a :class:`Verdict`: a machine-readable ``status`` (what the tests check)
and a ``sentence`` for the page (a full sentence, numbers at the precision their intervals
support). The rules are stated in each docstring; they are deliberately conservative:

* a comparison is a finding only when its interval excludes 0 (:func:`claim_verdict`);
* an eigenvalue's sign is certified only by a converged Lanczos run, and only beyond its
  residual; a count of negative eigenvalues among the ``k`` computed is a lower bound
  (:func:`indefiniteness_verdict`);
* a rank correlation is an association only when its bootstrap interval excludes 0
  (:func:`association_verdict`);
* the edge of stability needs λ_max to *reach* 2/η and then to stay near it while the loss keeps
  falling (:func:`eos_verdict`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np

from .compare import ClaimResult, count_caps, fmt_difference, fmt_seeds
from .stats import fmt, fmt_count, fmt_value, summarize

__all__ = ["Verdict", "claim_verdict", "indefiniteness_verdict", "trained_verdict",
           "gradient_decay_verdict", "association_verdict", "eos_verdict"]


@dataclass(frozen=True)
class Verdict:
    """A computed finding: ``status`` (a short fixed word, for tests and tables), ``sentence``
    (for the page) and the numbers it rests on (``data``)."""

    status: str
    sentence: str
    data: dict = field(default_factory=dict)

    def __str__(self) -> str:
        return self.sentence


_MEASURE_NAMES = {
    "lambda_max": "λ_max", "lambda_min": "λ_min", "n_negative": "the negative-eigenvalue count",
    "trace": "tr H", "sharpness_sam": "SAM sharpness", "sharpness_adaptive": "adaptive sharpness",
    "sharpness_random": "random-perturbation sharpness", "barrier_loss": "the interpolation barrier (nats)",
    "barrier_error": "the interpolation barrier (error)", "test_acc": "test accuracy",
    "gen_gap": "the generalisation gap", "grad_norm": "the end point's gradient norm",
}


def _par(x: float) -> str:
    """A setting (chance level, margin, step size), printed as given: ``0.1``, not ``0.100``."""
    return f"{x:g}"


def _seeds_phrase(n: float) -> str:
    if not math.isfinite(n):
        return "no number of seeds would (the observed difference is 0)"
    return f"about {fmt_seeds(n)} seeds per configuration would resolve a difference of this size"


def claim_verdict(result: ClaimResult) -> Verdict:
    """Whether our runs support a write-up's comparison, from the interval of the difference.

    ``status`` is one of: ``supported`` (the Welch interval of ``a − b`` excludes 0 on the
    write-up's side), ``contradicted`` (it excludes 0 on the other side), ``unresolved`` (it
    contains 0; the sentence then gives :func:`landscape.compare.seeds_needed`: seeds per
    configuration for 80 % power at the observed difference and variance, two-sided 5 %),
    ``untestable`` (fewer than two runs on a side, e.g. every run diverged), ``capped`` (a
    lower-bound count at its cap on a side: "≥ k" cannot be ordered) or ``not measured``.
    Unconverged Lanczos runs are named in the sentence.

    Example:
        >>> from landscape.compare import Claim, compare_claim
        >>> P = {"x": {"label": "X", "seeds": [0, 1, 2], "m": [1.0, 1.1, 0.9]},
        ...      "y": {"label": "Y", "seeds": [0, 1, 2], "m": [2.0, 2.2, 1.8]}}
        >>> claim_verdict(compare_claim(Claim("k", "m", "y", "x", "greater", "Y above X"), P)).status
        'supported'
        >>> claim_verdict(compare_claim(Claim("k", "m", "y", "x", "less", "Y below X"), P)).status
        'contradicted'
    """
    c, d = result.claim, result.difference
    name = _MEASURE_NAMES.get(c.measure, c.measure)
    what = (f"{name} of {result.label_a} minus that of {result.label_b}" if c.b is not None
            else f"{name} of {result.label_a}" + (f" minus {fmt_value(c.reference)}" if c.reference else ""))
    head = f"The write-up: {c.text}."
    data = {"claim": c.key, "measure": c.measure, "a": c.a, "b": c.b, "direction": c.direction}
    if not result.measured:
        return Verdict("not measured", f"{head} Not measured in our runs ({name} is not computed for both).", data)
    if d is None:  # capped counts
        return Verdict("capped", f"{head} Not testable here: the count reaches its cap k in "
                       f"{', '.join(result.capped)}, so it reads only ≥ k and cannot be ordered "
                       "(a larger k would tell).", data)
    data |= {"estimate": d.estimate, "low": d.low, "high": d.high, "n_a": d.n_a, "n_b": d.n_b,
             "method": d.method, "seeds_needed": d.seeds_needed}
    ours = f"Ours: {what} = {fmt_difference(d)}"
    notes = []
    for lab, seeds in result.unconverged.items():
        notes.append(f"Lanczos did not converge for {lab}, seed{'s' if len(seeds) > 1 else ''} "
                     f"{', '.join(str(s) for s in seeds)}")
    for lab, k in result.diverged.items():
        notes.append(f"{k} run{'s' if k > 1 else ''} of {lab} diverged and {'are' if k > 1 else 'is'} left out")
    tail = (" (" + "; ".join(notes) + ")") if notes else ""
    if not math.isfinite(d.half_width):
        return Verdict("untestable", f"{head} {ours}: not testable, fewer than two runs on a side{tail}.", data)
    want = 1 if c.direction == "greater" else -1
    if d.resolved:
        status = "supported" if d.sign == want else "contradicted"
        return Verdict(status, f"{head} {ours}: {status}, the interval excludes 0{tail}.", data)
    return Verdict("unresolved", f"{head} {ours}: not resolved, the interval contains 0; "
                   f"{_seeds_phrase(d.seeds_needed)} (80 % power, two-sided 5 %, at the observed "
                   f"variance){tail}.", data)


def _run_sign(lam_max: float | None, lam_min: float | None, n_neg: float | None, residual: float | None,
              converged: bool | None) -> str:
    """One run's certified sign structure: ``indefinite``, ``no negative found``, ``uncertified``."""
    if not converged or lam_max is None or lam_min is None:
        return "uncertified"
    r = 0.0 if residual is None or not math.isfinite(residual) else residual
    negative = (n_neg is not None and n_neg >= 1) or lam_min < -r
    if negative and lam_max > r:
        return "indefinite"
    if lam_min > r:
        return "no negative found"
    return "uncertified"


def indefiniteness_verdict(P: Mapping[str, Mapping]) -> Verdict:
    """Is the Hessian at the end of training indefinite, configuration by configuration?

    Rule: a run *certifies* indefiniteness when its Lanczos run converged, at least one computed
    eigenvalue is certainly negative (``n_negative ≥ 1``, i.e. below minus its residual, or
    ``λ_min < −residual``) and ``λ_max`` exceeds the residual. An unconverged run certifies no
    sign. A run whose computed bottom is above its residual found no negative eigenvalue —
    among those computed only (the count is a lower bound). Only configurations that have end
    points (runs that did not diverge) and computed the bottom of the spectrum (``lambda_min``)
    take part.

    ``status``: ``all indefinite`` (every run of every such configuration certified), ``partly``
    (some), ``none certified``, or ``not measured``. ``data["configs"]`` holds per-configuration
    counts.

    Example:
        >>> P = {"a": {"label": "A", "seeds": [0, 1], "lambda_max": [5.0, 6.0], "lambda_min": [-1.0, -0.5],
        ...            "n_negative": [3, 2], "converged": [True, True], "residual": [1e-3, 1e-3]},
        ...      "b": {"label": "B", "seeds": [0], "lambda_max": [5.0], "lambda_min": [-1.0],
        ...            "n_negative": [3], "converged": [False], "residual": [2.0]}}
        >>> v = indefiniteness_verdict(P)
        >>> v.status, v.data["configs"]["b"]["uncertified"]
        ('partly', 1)
    """
    rows, skipped = {}, []
    for c, p in P.items():
        if "lambda_min" not in p or not p.get("seeds"):
            if p.get("diverged") and not p.get("seeds"):
                skipped.append(p.get("label", c))
            continue
        n = len(p["seeds"])
        get = lambda k: p.get(k) or [None] * n  # noqa: E731
        signs = [_run_sign(*args) for args in zip(get("lambda_max"), get("lambda_min"), get("n_negative"),
                                                  get("residual"), get("converged"))]
        rows[c] = {"label": p.get("label", c), "runs": n, "indefinite": signs.count("indefinite"),
                   "no negative found": signs.count("no negative found"),
                   "uncertified": signs.count("uncertified"),
                   "n_negative": fmt_count(p.get("n_negative", []), count_caps(p), lower_bound=True)}
    if not rows:
        return Verdict("not measured", "The bottom of the Hessian spectrum was not computed for any "
                       "trained configuration here.", {"configs": {}})
    full = [r for r in rows.values() if r["indefinite"] == r["runs"]]
    some = [r for r in rows.values() if r["indefinite"] > 0]
    gone = f" ({', '.join(skipped)}: every run diverged, no end point)" if skipped else ""
    if len(full) == len(rows):
        status = "all indefinite"
        s = (f"In every run of all {len(rows)} configurations with an end point "
             f"({', '.join(r['label'] for r in rows.values())}), a converged Lanczos run certified the "
             f"Hessian at the end of training indefinite: λ_max above its residual and at least one "
             f"eigenvalue below minus its residual{gone}.")
    else:
        status = "partly" if some else "none certified"
        parts = []
        for r in rows.values():
            bits = [f"{r['indefinite']} of {r['runs']} runs certified"]
            if r["uncertified"]:
                bits.append(f"{r['uncertified']} uncertified (not converged, or no eigenvalue beyond its residual)")
            if r["no negative found"]:
                bits.append(f"{r['no negative found']} with no negative eigenvalue among those computed")
            parts.append(f"{r['label']}: {', '.join(bits)}")
        s = (f"The Hessian at the end of training was certified indefinite in every run of {len(full)} of "
             f"{len(rows)} configurations with an end point (certified: a converged Lanczos run with λ_max "
             "above its residual and an eigenvalue below minus it). " + "; ".join(parts) + f"{gone}.")
    return Verdict(status, s, {"configs": rows, "diverged": skipped})


def trained_verdict(p: Mapping, chance: float, margin: float = 0.05) -> Verdict:
    """Did a configuration train: per run, diverged, at chance, or above it?

    Rule: a run that did not diverge *trained* when its final test accuracy exceeds
    ``chance + margin`` (``chance`` = 1 / number of classes), else it stayed at chance. The
    counts are per run, so the verdict does not need three seeds.

    ``status``: ``trained`` (every run), ``did not train`` (no run diverged, none above chance),
    ``diverged`` (every run), ``mixed``, or ``no runs``.

    Example:
        >>> trained_verdict({"label": "A", "seeds": [0, 1, 2], "test_acc": [0.1, 0.1, 0.1013]}, chance=0.1).status
        'did not train'
        >>> trained_verdict({"label": "B", "seeds": [], "test_acc": [], "diverged": [{"seed": 0, "epoch": 10}]},
        ...                 chance=0.1).sentence
        'B: diverged in 1 of 1 runs (NaN/Inf loss, at epoch 10).'
    """
    label = p.get("label", "?")
    acc = [a for a in p.get("test_acc", []) if a is not None and math.isfinite(a)]
    div = p.get("diverged", [])
    n = len(acc) + len(div)
    up = sum(a > chance + margin for a in acc)
    data = {"runs": n, "diverged": len(div), "trained": up, "at_chance": len(acc) - up, "chance": chance}
    if n == 0:
        return Verdict("no runs", f"{label}: no runs.", data)
    accs = f"test accuracy {fmt(summarize(acc), 4)}" if acc else ""
    epochs = ", ".join(str(d.get("epoch")) for d in div)
    if len(div) == n:
        return Verdict("diverged", f"{label}: diverged in {n} of {n} runs (NaN/Inf loss, at epoch"
                       f"{'s' if n > 1 else ''} {epochs}).", data)
    if not div and up == n:
        return Verdict("trained", f"{label}: trained in all {n} runs ({accs}; chance is {_par(chance)}).", data)
    if not div and up == 0:
        return Verdict("did not train", f"{label}: did not train in any of {n} runs ({accs}, within "
                       f"{_par(margin)} of chance, {_par(chance)}).", data)
    bits = []
    if div:
        bits.append(f"{len(div)} diverged (at epoch{'s' if len(div) > 1 else ''} {epochs})")
    if up:
        bits.append(f"{up} trained above chance")
    if len(acc) - up:
        bits.append(f"{len(acc) - up} stayed within {_par(margin)} of chance ({_par(chance)})")
    return Verdict("mixed", f"{label}: of {n} runs, {', '.join(bits)}" + (f"; {accs} over those that did not "
                   "diverge" if acc else "") + ".", data)


def gradient_decay_verdict(ratios: Sequence[float], predicted: float = 0.9 ** 20,
                           predicted_text: str = "(0.9)^20 ≈ 0.12", label: str = "") -> Verdict:
    """Do gradients at initialisation decay with depth as much as a heuristic predicts?

    ``ratios`` are, per run, the first hidden layer's gradient norm over the last one's. Rule,
    per run: ``ratio ≤ predicted`` decayed at least as predicted; otherwise not.

    ``status``: ``as predicted`` (every run), ``less than predicted`` (no run), ``mixed``,
    ``no runs``.

    Example:
        >>> gradient_decay_verdict([0.8, 1.1, 0.9], label="no skip, no BN").status
        'less than predicted'
    """
    r = [x for x in ratios if x is not None and math.isfinite(x)]
    who = f"{label}: " if label else ""
    if not r:
        return Verdict("no runs", f"{who}no gradient ratio measured.", {})
    k = sum(x <= predicted for x in r)
    s = fmt(summarize(r), 3)
    data = {"runs": len(r), "at_or_below": k, "predicted": predicted}
    if k == 0:
        return Verdict("less than predicted", f"{who}the first-to-last-layer gradient-norm ratio at "
                       f"initialisation, {s}, stayed above {predicted_text} in all {len(r)} runs: the "
                       "gradients did not decay with depth as the heuristic predicts.", data)
    if k == len(r):
        return Verdict("as predicted", f"{who}the first-to-last-layer gradient-norm ratio at initialisation, "
                       f"{s}, was at or below {predicted_text} in all {len(r)} runs: the gradients decayed with "
                       "depth at least as the heuristic predicts.", data)
    return Verdict("mixed", f"{who}the first-to-last-layer gradient-norm ratio at initialisation, {s}, was at "
                   f"or below {predicted_text} in {k} of {len(r)} runs.", data)


def association_verdict(r: Mapping, x: str, y: str, if_negative: str = "", if_positive: str = "") -> Verdict:
    """A rank correlation read against 0: ``r`` is :func:`landscape.correlation.kendall_tau`'s
    result (``tau``, bootstrap ``low``/``high``, ``n``; ``resampled`` and ``n_clusters`` when it
    records them — resample configurations, not seeds, when models share one).

    Rule: an association is stated only when the interval excludes 0. ``if_negative`` /
    ``if_positive`` add what the direction means (e.g. "more noise went with flatter minima").

    ``status``: ``negative``, ``positive``, ``none detected``, ``too few``.

    Example:
        >>> association_verdict({"tau": -0.5, "low": -0.8, "high": -0.2, "n": 18}, "η/B", "λ_max").sentence
        'λ_max fell as η/B grew (Kendall τ = -0.50 [-0.80, -0.20], 95 % bootstrap interval, n = 18 models).'
        >>> association_verdict({"tau": 0.1, "low": -0.3, "high": 0.5, "n": 18, "resampled": "configurations",
        ...                      "n_clusters": 6}, "η/B", "λ_max").sentence
        'No monotone association between η/B and λ_max was detectable (Kendall τ = 0.10 [-0.30, 0.50], 95 % bootstrap interval over configurations, n = 18 models in 6 configurations; the interval contains 0).'
    """
    tau, lo, hi, n = (r.get(k) for k in ("tau", "low", "high", "n"))
    if n is None or n < 3 or tau is None or not all(map(math.isfinite, (tau, lo, hi))):
        return Verdict("too few", f"{y} against {x}: too few models for a rank correlation (n = {n}).", dict(r))
    over = r.get("resampled")
    t = (f"Kendall τ = {tau:.2f} [{lo:.2f}, {hi:.2f}], 95 % bootstrap interval"
         + (f" over {over}" if over else "") + f", n = {n} models"
         + (f" in {r['n_clusters']} configurations" if over == "configurations" and r.get("n_clusters") else ""))
    if lo > 0:
        return Verdict("positive", f"{y} rose as {x} grew ({t})" + (f": {if_positive}" if if_positive else "") + ".",
                       dict(r))
    if hi < 0:
        return Verdict("negative", f"{y} fell as {x} grew ({t})" + (f": {if_negative}" if if_negative else "") + ".",
                       dict(r))
    return Verdict("none detected", f"No monotone association between {x} and {y} was detectable ({t}; "
                   "the interval contains 0).", dict(r))


def eos_verdict(o: Mapping, band: float = 0.2) -> Verdict:
    r"""The edge-of-stability reading of one full-batch gradient-descent run.

    ``o`` is :func:`landscape.dynamics.full_batch_gd`'s record (``eig_step``, ``lambda_max``,
    ``converged``, ``threshold`` = 2/η, ``lr``, ``step``, ``loss``, ``diverged``). Rule:

    * the *crossing step* is the first measured step with λ_max ≥ 2/η (an unconverged top Ritz
      value is a lower bound on λ_max, so a crossing it shows is real);
    * after it, λ_max *hovers* when the median of λ_max / (2/η) over the measurements from the
      crossing on lies within ``1 ± band``;
    * the loss *kept falling* when the last loss is below the loss at the crossing step.

    ``status``: ``edge of stability`` (crossed, hovered, loss kept falling), ``crossed, loss
    stalled`` (hovered, loss did not fall), ``crossed, stayed above`` / ``crossed, fell back``
    (median outside the band), ``diverged``, ``below threshold`` (every estimate converged and
    below 2/η), ``not established`` (below 2/η, but some estimates did not converge: lower bounds).

    Example (λ_max rising by 2 per 10 steps to 2/η = 20, crossing at step 90, then hovering):
        >>> lam = [2.0 + 2 * i for i in range(10)] + [20.5, 19.8, 20.3, 20.1]
        >>> o = {"lr": 0.1, "threshold": 20.0, "eig_step": [10 * i for i in range(14)], "lambda_max": lam,
        ...      "converged": [True] * 14, "step": list(range(131)), "loss": [2.3 - 0.01 * s for s in range(131)],
        ...      "diverged": False}
        >>> v = eos_verdict(o)
        >>> v.status, v.data["crossing_step"]
        ('edge of stability', 90)
    """
    lam = np.asarray(o["lambda_max"], dtype=float)
    steps = list(o["eig_step"])
    thr = float(o["threshold"])
    lr = o.get("lr", 2.0 / thr)
    loss = np.asarray(o["loss"], dtype=float)
    loss_steps = list(o.get("step", range(len(loss))))
    conv = list(o.get("converged", [True] * len(lam)))
    n_bad = sum(not c for c in conv)
    caveat = (f" ({n_bad} of {len(conv)} λ_max estimates did not converge: lower bounds)" if n_bad else "")
    head = f"At η = {_par(lr)} (2/η = {_par(thr)})"
    peak = float(np.nanmax(lam)) if len(lam) else float("nan")
    data = {"lr": lr, "threshold": thr, "peak": peak, "start": float(lam[0]) if len(lam) else float("nan"),
            "unconverged": n_bad}
    crossed = np.flatnonzero(lam >= thr)
    if o.get("diverged"):
        last = loss_steps[len(loss) - 1] if len(loss) else "?"
        at = f"; λ_max first reached 2/η at step {steps[crossed[0]]}" if len(crossed) else ""
        return Verdict("diverged", f"{head} gradient descent diverged at step {last}{at}{caveat}.",
                       data | {"crossing_step": steps[crossed[0]] if len(crossed) else None})
    if not len(crossed):
        went = (f"{head} λ_max went from {fmt_value(data['start'])} to a peak of {fmt_value(peak)} "
                f"({100 * peak / thr:.0f} % of 2/η) in {loss_steps[-1]} steps")
        if n_bad:  # an unconverged estimate is a lower bound: staying below is not established
            return Verdict("not established", f"{went}, but {n_bad} of {len(conv)} estimates did not converge and "
                           "are only lower bounds on λ_max: whether it reached the stability threshold is not "
                           "established.", data | {"crossing_step": None})
        return Verdict("below threshold", f"{went} without reaching the stability threshold: no edge of stability "
                       "within this budget.", data | {"crossing_step": None})
    i = int(crossed[0])
    s_cross = steps[i]
    after = lam[i:]
    rel = float(np.median(after)) / thr
    loss_at = float(loss[loss_steps.index(s_cross)]) if s_cross in loss_steps else float(loss[0])
    rises = int(np.sum(np.diff(loss[loss_steps.index(s_cross):] if s_cross in loss_steps else loss) > 0))
    n_after = len(loss) - 1 - (loss_steps.index(s_cross) if s_cross in loss_steps else 0)
    falling = float(loss[-1]) < loss_at
    data |= {"crossing_step": s_cross, "median_ratio": rel, "loss_at_crossing": loss_at,
             "loss_end": float(loss[-1]), "loss_rises_after": rises, "steps_after": n_after}
    rise = (f"λ_max rose from {fmt_value(data['start'])} to 2/η by step {s_cross}" if i > 0
            else f"λ_max was already at or above 2/η at step {s_cross} ({fmt_value(data['start'])})")
    stay = (f"its median from then on was {rel:.2f} × 2/η over {len(after)} measurements "
            f"(peak {fmt_value(peak)})")
    if abs(rel - 1) <= band:
        if falling:
            return Verdict("edge of stability", f"{head} {rise} and then hovered at it — {stay} — while the "
                           f"loss kept falling, from {fmt_value(loss_at)} to {fmt_value(float(loss[-1]))}, rising "
                           f"on {rises} of {n_after} steps: the edge of stability{caveat}.", data)
        return Verdict("crossed, loss stalled", f"{head} {rise} and hovered at it — {stay} — but the loss did "
                       f"not fall further ({fmt_value(loss_at)} at the crossing, {fmt_value(float(loss[-1]))} at the "
                       f"end){caveat}.", data)
    status = "crossed, stayed above" if rel > 1 else "crossed, fell back"
    where = "stayed well above it" if rel > 1 else "fell back well below it"
    return Verdict(status, f"{head} {rise} and then {where} — {stay}, outside 1 ± {band:g} — with the loss "
                   f"going from {fmt_value(loss_at)} to {fmt_value(float(loss[-1]))}{caveat}.", data)
