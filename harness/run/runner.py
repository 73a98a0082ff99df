"""The runner: a suite in, a run folder out.

``run_suite`` validates a suite, expands it into cells, skips cells whose records exist
(resume), hands the rest to an executor (harness.run.executors: in this process, in worker
processes, or on a Ray cluster) and writes each record as it comes back, then the manifest.
Only this process writes the run folder. One cell's work is harness.run.execute.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from harness.cache import Cache
from harness.checks import plain_name, writable_folder
from harness.errors import RunDirError
from harness.plugins import instantiate
from harness.records import store as records
from harness.records.cell import Cell
from harness.records.lock import LOCK_FILE, RunLock
from harness.records.record import CellRecord
from harness.records.schema import SCHEMA_VERSION
from harness.registry import REGISTRIES, tasks
from harness.run.accounting import TimeBook
from harness.run.advice import advise_run
from harness.run.executors import ExecutorSpec, run_cells
from harness.run.expand import expand_cells
from harness.run.machine import describe_machine, git_commit, package_versions
from harness.run.sequential import pending_cells
from harness.run.sequential import until_decided as until_decided_run
from harness.run.stopping import mark_stopped, signals_raise
from harness.run.suite import Suite
from harness.run.timing import check_compile


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
        used["draft"] |= {plugin for plugin, _ in task.all_drafts.values()}
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
    manifest = {
        "schema_version": SCHEMA_VERSION,  # harness/records/schemas/manifest.schema.json
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
        # How the headline judges claims, and which seeds choose settings and which report
        # (with the evaluation seeds a sequential design added, kept across resumes).
        "evidence": {
            "rules": suite.rules().to_dict(),
            "seeds": {name: dict(zip(("selection", "evaluation"), suite.seeds_for(name),
                                     strict=True)) for name, _ in suite.tasks},
            **{k: v for k, v in ((previous or {}).get("evidence") or {}).items()
               if k in ("looks", "extended")},
        },
        "task_notes": {name: task.notes() for name, task in suite_tasks.items()},
    }
    if previous and (previous.get("evidence") or {}).get("looks"):
        manifest["evidence"]["seeds"] = previous["evidence"]["seeds"]
    return manifest


def run_folder(out_dir: str | Path, run_id: str) -> Path:
    """out_dir/run_id, after checking both: --out a folder it can write into (or create),
    the run id one plain folder name (it cannot climb out of --out), and the run folder
    empty, or a run (the manifest says so), or one of ours killed before its manifest."""
    out = writable_folder(out_dir, "--out", " for the results")
    run_dir = out / plain_name(run_id, "--run-id")
    writable_folder(run_dir, "the run folder")
    if run_dir.is_dir() and not (run_dir / records.MANIFEST).exists():
        foreign = sorted(p.name for p in run_dir.iterdir() if p.name != LOCK_FILE
                         and not p.name.startswith(f".{records.MANIFEST}."))
        if foreign:
            raise RunDirError(
                f"{run_dir} is not empty and not a wsfm-bench run (no {records.MANIFEST}; it "
                f"holds {', '.join(foreign[:3])}{', ...' if len(foreign) > 3 else ''}): "
                "refusing to write among those files; give another --run-id or --out")
    return run_dir


def run_suite(
    suite: Suite,
    out_dir: str | Path = "results",
    run_id: str | None = None,
    cache: Cache | None = None,
    progress: bool = True,
    executor: ExecutorSpec | None = None,
    until_decided: bool = False,
) -> Path:
    """Run every cell not already recorded under out_dir/run_id; returns the run folder.

    ``executor`` says where the cells run (default: one after another in this process; the
    command line's default is one worker process per core, harness.run.executors).

    The folder is locked while this runs (a second run into it is refused, naming who holds
    it). A run that fails part-way is marked "failed" with the reason in its manifest, one
    stopped by SIGINT or SIGTERM "interrupted" (harness.run.stopping); what it recorded
    stays, and the same command resumes it."""
    run_id = default_run_id(suite) if run_id is None else run_id
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
        spec = executor or ExecutorSpec()
        if spec.threads is None and suite.threads:
            spec = replace(spec, threads=int(suite.threads))
        if suite.exclusive_timing and not spec.exclusive_timing:
            spec = replace(spec, exclusive_timing=True)
        manifest = _manifest(suite, run_id, previous)
        manifest["executor"] = spec.describe()
        records.write_manifest(run_dir, manifest)
        try:
            with signals_raise():  # SIGINT and SIGTERM too end here, marked "interrupted"
                _run(suite, run_dir, manifest, cache or Cache(), progress, spec, until_decided)
        except BaseException as exc:
            stop = mark_stopped(run_dir, manifest, exc)
            if stop is exc:
                raise
            raise stop from exc
    return run_dir


def _run(suite: Suite, run_dir: Path, manifest: dict[str, Any], cache: Cache,
         progress: bool, spec: ExecutorSpec, until_decided: bool = False) -> None:
    run_id, start, book = manifest["run_id"], time.perf_counter(), TimeBook(spec.workers)
    _write_references(suite, run_dir)
    cells, todo = _cells(suite, run_dir, manifest)
    reused = len(cells) - len(todo)
    # Status lines are printed even without progress bars (--quiet).
    manifest["cells"] = {"total": len(cells), "reused": reused, "run": 0}
    records.write_manifest(run_dir, manifest)  # the report of an interrupted run counts on it
    where = "" if spec.kind == "serial" else f" ({spec.kind}: {spec.workers} workers x " \
        f"{spec.threads} threads{', cells timed alone' if spec.exclusive_timing else ''})"
    print(f"{run_id}: {len(cells)} cells into {run_dir}{where}"
          + (f"; resuming: {reused} already recorded, reusing them" if reused else ""),
          flush=True)
    for backend in sorted({c.compile for c in todo if c.compile}):
        check_compile(backend, suite.device)  # fails here, not after hours of other cells
    # t0 advice per task and warm-start draft, from the data alone, before any WS-FM training.
    advise_run(suite, run_dir, cache, progress=progress)
    book.before_s = time.perf_counter() - start

    def emit(record: CellRecord, samples: Any) -> None:
        records.write_cell(run_dir, record, samples)
        book.cell(record)

    def run(batch: list[Cell]) -> None:
        finished = records.finished_cells(run_dir)
        run_cells(spec, [c for c in batch if c.cell_id not in finished], cache, emit,
                  progress=progress, label=f"cells ({run_id})", on_prepared=book.prepared)

    run(todo)
    if until_decided:
        until_decided_run(suite, run_dir, manifest, run)
        cells, _ = _cells(suite, run_dir, manifest)
    wall = time.perf_counter() - start
    print("\n".join(book.lines(wall)), flush=True)
    manifest.update(
        finished=_now(), status="complete", time=book.as_dict(wall),
        cells={"total": len(cells), "reused": reused, "run": book.cells},
        cache={"root": str(cache.root), "hits": cache.hits, "misses": cache.misses,
               "discarded": cache.discarded},
    )
    manifest.pop("error", None)
    records.write_manifest(run_dir, manifest)
    records.write_records_csv(run_dir)


def _write_references(suite: Suite, run_dir: Path) -> None:
    """A fixed subset of each task's held-out split, stored so reports need no data loading."""
    for name, options in suite.tasks:
        if not records.reference_path(run_dir, name).exists():
            task = instantiate(tasks, name, options)
            held_out = task.load().test[: task.samples_kept]
            records.write_reference(run_dir, name, held_out.numpy())


def _cells(suite: Suite, run_dir: Path, manifest: dict[str, Any]) -> tuple[list[Cell],
                                                                           list[Cell]]:
    """(every cell of the run, those not recorded yet): the suite's cells and those its
    sequential design added (harness.run.sequential)."""
    cells = expand_cells(suite) + pending_cells(manifest)
    done = records.finished_cells(run_dir)
    return cells, [c for c in cells if c.cell_id not in done]
