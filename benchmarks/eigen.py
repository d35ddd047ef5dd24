"""Benchmark 2: the top Hessian eigenvalue to 1e-3 relative accuracy — Hessian-vector products
(HVPs) and time.

All methods multiply by the *same* operator, ``landscape.probes.HessianOperator`` (exact double
backward, sample-weighted batches, model in eval mode), so only the eigensolvers differ:

* ours: ``hessian_eigenvalues(k=1)`` with its defaults (Lanczos with full reorthogonalisation,
  stop at relative residual 1e-6, at most 100 HVPs). It is run through the library's own
  ``lanczos`` engine with a recording operator (the same call ``hessian_eigenvalues`` makes; the
  harness checks both give identical results on the MLP), so that we also learn after how many
  HVPs its Ritz value was first within 1e-3 of the reference.
* power iteration with PyHessian's defaults, written here from its description: Gaussian start,
  ``v <- Hv/||Hv||``, Rayleigh quotient ``v.Hv``, at most 100 iterations, stop when the relative
  change of the estimate is below 1e-3 (PyHessian then returns the previous estimate). We record
  both where that rule stops and, with the reference known, the first iteration whose estimate
  is really within 1e-3 ("oracle" stop, the most favourable stop power iteration could have).
* hessian-eigenthings ``lanczos(operator, k=1)`` with its defaults (2 Lanczos steps, which="LM").

Reference: ours run to ``tol=1e-10``. The repeats use different random start vectors
(seed = repeat index) for every method.
"""
from __future__ import annotations

import time

import numpy as np
import torch

import landscape as ls
from landscape.data import Batches
from landscape.probes import HessianOperator
from landscape.probes._common import probe_state
from landscape.probes.lanczos import lanczos

from .common import Row, interleave, med, spread, trained

PYHESSIAN_MAX_ITER = 100
PYHESSIAN_TOL = 1e-3
TARGET_ACCURACY = 1e-3
# Every method multiplies by HessianOperator(reuse_graph=True): the products are bit-identical to
# the default operator's (the same double backward on the same first-order graph; checked on the
# MLP against the public call), only cheaper per product, so counts and errors are those of the
# defaults and the time ratios stay fair. It keeps the harness near its 10-minute budget.
REUSE_GRAPH = True


class Recording:
    """Wrap ``op.matvec``: keep every (q, Hq) pair and the time of each product."""

    def __init__(self, op: HessianOperator) -> None:
        self.op, self.q, self.hq, self.t = op, [], [], []
        self.t0 = time.perf_counter()

    def __call__(self, v: torch.Tensor) -> torch.Tensor:
        hv = self.op.matvec(v)
        self.q.append(v.detach().clone())
        self.hq.append(hv.detach().clone())
        self.t.append(time.perf_counter() - self.t0)
        return hv

    def ritz_top(self) -> np.ndarray:
        """Top Ritz value after m = 1, 2, ... products: the Lanczos vectors are orthonormal, so
        the leading m x m block of ``Q H Q^T`` is the tridiagonal matrix of an m-step run."""
        Q = torch.stack(self.q)
        HQ = torch.stack(self.hq)
        M = (Q @ HQ.T).numpy()
        M = 0.5 * (M + M.T)
        return np.array([np.linalg.eigvalsh(M[:m, :m])[-1] for m in range(1, len(self.q) + 1)])


def _first_within(values, ref: float, tol: float) -> int | None:
    for i, v in enumerate(values):
        if abs(v - ref) <= tol * abs(ref):
            return i + 1
    return None


class Replay:
    """Answer a Lanczos run from a recorded one: the same seed gives the same vectors, so a run
    with a looser ``tol`` is a prefix of the recorded run and needs no new products."""

    def __init__(self, rec: Recording) -> None:
        self.rec, self.i = rec, 0

    def __call__(self, v: torch.Tensor) -> torch.Tensor:
        q = self.rec.q[self.i]
        if not torch.allclose(v, q, rtol=0, atol=1e-12 * float(q.abs().max())):
            raise AssertionError("replayed Lanczos left the recorded path")
        self.i += 1
        return self.rec.hq[self.i - 1].clone()


def ours(model, data, seed: int, lam: float, loose_tol: float = TARGET_ACCURACY) -> dict:
    """``hessian_eigenvalues(k=1)`` at its defaults (tol 1e-6) and, replayed from the same run,
    at ``tol=loose_tol`` (the residual then certifies ``|error| <= loose_tol * lambda``)."""
    with probe_state(model):
        op = HessianOperator(model, data, reuse_graph=REUSE_GRAPH)
        rec = Recording(op)
        t = time.perf_counter()
        r = lanczos(rec, op.size, 1, "largest", max_iter=100, tol=1e-6, seed=seed, device=op.device)
        s = time.perf_counter() - t
    value = float(r.theta[-1])
    hit = _first_within(rec.ritz_top(), lam, TARGET_ACCURACY)
    rep = Replay(rec)
    loose = lanczos(rep, op.size, 1, "largest", max_iter=100, tol=loose_tol, seed=seed,
                    device=op.device)
    v_loose = float(loose.theta[-1])
    return {"n_hvp": op.n_hvp, "value": value, "rel_err": abs(value - lam) / abs(lam),
            "converged": bool(r.converged), "s": s,
            "n_hvp_to_1e-3": hit, "s_to_1e-3": rec.t[hit - 1] if hit else None,
            "tol_1e-3": {"n_hvp": rep.i, "value": v_loose, "rel_err": abs(v_loose - lam) / abs(lam),
                         "residual_bound": float(loose.residuals[-1]) / abs(v_loose),
                         "converged": bool(loose.converged), "s": rec.t[rep.i - 1]}}


def power_iteration(model, data, seed: int, lam: float, floor: float, cap: int) -> dict:
    """Power iteration with PyHessian's update, recording every estimate. It runs until
    PyHessian's rule has stopped *and* the estimate is within ``floor`` of the reference (so that
    the HVPs needed for any accuracy down to ``floor`` can be read off), or ``cap`` products."""
    with probe_state(model):
        op = HessianOperator(model, data, reuse_graph=REUSE_GRAPH)
        g = torch.Generator().manual_seed(seed)
        v = torch.randn(op.size, dtype=torch.float64, generator=g)
        v /= v.norm()
        ests, times = [], []
        rule = None
        t0 = time.perf_counter()
        for i in range(1, cap + 1):
            hv = op.matvec(v)
            est = float(v @ hv)
            v = hv / hv.norm()
            ests.append(est)
            times.append(time.perf_counter() - t0)
            if rule is None and i > 1 and abs(ests[-2] - est) / (abs(ests[-2]) + 1e-6) < PYHESSIAN_TOL:
                rule = {"n_hvp": i, "value": ests[-2], "s": times[-1]}  # PyHessian returns the previous
            if rule is not None and abs(est - lam) <= floor * abs(lam):
                break
            if rule is None and i >= PYHESSIAN_MAX_ITER:  # PyHessian gives up: last estimate
                rule = {"n_hvp": i, "value": est, "s": times[-1]}
    rule = rule or {"n_hvp": None, "value": ests[-1], "s": None}
    rule["rel_err"] = abs(rule["value"] - lam) / abs(lam)
    errs = [abs(e - lam) / abs(lam) for e in ests]
    return {"rule": rule, "errors": errs, "times": times, "oracle": _reach(errs, times, TARGET_ACCURACY)}


def _reach(errs, times, accuracy) -> dict | None:
    """HVPs and seconds at the first estimate within ``accuracy`` (None if never reached)."""
    for i, e in enumerate(errs):
        if e <= accuracy:
            return {"n_hvp": i + 1, "s": times[i], "rel_err": e}
    return None


def eigenthings(model, data, seed: int, lam: float) -> dict:
    import hessian_eigenthings as he

    with probe_state(model):
        op = HessianOperator(model, data, reuse_graph=REUSE_GRAPH)
        t = time.perf_counter()
        r = he.lanczos(op, k=1, seed=seed)  # defaults: max_iter = min(2k, n-1) = 2, which="LM"
        s = time.perf_counter() - t
    value = float(r.eigenvalues[0])
    return {"n_hvp": op.n_hvp, "value": value, "rel_err": abs(value - lam) / abs(lam), "s": s,
            "steps": int(r.iterations)}


def problem(name, model, data, budget, log) -> tuple[list[Row], dict]:
    n_img = sum(len(y) for _, y in data)
    ref_spec = ls.hessian_eigenvalues(model, data, k=2, tol=1e-10, max_iter=300,
                                      reuse_graph=REUSE_GRAPH)
    lam, lam2 = float(ref_spec.values[-1]), float(ref_spec.values[-2])
    log(f"[eigen] {name}: reference lambda_max = {lam:.6g}, lambda_2 / lambda_max = "
        f"{lam2 / lam:.3f} ({ref_spec.n_hvp} HVPs, converged={ref_spec.converged})")
    res = interleave({"ours": lambda r: ours(model, data, r, lam),
                      "power": lambda r: power_iteration(model, data, r, lam, budget.eig_floor,
                                                         budget.eig_power_cap),
                      "eigenthings": lambda r: eigenthings(model, data, r, lam)},
                     budget.eig_repeats, log, f"eigen {name}")
    o, p, e = res["ours"], res["power"], res["eigenthings"]
    p_oracle = [x["oracle"]["n_hvp"] if x["oracle"] else None for x in p]
    loose = [x["tol_1e-3"] for x in o]
    # HVPs of ours stopped by its certified 1e-3 rule over power iteration's (oracle) 1e-3 count
    ratios = [a["n_hvp"] / b if b else None for a, b in zip(loose, p_oracle)]
    ours_ok = all(x["rel_err"] <= TARGET_ACCURACY for x in loose)
    n_params = ls.count_params(model)
    row = Row(
        benchmark="2 top eigenvalue",
        case=f"lambda_max to 1e-3, {name} ({n_params:,} params), {n_img:,} images",
        ours=f"hessian_eigenvalues(k=1, tol=1e-3): {med([x['n_hvp'] for x in loose]):.0f} HVPs, "
             f"error ≤ {max(x['rel_err'] for x in loose):.0e} (certified ≤ 1e-3); at defaults "
             f"(tol 1e-6): {med([x['n_hvp'] for x in o]):.0f} HVPs, error ≤ "
             f"{max(x['rel_err'] for x in o):.0e}",
        baseline=(f"power iteration: {_med_or_dash(p_oracle)} HVPs to be within 1e-3 (PyHessian's "
                  f"rule stops at {med([x['rule']['n_hvp'] for x in p]):.0f}, error up to "
                  f"{max(x['rule']['rel_err'] for x in p):.0e}); eigenthings lanczos defaults: "
                  f"{med([x['n_hvp'] for x in e]):.0f} HVPs, error {med([x['rel_err'] for x in e]):.0%}"),
        ratio_def="HVPs ours / power iteration (to 1e-3)",
        ratio=spread(ratios),
        target="<= 0.333",
        note="" if ours_ok else "ours missed 1e-3 accuracy in some repeat",
    ).judge()
    if not ours_ok:
        row.met = "no"
    # equal accuracy: power iteration's HVPs to be as accurate as ours at tol=1e-3 (same seed)
    p_equal = [_reach(b["errors"], b["times"], a["rel_err"]) for a, b in zip(loose, p)]
    cap = budget.eig_power_cap
    row_eq = Row(
        benchmark="2 top eigenvalue",
        case=f"lambda_max at equal accuracy, {name}",
        ours=f"hessian_eigenvalues(k=1, tol=1e-3): {med([x['n_hvp'] for x in loose]):.0f} HVPs "
             f"for an error of {med([x['rel_err'] for x in loose]):.0e}",
        baseline=f"power iteration: {_med_or_dash([x['n_hvp'] if x else None for x in p_equal], cap)} "
                 f"HVPs to be as accurate (oracle stop)",
        ratio_def="HVPs ours / power iteration (equal accuracy)",
        # where power iteration had not matched ours after `cap` products, cap is a lower bound
        # on its count and the ratio an upper bound
        ratio=spread([a["n_hvp"] / (b["n_hvp"] if b else cap) for a, b in zip(loose, p_equal)]),
        target="<= 0.333",
        note=(f"power iteration was stopped at {cap} HVPs before matching ours in some repeat: "
              f"there the ratio uses {cap}, an upper bound" if any(x is None for x in p_equal) else ""),
    ).judge()
    per_repeat = []
    for r, (a, b, c, q) in enumerate(zip(o, p, e, p_equal)):
        per_repeat.append({"seed": r, "ours": a, "power_pyhessian_rule": b["rule"],
                           "power_oracle_1e-3": b["oracle"], "power_equal_accuracy": q,
                           "power_errors": b["errors"], "eigenthings_lanczos_defaults": c})
    details = {
        "problem": name, "n_params": n_params, "images": n_img, "lambda_ref": lam,
        "lambda_2_over_lambda_max": lam2 / lam, "operator": "HessianOperator(reuse_graph=True)",
        "ref_n_hvp": ref_spec.n_hvp, "ref_converged": bool(ref_spec.converged),
        "repeats": per_repeat,
        "summary": {
            "ours_tol_1e-3_n_hvp": spread([x["n_hvp"] for x in loose]),
            "ours_tol_1e-3_rel_err": spread([x["rel_err"] for x in loose]),
            "ours_tol_1e-3_s": spread([x["s"] for x in loose]),
            "ours_n_hvp": spread([x["n_hvp"] for x in o]),
            "ours_rel_err": spread([x["rel_err"] for x in o]),
            "ours_n_hvp_to_1e-3": spread([x["n_hvp_to_1e-3"] for x in o]),
            "ours_s": spread([x["s"] for x in o]),
            "power_oracle_n_hvp": spread(p_oracle),
            "power_oracle_s": spread([x["oracle"]["s"] if x["oracle"] else None for x in p]),
            "power_equal_n_hvp": spread([x["n_hvp"] if x else None for x in p_equal]),
            "power_equal_rel_err": spread([x["rel_err"] if x else None for x in p_equal]),
            "power_equal_s": spread([x["s"] if x else None for x in p_equal]),
            "power_rule_n_hvp": spread([x["rule"]["n_hvp"] for x in p]),
            "power_rule_rel_err": spread([x["rule"]["rel_err"] for x in p]),
            "power_rule_s": spread([x["rule"]["s"] for x in p]),
            "eigenthings_n_hvp": spread([x["n_hvp"] for x in e]),
            "eigenthings_rel_err": spread([x["rel_err"] for x in e]),
            "eigenthings_s": spread([x["s"] for x in e]),
            "time_ratio_ours_tol_1e-3_over_power_oracle": spread(
                [a["s"] / b["oracle"]["s"] if b["oracle"] else None for a, b in zip(loose, p)]),
            "time_ratio_ours_defaults_over_power_oracle": spread(
                [a["s"] / b["oracle"]["s"] if b["oracle"] else None for a, b in zip(o, p)]),
            "hvp_ratio_ours_to_1e-3_over_power_oracle": spread(
                [a["n_hvp_to_1e-3"] / q if (q and a["n_hvp_to_1e-3"]) else None
                 for a, q in zip(o, p_oracle)]),
        },
    }
    return [row, row_eq], details


def _med_or_dash(values, cap: int = PYHESSIAN_MAX_ITER) -> str:
    vals = [v for v in values if v is not None]
    if not vals:
        return f"> {cap}"
    s = f"{med(vals):.0f}"
    return s if len(vals) == len(values) else s + f" (> {cap} in some repeats)"


def check_engine_matches_public_call(model, data) -> None:
    """ours() runs the engine hessian_eigenvalues uses and replays it at tol=1e-3; make sure both
    are the computations the public call makes (cheap: run on the MLP only)."""
    pub = ls.hessian_eigenvalues(model, data, k=1, seed=0)
    pub_loose = ls.hessian_eigenvalues(model, data, k=1, seed=0, tol=TARGET_ACCURACY)
    lam = float(pub.values[-1])
    mine = ours(model, data, 0, lam)
    for got, want in ((mine, pub), (mine["tol_1e-3"], pub_loose)):
        w = float(want.values[-1])
        if got["n_hvp"] != want.n_hvp or abs(got["value"] - w) > 1e-12 * abs(w):
            raise AssertionError(f"recorded Lanczos differs from hessian_eigenvalues: "
                                 f"{got['n_hvp']} HVPs, {got['value']!r} vs {want.n_hvp}, {w!r}")


def run(budget, root, log) -> tuple[list[Row], dict]:
    rows, details = [], {}
    for family in budget.eig_models:
        if family == "mlp":
            model, full = trained("mlp", "mnist", root, budget.eig_mlp_images, budget.train_epochs)
            data = list(Batches(full, budget.eig_batch))
            check_engine_matches_public_call(model, data)
            name = "MLP-128, MNIST"
        else:
            model, full = trained("cnn", "fashion_mnist", root, budget.surface_images,
                                  budget.train_epochs)
            sub = ls.subset(full, budget.eig_cnn_images, seed=0)
            data = list(Batches(sub, budget.eig_batch))
            name = "CNN+BN, Fashion-MNIST"
        r, d = problem(name, model, data, budget, log)
        rows += r
        details[family] = d
    return rows, details
