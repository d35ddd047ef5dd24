"""Run every benchmark against the anchors and write the results table.

    python -m benchmarks [--quick | --smoke] [--only NAME ...] [--out DIR] [--readme PATH]
    python benchmarks/run.py ...                        (the same)

Benchmarks (NAME): surface, eigen, training, hvp, pipeline (see each module's docstring), and
``anchors`` (the accuracy comparison of bench_probes_vs_anchors.py, only when named or with
``--with-anchors``). Writes ``results.json`` and ``results.md`` into ``--out`` (default
``benchmarks/``), rewrites the README section between ``<!-- bench:start -->`` and
``<!-- bench:end -->`` (``--readme``; default README.md when writing to ``benchmarks/``) and the book
page ``book/appendix/benchmarks.md`` (``--page``), which includes ``results.md``.

Evidence (a 2-core Xeon shared with the report's pipeline, torch 2.15, 1 thread): the full mode
takes about 10 minutes, ``--quick`` about 2, ``--smoke`` (the test) a few seconds; timings drift
up to 3x from minute to minute on this host, which is why only per-repeat ratios are reported.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # `python benchmarks/run.py`: make the package importable
    sys.path.insert(0, str(REPO))

import torch  # noqa: E402

from benchmarks import report  # noqa: E402
from benchmarks.common import machine_info  # noqa: E402


# ----------------------------------------------------------------------------------------------
# budgets: everything that sets the size of a run, in one place
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Budget:
    repeats: int              # interleaved repeats of each side (ratios: min / median / max)
    train_epochs: int         # brief training of the probed CNN / MLP (non-zero BN shifts)
    surface_images: int       # benchmark 1's subset (the issue: 2,000 Fashion-MNIST images)
    surface_grid: int         # points per axis; loss-landscapes needs ~1 s per point here
    surface_batch: int        # our eval batch: 64-128 is fastest per image on this CPU
    sweep_points: int         # points per technique variant per repeat (0: no sweep)
    eig_models: tuple         # benchmark 2's problems
    eig_cnn_images: int       # the CNN's Hessian subset (the issue: 1,000 images)
    eig_mlp_images: int
    eig_batch: int            # batches of the Hessian data (HVPs in chunks: cache-friendly)
    eig_repeats: int          # start vectors per method (one HVP of the CNN is 1-4 s here)
    eig_floor: float          # power iteration runs on until this accurate (equal-accuracy count)
    eig_power_cap: int        # ... or this many HVPs
    train_images: int         # benchmark 3's images per epoch
    train_batches: tuple      # batch sizes compared (the write-ups use 32 and 128)
    train_workers: tuple      # DataLoader num_workers of the baseline
    hvp_models: tuple         # benchmark 4's models
    hvp_batch: int            # the issue: batch 256
    hvp_repeats: int
    hvp_min_seconds: float    # back-to-back calls per timing: at least this long of gradients


MODES = {
    # ~10 min on the shared 2-core host (load average 5-9 from other jobs when measured): the
    # models, data and batch sizes the issue names, except the surface grid (4x4 instead of
    # 21x21: loss-landscapes needs ~2 s per point here, and throughput does not depend on it)
    "full": Budget(repeats=3, train_epochs=2, surface_images=2000, surface_grid=4, surface_batch=128,
                   sweep_points=1, eig_models=("mlp", "cnn"), eig_cnn_images=1000,
                   eig_mlp_images=1000, eig_batch=125, eig_repeats=2, eig_floor=2e-7, eig_power_cap=40, train_images=1024,
                   train_batches=(32, 128), train_workers=(0, 2), hvp_models=("mlp", "cnn", "resnet"),
                   hvp_batch=256, hvp_repeats=3, hvp_min_seconds=0.25),
    # ~2-3 min: same models, smaller grids, subsets and batches, 2 repeats, no technique sweep
    "quick": Budget(repeats=2, train_epochs=2, surface_images=2000, surface_grid=3, surface_batch=128,
                    sweep_points=0, eig_models=("mlp", "cnn"), eig_cnn_images=125,
                    eig_mlp_images=1000, eig_batch=125, eig_repeats=2, eig_floor=2e-7, eig_power_cap=40, train_images=256,
                    train_batches=(128,), train_workers=(0, 2), hvp_models=("mlp", "cnn", "resnet"),
                    hvp_batch=128, hvp_repeats=2, hvp_min_seconds=0.25),
    # seconds: the test's mode; exercises every code path, measures nothing meaningful
    "smoke": Budget(repeats=2, train_epochs=1, surface_images=128, surface_grid=3, surface_batch=64,
                    sweep_points=0, eig_models=("mlp",), eig_cnn_images=64, eig_mlp_images=128,
                    eig_batch=64, eig_repeats=2, eig_floor=1e-7, eig_power_cap=60, train_images=64, train_batches=(32,),
                    train_workers=(0,), hvp_models=("mlp", "cnn", "resnet"), hvp_batch=16,
                    hvp_repeats=2, hvp_min_seconds=0.0),
}

BENCHMARKS = ("surface", "eigen", "training", "hvp", "pipeline")


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def run_anchors(quick: bool, threads: int) -> str:
    """The colleague's accuracy table (bench_probes_vs_anchors.py), captured as markdown."""
    from benchmarks import bench_probes_vs_anchors as anchors

    buf = io.StringIO()
    anchors.ROWS.clear()
    with contextlib.redirect_stdout(buf):
        anchors.main(quick, threads)
    lines = buf.getvalue().strip().splitlines()
    table = [("| " + " | ".join(c.strip() for c in ln.split(" | ")) + " |") for ln in lines]
    table[1] = "|" + "---|" * (table[0].count("|") - 1)
    return ("**Accuracy against the anchors** (`benchmarks/bench_probes_vs_anchors.py`: error "
            "against exact answers, HVPs, seconds):\n\n" + "\n".join(table))


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="about 2 minutes")
    mode.add_argument("--smoke", action="store_true", help="seconds: tiny sizes (for the tests)")
    ap.add_argument("--only", nargs="+", choices=BENCHMARKS + ("anchors",), metavar="NAME",
                    help=f"run only these ({', '.join(BENCHMARKS)}, anchors); results of the "
                         "others are kept from the previous results.json")
    ap.add_argument("--with-anchors", action="store_true",
                    help="also run bench_probes_vs_anchors.py and add its table")
    ap.add_argument("--repeats", type=int, default=None, help="override the mode's repeats")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads (default 1: the workflow runs one thread per job; on a "
                         "shared 2-core host 2 threads were 2-5x slower here)")
    ap.add_argument("--data-root", default=None, help="MNIST/Fashion-MNIST folder "
                    "(default $LANDSCAPE_DATA, else ../shared/data)")
    ap.add_argument("--snakemake-dir", type=Path, default=REPO / ".snakemake",
                    help="where benchmark 5 reads Snakemake's logs and metadata")
    ap.add_argument("--profile", default="quick", help="benchmark 5's profile")
    ap.add_argument("--with-memory", action="store_true",
                    help="benchmark 5: re-run one probe notebook under /usr/bin/time -v")
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks",
                    help="folder for results.json and results.md")
    ap.add_argument("--readme", type=Path, default=None,
                    help="README to update (default: README.md when --out is benchmarks/)")
    ap.add_argument("--page", type=Path, default=None,
                    help="book page to write (default: book/appendix/benchmarks.md when --out is "
                         "benchmarks/)")
    a = ap.parse_args(argv)

    import os
    root = a.data_root or os.environ.get("LANDSCAPE_DATA") or str(REPO.parent / "shared" / "data")
    name = "smoke" if a.smoke else "quick" if a.quick else "full"
    budget = MODES[name]
    if a.repeats:
        budget = replace(budget, repeats=a.repeats, eig_repeats=a.repeats, hvp_repeats=a.repeats)
    torch.set_num_threads(a.threads)
    default_out = a.out.resolve() == (REPO / "benchmarks").resolve()
    readme = a.readme or (REPO / "README.md" if default_out else None)
    page = a.page or (REPO / "book" / "appendix" / "benchmarks.md" if default_out else None)

    wanted = list(a.only or BENCHMARKS)
    if a.with_anchors and "anchors" not in wanted:
        wanted.append("anchors")
    prev_path = a.out / "results.json"
    results = report.empty()
    if a.only and prev_path.exists():  # keep the other benchmarks' latest results
        results = json.loads(prev_path.read_text())
    results.update({"generated": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "mode": name,
                    "command": "python -m benchmarks " + " ".join(argv if argv is not None else sys.argv[1:]),
                    "machine": machine_info(), "repeats": budget.repeats, "budget": asdict(budget)})
    t_all = time.perf_counter()
    for bench in wanted:
        t = time.perf_counter()
        if bench == "anchors":
            results["anchors"] = run_anchors(quick=name != "full", threads=a.threads)
            _log(f"[anchors] {time.perf_counter() - t:.0f} s")
            continue
        if bench == "pipeline":
            from benchmarks.pipeline_times import row_and_details
            row, det = row_and_details(a.snakemake_dir, a.profile, a.with_memory, root)
            rows = [row]
        else:
            mod = __import__(f"benchmarks.{ {'hvp': 'hvp_cost'}.get(bench, bench)}",
                             fromlist=["run"])
            rows, det = mod.run(budget, root, _log)
        prefix = rows[0].benchmark
        results["rows"] = [r for r in results["rows"] if r["benchmark"] != prefix]
        results["rows"] += [r.as_dict() for r in rows]
        results["details"][bench] = det
        results.setdefault("seconds", {})[bench] = round(time.perf_counter() - t, 1)
        _log(f"[{bench}] {time.perf_counter() - t:.0f} s")
    results["seconds_total"] = round(time.perf_counter() - t_all, 1)
    results["machine"]["load_average_end"] = machine_info()["load_average_1_5_15"]
    written = report.write_all(results, a.out, readme, page)
    print(report.summary_table(results))
    print("\nwritten: " + ", ".join(str(p) for p in written.values()))
    return results


if __name__ == "__main__":
    main()
