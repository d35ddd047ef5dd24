"""The benchmark harness end to end in its smoke mode: every benchmark yields a row with a ratio,
the results table and JSON are written, the README's bench section is replaced (not appended
twice) and the book page includes the generated table. Speed targets are *not* asserted here:
they are measurements, reported in the benchmark's own output."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
BENCHMARKS = ["1 surface", "2 top eigenvalue", "3 training", "4 HVP / gradient", "5 pipeline"]

LOG = """Assuming unrestricted shared filesystem usage.
  Date: 2026-01-02 10:00:00
  Command: /x/snakemake/__main__.py -s workflow/Snakefile --cores 2 --config profile=quick --quiet rules
Job stats:
job               count
--------------  -------
train                 2
probe_notebook        1
book                  1
all                   1
total                 5

[Fri Jan 02 10:01:00 2026]
Finished jobid: 3 (Rule: train)
1 of 5 steps (20%) done
[Fri Jan 02 10:01:30 2026]
Finished jobid: 4 (Rule: train)
2 of 5 steps (40%) done
[Fri Jan 02 10:03:00 2026]
Finished jobid: 2 (Rule: probe_notebook)
3 of 5 steps (60%) done
[Fri Jan 02 10:03:10 2026]
Finished jobid: 1 (Rule: book)
4 of 5 steps (80%) done
[Fri Jan 02 10:03:10 2026]
Finished jobid: 0 (Rule: all)
5 of 5 steps (100%) done
Complete log(s): /x/.snakemake/log/2026-01-02T100000.000000.snakemake.log
Elapsed time: 0:03:10.5
"""


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory, data_root):
    tmp = tmp_path_factory.mktemp("bench")
    (tmp / "smk" / "log").mkdir(parents=True)
    (tmp / "smk" / "log" / "2026-01-02T100000.000000.snakemake.log").write_text(LOG)
    readme = tmp / "README.md"
    readme.write_text("# A project\n\nSome text.\n")
    out = tmp / "out"
    cmd = [sys.executable, "-m", "benchmarks", "--smoke", "--out", str(out), "--readme", str(readme),
           "--page", str(tmp / "book" / "appendix" / "benchmarks.md"), "--data-root", str(data_root),
           "--snakemake-dir", str(tmp / "smk")]
    first = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stderr[-3000:]
    # again, one benchmark only: the README section must be replaced, not added a second time,
    # and the other benchmarks' rows are kept from results.json
    again = subprocess.run(cmd + ["--only", "pipeline"], cwd=REPO, capture_output=True, text=True,
                           timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    return {"tmp": tmp, "out": out, "readme": readme, "stdout": first.stdout + again.stdout}


def test_every_benchmark_has_a_row_with_a_ratio(smoke_run):
    res = json.loads((smoke_run["out"] / "results.json").read_text())
    assert sorted({r["benchmark"] for r in res["rows"]}) == BENCHMARKS
    for row in res["rows"]:
        r = row["ratio"]
        assert r["median"] is not None and r["min"] <= r["median"] <= r["max"], row
        assert row["met"] in ("yes", "median only", "no", "n/a")
    assert res["machine"]["cpu_count"] and res["machine"]["torch"] and res["machine"]["date"]


def test_results_table_is_written_with_a_ratio_per_benchmark(smoke_run):
    md = (smoke_run["out"] / "results.md").read_text()
    header = "| benchmark | case | ours | baseline | ratio | min / median / max | target | met? |"
    assert header in md
    rows = [ln for ln in md.splitlines() if ln.startswith("| ") and ln.split(" | ")[0][2:] in
            {b for b in BENCHMARKS}]
    assert {ln.split(" | ")[0][2:] for ln in rows} == set(BENCHMARKS)
    for ln in rows:
        assert ln.split(" | ")[5].count(" / ") == 2, ln  # min / median / max
    assert header in smoke_run["stdout"]


def test_readme_bench_section_is_replaced_not_duplicated(smoke_run):
    text = smoke_run["readme"].read_text()
    assert text.startswith("# A project\n\nSome text.\n")
    assert text.count("<!-- bench:start -->") == 1 and text.count("<!-- bench:end -->") == 1
    assert text.count("## Benchmarks") == 1
    inside = text.split("<!-- bench:start -->")[1].split("<!-- bench:end -->")[0]
    assert "| 1 surface |" in inside and "| 5 pipeline |" in inside


def test_book_page_includes_the_generated_table(smoke_run):
    page = (smoke_run["tmp"] / "book" / "appendix" / "benchmarks.md").read_text()
    assert "```{include} ../../out/results.md" in page
    assert "orphan: true" in page


def test_pipeline_times_read_from_the_snakemake_log(smoke_run):
    res = json.loads((smoke_run["out"] / "results.json").read_text())
    p = res["details"]["pipeline"]
    assert p["found"] and p["profile"] == "quick" and p["total_s"] == pytest.approx(190.5)
    assert p["method"].startswith("approximate")  # no metadata in the fixture: finish events only
    assert [p["stages"][k]["jobs"] for k in ("train", "probes", "book")] == [2, 1, 1]
    assert p["stages"]["train"]["wall_share_s"] == pytest.approx(90.0)  # 10:00:00 -> 10:01:30
