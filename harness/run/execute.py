"""Running one cell: its context, the method's preparation, sampling with counted NFE and
timing, the metrics and the speed-up bound. ``run_cell`` is a pure unit of work (a Cell and a
cache folder are all it needs), so any executor (harness.run.executors) can run it in another
process or on another machine; ``prepare_cell`` builds what a cell needs into the cache."""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import numpy as np
import torch

from harness.cache import Cache
from harness.context import CellContext
from harness.errors import ConfigError
from harness.plugins import Method, Metric, instantiate
from harness.registry import methods, metrics
from harness.run import budgets
from harness.run.cell import Cell, TimeCell
from harness.run.measure import (
    TimeFn,
    bound_check,
    record_fields,
    time_calls,
    time_plan,
    time_reference,
)
from harness.run.timing import Clock, FirstCall, compile_network


def cell_context(cell: Cell, cache: Cache, progress: bool = True) -> CellContext:
    """The CellContext a cell runs in."""
    ctx = CellContext(cell.task, cell.task_options, cell.seed, cell.device, cache,
                      progress=progress)
    if cell.training:  # the suite's [training] overrides the task's defaults
        ctx.train_config = replace(ctx.task.train_config, **cell.training)
    return ctx


def run_cell(
    cell: Cell, cache: Cache, progress: bool = True, time_fn: TimeFn | None = None
) -> tuple[dict[str, Any], np.ndarray | None]:
    """Run one cell: its record, and the samples kept for plots (None when nothing ran).

    A wall-clock cell (TimeCell) first chooses its N (harness.run.budgets), then runs it as
    an NFE-budget cell; both go through the one measurement path (harness.run.measure)."""
    ctx = cell_context(cell, cache, progress)
    method = instantiate(methods, cell.method, cell.method_options)
    if not isinstance(cell, TimeCell):
        return _run_steps(cell, ctx, method)
    choice = budgets.choose_steps(cell, ctx, method, time_fn)
    if not choice.selection.fits:
        return budgets.too_small_record(cell, ctx, method, choice), None
    record, samples = _run_steps(cell.at_steps(choice.selection.n_steps), ctx, method)
    record.update(budgets.outcome_fields(cell, ctx, method, choice, record))
    return record, samples


def _run_steps(cell: Cell, ctx: CellContext,
               method: Method) -> tuple[dict[str, Any], np.ndarray | None]:
    """Prepare the method at the cell's N, sample with counted NFE and timing, compute
    metrics, check the speed-up bound."""
    plan = method.prepare(ctx, cell.n_steps)
    train_s, train_parts = ctx.training_cost()  # what the method needed, before the metrics
    clock = Clock(ctx.device)
    network, first_call = plan.network, None
    if cell.compile:
        if network is None:
            raise ConfigError(f"compile = {cell.compile!r}: method {cell.method!r} has no "
                              "network to compile; run it with compile = false")
        # Compile the inner network, count outside it: each call is still one NFE, and the
        # first call (where compilation happens) is timed apart.
        network = first_call = FirstCall(compile_network(network, cell.compile), clock)
    n = cell.n_samples
    timed = time_plan(plan, network, n, clock.time, lambda: ctx.generator("sample"),
                      cell.warmup, cell.repeats)
    samples = timed.samples

    ref_t, ref_nfe = None, 0
    if plan.reference_integrate is not None and network is not None:
        g_ref = ctx.generator("reference")
        if plan.reference_start is not None:
            x_ref = plan.reference_start(n, g_ref)
        else:
            x_ref = torch.randn(samples.shape, generator=g_ref, device=ctx.device)
        ref_t, ref_nfe = time_reference(plan, network, x_ref, clock.time,
                                        lambda: ctx.generator("reference-sample"),
                                        cell.warmup, cell.repeats)
        call_t = time_calls(network, x_ref, plan.t0, clock.time, cell.warmup, cell.repeats)

    nfe_ok = timed.nfe_ok
    if plan.reference_integrate is not None:
        nfe_ok = nfe_ok and ref_nfe == plan.reference_nfe

    # Non-finite samples get NaN metrics (and the count is recorded), never a silent fix.
    nonfinite = timed.nonfinite
    finalized: dict[str, Any] = {}
    if not nonfinite:
        samples, finalized = ctx.task.finalize(samples)
    metric_values: dict[str, dict[str, Any]] = {}
    reference = reference_split(cell, ctx)
    for name, metric in cell_metrics(cell, ctx):
        value = math.nan
        if not nonfinite:
            value = float(metric.compute(samples, reference, cell.seed,
                                         stats=metric_setup(cell, ctx, name, metric)))
        metric_values[name] = {"value": value, "higher_is_better": bool(metric.higher_is_better)}

    total_t, draft_t, integrate_t = timed.total, timed.draft, timed.integrate
    record: dict[str, Any] = {
        **record_fields(cell, method, plan),
        "nfe_measured": timed.nfe,
        "nfe_ok": nfe_ok,
        "time_s": total_t.median,
        "time_spread_s": total_t.spread,
        "first_call_s": total_t.first,
        "compile": cell.compile,
        "compile_s": first_call.seconds if first_call is not None else None,
        "draft_time_s": draft_t.median,
        "integrate_time_s": integrate_t.median,
        "time_per_call_s": integrate_t.median / timed.nfe if timed.nfe else None,
        "timings": {**timed.as_dict(), "reference": ref_t.as_dict() if ref_t else None},
        "deterministic": timed.deterministic,
        "nonfinite": nonfinite,
        "finalize": finalized,
        "n_eval": int(len(reference)),
        "metrics": metric_values,
        "refiner_stats": plan.info.get("refiner_stats") or None,
        "train_s": train_s,
        "train_parts": train_parts,
        "convergence": next((info["convergence"] for info in ctx.training.values()
                             if isinstance(info.get("convergence"), dict)), None),
    }
    if ref_t is not None:
        t0 = float(method.options().get("t0", plan.t0))  # the user's t0, not the plan's word
        record.update(bound_check(plan, t0, timed.nfe, timed.start_time, ref_nfe, total_t,
                                  draft_t, ref_t, call_t))
    kept = samples[: ctx.task.samples_kept].detach().cpu().numpy()
    return record, kept


def cell_metrics(cell: Cell, ctx: CellContext) -> list[tuple[str, Metric]]:
    """The cell's metrics (the suite's choice, else the task's), with their options."""
    options = cell.metric_options or {}
    return [(name, instantiate(metrics, name, {**ctx.task.metric_options.get(name, {}),
                                               **options.get(name, {})}))
            for name in cell.metrics or ctx.task.metrics]


def metric_setup(cell: Cell, ctx: CellContext, name: str,
                 metric: Metric) -> dict[str, torch.Tensor]:
    """Set the metric up on the training split; its reference statistics (cached)."""
    metric.setup(ctx.data.train, ctx.data.train_labels)
    return ctx.metric_stats(name, metric, reference_split(cell, ctx), cell.seed)


def reference_split(cell: Cell, ctx: CellContext) -> torch.Tensor:
    """What the metrics compare samples with: the first n_eval of the held-out split, or of
    the training split with ``reference = "train"``."""
    return (ctx.data.train if cell.reference == "train" else ctx.data.test)[: cell.n_eval]


def prepare_cell(cell: Cell, cache: Cache) -> None:
    """Build into the cache what the cell needs before it samples: the method's trained
    networks, drafts and refiner pairs (``Method.prepare``) and the metrics' reference
    statistics. Every cell sharing them then only loads them (harness.run.plan)."""
    ctx = cell_context(cell, cache, progress=False)
    method = instantiate(methods, cell.method, cell.method_options)
    steps = cell.n_steps
    if isinstance(cell, TimeCell):  # its N is chosen at run time; the networks do not depend on it
        steps = 1 if getattr(method, "uses_budget", True) else 0
    method.prepare(ctx, steps)
    for name, metric in cell_metrics(cell, ctx):
        metric_setup(cell, ctx, name, metric)
