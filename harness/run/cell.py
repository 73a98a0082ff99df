"""A cell: one independent unit of work (task x method x budget x seed, with every setting
it needs), plain JSON-able data, so it can run in another process or on another machine. Its
content hash is its id: a finished cell's record is found by it when a run resumes."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

from harness.cache import stable_hash

# Fields a cell names only when set (cell ids from before they existed hold).
OPTIONAL = ("compile", "metrics", "metric_options", "reference")


@dataclass
class Cell:
    """One independent unit of work; its fields name everything it needs (JSON-able)."""

    task: str
    task_options: dict[str, Any]
    method: str
    method_options: dict[str, Any]
    n_steps: int
    seed: int
    device: str
    n_samples: int
    n_eval: int
    repeats: int
    warmup: int
    training: dict[str, Any]
    # False, or the torch.compile backend the network is compiled with (harness.run.timing).
    compile: str | bool = False
    # The suite's choice of the task's metrics and their options (None: the task's own).
    metrics: list[str] | None = None
    metric_options: dict[str, dict[str, Any]] | None = None
    # The split the metrics compare with: None/"test" (held out) or "train".
    reference: str | None = None

    @property
    def cell_id(self) -> str:
        return stable_hash(self.to_dict())[:20]

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for key in OPTIONAL:  # left out when unset: cell ids from before they existed hold
            if not data[key]:
                del data[key]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Cell:
        if cls is Cell and "time_budget" in data:  # a wall-clock cell (harness.run.budgets)
            cls = TimeCell
        return cls(**{f.name: data[f.name] for f in fields(cls)
                      if f.name in data or f.name not in OPTIONAL})


@dataclass
class TimeCell(Cell):
    """A cell with a wall-clock budget: ``time_budget`` seconds per batch of ``time_batch``
    samples. Its ``n_steps`` is 0: the runner (harness.run.budgets) chooses N at run time. A
    subclass, so plain cells (and their cell_ids) are exactly what they were."""

    # Keyword-only: required, yet allowed after any defaulted field Cell may gain.
    time_budget: float = field(kw_only=True)
    time_batch: int = field(kw_only=True)

    def at_steps(self, n_steps: int) -> Cell:
        """The plain cell that runs this one's chosen N."""
        base = {f.name: getattr(self, f.name) for f in fields(Cell)}
        return Cell(**{**base, "n_steps": n_steps})
