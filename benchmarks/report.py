"""Render benchmark results: ``results.json`` -> ``results.md`` (summary and detail tables), the
README section between ``<!-- bench:start -->`` and ``<!-- bench:end -->``, and the book's
appendix page (which includes ``results.md``, so no number is typed by hand)."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

START, END = "<!-- bench:start -->", "<!-- bench:end -->"
RERUN = ("`python -m benchmarks` reruns every benchmark (about 10 minutes on this 2-core machine, "
         "more when it is busy; `--quick` a few minutes) and rewrites the table below, "
         "`benchmarks/results.md` and the book's benchmarks appendix.")


def empty() -> dict:
    return {"generated": None, "mode": None, "command": None, "machine": {}, "rows": [],
            "details": {}}


def _cell(text: Any) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _r(r: dict | None, digits: int = 2) -> str:
    if not r or r.get("median") is None:
        return "—"
    return f"{r['min']:.{digits}f} / {r['median']:.{digits}f} / {r['max']:.{digits}f}"


def _target(t: str) -> str:
    return t.replace(">=", "≥").replace("<=", "≤") if t else "—"


def summary_table(results: dict) -> str:
    lines = ["| benchmark | case | ours | baseline | ratio | min / median / max | target | met? |",
             "|---|---|---|---|---|---|---|---|"]
    order = sorted(results["rows"], key=lambda r: r["benchmark"])
    for row in order:
        lines.append("| " + " | ".join(_cell(x) for x in (
            row["benchmark"], row["case"], row["ours"], row["baseline"], row["ratio_def"],
            _r(row["ratio"]), _target(row["target"]), row["met"])) + " |")
    return "\n".join(lines)


def machine_line(results: dict) -> str:
    m = results.get("machine") or {}
    if not m:
        return ""
    load = m.get("load_average_1_5_15")
    return (f"Measured {m.get('date')} on {m.get('cpu')} ({m.get('cpu_count')} cores, shared with "
            f"other jobs: load average {load[0] if load else '?'} at start), torch "
            f"{m.get('torch')} with {m.get('torch_threads')} thread(s), CPU only; "
            f"loss-landscapes {m.get('loss_landscapes')}, hessian-eigenthings "
            f"{m.get('hessian_eigenthings')}. Mode `{results.get('mode')}`, "
            f"{results.get('repeats')} interleaved repeats (order alternating A B / B A); "
            f"ratios are per repeat, so host load that drifts between repeats cancels.")


def _notes(results: dict) -> str:
    notes = [f"- **{r['benchmark']}**, {r['case']}: {r['note']}" for r in
             sorted(results["rows"], key=lambda r: r["benchmark"]) if r.get("note")]
    return "\n".join(notes)


def _details_surface(d: dict) -> str:
    if not d or not d.get("sweep"):
        return ""
    out = [f"**Benchmark 1, techniques on our loop** ({d['images']:,} images, "
           f"{d['sweep_points_per_variant']} points per variant per repeat; speed relative to "
           "ours, min / median / max):", "",
           "| variant | points/s (median) | × vs ours |", "|---|---|---|"]
    for v in d["sweep"]:
        out.append(f"| {_cell(v['variant'])} | {v['points_per_s']:.2f} | {_r(v['vs_ours'])} |")
    comp = [v for v in d["sweep"] if "torch.compile" in v["variant"]]
    if d.get("compile_seconds") is not None and comp:
        saved = 1.0 / d["sweep"][0]["points_per_s"] - 1.0 / comp[0]["points_per_s"]
        pay = (f"; at the median per-point times it pays for itself after "
               f"{d['compile_seconds'] / saved:.0f} grid points" if saved > 0 else "")
        out += ["", f"torch.compile's first pass (compilation) took {d['compile_seconds']:.0f} s in "
                    f"this process{pay}; inductor keeps compiled code in an on-disk cache, so a "
                    "machine's first, cold compilation takes longer."]
    if d.get("centre_minus_model_loss") is not None:
        out += ["", f"The surface's centre equals the model's own loss over the same batches "
                    f"(difference {d['centre_minus_model_loss']:.1e}; loss {d['model_loss']:.4f} nats)."]
    return "\n".join(out)


def _details_eigen(d: dict) -> str:
    if not d:
        return ""
    out = ["**Benchmark 2, per method** (HVPs and relative error against the reference, "
           "min / median / max over start vectors; every method multiplies by the same "
           "`HessianOperator(reuse_graph=True)`, whose products are those of the default operator):",
           "", "| problem | reference λ_max | method | HVPs | rel. error | seconds |",
           "|---|---|---|---|---|---|"]
    for key, p in d.items():
        s = p["summary"]
        name = f"{p['problem']}, {p['images']:,} images"
        ref = (f"{p['lambda_ref']:.6g}; λ₂/λ_max = {p['lambda_2_over_lambda_max']:.3f} "
               f"({p['ref_n_hvp']} HVPs)")
        rows = [
            ("ours: hessian_eigenvalues(k=1, tol=1e-3) (certified stop)", s["ours_tol_1e-3_n_hvp"],
             s["ours_tol_1e-3_rel_err"], s["ours_tol_1e-3_s"]),
            ("ours: hessian_eigenvalues(k=1) defaults (tol 1e-6)", s["ours_n_hvp"],
             s["ours_rel_err"], s["ours_s"]),
            ("ours, first step within 1e-3 (same run)", s["ours_n_hvp_to_1e-3"], None, None),
            ("power iteration, first step within 1e-3 (oracle stop)", s["power_oracle_n_hvp"],
             None, s["power_oracle_s"]),
            ("power iteration, first step as accurate as ours at tol=1e-3 (oracle stop)",
             s["power_equal_n_hvp"], s["power_equal_rel_err"], s["power_equal_s"]),
            ("power iteration, PyHessian stop rule (tol 1e-3, max 100)", s["power_rule_n_hvp"],
             s["power_rule_rel_err"], s["power_rule_s"]),
            ("hessian-eigenthings lanczos(k=1) defaults", s["eigenthings_n_hvp"],
             s["eigenthings_rel_err"], s["eigenthings_s"]),
        ]
        for method, hv, err, sec in rows:
            out.append(f"| {name} | {ref} | {method} | {_r(hv, 0)} | "
                       f"{_r_e(err)} | {_r(sec, 1)} |")
            name = ref = ""
    out += ["", "Ours at `tol=1e-3` is the same Lanczos run replayed (same start vector), stopped by "
                "its residual rule, which bounds the error: |λ − θ| ≤ ‖Hy − θy‖ ≤ 1e-3·θ. The "
                "oracle stop of power iteration needs the reference value, so no user of power "
                "iteration can have it: it is the most favourable count for the baseline. "
                "Seconds of ours at `tol=1e-3` are the default run's time at that step."]
    return "\n".join(out)


def _r_e(r: dict | None) -> str:
    if not r or r.get("median") is None:
        return "—"
    return f"{r['min']:.0e} / {r['median']:.0e} / {r['max']:.0e}"


def _details_training(d: dict) -> str:
    if not d:
        return ""
    c = d["same_batch_check"]
    out = [f"**Benchmark 3, every setting** ({d['images']:,} images per epoch; speed-up of ours "
           "over each DataLoader setting, min / median / max):", "",
           "| batch | setting | epoch s (median) | ours faster by |", "|---|---|---|---|"]
    for batch, v in d["per_batch"].items():
        out.append(f"| {batch} | ours | {_med(v['ours_s']):.2f} | — |")
        for k, r in v["ratios"].items():
            out.append(f"| {batch} | {k} | {_med(v[k]):.2f} | {_r(r)} |")
    out += ["", f"Same fixed batch of {c['images']} images without augmentation, same weights: "
                f"inputs differ by at most {c['max_abs_input_diff']:.1e}, labels equal: "
                f"{c['labels_equal']}, losses {c['loss_ours']:.6f} (ours) and "
                f"{c['loss_theirs']:.6f} (theirs)."]
    return "\n".join(out)


def _details_hvp(d: dict) -> str:
    if not d:
        return ""
    out = ["**Benchmark 4, HVP variants** (cost over one gradient on the same batch, "
           "min / median / max):", "", "| model | gradient ms (median) | variant | HVP / gradient |",
           "|---|---|---|---|"]
    for m in d.values():
        for i, (k, r) in enumerate(m["ratios"].items()):
            label = f"{m['model']} ({m['params']:,} params)" if i == 0 else ""
            g = f"{m['gradient_s']['median'] * 1e3:.0f}" if i == 0 else ""
            out.append(f"| {label} | {g} | {k} | {_r(r)} |")
    return "\n".join(out)


def _details_pipeline(d: dict) -> str:
    if not d or not d.get("found"):
        return ""
    out = [f"**Benchmark 5, stages of the `{d['profile']}` run of {d['started']}** "
           f"({d['jobs_run']} jobs, {d['total_s'] / 60:.1f} min wall; {d['method']}):", "",
           "| stage | jobs | share of wall time (min) | busy (job-min) | span (min) |",
           "|---|---|---|---|---|"]
    for k, s in d["stages"].items():
        busy = "—" if s.get("busy_s") is None else f"{s['busy_s'] / 60:.1f}"
        span = "—" if s.get("span_s") is None else f"{s['span_s'] / 60:.1f}"
        out.append(f"| {k} | {s['jobs']} | {s['wall_share_s'] / 60:.1f} | {busy} | {span} |")
    if d.get("studies"):
        out += ["", "Per study (training and probe notebooks of its configurations; a study's share of "
                    "the wall time splits each moment equally among the jobs running then):", "",
                "| study | jobs | share of wall time (min) | busy (job-min) |", "|---|---|---|---|"]
        for k, s in d["studies"].items():
            out.append(f"| {k} | {s['jobs']} | {s['wall_share_s'] / 60:.1f} | {s['busy_s'] / 60:.1f} |")
    mem = d.get("memory")
    if mem:
        out += ["", f"Peak memory: {mem['max_rss_mb']:.0f} MB resident for {mem['job']} "
                    f"(re-run alone under `/usr/bin/time -v`)." if mem.get("measured")
                else f"Peak memory: not measured ({mem.get('why')})."]
    else:
        out += ["", "Peak memory is not in Snakemake's logs; "
                    "`python benchmarks/pipeline_times.py --with-memory` measures one probe job."]
    return "\n".join(out)


def _med(values) -> float:
    v = sorted(values)
    n = len(v)
    return v[n // 2] if n % 2 else 0.5 * (v[n // 2 - 1] + v[n // 2])


def render_markdown(results: dict) -> str:
    """results.md: what was measured, the summary table, notes and the detail tables."""
    det = results.get("details", {})
    parts = [
        "<!-- generated by `python -m benchmarks`: do not edit by hand -->",
        machine_line(results),
        summary_table(results),
        "Ratios: a speed-up is the baseline's seconds over ours (higher is better); HVP counts "
        "and cost ratios are ours over the baseline (lower is better). *met?* is \"yes\" when "
        "every repeat meets the target, \"median only\" when the median does.",
        _notes(results),
        _details_surface(det.get("surface", {})),
        _details_eigen(det.get("eigen", {})),
        _details_training(det.get("training", {})),
        _details_hvp(det.get("hvp", {})),
        _details_pipeline(det.get("pipeline", {})),
        results.get("anchors", ""),
    ]
    return "\n\n".join(p for p in parts if p) + "\n"


def readme_section(results: dict) -> str:
    return "\n\n".join(p for p in (machine_line(results), summary_table(results),
                                   "Details (techniques tried, per-method counts, every setting): "
                                   "[`benchmarks/results.md`](benchmarks/results.md).") if p)


def replace_between_markers(text: str, content: str) -> str:
    """Replace what lies between the bench markers; add a ``## Benchmarks`` section with the
    markers at the end when they are missing."""
    block = f"{START}\n{content.strip()}\n{END}"
    if START in text and END in text and text.index(START) < text.index(END):
        head, rest = text.split(START, 1)
        _, tail = rest.split(END, 1)
        return head + block + tail
    return text.rstrip("\n") + f"\n\n## Benchmarks\n\n{RERUN}\n\n{block}\n"


def book_page(include_path: str) -> str:
    return f"""<!-- generated by `python -m benchmarks`: do not edit by hand -->
# Benchmarks

Every benchmark runs both sides in one process on the same model, data and machine, interleaved
and repeated, and reports the ratio of the two (min / median / max over the repeats): this
2-core host is shared and its speed drifts, so absolute seconds are only indicative. The
baselines are the anchors: [loss-landscapes](https://github.com/marcellodebernardi/loss-landscapes)
3.0.6, [hessian-eigenthings](https://github.com/noahgolmant/pytorch-hessian-eigenthings)
1.0.0a5, power iteration with PyHessian's defaults (written from its description), and the usual
torchvision `DataLoader` training loop. `python -m benchmarks` regenerates the table below
(`--quick` for a shorter run, `--only NAME` for one benchmark); the code is in `benchmarks/`.

```{{include}} {include_path}
```
"""


def write_all(results: dict, out_dir: Path, readme: Path | None, page: Path | None) -> dict:
    """Write results.json and results.md into ``out_dir``; update ``readme``'s bench section and
    write the book ``page`` when given. Returns the paths written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = {}
    (out_dir / "results.json").write_text(json.dumps(results, indent=1, default=str) + "\n")
    written["json"] = out_dir / "results.json"
    (out_dir / "results.md").write_text(render_markdown(results))
    written["md"] = out_dir / "results.md"
    if readme is not None:
        text = readme.read_text() if readme.exists() else ""
        readme.write_text(replace_between_markers(text, readme_section(results)))
        written["readme"] = readme
    if page is not None:
        page.parent.mkdir(parents=True, exist_ok=True)
        rel = os.path.relpath(out_dir / "results.md", page.parent)
        page.write_text(book_page(Path(rel).as_posix()))
        written["page"] = page
    return written
