"""Where a run stands: complete, running, interrupted or failed, and how many of its cells are
recorded. Everything that shows a run (report, summary, figures, compare) says so when it is
not complete, so a partial run is never read as a whole one."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness.errors import RunDirError
from harness.records.lock import holder
from harness.records.store import finished_cells


@dataclass(frozen=True)
class RunStatus:
    """A run's manifest status, its recorded cells (every cell file) and its total."""

    run_dir: str
    status: str
    recorded: int
    total: int | None
    error: str | None = None
    running: str | None = None  # the process holding the run's lock, if any

    @classmethod
    def of(cls, run_dir: str | Path, manifest: Mapping[str, Any]) -> RunStatus:
        total = (manifest.get("cells") or {}).get("total")
        return cls(str(run_dir), str(manifest.get("status")), len(finished_cells(Path(run_dir))),
                   total if isinstance(total, int) else None, manifest.get("error"),
                   holder(run_dir))

    @property
    def complete(self) -> bool:
        return self.status == "complete"

    @property
    def counts(self) -> str:
        return (f"{self.recorded} of {self.total} cells recorded" if self.total is not None
                else f"{self.recorded} cells recorded")

    @property
    def why(self) -> str:
        """Why the run is not complete, in words."""
        if self.status == "failed":
            return f"it failed: {self.error or 'no reason recorded'}"
        if self.running:
            return f"it is still being run by {self.running}"
        return "it was interrupted (no process is running it)"

    def line(self) -> str:
        """One line for an unfinished run ('' when complete)."""
        if self.complete:
            return ""
        return (f"Unfinished run {self.run_dir}: {self.why}; {self.counts}. What follows "
                "covers only the recorded cells; the same command resumes the run.")

    def to_json(self) -> dict[str, Any]:
        return {"status": self.status, "complete": self.complete,
                "cells_recorded": self.recorded, "cells_total": self.total,
                "error": self.error, "running": self.running}

    def nothing_recorded(self, what: str) -> RunDirError:
        """The error for a run without a finished cell: nothing to make ``what`` of."""
        why = f": {self.error}" if self.error else ""
        return RunDirError(f"{self.run_dir} has no finished cells (status {self.status}{why}): "
                           f"nothing to {what}; run (or resume) its suite first")
