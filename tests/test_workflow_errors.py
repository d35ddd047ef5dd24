"""The workflow refuses a bad study, a bad profile, a malformed study file and missing data with
one line and exit status 2, before anything is written."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _snakemake(tmp_path, *config, configs=None):
    env = dict(os.environ, LANDSCAPE_ARTEFACTS=str(tmp_path / "artefacts"), LANDSCAPE_OFFLINE="1")
    if configs:
        env["LANDSCAPE_CONFIGS"] = str(configs)
    return subprocess.run([sys.executable, "-m", "snakemake", "-s", str(REPO / "workflow" / "Snakefile"),
                           "--cores", "1", "--dry-run", "--config", *config],
                          capture_output=True, text=True, env=env, cwd=REPO)


@pytest.mark.parametrize("config,expected", [
    (["studies=[nope]"], "study = 'nope' is not one of"),
    (["studies=[../../etc]"], "is not a valid name"),
    (["profile=huge"], "profile = 'huge' is not one of"),
    (["data_root=/nonexistent/data"], "not found under /nonexistent/data"),
])
def test_bad_workflow_input_is_one_line_and_writes_nothing(tmp_path, config, expected):
    out = _snakemake(tmp_path, *config)
    lines = (out.stdout + out.stderr).strip().splitlines()
    assert out.returncode == 2, out.stdout + out.stderr
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0]
    assert not (tmp_path / "artefacts").exists()


def test_malformed_study_file_stops_the_workflow(tmp_path):
    configs = tmp_path / "configs"
    shutil.copytree(REPO / "configs", configs)
    (configs / "studies" / "fmnist-batchnorm.yaml").write_text("name: fmnist-batchnorm\nconfigs: [unclosed\n")
    out = _snakemake(tmp_path, configs=configs)
    assert out.returncode == 2
    assert (out.stdout + out.stderr).strip().count("\n") == 0 and "is not valid YAML" in out.stderr
