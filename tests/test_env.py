"""The project's install files agree: environment.yml installs exactly pyproject.toml's extras."""
from __future__ import annotations

import re
import tomllib
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def test_environment_yml_installs_the_package_with_pyprojects_extras():
    env = yaml.safe_load((REPO / "environment.yml").read_text())
    proj = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)
    editable = [p for p in pip if p.startswith("-e .")]
    assert editable, "environment.yml must install the project itself (-e .[...])"
    extras = set(re.search(r"\[(.*)\]", editable[0]).group(1).split(","))
    assert extras == set(proj["optional-dependencies"]), "extras drifted"
    # nothing else is pinned on the side: every other pip line would be a second source of truth
    assert pip == editable
    conda = [d for d in env["dependencies"] if isinstance(d, str)]
    py = next(d for d in conda if d.startswith("python"))
    major_minor = py.split("=")[1]
    low = re.search(r">=\s*([\d.]+)", proj["requires-python"]).group(1)
    assert tuple(map(int, major_minor.split("."))) >= tuple(map(int, low.split(".")))


def test_pyproject_pins_what_the_design_requires():
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    flat = deps["dependencies"] + sum(deps["optional-dependencies"].values(), [])
    assert "hessian-eigenthings==1.0.0a5" in flat
    assert any(d.startswith("jupyter-book>=1") and "<2" in d for d in flat)
    assert "torch" in flat and not any(d.startswith("torch=") for d in flat)  # unpinned on purpose
    for name in ("torchvision", "papermill", "nbclient", "matplotlib", "seaborn", "pandas",
                 "loss-landscapes==3.0.6", "tqdm", "pyyaml", "pytest"):
        assert any(d.startswith(name) for d in flat), name
    assert any(d.startswith("snakemake") for d in flat)


def test_book_toc_is_the_top_level_one():
    link = REPO / "book" / "_toc.yml"
    assert link.is_symlink() and link.resolve() == (REPO / "_toc.yml").resolve()
