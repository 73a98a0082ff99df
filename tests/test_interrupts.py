"""Runs that stop early (issue 20, items 5 and 7): SIGTERM and Ctrl-C mark the run
"interrupted" with one line and exit 128 + the signal, a full disk marks it "failed" with one
line saying so and where; nothing recorded is lost, and the same command resumes the run."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.cli import main
from harness.records import atomic

SUITE = """
name = "stops"
seeds = [0]
budgets = [2, 3, 4, 5, 6, 8]
n_samples = 300
n_eval = 300
repeats = 3
threads = 1
[training]
steps = 40
[[tasks]]
name = "two-moons"
n_train = 500
n_test = 300
[[methods]]
name = "full-fm"
solver = ["euler", "midpoint"]
"""
TOTAL = 12


def _command(tmp_path: Path, *extra: str) -> list[str]:
    suite = tmp_path / "stops.toml"
    suite.write_text(SUITE)
    return ["run", str(suite), "--out", str(tmp_path / "results"), "--cache",
            str(tmp_path / "cache"), "--run-id", "r", "--quiet", "--no-report", *extra]


def _start(tmp_path: Path, *extra: str, cells: int = 2) -> subprocess.Popen:
    """The run in a process of its own group, once it has recorded ``cells`` cells."""
    proc = subprocess.Popen([sys.executable, "-m", "harness.cli", *_command(tmp_path, *extra)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    folder = tmp_path / "results" / "r" / "cells"
    deadline = time.time() + 180
    while len(list(folder.glob("*.json"))) < cells and proc.poll() is None:
        assert time.time() < deadline, "the run recorded no cells in time"
        time.sleep(0.05)
    assert proc.poll() is None, proc.stderr.read()
    return proc


def _manifest(tmp_path: Path) -> dict:
    return json.loads((tmp_path / "results" / "r" / "manifest.json").read_text())


def _cells(tmp_path: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in (tmp_path / "results" / "r" / "cells").glob("*.json")}


def _resumes(tmp_path: Path, kept: dict[str, bytes], capsys: pytest.CaptureFixture[str]) -> None:
    """The same command again finishes the run, reusing (not rewriting) what was kept."""
    capsys.readouterr()
    assert main(_command(tmp_path)) == 0
    assert f"resuming: {len(kept)} already recorded" in capsys.readouterr().out
    manifest = _manifest(tmp_path)
    assert manifest["status"] == "complete" and "error" not in manifest
    assert manifest["cells"] == {"total": TOTAL, "reused": len(kept), "run": TOTAL - len(kept)}
    now = _cells(tmp_path)
    assert len(now) == TOTAL and all(now[name] == data for name, data in kept.items())


def test_sigterm_marks_the_run_interrupted_and_the_same_command_resumes_it(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    proc = _start(tmp_path)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, err
    kept = _cells(tmp_path)
    assert 2 <= len(kept) < TOTAL
    assert err.strip().splitlines() == [
        f"wsfm-bench: interrupted by SIGTERM: {tmp_path / 'results' / 'r'} is marked "
        f"interrupted, {len(kept)} of {TOTAL} cells recorded and kept; run the same command "
        "again to resume it"]
    manifest = _manifest(tmp_path)
    assert manifest["status"] == "interrupted" and manifest["error"] == "interrupted by SIGTERM"
    _resumes(tmp_path, kept, capsys)


def test_ctrl_c_stops_the_workers_too_with_one_line(tmp_path: Path) -> None:
    # Ctrl-C in a terminal signals the whole process group: driver and worker processes.
    proc = _start(tmp_path, "--workers", "2", cells=1)
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith("wsfm-bench: interrupted by SIGINT (Ctrl-C): ")
    assert lines[0].endswith("cells recorded and kept; run the same command again to resume it")
    assert _manifest(tmp_path)["status"] == "interrupted"
    deadline = time.time() + 30  # no worker is left running
    while True:
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            break
        assert time.time() < deadline, "worker processes outlived the interrupted run"
        time.sleep(0.1)


def _disk_fills_after(monkeypatch: pytest.MonkeyPatch, cells: int, everything: bool) -> None:
    """os.fsync fails with ENOSPC (as a full disk does, naming no file) once ``cells`` cell
    records are written: for samples and records, or (``everything``) for any file."""
    real = os.fsync
    written = []

    def fsync(fd: int) -> None:
        path = os.readlink(f"/proc/self/fd/{fd}")
        if len(written) >= cells and (everything or "/cells/" in path or "/samples/" in path):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real(fd)
        if "/cells/" in path:
            written.append(path)

    monkeypatch.setattr(atomic.os, "fsync", fsync)


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc (Linux)")
def test_a_full_disk_fails_the_run_in_one_line_and_keeps_its_records(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    _disk_fills_after(monkeypatch, 3, everything=False)
    assert main(_command(tmp_path)) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    run = tmp_path / "results" / "r"
    head = "wsfm-bench: error: the disk is full: no space left on device writing "
    assert err.startswith(head), err
    where = Path(err[len(head):].split("; ")[0])  # the file it could not write: not there
    assert where.parent.parent == run and not where.exists()
    assert err.rstrip().endswith(f"{run} is marked failed, 3 of {TOTAL} cells recorded and "
                                 "kept; run the same command again to resume it")
    manifest = _manifest(tmp_path)
    assert manifest["status"] == "failed"
    assert manifest["error"].startswith("the disk is full: no space left on device writing ")
    kept = _cells(tmp_path)
    assert len(kept) == 3 and not list(run.rglob("*.tmp"))  # no half-written file
    monkeypatch.undo()
    _resumes(tmp_path, kept, capsys)


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc (Linux)")
def test_a_disk_too_full_for_the_manifest_says_so(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    _disk_fills_after(monkeypatch, 2, everything=True)
    assert main(_command(tmp_path)) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert "could not be marked failed (its manifest still says running), 2 of" in err
    assert _manifest(tmp_path)["status"] == "running" and len(_cells(tmp_path)) == 2
