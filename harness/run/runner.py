"""The runner: cells in, records out.

``run_cell`` is a pure unit of work (a Cell and a cache folder are all it needs), so cells
can run in other processes or on other machines. ``run_suite`` validates a suite, expands
it, skips cells whose records exist (resume), runs the rest and writes the manifest.
"""

from __future__ import annotations

import math
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from harness import context
from harness.analysis.noninferiority import Rules
from harness.cache import Cache
from harness.context import CellContext
from harness.errors import ConfigError, RunDirError
from harness.plugins import Method, instantiate
from harness.records import store as records
from harness.records.lock import RunLock
from harness.registry import REGISTRIES, methods, metrics, tasks
from harness.run import budgets
from harness.run.advice import advise_run
from harness.run.cell import Cell, TimeCell
from harness.run.machine import describe_machine, git_commit, package_versions
from harness.run.measure import (
    TimeFn,
    bound_check,
    record_fields,
    time_calls,
    time_plan,
    time_reference,
)
from harness.run.suite import Suite, expand_cells
from harness.run.timing import Clock, FirstCall, check_compile, compile_network


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
    reference = ctx.data.test[: cell.n_eval]
    options = cell.metric_options or {}
    for name in cell.metrics or ctx.task.metrics:
        metric = instantiate(metrics, name, {**ctx.task.metric_options.get(name, {}),
                                             **options.get(name, {})})
        value = math.nan
        if not nonfinite:
            metric.setup(ctx.data.train, ctx.data.train_labels)
            stats = ctx.metric_stats(name, metric, reference, cell.seed)
            value = float(metric.compute(samples, reference, cell.seed, stats=stats))
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
    }
    if ref_t is not None:
        t0 = float(method.options().get("t0", plan.t0))  # the user's t0, not the plan's word
        record.update(bound_check(plan, t0, timed.nfe, timed.start_time, ref_nfe, total_t,
                                  draft_t, ref_t, call_t))
    kept = samples[: ctx.task.samples_kept].detach().cpu().numpy()
    return record, kept


def default_run_id(suite: Suite) -> str:
    return f"{suite.name}-{suite.config_hash[:8]}"


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


def plugins_used(suite: Suite) -> dict[str, dict[str, dict[str, str | None]]]:
    """{kind: {name: {"package", "version", "source"}}} of every plugin the suite uses: what
    the manifest records so a run can be traced to the code that made it."""
    used: dict[str, set[str]] = {"task": set(), "method": set(), "metric": set(),
                                 "draft": set(), "refiner": set()}
    for name, options in suite.tasks:
        task = instantiate(tasks, name, options)
        used["task"].add(name)
        used["metric"] |= set(suite.metrics_for(name, task))
        used["draft"] |= {plugin for plugin, _ in task.drafts.values()}
        used["refiner"].add(task.refiner[0])
    for spec in suite.methods:
        used["method"].add(spec.name)
        draft = spec.options.get("draft")
        if isinstance(draft, str) and draft in REGISTRIES["draft"].names():
            used["draft"].add(draft)
    return {kind: {name: REGISTRIES[kind].entry(name).provenance() for name in sorted(names)}
            for kind, names in used.items()}


def _manifest(suite: Suite, run_id: str, previous: dict[str, Any] | None) -> dict[str, Any]:
    now = _now()
    suite_tasks = {name: instantiate(tasks, name, opts) for name, opts in suite.tasks}
    return {
        "schema_version": records.SCHEMA_VERSION,  # harness/records/schemas/manifest.schema.json
        "run_id": run_id,
        "suite": suite.as_dict(),
        "config_hash": suite.config_hash,
        "seeds": suite.seeds,
        "versions": package_versions(),
        "git_commit": git_commit(),
        "device": describe_machine(suite.device),
        "started": previous["started"] if previous else now,
        "resumed": (previous.get("resumed", []) + [now]) if previous else [],
        "finished": None,
        "status": "running",
        "primary_metrics": {name: suite.primary_metric_for(name, task)
                            for name, task in suite_tasks.items()},
        "plugins": plugins_used(suite),
        # How the headline judges claims, and which seeds choose settings and which report.
        "evidence": {
            "rules": Rules.from_dict(suite.evidence).to_dict(),
            "seeds": {name: dict(zip(("selection", "evaluation"), suite.seeds_for(name),
                                     strict=True)) for name, _ in suite.tasks},
        },
        "task_notes": {name: task.notes() for name, task in suite_tasks.items()},
    }


def run_folder(out_dir: str | Path, run_id: str) -> Path:
    """out_dir/run_id, after checking both: --out must be a folder (or not exist yet), the
    run id one plain folder name (it cannot climb out of --out)."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {out} is a file; give a folder for the results")
    if (not run_id or run_id in (".", "..") or "/" in run_id or "\\" in run_id
            or run_id.startswith(".")):
        raise ConfigError(f"--run-id {run_id!r} must be a plain folder name (no '/', not "
                          "starting with '.'), e.g. my-run-1")
    return out / run_id


def run_suite(
    suite: Suite,
    out_dir: str | Path = "results",
    run_id: str | None = None,
    cache: Cache | None = None,
    progress: bool = True,
) -> Path:
    """Run every cell not already recorded under out_dir/run_id; returns the run folder.

    The folder is locked while this runs (a second run into it is refused, naming who holds
    it). A run that fails part-way is marked "failed" with the reason in its manifest; what
    it recorded stays, and the same command resumes it."""
    run_id = run_id or default_run_id(suite)
    run_dir = run_folder(out_dir, run_id)
    with RunLock(run_dir):
        previous = None
        if (run_dir / records.MANIFEST).exists():
            previous = records.read_manifest(run_dir)
            if previous.get("config_hash") != suite.config_hash:
                raise RunDirError(
                    f"{run_dir} holds a run of a different suite configuration; give another "
                    "--run-id, or delete that folder to start over"
                )
        manifest = _manifest(suite, run_id, previous)
        records.write_manifest(run_dir, manifest)
        try:
            _run(suite, run_dir, manifest, cache or Cache(), progress)
        except BaseException as exc:
            reason = f"{type(exc).__name__}: {exc}".strip().splitlines()[0][:500]
            manifest.update(status="failed", error=reason, finished=_now())
            try:
                records.write_manifest(run_dir, manifest)
            except Exception:  # noqa: BLE001 - never hide the original error
                pass
            raise
    return run_dir


def _run(suite: Suite, run_dir: Path, manifest: dict[str, Any], cache: Cache,
         progress: bool) -> None:
    if suite.threads:
        torch.set_num_threads(int(suite.threads))
    run_id = manifest["run_id"]
    for name, options in suite.tasks:
        if not records.reference_path(run_dir, name).exists():
            task = instantiate(tasks, name, options)
            held_out = task.load().test[: task.samples_kept]
            records.write_reference(run_dir, name, held_out.numpy())

    cells = expand_cells(suite)
    done = records.finished_cells(run_dir)
    todo = [c for c in cells if c.cell_id not in done]
    reused = len(cells) - len(todo)
    # Status lines are printed even without progress bars (--quiet).
    manifest["cells"] = {"total": len(cells), "reused": reused, "run": 0}
    records.write_manifest(run_dir, manifest)  # the report of an interrupted run counts on it
    print(f"{run_id}: {len(cells)} cells into {run_dir}"
          + (f"; resuming: {reused} already recorded, reusing them" if reused else ""),
          flush=True)
    for backend in sorted({c.compile for c in todo if c.compile}):
        check_compile(backend, suite.device)  # fails here, not after hours of other cells
    # t0 advice per task and warm-start draft, from the data alone, before any WS-FM training.
    advise_run(suite, run_dir, cache, progress=progress)
    last_group = None
    for cell in tqdm(todo, desc=f"cells ({run_id})", disable=not progress):
        group = (cell.task, cell.seed)
        if group != last_group:  # free the previous task/seed's models
            context.clear_memo()
            last_group = group
        record, samples = run_cell(cell, cache, progress=progress)
        records.write_cell(run_dir, record, samples)

    manifest.update(
        finished=_now(),
        status="complete",
        cells={"total": len(cells), "reused": reused, "run": len(todo)},
        cache={"root": str(cache.root), "hits": cache.hits, "misses": cache.misses,
               "discarded": cache.discarded},
    )
    manifest.pop("error", None)
    records.write_manifest(run_dir, manifest)
    records.write_records_csv(run_dir)
