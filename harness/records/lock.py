"""One process runs a run folder at a time: an exclusive lock on run_dir/.lock.

The lock is an fcntl lock, which the kernel drops when its process dies, so a lock left by a
killed run is taken over by the next one; the file itself only says who holds it (process id,
host, start time) for the message a second run gets."""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from pathlib import Path
from typing import IO, Any

from harness.errors import RunDirError

LOCK_FILE = ".lock"


class RunLock:
    """``with RunLock(run_dir):`` holds the run folder, or raises RunDirError naming the
    process that does."""

    def __init__(self, run_dir: str | Path) -> None:
        self.path = Path(run_dir) / LOCK_FILE
        self._fh: IO[str] | None = None

    def __enter__(self) -> RunLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fh = open(self.path, "a+")
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            who = _describe(fh.read())
            fh.close()
            raise RunDirError(
                f"{self.path.parent} is being run by {who}; wait for it to finish, or give "
                "another --run-id") from None
        fh.seek(0)
        fh.truncate()
        fh.write(json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                             "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}))
        fh.flush()
        self._fh = fh
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._fh is not None:
            fcntl.flock(self._fh, fcntl.LOCK_UN)
            self._fh.close()
            self._fh = None


def _describe(text: str) -> str:
    try:
        info = json.loads(text)
        return f"process {info['pid']} on {info['host']} (since {info['started']})"
    except (ValueError, KeyError, TypeError):
        return "another process"


def holder(run_dir: str | Path) -> str | None:
    """Who is running ``run_dir`` now (a live process holds its lock), else None."""
    path = Path(run_dir) / LOCK_FILE
    if not path.exists():
        return None
    with open(path) as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _describe(fh.read())
        fcntl.flock(fh, fcntl.LOCK_UN)
    return None
