"""The group-sequential design (--until-decided, [evidence] max_seeds): evaluation seeds are added
in batches, only for what undecided rows are judged on, up to the cap, recorded in the manifest
so a rerun resumes without redoing work; the time breakdown of a run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.cli import main
from harness.records.store import finished_cells, read_cells

SUITE = """
name = "seq"
seeds = [0, 1]
selection_seeds = [10]
budgets = [2, 4]
n_samples = 300
n_eval = 300
repeats = 1
training = {{ steps = 300 }}  # enough that the poor draft alone is not non-inferior
{evidence}
[[tasks]]
name = "two-moons"
n_train = 600
n_test = 300

[[methods]]
name = "draft-only"
draft = "poor"

[[methods]]
name = "full-fm"
budgets = [2, 4, 8]

[[methods]]
name = "ws-fm"
draft = "poor"
t0 = 0.5

[[methods]]
name = "data"
"""
EVIDENCE = "[evidence]\nmax_seeds = 6\nseed_batch = 2\nmargin = { abs = 0.001 }"


def _run(tmp_path: Path, evidence: str, *extra: str) -> int:
    suite = tmp_path / "seq.toml"
    suite.write_text(SUITE.format(evidence=evidence))
    return main(["run", str(suite), "--out", str(tmp_path / "out"), "--run-id", "seq",
                 "--cache", str(tmp_path / "cache"), "--workers", "1", "--no-report",
                 "--quiet", *extra])


def test_until_decided_adds_seeds_only_for_undecided_rows_and_resumes(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(tmp_path, EVIDENCE, "--until-decided") == 0
    out = capsys.readouterr().out
    run = tmp_path / "out" / "seq"
    manifest = json.loads((run / "manifest.json").read_text())
    evidence = manifest["evidence"]
    looks = evidence["looks"]["two-moons"]
    seeds = evidence["seeds"]["two-moons"]["evaluation"]
    # A margin this tight leaves the row undecided: seeds are added two at a time up to 6.
    assert looks == [2, 4, 6] and seeds[:2] == [0, 1] and len(seeds) == 6
    assert not set(seeds[2:]) & {0, 1, 10}  # new seeds, never a selection seed
    assert "until decided: two-moons: 2 more evaluation seeds" in out
    added = [c for c in read_cells(run) if c.identity.seed in seeds[2:]]
    roles = {c.identity.role for c in added}
    assert roles == {"warm-start", "reference", "floor", "data"}
    # Only the chosen setting: one warm-start configuration per added seed, not both budgets.
    assert len({(c.identity.method, c.plan.n_steps) for c in added
                if c.identity.role == "warm-start"}) == 1
    summary = json.loads(_summary(run, capsys))
    assert summary[0]["n_evaluation_seeds"] == 6 and summary[0]["looks"] == 3
    # Where the time went, printed and kept.
    assert "time:" in out and "preparing" in out and "metrics" in out
    assert manifest["time"]["cells"] > 0 and "swd" in manifest["time"]["metrics_s"]
    assert manifest["time"]["before_cells_s"] > 0 and manifest["time"]["rest_s"] >= 0
    assert "the rest of the workers' time" in out
    # A rerun resumes: nothing left to do, nothing redone.
    before = finished_cells(run)
    assert _run(tmp_path, EVIDENCE, "--until-decided") == 0
    assert finished_cells(run) == before
    assert json.loads((run / "manifest.json").read_text())["evidence"]["looks"] == evidence[
        "looks"]


def _summary(run: Path, capsys: pytest.CaptureFixture[str]) -> str:
    assert main(["summary", str(run), "--json"]) == 0
    return capsys.readouterr().out


def test_until_decided_needs_a_cap(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(tmp_path, "", "--until-decided") == 2
    assert "--until-decided needs [evidence] max_seeds" in capsys.readouterr().err


def test_the_seeds_added_are_named_in_one_line() -> None:
    from harness.run.sequential import _more_seeds

    assert _more_seeds("digits", [102, 103, 104, 105]) == \
        "digits: 4 more evaluation seeds (102-105)"
    assert _more_seeds("text", [124]) == "text: 1 more evaluation seed (124)"
