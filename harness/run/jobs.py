"""Jobs: what a worker (the runner's own process, a process of harness.run.executors, a Ray
task) runs, as plain functions of JSON-able data. A ``Worker`` owns what it keeps loaded
between jobs: the cell contexts' memo (harness.context.Memo) and the method objects, each
built once from its options."""

from __future__ import annotations

import time
from typing import Any

from harness.cache import Cache
from harness.context import Memo
from harness.hashing import stable_hash
from harness.plugins import Method, instantiate
from harness.records.cell import Cell
from harness.records.record import CellRecord
from harness.registry import methods
from harness.run.execute import prepare_cell, run_cell


class Worker:
    """Runs preparations and cells, keeping what they share loaded: the artefacts of the
    (task, seed) it is on, and one method object per (method, options)."""

    def __init__(self) -> None:
        self.memo = Memo()
        self._methods: dict[str, Method] = {}

    def method(self, cell: Cell) -> Method:
        """The cell's method object, instantiated once per (method, options)."""
        key = stable_hash([cell.method, cell.method_options])
        if key not in self._methods:
            self._methods[key] = instantiate(methods, cell.method, cell.method_options)
        return self._methods[key]

    def prepare(self, cell: Cell, cache: Cache) -> None:
        self.memo.enter(cell.task, cell.seed)
        prepare_cell(cell, self.method(cell), cache, self.memo)

    def run(self, cell: Cell, cache: Cache, progress: bool = True) -> tuple[CellRecord, Any]:
        self.memo.enter(cell.task, cell.seed)
        return run_cell(cell, self.method(cell), cache, progress=progress, memo=self.memo)


_PROCESS_WORKER: list[Worker] = []  # the Worker of this worker process, made on first use


def process_worker() -> Worker:
    """The Worker of this process (a pool process or a Ray worker runs one job at a time)."""
    if not _PROCESS_WORKER:
        _PROCESS_WORKER.append(Worker())
    return _PROCESS_WORKER[0]


def _counts(cache: Cache) -> dict[str, int]:
    return {"hits": cache.hits, "misses": cache.misses, "discarded": cache.discarded}


def prepare_job(cell_data: dict[str, Any], cache_root: str) -> dict[str, Any]:
    cell, cache = Cell.from_dict(cell_data), Cache(cache_root)
    start = time.perf_counter()
    process_worker().prepare(cell, cache)
    return {"touched": sorted(cache.touched), "counts": _counts(cache),
            "seconds": time.perf_counter() - start}


def cell_job(cell_data: dict[str, Any], cache_root: str) -> dict[str, Any]:
    cell, cache = Cell.from_dict(cell_data), Cache(cache_root)
    record, samples = process_worker().run(cell, cache, progress=False)
    return {"record": record, "samples": samples, "counts": _counts(cache)}
