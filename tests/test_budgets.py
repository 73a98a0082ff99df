"""Wall-clock budgets: selection under a fake clock, bad budgets refused before any work,
'budget too small' recorded while the run goes on, an end-to-end run with the report's
"Equal wall-clock" section, resume, and no retraining when probing other N."""

from __future__ import annotations

import json
import math
import re
import tomllib

import pytest
import torch

from harness.cache import Cache
from harness.cli import main
from harness.errors import ConfigError
from harness.plugins import SamplingPlan
from harness.records import store as records
from harness.records.cell import Cell, TimeCell
from harness.report.document import write_report
from harness.run import budgets, runner
from harness.run.budgets import Costs, probe_costs, select_steps
from harness.run.expand import expand_cells
from harness.run.jobs import Worker
from harness.run.measure import time_plan
from harness.run.suite import parse_suite
from tests.conftest import TINY_SUITE
from tests.synthetic import fields_of
from wsfm.schedule import num_steps

# --- a fake clock and a fake method whose costs are known exactly ----------------------------

T_DRAFT, T_FIXED, T_CALL = 0.004, 0.001, 0.001  # seconds: draft, integration set-up, per call


class FakeClock:
    """Time advances only when the fake method says so: timings are exact."""

    def __init__(self) -> None:
        self.now = 0.0

    def time(self, fn):
        start = self.now
        result = fn()
        return result, self.now - start


class FakeNet(torch.nn.Module):
    """Each call costs T_CALL on the fake clock."""

    def __init__(self, clock: FakeClock) -> None:
        super().__init__()
        self.clock = clock

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.clock.now += T_CALL
        return x


class FakeMethod:
    """A method with T_DRAFT per batch, T_FIXED per integration and T_CALL per network call;
    K(N) = ceil((1 - t0) N) steps of ``s`` calls each."""

    uses_budget = True

    def __init__(self, clock: FakeClock, t0: float = 0.0, s: int = 1) -> None:
        self.clock, self.t0, self.s = clock, t0, s

    def prepare(self, ctx, n: int) -> SamplingPlan:
        k = num_steps(self.t0, n)
        clock, calls = self.clock, k * self.s

        def draw_start(batch, g):
            clock.now += T_DRAFT
            return torch.zeros(batch, 2)

        def integrate(net, x, g):
            clock.now += T_FIXED
            for _ in range(calls):
                x = net(x)
            return x

        return SamplingPlan(network=FakeNet(clock), draw_start=draw_start, integrate=integrate,
                            expected_nfe=calls, n_steps=n, k_steps=k, evals_per_step=self.s,
                            t0=self.t0)


def _probe(method: FakeMethod, clock: FakeClock) -> budgets.Probe:
    def timed(plan):
        return time_plan(plan, plan.network, 8, clock.time,
                         lambda: torch.Generator().manual_seed(0), 1, 3)
    return probe_costs(method, None, timed)


def _largest_fitting(budget: float, nfe_of) -> int:
    """Brute force: the largest N in 1..N_MAX whose predicted time fits."""
    fits = [n for n in range(1, budgets.N_MAX + 1)
            if T_DRAFT + T_FIXED + nfe_of(n) * T_CALL <= budget]
    return max(fits)


@pytest.mark.parametrize(
    ("t0", "s", "budget", "n", "k"),
    [
        (0.0, 1, 0.0305, 25, 25),    # full FM, Euler: 0.005 + N * 0.001 <= 0.0305
        (0.0, 2, 0.0305, 12, 12),    # Heun / midpoint: 2 calls per step
        (0.8, 1, 0.0075, 10, 2),     # WS-FM t0 = 0.8: K = 2 fits, K(11) = 3 does not
        (0.8, 1, 0.0305, 125, 25),   # K = ceil(0.2 N) = 25 at N = 125, 26 at N = 126
        (0.8, 2, 0.0305, 60, 12),    # WS-FM with a 2-call solver
        (0.75, 4, 0.1, 92, 23),      # RK4: 4 * 23 calls fit, 4 * 24 do not
    ],
)
def test_selection_picks_the_largest_n_within_the_budget_under_a_fake_clock(t0, s, budget, n, k):
    clock = FakeClock()
    method = FakeMethod(clock, t0, s)
    probe = _probe(method, clock)
    assert probe.nfe_ok
    assert probe.costs.draft_s == pytest.approx(T_DRAFT)
    assert probe.costs.fixed_s == pytest.approx(T_FIXED, abs=1e-12)
    assert probe.costs.per_call_s == pytest.approx(T_CALL)

    def nfe_of(m):
        return method.prepare(None, m).expected_nfe
    pick = select_steps(budget, probe.costs, nfe_of)
    assert (pick.n_steps, pick.nfe) == (n, k * s) == (_largest_fitting(budget, nfe_of), k * s)
    assert num_steps(t0, n) == k and num_steps(t0, n + 1) * s * T_CALL + 0.005 > budget
    assert pick.predicted_time_s == pytest.approx(0.005 + k * s * T_CALL)
    assert pick.predicted_time_s <= budget and not pick.capped
    assert pick.min_time_s == pytest.approx(0.005 + num_steps(t0, 1) * s * T_CALL)


def test_selection_too_small_capped_and_budget_free_methods() -> None:
    costs = Costs(T_DRAFT, T_FIXED, T_CALL)
    small = select_steps(0.0055, costs, lambda n: n)
    assert not small.fits and small.n_steps is None and small.min_n_steps == 1
    assert small.min_time_s == pytest.approx(0.006)
    big = select_steps(10.0, costs, lambda n: n, n_max=50)
    assert big.n_steps == 50 and big.capped
    # NFE independent of N (AR: the sequence length; draft only: 0): fits or not, N = 0.
    ar = select_steps(0.07, costs, lambda n: 64, uses_budget=False)
    assert (ar.n_steps, ar.nfe) == (0, 64) and ar.predicted_time_s == pytest.approx(0.069)
    assert not select_steps(0.06, costs, lambda n: 64, uses_budget=False).fits
    # Noise that tilts the line (f < 0): f folds into c, the larger seconds per call.
    folded = budgets.fit_costs([0.001, 0.003], [(32, 0.1), (4, 0.008)])
    assert (folded.draft_s, folded.fixed_s, folded.per_call_s) == (0.002, 0.0, 0.1 / 32)
    none = budgets.fit_costs([0.001], [(0, 0.0002)])  # no network: all fixed
    assert (none.fixed_s, none.per_call_s) == (0.0002, 0.0)
    for bad in (0, -1.0, math.nan, math.inf):
        with pytest.raises(ConfigError, match="time budget"):
            select_steps(bad, costs, lambda n: n)


# --- suites: validation before any work, cells and their ids ----------------------------------

METHODS = """
[[methods]]
name = "full-fm"
[[methods]]
name = "ws-fm"
t0 = 0.75
[[methods]]
name = "draft-only"
"""


def _suite_text(time_line: str, methods: str = METHODS) -> str:
    return TINY_SUITE.replace("budgets = [4]\n", f"budgets = [4]\n{time_line}\n") + methods


@pytest.mark.parametrize(
    ("time_line", "methods", "key", "value"),
    [
        ("time_budgets = [0.02, 0]", METHODS, "time_budgets", "0"),
        ("time_budgets = [-0.5]", METHODS, "time_budgets", "-0.5"),
        ("time_budgets = [nan]", METHODS, "time_budgets", "nan"),
        ("time_budgets = [inf]", METHODS, "time_budgets", "inf"),
        ('time_budgets = ["fast"]', METHODS, "time_budgets", "'fast'"),
        ("time_budgets = [true]", METHODS, "time_budgets", "True"),
        ("time_budgets = [0.1]\ntime_batch = 0", METHODS, "time_batch", "0"),
        ("", '[[methods]]\nname = "full-fm"\ntime_budgets = [0.0]', "time_budgets of method "
         "'full-fm'", "0.0"),
    ],
)
def test_bad_time_budgets_are_refused_before_any_work(tmp_path, capsys, time_line, methods,
                                                      key, value) -> None:
    suite = tmp_path / "suite.toml"
    suite.write_text(_suite_text(time_line, methods))
    assert main(["run", str(suite), "--out", str(tmp_path / "results"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("error:") == 1 and key in err and value in err, err
    assert not (tmp_path / "results").exists()


def test_bad_task_time_budget_names_the_task() -> None:
    text = _suite_text("").replace('name = "two-moons"', 'name = "two-moons"\ntime_budgets = [-2]')
    with pytest.raises(ConfigError, match=re.escape("task 'two-moons': time_budgets: -2")):
        parse_suite(tomllib.loads(text), "s")


def test_time_cells_leave_nfe_cells_and_the_config_hash_alone() -> None:
    plain = parse_suite(tomllib.loads(_suite_text("")), "s")
    timed = parse_suite(tomllib.loads(_suite_text("time_budgets = [0.02, 0.05]\ntime_batch = 100")),
                        "s")
    assert "time_budgets" not in plain.as_dict() and "time_batch" not in plain.as_dict()
    assert all("time_budgets" not in m for m in plain.as_dict()["methods"])
    old = expand_cells(plain)
    new = expand_cells(timed)
    assert [c.cell_id for c in new if not isinstance(c, TimeCell)] == [c.cell_id for c in old]
    tcells = [c for c in new if isinstance(c, TimeCell)]
    assert len(tcells) == 3 * 2 and {c.time_budget for c in tcells} == {0.02, 0.05}
    assert all(c.n_steps == 0 and c.time_batch == 100 for c in tcells)
    assert len({c.cell_id for c in new}) == len(new)  # the budget is part of the id
    again = Cell.from_dict(json.loads(json.dumps(tcells[0].to_dict())))
    assert isinstance(again, TimeCell) and again == tcells[0]
    assert type(tcells[0].at_steps(7)) is Cell and tcells[0].at_steps(7).n_steps == 7
    # per method: its own list, or none at all
    methods = METHODS.replace('name = "draft-only"', 'name = "draft-only"\ntime_budgets = []')
    methods = methods.replace("t0 = 0.75", "t0 = 0.75\ntime_budgets = [0.3]")
    mixed = parse_suite(tomllib.loads(_suite_text("time_budgets = [0.02]", methods)), "s")
    got = {(c.method, c.time_budget) for c in expand_cells(mixed) if isinstance(c, TimeCell)}
    assert got == {("full-fm", 0.02), ("ws-fm", 0.3)}


# --- end to end on two-moons ---------------------------------------------------------------

E2E_BUDGETS = [0.02, 0.04, 0.08]


@pytest.fixture(scope="module")
def budget_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("budgets")
    text = _suite_text(f"time_budgets = {E2E_BUDGETS}\ntime_batch = 200")
    # One cell whose budget no setting fits: recorded, and the run goes on.
    text += '[[methods]]\nname = "full-fm"\nsolver = "rk4"\ntime_budgets = [1e-9]\n'
    suite = parse_suite(tomllib.loads(text), "budget suite")
    cache = Cache(tmp / "cache")
    run_dir = runner.run_suite(suite, tmp / "results", cache=cache, progress=False)
    return run_dir, suite, cache


def test_every_method_has_quality_at_three_time_budgets(budget_run) -> None:
    run_dir, _, _ = budget_run
    timed = [r for r in map(fields_of, records.read_cells(run_dir, time_budgets=True))
             if r["time_budget_s"] in E2E_BUDGETS]
    assert len(timed) == 3 * len(E2E_BUDGETS)
    for r in timed:
        assert r["budget_status"] == "ok", r
        assert r["nfe_ok"] and math.isfinite(r["metrics"]["swd"]["value"])
        assert r["predicted_time_s"] <= r["time_budget_s"] and r["time_batch"] == 200
        # The budget is for batches of 200; the cell judges 300 samples: timed apart.
        assert r["n_samples"] == 300 and r["actual_time_s"] > 0
        assert r["actual_time_spread_s"] >= 0
        assert r["overrun_s"] == pytest.approx(max(0.0, r["actual_time_s"] - r["time_budget_s"]))
        assert r["overrun"] == (r["actual_time_s"] > r["time_budget_s"])
        if r["method"] == "ws-fm":
            assert r["k_steps"] == num_steps(0.75, r["n_steps"]) == r["nfe_measured"]
        elif r["method"] == "full-fm":
            assert r["n_steps"] == r["nfe_measured"] >= 1
    # A larger budget never buys fewer steps (same method, same seed, same probe).
    for method in ("full-fm", "ws-fm"):
        ns = [r["n_steps"] for r in sorted((r for r in timed if r["method"] == method),
                                           key=lambda r: r["time_budget_s"])]
        assert ns == sorted(ns), (method, ns)
    # The other tables and the comparison tool see only the NFE-budget cells.
    assert all("time_budget_s" not in r for r in map(fields_of, records.read_cells(run_dir)))
    every = {r.cell_id for r in records.read_cells(run_dir, None)}
    assert every == records.finished_cells(run_dir)


def test_budget_too_small_is_recorded_and_the_run_goes_on(budget_run) -> None:
    run_dir, suite, _ = budget_run
    small = [r for r in map(fields_of, records.read_cells(run_dir, time_budgets=True))
             if r["budget_status"] == "budget too small"]
    assert len(small) == 1
    r = small[0]
    assert r["solver"] == "rk4" and r["time_budget_s"] == 1e-9 and r["metrics"] == {}
    assert r["min_time_s"] > r["time_budget_s"] and r["min_n_steps"] == 1
    assert r["n_steps"] == 1 and r["nfe_expected"] == 4 and r["nfe_measured"] == 0
    assert r["actual_time_s"] is None and math.isnan(r["time_s"])
    assert not records.samples_path(run_dir, r["cell_id"]).exists()
    assert len(records.finished_cells(run_dir)) == len(expand_cells(suite))
    assert records.read_manifest(run_dir)["status"] == "complete"


def test_report_has_the_equal_wall_clock_section(budget_run) -> None:
    run_dir, _, _ = budget_run
    md = write_report(run_dir).read_text()
    assert "## Equal wall-clock" in md
    section = md[md.index("## Equal wall-clock"):]
    header = next(line for line in section.splitlines() if line.startswith("| method"))
    assert header.count(" s |") == len(E2E_BUDGETS) + 1  # three budgets and the too-small one
    for method in ("full-fm", "ws-fm", "draft-only"):
        row = next(line for line in section.splitlines() if line.startswith(f"| {method} |"))
        entries = row.strip("|").split(" | ")[2:]
        assert sum("**" in e for e in entries) == len(E2E_BUDGETS), row
    assert re.search(r"budget too small \(needs [0-9.e-]+ s\)", section)
    assert (run_dir / "report" / "figures" / "two-moons_equal_wall_clock.png").stat().st_size
    assert (run_dir / "report" / "equal_wall_clock.csv").exists()


def test_resume_does_not_redo_time_budget_cells(budget_run) -> None:
    run_dir, suite, cache = budget_run
    before = {p.name: p.read_bytes() for p in (run_dir / "cells").glob("*.json")}
    runner.run_suite(suite, run_dir.parent, cache=cache, progress=False)
    manifest = records.read_manifest(run_dir)
    assert manifest["cells"] == {"total": len(before), "reused": len(before), "run": 0}
    assert {p.name: p.read_bytes() for p in (run_dir / "cells").glob("*.json")} == before


def test_probing_other_n_does_not_retrain(budget_run, monkeypatch) -> None:
    """A fresh process (memo cleared) running a time cell loads the cached networks: any
    attempt to train fails the test."""
    run_dir, suite, cache = budget_run
    import wsfm.methods

    def no_training(*args, **kwargs):
        raise AssertionError("a model was trained while probing a time budget")

    monkeypatch.setattr(wsfm.methods, "optimise", no_training)
    cell = next(c for c in expand_cells(suite)
                if isinstance(c, TimeCell) and c.method == "ws-fm")
    record, samples = Worker().run(cell, cache, progress=False)  # a fresh worker: probes afresh
    assert record.cell_id == cell.cell_id and record.budget.status == "ok"
    assert samples is not None and record.plan.n_steps >= 1
