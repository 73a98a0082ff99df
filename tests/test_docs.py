"""The method is documented inside the project (docs/): the product cites no file outside the
repository, the docs it cites exist, the docs name only paths and modules that exist, and the
docs' worked figures agree with the code."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from harness.analysis.speedup import ideal_speedup, nfe_speedup, warm_steps
from wsfm.schedule import num_steps

ROOT = Path(__file__).resolve().parents[1]
PRODUCT = ("harness", "wsfm", "baselines")
DOCS = (ROOT / "docs" / "method.md", ROOT / "docs" / "paper.md")
# "../x" (but not an ellipsis such as ".../v1"), any "shared/" folder, the developers' note.
OUTSIDE = re.compile(r"(?<![.\w])\.\./|\bshared/|METHOD\.md")
CITED_DOC = re.compile(r"\bdocs/[\w./-]*\.md\b")


def _product_files() -> list[Path]:
    files = [p for pkg in PRODUCT for p in (ROOT / pkg).rglob("*")
             if p.is_file() and "__pycache__" not in p.parts]
    return [*files, ROOT / "README.md"]


def _text(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except (UnicodeDecodeError, OSError):
        return None  # binary fixtures, model weights


def test_the_outside_pattern_catches_what_it_must() -> None:
    assert OUTSIDE.search("see ../shared/METHOD.md") and OUTSIDE.search("(METHOD.md)")
    assert OUTSIDE.search("shared/PLATFORM.md") and not OUTSIDE.search('(".../v1")')


def test_product_cites_no_path_outside_the_repository() -> None:
    bad = [f"{p.relative_to(ROOT)}:{i}: {line.strip()}"
           for p in _product_files() if (text := _text(p))
           for i, line in enumerate(text.splitlines(), 1) if OUTSIDE.search(line)]
    assert bad == []


def test_cited_docs_exist() -> None:
    for doc in DOCS:
        assert doc.is_file() and doc.read_text().strip(), doc
    cited = {(str(p.relative_to(ROOT)), m) for p in _product_files() if (text := _text(p))
             for m in CITED_DOC.findall(text)}
    assert {m for _, m in cited} >= {"docs/method.md", "docs/paper.md"}
    assert sorted((w, m) for w, m in cited if not (ROOT / m).exists()) == []


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_docs_name_existing_paths_and_modules(doc: Path) -> None:
    text = doc.read_text()
    paths = set(re.findall(r"\b((?:harness|wsfm|baselines|tests|benchmarks|docs)/[\w./-]*\w)",
                           text))
    assert sorted(p for p in paths if not (ROOT / p).exists()) == []
    for link in re.findall(r"\]\(([^)#]+)\)", text):
        assert (doc.parent / link).exists(), link
    for dotted in set(re.findall(r"\b((?:harness|wsfm|baselines)(?:\.[a-z_][a-z0-9_]*)+)",
                                 text)):
        parts = dotted.split(".")
        module = ROOT.joinpath(*parts)
        if module.with_suffix(".py").exists() or (module / "__init__.py").exists():
            continue
        owner = ROOT.joinpath(*parts[:-1]).with_suffix(".py")
        assert owner.exists() and re.search(rf"^(def|class) {parts[-1]}\b|^{parts[-1]}\b.*=",
                                            owner.read_text(), re.M), dotted


def test_the_speedup_table_agrees_with_the_code() -> None:
    rows = re.findall(r"^\| (0\.\d+) \| (\d+) \| (\d+) \| ([\d.]+) \| ([\d.]+) \|$",
                      DOCS[0].read_text(), re.M)
    assert len(rows) >= 5
    for t0, n, k, s_nfe, bound in rows:
        t0, n = float(t0), int(n)
        assert num_steps(t0, n) == warm_steps(t0, n) == int(k), (t0, n)
        assert f"{nfe_speedup(t0, n):.2f}" == s_nfe and f"{ideal_speedup(t0):.2f}" == bound
    assert num_steps(0.7, 10) == 3  # the worked example in the text


def test_the_papers_figures_in_the_report_are_in_the_paper_page() -> None:
    from harness.report.headline import PAPER, paper_table

    page = DOCS[1].read_text()
    for figure in PAPER.values():
        for number in re.findall(r"\d+(?:\.\d+)?", figure):
            assert number in page, (figure, number)
    row = {"task": "two-moons", "draft": "good", "method": "ws-fm", "title": "WS-FM",
           "verdict": "inconclusive",
           "t0": 0.9, "speedup_nfe": None, "speedup_wall": None}
    assert "docs/paper.md" in paper_table([row])
