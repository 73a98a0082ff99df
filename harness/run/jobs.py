"""Jobs: what a worker (a process of harness.run.executors, a Ray task) runs, as plain
functions of JSON-able data, and the per-process memo of models they share."""

from __future__ import annotations

from typing import Any

from harness import context
from harness.cache import Cache
from harness.run.cell import Cell
from harness.run.execute import prepare_cell, run_cell

_LAST_GROUP: list[tuple[str, int]] = []


def enter_group(cell: Cell) -> None:
    """Free the previous (task, seed)'s models when a process moves on to another."""
    group = (cell.task, cell.seed)
    if _LAST_GROUP != [group]:
        context.clear_memo()
        _LAST_GROUP[:] = [group]


def _counts(cache: Cache) -> dict[str, int]:
    return {"hits": cache.hits, "misses": cache.misses, "discarded": cache.discarded}


def prepare_job(cell_data: dict[str, Any], cache_root: str) -> dict[str, Any]:
    cell, cache = Cell.from_dict(cell_data), Cache(cache_root)
    enter_group(cell)
    prepare_cell(cell, cache)
    return {"touched": sorted(cache.touched), "counts": _counts(cache)}


def cell_job(cell_data: dict[str, Any], cache_root: str) -> dict[str, Any]:
    cell, cache = Cell.from_dict(cell_data), Cache(cache_root)
    enter_group(cell)
    record, samples = run_cell(cell, cache, progress=False)
    return {"record": record, "samples": samples, "counts": _counts(cache)}
