"""Run directories: the manifest, one record file per finished cell, samples, tidy rows.

    results/<run-id>/
        manifest.json        config + hash, seeds, versions, commit, device, start/end
        cells/<cell-id>.json one finished cell: its inputs, timing, NFE, bound check, metrics
                             (wall-clock-budget cells too: read_cells(time_budgets=True))
        samples/<cell-id>.npy a fixed number of that cell's samples (for plots)
        samples/reference-<task>.npy the same number of the task's held-out points
        records.csv          tidy rows, one per cell and metric (rebuilt from cells/)
        report/              report.md, report.html, figures/

Every file is written atomically. A cell's record is written last, after its samples, so a
cell counts as finished exactly when its record exists: a killed run resumes from cells/.

Records and the manifest follow the results schema (harness/records/schemas/, see
harness.records.schema): both carry ``schema_version``, are validated before they are
written, and again when read.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from harness.errors import RunDirError
from harness.records import atomic, record
from harness.records.membership import check_cell
from harness.records.record import CellRecord
from harness.records.schema import SCHEMA_VERSION, validate_manifest, validate_record

MANIFEST = "manifest.json"
ADVICE_FILE = "advisor.json"  # pre-run advice of the methods (harness.run.advice)
# budget_status of a wall-clock cell (harness.run.budgets)
BUDGET_OK = "ok"
BUDGET_TOO_SMALL = "budget too small"

# Columns every tidy frame has (harness.records.record: the cell-level ones repeat on each
# metric row).
COLUMNS = record.COLUMNS


def cell_path(run_dir: Path, cell_id: str) -> Path:
    return Path(run_dir) / "cells" / f"{cell_id}.json"


def samples_path(run_dir: Path, cell_id: str) -> Path:
    return Path(run_dir) / "samples" / f"{cell_id}.npy"


def reference_path(run_dir: Path, task: str) -> Path:
    return Path(run_dir) / "samples" / f"reference-{task}.npy"


def _write_array(path: Path, array: np.ndarray) -> None:
    buf = io.BytesIO()
    # Tokens (text) stay integers; everything else is stored as float32.
    np.save(buf, array.astype(np.int16 if array.dtype.kind in "iu" else np.float32))
    atomic.write_bytes(path, buf.getvalue())


def write_reference(run_dir: Path, task: str, data: np.ndarray) -> None:
    """A fixed subset of a task's held-out split, stored so reports need no data loading."""
    _write_array(reference_path(run_dir, task), data)


def load_reference(run_dir: str | Path, task: str) -> np.ndarray:
    return np.load(reference_path(Path(run_dir), task))


def finished_cells(run_dir: Path) -> set[str]:
    folder = Path(run_dir) / "cells"
    return {p.stem for p in folder.glob("*.json")} if folder.is_dir() else set()


def _as_written(obj: dict[str, Any]) -> Any:
    """``obj`` as it reads back from the JSON atomic.write_json makes of it (tuples become
    lists, unknown objects strings): what is validated is what lands on disk."""
    return json.loads(json.dumps(obj, default=str))


def write_cell(run_dir: Path, cell: CellRecord, samples: np.ndarray | None) -> None:
    """Validate the record, then write the samples and the record. An invalid record raises
    SchemaError and nothing is written."""
    data = cell.to_json()
    where = (cell_path(run_dir, cell.cell_id) if cell.cell_id
             else Path(run_dir) / "cells" / "(record without a cell_id)")
    validate_record(_as_written(data), where, writing=True)
    if samples is not None:
        _write_array(samples_path(run_dir, cell.cell_id), samples)
    atomic.write_json(cell_path(run_dir, cell.cell_id), data)  # last: marks the cell finished


def write_manifest(run_dir: str | Path, manifest: dict[str, Any]) -> Path:
    """Validate the run manifest, then write it atomically; an invalid one raises SchemaError
    and leaves the file as it was."""
    path = Path(run_dir) / MANIFEST
    validate_manifest(_as_written(manifest), path, writing=True)
    return atomic.write_json(path, manifest)


def read_manifest(run_dir: str | Path) -> dict[str, Any]:
    path = Path(run_dir) / MANIFEST
    if not Path(run_dir).is_dir():
        raise RunDirError(f"{run_dir} is not a directory; give a run folder under results/")
    if not path.exists():
        raise RunDirError(f"{run_dir} is not a wsfm-bench run: {MANIFEST} is missing")
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise RunDirError(f"{path} is corrupt ({exc}); rerun the suite to rebuild it") from exc
    return validate_manifest(manifest, path, hint="rerun the suite into a new run folder")


def read_cells(run_dir: str | Path, time_budgets: bool | None = False) -> list[CellRecord]:
    """The run's cell records. By default the NFE-budget cells only (what every table, figure
    and comparison is built from); ``time_budgets=True`` gives the wall-clock-budget cells
    (harness.run.budgets, the report's "Equal wall-clock" section), None all of them. Records
    of an older schema version are migrated (harness.records.migrate). A cell file that is not
    its own cell's record, or not a cell of the run's suite, is refused
    (harness.records.membership): cells are the source of truth of everything built on them."""
    manifest = read_manifest(run_dir) if (Path(run_dir) / MANIFEST).exists() else None
    suite = None if manifest is None else manifest["suite"]
    added = None if manifest is None else (manifest.get("evidence") or {}).get("seeds")
    records = []
    for path in sorted((Path(run_dir) / "cells").glob("*.json")):
        cell = CellRecord.from_json(_validated(path))
        check_cell(path, cell, suite, added)
        if time_budgets is None or (cell.budget is not None) == time_budgets:
            records.append(cell)
    return records


# Cell files already validated in this process, by their bytes' digest, as JSON text: a
# report reads a run's cells several times, and schema validation is most of that cost. Each
# read parses the text anew (a fresh copy that callers may change, 10x cheaper than deepcopy).
_VALIDATED: dict[str, str] = {}


def _validated(path: Path) -> dict[str, Any]:
    """The cell file's content, schema-validated (and migrated) once per content."""
    raw = path.read_bytes()
    digest = hashlib.sha256(raw).hexdigest()
    if digest in _VALIDATED:
        return json.loads(_VALIDATED[digest])
    try:
        data = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RunDirError(
            f"cell record {path} is corrupt ({exc}); delete it to rerun that cell"
        ) from exc
    data = validate_record(data, path, hint="delete it to rerun that cell")
    _VALIDATED[digest] = json.dumps(data)
    return json.loads(_VALIDATED[digest])  # as every later read gives it


def quality_by_cell(run_dir: str | Path) -> dict[str, tuple[dict[str, float], int]]:
    """{cell_id: ({metric: value}, measured NFE)} of every NFE-budget cell: what must come out
    the same whichever executor ran the cells (timings aside)."""
    return {r.cell_id: (r.quality(), r.sampling.nfe_measured) for r in read_cells(run_dir)}


def load_run(run_dir: str | Path) -> pd.DataFrame:
    """A run as a tidy DataFrame: one row per (cell, metric), with the COLUMNS above."""
    read_manifest(run_dir)
    rows = [row for cell in read_cells(run_dir) for row in cell.tidy_rows()]
    return pd.DataFrame(rows, columns=COLUMNS)


def load_samples(run_dir: str | Path, cell_id: str) -> np.ndarray:
    return np.load(samples_path(Path(run_dir), cell_id))


def _array_problem(path: Path) -> str | None:
    """What is wrong with the .npy file ``path`` (None: its header parses and its size is what
    the header says), read from its header alone."""
    readers = {(1, 0): np.lib.format.read_array_header_1_0,
               (2, 0): np.lib.format.read_array_header_2_0}
    try:
        with open(path, "rb") as fh:
            version = np.lib.format.read_magic(fh)
            if version not in readers:
                return f"unknown .npy version {version}"
            shape, _, dtype = readers[version](fh)
            want = fh.tell() + int(np.prod(shape)) * dtype.itemsize
    except (OSError, ValueError, EOFError) as exc:
        return str(exc) or type(exc).__name__
    if dtype.hasobject:
        return "it holds Python objects, not numbers"
    size = path.stat().st_size
    return None if size == want else f"{size} bytes where its header says {want}"


def corrupt_samples(run_dir: str | Path) -> list[str]:
    """One line per sample file of the run that cannot be read, saying how to fix it."""
    out = []
    for path in sorted((Path(run_dir) / "samples").glob("*.npy")):
        problem = _array_problem(path)
        if problem is None:
            continue
        if path.stem.startswith("reference-"):
            fix = "delete it and rerun the run's command: the run writes it again"
        else:
            fix = (f"delete it and cells/{path.stem}.json, then rerun the run's command: it "
                   "redoes that cell")
        out.append(f"sample file samples/{path.name} is corrupt ({problem}): {fix}")
    return out


def write_records_csv(run_dir: str | Path) -> Path:
    """run_dir/records.csv, rebuilt from the cells (sync_records_csv)."""
    sync_records_csv(run_dir)
    return Path(run_dir) / "records.csv"


def sync_records_csv(run_dir: str | Path) -> bool:
    """Rewrite records.csv from the cells when it is missing or differs from them (a hand
    edit, a run stopped before writing it): the cells are the source of truth, records.csv a
    copy for readers. A run of an older schema version is only read (through the migration),
    never rewritten. Returns whether it was rewritten."""
    text = load_run(run_dir).to_csv(index=False)
    if json.loads((Path(run_dir) / MANIFEST).read_text()).get("schema_version") != \
            SCHEMA_VERSION:
        return False
    path = Path(run_dir) / "records.csv"
    try:
        if path.read_text(encoding="utf-8") == text:
            return False
    except (OSError, UnicodeDecodeError):
        pass
    atomic.write_text(path, text)
    return True


def read_advice(run_dir: str | Path) -> dict[str, dict[str, dict[str, Any]]]:
    """{task: {draft: advice}} from run_dir/advisor.json; {} when the run has none."""
    path = Path(run_dir) / ADVICE_FILE
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    tasks = data.get("tasks") if isinstance(data, dict) else None
    return tasks if isinstance(tasks, dict) else {}


def advised_t0(advice: dict[str, Any] | None) -> float | None:
    """The advised t0 of one task/draft entry (None: none advised, or no entry)."""
    t0 = (advice or {}).get("t0")
    return float(t0) if isinstance(t0, int | float) and math.isfinite(t0) else None


def refresh_records_csv(run_dir: str | Path) -> str | None:
    """sync_records_csv for a command that shows a run: the line to print when records.csv
    was rebuilt, or differs and cannot be (a read-only folder; the cells are read instead);
    None when it was up to date."""
    path = Path(run_dir) / "records.csv"
    try:
        if sync_records_csv(run_dir):
            return f"wsfm-bench: {path} was missing or differed from the run's cells: rebuilt"
    except OSError as exc:
        return (f"wsfm-bench: warning: {path} differs from the run's cells and cannot be "
                f"rewritten ({exc.strerror or exc}); the cells were read instead")
    return None
