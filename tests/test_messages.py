"""Messages that misled (issue 20, item 8): a plugin that exits on import, a folder given as
the suite, a summary with nothing to judge, and --task / --method, which with a suite pick its
entries (settings kept) instead of replacing them with bare defaults."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from harness.cli import build_suite, main, make_parser
from harness.records.store import read_cells
from harness.roles import Role
from harness.run.suite import DEFAULT_SUITE, load_suite

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests" / "fixtures" / "smoke-2026-11"


def test_a_plugin_that_exits_on_import_is_listed_as_broken(tmp_path: Path) -> None:
    site = tmp_path / "site"
    dist = site / "exiting_pkg-1.0.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: exiting-pkg\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[wsfm_bench.methods]\nexits = exiting_pkg:Thing\n")
    (site / "exiting_pkg.py").write_text("import sys\nsys.exit(3)\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(site), os.environ.get(
        "PYTHONPATH", "")])}
    out = subprocess.run([sys.executable, "-m", "harness.cli", "list"], env=env, cwd=tmp_path,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    line = next(x for x in out.stdout.splitlines() if x.strip().startswith("exits"))
    assert "BROKEN: cannot load method plugin 'exits' from exiting-pkg" in line
    assert "it calls sys.exit(3) when imported" in line
    assert "metrics:" in out.stdout and "swd" in out.stdout  # the listing went on
    assert "1 plugin(s) cannot be used" in out.stderr


def test_a_folder_given_as_the_suite_is_called_a_folder(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = ROOT / "harness" / "suites"
    assert main(["run", str(folder), "--out", str(tmp_path / "r"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert f"suite {folder} is a folder; a suite is a TOML file (that folder holds " \
        "default.toml, digits.toml" in err
    assert "does not exist" not in err


def test_summary_without_warm_starts_says_there_is_nothing_to_judge(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = tmp_path / "run"
    shutil.copytree(FIXTURE, run)
    warm = [r.cell_id for r in read_cells(run, None) if r.identity.role == Role.WARM_START]
    assert warm
    for cell_id in warm:
        (run / "cells" / f"{cell_id}.json").unlink()
    assert main(["summary", str(run)]) == 0
    out, err = capsys.readouterr()
    assert err.strip() == (f"{run}: no warm-start cells: nothing to judge (the headline "
                           "judges warm starts against full FM)")
    assert "|" not in out  # no empty table
    assert main(["summary", str(run), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == []


SUITE = """
name = "picked"
seeds = [0, 1]
selection_seeds = [7]
budgets = [4]
n_samples = 300
[[tasks]]
name = "two-moons"
n_train = 600
seeds = [3, 4, 5]
training = { steps = 77 }
[[tasks]]
name = "spirals"
[[methods]]
name = "full-fm"
solver = ["euler", "heun"]
[[methods]]
name = "ws-fm"
t0 = [0.5, 0.9]
tasks = ["spirals"]
[[methods]]
name = "draft-only"
"""


def _built(*argv: str):
    return build_suite(make_parser(["run", *argv]).parse_args(["run", *argv]))


def test_task_and_method_pick_the_suites_entries_with_their_settings(tmp_path: Path) -> None:
    path = tmp_path / "picked.toml"
    path.write_text(SUITE)
    suite = _built(str(path), "--task", "two-moons")
    assert suite.tasks == [("two-moons", {"n_train": 600})]
    assert suite.task_settings["two-moons"] == {"seeds": [3, 4, 5], "training": {"steps": 77}}
    assert suite.seeds_for("two-moons") == ([7], [3, 4, 5])
    # ws-fm runs on spirals only: it is not on two-moons, and no [[methods]] entry is lost.
    assert [(m.name, m.options) for m in suite.methods] == [
        ("full-fm", {"solver": "euler"}), ("full-fm", {"solver": "heun"}),
        ("draft-only", {})]
    suite = _built(str(path), "--method", "ws-fm")
    assert [m.options["t0"] for m in suite.methods] == [0.5, 0.9]
    assert [t for t, _ in suite.tasks] == ["two-moons", "spirals"]


def test_task_alone_picks_from_the_default_suite(tmp_path: Path) -> None:
    default = load_suite(DEFAULT_SUITE)
    suite = _built("--task", "two-moons")
    assert suite.tasks == [t for t in default.tasks if t[0] == "two-moons"]
    assert suite.task_settings["two-moons"] == default.task_settings["two-moons"]
    assert {m.name for m in suite.methods} <= {m.name for m in default.methods}


@pytest.mark.parametrize(("argv", "message"), [
    (("--task", "two-moonz"), "--task 'two-moonz': {src} has no task of that name; its tasks: "
                              "two-moons, spirals"),
    (("--method", "ddpm"), "--method 'ddpm': {src} has no method of that name; its methods: "
                           "full-fm, ws-fm, draft-only"),
    (("--task", "two-moons", "--method", "ws-fm"),
     "--method 'ws-fm': {src} on task(s) two-moons has no method of that name; its methods: "
     "full-fm, draft-only"),
    (("--method", "ws-fm:t0=0.5"), "--method 'ws-fm:t0=0.5': with a suite, --method picks "
                                   "the suite's [[methods]] entries by name"),
])
def test_a_name_the_suite_lacks_is_refused_with_the_names_it_has(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: tuple[str, ...],
        message: str) -> None:
    path = tmp_path / "picked.toml"
    path.write_text(SUITE)
    assert main(["run", str(path), *argv, "--out", str(tmp_path / "r"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert message.format(src=path) in err and err.count("\n") == 1, err


def test_without_a_suite_task_and_method_still_make_a_suite() -> None:
    suite = _built("--task", "spirals", "--method", "ws-fm:t0=0.5|0.9", "--budgets", "4")
    assert suite.name == "cli" and suite.tasks == [("spirals", {})]
    assert [m.options for m in suite.methods] == [{"t0": 0.5}, {"t0": 0.9}]
