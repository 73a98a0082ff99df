"""Which cell files belong to a run. A cell file must be the record of the cell its name says
(its cell_id, which is the id of the cell the record ran), and that cell must be one the run's
suite expands to: a file copied from another run, or renamed, would otherwise join the run
unnoticed (summary listing a task the suite never ran, compare passing on foreign numbers).

The suite is the manifest's (harness.run.suite.Suite.as_dict(), stored as JSON); it is read
here as data, so the records need nothing of the runner.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from harness.errors import RunDirError
from harness.records.cell import Cell
from harness.records.record import CellRecord

FOREIGN = "delete it, or move it back to the run it came from"


def check_cell(path: Path, record: CellRecord, suite: Mapping[str, Any] | None,
               added_seeds: Mapping[str, Any] | None = None) -> None:
    """Refuse (RunDirError) a cell file that is not its own cell's record, or whose cell the
    run's ``suite`` does not have (None: no manifest to check against); ``added_seeds``: the
    manifest's evidence seeds per task, where --until-decided added evaluation seeds."""
    if record.cell_id != path.stem:
        raise RunDirError(f"cell file {path} holds the record of cell {record.cell_id}, not "
                          f"{path.stem}: it was renamed or copied from another run; {FOREIGN}")
    try:
        own = Cell.from_dict(record.cell).cell_id
    except (TypeError, KeyError):  # a record of another schema's cell
        own = "(not a cell of this wsfm-bench)"
    if own != record.cell_id:
        raise RunDirError(f"cell file {path}: its cell_id {record.cell_id} is not the id of the "
                          f"cell it ran ({own}): the record was edited or belongs elsewhere; "
                          f"{FOREIGN}, or delete it and resume the run to redo that cell")
    why = None if suite is None else outside_suite(record.cell, suite, added_seeds)
    if why:
        raise RunDirError(f"cell file {path} is not a cell of this run's suite ({why}): it was "
                          f"copied from another run; {FOREIGN}")


def outside_suite(cell: Mapping[str, Any], suite: Mapping[str, Any],
                  added_seeds: Mapping[str, Any] | None = None) -> str | None:
    """Why ``cell`` is not one of ``suite``'s cells (its task and options, method and options,
    seed, N), or None when it is. ``added_seeds`` ({task: {"evaluation": [...]}}, the
    manifest's evidence) holds the seeds a group-sequential run added to the suite's."""
    task, options = cell.get("task"), cell.get("task_options")
    tasks = [tuple(t) for t in suite.get("tasks", [])]
    if (task, options) not in tasks:
        names = sorted({name for name, _ in tasks})
        return (f"task {task!r} with options {options} is not one of its tasks {names}"
                if task not in names else
                f"task {task!r} is run with options {options}, which the suite does not give it")
    method = cell.get("method")
    specs = [m for m in suite.get("methods", []) if m.get("name") == method
             and m.get("options") == cell.get("method_options")
             and (m.get("tasks") is None or task in m["tasks"])]
    if not specs:
        return (f"method {method!r} with options {cell.get('method_options')} is not one of "
                f"its methods on task {task!r}")
    settings = (suite.get("task_settings") or {}).get(task, {})
    seeds = [*settings.get("seeds", suite.get("seeds", [])),
             *settings.get("selection_seeds", suite.get("selection_seeds", [])),
             *((added_seeds or {}).get(task) or {}).get("evaluation", [])]
    if cell.get("seed") not in seeds:
        return f"seed {cell.get('seed')} is not one of its seeds for {task!r}, {sorted(seeds)}"
    # The budgets a method runs: its own, else the task's, else the suite's (as expanded).
    budgets = sorted({b for s in specs for b in (s.get("budgets") or settings.get("budgets")
                                                 or suite.get("budgets") or [])})
    n = cell.get("n_steps")
    if n and n not in budgets:  # 0: a method without a budget, or a wall-clock cell
        return f"N = {n} is not one of its budgets for {method!r}, {budgets}"
    return None
