"""Running one cell: its context, the method's preparation, sampling with counted NFE and
timing, the metrics and the speed-up bound. ``run_cell`` is a pure unit of work (a Cell, its
method object and a cache folder are all it needs), so any executor (harness.run.executors)
can run it in another process or on another machine; ``prepare_cell`` builds what a cell needs
into the cache. ``build_record`` is the one place a cell's record is put together."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch

from harness.cache import Cache
from harness.context import CellContext, Memo
from harness.errors import ConfigError
from harness.plugins import Method, SamplingPlan
from harness.records.cell import Cell, TimeCell
from harness.records.record import (
    BoundCheck,
    Budget,
    CellRecord,
    Cost,
    MetricValue,
    Sampling,
    Times,
)
from harness.records.schema import SCHEMA_VERSION
from harness.run import budgets
from harness.run.judging import (
    cell_metrics,
    judge,
    metric_setup,
    reference_split,
    target_quality,
)
from harness.run.measure import (
    PlanTiming,
    TimeFn,
    bound_check,
    describe,
    time_calls,
    time_plan,
    time_reference,
    times_of,
)
from harness.run.timing import Clock, FirstCall, Timing, compile_network


def cell_context(cell: Cell, cache: Cache, progress: bool = True,
                 memo: Memo | None = None) -> CellContext:
    """The CellContext a cell runs in (``memo``: what its worker keeps loaded)."""
    ctx = CellContext(cell.task, cell.task_options, cell.seed, cell.device, cache,
                      progress=progress, memo=memo)
    if cell.training:  # the suite's [training] overrides the task's defaults
        ctx.train_config = replace(ctx.task.train_config, **cell.training)
    return ctx


def run_cell(cell: Cell, method: Method, cache: Cache, progress: bool = True,
             time_fn: TimeFn | None = None,
             memo: Memo | None = None) -> tuple[CellRecord, np.ndarray | None]:
    """Run one cell with its ``method`` object: its record, and the samples kept for plots
    (None when nothing ran).

    A wall-clock cell (TimeCell) first chooses its N (harness.run.budgets), then runs it as
    an NFE-budget cell; both go through the one measurement path (harness.run.measure)."""
    ctx = cell_context(cell, cache, progress, memo)
    if not isinstance(cell, TimeCell):
        return _run_steps(cell, cell, ctx, method)
    choice = budgets.choose_steps(cell, ctx, method, time_fn)
    if not choice.selection.fits:
        return _too_small(cell, ctx, method, choice), None
    return _run_steps(cell.at_steps(choice.selection.n_steps), cell, ctx, method,
                      lambda times: budgets.outcome_fields(cell, ctx, method, choice, times))


@dataclass
class Measured:
    """A plan sampled and timed: the samples, their timing, and (warm starts) the bound."""

    timed: PlanTiming
    times: Times
    nfe_ok: bool
    bound: BoundCheck | None


def _run_steps(cell: Cell, recorded: Cell, ctx: CellContext, method: Method,
               budget: Callable[[Times], Budget] | None = None,
               ) -> tuple[CellRecord, np.ndarray]:
    """Prepare the method at ``cell``'s N, sample with counted NFE and timing, compute
    metrics, check the speed-up bound; the record is ``recorded``'s (the wall-clock cell
    that chose this N, with its ``budget`` section from the measured times, or ``cell``)."""
    start = time.perf_counter()
    plan = method.prepare(ctx, cell.n_steps)
    # What the method needed, before the metrics; the seconds this cell spent preparing it.
    cost = replace(training_cost(ctx, plan), prepare_s=time.perf_counter() - start)
    start = time.perf_counter()
    measured = measure(cell, ctx, method, plan)
    sampling_s = time.perf_counter() - start
    samples = measured.timed.samples
    nonfinite = measured.timed.nonfinite
    finalized: dict[str, Any] = {}
    if not nonfinite:  # non-finite samples get NaN metrics (and the count), never a fix
        samples, finalized = ctx.task.finalize(samples)
    values, metric_s = judge(cell, ctx, samples if not nonfinite else None)
    sampling = Sampling(n_samples=cell.n_samples, n_eval=int(len(reference_split(cell, ctx))),
                        nfe_measured=measured.timed.nfe, nfe_ok=measured.nfe_ok,
                        deterministic=measured.timed.deterministic, nonfinite=nonfinite,
                        finalize=finalized)
    times = replace(measured.times, sampling_s=sampling_s, metric_s=metric_s)
    draft = method.starts_from()
    record = build_record(recorded, method, plan, sampling, times, cost, values,
                          control=ctx.draft_control(draft) if draft else None,
                          bound=measured.bound, targets=target_quality(cell, ctx, plan),
                          budget=budget(measured.times) if budget is not None else None)
    return record, samples[: ctx.task.samples_kept].detach().cpu().numpy()


def measure(cell: Cell, ctx: CellContext, method: Method, plan: SamplingPlan) -> Measured:
    """Sample the plan with counted NFE and timing; a warm start's full N-step reference run
    and bare network call beside it, and the bound check they allow."""
    clock = Clock(ctx.device)
    network, first_call = plan.network, None
    if cell.compile:
        if network is None:
            raise ConfigError(f"compile = {cell.compile!r}: method {cell.method!r} has no "
                              "network to compile; run it with compile = false")
        # Compile the inner network, count outside it: each call is still one NFE, and the
        # first call (where compilation happens) is timed apart.
        network = first_call = FirstCall(compile_network(network, cell.compile), clock)
    timed = time_plan(plan, network, cell.n_samples, clock.time,
                      lambda: ctx.generator("sample"), cell.warmup, cell.repeats)
    ref = bound = call = None
    nfe_ok = timed.nfe_ok
    if plan.reference_integrate is not None and network is not None:
        ref, ref_nfe, call = _time_reference_run(cell, ctx, plan, network, clock,
                                                 timed.samples.shape)
        nfe_ok = nfe_ok and ref_nfe == plan.reference_nfe
        bound = bound_check(plan, method.start_time(), timed.nfe, timed.start_time, ref_nfe,
                            timed.total, timed.draft, ref, call)
    compile_s = first_call.seconds if first_call is not None else None
    return Measured(timed, times_of(timed, ref, compile_s, call), nfe_ok, bound)


def _time_reference_run(cell: Cell, ctx: CellContext, plan: SamplingPlan, network: Any,
                        clock: Clock, shape: torch.Size) -> tuple[Timing, int, Timing]:
    """The full N-step grid from the full model's own start, with the same network (its
    Timing and counted NFE), and one bare network call timed alone."""
    g_ref = ctx.generator("reference")
    if plan.reference_start is not None:
        x_ref = plan.reference_start(cell.n_samples, g_ref)
    else:
        x_ref = torch.randn(shape, generator=g_ref, device=ctx.device)
    ref, ref_nfe = time_reference(plan, network, x_ref, clock.time,
                                  lambda: ctx.generator("reference-sample"), cell.repeats)
    call = time_calls(network, x_ref, plan.t0, clock.time, cell.warmup, cell.repeats)
    return ref, ref_nfe, call


def training_cost(ctx: CellContext, plan: SamplingPlan) -> Cost:
    """What the method needed before it could sample: training seconds (per artefact), the
    convergence record of the network it samples with (the last one trained: a fine-tuned
    warm start trains full FM's first), the refiner's counts."""
    train_s, parts = ctx.training_cost()
    convergence = next((info["convergence"] for info in reversed(ctx.training.values())
                        if isinstance(info.get("convergence"), dict)), None)
    return Cost(train_s=train_s, train_parts=parts, convergence=convergence,
                refiner_stats=plan.refiner_stats or None)


def build_record(cell: Cell, method: Method, plan: SamplingPlan, sampling: Sampling,
                 times: Times, cost: Cost, values: dict[str, MetricValue], *,
                 control: str | None = None, bound: BoundCheck | None = None,
                 targets: dict[str, float] | None = None,
                 budget: Budget | None = None) -> CellRecord:
    """The cell's record: the one place one is put together."""
    identity, steps = describe(cell, method, plan, control)
    return CellRecord(schema_version=SCHEMA_VERSION, cell=cell.to_dict(), identity=identity,
                      plan=steps, sampling=sampling, times=times, cost=cost, metrics=values,
                      bound=bound, targets=targets, budget=budget)


def _too_small(cell: TimeCell, ctx: CellContext, method: Method,
               choice: budgets.Choice) -> CellRecord:
    """Nothing fits the time budget: the record of the cheapest setting, with no samples, no
    metrics and NaN times; timings, deterministic and nonfinite are the probe's."""
    plan = method.prepare(ctx, choice.selection.min_n_steps)
    probe = next(iter(choice.probe.timings.values()))
    nan = math.nan
    sampling = Sampling(n_samples=cell.n_samples, n_eval=cell.n_eval, nfe_measured=0,
                        nfe_ok=choice.probe.nfe_ok, deterministic=probe.deterministic,
                        nonfinite=probe.nonfinite)
    times = Times(time_s=nan, time_spread_s=nan, first_call_s=nan, draft_time_s=nan,
                  integrate_time_s=nan, time_per_call_s=None, timings=probe.as_dict())
    return build_record(cell, method, plan, sampling, times, training_cost(ctx, plan), {},
                        budget=budgets.too_small_fields(cell, choice))


def prepare_cell(cell: Cell, method: Method, cache: Cache, memo: Memo | None = None) -> None:
    """Build into the cache what the cell needs before it samples: the method's trained
    networks, drafts and refiner pairs (``Method.prepare``) and the metrics' reference
    statistics. Every cell sharing them then only loads them (harness.run.plan)."""
    ctx = cell_context(cell, cache, progress=False, memo=memo)
    steps = cell.n_steps
    if isinstance(cell, TimeCell):  # its N is chosen at run time; the networks do not depend on it
        steps = 1 if method.uses_budget else 0
    method.prepare(ctx, steps)
    for name, metric in cell_metrics(cell, ctx):
        metric_setup(cell, ctx, name, metric)
