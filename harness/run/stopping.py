"""How a run stops early, and what its manifest then says.

- SIGINT (Ctrl-C) and SIGTERM raise ``Interrupted`` in the driver while the run is under way
  (``signals_raise``), so the runner can mark the run "interrupted" before the process exits;
  the same command resumes it.
- A full disk (OSError ENOSPC, which harness.records.atomic names the file of) marks it
  "failed" with one line saying so and where; an atomic write leaves the old file or the new
  one, so nothing recorded is lost.
- Any other error marks it "failed" with the error's first line, and is raised as it was.
"""

from __future__ import annotations

import errno
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from harness.errors import Interrupted, RunFailed
from harness.records import store as records

SIGNALS = (signal.SIGINT, signal.SIGTERM)


def _raise(signum: int, frame: Any) -> None:
    raise Interrupted(signum)


@contextmanager
def signals_raise() -> Iterator[None]:
    """While inside, SIGINT and SIGTERM raise Interrupted (in the main thread only: signal
    handlers cannot be set elsewhere, and a run elsewhere keeps the handlers it has)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.getsignal(s) for s in SIGNALS}
    for s in SIGNALS:
        signal.signal(s, _raise)
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


@contextmanager
def signals_held() -> Iterator[None]:
    """While inside, SIGINT and SIGTERM are ignored: a second Ctrl-C must not cut short the
    manifest's last write."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.signal(s, signal.SIG_IGN) for s in SIGNALS}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def disk_full(exc: BaseException) -> bool:
    return isinstance(exc, OSError) and exc.errno == errno.ENOSPC


def mark_stopped(run_dir: Path, manifest: dict[str, Any], exc: BaseException) -> BaseException:
    """Mark the run's manifest for ``exc`` and return what to raise: an Interrupted or
    RunFailed saying, in one line, what happened and how to resume; else ``exc`` itself."""
    if isinstance(exc, KeyboardInterrupt):
        stop = exc if isinstance(exc, Interrupted) else Interrupted(signal.SIGINT)
        status, reason = "interrupted", f"interrupted by {stop.signal_name}"
    elif disk_full(exc):
        where = getattr(exc, "filename", None) or "the run folder or the cache"
        status, reason = "failed", f"the disk is full: no space left on device writing {where}"
    else:
        status = "failed"
        reason = f"{type(exc).__name__}: {exc}".strip().splitlines()[0][:500]
    manifest.update(status=status, error=reason, finished=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    try:
        with signals_held():
            records.write_manifest(run_dir, manifest)
        marked = f"{run_dir} is marked {status}"
    except Exception:  # noqa: BLE001 - never hide the original error
        marked = f"{run_dir} could not be marked {status} (its manifest still says running)"
    total = (manifest.get("cells") or {}).get("total")
    kept = f"{len(records.finished_cells(run_dir))}" + (f" of {total}" if total else "")
    tail = (f"{marked}, {kept} cells recorded and kept; run the same command again to resume "
            "it")
    if status == "interrupted":
        return Interrupted(stop.signum, f"{reason}: {tail}")
    if disk_full(exc):
        return RunFailed(f"{reason}; free some space (wsfm-bench cache clear --older-than DAYS "
                         f"frees cached models): {tail}")
    return exc
