"""Judging a cell's samples: its metrics (the suite's choice, else the task's) against the
reference split, each timed, and the score of a warm start's training targets (the ceiling
that training on them can reach). Every score is memoised by the content of what it scores:
a metric is a deterministic function of its points, the reference and the seed, so a rerun
that draws the same samples (a warm run: sampling is seeded) reads the number back instead
of computing it again, while its timings are measured anew."""

from __future__ import annotations

import math
import time

import torch

from harness.cache import tensor_sha256
from harness.context import CellContext, plugin_key
from harness.plugins import Metric, SamplingPlan, instantiate
from harness.records.cell import Cell
from harness.records.record import MetricValue
from harness.registry import metrics


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


def judge(cell: Cell, ctx: CellContext,
          samples: torch.Tensor | None) -> tuple[dict[str, MetricValue], dict[str, float]]:
    """Every metric of the cell on ``samples`` (NaN for each when None: samples not finite),
    and the seconds each took (its reference statistics included)."""
    reference = reference_split(cell, ctx)
    values, seconds = {}, {}
    for name, metric in cell_metrics(cell, ctx):
        start, value = time.perf_counter(), math.nan
        if samples is not None:
            value = score(cell, ctx, name, metric, samples, reference, "scores")
        values[name] = MetricValue(value=value, higher_is_better=bool(metric.higher_is_better))
        seconds[name] = time.perf_counter() - start
    return values, seconds


def score(cell: Cell, ctx: CellContext, name: str, metric: Metric, points: torch.Tensor,
          reference: torch.Tensor, kind: str) -> float:
    """``metric`` on ``points`` against ``reference``, cached (as ``kind``) by their content,
    the metric's name, options and version, the task and the seed."""
    key = {**ctx.task_key, "metric": plugin_key(name, metric), "seed": cell.seed,
           "points_sha256": tensor_sha256(points.cpu().contiguous()),
           "reference_sha256": tensor_sha256(reference.cpu().contiguous())}

    def build() -> dict[str, float]:
        stats = metric_setup(cell, ctx, name, metric)
        return {"value": float(metric.compute(points, reference, cell.seed, stats=stats))}

    return float(ctx.cache.load_or_build(kind, key, build)["value"])


def target_quality(cell: Cell, ctx: CellContext, plan: SamplingPlan) -> dict[str, float] | None:
    """Each metric of the cell on n_samples of the warm start's training targets (the plan's
    ``targets``, finalized like samples): what training on them can reach at best. Cached by
    the targets' content, so the cells of one pair set compute it once."""
    if plan.targets is None:
        return None
    targets, _ = ctx.task.finalize(plan.targets[: cell.n_samples])
    reference = reference_split(cell, ctx)
    return {name: score(cell, ctx, name, metric, targets, reference, "targets")
            for name, metric in cell_metrics(cell, ctx)}
