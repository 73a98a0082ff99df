"""Synthetic cell records for tests that build runs by hand (no training): a record written in
the flat fields of results schema version 1, turned into this version's typed record by the
same migration a stored version-1 record goes through (harness.records.migrate)."""

from __future__ import annotations

import dataclasses
from typing import Any

from harness.records.migrate import record_1_to_2
from harness.records.record import CellRecord
from harness.registry import methods


def to_record(flat: dict[str, Any], **identity: Any) -> CellRecord:
    """The typed record of ``flat`` (version-1 field names: "family" gives the role; a
    registered method's title is its plugin's); keyword arguments override identity fields
    (role, title, ...)."""
    data = record_1_to_2({"schema_version": "1", "compile": False, "finalize": {}, **flat})
    if flat["method"] in methods:
        data["identity"]["title"] = methods.get(flat["method"]).title or flat["method"]
    data["identity"].update(identity)
    return CellRecord.from_json(data)


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
    return to_record({
        "cell_id": cell_id, "cell": {}, "task": "toy", "method": "toy", "family": "draft",
        "variant": "", "draft": None, "t0": None, "start": None, "init": None, "solver": None,
        "n_steps": 0, "k_steps": 0, "nfe_budget": 0, "nfe_expected": 0, "nfe_measured": 0,
        "nfe_ok": True, "seed": 0, "time_s": 0.0, "time_spread_s": 0.0, "first_call_s": 0.0,
        "draft_time_s": 0.0, "integrate_time_s": 0.0, "time_per_call_s": None,
        "timings": {"total": timing}, "deterministic": True, "nonfinite": 0, "n_samples": 1,
        "n_eval": 1, "device": "cpu", "threads": 1, "metrics": {}})
