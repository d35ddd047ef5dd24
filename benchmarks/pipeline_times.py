"""Benchmark 5: wall time of the report's pipeline per stage, read from Snakemake's own records.

    python benchmarks/pipeline_times.py [--profile quick] [--with-memory] [--out DIR]

Nothing is re-run: the times come from the latest *complete* Snakemake run in ``.snakemake/log/``
(a log whose last progress line says 100 %), preferring one of ``--profile`` (read from the
logged command line; Snakefile default: quick). With ``--rules`` quiet logs (what ``make report``
writes) a log holds each job's finish time and rule but no start times; those come from
Snakemake's per-output metadata (``.snakemake/metadata/``: rule, start and end time), matched to
the log's finish events by rule and end time. When some job cannot be matched (metadata are
overwritten by later runs), stage times fall back to splitting the run at finish events: the time
since the previous finish is charged to the stage of the job that finished (approximate with 2
jobs in parallel, and said so).

Stages: train (rule ``train``), probes (``probe_notebook``: papermill runs of the probe notebook),
notebooks (``study_summary``), book (``book``, ``mathjax``). Per stage: jobs, busy time (sum of
job durations), span (first start to last finish) and its share of the wall time (each moment
split equally among the jobs running then).

Peak memory is not in Snakemake's logs. With ``--with-memory`` the longest probe-notebook job of
that run is re-run once into a temporary folder under ``/usr/bin/time -v`` (one thread, as the
workflow runs it) and its maximum resident set size is reported; with ``--cores 2`` two such jobs
can run side by side.
"""
from __future__ import annotations

import argparse
import base64
import datetime as dt
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a script: make `benchmarks` importable
    sys.path.insert(0, str(REPO))

STAGES = {"train": "train", "probe_notebook": "probes", "study_summary": "notebooks",
          "book": "book", "mathjax": "book"}
STAGE_ORDER = ["train", "probes", "notebooks", "book"]
BUDGET_S = 20 * 60  # the target for the quick profile on this 2-core machine

_TS = re.compile(r"^\[(\w{3} \w{3} +\d+ \d\d:\d\d:\d\d \d{4})\]\s*$")
_FINISHED = re.compile(r"^Finished jobid: (\d+) \(Rule: ([\w.-]+)\)")
_STARTED = re.compile(r"^(?:local)?rule ([\w.-]+):\s*$")
_JOBID = re.compile(r"^\s+jobid: (\d+)")
_STEPS = re.compile(r"^(\d+) of (\d+) steps \((\d+)%\) done")
_DATE = re.compile(r"^\s*Date: (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)")
_COMMAND = re.compile(r"^\s*Command: (.*)$")
_ELAPSED = re.compile(r"^Elapsed time: (?:(\d+) days?, )?(\d+):(\d\d):(\d\d(?:\.\d+)?)")
_PROFILE = re.compile(r"profile=([\w-]+)")


def _epoch(text: str, fmt: str) -> float:
    return dt.datetime.strptime(text, fmt).timestamp()  # local time, as Snakemake writes it


def parse_log(path: Path) -> dict:
    """One Snakemake log: start date, command, profile, job stats, finish (and start) events."""
    run = {"log": str(path), "start": None, "command": "", "profile": "quick", "finished": [],
           "started": {}, "planned": {}, "complete": False, "elapsed_s": None, "failed": False}
    ts = None
    pending_rule = None
    in_stats = False
    for line in path.read_text(errors="replace").splitlines():
        if m := _DATE.match(line):
            run["start"] = _epoch(m.group(1), "%Y-%m-%d %H:%M:%S")
        elif m := _COMMAND.match(line):
            run["command"] = m.group(1)
            if p := _PROFILE.search(m.group(1)):
                run["profile"] = p.group(1)
        elif line.startswith("Job stats:"):
            in_stats = True
        elif in_stats:
            parts = line.split()
            if len(parts) == 2 and parts[1].isdigit():
                if parts[0] == "total":
                    in_stats = False
                else:
                    run["planned"][parts[0]] = int(parts[1])
            elif not parts:
                in_stats = False
        if m := _TS.match(line):
            ts = _epoch(m.group(1), "%a %b %d %H:%M:%S %Y")
        elif m := _FINISHED.match(line):
            run["finished"].append({"jobid": int(m.group(1)), "rule": m.group(2), "end": ts})
        elif m := _STARTED.match(line):
            pending_rule = (m.group(1), ts)
        elif (m := _JOBID.match(line)) and pending_rule:
            run["started"][int(m.group(1))] = pending_rule[1]
            pending_rule = None
        elif m := _STEPS.match(line):
            run["complete"] = m.group(3) == "100" and m.group(1) == m.group(2)
        elif m := _ELAPSED.match(line):
            d, h, mi, s = m.groups()
            run["elapsed_s"] = int(d or 0) * 86400 + int(h) * 3600 + int(mi) * 60 + float(s)
        elif "Exiting because a job execution failed" in line or line.startswith("Error in rule"):
            run["failed"] = True
    return run


def read_metadata(smk: Path) -> list[dict]:
    """Snakemake's per-output records: rule, start and end time, output path (decoded)."""
    out = []
    folder = smk / "metadata"
    if not folder.is_dir():
        return out
    for f in folder.rglob("*"):
        if not f.is_file():
            continue
        # the name is the output path, urlsafe-base64 encoded; long names are split into
        # folders whose names start with "@" (snakemake.persistence)
        name = "".join(part.lstrip("@") for part in f.relative_to(folder).parts)
        try:
            rec = json.loads(f.read_text())
            path = base64.urlsafe_b64decode(name).decode("utf-8", "replace")
        except (OSError, ValueError, json.JSONDecodeError):
            continue
        if rec.get("starttime") and rec.get("endtime"):
            out.append({"rule": rec.get("rule"), "start": float(rec["starttime"]),
                        "end": float(rec["endtime"]), "output": path})
    return out


def _match(run: dict, meta: list[dict]) -> int:
    """Give each finished job a start time: from a verbose log, else from metadata whose rule
    matches and whose end is within 2 s of the log's (1-second resolution) finish time."""
    used = set()
    matched = 0
    for job in run["finished"]:
        if job["jobid"] in run["started"]:
            job["start"] = run["started"][job["jobid"]]
            matched += 1
            continue
        best = None
        for i, rec in enumerate(meta):
            if i in used or rec["rule"] != job["rule"] or job["end"] is None:
                continue
            gap = abs(rec["end"] - job["end"] - 0.5)
            if gap <= 2.0 and (best is None or gap < best[0]):
                best = (gap, i)
        if best:
            rec = meta[best[1]]
            # every output of the job carries the same record: use them all up
            for j, other in enumerate(meta):
                if other["rule"] == rec["rule"] and other["start"] == rec["start"]:
                    used.add(j)
            job["start"], job["end"], job["output"] = rec["start"], rec["end"], rec["output"]
            matched += 1
    return matched


def stage_times(run: dict, exact: bool) -> dict:
    jobs = [j for j in run["finished"] if STAGES.get(j["rule"], j["rule"]) != "all"
            and j["rule"] != "all"]
    t0 = run["start"]
    t_end = max([j["end"] for j in jobs] + [t0])
    stages: dict[str, dict] = {}
    for j in jobs:
        st = stages.setdefault(STAGES.get(j["rule"], j["rule"]),
                               {"jobs": 0, "busy_s": 0.0, "first_start": None, "last_end": None,
                                "wall_share_s": 0.0})
        st["jobs"] += 1
        st["last_end"] = max(st["last_end"] or j["end"], j["end"])
        if exact:
            st["busy_s"] += j["end"] - j["start"]
            st["first_start"] = min(st["first_start"] or j["start"], j["start"])
    if exact:  # split each moment equally among the jobs running then
        events = sorted({t0, t_end, *[j["start"] for j in jobs], *[j["end"] for j in jobs]})
        for a, b in zip(events[:-1], events[1:]):
            running = [j for j in jobs if j["start"] <= a and j["end"] >= b]
            for j in running:
                stages[STAGES.get(j["rule"], j["rule"])]["wall_share_s"] += (b - a) / len(running)
    else:  # charge the time since the previous finish to the finishing job's stage
        prev = t0
        for j in sorted(jobs, key=lambda j: j["end"]):
            stages[STAGES.get(j["rule"], j["rule"])]["wall_share_s"] += max(0.0, j["end"] - prev)
            prev = max(prev, j["end"])
    for st in stages.values():
        st["span_s"] = (st["last_end"] - st["first_start"]) if st["first_start"] else None
        if not exact:
            st["busy_s"] = None
    order = STAGE_ORDER + sorted(set(stages) - set(STAGE_ORDER))
    return {k: stages[k] for k in order if k in stages}


def _study_of(output: str | None) -> str:
    """The study a job worked for, from its output path (``.../runs/<study>/...``)."""
    parts = Path(output or "").parts
    if "runs" in parts and len(parts) > parts.index("runs") + 2:
        return parts[parts.index("runs") + 1]
    return "shared (questions, run list, book)"


def study_times(jobs: list[dict]) -> dict:
    """Per study: jobs, busy job-minutes and share of the wall time (each moment split equally
    among the jobs running then), for jobs with exact start times."""
    timed = [j for j in jobs if j.get("start") is not None and j.get("end") is not None]
    out: dict[str, dict] = {}
    for j in timed:
        st = out.setdefault(_study_of(j.get("output")), {"jobs": 0, "busy_s": 0.0, "wall_share_s": 0.0})
        st["jobs"] += 1
        st["busy_s"] += j["end"] - j["start"]
    events = sorted({t for j in timed for t in (j["start"], j["end"])})
    for a, b in zip(events[:-1], events[1:]):
        running = [j for j in timed if j["start"] <= a and j["end"] >= b]
        for j in running:
            out[_study_of(j.get("output"))]["wall_share_s"] += (b - a) / len(running)
    return dict(sorted(out.items(), key=lambda kv: -kv[1]["busy_s"]))


def collect(smk: Path = REPO / ".snakemake", profile: str = "quick") -> dict:
    """Per-stage times of the latest complete run (of ``profile`` if there is one)."""
    logs = sorted((smk / "log").glob("*.snakemake.log")) if (smk / "log").is_dir() else []
    runs = [parse_log(p) for p in logs]
    complete = [r for r in runs if r["complete"] and not r["failed"] and r["start"]]
    if not complete:
        return {"found": False, "searched": str(smk / "log"), "logs": len(logs)}
    same = [r for r in complete if r["profile"] == profile]
    run = (same or complete)[-1]
    meta = read_metadata(smk)
    jobs = [j for j in run["finished"] if j["rule"] != "all"]
    _match(run, meta)
    exact = all("start" in j for j in jobs)
    total = run["elapsed_s"] or (max(j["end"] for j in run["finished"]) - run["start"])
    in_progress = [r["log"] for r in runs if not r["complete"] and not r["failed"]
                   and r["start"] and r["start"] > run["start"]]
    return {
        "found": True, "log": run["log"], "profile": run["profile"],
        "profile_wanted": profile, "profile_matches": run["profile"] == profile,
        "started": dt.datetime.fromtimestamp(run["start"]).isoformat(timespec="seconds"),
        "command": run["command"], "total_s": total, "jobs_run": len(jobs),
        "jobs_planned": run["planned"],
        "method": "exact (start times from Snakemake metadata)" if exact
        else "approximate (finish events only)",
        "stages": stage_times(run, exact),
        "studies": study_times(jobs) if exact else {},
        "later_incomplete_logs": in_progress,
        "jobs": [{k: j.get(k) for k in ("rule", "start", "end", "output")} for j in jobs],
    }


def peak_memory(info: dict, data_root: str | None) -> dict:
    """Re-run the longest probe-notebook job of the run into a temp folder under
    ``/usr/bin/time -v``; return its maximum resident set size."""
    probes = [j for j in info.get("jobs", []) if j["rule"] == "probe_notebook" and j.get("output")
              and j.get("start")]
    if probes:
        job = max(probes, key=lambda j: j["end"] - j["start"])
        parts = Path(job["output"]).parts
        i = parts.index("runs")
        study, config = parts[i + 1], parts[i + 2]
    else:  # no start times: the executed notebook with the longest papermill duration
        best = None
        for nb in (REPO / "book" / "runs").glob("*/*/q2.ipynb"):
            try:
                dur = json.loads(nb.read_text())["metadata"]["papermill"]["duration"] or 0.0
            except (OSError, KeyError, ValueError, TypeError):
                continue
            if best is None or dur > best[0]:
                best = (dur, nb.parent.parent.name, nb.parent.name)
        if best is None:
            return {"measured": False, "why": "no probe notebook found in that run or book/runs"}
        _, study, config = best
    root = data_root or os.environ.get("LANDSCAPE_DATA") or str(REPO.parent / "shared" / "data")
    with tempfile.TemporaryDirectory() as tmp:
        cmd = ["/usr/bin/time", "-v", sys.executable, "-m", "papermill", "--no-progress-bar",
               "--log-level", "WARNING", str(REPO / "notebooks" / "q2_landscape.ipynb"),
               f"{tmp}/q2.ipynb", "-p", "study", study, "-p", "config", config,
               "-p", "profile", info["profile"], "-p", "data_root", root, "-p", "out_dir", tmp]
        env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1",
                   PATH=f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}")
        p = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", p.stderr)
    w = re.search(r"Elapsed \(wall clock\) time.*: ([\d:.]+)", p.stderr)
    if p.returncode != 0 or not m:
        return {"measured": False, "why": f"papermill exited {p.returncode}: "
                                          f"{p.stderr.strip().splitlines()[-1:] or ''}"}
    return {"measured": True, "job": f"probe_notebook {study}/{config}", "max_rss_mb":
            int(m.group(1)) / 1024, "wall": w.group(1) if w else None}


def row_and_details(smk: Path, profile: str = "quick", with_memory: bool = False,
                    data_root: str | None = None):
    from benchmarks.common import Row, spread

    info = collect(smk, profile)
    if with_memory and info.get("found"):
        info["memory"] = peak_memory(info, data_root)
    if not info["found"]:
        return Row(benchmark="5 pipeline", case="end-to-end `quick` profile, per stage",
                   ours=f"no complete Snakemake run in {info['searched']}",
                   baseline=f"budget {BUDGET_S // 60} min", ratio_def="wall time / budget",
                   ratio=spread([]), target="<= 1").judge(), info
    st = info["stages"]
    parts = ", ".join(f"{k} {v['wall_share_s'] / 60:.1f}" for k, v in st.items())
    mem = info.get("memory", {})
    mem_txt = (f"; peak RSS of one probe job {mem['max_rss_mb']:.0f} MB" if mem.get("measured")
               else "")
    note = (f"run of {info['started']}, {info['jobs_run']} jobs; {info['method']}; "
            "jobs whose outputs already existed are not in a run")
    row = Row(benchmark="5 pipeline",
              case=f"end-to-end `{info['profile']}` profile, 2 cores, per stage (min)",
              ours=f"{info['total_s'] / 60:.1f} min total ({parts}){mem_txt}",
              baseline=f"budget {BUDGET_S // 60} min", ratio_def="wall time / budget",
              ratio=spread([info["total_s"] / BUDGET_S]), target="<= 1", note=note).judge()
    if not info["profile_matches"]:
        row.met = "n/a"
        row.note = f"no complete `{profile}` run yet: this is a `{info['profile']}` run; " + note
    return row, info


def main(argv=None) -> None:
    from benchmarks import report

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--snakemake-dir", type=Path, default=REPO / ".snakemake")
    ap.add_argument("--profile", default="quick")
    ap.add_argument("--with-memory", action="store_true")
    ap.add_argument("--data-root", default=None)
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks",
                    help="folder of results.json/results.md to update")
    ap.add_argument("--readme", type=Path, default=None)
    ap.add_argument("--page", type=Path, default=None)
    a = ap.parse_args(argv)
    row, info = row_and_details(a.snakemake_dir, a.profile, a.with_memory, a.data_root)
    print(json.dumps({k: v for k, v in info.items() if k != "jobs"}, indent=2, default=str))
    res_path = a.out / "results.json"
    results = json.loads(res_path.read_text()) if res_path.exists() else report.empty()
    results["rows"] = [r for r in results["rows"] if r["benchmark"] != row.benchmark] + [row.as_dict()]
    results["details"]["pipeline"] = info
    readme = a.readme or (REPO / "README.md" if a.out.resolve() == (REPO / "benchmarks").resolve() else None)
    page = a.page or (REPO / "book" / "appendix" / "benchmarks.md"
                      if a.out.resolve() == (REPO / "benchmarks").resolve() else None)
    report.write_all(results, a.out, readme, page)


if __name__ == "__main__":
    main()
