"""Power spent where it is needed: a group-sequential design (``wsfm-bench run
--until-decided``, ``[evidence] max_seeds``).

After the suite's cells, the headline is computed; a task with undecided rows (inconclusive,
with a number of evaluation seeds that would decide them) gets a batch of new evaluation seeds
(``seed_batch``, by default as many as it had) for exactly what those rows are judged on: each
row's chosen setting, its reference configurations, its draft alone and the data floor, cells
copied from the recorded ones with the new seed. Then the headline is computed again, until
every row is decided or the task has ``max_seeds`` evaluation seeds. Settings stay chosen on
the selection seeds; each look is tested at its share of alpha (harness.analysis.verdicts),
so the error rate holds.

The manifest records it, so an interrupted run resumes it: ``evidence.seeds`` holds every
task's evaluation seeds (added ones last), ``evidence.looks`` the count at each look, and
``evidence.extended`` the cells (without their seed) that the added seeds run.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness.analysis.evidence import headline
from harness.errors import ConfigError
from harness.hashing import stable_hash
from harness.records import store as records
from harness.records.cell import Cell
from harness.records.record import CellRecord
from harness.run.suite import Suite

RunCells = Callable[[list[Cell]], None]


def _template(cell: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in cell.items() if k != "seed"}


def _wanted(rows: list[dict[str, Any]], cells: list[CellRecord]) -> dict[str, list[dict]]:
    """Per task, the cells (without their seed) that its undecided rows are judged on."""
    out: dict[str, dict[str, dict]] = {}
    for row in rows:
        if row["verdict"] != "inconclusive" or row["seeds_needed"] is None:
            continue
        configs = [(row["method"], row["variant"], row["n_budget"])]
        configs += [(ref["method"], ref["variant"], ref["n_budget"])
                    for ref in (row["reference"], row["reference_wall"]) if ref]
        for cell in cells:
            ident = cell.identity
            floor = ident.role in ("floor", "data") and ident.task == row["task"] and (
                ident.role == "data" or ident.draft == row["draft"])
            if ident.task == row["task"] and (floor or (
                    ident.method, ident.variant, cell.plan.n_steps) in configs):
                template = _template(cell.cell)
                out.setdefault(row["task"], {})[stable_hash(template)] = template
    return {task: list(found.values()) for task, found in out.items()}


def _new_seeds(manifest: dict[str, Any], count: int) -> list[int]:
    """``count`` seeds no task of the run has used, the smallest above those it has."""
    used = {s for entry in manifest["evidence"]["seeds"].values()
            for role in ("selection", "evaluation") for s in entry.get(role, [])}
    start = max(used, default=-1) + 1
    return list(range(start, start + count))


def pending_cells(manifest: dict[str, Any]) -> list[Cell]:
    """The cells the manifest's added evaluation seeds call for (the finished ones included:
    the runner skips what is recorded)."""
    evidence = manifest.get("evidence") or {}
    out = []
    for task, templates in (evidence.get("extended") or {}).items():
        looks = evidence["looks"][task]
        added = evidence["seeds"][task]["evaluation"][looks[0]:]
        out += [Cell.from_dict({**t, "seed": s}) for t in templates for s in added]
    return out


def until_decided(suite: Suite, run_dir: Path, manifest: dict[str, Any],
                  run: RunCells) -> int:
    """Add evaluation seeds to undecided rows, look by look, until each is decided or its task
    has ``max_seeds``; ``run`` runs cells (the runner's executor) and ``manifest`` is updated
    and written before each batch runs. Returns how many looks added seeds."""
    rules = suite.rules()
    if rules.max_seeds is None:
        raise ConfigError("--until-decided needs [evidence] max_seeds in the suite: the most "
                          "evaluation seeds a task may get (e.g. max_seeds = 20)")
    evidence = manifest["evidence"]
    added = 0
    while True:
        rows, _ = headline(records.load_run(run_dir), manifest)
        wanted = _wanted(rows, records.read_cells(run_dir))
        batch: dict[str, list[int]] = {}
        for task, templates in sorted(wanted.items()):
            seeds = evidence["seeds"][task]["evaluation"]
            looks = evidence.setdefault("looks", {}).setdefault(task, [len(seeds)])
            size = min(rules.seed_batch or looks[0], rules.max_seeds - len(seeds))
            if size <= 0:
                continue
            batch[task] = new = _new_seeds(manifest, size)
            seeds += new
            looks.append(len(seeds))
            known = evidence.setdefault("extended", {}).setdefault(task, [])
            known += [t for t in templates if t not in known]
        if not batch:
            return added
        records.write_manifest(run_dir, manifest)
        print("until decided: " + "; ".join(_more_seeds(task, s) for task, s in batch.items()),
              flush=True)
        run(pending_cells(manifest))
        added += 1


def _more_seeds(task: str, seeds: list[int]) -> str:
    """One task's added seeds, e.g. digits: 4 more evaluation seeds (102-105)."""
    if len(seeds) == 1:
        return f"{task}: 1 more evaluation seed ({seeds[0]})"
    return f"{task}: {len(seeds)} more evaluation seeds ({seeds[0]}-{seeds[-1]})"
