"""Provenance: pooled records, caption lines, figures and artefacts that carry them, and the
``stamp`` command that writes them into an executed notebook's metadata."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import matplotlib
import nbformat
import pytest

from landscape import report
from landscape.store import write_json

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
A = {"study": "s1", "profile": "quick", "keys": ["aaaaaaaaaaaa", "bbbbbbbbbbbb"], "git_commit": "c0ffee",
     "landscape": "0.2.0", "torch": "2.5", "eval_subset": 1000, "hessian_subset": 500, "bn_mode": "eval"}
B = dict(A, study="s2", keys=["cccccccccccc"], eval_subset=256, hessian_subset=64)


@pytest.fixture(autouse=True)
def fresh_sources(monkeypatch):
    monkeypatch.setattr(report, "_SOURCES", [])


def test_pooling_keeps_agreed_fields_and_lists_the_rest():
    p = report.pool_provenance([A, B, A])
    assert p["keys"] == ["aaaaaaaaaaaa", "bbbbbbbbbbbb", "cccccccccccc"]
    assert p["studies"] == ["s1", "s2"] and "study" not in p
    assert p["git_commit"] == "c0ffee" and p["bn_mode"] == "eval"
    assert p["eval_subset"] == [1000, 256] and p["hessian_subset"] == [500, 64]
    assert report.pool_provenance([]) == {}


def test_caption_names_runs_commit_versions_subsets_and_bn_mode():
    text = report.caption(report.pool_provenance([A, B]))
    for part in ("aaaaaaaaaaaa, bbbbbbbbbbbb, cccccccccccc", "commit c0ffee", "landscape 0.2.0",
                 "torch 2.5", "profile quick", "probe subset 1000/256", "(Hessian 500/64)", "BN eval mode"):
        assert part in text, part
    assert "of each run's own training examples" in text
    stated = report.caption(dict(A, stop_loss=0.05, max_epochs=12, bn_stats="recomputed"))
    assert "trained to loss ≤ 0.05 or 12 epochs" in stated  # the training state it was measured at
    assert "BN eval mode, running statistics recomputed on the probe subset" in stated
    many = dict(A, keys=[f"{i:012x}" for i in range(10)])
    assert "+4 more" in report.caption(many) and "\n" not in report.caption(many)


def test_artefacts_read_become_sources_and_artefacts_written_carry_them(tmp_path):
    write_json(tmp_path / "probes.json", {"provenance": A, "lambda_max": [1.0]})
    assert report.current_provenance() == {}
    report.read_artefact(tmp_path, "probes")
    report.write_artefact(tmp_path, "pooled", {"tau": 0.1})
    out = report.read_artefact(tmp_path, "pooled")
    assert out["provenance"]["keys"] == A["keys"] and out["tau"] == 0.1
    own = dict(B)
    report.write_artefact(tmp_path, "own", {"provenance": own})  # a payload's own record wins
    assert report.read_artefact(tmp_path, "own")["provenance"] == own


def test_saved_figure_has_the_caption_line_and_the_full_record_in_the_png(tmp_path):
    from PIL import Image

    report._SOURCES.append(A)
    fig, ax = plt.subplots()
    ax.plot([0, 1], [0, 1])
    path = report.save_figure(fig, tmp_path, "line")
    assert json.loads(Image.open(path).text["landscape:provenance"]) == report.current_provenance()
    line = report.caption(report.current_provenance())
    assert any(line == t.get_text().replace("\n", " ") for t in fig.texts)  # wrapped to the width
    assert Image.open(path).size[0] <= 6.4 * 110 + 20  # the caption does not widen the image
    plt.close(fig)


def _cli(*args, cwd):
    env = dict(os.environ, PYTHONPATH=str(REPO / "lib"))
    return subprocess.run([sys.executable, "-m", "landscape", *args], cwd=cwd, env=env,
                          capture_output=True, text=True)


def test_stamp_writes_the_artefacts_record_into_the_notebook_metadata(tmp_path):
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("1 + 1")])
    nbformat.write(nb, tmp_path / "q.ipynb")
    write_json(tmp_path / "q.json", {"provenance": A})
    out = _cli("stamp", "q.ipynb", "q.json", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    meta = nbformat.read(tmp_path / "q.ipynb", 4).metadata
    assert meta["landscape"]["provenance"] == A
    assert nbformat.read(tmp_path / "q.ipynb", 4).cells[0].source == "1 + 1"


@pytest.mark.parametrize("artefact, why", [
    ({"tau": 1}, "holds no provenance record"),
    (None, "unreadable artefact"),
    ("missing", "No such file"),
])
def test_stamp_refuses_an_artefact_without_a_sound_record_in_one_line(tmp_path, artefact, why):
    nbformat.write(nbformat.v4.new_notebook(), tmp_path / "q.ipynb")
    before = (tmp_path / "q.ipynb").read_bytes()
    if artefact is None:
        write_json(tmp_path / "q.json", {"provenance": A})
        (tmp_path / "q.json").write_text((tmp_path / "q.json").read_text()[:-20])  # truncated
    elif artefact != "missing":
        write_json(tmp_path / "q.json", artefact)
    out = _cli("stamp", "q.ipynb", "q.json", cwd=tmp_path)
    assert out.returncode == 2 and out.stderr.count("\n") == 1 and out.stderr.startswith("error: ")
    assert why.lower() in out.stderr.lower(), out.stderr
    assert (tmp_path / "q.ipynb").read_bytes() == before


def test_missing_probes_counts_absent_stale_and_corrupt_artefacts(tmp_path):
    from landscape.config import load_study

    configs = list(load_study("fmnist-batchnorm", "smoke").configs)
    assert report.missing_probes("smoke", ["fmnist-batchnorm"], tmp_path) == [
        f"book/runs/fmnist-batchnorm/{c}/probes.json" for c in configs]
    for c in configs:
        write_json(tmp_path / "fmnist-batchnorm" / c / "probes.json", {"provenance": dict(A, profile="smoke")})
    assert report.missing_probes("smoke", ["fmnist-batchnorm"], tmp_path) == []
    assert len(report.missing_probes("quick", ["fmnist-batchnorm"], tmp_path)) == len(configs)  # stale
    bad = tmp_path / "fmnist-batchnorm" / configs[0] / "probes.json"
    bad.write_text(bad.read_text().replace("smoke", "smoky"))  # edited: checksum fails
    assert report.missing_probes("smoke", ["fmnist-batchnorm"], tmp_path) == [
        f"book/runs/fmnist-batchnorm/{configs[0]}/probes.json"]
