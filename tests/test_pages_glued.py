"""A question page's answer states only findings computed from the runs and glued in.

The rule, checked on the source of every ``book/questions/*.md`` page:

1. The page has exactly one answer: a fenced ``{admonition} Short answer`` block (backtick or
   colon fence). Its option lines (``:class: tip``) are skipped.
2. The answer's body is cut into paragraphs at blank lines and at list items.
3. A paragraph that opens with one of the *explanation* lead-ins ``**Why.**``, ``**Caveat.**`` or
   ``**Reading.**`` explains (theory, how to read a number, what is not claimed) and is exempt.
4. Every other paragraph is cut into sentences (after ``.``, ``!`` or ``?`` followed by a space and
   anything but a lower-case ASCII letter — a capital, a symbol such as λ, a role; roles, inline
   maths and the abbreviations e.g., i.e., et al., cf. and vs. are masked first, so their dots do
   not cut). **Each sentence must contain
   a glue role** (``{glue}``, ``{glue:text}``, …): a finding is a verdict or a number computed by
   a notebook (``landscape.verdicts``) and glued, never typed.
5. **No typed numbers** in those paragraphs either: once roles and inline maths are masked, no
   free-standing number may remain (digits inside names such as ResNet-20 or Q3 are not numbers).
6. Every glue role on a question or study page names a key that the notebook it points at can
   produce: a ``glue(...)`` call, a ``key=`` of a saved figure, or an entry ``d["..."] = …`` of a
   dict of findings glued key by key, in that notebook's template, whose key (f-string fields
   read as wildcards) matches; ``glue_provenance()`` produces ``provenance``.

Q1 and Q2 pages follow the rule (they failed it before their answers were glued: see
``test_the_rule_rejects_the_old_q1_and_q2_answers``); so do the Q3 and Q4 pages.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
QUESTIONS = REPO / "book" / "questions"
EXPLANATION_LEADS = ("**Why.**", "**Caveat.**", "**Reading.**")

_FENCE = re.compile(r"^(?P<fence>`{3,}|:{3,})\{admonition\}\s*Short answer\s*$(?P<body>.*?)^(?P=fence)\s*$",
                    re.M | re.S)
_ROLE = re.compile(r"\{(?P<name>[\w:-]+)\}`[^`]*`")
_MATH = re.compile(r"\$[^$]+\$")
_ABBREV = re.compile(r"\b(e\.g\.|i\.e\.|et al\.|cf\.|vs\.)")
_SPLIT = re.compile(r"(?<=[.!?])\s+(?=[^\sa-z])")
_NUMBER = re.compile(r"(?<![\w\-.·/])[-−+]?\d+(?:[.,]\d+)*(?![\w\-])")


def answer_of(text: str) -> str:
    """The body of the page's one ``Short answer`` admonition (AssertionError if not exactly one)."""
    found = list(_FENCE.finditer(text))
    assert len(found) == 1, f"expected one Short answer admonition, found {len(found)}"
    return found[0].group("body")


def _mask(text: str) -> str:
    text = _ROLE.sub(lambda m: "⟦GLUE⟧" if m.group("name").startswith("glue") else "⟦ROLE⟧", text)
    text = _MATH.sub("⟦MATH⟧", text)
    return _ABBREV.sub(lambda m: m.group(0).replace(".", "·"), text)


def paragraphs(body: str) -> list[str]:
    """Paragraphs of an admonition body: split at blank lines and list items; options dropped."""
    lines = [ln for ln in body.strip("\n").splitlines() if not re.match(r"^:\w[\w-]*:", ln.strip())]
    paras, cur = [], []
    for ln in lines:
        if not ln.strip() or re.match(r"^\s*([*+-]|\d+\.)\s", ln):
            if cur:
                paras.append(" ".join(cur))
            cur = [] if not ln.strip() else [re.sub(r"^\s*([*+-]|\d+\.)\s", "", ln).strip()]
        else:
            cur.append(ln.strip())
    if cur:
        paras.append(" ".join(cur))
    return paras


def findings_paragraphs(body: str) -> list[str]:
    """The paragraphs that must state only glued findings (explanation paragraphs left out)."""
    return [p for p in paragraphs(body) if not p.startswith(EXPLANATION_LEADS)]


def sentences(paragraph: str) -> list[str]:
    """Sentences of a paragraph, roles, maths and abbreviations masked first."""
    return [s for s in _SPLIT.split(_mask(paragraph)) if s.strip()]


def unglued_sentences(text: str) -> list[str]:
    """Sentences of the answer that state something without a glue role."""
    return [s for p in findings_paragraphs(answer_of(text)) for s in sentences(p) if "⟦GLUE⟧" not in s]


def typed_numbers(text: str) -> list[str]:
    """Free-standing numbers left in the answer's findings once roles and maths are masked."""
    return [m.group(0) for p in findings_paragraphs(answer_of(text)) for m in _NUMBER.finditer(_mask(p))]


# ------------------------------------------------------------------------- the rule itself

def _page(answer: str) -> str:
    return f"# Qx\n\n```{{admonition}} Short answer\n:class: tip\n{answer}\n```\n\nBody.\n"


def test_the_rule_accepts_glued_findings_and_marked_explanations():
    page = _page("Full-batch GD: {glue:text}`../runs/q.ipynb::v:s` {glue:text}`../runs/q.ipynb::w:s`\n\n"
                 "With SGD, e.g. across batch sizes, {glue:text}`x.ipynb::t:s`. And {glue}`k` too.\n\n"
                 "**Why.** On a quadratic the threshold is $2/\\eta$; see Q3 and ResNet-20 (0.9).")
    assert unglued_sentences(page) == [] and typed_numbers(page) == []


def test_the_rule_rejects_typed_findings_and_typed_numbers():
    page = _page("The Hessian is indefinite. λ_max was {glue:text}`q.ipynb::l:s`.\n\n"
                 "* chance is 0.1 here {glue:text}`q.ipynb::c:s`")
    assert unglued_sentences(page) == ["The Hessian is indefinite."]
    assert typed_numbers(page) == ["0.1"]


def test_the_rule_rejects_the_old_q1_and_q2_answers():
    old_q2 = _page(
        "Architecture changes the *scale* and the *sign structure* of curvature far more than the look of\n"
        "a random 2D slice. A 20-layer plain network without skips or batch norm did not train (test\n"
        "accuracy {glue:text}`../runs/r/noskip-nobn/q2.ipynb::test_acc_fmt:s`,\nchance is 0.1), as in the write-up. "
        "In every configuration that trained, the Hessian at the end of training is\n"
        "indefinite (λ_min < 0), so no condition number exists.")
    assert len(unglued_sentences(old_q2)) == 2 and "0.1" in typed_numbers(old_q2)
    old_q1 = _page(
        "The step size caps the curvature where gradient descent can stay. In full-batch gradient descent\n"
        "λ_max climbed to {glue:text}`../runs/q1_sgd.ipynb::eos_peak_01:s`, at or\nabove 2/η (η = 0.1). "
        "Where an interval excludes zero, more noise went with flatter minima.")
    assert len(unglued_sentences(old_q1)) == 2 and "0.1" in typed_numbers(old_q1)


def test_a_page_needs_exactly_one_answer():
    with pytest.raises(AssertionError):
        answer_of("# No answer here\n")


# ----------------------------------------------------------------------------- the pages

def _pages(test: str):
    out = []
    for path in sorted(QUESTIONS.glob("*.md")):
        out.append(pytest.param(path, id=path.name))
    return out


@pytest.mark.parametrize("page", _pages("sentences"))
def test_every_sentence_of_the_answer_is_glued(page):
    bad = unglued_sentences(page.read_text())
    assert not bad, f"{page.name}: findings without a glue role (glue a verdict, or mark explanation " \
                    f"with one of {EXPLANATION_LEADS}):\n" + "\n".join(f"  - {s}" for s in bad)


@pytest.mark.parametrize("page", _pages("numbers"))
def test_the_answer_has_no_typed_numbers(page):
    bad = typed_numbers(page.read_text())
    assert not bad, f"{page.name}: typed numbers in the answer's findings: {bad}"


# --------------------------------------------------------------------- every key has a producer

_NOTEBOOK_OF = [  # a glue path in the book -> the template that produces it
    (re.compile(r"runs/[^/]+/[^/]+/q2\.ipynb$"), "q2_landscape.ipynb"),
    (re.compile(r"runs/[^/]+/summary\.ipynb$"), "study_summary.ipynb"),
    (re.compile(r"runs/(q1_sgd|q3_measures|q4_early|provenance)\.ipynb$"), None),
]
_GLUE_REF = re.compile(r"\{glue(?::\w+)?\}`([^`:]+\.ipynb)::([^`:]+)(?::[^`]*)?`|```\{glue\}\s+(\S+)\s*\n:doc:\s*(\S+)")
# a glue(...) call, a save_figure(key=...), or an entry of a dict of findings the notebook glues key by key
_PRODUCER = re.compile(r"""(?:glue\(\s*|key\s*=\s*|\b[A-Za-z_]\w*\[)(f?)(["'])(.+?)\2""")


def _produced_patterns(notebook: Path) -> list[re.Pattern]:
    src = "\n".join("".join(c["source"]) for c in json.loads(notebook.read_text())["cells"] if c["cell_type"] == "code")
    pats = [re.compile("provenance")] if "glue_provenance(" in src else []
    for m in _PRODUCER.finditer(src):
        is_f, key = m.group(1), m.group(3)
        if is_f:
            parts = re.split(r"\{[^{}]*\}", key)
            pats.append(re.compile(".+".join(re.escape(p) for p in parts)))
        else:
            pats.append(re.compile(re.escape(key)))
    return pats


def _template(path: str) -> Path | None:
    for pat, name in _NOTEBOOK_OF:
        m = pat.search(path)
        if m:
            return REPO / "notebooks" / (name or f"{m.group(1)}.ipynb")
    return None


_GLUE_PAGES = sorted([*QUESTIONS.glob("*.md"), *(REPO / "book" / "results").glob("*.md")])


@pytest.mark.parametrize("page", _GLUE_PAGES, ids=[p.name for p in _GLUE_PAGES])
def test_every_glue_reference_names_a_key_its_notebook_produces(page):
    missing = []
    cache: dict[Path, list] = {}
    for m in _GLUE_REF.finditer(page.read_text()):
        path, key = (m.group(1), m.group(2)) if m.group(1) else (m.group(4), m.group(3))
        nb = _template(path)
        assert nb is not None and nb.exists(), f"{page.name}: {path} is produced by no notebook template"
        pats = cache.setdefault(nb, _produced_patterns(nb))
        if not any(p.fullmatch(key) for p in pats):
            missing.append(f"{path}::{key}")
    assert not missing, f"{page.name}: glued keys no notebook produces: {missing}"
