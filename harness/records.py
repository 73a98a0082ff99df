"""Run directories: the manifest, one record file per finished cell, samples, tidy rows.

    results/<run-id>/
        manifest.json        config + hash, seeds, versions, commit, device, start/end
        cells/<cell-id>.json one finished cell: its inputs, timing, NFE, bound check, metrics
        samples/<cell-id>.npy a fixed number of that cell's samples (for plots)
        samples/reference-<task>.npy the same number of the task's held-out points
        records.csv          tidy rows, one per cell and metric (rebuilt from cells/)
        report/              report.md, report.html, figures/

Every file is written atomically. A cell's record is written last, after its samples, so a
cell counts as finished exactly when its record exists: a killed run resumes from cells/.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from harness import atomic
from harness.errors import RunDirError

MANIFEST = "manifest.json"

# Columns every tidy frame has, in order (the cell-level ones repeat on each metric row).
COLUMNS = [
    "task", "method", "family", "variant", "draft", "t0", "start", "init", "solver",
    "n_steps", "k_steps", "nfe_budget", "nfe_expected", "nfe_measured", "nfe_ok", "seed",
    "metric", "value", "higher_is_better", "time_s", "time_spread_s", "draft_time_s",
    "integrate_time_s", "time_per_call_s", "ref_time_s", "ref_nfe", "nfe_speedup",
    "nfe_speedup_theory", "ideal_speedup", "wall_speedup", "wall_bound", "timing_noise",
    "bound_ok", "n_samples", "n_eval", "device", "cell_id",
]


def cell_path(run_dir: Path, cell_id: str) -> Path:
    return Path(run_dir) / "cells" / f"{cell_id}.json"


def samples_path(run_dir: Path, cell_id: str) -> Path:
    return Path(run_dir) / "samples" / f"{cell_id}.npy"


def reference_path(run_dir: Path, task: str) -> Path:
    return Path(run_dir) / "samples" / f"reference-{task}.npy"


def _write_array(path: Path, array: np.ndarray) -> None:
    buf = io.BytesIO()
    np.save(buf, array.astype(np.float32))
    atomic.write_bytes(path, buf.getvalue())


def write_reference(run_dir: Path, task: str, data: np.ndarray) -> None:
    """A fixed subset of a task's held-out split, stored so reports need no data loading."""
    _write_array(reference_path(run_dir, task), data)


def load_reference(run_dir: str | Path, task: str) -> np.ndarray:
    return np.load(reference_path(Path(run_dir), task))


def finished_cells(run_dir: Path) -> set[str]:
    folder = Path(run_dir) / "cells"
    return {p.stem for p in folder.glob("*.json")} if folder.is_dir() else set()


def write_cell(run_dir: Path, record: dict[str, Any], samples: np.ndarray | None) -> None:
    cell_id = record["cell_id"]
    if samples is not None:
        _write_array(samples_path(run_dir, cell_id), samples)
    atomic.write_json(cell_path(run_dir, cell_id), record)  # last: marks the cell finished


def read_manifest(run_dir: str | Path) -> dict[str, Any]:
    path = Path(run_dir) / MANIFEST
    if not Path(run_dir).is_dir():
        raise RunDirError(f"{run_dir} is not a directory; give a run folder under results/")
    if not path.exists():
        raise RunDirError(f"{run_dir} is not a wsfm-bench run: {MANIFEST} is missing")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise RunDirError(f"{path} is corrupt ({exc}); rerun the suite to rebuild it") from exc


def read_cells(run_dir: str | Path) -> list[dict[str, Any]]:
    records = []
    for path in sorted((Path(run_dir) / "cells").glob("*.json")):
        try:
            records.append(json.loads(path.read_text()))
        except json.JSONDecodeError as exc:
            raise RunDirError(
                f"cell record {path} is corrupt ({exc}); delete it to rerun that cell"
            ) from exc
    return records


def tidy_rows(record: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per metric of a cell record."""
    base = {k: record.get(k) for k in COLUMNS if k not in ("metric", "value", "higher_is_better")}
    return [
        {**base, "metric": name, "value": m["value"], "higher_is_better": m["higher_is_better"]}
        for name, m in record["metrics"].items()
    ]


def load_run(run_dir: str | Path) -> pd.DataFrame:
    """A run as a tidy DataFrame: one row per (cell, metric), with the COLUMNS above."""
    read_manifest(run_dir)
    rows = [row for record in read_cells(run_dir) for row in tidy_rows(record)]
    return pd.DataFrame(rows, columns=COLUMNS)


def load_samples(run_dir: str | Path, cell_id: str) -> np.ndarray:
    return np.load(samples_path(Path(run_dir), cell_id))


def write_records_csv(run_dir: str | Path) -> Path:
    df = load_run(run_dir)
    return atomic.write_text(Path(run_dir) / "records.csv", df.to_csv(index=False))
