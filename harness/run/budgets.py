"""Wall-clock budgets: run each method at the largest step budget N whose predicted time per
batch fits a time budget, and record the actual time and any overrun.

A suite's ``time_budgets = [0.02, 0.05, 0.2]`` (seconds per batch of ``time_batch`` samples,
default the cell's n_samples) expands into ``TimeCell``s beside the NFE-budget cells
(harness.run.suite). The runner (harness.run.runner) runs one with this module:

1. Probe (``choose_steps``). The method is prepared at the smallest N that makes at least each of
   ``PROBE_CALLS`` network calls (a method that ignores the step budget,
   ``uses_budget = False``, at its one setting); its networks come from the
   CellContext cache, so nothing is retrained. Batches of ``time_batch`` are timed on the
   cell's device with the cell's warm-up and repeats: the start (draft + source) takes T_d,
   and a line through the (counted NFE, median integration seconds) points gives the time per call
   c and the integration's fixed cost f (harness.analysis.costmodel.fit_line; noise that gives
   c <= 0 or f < 0 folds f into c). The budgets of one method variant, task and seed share
   one probe within a process.
2. Selection (``select_steps``, pure). The predicted time of N is
   ``predict_time = T_d + f + NFE(N) * c`` (harness.analysis.costmodel.predict, the run's cost
   model), with NFE(N) the method's plan's ``expected_nfe`` at N: K(N) * s, with
   K = ceil((1 - t0) N) for a warm start and K = N for a full integration, the sequence
   length for AR, 0 for draft only. The largest N in 1..N_MAX whose prediction fits is
   chosen (binary search: NFE(N) never decreases with N; for a warm start this is the
   largest N whose K fits). N_MAX caps the search; a choice at the cap is recorded as
   ``capped``.
3. If even the cheapest setting does not fit, the cell is recorded with ``budget_status``
   "budget too small", the minimum time it would need (``min_time_s``) and no metrics
   (harness.run.execute, with ``too_small_fields``); the run goes on.
4. Otherwise the runner runs the chosen N as an NFE-budget cell (the same NFE counting,
   timing, metrics and bound check as any cell), and the record gains the budget fields
   (``outcome_fields``):
   time_budget_s, time_batch, predicted_time_s, actual_time_s (the measured median time of a
   batch of time_batch at N), overrun_s = max(0, actual - budget) and overrun.

Probes and choices are measured, never assumed: a prediction that was wrong shows as an
overrun (actual_time_s > time_budget_s) in the record and the report.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from harness.analysis import costmodel
from harness.checks import seconds
from harness.context import CellContext
from harness.hashing import stable_hash
from harness.plugins import Method, SamplingPlan
from harness.records.cell import TimeCell
from harness.records.record import Budget, Times
from harness.records.store import BUDGET_OK, BUDGET_TOO_SMALL
from harness.run.measure import PlanTiming, TimeFn, time_plan
from harness.run.timing import Clock, compile_network

N_MAX = 1000  # the largest N a time budget may choose (recorded as capped when reached)
PROBE_CALLS = (4, 32)  # the costs are measured at the smallest N with at least these NFE

def predict_time(draft_s: float, fixed_s: float, per_call_s: float, nfe: int) -> float:
    """Predicted seconds per batch: T_d + f + NFE * c (harness.analysis.costmodel.predict)."""
    return float(costmodel.predict(nfe, per_call_s, 1, draft_s=draft_s, fixed_s=fixed_s))


@dataclass(frozen=True)
class Costs:
    """What a method costs per batch on this device: the draft/start time T_d, the
    integration's fixed seconds f, and c seconds per network call."""

    draft_s: float
    fixed_s: float
    per_call_s: float

    def predict(self, nfe: int) -> float:
        return predict_time(self.draft_s, self.fixed_s, self.per_call_s, nfe)


def fit_costs(draft_times: list[float], points: list[tuple[int, float]]) -> Costs:
    """Costs from measured draft times and (NFE, integration seconds) points: T_d is the
    median draft time; c and f the least-squares line through the points (costmodel.fit_line).
    When noise gives c <= 0 or f < 0, f is folded into c: c = the largest measured seconds
    per call, which errs towards staying within the budget."""
    draft = float(np.median(draft_times))
    nfe = [float(n) for n, _ in points]
    secs = [float(t) for _, t in points]
    c, f, _, how = costmodel.fit_line(nfe, secs)
    if how == "constant":  # no network calls: all of it is fixed
        return Costs(draft, f, 0.0)
    if not (math.isfinite(c) and c > 0 and math.isfinite(f) and f >= 0):
        c = max(t / n for n, t in zip(nfe, secs, strict=True) if n > 0)
        f = 0.0
    return Costs(draft, f, c)


@dataclass(frozen=True)
class Selection:
    """The outcome of ``select_steps``: the chosen N (None when nothing fits)."""

    budget_s: float
    n_steps: int | None
    nfe: int | None
    predicted_time_s: float | None
    min_n_steps: int  # the cheapest setting, and its predicted time
    min_time_s: float
    capped: bool = False

    @property
    def fits(self) -> bool:
        return self.n_steps is not None


def select_steps(budget_s: float, costs: Costs, nfe_of: Callable[[int], int],
                 uses_budget: bool = True, n_max: int = N_MAX) -> Selection:
    """The largest N in 1..n_max whose predicted time ``costs.predict(nfe_of(N))`` is within
    ``budget_s``; ``nfe_of`` must not decrease with N. A method that ignores the step budget
    has one setting, N = 0, which fits or not."""
    budget_s = seconds(budget_s, "time budget")
    memo: dict[int, int] = {}

    def time_of(n: int) -> float:
        if n not in memo:
            memo[n] = int(nfe_of(n))
        return costs.predict(memo[n])

    low = 1 if uses_budget else 0
    min_time = time_of(low)
    if min_time > budget_s:
        return Selection(budget_s, None, None, None, low, min_time)
    if not uses_budget:
        return Selection(budget_s, 0, memo[0], min_time, 0, min_time)
    if time_of(n_max) <= budget_s:
        best = n_max
    else:  # invariant: low fits, high does not
        high = n_max
        while high - low > 1:
            mid = (low + high) // 2
            low, high = (mid, high) if time_of(mid) <= budget_s else (low, mid)
        best = low
    return Selection(budget_s, best, memo[best], time_of(best), 1, min_time,
                     capped=best == n_max)


def nfe_function(method: Method, ctx: Any) -> Callable[[int], int]:
    """NFE(N) as the method's own plan at N says (its networks are cached: cheap)."""
    return lambda n: method.prepare(ctx, n).expected_nfe


@dataclass
class Probe:
    """The costs of one method variant at one batch size, and the timings they came from."""

    costs: Costs
    timings: dict[int, PlanTiming]  # by the probe's N

    @property
    def nfe_ok(self) -> bool:
        return all(t.nfe_ok for t in self.timings.values())

    def as_dict(self) -> dict[str, Any]:
        return {"steps": {str(n): {"nfe": t.nfe, "nfe_ok": t.nfe_ok, "timings": t.as_dict()}
                          for n, t in self.timings.items()},
                "draft_s": self.costs.draft_s, "fixed_s": self.costs.fixed_s,
                "per_call_s": self.costs.per_call_s}


def steps_for_calls(nfe_of: Callable[[int], int], calls: int, n_max: int = N_MAX) -> int:
    """The smallest N in 1..n_max with nfe_of(N) >= calls (n_max if none)."""
    low, high = 1, n_max
    while low < high:
        mid = (low + high) // 2
        low, high = (mid + 1, high) if nfe_of(mid) < calls else (low, mid)
    return low


def probe_costs(method: Method, ctx: Any, timed: Callable[[SamplingPlan], PlanTiming],
                uses_budget: bool = True) -> Probe:
    """Time the method's plan at the N giving PROBE_CALLS network calls (its one setting if
    it ignores the step budget) and fit its costs from the median times."""
    nfe_of = nfe_function(method, ctx)
    steps = sorted({steps_for_calls(nfe_of, c) for c in PROBE_CALLS}) if uses_budget else [0]
    # Largest first: its many calls warm the process up (allocator, kernels, caches), which
    # a single warm-up batch of the small probe does not; a cold small probe would show a
    # fixed cost that is not there.
    timings = {n: timed(method.prepare(ctx, n)) for n in reversed(steps)}
    # Medians per probe, not every repeat: one repeat slowed by another process must not tilt
    # the line (least squares has no defence against such outliers).
    drafts = [pt.draft.median for pt in timings.values()]
    points = [(pt.nfe, pt.integrate.median) for pt in timings.values()]
    return Probe(fit_costs(drafts, points), timings)


@dataclass
class Choice:
    """What a time budget chose for one cell: the selection, the probe behind it, and the
    timer that measured it (to time the chosen N again at another batch size)."""

    selection: Selection
    probe: Probe
    timed: Callable[[SamplingPlan], PlanTiming]

    def budget(self, **outcome: Any) -> Budget:
        """The budget section of a wall-clock record, with the ``outcome`` fields (actual time,
        overrun) of the N it ran, if any."""
        pick, costs = self.selection, self.probe.costs
        return Budget(
            time_budget_s=pick.budget_s, time_batch=outcome.pop("time_batch"),
            status=BUDGET_OK if pick.fits else BUDGET_TOO_SMALL,
            predicted_time_s=pick.predicted_time_s, min_time_s=pick.min_time_s,
            min_n_steps=pick.min_n_steps, capped=pick.capped, n_max=N_MAX,
            cost_fixed_s=costs.draft_s + costs.fixed_s, cost_per_call_s=costs.per_call_s,
            probe=self.probe.as_dict(), **outcome)


def choose_steps(cell: TimeCell, ctx: CellContext, method: Method,
                 time_fn: TimeFn | None = None) -> Choice:
    """Probe the method's costs on this device (once per method variant, task, seed and
    batch in a process) and choose the largest N whose predicted time fits the cell's
    budget."""
    budget = seconds(cell.time_budget, f"time budget of cell {cell.cell_id}")
    uses_budget = method.uses_budget
    clock_id = "device" if time_fn is None else id(time_fn)  # fake clocks don't share probes
    time_fn = time_fn or Clock(ctx.device).time

    def timed(plan: SamplingPlan) -> PlanTiming:
        network = plan.network
        if cell.compile and network is not None:  # time what the cell will run
            network = compile_network(network, cell.compile)
        return time_plan(plan, network, cell.time_batch, time_fn,
                         lambda: ctx.generator("budget-probe"), cell.warmup, cell.repeats)

    # The budgets of one method variant, task and seed share one probe (per worker).
    key = stable_hash({"probe": cell.at_steps(0).to_dict(), "batch": cell.time_batch,
                       "cache": str(ctx.cache.root), "clock": clock_id})
    if key not in ctx.memo.measured:
        ctx.memo.measured[key] = probe_costs(method, ctx, timed, uses_budget)
    probe = ctx.memo.measured[key]
    pick = select_steps(budget, probe.costs, nfe_function(method, ctx), uses_budget)
    return Choice(pick, probe, timed)


def too_small_fields(cell: TimeCell, choice: Choice) -> Budget:
    """The budget section of a cell for which nothing fits."""
    return choice.budget(time_batch=cell.time_batch, actual_time_s=None,
                         actual_time_spread_s=None, overrun_s=None, overrun=None)


def outcome_fields(cell: TimeCell, ctx: CellContext, method: Method, choice: Choice,
                   times: Times) -> Budget:
    """The budget section of a cell that ran the chosen N (with ``times``): the actual time
    of a batch of time_batch, and the overrun."""
    if cell.time_batch == cell.n_samples:
        actual, spread = float(times.time_s), float(times.time_spread_s)
    else:  # the cell's samples are n_samples; the budget is for a batch of time_batch
        total = choice.timed(method.prepare(ctx, choice.selection.n_steps)).total
        actual, spread = total.median, total.spread
    budget = choice.selection.budget_s
    return choice.budget(time_batch=cell.time_batch, actual_time_s=actual,
                         actual_time_spread_s=spread, overrun_s=max(0.0, actual - budget),
                         overrun=bool(actual > budget))
