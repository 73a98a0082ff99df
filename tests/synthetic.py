"""Synthetic cell records for tests that build runs by hand (no training): a record written in
the flat fields of results schema version 1, turned into this version's typed record by the
same migration a stored version-1 record goes through (harness.records.migrate)."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from harness.records.cell import Cell
from harness.records.migrate import record_1_to_2
from harness.records.record import CellRecord
from harness.records.store import write_cell
from harness.registry import methods


def run_cell(flat: dict[str, Any]) -> dict[str, Any]:
    """``flat`` as a run writes it: its cell's options name its variant (each configuration
    a cell of its own) and its cell_id is that cell's id (harness.records.membership)."""
    cell = dict(flat["cell"])
    cell["method_options"] = {**cell.get("method_options", {}), "variant": flat["variant"]}
    return {**flat, "cell": cell, "cell_id": Cell.from_dict(cell).cell_id}


def to_record(flat: dict[str, Any], **identity: Any) -> CellRecord:
    """The typed record of ``flat`` (version-1 field names: "family" gives the role; a
    registered method's title is its plugin's), with its cell as a run writes it (run_cell);
    keyword arguments override identity fields (role, title, ...)."""
    return _typed(run_cell(flat), **identity)


def _typed(flat: dict[str, Any], **identity: Any) -> CellRecord:
    data = record_1_to_2({"schema_version": "1", "compile": False, "finalize": {}, **flat})
    if flat["method"] in methods:
        data["identity"]["title"] = methods.get(flat["method"]).title or flat["method"]
    data["identity"].update(identity)
    return CellRecord.from_json(data)


def suite_of(records: Iterable[CellRecord], **keys: Any) -> dict[str, Any]:
    """The manifest's suite of a run of ``records``: their tasks, methods (one per options),
    budgets and seeds, so each record is one of its cells; ``keys`` add to it (name, ...)."""
    cells = [r.cell for r in records]

    def distinct(items: Iterable[Any]) -> list[Any]:
        return [json.loads(t) for t in dict.fromkeys(json.dumps(i, sort_keys=True)
                                                      for i in items)]

    return {"name": "synthetic", **keys,
            "tasks": distinct([c["task"], c["task_options"]] for c in cells),
            "methods": distinct({"name": c["method"], "options": c["method_options"]}
                                for c in cells),
            "budgets": sorted({c["n_steps"] for c in cells if c["n_steps"]}) or [1],
            "seeds": sorted({c["seed"] for c in cells})}


def write_run(run_dir: Path, manifest: dict[str, Any], flats: Iterable[dict[str, Any]],
              samples: Any = None) -> list[CellRecord]:
    """A run folder of the records of ``flats`` and ``manifest``, whose suite is theirs
    (suite_of); ``samples``: an array for every cell, or a function of the record giving one."""
    records = [to_record(flat) for flat in flats]
    suite = suite_of(records, name=(manifest.get("suite") or {}).get("name", "synthetic"))
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "manifest.json").write_text(json.dumps({**manifest, "suite": suite}))
    for record in records:
        array = samples(record) if callable(samples) else samples
        write_cell(run_dir, record, None if array is None else np.asarray(array))
    return records


def fields_of(record: CellRecord) -> dict[str, Any]:
    """Every field of ``record``'s sections in one dict, for tests that check many of them
    (bound_ok and budget_status: the bound's ``ok`` and the budget's ``status``)."""
    out: dict[str, Any] = {"cell": record.cell}
    for part in (record.bound, record.budget, record.identity, record.plan, record.sampling,
                 record.times, record.cost):
        if part is not None:
            out.update(dataclasses.asdict(part))
    out["metrics"] = {name: dataclasses.asdict(m) for name, m in record.metrics.items()}
    out["bound_ok"] = None if record.bound is None else record.bound.ok
    out["budget_status"] = None if record.budget is None else record.budget.status
    return out


def placeholder(cell_id: str) -> CellRecord:
    """A record that stands for a finished cell where only its id matters (scheduling)."""
    timing = {"median": 0.0, "spread": 0.0, "first": 0.0, "times": [0.0]}
    return _typed({
        "cell_id": cell_id, "cell": {}, "task": "toy", "method": "toy", "family": "draft",
        "variant": "", "draft": None, "t0": None, "start": None, "init": None, "solver": None,
        "n_steps": 0, "k_steps": 0, "nfe_budget": 0, "nfe_expected": 0, "nfe_measured": 0,
        "nfe_ok": True, "seed": 0, "time_s": 0.0, "time_spread_s": 0.0, "first_call_s": 0.0,
        "draft_time_s": 0.0, "integrate_time_s": 0.0, "time_per_call_s": None,
        "timings": {"total": timing}, "deterministic": True, "nonfinite": 0, "n_samples": 1,
        "n_eval": 1, "device": "cpu", "threads": 1, "metrics": {}})
