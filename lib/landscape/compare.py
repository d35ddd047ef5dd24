r"""Comparing configurations: the difference a write-up claims, its interval, and the seeds a
resolution would need; and one configuration's measure shown with what it needs to be read.

**Unit.** The seeds of one configuration are its replicates; two configurations are compared
through the difference of their seed means,

.. math:: \hat\Delta = \bar a - \bar b, \qquad
          \mathrm{se} = \sqrt{s_a^2/n_a + s_b^2/n_b},

with a **Welch t interval** :math:`\hat\Delta \pm t_{1-\alpha/2,\nu}\,\mathrm{se}` (unequal
variances; Welch–Satterthwaite degrees of freedom
:math:`\nu = \mathrm{se}^4 / \big(\tfrac{(s_a^2/n_a)^2}{n_a-1} + \tfrac{(s_b^2/n_b)^2}{n_b-1}\big)`).
A claim about one configuration against a fixed value (a barrier above 0) uses the one-sample t
interval. The difference *resolves* when its interval excludes 0.

**Seeds needed.** Where it does not, :func:`seeds_needed` says how many seeds per configuration
would give a two-sided 5 % Welch test 80 % power against a true difference equal to the one
observed, at the observed standard deviations (exact, through the noncentral t distribution;
:func:`seeds_needed_normal` is the closed-form normal approximation
:math:`n = (z_{1-\alpha/2} + z_{1-\beta})^2 (s_a^2 + s_b^2) / \Delta^2`). It is a planning figure
computed from noisy estimates — a post-hoc power analysis at the observed effect — not a promise.

**Reading a measure** (:func:`measure_cell`): a Lanczos eigenvalue is shown with its solver's
``converged`` flag and residual (an unconverged top Ritz value is only a lower bound on
:math:`\lambda_{\max}`, a bottom one an upper bound on :math:`\lambda_{\min}`); the count of
negative eigenvalues among the ``k`` computed is a lower bound, ``≥ min(count, k)``; SAM sharpness
is shown beside its first-order term :math:`\rho\lVert g\rVert` (when
:math:`\lVert g\rVert \gtrsim \rho\lambda_{\max}` the number measures the gradient, not the
curvature: see :mod:`landscape.probes.sharpness`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Mapping, Sequence

import numpy as np
from scipy import stats as _st

from .stats import fmt, fmt_count, fmt_pm, fmt_value, summarize

__all__ = ["Difference", "welch_difference", "one_sample_difference", "power_difference",
           "seeds_needed", "seeds_needed_normal", "fmt_seeds", "fmt_difference", "Claim", "WRITEUP_CLAIMS",
           "claims_for", "ClaimResult", "compare_claim", "count_caps", "unconverged_seeds",
           "convergence_note", "measure_cell", "criterion_cell", "subset_cell", "study_table",
           "measure_names", "MEASURE_DIGITS"]

EIGENVALUE_MEASURES = ("lambda_max", "lambda_min")  # from the Lanczos run whose flags are `converged`
LOWER_BOUND_COUNTS = ("n_negative",)                # certified negative among the k computed
# significant digits of a value printed without an interval (fewer than three seeds)
MEASURE_DIGITS = {"lambda_max": 3, "lambda_min": 3, "trace": 3, "grad_ratio_init": 3, "grad_norm": 3}


def _finite(values: Sequence[float] | None) -> np.ndarray:
    vals = np.asarray([np.nan if v is None else v for v in (() if values is None else values)], dtype=float)
    return vals[np.isfinite(vals)]


# ----------------------------------------------------------------------------------- differences


@dataclass(frozen=True)
class Difference:
    """``mean(a) − mean(b)`` (or ``mean(a) − reference`` when ``n_b == 0``) with its interval.

    ``half_width`` is NaN when either side has fewer than two seeds; ``seeds_needed`` is the
    number of seeds per configuration for ``power`` at two-sided level ``1 − level`` (NaN when
    not computable, ``inf`` when no number would do: an observed difference of 0).
    """

    estimate: float
    half_width: float
    df: float
    n_a: int
    n_b: int
    sd_a: float
    sd_b: float
    level: float = 0.95
    method: str = "Welch t"
    power: float = 0.8
    seeds_needed: float = float("nan")
    reference: float | None = None

    @property
    def low(self) -> float:
        return self.estimate - self.half_width

    @property
    def high(self) -> float:
        return self.estimate + self.half_width

    @property
    def resolved(self) -> bool:
        """The interval exists and excludes 0."""
        return bool(math.isfinite(self.half_width) and (self.low > 0 or self.high < 0))

    @property
    def sign(self) -> int:
        """+1 / −1 where resolved, else 0."""
        return (1 if self.low > 0 else -1) if self.resolved else 0


def welch_difference(a: Sequence[float], b: Sequence[float], level: float = 0.95,
                     power: float = 0.8) -> Difference:
    r"""Difference of two configurations' seed means with a Welch t interval.

    .. math:: \bar a - \bar b \pm t_{1-\alpha/2,\,\nu}\sqrt{s_a^2/n_a + s_b^2/n_b}

    Non-finite values (diverged runs) are left out. Also computes :func:`seeds_needed` at the
    observed difference and standard deviations.

    Example:
        >>> d = welch_difference([1.0, 2.0, 3.0], [4.0, 5.0, 6.0, 7.0])
        >>> d.estimate, round(d.half_width, 3), round(d.df, 2), d.resolved
        (-3.5, 2.232, 4.96, True)
    """
    x, y = _finite(a), _finite(b)
    na, nb = len(x), len(y)
    est = float(x.mean() - y.mean()) if na and nb else float("nan")
    sa = float(x.std(ddof=1)) if na > 1 else float("nan")
    sb = float(y.std(ddof=1)) if nb > 1 else float("nan")
    if na < 2 or nb < 2:
        return Difference(est, float("nan"), float("nan"), na, nb, sa, sb, level, "Welch t", power)
    va, vb = sa ** 2 / na, sb ** 2 / nb
    se = math.sqrt(va + vb)
    if se == 0:
        df, hw = float("inf"), 0.0
    else:
        df = (va + vb) ** 2 / (va ** 2 / (na - 1) + vb ** 2 / (nb - 1))
        hw = float(_st.t.ppf(0.5 + level / 2, df)) * se
    need = seeds_needed(est, sa, sb, alpha=1 - level, power=power)
    return Difference(est, hw, df, na, nb, sa, sb, level, "Welch t", power, need)


def one_sample_difference(a: Sequence[float], reference: float = 0.0, level: float = 0.95,
                          power: float = 0.8) -> Difference:
    r"""One configuration's seed mean against a fixed ``reference``: a one-sample t interval.

    .. math:: \bar a - r \pm t_{1-\alpha/2,\,n-1}\, s/\sqrt n

    Example:
        >>> d = one_sample_difference([0.2, 0.4, 0.3], reference=0.0)
        >>> round(d.estimate, 3), round(d.half_width, 3), d.resolved, d.n_b
        (0.3, 0.248, True, 0)
    """
    x = _finite(a)
    n = len(x)
    est = float(x.mean() - reference) if n else float("nan")
    s = float(x.std(ddof=1)) if n > 1 else float("nan")
    if n < 2:
        return Difference(est, float("nan"), float("nan"), n, 0, s, float("nan"), level, "one-sample t",
                          power, reference=reference)
    hw = float(_st.t.ppf(0.5 + level / 2, n - 1)) * s / math.sqrt(n) if s > 0 else 0.0
    need = seeds_needed(est, s, None, alpha=1 - level, power=power)
    return Difference(est, hw, n - 1, n, 0, s, float("nan"), level, "one-sample t", power, need, reference)


def power_difference(delta: float, sd_a: float, sd_b: float | None, n: int, alpha: float = 0.05) -> float:
    r"""Power of the two-sided level-``alpha`` t test with ``n`` seeds per configuration.

    Two configurations (``sd_b`` given): Welch's test, noncentrality
    :math:`\delta/\sqrt{(s_a^2+s_b^2)/n}` and :math:`\nu = (n-1)(s_a^2+s_b^2)^2/(s_a^4+s_b^4)`
    (``2n − 2`` for equal variances, the pooled t test). One configuration against a value
    (``sd_b=None``): noncentrality :math:`\delta\sqrt n/s_a`, :math:`\nu = n - 1`. Power is
    :math:`P(|T| > t_{1-\alpha/2,\nu})` for :math:`T` noncentral t.

    Example (a difference of one standard deviation, 17 seeds each: the textbook 80 %):
        >>> round(power_difference(1.0, 1.0, 1.0, 17), 3)
        0.807
    """
    if n < 2:
        return float("nan")
    if sd_b is None:
        var, df = sd_a ** 2, n - 1
        se = math.sqrt(var / n)
    else:
        var = sd_a ** 2 + sd_b ** 2
        se = math.sqrt(var / n)
        df = (n - 1) * var ** 2 / (sd_a ** 4 + sd_b ** 4) if var > 0 else float("inf")
    if se == 0:
        return 1.0 if delta != 0 else alpha
    ncp = abs(delta) / se
    crit = float(_st.t.ppf(1 - alpha / 2, df))
    return float(_st.nct.sf(crit, df, ncp) + _st.nct.cdf(-crit, df, ncp))


def seeds_needed_normal(delta: float, sd_a: float, sd_b: float | None = None, alpha: float = 0.05,
                        power: float = 0.8) -> float:
    r"""Closed-form (normal) seeds per configuration for ``power`` at two-sided ``alpha``.

    .. math:: n = \Big\lceil (z_{1-\alpha/2} + z_{\mathrm{power}})^2\,(s_a^2 + s_b^2) / \delta^2 \Big\rceil

    (:math:`s_b = 0` for one configuration against a value). ``inf`` for ``delta = 0``.

    Example:
        >>> seeds_needed_normal(1.0, 1.0, 1.0), seeds_needed_normal(0.5, 1.0, 1.0)
        (16, 63)
    """
    if not math.isfinite(delta) or delta == 0:
        return math.inf
    var = sd_a ** 2 + (0.0 if sd_b is None else sd_b ** 2)
    z = _st.norm.ppf(1 - alpha / 2) + _st.norm.ppf(power)
    return int(math.ceil(z ** 2 * var / delta ** 2 - 1e-9))


def seeds_needed(delta: float, sd_a: float, sd_b: float | None = None, alpha: float = 0.05,
                 power: float = 0.8) -> float:
    """Smallest seeds per configuration (at least 2) whose t test reaches ``power`` against a
    true difference ``delta`` at standard deviations ``sd_a``, ``sd_b`` (:func:`power_difference`).

    Starts from :func:`seeds_needed_normal` (which underestimates by one or two) and steps up.
    ``inf`` for ``delta = 0``; NaN when a standard deviation is not finite.

    Example (Cohen's tables: effect sizes 0.5 and 0.8 need 64 and 26 per group):
        >>> seeds_needed(0.5, 1.0, 1.0), seeds_needed(0.8, 1.0, 1.0), seeds_needed(0.0, 1.0, 1.0)
        (64, 26, inf)
    """
    if not (math.isfinite(sd_a) and (sd_b is None or math.isfinite(sd_b))) or not math.isfinite(delta):
        return float("nan")
    if delta == 0:
        return math.inf
    n = max(2, seeds_needed_normal(delta, sd_a, sd_b, alpha, power))
    if n > 5000:  # the t and normal answers agree to well under 0.1 % there
        return n
    while n > 2 and power_difference(delta, sd_a, sd_b, n - 1, alpha) >= power:
        n -= 1
    while power_difference(delta, sd_a, sd_b, n, alpha) < power:
        n += 1
    return n


def fmt_seeds(n: float) -> str:
    """Seeds per configuration as a planning figure: two significant digits from 100 on, ``—``
    when not computable, ``∞`` when no number would do.

    Example:
        >>> fmt_seeds(17), fmt_seeds(191), fmt_seeds(14129), fmt_seeds(float("inf")), fmt_seeds(float("nan"))
        ('17', '190', '14,000', '∞', '—')
    """
    if n != n:
        return "—"
    if not math.isfinite(n):
        return "∞"
    n = int(n)
    return f"{int(float(f'{n:.2g}')) if n >= 100 else n:,}"


def fmt_difference(d: Difference) -> str:
    """``Δ ± half-width`` at the interval's precision, with the method and the seeds used.

    Example:
        >>> fmt_difference(welch_difference([88.0, 260.0, -82.0], [10.0, 30.0, 20.0]))
        '+70 ± 420 (Welch t 95% CI, n = 3 vs 3)'
        >>> fmt_difference(welch_difference([0.851, 0.853, 0.848], [0.80, 0.83, 0.79]))
        '+0.044 ± 0.051 (Welch t 95% CI, n = 3 vs 3)'
    """
    if not math.isfinite(d.estimate):
        return "n/a"
    who = f"n = {d.n_a}" if d.n_b == 0 else f"n = {d.n_a} vs {d.n_b}"
    if not math.isfinite(d.half_width):
        return f"{'+' if d.estimate > 0 else ''}{fmt_value(d.estimate)} (no interval: {who})"
    text = fmt_pm(d.estimate, d.half_width)
    if d.estimate > 0 and not text.startswith(("0 ", "(")):
        text = "+" + text
    return f"{text} ({d.method} {int(round(d.level * 100))}% CI, {who})"


# ---------------------------------------------------------------------------------------- claims


@dataclass(frozen=True)
class Claim:
    """One comparison a write-up asserts: ``measure`` of configuration ``a`` is ``direction``
    ("greater" or "less") than that of ``b`` (or, with ``b=None``, than ``reference``).

    ``key`` names it (glue key ``claim_<key>``); ``text`` is the write-up's claim in a few words,
    with its own numbers.
    """

    key: str
    measure: str
    a: str
    b: str | None
    direction: str
    text: str
    reference: float = 0.0

    def __post_init__(self) -> None:
        if self.direction not in ("greater", "less"):
            raise ValueError(f"Claim {self.key}: direction = {self.direction!r} is not one of: greater, less")


# The write-ups' comparisons between configurations (../shared/studies/<source>), one entry per
# claim that our configurations can test. The sign is the write-up's: "greater" means it says
# the measure of `a` exceeds that of `b`.
WRITEUP_CLAIMS: dict[str, tuple[Claim, ...]] = {
    "fmnist-batchnorm": (
        Claim("bn_lambda_max", "lambda_max", "bn", "nobn", "greater",
              "BN gives higher curvature: λ_max 57.18 with BN against 37.51 without"),
        Claim("bn_sharpness_sam", "sharpness_sam", "bn", "nobn", "greater",
              "BN is sharper: SAM-style sharpness 0.1837 against 0.0886"),
        Claim("bn_test_acc", "test_acc", "bn", "nobn", "greater",
              "BN improves generalisation (test accuracy)"),
        Claim("bn_barrier", "barrier_loss", "bn", None, "greater",
              "a loss barrier separates the two BN minima A1 and A2 (distinct basins)"),
    ),
    "mnist-width-optimizer-sweep": (
        Claim("momentum_cnn_lambda_max", "lambda_max", "cnn-32-sgd", "cnn-32", "greater",
              "momentum collapses the CNN's curvature from about 118 (plain SGD) to about 17"),
        Claim("adam_cnn_lambda_max", "lambda_max", "cnn-32-adam", "cnn-32", "greater",
              "Adam's CNN minimum is sharper than momentum's"),
        Claim("sgd_adam_cnn_lambda_max", "lambda_max", "cnn-32-sgd", "cnn-32-adam", "greater",
              "Adam's CNN minimum is flatter than plain SGD's"),
        Claim("momentum_mlp_lambda_max", "lambda_max", "mlp-128-sgd", "mlp-128", "greater",
              "plain SGD finds the sharpest MLP minima, momentum the flattest"),
        Claim("momentum_mlp_test_acc", "test_acc", "mlp-128", "mlp-128-sgd", "greater",
              "momentum gives the MLP its best accuracy"),
        Claim("width_32_128_lambda_max", "lambda_max", "mlp-32", "mlp-128", "greater",
              "the top eigenvalue falls as an MLP widens (width 32 against 128)"),
        Claim("width_128_512_lambda_max", "lambda_max", "mlp-128", "mlp-512", "greater",
              "the top eigenvalue falls as an MLP widens (width 128 against 512, our addition)"),
        Claim("cnn_mlp_test_acc", "test_acc", "cnn-32", "mlp-128", "greater",
              "CNNs reach better minima than MLPs (test accuracy)"),
    ),
    "cnn-vs-resnet": (
        Claim("resnet_sharpness_sam", "sharpness_sam", "cnn", "resnet", "greater",
              "the ResNet is 18× flatter: SAM sharpness 0.0717 (CNN) against 0.0013 (ResNet)"),
        Claim("resnet_test_acc", "test_acc", "resnet", "cnn", "greater",
              "the ResNet generalises better: test accuracy 90.42 % against 82.43 %"),
        Claim("resnet_lambda_min", "lambda_min", "resnet", "cnn", "less",
              "the ResNet's λ_min is 3× more negative: −283.34 against −95.48"),
        Claim("resnet_n_negative", "n_negative", "cnn", "resnet", "greater",
              "the CNN has more negative eigenvalues (9 against 6 of 15): more saddle directions"),
    ),
    "resnet20-skip-bn-ablation": (
        Claim("skip_lambda_max", "lambda_max", "noskip-bn", "skip-bn", "greater",
              "removing skips raises the top eigenvalue 13×: 90.58 against 6.96"),
        Claim("skip_test_acc", "test_acc", "skip-bn", "noskip-bn", "greater",
              "skips with BN reach the better test accuracy: 85.05 % against 84.51 %"),
        Claim("skip_grad_norm", "grad_norm", "noskip-bn", "skip-bn", "greater",
              "without skips the gradient norm at the end is 5× larger: 1.045 against 0.219"),
        Claim("noskip_nobn_test_acc", "test_acc", "skip-bn", "noskip-nobn", "greater",
              "without skips or BN the network does not train: 10.00 % against 85.05 %"),
    ),
}


def claims_for(study: str) -> tuple[Claim, ...]:
    """The write-up claims registered for ``study`` (empty for a study without a write-up)."""
    return WRITEUP_CLAIMS.get(study, ())


def count_caps(p: Mapping) -> list[int | None]:
    """Per run, the most negative eigenvalues a run could certify: ``top_k`` when the artefact
    records it, else the length of that run's ``bottom`` list, else None."""
    n = len(p.get("seeds", []))
    if p.get("top_k") is not None:
        return [int(p["top_k"])] * n
    bottom = p.get("bottom")
    if bottom is not None:
        return [len(b) for b in bottom]
    return [None] * n


def unconverged_seeds(p: Mapping) -> list:
    """Seeds whose Lanczos run did not converge (``converged`` False); none when not recorded."""
    conv = p.get("converged")
    if conv is None:
        return []
    return [s for s, c in zip(p.get("seeds", []), conv) if not c]


@dataclass(frozen=True)
class ClaimResult:
    """A claim against our runs: the difference (None when the measure is missing, or counts
    sit at their cap so no order can be read), and what qualifies it."""

    claim: Claim
    difference: Difference | None
    label_a: str
    label_b: str | None
    measured: bool = True
    capped: tuple[str, ...] = ()          # labels of configurations whose counts sit at their cap
    unconverged: dict = field(default_factory=dict)  # label -> seeds whose Lanczos did not converge
    diverged: dict = field(default_factory=dict)     # label -> number of runs that diverged


def compare_claim(claim: Claim, P: Mapping[str, Mapping], level: float = 0.95, power: float = 0.8) -> ClaimResult:
    """Test ``claim`` on the per-configuration artefacts ``P`` (config → probes dict).

    Returns the Welch difference ``a − b`` (one-sample ``a − reference`` when ``b`` is None) of
    the claim's measure over seeds. A lower-bound count (``n_negative``) is not compared when any
    run of either configuration sits at its cap (both are then only "≥ k"). Unconverged Lanczos
    runs and diverged runs are recorded beside the difference.

    Example:
        >>> P = {"x": {"label": "X", "seeds": [0, 1, 2], "m": [1.0, 1.1, 0.9]},
        ...      "y": {"label": "Y", "seeds": [0, 1, 2], "m": [2.0, 2.2, 1.8]}}
        >>> r = compare_claim(Claim("k", "m", "y", "x", "greater", "Y above X"), P)
        >>> round(r.difference.estimate, 6), r.difference.resolved
        (1.0, True)
    """
    names = [claim.a] + ([claim.b] if claim.b is not None else [])
    ps = [P.get(c, {}) for c in names]
    labels = [p.get("label", c) for c, p in zip(names, ps)]
    label_b = labels[1] if claim.b is not None else None
    diverged = {lab: len(p.get("diverged", [])) for lab, p in zip(labels, ps) if p.get("diverged")}
    if any(claim.measure not in p for p in ps):
        return ClaimResult(claim, None, labels[0], label_b, measured=False, diverged=diverged)
    unconv = {}
    if claim.measure in EIGENVALUE_MEASURES + LOWER_BOUND_COUNTS:
        unconv = {lab: unconverged_seeds(p) for lab, p in zip(labels, ps) if unconverged_seeds(p)}
    if claim.measure in LOWER_BOUND_COUNTS:
        capped = tuple(lab for lab, p in zip(labels, ps)
                       if any(k is not None and v is not None and v >= k
                              for v, k in zip(p[claim.measure], count_caps(p))))
        if capped:
            return ClaimResult(claim, None, labels[0], label_b, capped=capped, unconverged=unconv, diverged=diverged)
    vals = [p[claim.measure] for p in ps]
    if claim.b is None:
        d = one_sample_difference(vals[0], claim.reference, level, power)
    else:
        d = welch_difference(vals[0], vals[1], level, power)
    return ClaimResult(claim, d, labels[0], label_b, unconverged=unconv, diverged=diverged)


# ------------------------------------------------------------------------------ reading a measure


def _seeds_text(seeds: Sequence) -> str:
    return ("seed " if len(seeds) == 1 else "seeds ") + ", ".join(str(s) for s in seeds)


def _max_text(values: Sequence[float] | None) -> str | None:
    v = _finite(values)
    return None if not len(v) else f"{float(v.max()):.1g}"


def convergence_note(p: Mapping) -> str:
    """Lanczos ``converged`` and the largest residual of the wanted Ritz pairs, over the runs.

    An unconverged run is marked ``†`` and named: its top Ritz value is only a lower bound on
    λ_max and its bottom one an upper bound on λ_min (Ritz values lie inside the spectrum).

    Example:
        >>> convergence_note({"seeds": [0, 1, 2], "converged": [True, True, True], "residual": [1e-4, 3e-4, 2e-5]})
        'Lanczos converged 3 of 3, residual ≤ 0.0003'
        >>> convergence_note({"seeds": [0, 1], "converged": [True, False], "residual": [1e-4, 0.2]})
        'Lanczos converged 1 of 2, residual ≤ 0.2; † not converged: seed 1 (a bound only)'
    """
    conv = p.get("converged")
    if conv is None:
        return "Lanczos convergence not recorded"
    res = _max_text(p.get("residual"))
    text = f"Lanczos converged {sum(bool(c) for c in conv)} of {len(conv)}"
    text += f", residual ≤ {res}" if res is not None else ", residual not recorded"
    bad = unconverged_seeds(p)
    if bad:
        text += f"; † not converged: {_seeds_text(bad)} (a bound only)"
    return text


def _grad_dominated(p: Mapping, rho: float | None) -> tuple[int, int]:
    """Runs where ``‖g‖ ≥ ρ λ_max`` (the first-order term of SAM sharpness dominates), of those
    with both recorded."""
    g, lam = p.get("grad_norm"), p.get("lambda_max")
    if rho is None or g is None or lam is None or len(g) != len(lam):
        return 0, 0
    pairs = [(a, b) for a, b in zip(g, lam) if a is not None and b is not None
             and math.isfinite(a) and math.isfinite(b)]
    return sum(a >= rho * b for a, b in pairs), len(pairs)


def measure_cell(p: Mapping, key: str, rho: float | None = None, digits: int | None = None) -> str:
    """One configuration's ``key`` over its seeds, with what it needs beside it to be read.

    * every measure: :func:`landscape.stats.fmt` (mean ± 95 % t-interval at its precision, or
      the runs for n < 3), ``digits`` significant digits without an interval (default
      :data:`MEASURE_DIGITS`, else 4);
    * ``lambda_max``, ``lambda_min``: plus :func:`convergence_note`;
    * ``n_negative``: ``≥ min(count, k)`` per run (:func:`landscape.stats.fmt_count`), with the
      runs that did not converge (they certify no sign);
    * ``sharpness_sam``: plus ``ρ‖g‖`` (``sam_first_order``, else ``rho × grad_norm``) and the
      number of runs where ``‖g‖ ≥ ρ λ_max``;
    * ``sharpness_random``, ``trace``: plus the largest per-run standard error of the estimator
      (``sharpness_random_stderr``, ``trace_stderr``).

    Example:
        >>> p = {"seeds": [0, 1, 2], "lambda_max": [88.6, 260.0, -82.0], "converged": [True, False, True],
        ...      "residual": [0.01, 4.0, 0.02], "n_negative": [3, 3, 2], "top_k": 3}
        >>> measure_cell(p, "lambda_max")
        '90 ± 420 (n=3, 95% CI) · Lanczos converged 2 of 3, residual ≤ 4; † not converged: seed 1 (a bound only)'
        >>> measure_cell(p, "n_negative")
        '≥ 3 / ≥ 3 / ≥ 2 (n=3), among k = 3 computed · † seed 1 did not converge: certifies no sign'
    """
    vals = p.get(key)
    if vals is None:
        return "—"
    d = digits if digits is not None else MEASURE_DIGITS.get(key, 4)
    if key in LOWER_BOUND_COUNTS:
        caps = count_caps(p)
        text = fmt_count(vals, caps, lower_bound=True)
        ks = sorted({k for k in caps if k is not None})
        if ks:
            text += f", among k = {'/'.join(str(k) for k in ks)} computed"
        bad = unconverged_seeds(p)
        if bad:
            text += f" · † {_seeds_text(bad)} did not converge: certifies no sign"
        return text
    text = fmt(summarize(vals), d)
    if key in EIGENVALUE_MEASURES:
        return f"{text} · {convergence_note(p)}"
    if key == "sharpness_sam":
        first = p.get("sam_first_order")
        if first is None and rho is not None and p.get("grad_norm") is not None:
            first = [rho * g for g in p["grad_norm"]]
        text += " · ρ‖g‖ = " + (fmt(summarize(first), d) if first is not None else "not recorded")
        k, n = _grad_dominated(p, rho)
        if n:
            text += (f" · ‖g‖ ≥ ρλ_max in {k} of {n} runs: there it measures the gradient, not curvature"
                     if k else f" · ‖g‖ < ρλ_max in all {n} runs")
        return text
    if key in ("sharpness_random", "trace"):  # estimators with a per-run standard error
        se = _max_text(p.get(f"{key}_stderr"))
        return text + (f" · {'Monte Carlo' if key == 'sharpness_random' else 'estimator'} s.e. ≤ {se}"
                       if se is not None else "")
    return text


def criterion_cell(p: Mapping) -> str:
    """Whether each run reached its training criterion, and after how many epochs.

    Example:
        >>> criterion_cell({"seeds": [0, 1, 2], "criterion_reached": [True, True, False], "epochs_trained": [4, 5, 6]})
        'reached in 2 of 3 runs; epochs trained: 4 / 5 / 6 (n=3)'
        >>> criterion_cell({"seeds": [0], "diverged": [{"seed": 1, "epoch": 10}]})
        'not recorded; 1 run diverged'
    """
    reached = p.get("criterion_reached")
    epochs = p.get("epochs_trained")
    n_div = len(p.get("diverged", []))
    div = f"; {n_div} run{'s' if n_div != 1 else ''} diverged" if n_div else ""
    if reached is None:
        return "not recorded" + div
    text = f"reached in {sum(bool(r) for r in reached)} of {len(reached)} runs"
    if epochs is not None:
        text += f"; epochs trained: {fmt_count(epochs)}"
    return text + div


def subset_cell(p: Mapping) -> str:
    """The probe and Hessian subset sizes (training examples) the measures used: the artefact's
    top-level ``probe_subset`` / ``hessian_subset``, else its provenance's ``eval_subset`` /
    ``hessian_subset``.

    Example:
        >>> subset_cell({"probe_subset": 500, "hessian_subset": 256}), subset_cell({})
        ('probes 500, Hessian 256', 'not recorded')
    """
    prov = p.get("provenance") or {}
    probe = p.get("probe_subset", prov.get("eval_subset"))
    hess = p.get("hessian_subset", prov.get("hessian_subset"))
    if probe is None and hess is None:
        return "not recorded"
    return f"probes {probe if probe is not None else '?'}, Hessian {hess if hess is not None else '?'}"


def _published_text(v) -> str:
    return "NaN" if v != v else f"{v:g}"


def study_table(P: Mapping[str, Mapping], published: Mapping[str, Mapping], rho: float | None,
                measures: Mapping[str, str] | None = None) -> list[dict]:
    """The rows of a study's table: per measure, each configuration's :func:`measure_cell` and
    the write-up's number beside it.

    Rows: every measure of ``measures`` (default :func:`measure_names`) that some configuration
    or the write-up has, then the training criterion (:func:`criterion_cell`) and the subset
    sizes (:func:`subset_cell`). Each row is ``{"key", "measure", "cells": {config: ours},
    "shown": {config: ours + " · write-up: …"}}``; measures the write-up defined unsoundly
    (``kappa``) read "not meaningful" on our side.

    Example:
        >>> P = {"a": {"label": "A", "seeds": [0, 1], "test_acc": [0.81, 0.83]}}
        >>> [(r["key"], r["shown"]["a"]) for r in study_table(P, {"a": {"test_acc": 0.9}}, 0.05)][:1]
        [('test_acc', '0.8100 / 0.8300 (n=2) · write-up: 0.9')]
    """
    measures = dict(measures or measure_names(rho))
    rows = []
    for key, name in measures.items():
        if not any(key in p or key in published.get(c, {}) for c, p in P.items()):
            continue
        cells = {}
        for c, p in P.items():
            if key == "diverged_epoch":
                cells[c] = ", ".join(f"seed {d['seed']}: epoch {d['epoch']}" for d in p.get("diverged", [])) \
                    or "none diverged"
            elif key == "kappa":
                cells[c] = "not meaningful (see λ_min)"
            else:
                cells[c] = measure_cell(p, key, rho=rho)
        rows.append({"key": key, "measure": name, "cells": cells})
    rows.append({"key": "criterion", "measure": "training criterion reached",
                 "cells": {c: criterion_cell(p) for c, p in P.items()}})
    rows.append({"key": "subsets", "measure": "subsets measured on (training examples)",
                 "cells": {c: subset_cell(p) for c, p in P.items()}})
    for r in rows:
        r["shown"] = {c: text + ("" if published.get(c, {}).get(r["key"]) is None
                                 else f" · write-up: {_published_text(published[c][r['key']])}")
                      for c, text in r["cells"].items()}
    return rows


def measure_names(rho: float | None = None) -> dict[str, str]:
    """Table names of the measures a study summary shows, in order (``rho`` is the sharpness radius)."""
    r = "?" if rho is None else f"{rho:g}"
    return {
        "test_acc": "test accuracy (fraction)",
        "gen_gap": "generalisation gap (test − train loss, nats)",
        "lambda_max": "λ_max, top Hessian eigenvalue",
        "lambda_min": "λ_min, bottom Hessian eigenvalue",
        "n_negative": "negative eigenvalues certified among the computed (a lower bound)",
        "trace": "tr H (Hutch++)",
        "grad_norm": "‖g‖, full-batch gradient norm at the end point",
        "sharpness_sam": f"SAM sharpness, ρ = {r} (nats), beside its first-order term ρ‖g‖",
        "sharpness_adaptive": f"adaptive sharpness, ρ = {r} (nats)",
        "sharpness_random": f"random-perturbation sharpness, ρ = {r} (nats)",
        "sharpness_keskar": "Keskar ε-sharpness (%)",
        "barrier_loss": "interpolation barrier (loss, nats)",
        "barrier_error": "interpolation barrier (error)",
        "grad_ratio_init": "gradient norm first / last hidden layer at init",
        "kappa": "condition number κ",
        "diverged_epoch": "diverged at epoch",
    }
