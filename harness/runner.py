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

from harness import advisor, context, records
from harness.cache import Cache
from harness.context import CellContext
from harness.errors import ConfigError, RunDirError
from harness.machine import describe_machine, git_commit, package_versions
from harness.nfe import CountingNetwork
from harness.plugins import instantiate
from harness.registry import methods, metrics, tasks
from harness.suite import Cell, Suite, TimeCell, expand_cells
from harness.timing import (
    Clock,
    FirstCall,
    Timing,
    check_compile,
    compile_network,
    compiled_label,
    repeat,
)
from wsfm import theory


def cell_context(cell: Cell, cache: Cache, progress: bool = True) -> CellContext:
    """The CellContext a cell runs in (harness.budgets probes in the same one)."""
    ctx = CellContext(cell.task, cell.task_options, cell.seed, cell.device, cache,
                      progress=progress)
    if cell.training:  # the suite's [training] overrides the task's defaults
        ctx.train_config = replace(ctx.task.train_config, **cell.training)
    return ctx


def run_cell(
    cell: Cell, cache: Cache, progress: bool = True
) -> tuple[dict[str, Any], np.ndarray | None]:
    """Prepare the method, sample with counted NFE and timing, compute metrics."""
    if isinstance(cell, TimeCell):  # a wall-clock budget: N is chosen first (harness.budgets)
        from harness.budgets import run_time_cell

        return run_time_cell(cell, cache, progress=progress)
    ctx = cell_context(cell, cache, progress)
    method = instantiate(methods, cell.method, cell.method_options)
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
    counter = CountingNetwork(network) if network is not None else None
    n = cell.n_samples

    def sample_once() -> tuple[torch.Tensor, float, float, int]:
        g = ctx.generator("sample")  # the same stream every repeat: identical samples
        x0, t_draft = clock.time(lambda: plan.draw_start(n, g))
        if counter is not None:
            counter.reset()
        x, t_int = clock.time(lambda: plan.integrate(counter, x0, g))
        return x, t_draft, t_int, counter.reset() if counter is not None else 0

    with torch.no_grad():
        first, runs = repeat(sample_once, cell.warmup, cell.repeats)
        samples = first[0]
        nfe_counts = {first[3]} | {r[3] for r in runs}
        deterministic = all(torch.equal(samples, r[0]) for r in runs)
        draft_t = Timing([r[1] for r in runs], first[1])
        integrate_t = Timing([r[2] for r in runs], first[2])
        total_t = Timing([r[1] + r[2] for r in runs], first[1] + first[2])

        ref_t, ref_nfe = None, 0
        if plan.reference_integrate is not None and counter is not None:
            g_ref = ctx.generator("reference")
            if plan.reference_start is not None:
                x_ref = plan.reference_start(n, g_ref)
            else:
                x_ref = torch.randn(samples.shape, generator=g_ref, device=ctx.device)

            def reference_once() -> tuple[float, int]:
                counter.reset()
                g = ctx.generator("reference-sample")  # same stream every repeat
                _, t = clock.time(lambda: plan.reference_integrate(counter, x_ref, g))
                return t, counter.reset()

            ref_first, ref_runs = repeat(reference_once, cell.warmup, cell.repeats)
            ref_t = Timing([r[0] for r in ref_runs], ref_first[0])
            ref_nfe = ref_first[1]

    nfe_measured = first[3]
    nfe_ok = nfe_counts == {plan.expected_nfe}
    if plan.reference_integrate is not None:
        nfe_ok = nfe_ok and ref_nfe == plan.reference_nfe

    # Non-finite samples get NaN metrics (and the count is recorded), never a silent fix.
    nonfinite = int((~torch.isfinite(samples)).sum())
    finalized: dict[str, Any] = {}
    if not nonfinite:
        samples, finalized = ctx.task.finalize(samples)
    metric_values: dict[str, dict[str, Any]] = {}
    reference = ctx.data.test[: cell.n_eval]
    for name in ctx.task.metrics:
        metric = instantiate(metrics, name, ctx.task.metric_options.get(name, {}))
        value = math.nan
        if not nonfinite:
            metric.setup(ctx.data.train, ctx.data.train_labels)
            stats = ctx.metric_stats(name, metric, reference, cell.seed)
            value = float(metric.compute(samples, reference, cell.seed, stats=stats))
        metric_values[name] = {"value": value, "higher_is_better": bool(metric.higher_is_better)}

    options = method.options()
    record: dict[str, Any] = {
        "cell_id": cell.cell_id,
        "cell": cell.to_dict(),
        "task": cell.task,
        "method": cell.method,
        "family": method.family,
        "variant": compiled_label(method.label(), cell.compile),
        "draft": options.get("draft"),
        "t0": plan.t0 if plan.network is not None else None,
        "start": options.get("start", plan.info.get("source")),
        "init": options.get("init"),
        "solver": options.get("solver", plan.info.get("sampler")),
        "n_steps": plan.n_steps,
        "k_steps": plan.k_steps,
        "nfe_budget": plan.n_steps * plan.evals_per_step,
        "nfe_expected": plan.expected_nfe,
        "nfe_measured": nfe_measured,
        "nfe_ok": nfe_ok,
        "seed": cell.seed,
        "time_s": total_t.median,
        "time_spread_s": total_t.spread,
        "first_call_s": total_t.first,
        "compile": cell.compile,
        "compile_s": first_call.seconds if first_call is not None else None,
        "draft_time_s": draft_t.median,
        "integrate_time_s": integrate_t.median,
        "time_per_call_s": integrate_t.median / nfe_measured if nfe_measured else None,
        "timings": {"total": total_t.as_dict(), "draft": draft_t.as_dict(),
                    "integrate": integrate_t.as_dict(),
                    "reference": ref_t.as_dict() if ref_t else None},
        "deterministic": deterministic,
        "nonfinite": nonfinite,
        "finalize": finalized,
        "n_samples": n,
        "n_eval": int(len(reference)),
        "device": cell.device,
        "threads": torch.get_num_threads(),
        "metrics": metric_values,
        "refiner_stats": plan.info.get("refiner_stats") or None,
    }
    if ref_t is not None:
        record.update(bound_check(plan, nfe_measured, ref_nfe, total_t, draft_t, ref_t))
    kept = samples[: ctx.task.samples_kept].detach().cpu().numpy()
    return record, kept


def bound_check(plan, nfe_measured: int, ref_nfe: int, total: Timing, draft: Timing,
                ref: Timing) -> dict[str, Any]:
    """METHOD.md's two checks: the NFE ratio is exact; the wall-clock speed-up is not short
    of S_wall (from this cell's measured c and T_d) by more than this cell's timing noise."""
    n, k, s = plan.n_steps, plan.k_steps, plan.evals_per_step
    nfe_speedup = ref_nfe / nfe_measured if nfe_measured else math.inf
    nfe_theory = theory.nfe_speedup(plan.t0, n)
    time_per_call = ref.median / ref_nfe if ref_nfe else math.nan
    wall_bound = theory.wall_clock_bound(n, k, s, time_per_call, draft.median)
    wall_speedup = ref.median / total.median
    noise = total.relative_spread + ref.relative_spread
    nfe_exact = nfe_speedup == nfe_theory and ref_nfe == n * s and nfe_measured == k * s
    return {
        "ref_time_s": ref.median,
        "ref_nfe": ref_nfe,
        "nfe_speedup": nfe_speedup,
        "nfe_speedup_theory": nfe_theory,
        "ideal_speedup": theory.ideal_speedup(plan.t0),
        "wall_speedup": wall_speedup,
        "wall_bound": wall_bound,
        "bound_time_per_call_s": time_per_call,  # the c and T_d S_wall used (costmodel.py)
        "bound_draft_time_s": draft.median,
        "timing_noise": noise,
        "bound_ok": bool(nfe_exact and wall_speedup >= wall_bound * (1 - noise)),
    }


def default_run_id(suite: Suite) -> str:
    return f"{suite.name}-{suite.config_hash[:8]}"


def _manifest(suite: Suite, run_id: str, previous: dict[str, Any] | None) -> dict[str, Any]:
    now = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    suite_tasks = {name: instantiate(tasks, name, opts) for name, opts in suite.tasks}
    return {
        "schema_version": records.SCHEMA_VERSION,  # harness/schemas/manifest.schema.json
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
        "primary_metrics": {name: task.primary_metric for name, task in suite_tasks.items()},
        "task_notes": {name: task.notes() for name, task in suite_tasks.items()},
    }


def run_suite(
    suite: Suite,
    out_dir: str | Path = "results",
    run_id: str | None = None,
    cache: Cache | None = None,
    progress: bool = True,
) -> Path:
    """Run every cell not already recorded under out_dir/run_id; returns the run folder."""
    run_id = run_id or default_run_id(suite)
    run_dir = Path(out_dir) / run_id
    previous = None
    if (run_dir / records.MANIFEST).exists():
        previous = records.read_manifest(run_dir)
        if previous.get("config_hash") != suite.config_hash:
            raise RunDirError(
                f"{run_dir} holds a run of a different suite configuration; give another "
                "--run-id, or delete that folder to start over"
            )
    cache = cache or Cache()
    if suite.threads:
        torch.set_num_threads(int(suite.threads))
    manifest = _manifest(suite, run_id, previous)
    records.write_manifest(run_dir, manifest)

    for name, options in suite.tasks:
        if not records.reference_path(run_dir, name).exists():
            task = instantiate(tasks, name, options)
            held_out = task.load().test[: task.samples_kept]
            records.write_reference(run_dir, name, held_out.numpy())

    cells = expand_cells(suite)
    done = records.finished_cells(run_dir)
    todo = [c for c in cells if c.cell_id not in done]
    reused = len(cells) - len(todo)
    if progress and reused:
        print(f"resuming {run_id}: {reused} of {len(cells)} cells already recorded, reusing them")
    for backend in sorted({c.compile for c in todo if c.compile}):
        check_compile(backend, suite.device)  # fails here, not after hours of other cells
    # t0 advice per task and warm-start draft, from the data alone, before any WS-FM training.
    advisor.advise_run(suite, run_dir, cache, progress=progress)
    last_group = None
    for cell in tqdm(todo, desc=f"cells ({run_id})", disable=not progress):
        group = (cell.task, cell.seed)
        if group != last_group:  # free the previous task/seed's models
            context.clear_memo()
            last_group = group
        record, samples = run_cell(cell, cache, progress=progress)
        records.write_cell(run_dir, record, samples)

    manifest.update(
        finished=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        status="complete",
        cells={"total": len(cells), "reused": reused, "run": len(todo)},
        cache={"root": str(cache.root), "hits": cache.hits, "misses": cache.misses,
               "discarded": cache.discarded},
    )
    records.write_manifest(run_dir, manifest)
    records.write_records_csv(run_dir)
    return run_dir
