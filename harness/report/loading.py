"""A run as the report, the figures and the summary read it: its manifest, tidy rows, one row
per cell and status, refused when it has no finished cell, records.csv rebuilt from the cells
first when it differs (cells are the source of truth)."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from harness.analysis.stats import cell_frame
from harness.records.status import RunStatus
from harness.records.store import load_run, read_manifest, refresh_records_csv


@dataclass
class LoadedRun:
    """A stored run, read for a report."""

    run_dir: Path
    manifest: dict[str, Any]
    df: pd.DataFrame  # one row per cell and metric
    cells: pd.DataFrame  # one row per cell
    status: RunStatus


def load_for_report(run_dir: str | Path, doing: str) -> LoadedRun:
    """The run at ``run_dir``; RunDirError naming what it cannot ``doing`` when it has no
    finished cell."""
    run_dir = Path(run_dir)
    manifest = read_manifest(run_dir)
    df, cells = load_run(run_dir), cell_frame(run_dir)
    status = RunStatus.of(run_dir, manifest)
    if cells.empty:
        raise status.nothing_recorded(doing)
    note = refresh_records_csv(run_dir)
    if note:
        print(note, file=sys.stderr)
    return LoadedRun(run_dir, manifest, df, cells, status)
