"""A cell: one independent unit of work (task x method x budget x seed, with every setting
it needs), plain JSON-able data, so it can run in another process or on another machine. Its
content hash is its id: a finished cell's record is found by it when a run resumes."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from harness.hashing import stable_hash
from harness.records.record import doc

# Fields a cell names only when set (cell ids from before they existed hold).
OPTIONAL = ("compile", "metrics", "metric_options", "reference")


@dataclass
class Cell:
    """One independent unit of work; its fields name everything it needs (JSON-able)."""

    task: str = doc("Registered task name.")
    task_options: dict[str, Any] = doc("Options passed to the task's constructor.")
    method: str = doc("Registered method name.")
    method_options: dict[str, Any] = doc("Options passed to the method's constructor (one point "
                                         "of the suite's expanded grid).")
    n_steps: int = doc("N, the step budget (0: chosen at run time, or unused).",
                       schema={"minimum": 0})
    seed: int = doc("The seed.", schema={"minimum": 0})
    device: str = doc("Torch device to run on.")
    n_samples: int = doc("Samples to generate.", schema={"minimum": 1})
    n_eval: int = doc("Held-out points requested for the metrics.", schema={"minimum": 1})
    repeats: int = doc("Timed repeats.", schema={"minimum": 1})
    warmup: int = doc("Untimed warm-up calls before the timed repeats.", schema={"minimum": 0})
    training: dict[str, Any] = doc("The suite's overrides of the task's training settings "
                                   "(empty: the task's defaults).")
    # False, or the torch.compile backend the network is compiled with (harness.run.timing).
    compile: str | bool = doc("The torch.compile backend the network is compiled with; absent "
                              "(or false) when it runs eagerly.", default=False)
    # The suite's choice of the task's metrics and their options (None: the task's own).
    metrics: list[str] | None = doc("The suite's choice of the task's metrics; absent: the "
                                    "task's own.", default=None)
    metric_options: dict[str, dict[str, Any]] | None = doc(
        "The suite's options for those metrics, by metric name; absent: none.", default=None)
    # The split the metrics compare with: None/"test" (held out) or "train".
    reference: str | None = doc("The split the metrics compare with: \"train\", or absent for "
                                "the held-out split.", default=None,
                                schema={"enum": ["test", "train", None]})

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
    time_budget: float = doc("Wall-clock cells only: seconds per batch of time_batch samples; "
                             "n_steps is then 0 and N is chosen at run time.", kw_only=True,
                             schema={"exclusiveMinimum": 0})
    time_batch: int = doc("Wall-clock cells only: the batch the time budget is stated for.",
                          kw_only=True, schema={"minimum": 1})

    def at_steps(self, n_steps: int) -> Cell:
        """The plain cell that runs this one's chosen N."""
        base = {f.name: getattr(self, f.name) for f in fields(Cell)}
        return Cell(**{**base, "n_steps": n_steps})
