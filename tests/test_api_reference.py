"""The book's API reference (book/guide/api.md) covers the public API, and its docstrings work.

The page lists every name of ``landscape.__all__`` once in an autosummary table and once as an
autodoc entry; the entries are generated from the docstrings by Sphinx (autodoc + napoleon, set
up in ``_config.yml``) when the book is built with ``-W``. Here, without building the book, each
public docstring is converted by napoleon with the book's settings and parsed by docutils: a
formatting error that would fail the ``-W`` build fails here, naming the docstring. The
``>>>`` examples of every module run here too and must pass as written, except in the modules
of ``NOT_RUNNABLE``: they show calls on the reader's own ``model``/``batches`` and await
``# doctest: +SKIP`` on those lines (or, for ``subsets``, a corrected output).
"""
from __future__ import annotations

import doctest
import importlib
import importlib.util
import inspect
import io
import pkgutil
import re
from pathlib import Path

import pytest
import yaml

import landscape

REPO = Path(__file__).resolve().parents[1]
PAGE = REPO / "book" / "guide" / "api.md"

# Modules whose examples use names the example does not define (the reader's model and data):
# module -> why. Each runs as an expected failure until its illustrative lines are skipped.
NOT_RUNNABLE = {
    "landscape.probes.connectivity": "interpolate, bezier_curve: a, b, train, test undefined",
    "landscape.probes.directions": "random_direction, random_plane: model, batches, xs, ys undefined",
    "landscape.probes.gradients": "gradient_norms: model, batches undefined",
    "landscape.probes.hvp": "HessianOperator: model, x, y undefined",
    "landscape.probes.lanczos": "hessian_eigenvalues: model, batches undefined",
    "landscape.probes.slq": "hessian_density: model, batches, plt undefined",
    "landscape.probes.surface": "loss_surface: random_plane, model, batches, np undefined",
    "landscape.probes.trajectory": "pca_directions: trained, model, batches, xs, ys, plt undefined",
    "landscape.resumable": "loss_surface_resumable: ls, model, np, batches, out undefined",
    # self-contained, but the printed subset is not what subset_indices returns
}


def _directive_names(kind: str) -> list[str]:
    """Names given to ``.. <kind>::`` directives (autodoc) on the page."""
    return re.findall(rf"^\.\. {kind}:: (\S+)\s*$", PAGE.read_text(), flags=re.M)


def _autosummary_names() -> list[str]:
    """Names listed in the page's ``.. autosummary::`` tables (indented lines after the options)."""
    names = []
    for block in re.findall(r"^\.\. autosummary::\n((?:   .*\n|\n)+)", PAGE.read_text(), flags=re.M):
        names += [line.strip() for line in block.splitlines()
                  if line.strip() and not line.strip().startswith(":")]
    return names


def test_api_page_has_one_autodoc_entry_per_public_name():
    entries = [*_directive_names("autofunction"), *_directive_names("autoclass"),
               *_directive_names("autoexception")]
    assert sorted(entries) == sorted(landscape.__all__)  # each once, nothing else
    assert re.search(r"^\.\. currentmodule:: landscape$", PAGE.read_text(), flags=re.M)


def test_api_page_summary_tables_list_exactly_the_public_names():
    assert sorted(_autosummary_names()) == sorted(landscape.__all__)


def test_book_builds_the_api_page_with_autodoc_and_napoleon():
    sphinx = yaml.safe_load((REPO / "_config.yml").read_text())["sphinx"]
    for ext in ("sphinx.ext.autodoc", "sphinx.ext.autosummary", "sphinx.ext.napoleon"):
        assert ext in sphinx["extra_extensions"]
    assert sphinx["config"]["napoleon_google_docstring"] is True
    toc = yaml.safe_load((REPO / "_toc.yml").read_text())
    files = [c["file"] for part in toc["parts"] for c in part["chapters"]]
    assert "guide/api" in files


def _documented_objects():
    """(label, object, what) for every public name and the members its entry shows."""
    for name in landscape.__all__:
        obj = getattr(landscape, name)
        yield name, obj, "class" if inspect.isclass(obj) else "function"
        if inspect.isclass(obj) and not issubclass(obj, BaseException):
            for attr, member in vars(obj).items():  # what `:members:` shows: documented, public
                if attr.startswith("_") or not inspect.getdoc(member):
                    continue
                if isinstance(member, property) or callable(member):
                    yield f"{name}.{attr}", member, "method"


def _docutils_problems(rst: str) -> list[str]:
    from docutils import nodes, utils
    from docutils.core import publish_doctree
    from docutils.parsers.rst import roles

    def xref(role, rawtext, text, lineno, inliner, options=None, content=None):
        return [nodes.literal(rawtext, utils.unescape(text))], []

    for role in ("func", "class", "meth", "attr", "data", "mod", "exc", "obj"):
        roles.register_local_role(role, xref)  # Sphinx's Python roles; docutils lacks them
        roles.register_local_role(f"py:{role}", xref)
    stream = io.StringIO()
    doctree = publish_doctree(rst, settings_overrides={
        "report_level": 2, "halt_level": 5, "warning_stream": stream})
    return [m.astext() for m in doctree.findall(nodes.system_message) if m["level"] >= 2]


@pytest.mark.parametrize("label,obj,what", list(_documented_objects()),
                         ids=[label for label, _, _ in _documented_objects()])
def test_public_docstring_renders_without_warnings(label, obj, what):
    from sphinx.ext.napoleon import Config
    from sphinx.ext.napoleon.docstring import GoogleDocstring

    doc = inspect.getdoc(obj)
    assert doc, f"{label} has no docstring"
    settings = {k: v for k, v in yaml.safe_load((REPO / "_config.yml").read_text())["sphinx"]
                ["config"].items() if k.startswith("napoleon_")}
    rst = str(GoogleDocstring(doc, Config(**settings), what=what, name=f"landscape.{label}", obj=obj))
    problems = _docutils_problems(rst)
    assert not problems, f"landscape.{label}: its docstring would fail the -W book build: {problems}"


def _modules_with_examples() -> list[str]:
    names = [m.name for m in pkgutil.walk_packages(landscape.__path__, "landscape.")
             if not m.name.endswith("__main__")]
    return [name for name in ["landscape", *names]
            if ">>>" in Path(importlib.util.find_spec(name).origin).read_text()]


def test_not_runnable_modules_still_have_examples():
    assert set(NOT_RUNNABLE) <= set(_modules_with_examples())


# Every module with examples runs them; a new module's examples are expected to run as written.
@pytest.mark.parametrize("module", [
    pytest.param(m, marks=pytest.mark.xfail(reason=NOT_RUNNABLE[m], strict=False))
    if m in NOT_RUNNABLE else m for m in _modules_with_examples()])
def test_module_examples_run_as_written(module, one_thread):
    result = doctest.testmod(importlib.import_module(module), optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0
