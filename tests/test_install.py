"""The library installs as users expect: ``pip install .`` alone gives a working ``landscape``.

The core dependencies (``[project] dependencies`` of pyproject.toml) are what the library
modules import; the report's modules (``REPORT_MODULES``) may import the ``report`` extra too,
and the benchmarks' anchors (the ``bench`` extra) are imported by benchmarks/ and tests/ only.
Two checks: a static one (``ast``: every import of every module, at module level or inside a
function, mapped to the distribution that provides it), fast and exhaustive; and an end-to-end
one that builds the wheel, installs it with ``--no-deps`` into a fresh virtual environment and
runs the probes with nothing on the path but the core distributions (and, first, only those the
probes need: torch, numpy, scipy, tqdm and hessian-eigenthings), each linked from this
environment -- what ``pip install`` would resolve, without a network.
"""
from __future__ import annotations

import ast
import functools
import importlib.metadata as md
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[1]
LIB = REPO / "lib" / "landscape"
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
PROJECT = PYPROJECT["project"]

# Modules that serve the report (notebooks, book, pipeline): they may need the `report` extra.
REPORT_MODULES = {"plots", "correlation", "multiplicity", "report", "stamp", "launch"}
# What the probes alone (landscape.probes and landscape's lazy names for them) need.
PROBE_DISTS = ["torch", "numpy", "scipy", "tqdm", "hessian-eigenthings"]


def _names(reqs: list[str]) -> set[str]:
    return {canonicalize_name(Requirement(r).name) for r in reqs}


CORE = _names(PROJECT["dependencies"])
EXTRAS = {k: _names(v) for k, v in PROJECT["optional-dependencies"].items()}


def _closure(names) -> frozenset[str]:
    """The distributions ``names`` need, installed here (requirements' markers evaluated)."""
    return _closure_of(frozenset(canonicalize_name(n) for n in names))


@functools.lru_cache(maxsize=None)
def _closure_of(names: frozenset[str]) -> frozenset[str]:
    seen: set[str] = set()
    todo = [canonicalize_name(n) for n in names]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        for r in md.distribution(name).requires or []:
            req = Requirement(r)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(canonicalize_name(req.name))
    return frozenset(seen)


def _module_name(path: Path) -> str:
    parts = path.relative_to(LIB.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _module_level(tree: ast.Module):
    """The statements run on import (not those inside functions or classes)."""
    todo = list(tree.body)
    while todo:
        node = todo.pop()
        yield node
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            todo += [c for c in ast.iter_child_nodes(node) if isinstance(c, ast.stmt)]


def _imports(path: Path, module_level: bool = False) -> tuple[set[str], set[str]]:
    """(third-party top-level names, landscape modules) imported in ``path``: anywhere, or only
    by the statements that run on import."""
    here = _module_name(path).split(".")
    package = here if path.name == "__init__.py" else here[:-1]
    external, internal = set(), set()
    tree = ast.parse(path.read_text())
    for node in (_module_level(tree) if module_level else ast.walk(tree)):
        if isinstance(node, ast.Import):
            mods = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = ".".join(package[: len(package) - node.level + 1])
                mods = [f"{base}.{node.module}" if node.module else base]
                if not node.module:
                    mods += [f"{base}.{a.name}" for a in node.names]
            else:
                mods = [node.module]
        else:
            continue
        for m in mods:
            if m.split(".")[0] == "landscape":
                internal.add(m)
            elif m.split(".")[0] not in sys.stdlib_module_names:
                external.add(m.split(".")[0])
    return external, internal


@functools.lru_cache(maxsize=1)
def _packages() -> dict[str, list[str]]:
    return md.packages_distributions()


def _distributions_of(top: str) -> set[str]:
    dists = _packages().get(top)
    assert dists, f"no installed distribution provides the module {top!r}"
    return {canonicalize_name(d) for d in dists}


MODULES = sorted(LIB.rglob("*.py"))
LIBRARY = [p for p in MODULES if p.relative_to(LIB).parts[0].removesuffix(".py") not in REPORT_MODULES]


@pytest.mark.parametrize("path", LIBRARY, ids=[_module_name(p) for p in LIBRARY])
def test_library_module_imports_only_core_dependencies(path):
    external, _ = _imports(path)
    for top in sorted(external):
        assert _distributions_of(top) & CORE, (
            f"{_module_name(path)} imports {top!r}, which no core dependency provides (directly): add it to "
            "[project] dependencies, import it in a report module, or move the module to the report")
    # on import; a command that serves the report (cli's `workflow`, `stamp`) imports its module
    # when it runs
    _, internal = _imports(path, module_level=True)
    report = {m for m in internal if m.split(".")[1:2] and m.split(".")[1] in REPORT_MODULES}
    assert not report, f"{_module_name(path)} imports report modules {sorted(report)} on import"


@pytest.mark.parametrize("name", sorted(REPORT_MODULES))
def test_report_module_imports_only_core_and_report_dependencies(name):
    external, _ = _imports(LIB / f"{name}.py")
    allowed = _closure(CORE | EXTRAS["report"])
    for top in sorted(external):
        assert _distributions_of(top) & allowed, f"landscape.{name} imports {top!r}"


def test_lazy_public_names_come_from_library_modules():
    tree = ast.parse((LIB / "__init__.py").read_text())
    lazy = next(n.value for n in tree.body if isinstance(n, ast.Assign)
                and getattr(n.targets[0], "id", "") == "_LAZY")
    modules = {ast.literal_eval(v)[0] for v in lazy.values}
    assert modules and not modules & REPORT_MODULES


def test_benchmark_anchors_are_an_extra_used_only_by_benchmarks_and_tests():
    assert EXTRAS["bench"] == {"loss-landscapes"}
    assert not EXTRAS["bench"] & CORE
    users = set()
    for folder in ("lib", "benchmarks", "tests", "scripts", "workflow"):
        for path in (REPO / folder).rglob("*.py"):
            if "loss_landscapes" in _top_imports(path):
                users.add(folder)
    assert users and users <= {"benchmarks", "tests"}, users


def _top_imports(path: Path) -> set[str]:
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            out.add(node.module.split(".")[0])
    return out


def test_distribution_name_is_not_the_taken_pypi_name():
    # `landscape` on PyPI is another project (a terminal landscape generator) that also installs
    # a top-level `landscape` package; ours is installed under its own distribution name.
    assert canonicalize_name(PROJECT["name"]) != "landscape"
    assert PYPROJECT["build-system"]["requires"] == ["setuptools>=77"]  # PEP 639 `license = "MIT"`


def test_repository_url_is_configured_once():
    """_config.yml's `repository` is the source; pyproject, the README's install line and every
    notebook's Colab badge and clone cell agree with it."""
    repo = yaml.safe_load((REPO / "_config.yml").read_text())["repository"]
    url, branch = repo["url"].rstrip("/"), repo["branch"]
    assert PROJECT["urls"]["Repository"] == url
    slug = url.removeprefix("https://github.com/")
    readme = (REPO / "README.md").read_text()
    installs = re.findall(r"git\+(https://[^\s\"'`]+)", readme)
    assert installs and all(u.rstrip("/") == url for u in installs), (installs, url)
    badges = 0
    for nb in sorted((REPO / "notebooks").glob("*.ipynb")):
        text = "\n".join("".join(c["source"]) for c in json.loads(nb.read_text())["cells"])
        for badge in re.findall(r"https://colab\.research\.google\.com/github/[^)\s\"']+", text):
            assert badge == f"https://colab.research.google.com/github/{slug}/blob/{branch}/notebooks/{nb.name}"
            badges += 1
        for clone in re.findall(r"git clone[^\n]*?(https://\S+?)(?=[\s\"'])", text):
            assert clone.rstrip("/") == url, f"{nb.name} clones {clone}"
    assert badges


# --- end to end: the wheel in a fresh environment -------------------------------------------

def _link_distributions(names: set[str], dst: Path) -> None:
    """A folder holding exactly the files of ``names`` (links to this environment's copies)."""
    dst.mkdir()
    for name in sorted(names):
        dist = md.distribution(name)
        assert dist.files, f"{name}: no RECORD, cannot tell its files"
        for top in {f.parts[0] for f in dist.files if f.parts[0] != ".."}:
            src, link = Path(dist.locate_file(top)), dst / top
            if src.exists() and not link.exists():
                link.symlink_to(src)


PROBES_ONLY = r"""
import importlib.util, sys
import landscape as ls
assert ls.__file__.startswith(sys.prefix), ls.__file__  # the installed wheel, not the clone
for absent in ("torchvision", "yaml", "pandas", "matplotlib", "loss_landscapes", "snakemake"):
    assert importlib.util.find_spec(absent) is None, absent
import numpy as np, torch
from torch.func import functional_call
torch.manual_seed(0)
model = torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.Tanh(), torch.nn.Linear(6, 3)).double()
x, y = torch.randn(32, 4, dtype=torch.float64), torch.randint(0, 3, (32,))
data = [(x, y)]
names = [n for n, _ in model.named_parameters()]
shapes = [p.shape for p in model.parameters()]
def loss_of(w):  # the loss as a function of the flat parameters, in flatten_params order
    ps, i = {}, 0
    for n, s in zip(names, shapes):
        ps[n] = w[i:i + s.numel()].view(s)
        i += s.numel()
    return torch.nn.functional.cross_entropy(functional_call(model, ps, (x,)), y)
dense = torch.linalg.eigvalsh(torch.autograd.functional.hessian(loss_of, ls.flatten_params(model)))
spec = ls.hessian_eigenvalues(model, data, k=2)
assert spec.converged and np.allclose(spec.values, dense[-2:].numpy(), rtol=1e-6, atol=1e-9), (spec, dense)
assert ls.count_params(model) == dense.numel()
trace = ls.hessian_trace(model, data, n_probes=12)  # Hutch++ through hessian-eigenthings
assert np.isfinite(trace.value) and trace.n_hvp == 12
dx, dy = ls.random_plane(model, seed=0)
z = ls.loss_surface(model, data, [dx, dy], (np.linspace(-0.5, 0.5, 3), np.linspace(-0.5, 0.5, 3)))
assert z.shape == (3, 3) and abs(z[1, 1] - ls.evaluate_loss(model, data)) < 1e-6
assert ls.sharpness(model, data, rho=0.01, steps=2) >= 0
assert set(ls.gradient_norms(model, data)) == {n for n, _ in model.named_parameters()}
print("probes ok:", len(ls.__all__), "public names")
"""

WHOLE_LIBRARY = r"""
import importlib, importlib.util, sys
import landscape as ls
modules = sys.argv[1].split(",")
for m in modules:
    importlib.import_module(m)
for name in ls.__all__:
    getattr(ls, name)
for report_only in ("landscape.plots", "landscape.correlation", "landscape.multiplicity"):
    try:
        importlib.import_module(report_only)
    except ModuleNotFoundError:
        pass
    else:
        raise AssertionError(f"{report_only} imported without the report extra")
model = ls.build_model("mlp", {"widths": [8]}, (1, 28, 28))
assert ls.count_params(model) > 0
study = ls.load_study("fmnist-batchnorm", "smoke")
assert study.runs
print("library ok:", len(modules), "modules")
"""


@pytest.mark.slow
def test_wheel_installs_alone_and_runs_with_only_the_core_dependencies(tmp_path):
    src = tmp_path / "src"
    (src / "lib").mkdir(parents=True)
    shutil.copytree(LIB, src / "lib" / "landscape", ignore=shutil.ignore_patterns("__pycache__"))
    for f in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / f, src / f)
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    # No build isolation: this environment's setuptools (the `test` extra) builds it offline.
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "--no-index",
                    "-w", str(tmp_path / "dist"), str(src)], check=True, timeout=300)
    wheel, = (tmp_path / "dist").glob("*.whl")
    assert wheel.name.startswith(f"{PROJECT['name'].replace('-', '_')}-")
    with zipfile.ZipFile(wheel) as z:
        files = z.namelist()
        meta = z.read(next(f for f in files if f.endswith(".dist-info/METADATA"))).decode()
    packaged = {f for f in files if not f.split("/")[0].endswith(".dist-info")}
    assert packaged == {str(p.relative_to(LIB.parent)) for p in LIB.rglob("*.py")}
    required = [line.split(":", 1)[1].strip() for line in meta.splitlines()
                if line.startswith("Requires-Dist:") and "extra ==" not in line]
    assert _names(required) == CORE

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    subprocess.run([*pip, "--python", str(python), "install", "--no-deps", "--no-index", str(wheel)],
                   check=True, timeout=300)

    def run(script, deps, *args):
        env = {"PATH": f"{venv / 'bin'}:/usr/bin:/bin", "HOME": str(tmp_path), "PYTHONPATH": str(deps),
               "PYTHONNOUSERSITE": "1", "OMP_NUM_THREADS": "1", "LANDSCAPE_OFFLINE": "1",
               "LANDSCAPE_CONFIGS": str(REPO / "configs"), "LANDSCAPE_ARTEFACTS": str(tmp_path / "art")}
        out = subprocess.run([str(python), "-c", script, *args], cwd=tmp_path, env=env,
                             capture_output=True, text=True, timeout=600)
        assert out.returncode == 0, out.stdout + out.stderr
        return out.stdout

    _link_distributions(_closure(PROBE_DISTS), tmp_path / "probe-deps")
    assert "probes ok" in run(PROBES_ONLY, tmp_path / "probe-deps")

    _link_distributions(_closure(CORE), tmp_path / "core-deps")
    library = sorted({_module_name(p) for p in LIBRARY} - {"landscape.__main__"})
    assert "library ok" in run(WHOLE_LIBRARY, tmp_path / "core-deps", ",".join(library))
