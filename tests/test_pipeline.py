"""End to end: the smoke profile through Snakemake, papermill and Jupyter Book, in a clean copy."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import copy_repo
from landscape.stats import fmt, summarize
from landscape.store import read_json

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def built(tmp_path_factory, data_root):
    """Copy the repository's files (tracked and new, not ignored) and run the whole pipeline."""
    dst = copy_repo(tmp_path_factory.mktemp("repo"))
    env = dict(os.environ, PYTHONPATH=str(dst / "lib"), LANDSCAPE_DATA=str(data_root),
               PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    env.pop("LANDSCAPE_ARTEFACTS", None)
    env.pop("LANDSCAPE_CONFIGS", None)
    cmd = [sys.executable, "-m", "snakemake", "-s", "workflow/Snakefile", "--cores", "2",
           "--config", "profile=smoke", "--quiet", "rules"]
    out = subprocess.run(cmd, cwd=dst, env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-6000:]
    again = subprocess.run(cmd + ["--dry-run"], cwd=dst, env=env, capture_output=True, text=True)
    return dst, again


def test_site_is_built_with_the_results_page(built):
    dst, _ = built
    assert (dst / "_build" / "html" / "index.html").exists()
    assert (dst / "_build" / "html" / "results" / "fmnist-batchnorm.html").exists()


def test_results_page_shows_the_glued_numbers_of_the_runs(built):
    dst, _ = built
    html = (dst / "_build" / "html" / "results" / "fmnist-batchnorm.html").read_text()
    for config in ("bn", "nobn"):
        probes = read_json(dst / "book" / "runs" / "fmnist-batchnorm" / config / "probes.json")
        assert len(probes["lambda_max"]) == 2 and all(v > 0 for v in probes["lambda_max"])
        assert fmt(summarize(probes["lambda_max"])) in html
        assert fmt(summarize(probes["test_acc"]), 4) in html
    assert "57.18" in html  # the write-up's number beside ours, from the study config
    assert "pasted-text" in html and "glue_ref" not in html


def test_every_figure_on_the_results_page_exists(built):
    dst, _ = built
    page = dst / "_build" / "html" / "results" / "fmnist-batchnorm.html"
    srcs = re.findall(r'<img[^>]+src="([^"]+)"', page.read_text())
    assert len(srcs) >= 3
    for src in srcs:
        assert (page.parent / src).resolve().is_file(), src


PROVENANCE_FIELDS = ("keys", "git_commit", "landscape", "torch", "eval_subset", "hessian_subset", "bn_mode")


def test_every_executed_notebook_and_figure_carries_its_provenance(built):
    import json

    import nbformat
    from PIL import Image

    dst, _ = built
    runs = dst / "book" / "runs"
    notebooks = sorted(runs.rglob("*.ipynb"))
    assert len(notebooks) >= 30  # 26 configurations, 5 summaries, 3 questions, the run list
    for nb_path in notebooks:
        prov = nbformat.read(str(nb_path), 4).metadata.get("landscape", {}).get("provenance")
        assert prov and all(f in prov for f in PROVENANCE_FIELDS), nb_path
        assert prov["keys"] and prov["profile"] == "smoke" and prov["bn_mode"] == "eval", nb_path
    q2 = nbformat.read(str(runs / "fmnist-batchnorm" / "bn" / "q2.ipynb"), 4).metadata["landscape"]["provenance"]
    assert q2["keys"] == [r["key"] for r in map(json.loads, subprocess.run(
        [sys.executable, "-m", "landscape", "runs", "--study", "fmnist-batchnorm", "--profile", "smoke"],
        cwd=dst, capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=str(dst / "lib"))
    ).stdout.splitlines()) if r["config"] == "bn"]
    figures = sorted(runs.rglob("*.png"))
    assert len(figures) >= 20
    for png in figures:
        prov = json.loads(Image.open(png).text["landscape:provenance"])
        assert all(f in prov for f in PROVENANCE_FIELDS), png
    # and the caption line on the pages: run hashes and commit beside the numbers
    for page in ("questions/q3-measures.html", "results/fmnist-batchnorm.html"):
        html = (dst / "_build" / "html" / page).read_text()
        assert re.search(r"runs [0-9a-f]{12}, [0-9a-f]{12}.* · commit \w+ · landscape ", html), page


def test_mathjax_is_served_by_the_site(built):
    dst, _ = built
    html = (dst / "_build" / "html" / "intro.html").read_text()  # index.html redirects here
    assert "_static/mathjax/tex-svg.js" in html and "cdn.jsdelivr" not in html
    assert (dst / "_build" / "html" / "_static" / "mathjax" / "tex-svg.js").stat().st_size > 1e6


def test_second_run_with_nothing_changed_does_nothing(built):
    _, again = built
    assert again.returncode == 0, again.stderr[-3000:]
    assert "Nothing to be done" in again.stdout + again.stderr


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _pages(html_root: Path) -> list[Path]:
    skip = {"genindex.html", "search.html", "index.html"}  # index.html only redirects to intro.html
    return sorted(p for p in html_root.rglob("*.html") if p.name not in skip and "_static" not in p.parts
                  and "_sources" not in p.parts)


def test_pages_render_in_a_browser_with_math_images_and_links(built):
    """Every page of the smoke site in headless Chromium: MathJax typesets every formula (no TeX
    error, no raw TeX left in the text), every image loads, every internal link resolves."""
    if CHROMIUM is None:
        pytest.fail("Debian's chromium is needed for this test (make setup installs it)")
    sync_api = pytest.importorskip("playwright.sync_api")
    dst, _ = built
    root = dst / "_build" / "html"
    pages = _pages(root)
    assert len(pages) >= 10
    problems = []
    math_pages = 0
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=[
            "--no-sandbox", "--disable-gpu", "--disable-quic", "--disable-background-networking",
            "--disable-component-update", "--disable-sync"])
        page = browser.new_page()
        for html in pages:
            page.goto(html.as_uri())
            has_math = page.evaluate("document.querySelectorAll('.math').length") > 0
            if has_math:
                math_pages += 1
                page.wait_for_function("window.MathJax && MathJax.startup && MathJax.startup.promise", timeout=30000)
                page.evaluate("MathJax.startup.promise")
                n_typeset = page.evaluate("document.querySelectorAll('mjx-container').length")
                n_math = page.evaluate("document.querySelectorAll('.math').length")
                if n_typeset < n_math:
                    problems.append(f"{html.name}: {n_typeset} of {n_math} formulas typeset")
                if page.evaluate("document.querySelectorAll('mjx-merror').length"):
                    problems.append(f"{html.name}: MathJax error")
            text = page.evaluate("""() => { const b = document.querySelector('article') || document.body;
                if (!b) return '';
                const c = b.cloneNode(true); c.querySelectorAll('pre, code, mjx-container, script').forEach(e => e.remove());
                return c.innerText; }""")
            for raw in ("$$", "\\frac", "\\begin{", "\\mathbb", "{glue", "{prf:", "{cite}"):
                if raw in text:
                    problems.append(f"{html.name}: raw text {raw!r} left on the page")
            # the site is read offline: only its own images must load (the Colab badge is remote)
            broken = page.evaluate("[...document.images].filter(i => i.src.startsWith('file:'))"
                                   ".filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.src)")
            problems += [f"{html.name}: image does not load: {src}" for src in broken]
            for href in page.evaluate("[...document.querySelectorAll('a[href]')].map(a => a.getAttribute('href'))"):
                if href.startswith(("http:", "https:", "mailto:", "#", "javascript:")):
                    continue
                target = (html.parent / href.split("#")[0]).resolve()
                if href.split("#")[0] and not target.exists():
                    problems.append(f"{html.name}: broken link {href}")
        browser.close()
    assert math_pages >= 5
    assert not problems, "\n".join(problems[:30])


def test_a_pooled_notebook_outside_the_workflow_computes_only_what_is_missing(built):
    """What the Colab cell of the pooled notebooks does: ``ensure_probes`` reruns the workflow for
    the missing per-configuration artefacts only (here one deleted file), then nothing."""
    dst, _ = built
    target = dst / "book" / "runs" / "sgd-noise" / "lr01-b1024" / "probes.json"
    other = dst / "book" / "runs" / "sgd-noise" / "lr01-b16" / "probes.json"
    before = other.stat().st_mtime_ns
    target.unlink()
    code = ("from landscape import report; print(report.missing_probes('smoke', ['sgd-noise']));"
            "print(report.ensure_probes('smoke', ['sgd-noise'], cores=1));"
            "print(report.missing_probes('smoke', ['sgd-noise']))")
    env = dict(os.environ, PYTHONPATH=str(dst / "lib"), PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}")
    out = subprocess.run([sys.executable, "-c", code], cwd=dst, env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
    lines = out.stdout.strip().splitlines()
    assert lines[0] == "['book/runs/sgd-noise/lr01-b1024/probes.json']" and lines[-1] == "[]"
    assert lines[-2] == str(dst / "book" / "runs")
    assert read_json(target)["provenance"]["profile"] == "smoke"
    assert other.stat().st_mtime_ns == before  # nothing else recomputed
