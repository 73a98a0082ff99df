"""compare against the tolerance (equivalence), and its outputs for CI: JUnit XML and a short
Markdown summary, checked by parsing what they write (issue 20, items 11 and 12)."""

from __future__ import annotations

import json
import math
import os
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from harness.analysis.compare import compare_runs
from harness.analysis.equivalence import decide
from harness.cli import main
from tests.test_compare import _diverged, _make_run, _shift

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT / "results" / "reference" / "smoke"


# The decision against the tolerance.
def test_decisions_follow_the_welch_interval_against_the_tolerance() -> None:
    base = np.array([1.0, 1.1, 0.9, 1.05, 0.95])
    spread = float(np.sqrt(2 * base.var(ddof=1) / base.size))  # se of a shift of base
    df = 8.0  # equal variances and sizes: Welch's df is 2 (n - 1)
    half = stats.t.ppf(0.95, df) * spread
    for shift, tol, status in ((0.0, half * 1.01, "unchanged"), (0.0, half * 0.99,
                                                                 "inconclusive"),
                               (0.5, 0.5 - half * 1.01, "regression"),
                               (0.5, 0.5 - half * 0.99, "inconclusive"),
                               (-0.5, 0.5 - half * 1.01, "improvement")):
        d = decide(base, base + shift, tol, 0.05, higher_is_better=False)
        assert d.status == status, (shift, tol)
        assert d.interval == pytest.approx((shift - half, shift + half))
    # higher is better: the same shift is the other way round
    assert decide(base, base + 0.5, 0.1, 0.05, higher_is_better=True).status == "improvement"
    d = decide(base, base + 0.5, 0.1, 0.05, higher_is_better=False)
    assert d.p_value == pytest.approx(stats.t.sf((0.5 - 0.1) / spread, df))


def test_zero_spread_one_seed_and_identical_values() -> None:
    two = np.array([1.0, 1.0])
    assert decide(two, two + 0.05, 0.1, 0.05, False).status == "unchanged"  # exact, within t
    assert decide(two, two + 0.5, 0.1, 0.05, False).status == "regression"
    assert decide(two, two - 0.5, 0.1, 0.05, False).status == "improvement"
    one = np.array([1.0])
    assert decide(one, one * 10, 0.1, 0.05, False).status == "inconclusive"
    assert decide(one, one + 0.01, 0.1, 0.05, False).status == "inconclusive"
    assert decide(one, one, 0.0, 0.05, False, identical=True).status == "unchanged"
    noisy = np.array([1.0, 2.0, 3.0])
    assert decide(noisy, noisy, 0.0, 0.05, False, identical=True).status == "unchanged"


@pytest.mark.skipif(not (REFERENCE / "manifest.json").is_file(), reason="no smoke reference")
def test_the_smoke_reference_moved_by_noise_of_one_part_in_a_million(tmp_path: Path) -> None:
    """Every group of the smoke suite (10 evaluation + 3 selection seeds) with values that are
    no longer identical but changed by nothing that matters: no regression, and equivalence is
    shown for most groups; the rest are inconclusive where 13 seeds are too few for the
    tolerance (see results/reference/README.md)."""
    new = tmp_path / "smoke"
    shutil.copytree(REFERENCE, new)
    rng = np.random.default_rng(0)
    for path in (new / "cells").glob("*.json"):
        record = json.loads(path.read_text())
        for metric in record["metrics"].values():
            if math.isfinite(metric["value"]):
                metric["value"] *= 1 + 1e-6 * rng.standard_normal()
        path.write_text(json.dumps(record))
    same = compare_runs(REFERENCE, REFERENCE)
    assert same.exit_code == 0 and same.unchanged == same.compared == 306
    moved = compare_runs(REFERENCE, new)
    assert moved.exit_code == 0 and moved.regressions == [] and moved.improvements == []
    assert moved.unchanged + len(moved.inconclusive) == 306
    assert moved.unchanged >= 240  # 252 when measured; the rest are inconclusive


# JUnit XML and the short Markdown.
def _outputs(tmp_path: Path, *extra: str, new: Path | None = None) -> tuple[int, ET.Element,
                                                                               str]:
    base = tmp_path / "base"
    if not base.exists():
        _make_run(tmp_path, "base")
    junit, md = tmp_path / "ci" / "compare.xml", tmp_path / "ci" / "summary.md"
    code = main(["compare", str(base), str(new or base), "--junit", str(junit),
                 "--markdown", str(md), *extra])
    return code, ET.parse(junit).getroot(), md.read_text()


def _cases(suite: ET.Element) -> dict[str, ET.Element]:
    return {f"{c.get('classname')}::{c.get('name')}": c for c in suite.iter("testcase")}


def test_junit_and_markdown_of_a_clean_comparison(tmp_path: Path, capsys) -> None:
    code, suite, md = _outputs(tmp_path)
    assert code == 0
    assert suite.tag == "testsuite" and suite.get("tests") == "4"
    assert suite.get("failures") == "0" and suite.get("skipped") == "0"
    assert set(_cases(suite)) == {
        "quality.two-moons::full-fm / solver=euler / N=20 / precision",
        "quality.two-moons::full-fm / solver=euler / N=20 / swd",
        "quality.two-moons::ws-fm / good t0=0.5 draft scratch euler / N=20 / precision",
        "quality.two-moons::ws-fm / good t0=0.5 draft scratch euler / N=20 / swd"}
    assert all(len(c) == 0 for c in suite.iter("testcase"))  # passed
    lines = md.splitlines()
    assert lines[0] == "### wsfm-bench compare: PASS"
    assert "**0 regressions**: quality in 4 compared metric groups: 0 worse, 0 better, " \
           "4 unchanged, 0 inconclusive; 0 timing warning(s)." in lines[2]
    assert len(lines) < 8


def test_junit_and_markdown_list_regressions_and_inconclusive_groups(tmp_path: Path,
                                                                     capsys) -> None:
    _make_run(tmp_path, "base")

    def changed(rec: dict) -> None:
        _shift("ws-fm", "swd", 0.05)(rec)  # a regression
        _shift("full-fm", "swd", 0.005)(rec)  # within tolerance, too few seeds to show it
        _diverged({2})(rec)  # overrides ws-fm swd at seed 2: non-finite
        if rec["method"] == "full-fm" and rec["seed"] == 1:
            rec["nfe_measured"] = 21
    new = _make_run(tmp_path, "new", changed)
    code, suite, md = _outputs(tmp_path, new=new)
    assert code == 1
    cases = _cases(suite)
    ws = cases["quality.two-moons::ws-fm / good t0=0.5 draft scratch euler / N=20 / swd"]
    assert ws.find("failure").get("message").startswith("regression: nonfinite:")
    assert "non-finite in new at seed(s) 2 (nan)" in ws.find("failure").text
    full = cases["quality.two-moons::full-fm / solver=euler / N=20 / swd"]
    assert full.find("skipped") is not None and "interval [" in full.find("skipped").text
    nfe = cases["nfe.two-moons::full-fm / solver=euler / N=20 / nfe_measured"]
    assert "NFE accounting changed (seed 1)" in nfe.find("failure").text
    assert (suite.get("tests"), suite.get("failures"), suite.get("skipped")) == ("5", "2", "1")
    assert md.splitlines()[0] == "### wsfm-bench compare: FAIL"
    assert "**Regressions** (2)" in md and "**Inconclusive (not failing; --strict fails " \
                                           "them)** (1)" in md
    assert "| nonfinite: ws-fm / good t0=0.5 draft scratch euler / N=20 / swd | two-moons |" \
        in md and "| nfe: full-fm / solver=euler / N=20 / nfe_measured |" in md
    # --strict: the inconclusive group is a failure too.
    code, suite, md = _outputs(tmp_path, "--strict", new=new)
    full = _cases(suite)["quality.two-moons::full-fm / solver=euler / N=20 / swd"]
    assert code == 1 and full.find("failure") is not None and suite.get("skipped") == "0"
    assert "(failing: --strict)" in md


@pytest.mark.parametrize("flag", ["--junit", "--markdown", "--output"])
def test_an_output_that_cannot_be_written_is_one_line_and_exit_2(tmp_path: Path, capsys,
                                                                 flag: str) -> None:
    base = _make_run(tmp_path, "base")
    folder = tmp_path / "a-folder"
    folder.mkdir()
    assert main(["compare", str(base), str(base), flag, str(folder)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""  # refused before comparing
    assert captured.err.strip() == (f"wsfm-bench: error: {flag} {folder} is a folder; give a "
                                    "file path to write")
    blocked = tmp_path / "a-file"  # a file where the path needs a folder: fails for root too
    blocked.write_text("x")
    assert main(["compare", str(base), str(base), flag, str(blocked / "out")]) == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line.startswith(f"wsfm-bench: error: {flag} {blocked / 'out'} cannot be written (")
    assert line.endswith("); give a file path in a folder you can write")
    assert blocked.read_text() == "x"
    if os.geteuid() == 0:
        return  # root writes into read-only folders
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        assert main(["compare", str(base), str(base), flag, str(locked / "out")]) == 2
        [line] = capsys.readouterr().err.strip().splitlines()
        assert line == (f"wsfm-bench: error: {flag} {locked / 'out'} cannot be written "
                        "(Permission denied); give a file path in a folder you can write")
        assert list(locked.iterdir()) == []
    finally:
        locked.chmod(0o700)
