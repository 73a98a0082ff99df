"""Wall-clock budgets: run each method at the largest step budget N whose predicted time per
batch fits a time budget, and record the actual time and any overrun.

A suite's ``time_budgets = [0.02, 0.05, 0.2]`` (seconds per batch of ``time_batch`` samples,
default the cell's n_samples) expands into ``TimeCell``s beside the NFE-budget cells
(harness.suite). ``run_time_cell`` runs one:

1. Probe. The method is prepared at the smallest N that makes at least each of
   ``PROBE_CALLS`` network calls (a method that ignores the step budget,
   ``uses_budget = False``, at its one setting); its networks come from the
   CellContext cache, so nothing is retrained. Batches of ``time_batch`` are timed on the
   cell's device with the cell's warm-up and repeats: the start (draft + source) takes T_d,
   and a line through the (counted NFE, median integration seconds) points gives the time per call
   c and the integration's fixed cost f (harness.costmodel.fit_line; noise that gives
   c <= 0 or f < 0 folds f into c). The budgets of one method variant, task and seed share
   one probe within a process.
2. Selection (``select_steps``, pure). The predicted time of N is
   ``predict_time = T_d + f + NFE(N) * c`` (harness.costmodel.predict, the run's cost
   model), with NFE(N) the method's plan's ``expected_nfe`` at N: K(N) * s, with
   K = ceil((1 - t0) N) for a warm start and K = N for a full integration, the sequence
   length for AR, 0 for draft only. The largest N in 1..N_MAX whose prediction fits is
   chosen (binary search: NFE(N) never decreases with N; for a warm start this is the
   largest N whose K fits). N_MAX caps the search; a choice at the cap is recorded as
   ``capped``.
3. If even the cheapest setting does not fit, the cell is recorded with ``budget_status``
   "budget too small", the minimum time it would need (``min_time_s``) and no metrics; the
   run goes on.
4. Otherwise the chosen N runs through ``runner.run_cell`` (the same NFE counting, timing,
   metrics and bound check as any cell), and the record gains the budget fields:
   time_budget_s, time_batch, predicted_time_s, actual_time_s (the measured median time of a
   batch of time_batch at N), overrun_s = max(0, actual - budget) and overrun.

Probes and choices are measured, never assumed: a prediction that was wrong shows as an
overrun (actual_time_s > time_budget_s) in the record and the report.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch

from harness import costmodel, runner
from harness.cache import Cache, stable_hash
from harness.errors import ConfigError
from harness.nfe import CountingNetwork
from harness.plugins import Method, SamplingPlan, instantiate
from harness.registry import methods
from harness.suite import TimeCell
from harness.timing import Clock, Timing, compile_network

N_MAX = 1000  # the largest N a time budget may choose (recorded as capped when reached)
PROBE_CALLS = (4, 32)  # the costs are measured at the smallest N with at least these NFE
OK = "ok"
TOO_SMALL = "budget too small"

# Clock.time's shape: run fn, return (its result, seconds). Tests pass a fake clock.
TimeFn = Callable[[Callable[[], Any]], tuple[Any, float]]
# Probes already measured in this process, by cell without its budget: the budgets of one
# method variant, task and seed share one probe.
_PROBES: dict[str, Probe] = {}


def check_budget(budget_s: Any, what: str = "time budget") -> float:
    """A time budget in seconds: a finite number > 0, else ConfigError naming it."""
    ok = isinstance(budget_s, int | float) and not isinstance(budget_s, bool)
    if not (ok and math.isfinite(budget_s) and budget_s > 0):
        raise ConfigError(f"{what} {budget_s!r} must be a finite number of seconds > 0")
    return float(budget_s)


def predict_time(draft_s: float, fixed_s: float, per_call_s: float, nfe: int) -> float:
    """Predicted seconds per batch: T_d + f + NFE * c (harness.costmodel.predict)."""
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
    budget_s = check_budget(budget_s)
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


@dataclass
class PlanTiming:
    """One plan timed on batches: start (draft), integration and total, with counted NFE."""

    draft: Timing
    integrate: Timing
    total: Timing
    nfe: int
    nfe_ok: bool
    deterministic: bool
    nonfinite: int

    def as_dict(self) -> dict[str, Any]:
        return {"total": self.total.as_dict(), "draft": self.draft.as_dict(),
                "integrate": self.integrate.as_dict(), "reference": None}


def time_plan(plan: SamplingPlan, batch: int, time_fn: TimeFn,
              generator: Callable[[], torch.Generator], warmup: int, repeats: int) -> PlanTiming:
    """Time ``plan`` on batches of ``batch``: max(warmup, 1) untimed calls, then ``repeats``
    timed ones (the first call's time kept as ``first``), counting network calls."""
    counter = CountingNetwork(plan.network) if plan.network is not None else None

    def once() -> tuple[torch.Tensor, float, float, int]:
        g = generator()  # the same stream every call: identical samples
        x0, t_draft = time_fn(lambda: plan.draw_start(batch, g))
        if counter is not None:
            counter.reset()
        x, t_int = time_fn(lambda: plan.integrate(counter, x0, g))
        return x, t_draft, t_int, counter.reset() if counter is not None else 0

    with torch.no_grad():
        first = once()
        for _ in range(max(warmup - 1, 0)):
            once()
        runs = [once() for _ in range(max(repeats, 1))]
    return PlanTiming(
        draft=Timing([r[1] for r in runs], first[1]),
        integrate=Timing([r[2] for r in runs], first[2]),
        total=Timing([r[1] + r[2] for r in runs], first[1] + first[2]),
        nfe=first[3],
        nfe_ok={first[3]} | {r[3] for r in runs} == {plan.expected_nfe},
        deterministic=all(torch.equal(first[0], r[0]) for r in runs),
        nonfinite=int((~torch.isfinite(first[0])).sum()) if first[0].is_floating_point() else 0,
    )


def nfe_function(method: Method, ctx: Any) -> Callable[[int], int]:
    """NFE(N) as the method's own plan at N says (its networks are cached: cheap)."""
    return lambda n: method.prepare(ctx, n).expected_nfe


def _describe(cell: TimeCell, method: Method, plan: SamplingPlan) -> dict[str, Any]:
    """The descriptive fields of a record, as runner.run_cell writes them."""
    options = method.options()
    return {
        "cell_id": cell.cell_id, "cell": cell.to_dict(), "task": cell.task,
        "method": cell.method, "family": method.family, "variant": method.label(),
        "draft": options.get("draft"),
        "t0": plan.t0 if plan.network is not None else None,
        "start": options.get("start", plan.info.get("source")), "init": options.get("init"),
        "solver": options.get("solver", plan.info.get("sampler")),
        "seed": cell.seed, "n_samples": cell.n_samples, "n_eval": cell.n_eval,
        "device": cell.device, "threads": torch.get_num_threads(),
    }


def _too_small_record(cell: TimeCell, method: Method, plan: SamplingPlan,
                      probe: PlanTiming, nfe_ok: bool) -> dict[str, Any]:
    """Nothing ran at the cheapest setting ``plan``: no samples, no metrics, NaN times;
    timings, deterministic and nonfinite are the probe's."""
    nan = math.nan
    return {
        **_describe(cell, method, plan),
        "n_steps": plan.n_steps, "k_steps": plan.k_steps,
        "nfe_budget": plan.n_steps * plan.evals_per_step, "nfe_expected": plan.expected_nfe,
        "nfe_measured": 0, "nfe_ok": nfe_ok,
        "time_s": nan, "time_spread_s": nan, "first_call_s": nan, "draft_time_s": nan,
        "integrate_time_s": nan, "time_per_call_s": None, "timings": probe.as_dict(),
        "deterministic": probe.deterministic, "nonfinite": probe.nonfinite,
        "finalize": {}, "metrics": {},
    }


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


def run_time_cell(cell: TimeCell, cache: Cache, progress: bool = True,
                  time_fn: TimeFn | None = None) -> tuple[dict[str, Any], Any]:
    """Choose N for ``cell``'s time budget, run it (or record 'budget too small'); returns
    the record and the kept samples (None when nothing ran)."""
    budget = check_budget(cell.time_budget, f"time budget of cell {cell.cell_id}")
    ctx = runner.cell_context(cell, cache, progress)
    method = instantiate(methods, cell.method, cell.method_options)
    uses_budget = bool(getattr(method, "uses_budget", True))
    clock_id = "device" if time_fn is None else id(time_fn)  # fake clocks don't share probes
    time_fn = time_fn or Clock(ctx.device).time
    batch = cell.time_batch

    def timed(plan: SamplingPlan) -> PlanTiming:
        backend = getattr(cell, "compile", False)
        if backend and plan.network is not None:  # time what the cell will run
            plan = replace(plan, network=compile_network(plan.network, backend))
        return time_plan(plan, batch, time_fn, lambda: ctx.generator("budget-probe"),
                         cell.warmup, cell.repeats)

    key = stable_hash({"cell": cell.at_steps(0).to_dict(), "batch": batch,
                       "cache": str(cache.root), "clock": clock_id})
    if key not in _PROBES:
        _PROBES[key] = probe_costs(method, ctx, timed, uses_budget)
    probe = _PROBES[key]
    pick = select_steps(budget, probe.costs, nfe_function(method, ctx), uses_budget)
    fields: dict[str, Any] = {
        "time_budget_s": budget, "time_batch": batch,
        "budget_status": OK if pick.fits else TOO_SMALL,
        "predicted_time_s": pick.predicted_time_s, "min_time_s": pick.min_time_s,
        "min_n_steps": pick.min_n_steps, "capped": pick.capped, "n_max": N_MAX,
        "cost_fixed_s": probe.costs.draft_s + probe.costs.fixed_s,
        "cost_per_call_s": probe.costs.per_call_s, "budget_probe": probe.as_dict(),
    }
    if not pick.fits:
        first = next(iter(probe.timings.values()))
        record = _too_small_record(cell, method, method.prepare(ctx, pick.min_n_steps), first,
                                   probe.nfe_ok)
        fields.update(actual_time_s=None, actual_time_spread_s=None, overrun_s=None,
                      overrun=None)
        return {**record, **fields}, None

    record, samples = runner.run_cell(cell.at_steps(pick.n_steps), cache, progress=progress)
    if batch == cell.n_samples:
        actual, spread = float(record["time_s"]), float(record["time_spread_s"])
    else:  # the cell's samples are n_samples; the budget is for a batch of time_batch
        total = timed(method.prepare(ctx, pick.n_steps)).total
        actual, spread = total.median, total.spread
    fields.update(actual_time_s=actual, actual_time_spread_s=spread,
                  overrun_s=max(0.0, actual - budget), overrun=bool(actual > budget))
    record.update(cell_id=cell.cell_id, cell=cell.to_dict(), **fields)
    return record, samples
