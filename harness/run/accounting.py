"""Where a run's time went: seconds of work (summed over workers) spent preparing each
method (training on a cache miss, loading on a hit), sampling, and in each metric (the judge
language model is one), from the preparations and the cells this invocation ran; the wall
seconds before the first cell (held-out references written, the t0 advice with the drafts it
fits); and the rest of the workers' time (waiting on a model a neighbour is training, with
nothing left to run, records written). The runner prints it at the end of a run and keeps it
in the manifest ("time")."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from harness.records.cell import Cell
from harness.records.record import CellRecord


class TimeBook:
    """Seconds of work of one invocation of a run, by what they were spent on."""

    def __init__(self, workers: int = 1) -> None:
        self.workers = workers
        self.before_s = 0.0  # wall seconds before the first cell (the runner's own process)
        self.preparing: dict[str, float] = defaultdict(float)  # "task / method" -> seconds
        self.sampling: dict[str, float] = defaultdict(float)  # task -> seconds
        self.metrics: dict[str, float] = defaultdict(float)  # metric -> seconds
        self.cells = 0

    def prepared(self, cell: Cell, seconds: float) -> None:
        """A preparation (its method's training or loading) took ``seconds``."""
        self.preparing[f"{cell.task} / {cell.method}"] += seconds

    def cell(self, record: CellRecord) -> None:
        """A cell ran: what it spent preparing (in this process), sampling and judging."""
        self.cells += 1
        task = record.identity.task
        self.preparing[f"{task} / {record.identity.method}"] += record.cost.prepare_s or 0.0
        self.sampling[task] += record.times.sampling_s or 0.0
        for name, seconds in record.times.metric_s.items():
            self.metrics[name] += seconds

    def work_s(self) -> float:
        return sum(self.preparing.values()) + sum(self.sampling.values()) + sum(
            self.metrics.values())

    def rest_s(self, wall_s: float) -> float:
        """The workers' time not spent on work (all workers, from the first cell on)."""
        return max(0.0, self.workers * (wall_s - self.before_s) - self.work_s())

    def as_dict(self, wall_s: float) -> dict[str, Any]:
        def rounded(d: dict[str, float]) -> dict[str, float]:
            return {k: round(v, 2) for k, v in sorted(d.items(), key=lambda kv: -kv[1])}

        return {"wall_s": round(wall_s, 2), "cells": self.cells, "workers": self.workers,
                "before_cells_s": round(self.before_s, 2), "rest_s": round(self.rest_s(wall_s), 2),
                "preparing_s": rounded(self.preparing), "sampling_s": rounded(self.sampling),
                "metrics_s": rounded(self.metrics)}

    def lines(self, wall_s: float) -> list[str]:
        """What the runner prints: the largest items first, seconds of work."""
        def top(d: dict[str, float], n: int = 8) -> str:
            items = sorted(d.items(), key=lambda kv: -kv[1])
            shown = ", ".join(f"{k} {v:.0f} s" for k, v in items[:n] if v >= 0.5)
            rest = sum(v for _, v in items[n:])
            return (shown or "none") + (f", others {rest:.0f} s" if rest >= 0.5 else "")

        return [f"time: {wall_s:.0f} s wall for {self.cells} cells, {self.before_s:.0f} s of it "
                "before them (the t0 advice, with the drafts it fits); seconds of work, summed "
                f"over {self.workers} worker{'s' if self.workers != 1 else ''}:",
                f"  preparing (training on a cache miss, loading on a hit): "
                f"{sum(self.preparing.values()):.0f} s: {top(self.preparing)}",
                f"  sampling (warm-up, timed repeats, reference runs): "
                f"{sum(self.sampling.values()):.0f} s: {top(self.sampling)}",
                f"  metrics (the judge language model included): "
                f"{sum(self.metrics.values()):.0f} s: {top(self.metrics)}",
                f"  the rest of the workers' time: {self.rest_s(wall_s):.0f} s (waiting on a "
                "model a neighbour is training, or with nothing left to run; records written)"]
