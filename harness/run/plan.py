"""A suite as a graph of artefacts and cells, so that shared work is done once.

Every cell depends on one *preparation*: its method's trained networks, fitted drafts and
refiner pairs, and its metrics' reference statistics, built into the content-keyed cache
(harness.run.execute.prepare_cell). Cells that differ only in run-time settings (the budget
N, samples, repeats, compile, a wall-clock budget) share a preparation; preparations that
share an artefact (a WS-FM fine-tune and the full model it starts from, two methods using one
draft) meet in the cache, whose per-key lock builds each entry once. An executor runs the
preparations first and a cell once its preparation is done.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from harness.hashing import stable_hash
from harness.records.cell import Cell, TimeCell

# Cell fields that change how a cell samples and is timed, not what it needs built.
RUN_TIME = ("n_steps", "n_samples", "repeats", "warmup", "compile", "time_budget",
            "time_batch")


@dataclass
class Preparation:
    """One node of artefacts: ``cell`` is what it is prepared with, ``cells`` depend on it."""

    key: str
    cell: Cell
    cells: list[Cell] = field(default_factory=list)

    @property
    def group(self) -> tuple[str, int]:
        return (self.cell.task, self.cell.seed)


def preparation_key(cell: Cell) -> str:
    data = cell.to_dict()
    for name in RUN_TIME:
        data.pop(name, None)
    return stable_hash(data)[:20]


def plan(cells: list[Cell]) -> list[Preparation]:
    """The preparations the cells need, each with its cells, breadth-first over (task, seed)
    groups: the k-th preparation of every group before the (k+1)-th of any. In the cells'
    order a group's preparations that share a model (full FM under two solvers, a fine-tune
    and the full model it starts from) sit side by side, and a second worker would wait on
    the cache's lock while the first trains it; taken across groups, the workers train
    different seeds' models at once."""
    nodes: dict[str, Preparation] = {}
    for cell in cells:
        key = preparation_key(cell)
        node = nodes.get(key)
        if node is None:
            node = nodes[key] = Preparation(key, cell)
        elif isinstance(node.cell, TimeCell) and not isinstance(cell, TimeCell):
            node.cell = cell  # prepare with a plain cell when there is one
        node.cells.append(cell)
    seen: Counter[tuple[str, int]] = Counter()
    ranked = []
    for node in nodes.values():
        ranked.append((seen[node.group], node))
        seen[node.group] += 1
    # sorted is stable: within a rank, the cells' order stays
    return [node for _, node in sorted(ranked, key=lambda pair: pair[0])]
