"""The layout's rules (issue 10), checked on the source so they stay true:

- no import cycle between modules (function-level imports count, TYPE_CHECKING blocks not);
- the host (harness/) imports neither wsfm/ nor baselines/: they are plugins found through
  entry points, the built-ins declared in pyproject.toml like any third-party package's;
- wsfm's core (all but its plugin module wsfm/methods.py) needs only torch, numpy and the
  standard library, and trains and samples a warm start without the harness (README snippet);
- reports, figures and compare import no torch;
- at most about a dozen modules flat in harness/, none over 400 lines;
- one function per concept;
- every path and module the README and the docstrings name exists.
"""

from __future__ import annotations

import ast
import importlib
import json
import re
import subprocess
import sys
import tomllib
from collections import defaultdict
from importlib.metadata import entry_points
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("harness", "wsfm", "baselines")
PLUGIN_MODULE = "wsfm.methods"  # wsfm's plugin module: the one part of wsfm that uses the host


def _modules() -> dict[str, Path]:
    mods = {}
    for pkg in PACKAGES:
        for path in (ROOT / pkg).rglob("*.py"):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            mods[name.removesuffix(".__init__")] = path
    return mods


MODULES = _modules()


def _resolve(name: str) -> str | None:
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


class _Imports(ast.NodeVisitor):
    """Every import of a module, at any depth, except inside ``if TYPE_CHECKING:``."""

    def __init__(self, module: str) -> None:
        self.module = module
        self.internal: set[str] = set()
        self.external: set[str] = set()

    def visit_If(self, node: ast.If) -> None:
        if "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.orelse:
                self.visit(child)
            return
        self.generic_visit(node)

    def _add(self, name: str) -> None:
        found = _resolve(name)
        if found:
            self.internal.add(found)
        else:
            self.external.add(name.split(".")[0])

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self._add(alias.name)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        assert node.level == 0, f"{self.module}: use absolute imports"
        base = node.module or ""
        if base == "__future__":
            return
        for alias in node.names:
            self._add(f"{base}.{alias.name}" if _resolve(f"{base}.{alias.name}") != _resolve(
                base) else base)


def _graph() -> dict[str, _Imports]:
    out = {}
    for name, path in MODULES.items():
        visitor = _Imports(name)
        visitor.visit(ast.parse(path.read_text()))
        # A package's __init__ being imported on the way to a submodule is not a dependency.
        visitor.internal = {d for d in visitor.internal
                            if d != name and not (name.startswith(d + ".") and d in PACKAGES)}
        out[name] = visitor
    return out


GRAPH = _graph()


def _cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in edges:
        if v not in index:
            visit(v)
    return found


def test_cycle_finder_finds_a_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_import_cycles() -> None:
    assert _cycles({m: v.internal for m, v in GRAPH.items()}) == []


def test_the_host_imports_no_plugin_package() -> None:
    bad = sorted((m, d) for m, v in GRAPH.items() if m.split(".")[0] == "harness"
                 for d in v.internal if d.split(".")[0] in ("wsfm", "baselines"))
    assert bad == []
    # ... nor names one by string (a hand-kept list of modules to import).
    named = []
    for m, path in MODULES.items():
        if m.split(".")[0] != "harness":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, ast.Constant) and isinstance(node.value, str)
                    and re.fullmatch(r"(wsfm|baselines)\.[a-z_.]+(:\w+)?", node.value)):
                named.append((m, node.value))
    assert named == []


def test_builtins_are_entry_points_of_this_package() -> None:
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["entry-points"]
    from harness.registry import REGISTRIES

    assert set(declared) == {r.group for r in REGISTRIES.values()}
    for registry in REGISTRIES.values():
        ours = {ep.name: ep.value for ep in entry_points(group=registry.group)
                if ep.dist is not None and ep.dist.name == "wsfm-bench"}
        # The installed metadata is what pyproject.toml declares (reinstall after editing it).
        assert ours == declared[registry.group], registry.group
        for name, value in ours.items():
            entry = registry.entry(name)
            assert entry.owner == f"wsfm-bench (entry point {value})"
            assert entry.obj is getattr(importlib.import_module(value.split(":")[0]),
                                        value.split(":")[1])


def test_wsfm_core_needs_only_torch_numpy_and_the_standard_library() -> None:
    allowed = set(sys.stdlib_module_names) | {"torch", "numpy"}
    for m, v in GRAPH.items():
        if m.split(".")[0] != "wsfm" or m == PLUGIN_MODULE:
            continue
        assert all(d.split(".")[0] == "wsfm" for d in v.internal), (m, v.internal)
        assert v.external <= allowed, (m, v.external - allowed)


LIGHT_IMPORT = """
import json, sys
import harness.report.document, harness.report.publish, harness.analysis.compare
print(json.dumps(sorted(sys.modules)))
"""


def test_reports_figures_and_compare_import_no_torch() -> None:
    out = subprocess.run([sys.executable, "-c", LIGHT_IMPORT], capture_output=True, text=True,
                         check=True, timeout=120, cwd=ROOT)
    loaded = json.loads(out.stdout.strip().splitlines()[-1])
    heavy = [m for m in loaded if m.split(".")[0] in ("torch", "wsfm", "baselines")]
    assert heavy == []


def test_few_modules_flat_in_harness_and_none_too_long() -> None:
    flat = [p.name for p in (ROOT / "harness").glob("*.py") if p.name != "__init__.py"]
    assert len(flat) <= 12, flat
    long = {str(p.relative_to(ROOT)): n for p in MODULES.values()
            if (n := len(p.read_text().splitlines())) > 400}
    assert long == {}


FUNCTION_LINES = 60  # a function a reader can hold in their head


def test_no_function_in_the_harness_is_too_long_without_a_reason() -> None:
    """A harness function over FUNCTION_LINES lines says why in its docstring ("Long:")."""
    long = []
    for m, path in MODULES.items():
        if not m.startswith("harness."):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = node.end_lineno - node.lineno + 1
                if lines > FUNCTION_LINES and "Long:" not in (ast.get_docstring(node) or ""):
                    long.append(f"{m}.{node.name}: {lines} lines")
    assert long == []


# Each concept, and the one module that defines it.
ONE_DEFINITION = {
    "positive_int": "harness.checks",
    "check_positive_ints": "harness.checks",
    "seconds": "harness.checks",
    "slug": "harness.report.format",
    "missing": "harness.report.format",
    "higher_is_better": "harness.analysis.stats",
    "cell_frame": "harness.analysis.stats",
    "count_parameters": "harness.nn.training",
    "time_plan": "harness.run.measure",
    "describe": "harness.run.measure",
    "build_record": "harness.run.execute",
    "stable_hash": "harness.hashing",
    "check_draft": "harness.registry",
    "warm_steps": "harness.analysis.speedup",
    "to_uint8": "harness.images.pixels",
}
CONCEPT_PATTERNS = {  # private near-copies that existed before (issue 10)
    r"_?positive(_int)?s?": "positive_int",
    r"_?slug": "slug",
    r"_?missing": "missing",
    r"_direction": "higher_is_better",
    r"_?noise_path": "a wsfm.sources source",
    r"_check_draft": "check_draft",
    r"check_budget": "seconds",
}


def test_one_function_per_concept() -> None:
    defined: dict[str, list[str]] = defaultdict(list)
    for m, path in MODULES.items():
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                defined[node.name].append(m)
    for name, module in ONE_DEFINITION.items():
        assert defined[name] == [module], (name, defined[name])
    for pattern, instead in CONCEPT_PATTERNS.items():
        copies = {n: ms for n, ms in defined.items()
                  if re.fullmatch(pattern, n) and n not in ONE_DEFINITION}
        assert copies == {}, f"use {instead} instead of {copies}"


def test_no_private_names_imported_across_modules() -> None:
    bad = []
    for m, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] in PACKAGES:
                bad += [(m, node.module, a.name) for a in node.names if a.name.startswith("_")
                        and not a.name.startswith("__")]
    assert bad == []


def _readme_block(marker: str) -> str:
    text = (ROOT / "README.md").read_text()
    match = re.search(r"<!-- " + re.escape(marker) + r" -->\s*```python\n(.*?)```", text, re.S)
    assert match, f"README.md has no python block after <!-- {marker} -->"
    return match.group(1)


def test_readme_wsfm_snippet_runs_without_the_harness(tmp_path: Path) -> None:
    """The README's standalone WS-FM example, in a fresh interpreter that cannot import the
    harness (a stub that raises stands in for it)."""
    blocker = tmp_path / "harness"
    blocker.mkdir()
    (blocker / "__init__.py").write_text("raise ImportError('the wsfm core must not need me')\n")
    code = _readme_block("wsfm-standalone")
    script = (f"import sys; sys.path.insert(0, {str(tmp_path)!r}); "
              f"sys.path.insert(1, {str(ROOT)!r})\n" + code)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                         timeout=300, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "harness" not in out.stdout
    # The snippet prints the warm start's NFE and its distance to the data vs the draft's.
    nfe, draft_gap, ws_gap = (float(v) for v in out.stdout.split()[-3:])
    assert nfe == 2 and ws_gap < draft_gap


def _named_paths(text: str) -> set[str]:
    return set(re.findall(r"\b((?:harness|wsfm|baselines|tests|benchmarks)/[\w./-]*\w)", text))


def _named_modules(text: str) -> set[str]:
    return set(re.findall(r"\b((?:harness|wsfm|baselines)(?:\.[a-z_][a-z0-9_]*)+)", text))


def _module_exists(dotted: str) -> bool:
    """``dotted`` is a module, or a module attribute (function, class, constant)."""
    head, _, attr = dotted.rpartition(".")
    if dotted in MODULES:
        return True
    if head in MODULES:
        source = MODULES[head].read_text()
        return re.search(rf"^(def|class) {attr}\b|^{attr}\b.*=|^    def {attr}\b", source,
                         re.M) is not None
    return False


@pytest.mark.parametrize("source", ["README.md", "docstrings", "schemas and suites"])
def test_named_paths_and_modules_exist(source: str) -> None:
    if source == "README.md":
        texts = {"README.md": (ROOT / "README.md").read_text()}
    elif source == "schemas and suites":
        files = [*(ROOT / "harness" / "records" / "schemas").glob("*.json"),
                 *(ROOT / "harness" / "suites").glob("*.toml")]
        texts = {str(f.relative_to(ROOT)): f.read_text() for f in files}
    else:
        texts = {}
        for m, path in MODULES.items():
            tree = ast.parse(path.read_text())
            docs = [ast.get_docstring(n) or "" for n in ast.walk(tree)
                    if isinstance(n, ast.Module | ast.FunctionDef | ast.ClassDef)]
            comments = re.findall(r"#(.*)", path.read_text())
            texts[m] = "\n".join(docs + comments)
    missing_paths = {(w, p) for w, t in texts.items() for p in _named_paths(t)
                     if not (ROOT / p).exists() and not (ROOT / p.rstrip("/")).exists()
                     and "<" not in p and "*" not in p}
    missing_modules = {(w, m) for w, t in texts.items() for m in _named_modules(t)
                       if not _module_exists(m)}
    assert missing_paths == set()
    assert missing_modules == set()
