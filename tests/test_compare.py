"""`compare` on synthetic run folders (no training, no GPU)."""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Callable
from pathlib import Path

import pytest

from harness.analysis.compare import Tol, Tolerances, add_arguments, compare_runs, run
from harness.errors import ConfigError, RunDirError
from harness.records.schema import SCHEMA_VERSION
from tests.synthetic import run_cell, suite_of, to_record, write_run

SEEDS = [0, 1, 2]
NOISE = {0: -0.01, 1: 0.0, 2: 0.01}  # sd 0.01 over three seeds
Mutate = Callable[[dict], None]


def _timing(seconds: float) -> dict:
    return {"median": seconds, "spread": 1e-6, "first": seconds, "times": [seconds] * 3}


def _record(method: str, seed: int, n: int = 20, t0: float | None = None) -> dict:
    """A cell record in the flat fields of results schema version 1 (tests.synthetic turns it
    into this version's record)."""
    warm = method == "ws-fm"
    k = math.ceil(round((1 - t0) * n, 9)) if warm else n
    variant = f"good t0={t0} draft scratch euler" if warm else "solver=euler"
    options = {"draft": "good", "t0": t0} if warm else {"solver": "euler"}
    rec = {
        "task": "two-moons", "method": method, "family": "warm-start" if warm else "flow",
        "variant": variant, "draft": "good" if warm else None, "t0": t0,
        "start": "draft" if warm else None, "init": "scratch" if warm else None,
        "solver": "euler", "n_steps": n, "k_steps": k, "nfe_budget": n, "nfe_expected": k,
        "nfe_measured": k, "nfe_ok": True, "seed": seed, "time_s": 1e-4 * k,
        "time_spread_s": 1e-6, "first_call_s": 1e-4, "draft_time_s": 0.0,
        "integrate_time_s": 1e-4 * k, "time_per_call_s": 1e-4,
        "timings": {"total": _timing(1e-4 * k), "draft": _timing(0.0),
                    "integrate": _timing(1e-4 * k),
                    "reference": _timing(1e-4 * n) if warm else None},
        "deterministic": True, "nonfinite": 0, "n_samples": 200, "n_eval": 200,
        "device": "cpu", "threads": 1,
        "cell": {"task": "two-moons", "task_options": {}, "method": method,
                 "method_options": options, "n_steps": n, "seed": seed, "device": "cpu",
                 "n_samples": 200, "n_eval": 200, "repeats": 3, "warmup": 1, "training": {}},
        "ref_time_s": None, "ref_nfe": None, "nfe_speedup": None, "nfe_speedup_theory": None,
        "ideal_speedup": None, "wall_speedup": None, "wall_bound": None, "timing_noise": None,
        "bound_ok": None,
        "metrics": {"swd": {"value": 0.1 + NOISE[seed], "higher_is_better": False},
                    "precision": {"value": 0.9 - NOISE[seed], "higher_is_better": True}},
        "cell_id": f"two-moons-{method}-N{n}-t{t0}-s{seed}",
    }
    if warm:
        rec.update(ref_time_s=1e-4 * n, ref_nfe=n, nfe_speedup=n / k, nfe_speedup_theory=n / k,
                   ideal_speedup=1 / (1 - t0), wall_speedup=1.9, wall_bound=2.0,
                   timing_noise=0.05, bound_ok=True)
    return rec


def _manifest(name: str, seeds: list[int]) -> dict:
    """A run manifest valid under the results schema (manifest.schema.json)."""
    return {
        "schema_version": SCHEMA_VERSION, "run_id": name, "config_hash": "abc123", "seeds": seeds,
        "suite": {"name": "synthetic", "tasks": [["two-moons", {}]], "budgets": [20],
                  "methods": [{"name": "full-fm", "options": {}},
                              {"name": "ws-fm", "options": {}}], "seeds": seeds},
        "versions": {"torch": "x"}, "git_commit": {"commit": "deadbeef", "dirty": False},
        "device": {"device": "cpu", "description": "test cpu"},
        "started": "2026-01-01T00:00:00", "resumed": [], "finished": None, "status": "running",
        "primary_metrics": {"two-moons": "swd"},
    }


def _make_run(root: Path, name: str, mutate: Mutate | None = None,
              seeds: list[int] = SEEDS, version_1: bool = False, **manifest: object) -> Path:
    """A run folder; ``version_1``: written as results schema version 1 wrote it."""
    run_dir = root / name
    head = {**_manifest(name, seeds), **manifest}
    recs = []
    for seed in seeds:
        for rec in (_record("full-fm", seed), _record("ws-fm", seed, t0=0.5)):
            if mutate:
                mutate(rec)
            recs.append(run_cell(rec))
    if not version_1:
        write_run(run_dir, head, recs)
        return run_dir
    (run_dir / "cells").mkdir(parents=True)
    suite = suite_of(to_record(rec) for rec in recs)
    (run_dir / "manifest.json").write_text(json.dumps({**head, "schema_version": "1",
                                                       "suite": suite}))
    for rec in recs:
        path = run_dir / "cells" / f"{rec['cell_id']}.json"
        path.write_text(json.dumps({"schema_version": "1", **rec}))
    return run_dir


def _shift(method: str, metric: str, delta: float) -> Mutate:
    def mutate(rec: dict) -> None:
        if rec["method"] == method:
            rec["metrics"][metric]["value"] += delta
    return mutate


@pytest.fixture()
def base(tmp_path: Path) -> Path:
    return _make_run(tmp_path, "base")


def test_same_run_has_no_regressions(base: Path) -> None:
    result = compare_runs(base, base)
    assert result.exit_code == 0 and result.regressions == [] and result.improvements == []
    assert result.compared == 4 and result.unchanged == 4
    assert ("**0 regressions**: quality in 4 compared metric groups: 0 worse, 0 better, "
            "4 unchanged, 0 inconclusive. 0 timing warning(s)") in result.to_markdown()


def test_worse_lower_is_better_metric_is_a_regression(base: Path, tmp_path: Path) -> None:
    new = _make_run(tmp_path, "new", _shift("ws-fm", "swd", 0.05))
    result = compare_runs(base, new)
    assert result.exit_code == 1
    [reg] = result.regressions
    assert reg["kind"] == "quality" and reg["metric"] == "swd" and reg["p_value"] < 0.05
    assert reg["base"] == pytest.approx(0.1) and reg["delta"] == pytest.approx(0.05)
    md = result.to_markdown()
    assert "**1 regression**: quality in 4 compared metric groups: 1 worse, 0 better" in md
    row = next(line for line in md.splitlines() if line.startswith("| quality"))
    for word in ("two-moons", "ws-fm", "good t0=0.5 draft scratch euler", "swd"):
        assert word in row


def _quiet(rec: dict) -> None:
    """Seed noise a tenth of the default's: sd 0.001 over three seeds."""
    for metric in rec["metrics"].values():
        metric["value"] -= 0.9 * NOISE[rec["seed"]] * (1 if metric["value"] < 0.5 else -1)


def test_change_shown_within_tolerance_is_unchanged(tmp_path: Path) -> None:
    base = _make_run(tmp_path, "base", _quiet)

    def shifted(rec: dict) -> None:
        _quiet(rec)
        _shift("ws-fm", "swd", 0.005)(rec)  # swd tolerance: abs 0.01
    result = compare_runs(base, _make_run(tmp_path, "new", shifted))
    assert result.exit_code == 0 and result.unchanged == 4 and result.inconclusive == []
    [group] = [g for g in result.groups if g["method"] == "ws-fm" and g["metric"] == "swd"]
    low, high = group["interval"]  # the 90% Welch interval of new - base, within +-0.01
    assert -0.01 < low < 0.005 < high < 0.01 and group["p_value"] < 0.05
    assert group["status"] == "unchanged" and "TOST" in group["detail"]


def test_change_within_tolerance_with_too_few_seeds_is_inconclusive(base: Path,
                                                                    tmp_path: Path) -> None:
    """sd 0.01 over three seeds cannot show a change of 0.005 within 0.01: inconclusive,
    listed with its interval, never counted as unchanged; --strict fails it."""
    new = _make_run(tmp_path, "new", _shift("ws-fm", "swd", 0.005))
    result = compare_runs(base, new)
    assert result.exit_code == 0 and result.regressions == [] and result.unchanged == 3
    [entry] = result.inconclusive
    assert (entry["method"], entry["metric"]) == ("ws-fm", "swd")
    low, high = entry["interval"]
    assert low < -0.01 or high > 0.01
    assert low < 0.005 < high and entry["delta"] == pytest.approx(0.005)
    md = result.to_markdown()
    assert "3 unchanged, 1 inconclusive" in md and "## Inconclusive" in md
    assert "Inconclusive groups do not fail the comparison (with --strict they do)." in md
    strict = compare_runs(base, new, strict=True)
    assert strict.exit_code == 1 and strict.regressions == [] and len(strict.inconclusive) == 1
    assert "With --strict, inconclusive groups fail the comparison" in strict.to_markdown()


def test_higher_is_better_direction(base: Path, tmp_path: Path) -> None:
    up = compare_runs(base, _make_run(tmp_path, "up", _shift("full-fm", "precision", 0.05)))
    assert up.exit_code == 0 and up.regressions == []
    assert [(i["kind"], i["metric"]) for i in up.improvements] == [("quality", "precision")]
    down = compare_runs(base, _make_run(tmp_path, "down", _shift("full-fm", "precision", -0.05)))
    assert down.exit_code == 1 and down.regressions[0]["metric"] == "precision"
    # A lower swd is an improvement, not a regression.
    better = compare_runs(base, _make_run(tmp_path, "better", _shift("full-fm", "swd", -0.05)))
    assert better.exit_code == 0 and better.improvements[0]["metric"] == "swd"


def test_insignificant_change_is_inconclusive(base: Path, tmp_path: Path) -> None:
    def noisy(rec: dict) -> None:  # mean +0.02, but spread 0.2 over seeds: p is large
        if rec["method"] == "ws-fm":
            rec["metrics"]["swd"]["value"] = 0.12 + 10 * NOISE[rec["seed"]]
    result = compare_runs(base, _make_run(tmp_path, "new", noisy))
    assert result.exit_code == 0 and [e["metric"] for e in result.inconclusive] == ["swd"]


def test_metric_tolerance_from_file_overrides_default(base: Path, tmp_path: Path) -> None:
    new = _make_run(tmp_path, "new", _shift("ws-fm", "swd", 0.05))
    path = tmp_path / "tol.toml"
    path.write_text("[default]\nrel = 0.0\nabs = 0.0\n[metrics.swd]\nabs = 0.1\n")
    tol = Tolerances.from_file(path)
    assert tol.for_metric("swd") == Tol(rel=0.0, abs=0.1)
    assert tol.for_metric("precision") == Tol(rel=0.0, abs=0.0)
    assert compare_runs(base, new, tol).exit_code == 0
    assert compare_runs(base, new, tol.with_overrides(metric_tols=["swd:abs=0.01"])).exit_code == 1
    assert compare_runs(base, new, Tolerances.default()).exit_code == 1


def test_default_tolerance_file() -> None:
    tol = Tolerances.default()
    assert tol.for_metric("swd") == Tol(rel=0.10, abs=0.01)
    assert tol.for_metric("unknown-metric") == Tol(rel=0.05, abs=0.0)
    assert tol.wall_speedup_rel == 0.25


@pytest.mark.parametrize("text, word", [
    ("[default]\nrel = 0.1\nrelative = 0.2\n", "default.'relative'"),
    ("[metrics.swd]\nabss = 0.1\n", "metrics.swd.'abss'"),
    ("[timing]\nwall_rel = 0.1\n", "timing.'wall_rel'"),
    ("[defaults]\nrel = 0.1\n", "'defaults'"),
    ("[metrics.swd]\nrel = -0.1\n", "metrics.swd.rel = -0.1 is negative"),
    ("[default]\nabs = \"x\"\n", "default.abs must be a finite number"),
])
def test_bad_tolerance_file(tmp_path: Path, text: str, word: str) -> None:
    path = tmp_path / "tol.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match="tol.toml") as info:
        Tolerances.from_file(path)
    assert word in str(info.value)


def test_bad_overrides() -> None:
    tol = Tolerances.default()
    for bad in ("swd", "swd:rel", "swd:rel=x", "swd:scale=1", ":rel=0.1"):
        with pytest.raises(ConfigError):
            tol.with_overrides(metric_tols=[bad])
    with pytest.raises(ConfigError, match="negative"):
        tol.with_overrides(rel=-1.0)
    over = tol.with_overrides(rel=0.5, metric_tols=["mmd:abs=0.3,rel=0"])
    assert over.for_metric("swd") == Tol(rel=0.5, abs=0.01)
    assert over.for_metric("mmd") == Tol(rel=0.0, abs=0.3)
    assert over.for_metric("other") == Tol(rel=0.5, abs=0.0)


def test_nfe_change_is_a_regression(base: Path, tmp_path: Path) -> None:
    def more_calls(rec: dict) -> None:
        if rec["method"] == "full-fm" and rec["seed"] == 1:
            rec["nfe_measured"] = 21
    result = compare_runs(base, _make_run(tmp_path, "new", more_calls))
    assert result.exit_code == 1
    assert [(r["kind"], r["metric"], r["base"], r["new"]) for r in result.regressions] == \
        [("nfe", "nfe_measured", 20, 21)]
    assert "NFE accounting changed (seed 1)" in result.to_markdown()

    def not_ok(rec: dict) -> None:
        rec["nfe_ok"] = rec["seed"] != 2
    flagged = compare_runs(base, _make_run(tmp_path, "not-ok", not_ok)).regressions
    assert {(r["kind"], r["metric"], r["method"]) for r in flagged} == \
        {("nfe", "nfe_ok", "full-fm"), ("nfe", "nfe_ok", "ws-fm")}


def test_speedup_off_theory_is_a_bound_regression(base: Path, tmp_path: Path) -> None:
    def off(rec: dict) -> None:
        if rec["method"] == "ws-fm" and rec["seed"] == 0:
            rec["nfe_speedup"] = 2.5
    result = compare_runs(base, _make_run(tmp_path, "new", off))
    [reg] = result.regressions
    assert reg["kind"] == "bound" and reg["metric"] == "nfe_speedup"
    assert reg["base"] == 2.0 and reg["new"] == 2.5
    assert "speed-up bound broken" in result.to_markdown()


def test_per_cell_wall_clock_flips_are_noted_not_regressions(tmp_path: Path) -> None:
    def fail(rec: dict) -> None:
        if rec["method"] == "ws-fm":
            rec["bound_ok"] = False  # per-cell verdicts flip with timing noise
    base, new = _make_run(tmp_path, "base"), _make_run(tmp_path, "new", fail)
    result = compare_runs(base, new)
    assert result.exit_code == 0
    assert any("per-cell wall-clock bound" in note for note in result.notes)


def test_group_short_of_the_wall_clock_bound_warns_unless_timing_is_strict(
        tmp_path: Path) -> None:
    def far_below(rec: dict) -> None:
        if rec["wall_speedup"]:
            rec["wall_speedup"], rec["wall_bound"] = 1.9, 4.0  # 0.475 of S_wall
    base, new = _make_run(tmp_path, "base"), _make_run(tmp_path, "new", far_below)
    # Timing alone never fails a comparison (load noise on a shared machine) ...
    warned = compare_runs(base, new)
    assert warned.exit_code == 0 and warned.regressions == []
    assert {(r["kind"], r["metric"]) for r in warned.warnings} == {("bound",
                                                                   "wall_speedup/S_wall")}
    assert "1 timing warning(s) (never a regression unless --timing strict)" in \
        warned.to_markdown()
    # ... unless asked to.
    kinds = {(r["kind"], r["metric"]) for r in compare_runs(base, new, timing="strict")
             .regressions}
    assert kinds == {("bound", "wall_speedup/S_wall")}
    assert compare_runs(new, new, timing="strict").exit_code == 0  # short in base too


def test_timing_judged_by_wall_speedup_only(base: Path, tmp_path: Path) -> None:
    def slower(rec: dict) -> None:
        rec["time_s"] *= 3  # a slower machine: absolute seconds are information only
    slow = compare_runs(base, _make_run(tmp_path, "slow", slower))
    assert slow.exit_code == 0
    assert any("time_s new/base" in note and "3x" in note for note in slow.notes)

    def within(rec: dict) -> None:
        if rec["wall_speedup"]:
            rec["wall_speedup"] = 1.5  # 1.9 * 0.75 = 1.425 <= 1.5
    assert compare_runs(base, _make_run(tmp_path, "within", within)).exit_code == 0

    def drop(rec: dict) -> None:
        if rec["wall_speedup"]:
            rec["wall_speedup"] = 1.2
    assert compare_runs(base, _make_run(tmp_path, "drop", drop)).exit_code == 0  # warnings
    result = compare_runs(base, _make_run(tmp_path, "drop-strict", drop), timing="strict")
    # 1.2 is below 1.9 by more than 25%, and 0.6 of S_wall = 2.0: timing and bound regressions.
    by_kind = {r["kind"]: r for r in result.regressions}
    assert set(by_kind) == {"timing", "bound"}
    reg = by_kind["timing"]
    assert reg["metric"] == "wall_speedup"
    assert reg["base"] == pytest.approx(1.9) and reg["new"] == pytest.approx(1.2)
    loose = Tolerances(wall_speedup_rel=0.5)
    assert compare_runs(base, _make_run(tmp_path, "drop2", drop), loose,
                        timing="strict").exit_code == 0


def test_single_seed_is_inconclusive_unless_identical(tmp_path: Path) -> None:
    base = _make_run(tmp_path, "base", seeds=[0])
    new = _make_run(tmp_path, "new", _shift("ws-fm", "swd", 0.5), seeds=[0])  # sixfold
    result = compare_runs(base, new)
    assert result.regressions == [] and result.unchanged == 3
    [entry] = result.inconclusive
    assert entry["p_value"] is None and entry["interval"] is None
    assert "one seed on a side" in entry["detail"]
    assert any("single seed on a side: inconclusive" in note for note in result.notes)
    assert compare_runs(base, new, strict=True).exit_code == 1
    same = compare_runs(base, base)
    assert same.exit_code == 0 and same.unchanged == 4 and same.inconclusive == []


def test_tenfold_change_on_one_of_two_seeds_is_inconclusive(tmp_path: Path) -> None:
    """A Welch test against zero with two seeds called this "unchanged"."""
    def tenfold(rec: dict) -> None:
        if rec["method"] == "ws-fm" and rec["seed"] == 1:
            rec["metrics"]["swd"]["value"] *= 10
    base = _make_run(tmp_path, "base", seeds=[0, 1])
    result = compare_runs(base, _make_run(tmp_path, "new", tenfold, seeds=[0, 1]))
    assert result.regressions == [] and result.unchanged == 3
    [entry] = result.inconclusive
    assert (entry["method"], entry["metric"]) == ("ws-fm", "swd")
    assert entry["delta"] == pytest.approx(0.45)
    assert compare_runs(base, _make_run(tmp_path, "new2", tenfold, seeds=[0, 1]),
                        strict=True).exit_code == 1


def _diverged(seeds: set[int], value: float = math.nan) -> Mutate:
    def mutate(rec: dict) -> None:
        if rec["method"] == "ws-fm" and rec["seed"] in seeds:
            rec["metrics"]["swd"]["value"] = value
    return mutate


@pytest.mark.parametrize("seeds, value, named", [
    ({1}, math.nan, "seed(s) 1 (nan)"),
    ({0, 1, 2}, math.nan, "seed(s) 0 (nan), 1 (nan), 2 (nan)"),
    ({2}, math.inf, "seed(s) 2 (inf)"),
])
@pytest.mark.parametrize("strict", [False, True])
def test_nonfinite_values_in_new_are_a_regression(base: Path, tmp_path: Path, seeds: set[int],
                                                  value: float, named: str,
                                                  strict: bool) -> None:
    result = compare_runs(base, _make_run(tmp_path, "new", _diverged(seeds, value)),
                          strict=strict)
    assert result.exit_code == 1
    [reg] = result.regressions
    assert (reg["kind"], reg["method"], reg["metric"]) == ("nonfinite", "ws-fm", "swd")
    assert f"non-finite in new at {named} where base was finite" in reg["detail"]
    assert not math.isfinite(reg["new"]) and result.unchanged == 3
    assert "**1 regression**: quality in 4 compared metric groups: 1 worse" in \
        result.to_markdown()


def test_nonfinite_values_in_both_runs_at_the_same_seed_are_not_a_regression(
        tmp_path: Path) -> None:
    base = _make_run(tmp_path, "base", _diverged({1}))
    same = compare_runs(base, _make_run(tmp_path, "same", _diverged({1})))
    assert same.exit_code == 0 and same.unchanged == 4  # the finite seeds are identical
    mended = compare_runs(base, _make_run(tmp_path, "mended"))
    assert mended.exit_code == 0
    [better] = mended.improvements
    assert better["kind"] == "nonfinite" and "finite again at seed(s) 1" in better["detail"]
    broken = compare_runs(base, _make_run(tmp_path, "broken", _diverged({1, 2})))
    assert [r["detail"].split("; ")[-1] for r in broken.regressions] == [
        "non-finite in new at seed(s) 2 (nan) where base was finite"]


def test_zero_variance(tmp_path: Path) -> None:
    def flat(value: float) -> Mutate:
        def mutate(rec: dict) -> None:
            rec["metrics"]["swd"]["value"] = value
        return mutate
    base = _make_run(tmp_path, "base", flat(0.0))
    assert compare_runs(base, base, Tolerances(Tol(0.0, 0.0))).exit_code == 0
    same = _make_run(tmp_path, "same", flat(0.0))
    assert compare_runs(base, same, Tolerances(Tol(0.0, 0.0))).exit_code == 0
    worse = compare_runs(base, _make_run(tmp_path, "worse", flat(0.5)))
    assert [r["metric"] for r in worse.regressions] == ["swd", "swd"]
    assert all("zero spread" in r["detail"] and r["p_value"] is None for r in worse.regressions)
    # A constant shift within the tolerance (swd: abs 0.01) is exact: unchanged.
    near = compare_runs(base, _make_run(tmp_path, "near", flat(0.004)))
    assert near.exit_code == 0 and near.unchanged == 4 and near.inconclusive == []


def test_not_comparable_added_removed_and_strict(base: Path, tmp_path: Path) -> None:
    def change(rec: dict) -> None:
        if rec["method"] == "full-fm":
            rec["n_eval"] = 400
        else:
            del rec["metrics"]["precision"]
            rec["metrics"]["mmd"] = {"value": 0.0, "higher_is_better": False}
    new = _make_run(tmp_path, "new", change)
    result = compare_runs(base, new)
    assert result.exit_code == 0 and result.compared == 1
    [nc] = result.not_comparable
    assert nc["method"] == "full-fm" and "n_eval" in nc["detail"]
    assert [(r["method"], r["metric"]) for r in result.removed] == [("ws-fm", "precision")]
    assert [(r["method"], r["metric"]) for r in result.added] == [("ws-fm", "mmd")]
    md = result.to_markdown()
    assert "## Not comparable" in md and "## Added" in md and "## Removed" in md
    strict = compare_runs(base, new, strict=True)
    assert [(r["kind"], r["metric"]) for r in strict.regressions] == [("missing", "precision")]


def test_an_older_schema_version_is_migrated_and_compared(tmp_path: Path) -> None:
    old = _make_run(tmp_path, "old", version_1=True)
    new = _make_run(tmp_path, "new")
    for base, other in ((old, new), (new, old)):
        result = compare_runs(base, other)
        assert result.exit_code == 0 and result.compared == 4 and result.unchanged == 4
    worse = _make_run(tmp_path, "worse", _shift("ws-fm", "swd", 0.05))
    assert compare_runs(old, worse).exit_code == 1


def test_unreadable_schema_versions_are_refused_naming_the_side(tmp_path: Path) -> None:
    new = _make_run(tmp_path, "new")
    future = _make_run(tmp_path, "future", schema_version="99")
    with pytest.raises(RunDirError) as info:
        compare_runs(new, future)
    msg = str(info.value)
    assert msg.startswith("new run: ") and "schema version 99" in msg
    assert str(future / "manifest.json") in msg
    # A manifest without schema_version predates versioning: refused, with what to do.
    legacy = _make_run(tmp_path, "legacy")
    manifest = json.loads((legacy / "manifest.json").read_text())
    del manifest["schema_version"]
    (legacy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(RunDirError) as info:
        compare_runs(legacy, new)
    assert info.value.args[0].startswith("base run: ") and "no schema_version" in str(info.value)


def test_not_a_run_dir(base: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(RunDirError, match="^new run: .*manifest.json is missing"):
        compare_runs(base, empty)
    with pytest.raises(RunDirError, match="^base run: .*not a directory"):
        compare_runs(tmp_path / "nowhere", base)


def _cli(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(list(argv))


def test_run_glue(base: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    new = _make_run(tmp_path, "new", _shift("ws-fm", "swd", 0.05))
    out = tmp_path / "out" / "compare.md"
    assert run(_cli(str(base), str(base))) == 0
    assert "0 regressions" in capsys.readouterr().out
    assert run(_cli(str(base), str(new), "--json", "--output", str(out))) == 1
    data = json.loads(capsys.readouterr().out)
    assert data["exit_code"] == 1 and data["regressions"][0]["metric"] == "swd"
    assert data["tolerances"]["metrics"]["swd"] == {"rel": 0.1, "abs": 0.01}
    assert "**1 regression**" in out.read_text()
    assert run(_cli(str(base), str(new), "--metric-tol", "swd:abs=0.1")) == 0
    assert run(_cli(str(base), str(new), "--abs", "0.1")) == 0
    assert run(_cli(str(base), str(new), "--alpha", "1e-9")) == 0
    capsys.readouterr()
    with pytest.raises(ConfigError, match="alpha"):
        run(_cli(str(base), str(new), "--alpha", "2"))


def test_a_group_with_no_finite_value_in_either_run_is_inconclusive_not_unchanged(
        tmp_path: Path) -> None:
    """Diverged at every seed in both runs: nothing to compare, so neither unchanged nor a new
    regression (the base was already broken), and --strict fails it."""
    every = _diverged({0, 1, 2})
    base = _make_run(tmp_path, "base", every)
    result = compare_runs(base, _make_run(tmp_path, "new", every))
    assert result.regressions == [] and result.unchanged == 3
    [entry] = result.inconclusive
    assert entry["kind"] == "nonfinite" and entry["detail"].endswith("no finite value on a side")
    assert compare_runs(base, _make_run(tmp_path, "new2", every), strict=True).exit_code == 1
