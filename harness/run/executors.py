"""Executors: where a suite's cells run.

- ``serial``: one after another in this process (``--workers 1``).
- ``processes``: N worker processes on this machine (``--workers N``; by default one per CPU
  core, or one per visible GPU with ``--device cuda``, each worker then seeing one GPU).
- ``ray``: Ray tasks on an existing cluster (``--executor ray --address ADDR``) or on a local
  instance started for the run (harness.run.ray_executor; ``pip install -e '.[ray]'``).

The parallel executors follow the plan of harness.run.plan: preparations (trained networks,
drafts, refiner pairs, metric statistics) first, side by side, and each cell once its
preparation is done. Results come back to this process, which alone writes the run folder
(``emit``). A worker that dies loses only the work in flight, which is retried, at most
MAX_ATTEMPTS times per item. Every worker pins its torch threads (the suite's ``threads``, else
the cores shared out), so with the suite's ``threads`` set a cell gives the same quality values
bit for bit whichever executor runs it. Each record carries ``executor`` and ``concurrency``
(items running side by side when it started); ``exclusive_timing`` runs the cells one at a time
once every preparation is built, so their timings have no neighbours.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import sys
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass, replace
from typing import Any, Protocol

import numpy as np
import torch
from tqdm.auto import tqdm

from harness.cache import Cache
from harness.errors import ConfigError, RunFailed
from harness.records.cell import Cell
from harness.records.record import CellRecord
from harness.run.jobs import Worker, cell_job, prepare_job
from harness.run.plan import Preparation, plan

KINDS = ("processes", "ray")
WORKERS_ENV = "WSFM_BENCH_WORKERS"  # the default of --workers, when set
MAX_ATTEMPTS = 3
Emit = Callable[[CellRecord, "np.ndarray | None"], None]
Prepared = Callable[[Cell, float], None]  # a preparation of this cell took these seconds


class WorkerLost(RunFailed):
    """A cell or preparation was in flight on a worker that died, MAX_ATTEMPTS times."""


@dataclass(frozen=True)
class ExecutorSpec:
    """How a run spreads its cells (recorded in the manifest)."""

    kind: str = "serial"            # "serial", "processes" or "ray"
    workers: int = 1                # items run side by side
    threads: int | None = None      # torch CPU threads per worker (None: torch's default)
    address: str | None = None      # Ray cluster address (None: a local instance)
    exclusive_timing: bool = False  # cells run alone, after every preparation

    def describe(self) -> dict[str, Any]:
        return asdict(self)


def cpu_cores() -> int:
    return len(os.sched_getaffinity(0))


def visible_gpus() -> int:
    try:
        return torch.cuda.device_count()
    except Exception:  # noqa: BLE001 - a broken CUDA set-up counts as no GPU
        return 0


def positive_env(name: str) -> int:
    value = os.environ[name]
    if not value.isdigit() or int(value) < 1:
        raise ConfigError(f"${name}={value!r} must be a positive integer (the default of "
                          "--workers), or unset")
    return int(value)


def resolve_executor(kind: str | None = None, workers: int | None = None,
                     address: str | None = None, device: str = "cpu",
                     threads: int | None = None, exclusive_timing: bool = False,
                     in_process: list[str] | None = None) -> ExecutorSpec:
    """The executor for the command line's --executor/--workers/--address, checked.

    ``in_process`` names plugins registered in this process only (not entry points), which
    worker processes cannot see: the default then runs serially, and asking for workers is
    an error that says so."""
    if in_process:
        if kind is None and workers is None:
            return ExecutorSpec("serial", 1, threads, None, exclusive_timing)
        raise ConfigError(
            f"{', '.join(in_process)} registered in this process only: worker processes and "
            "Ray tasks cannot see them; declare them as entry points of an installed package "
            "(see README, Plugins) or run with --workers 1")
    kind = kind or "processes"
    if kind not in KINDS:
        raise ConfigError(f"--executor {kind!r}: allowed: {', '.join(KINDS)}")
    if address is not None and kind != "ray":
        raise ConfigError("--address is the address of a Ray cluster; add --executor ray")
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int)
                                or workers < 1):
        raise ConfigError(f"--workers {workers!r} must be a positive integer")
    if workers is None and os.environ.get(WORKERS_ENV):
        workers = positive_env(WORKERS_ENV)
    if workers is None:
        gpu = device.startswith("cuda")
        workers = max(1, visible_gpus() if gpu and device == "cuda" else 1 if gpu
                      else cpu_cores())
    if kind == "ray":
        from harness.run.ray_executor import check_ray

        check_ray(address)
    elif workers == 1:
        return ExecutorSpec("serial", 1, threads, None, exclusive_timing)
    threads = threads or max(1, cpu_cores() // workers)
    return ExecutorSpec(kind, workers, threads, address, exclusive_timing)


def run_cells(spec: ExecutorSpec, cells: list[Cell], cache: Cache, emit: Emit,
              progress: bool = True, label: str = "cells",
              on_prepared: Prepared | None = None) -> None:
    """Run the cells with the executor ``spec``; ``emit`` each record as it comes back, and
    tell ``on_prepared`` how long each preparation took (parallel executors prepare apart;
    in this process a cell prepares its own method and its record says how long)."""
    if spec.kind == "serial":
        _run_serial(spec, cells, cache, emit, progress, label)
        return
    if spec.kind == "ray":
        from harness.run.ray_executor import RayBackend

        backend: Backend = RayBackend(spec, cache, cells[0].device if cells else "cpu")
    else:
        backend = ProcessBackend(spec, cache, cells[0].device if cells else "cpu")
    try:
        schedule(plan(cells), backend, spec, cache, emit, progress, label, on_prepared)
    except BaseException:  # an error or an interrupt: the work in flight is not waited for
        backend.close(abort=True)
        raise
    backend.close()


def stamp(record: CellRecord, spec: ExecutorSpec, concurrency: int) -> CellRecord:
    """The record with how it was run: executor and concurrency."""
    return replace(record, identity=replace(record.identity, executor=spec.kind,
                                            concurrency=concurrency))


def _run_serial(spec: ExecutorSpec, cells: list[Cell], cache: Cache, emit: Emit,
                progress: bool, label: str) -> None:
    if spec.threads:
        torch.set_num_threads(int(spec.threads))
    worker = Worker()  # this process runs the cells: it keeps what they share loaded
    for cell in tqdm(cells, desc=label, disable=not progress):
        record, samples = worker.run(cell, cache, progress=progress)
        emit(stamp(record, spec, 1), samples)


# --- the schedule, shared by the parallel backends -------------------------------------------

class Backend(Protocol):
    """Runs jobs somewhere; ``wait`` gives back (handle, outcome, value) for finished ones:
    outcome "ok" (value: the job's result), "lost" (the worker died) or "error" (value: the
    exception the job raised)."""

    slots: int

    def submit(self, kind: str, cell: Cell, prepared: Any) -> Any: ...

    def wait(self, handles: list[Any]) -> list[tuple[Any, str, Any]]: ...

    def prepared(self, handle: Any) -> Any:
        """What a cell is given of its finished preparation (``handle``)."""

    def close(self, abort: bool = False) -> None:
        """Release the workers; ``abort``: stop the work in flight rather than wait for it."""


def _retry(kind: str, item: Any, why: Any, attempts: Counter[int]) -> None:
    """Count a lost job; stop the run, naming it, when it was lost MAX_ATTEMPTS times."""
    attempts[id(item)] += 1
    cell = item.cell if kind == "prep" else item
    if attempts[id(item)] >= MAX_ATTEMPTS:
        raise WorkerLost(
            f"a worker died {MAX_ATTEMPTS} times running {kind} of {cell.task}/{cell.method} "
            f"seed {cell.seed} ({why}); the records written so far are kept: rerun the same "
            "command to resume")
    tqdm.write(f"wsfm-bench: a worker died ({why}) running {kind} of {cell.task}/"
               f"{cell.method} seed {cell.seed}; retrying it (attempt {attempts[id(item)] + 1} "
               f"of {MAX_ATTEMPTS})", file=sys.stderr)


def schedule(nodes: list[Preparation], backend: Backend, spec: ExecutorSpec, cache: Cache,
             emit: Emit, progress: bool, label: str,
             on_prepared: Prepared | None = None) -> None:
    """Each cell once its preparation is done; lost work retried."""
    preps: deque[Preparation] = deque(nodes)
    ready: deque[tuple[Cell, Any]] = deque()
    in_flight: dict[Any, tuple[str, Any, Any, int]] = {}
    attempts: Counter[int] = Counter()
    bar = tqdm(total=sum(len(n.cells) for n in nodes), desc=label, disable=not progress)

    def preps_running() -> bool:
        return bool(preps) or any(kind == "prep" for kind, *_ in in_flight.values())

    def submit(kind: str, item: Any, prepared: Any) -> None:
        cell = item.cell if kind == "prep" else item
        handle = backend.submit(kind, cell, prepared)
        in_flight[handle] = (kind, item, prepared, len(in_flight) + 1)

    try:
        while preps or ready or in_flight:
            while len(in_flight) < backend.slots:
                # Ready cells first (records land early; an interrupted run keeps them), but
                # with exclusive timing only once all training is done, and one at a time.
                if ready and not (spec.exclusive_timing and (preps_running() or in_flight)):
                    submit("cell", *ready.popleft())
                elif preps:
                    submit("prep", preps.popleft(), None)
                else:
                    break
            for handle, outcome, value in backend.wait(list(in_flight)):
                kind, item, prepared, concurrency = in_flight.pop(handle)
                if outcome == "lost":
                    _retry(kind, item, value, attempts)
                    (preps.appendleft(item) if kind == "prep"
                     else ready.appendleft((item, prepared)))
                    continue
                if outcome == "error":
                    raise value
                for name, n in value["counts"].items():
                    setattr(cache, name, getattr(cache, name) + n)
                if kind == "prep":
                    if on_prepared is not None:
                        on_prepared(item.cell, float(value.get("seconds", 0.0)))
                    ready.extend((cell, backend.prepared(handle)) for cell in item.cells)
                else:
                    emit(stamp(value["record"], spec, concurrency), value["samples"])
                    bar.update(1)
    finally:
        bar.close()


# --- worker processes on this machine --------------------------------------------------------

def _watch_parent(parent: int) -> None:
    """Exit when the driver is gone (killed with SIGKILL, say): no orphaned workers."""
    while os.getppid() == parent:
        time.sleep(0.5)
    os._exit(1)


def _init_worker(threads: int, parent: int, gpu_slot: Any, n_gpus: int) -> None:
    if n_gpus:  # one GPU per worker, in turn
        with gpu_slot.get_lock():
            os.environ["CUDA_VISIBLE_DEVICES"] = str(gpu_slot.value % n_gpus)
            gpu_slot.value += 1
    torch.set_num_threads(threads)
    os.environ["TQDM_DISABLE"] = "1"
    # Ctrl-C reaches the whole process group: the driver alone stops the run (and marks it
    # interrupted); a worker's KeyboardInterrupt would only print a traceback of its own.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # tqdm's default lock is a named semaphore; a worker ended mid-cell (an interrupted run)
    # would leave it to the resource tracker, which warns about it on the driver's stderr.
    tqdm.set_lock(threading.RLock())
    threading.Thread(target=_watch_parent, args=(parent,), daemon=True).start()


class ProcessBackend:
    """A pool of spawned worker processes sharing this machine's cache folder (its per-key
    locks build each artefact once); a pool broken by a dead worker is replaced."""

    def __init__(self, spec: ExecutorSpec, cache: Cache, device: str) -> None:
        self.slots = spec.workers
        self.threads = int(spec.threads or 1)
        self.cache_root = str(cache.root)
        self.n_gpus = visible_gpus() if device == "cuda" else 0
        self._mp = multiprocessing.get_context("spawn")  # no inherited locks or CUDA state
        self._gpu_slot = self._mp.Value("i", 0)
        self._pool: ProcessPoolExecutor | None = None
        self._owner: dict[Future, ProcessPoolExecutor] = {}

    def _executor(self) -> ProcessPoolExecutor:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(
                self.slots, mp_context=self._mp, initializer=_init_worker,
                initargs=(self.threads, os.getpid(), self._gpu_slot, self.n_gpus))
        return self._pool

    def submit(self, kind: str, cell: Cell, prepared: Any) -> Future:
        job = prepare_job if kind == "prep" else cell_job
        try:
            future = self._executor().submit(job, cell.to_dict(), self.cache_root)
        except BrokenProcessPool:
            self._replace(self._pool)
            future = self._executor().submit(job, cell.to_dict(), self.cache_root)
        self._owner[future] = self._executor()
        return future

    def prepared(self, handle: Future) -> None:
        return None  # the workers share this machine's cache folder

    def wait(self, handles: list[Future]) -> list[tuple[Future, str, Any]]:
        done, _ = wait(handles, return_when=FIRST_COMPLETED)
        out = []
        for future in done:
            pool = self._owner.pop(future, None)
            exc = None if future.cancelled() else future.exception()
            if future.cancelled() or isinstance(exc, BrokenProcessPool):
                self._replace(pool)  # the pool it ran in is broken; its other work is lost too
                out.append((future, "lost", "worker process died"))
            else:
                out.append((future, "error", exc) if exc else (future, "ok", future.result()))
        return out

    def _replace(self, pool: ProcessPoolExecutor | None) -> None:
        if pool is not None and pool is self._pool:
            pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None

    def close(self, abort: bool = False) -> None:
        if self._pool is None:
            return
        if abort:  # a cell in flight may run for minutes: end its worker now
            for process in list((getattr(self._pool, "_processes", None) or {}).values()):
                process.terminate()
        self._pool.shutdown(wait=not abort, cancel_futures=True)
        self._pool = None
