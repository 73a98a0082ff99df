"""Executors (issue 13): cells in worker processes and on Ray give the serial run's quality
values bit for bit, shared artefacts are prepared once, a dead worker's cell is retried and
nothing recorded is lost, a killed driver leaves no workers behind, and bad executor options
get one clear error."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from harness.cache import Cache
from harness.cli import main
from harness.errors import ConfigError
from harness.records.cell import Cell
from harness.records.store import quality_by_cell, read_manifest
from harness.run.executors import (
    MAX_ATTEMPTS,
    ExecutorSpec,
    WorkerLost,
    resolve_executor,
    schedule,
)
from harness.run.expand import expand_cells
from harness.run.plan import plan
from harness.run.suite import parse_suite
from tests.synthetic import placeholder

SUITE = """
name = "exec"
seeds = [0, 1]
selection_seeds = [100]
budgets = [2, 4]
n_samples = 200
n_eval = 200
repeats = 2
threads = 1
[training]
steps = 40
batch_size = 128
[[tasks]]
name = "two-moons"
n_train = 600
n_test = 300
[[methods]]
name = "draft-only"
draft = "good"
[[methods]]
name = "full-fm"
[[methods]]
name = "ws-fm"
draft = "good"
t0 = 0.5
"""


def _records(run_dir: Path) -> list[dict[str, Any]]:
    """Each cell's identity: how it ran (executor, concurrency)."""
    return [json.loads(p.read_text())["identity"] for p in (run_dir / "cells").glob("*.json")]


def _run(tmp_path: Path, run_id: str, *extra: str) -> Path:
    suite = tmp_path / "exec.toml"
    suite.write_text(SUITE)
    code = main(["run", str(suite), "--out", str(tmp_path / "out"), "--run-id", run_id,
                 "--cache", str(tmp_path / f"cache-{run_id}"), "--no-report", "--quiet",
                 *extra])
    assert code == 0
    return tmp_path / "out" / run_id


def test_workers_and_ray_give_the_serial_quality_bit_for_bit(tmp_path: Path) -> None:
    serial = _run(tmp_path, "serial", "--workers", "1")
    workers = _run(tmp_path, "workers", "--workers", "2")
    expected = quality_by_cell(serial)
    assert len(expected) == 3 * (1 + 2 + 2)  # 3 seeds x (draft, full FM and WS-FM at 2 N)
    assert quality_by_cell(workers) == expected
    assert {r["executor"] for r in _records(serial)} == {"serial"}
    assert {r["executor"] for r in _records(workers)} == {"processes"}
    assert all(1 <= r["concurrency"] <= 2 for r in _records(workers))
    assert read_manifest(workers)["executor"] == {
        "kind": "processes", "workers": 2, "threads": 1, "address": None,
        "exclusive_timing": False}
    pytest.importorskip("ray")
    ray_run = _run(tmp_path, "ray", "--executor", "ray", "--workers", "2")
    assert quality_by_cell(ray_run) == expected
    assert {r["executor"] for r in _records(ray_run)} == {"ray"}


def test_exclusive_timing_runs_every_cell_alone(tmp_path: Path) -> None:
    run = _run(tmp_path, "alone", "--workers", "2", "--exclusive-timing")
    assert {r["concurrency"] for r in _records(run)} == {1}
    assert read_manifest(run)["executor"]["exclusive_timing"] is True


def _cells() -> list[Cell]:
    return expand_cells(parse_suite(__import__("tomllib").loads(SUITE)))


def test_cells_differing_only_in_budget_share_one_preparation() -> None:
    nodes = plan(_cells())
    # per seed: draft-only, full-fm (2 budgets), ws-fm (2 budgets) -> 3 preparations
    assert len(nodes) == 3 * 3
    assert sorted(len(n.cells) for n in nodes) == [1] * 3 + [2] * 6
    assert all(len({(c.task, c.seed, c.method) for c in n.cells}) == 1 for n in nodes)


def test_preparations_go_breadth_first_over_seeds() -> None:
    # Every seed's first preparation (the draft), then every seed's full model, then every
    # seed's warm start (which needs its seed's draft): two workers never start on two
    # preparations of one seed while another seed's first one waits.
    nodes = plan(_cells())
    seeds = [n.cell.seed for n in nodes]
    assert [n.cell.method for n in nodes] == ["draft-only"] * 3 + ["full-fm"] * 3 + ["ws-fm"] * 3
    assert seeds[:3] == seeds[3:6] == seeds[6:] and len(set(seeds[:3])) == 3


class FakeBackend:
    """Runs nothing: answers each job at once, losing the jobs named in ``lose``."""

    def __init__(self, slots: int, lose: dict[str, int]) -> None:
        self.slots, self.lose = slots, dict(lose)
        self.log: list[tuple[str, str, int]] = []  # (kind, method, jobs in flight)
        self.in_flight: list[Any] = []

    def submit(self, kind: str, cell: Cell, prepared: Any) -> Any:
        handle = (kind, cell.cell_id, len(self.log))
        self.in_flight.append(handle)
        self.log.append((kind, cell.method, len(self.in_flight)))
        return handle

    def wait(self, handles: list[Any]) -> list[tuple[Any, str, Any]]:
        handle = handles[0]
        self.in_flight.remove(handle)
        kind, cell_id, _ = handle
        if self.lose.get(cell_id, 0) > 0:
            self.lose[cell_id] -= 1
            return [(handle, "lost", "killed")]
        if kind == "prep":
            return [(handle, "ok", {"counts": {"hits": 1}})]
        return [(handle, "ok", {"record": placeholder(cell_id), "samples": None,
                                "counts": {"misses": 1}})]

    def prepared(self, handle: Any) -> Any:
        return None

    def close(self) -> None:
        pass


def test_a_lost_cell_is_retried_and_every_record_emitted_once(tmp_path: Path) -> None:
    cells = _cells()
    victim = next(c for c in cells if c.method == "full-fm")
    backend = FakeBackend(2, {victim.cell_id: MAX_ATTEMPTS - 1})
    emitted: list[str] = []
    cache = Cache(tmp_path)
    schedule(plan(cells), backend, ExecutorSpec("processes", 2), cache,
             lambda record, _: emitted.append(record.cell_id), False, "t")
    assert sorted(emitted) == sorted(c.cell_id for c in cells)
    assert cache.misses == len(cells) and cache.hits == len(plan(cells))


def test_a_cell_lost_too_often_stops_the_run_naming_it(tmp_path: Path) -> None:
    cells = _cells()
    victim = next(c for c in cells if c.method == "ws-fm")
    backend = FakeBackend(2, {victim.cell_id: MAX_ATTEMPTS})
    emitted: list[str] = []
    with pytest.raises(WorkerLost, match=rf"died {MAX_ATTEMPTS} times.*two-moons/ws-fm seed "
                                         rf"{victim.seed}.*resume"):
        schedule(plan(cells), backend, ExecutorSpec("processes", 2), Cache(tmp_path),
                 lambda record, _: emitted.append(record.cell_id), False, "t")
    assert victim.cell_id not in emitted


def test_exclusive_timing_schedules_cells_alone_after_all_preparations(tmp_path: Path) -> None:
    backend = FakeBackend(2, {})
    schedule(plan(_cells()), backend, ExecutorSpec("processes", 2, exclusive_timing=True),
             Cache(tmp_path), lambda *_: None, False, "t")
    kinds = [kind for kind, _, _ in backend.log]
    assert kinds == sorted(kinds, key=lambda k: k != "prep")  # every prep before any cell
    assert all(n == 1 for kind, _, n in backend.log if kind == "cell")


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"workers": 0}, r"--workers 0 must be a positive integer"),
    ({"kind": "threads"}, r"--executor 'threads': allowed: processes, ray"),
    ({"address": "10.0.0.1:6379"}, r"--address .* add --executor ray"),
])
def test_bad_executor_options_are_named(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        resolve_executor(**kwargs)


def test_one_worker_is_the_serial_executor_and_threads_are_shared_out() -> None:
    assert resolve_executor(workers=1).kind == "serial"
    spec = resolve_executor(workers=2)
    assert spec.kind == "processes" and spec.threads == max(1, len(os.sched_getaffinity(0)) // 2)
    assert resolve_executor(workers=2, threads=3).threads == 3


def test_ray_missing_is_one_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    with pytest.raises(ConfigError, match=r"pip install -e '\.\[ray\]'"):
        resolve_executor("ray", 2)


def test_cache_entries_travel_between_caches(tmp_path: Path) -> None:
    here, there = Cache(tmp_path / "a"), Cache(tmp_path / "b")
    state = here.load_or_build("models", {"k": 1}, lambda: {"w": __import__("torch").ones(3)})
    blobs = here.export(here.touched)
    assert there.install(blobs) == 1 and there.install(blobs) == 0
    calls = []
    loaded = there.load_or_build("models", {"k": 1}, lambda: calls.append(1) or {})
    assert not calls and loaded["w"].equal(state["w"])
    with pytest.raises(ConfigError, match="not kind/hash"):
        there.install({"../x.pt": b"", "../x.json": b""})


def _spawned_workers(driver: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(driver)], capture_output=True, text=True).stdout
    spawned = []
    for pid in (int(p) for p in out.split()):
        try:  # a short-lived child may be gone between pgrep and here
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        except (FileNotFoundError, ProcessLookupError):
            continue
        if "spawn_main" in cmdline:
            spawned.append(pid)
    return spawned


def _alive(pid: int) -> bool:
    """Running (a zombie waiting for a reaper is dead)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "\nState:\tZ" not in status


def _start(tmp_path: Path, run_id: str) -> subprocess.Popen[bytes]:
    suite = tmp_path / "exec.toml"
    suite.write_text(SUITE)
    return subprocess.Popen(
        [sys.executable, "-m", "harness.cli", "run", str(suite), "--out",
         str(tmp_path / "out"), "--run-id", run_id, "--cache", str(tmp_path / "cache"),
         "--workers", "2", "--no-report", "--quiet"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _wait_for(condition, timeout: float = 120) -> None:
    end = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.1)


def test_a_worker_killed_mid_suite_loses_nothing(tmp_path: Path) -> None:
    proc = _start(tmp_path, "killed-worker")
    cells = tmp_path / "out" / "killed-worker" / "cells"
    _wait_for(lambda: len(_spawned_workers(proc.pid)) == 2 and cells.is_dir()
              and any(cells.glob("*.json")))
    os.kill(_spawned_workers(proc.pid)[0], signal.SIGKILL)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err.decode()
    assert b"a worker died" in err
    serial = _run(tmp_path, "serial", "--workers", "1")
    assert quality_by_cell(cells.parent) == quality_by_cell(serial)


def test_a_killed_driver_leaves_no_workers_and_resumes(tmp_path: Path) -> None:
    proc = _start(tmp_path, "killed-driver")
    _wait_for(lambda: len(_spawned_workers(proc.pid)) == 2)
    workers = _spawned_workers(proc.pid)
    time.sleep(1.0)
    proc.kill()
    proc.wait()
    # A worker still importing torch when the driver dies exits once its initializer runs:
    # seconds on a loaded 2-core machine. The point is that none is left behind.
    _wait_for(lambda: not any(_alive(p) for p in workers), timeout=60)
    again = _start(tmp_path, "killed-driver")
    _, err = again.communicate(timeout=300)
    assert again.returncode == 0, err.decode()
    serial = _run(tmp_path, "serial", "--workers", "1")
    assert quality_by_cell(tmp_path / "out" / "killed-driver") == quality_by_cell(serial)


def test_plugins_registered_in_process_keep_the_run_in_this_process() -> None:
    local = ["metric 'centre-distance'"]
    assert resolve_executor(in_process=local).kind == "serial"
    with pytest.raises(ConfigError, match=r"metric 'centre-distance' registered in this "
                                          r"process only.*entry points.*--workers 1"):
        resolve_executor(workers=2, in_process=local)


def test_workers_default_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WSFM_BENCH_WORKERS", "2")
    assert resolve_executor().workers == 2
    monkeypatch.setenv("WSFM_BENCH_WORKERS", "two")
    with pytest.raises(ConfigError, match=r"\$WSFM_BENCH_WORKERS='two' must be a positive"):
        resolve_executor()
