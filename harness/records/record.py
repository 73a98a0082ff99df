"""The cell record: what one finished cell ran and measured, as nested typed dataclasses.

A record is built in one place (harness.run.execute.build_record), written as JSON (the file
results/<run-id>/cells/<cell-id>.json), validated against the JSON Schema generated from these
classes (harness.records.schema), and read back with ``CellRecord.from_json``. Every field's
``doc`` is its documentation in the schema. Times are seconds on the cell's device (CUDA events
on a GPU, perf_counter on the CPU); medians and spreads are over the timed repeats.

The tidy frame (harness.records.store.load_run) flattens a record into ``COLUMNS``: one row per
metric, the other columns repeated; ``FLAT`` says which section each column comes from.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from harness.roles import Role


def doc(text: str, schema: dict[str, Any] | None = None, **kwargs: Any) -> Any:
    """A dataclass field with its schema documentation (and extra JSON Schema keywords)."""
    return field(metadata={"doc": text, "schema": schema or {}}, **kwargs)


@dataclass
class Identity:
    """What ran: the cell, the method and its role, and where."""

    cell_id: str = doc("The cell's identifier: the first 20 hex digits of a stable hash of "
                       "`cell`; also the file's name (cells/<cell_id>.json).")
    task: str = doc("Registered name of the task (data set).")
    method: str = doc("Registered name of the method.")
    role: Role = doc("What the method is to the evidence: reference (a full model), warm-start "
                     "(starts from a draft), floor (a draft alone) or baseline (any other).")
    title: str = doc("The method's display name in reports (Method.title).")
    variant: str = doc("Human-readable label of the method's options (with ' compiled' when "
                       "its network ran under torch.compile).")
    draft: str | None = doc("The draft a warm start starts from, or a floor is; null otherwise.")
    seed: int = doc("The seed: data split, training, sampling and metric randomness.")
    device: str = doc("The device the cell ran on (cpu, cuda, cuda:N).")
    threads: int = doc("torch CPU threads while the cell ran.")
    executor: str | None = doc("How the cell ran: serial, processes or ray.", default=None)
    concurrency: int | None = doc("Cells running side by side when this one started (1: alone).",
                                  default=None)
    control: str | None = doc("\"positive\" or \"negative\" when the draft is a control "
                              "(harness.controls): its verdict is known beforehand.",
                              default=None, schema={"enum": ["positive", "negative", None]})


@dataclass
class Plan:
    """What the method's sampling plan said it would do."""

    t0: float | None = doc("Start time of the integration (0 for a full model); null without a "
                           "network (a draft alone).", schema={"minimum": 0, "maximum": 1})
    n_steps: int = doc("N: steps of the full grid, step size 1/N (0: the method ignores it).",
                       schema={"minimum": 0})
    k_steps: int = doc("K: steps the plan takes, ceil((1 - t0) N) for a warm start.",
                       schema={"minimum": 0})
    evals_per_step: int = doc("Network calls per solver step (Euler 1, Heun 2, RK4 4).",
                              schema={"minimum": 1})
    solver: str | None = doc("The solver or sampler; null where none applies.")
    start: str | None = doc("A warm start's start (draft, noised-draft), or the source.")
    init: str | None = doc("A warm-start model's initialisation (scratch, finetune).")
    nfe_budget: int = doc("N times evals_per_step: the NFE of the full grid.",
                          schema={"minimum": 0})
    nfe_expected: int = doc("Network calls one batch should take by the plan.",
                            schema={"minimum": 0})
    compile: str | bool = doc("false, or the torch.compile backend the network ran under.")
    nfe_note: str | None = doc("How this method's NFE compares with others' where it does not "
                               "one to one (e.g. one-token calls with a KV cache).",
                               default=None)


@dataclass
class Sampling:
    """What was sampled and counted."""

    n_samples: int = doc("Samples generated, timed and judged.", schema={"minimum": 1})
    n_eval: int = doc("Reference points the metrics compared with.", schema={"minimum": 1})
    nfe_measured: int = doc("Network calls counted by wrapping the network (one batch).",
                            schema={"minimum": 0})
    nfe_ok: bool = doc("Every timed call took exactly nfe_expected network calls.")
    deterministic: bool = doc("Every repeat gave the first call's samples.")
    nonfinite: int = doc("Non-finite values in the samples (metrics are NaN when > 0).",
                         schema={"minimum": 0})
    finalize: dict[str, Any] = doc("What the task's finalize changed (e.g. clamped pixels).",
                                   default_factory=dict)


@dataclass
class Times:
    """Sampling time of one batch of n_samples."""

    time_s: float = doc("Median time per batch: start (draft) plus integration.")
    time_spread_s: float = doc("Interquartile range of the time per batch.")
    first_call_s: float = doc("The first (warm-up) call, timed apart.")
    draft_time_s: float = doc("Median time of the start (draft and source): T_d.")
    integrate_time_s: float = doc("Median time of the integration alone.")
    time_per_call_s: float | None = doc("integrate_time_s / nfe_measured; null without calls.")
    compile_s: float | None = doc("torch.compile's first call, timed apart; null when eager.",
                                  default=None)
    timings: dict[str, Any] = doc("Every timed repeat: total, draft, integrate, reference and "
                                  "(warm starts) the bare network call.",
                                  default_factory=dict)
    sampling_s: float | None = doc("Wall seconds the cell spent sampling: warm-up, repeats and "
                                   "(warm starts) the reference run.", default=None)
    metric_s: dict[str, float] = doc("Wall seconds each metric took (its reference statistics "
                                     "included), by name.", default_factory=dict)


@dataclass
class BoundCheck:
    """A warm-start cell against the guaranteed speed-up (harness.run.measure.bound_check)."""

    ref_time_s: float = doc("Median time per batch of the full N-step grid from t = 0 with the "
                            "same network, measured in the same cell.")
    ref_nfe: int = doc("Counted network calls of that reference run.")
    nfe_speedup: float = doc("ref_nfe / nfe_measured.")
    nfe_speedup_theory: float = doc("N / ceil((1 - t0) N), in the harness's own arithmetic.")
    ideal_speedup: float = doc("1 / (1 - t0).")
    wall_speedup: float = doc("ref_time_s / time_s: the measured wall-clock speed-up.")
    wall_bound: float = doc("S_wall = (F + N s c) / (F + T_d + K s c) from this cell's times.")
    timing_noise: float = doc("How far (relatively) timing noise may take the measured "
                              "speed-up: 3 bootstrap standard errors of its medians; above "
                              "nfe_speedup_theory (1 + timing_noise) is impossible.")
    ok: bool = doc("NFE exact and the wall-clock side not a shortfall or impossible.")
    # Always written; null only in records migrated from runs that predate them.
    wall_status: str | None = doc(
        "ok, shortfall (below S_wall beyond noise), impossible (above N/K beyond noise: broken "
        "timing) or not judged (too few repeats).", default=None,
        schema={"enum": ["ok", "shortfall", "impossible", "not judged", None]})
    k_observed: int | None = doc("K recounted from the time the solver started at.",
                                 default=None)
    start_time_observed: float | None = doc("The time of the first network call.", default=None)
    call_time_s: float | None = doc("c: one bare network call, timed alone.", default=None)
    fixed_time_s: float | None = doc("F: the reference run's fixed cost per batch (never "
                                     "below 0).", default=None)
    draft_time_s: float | None = doc("T_d used in S_wall.", default=None)
    bound_noise: float | None = doc("The same for the measured speed-up over S_wall (S_wall's "
                                    "own times included); below wall_bound / (1 + "
                                    "bound_noise) is a shortfall.", default=None)


@dataclass
class Cost:
    """What the method needed before it could sample."""

    train_s: float | None = doc("Seconds of training everything the method used (networks, "
                                "drafts, refiner pairs); null if a part is unrecorded.",
                                default=None)
    train_parts: dict[str, float | None] = doc("Seconds per artefact, by 'kind/hash'.",
                                               default_factory=dict)
    convergence: dict[str, Any] | None = doc(
        "The held-out training curve of the network it samples with.", default=None)
    refiner_stats: dict[str, Any] | None = doc("The refiner's counts from building the pairs.",
                                               default=None)
    prepare_s: float | None = doc("Wall seconds this cell spent preparing its method: training "
                                  "on a cache miss, loading on a hit.", default=None)


@dataclass
class Budget:
    """A wall-clock-budget cell (harness.run.budgets): the N it chose and what that cost."""

    time_budget_s: float = doc("Seconds per batch of time_batch samples.")
    time_batch: int = doc("The batch the budget is for.")
    status: str = doc("ok, or 'budget too small' (nothing fits: no samples, no metrics).")
    predicted_time_s: float | None = doc("Predicted time of the chosen N.")
    min_time_s: float = doc("Predicted time of the cheapest setting.")
    min_n_steps: int = doc("The cheapest setting's N.")
    capped: bool = doc("The choice hit n_max.")
    n_max: int = doc("The largest N a budget may choose.")
    cost_fixed_s: float = doc("Fitted fixed cost per batch (draft + integration).")
    cost_per_call_s: float = doc("Fitted seconds per network call.")
    probe: dict[str, Any] = doc("The probe the costs were fitted from.")
    actual_time_s: float | None = doc("Measured median time of a batch at the chosen N.")
    actual_time_spread_s: float | None = doc("Its interquartile range.")
    overrun_s: float | None = doc("max(0, actual - budget).")
    overrun: bool | None = doc("actual_time_s > time_budget_s.")


@dataclass
class MetricValue:
    """One metric's value on the cell's samples."""

    value: float = doc("The value (NaN when the samples were not finite).")
    higher_is_better: bool = doc("The metric's direction.")


@dataclass
class CellRecord:
    """One finished cell of a wsfm-bench run. A cell counts as finished exactly when its
    record file exists."""

    schema_version: str = doc("Results schema version the file was written with.")
    cell: dict[str, Any] = doc("The cell's inputs (harness.records.cell.Cell.to_dict()): "
                               "Cell.from_dict(record['cell']) reruns it alone.")
    identity: Identity = doc("What ran.")
    plan: Plan = doc("What the method's plan said it would do.")
    sampling: Sampling = doc("What was sampled and counted.")
    times: Times = doc("Sampling time of one batch.")
    cost: Cost = doc("What the method needed before it could sample.")
    metrics: dict[str, MetricValue] = doc("Each metric's value, by registered name.")
    bound: BoundCheck | None = doc("The speed-up bound check (warm starts only).", default=None)
    targets: dict[str, float] | None = doc("A warm start's training targets' own score per "
                                           "metric, on n_samples of them: the ceiling training "
                                           "on them can reach.", default=None)
    budget: Budget | None = doc("Wall-clock budget fields (wall-clock cells only).",
                                default=None)

    @property
    def cell_id(self) -> str:
        return self.identity.cell_id

    def to_json(self) -> dict[str, Any]:
        """The record as the JSON object written to disk."""
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CellRecord:
        """The record of a validated JSON object (harness.records.schema)."""
        return _build(cls, data)

    def flat(self) -> dict[str, Any]:
        """One value per tidy column (COLUMNS) except the per-metric ones."""
        out = {}
        for column, (section, name) in FLAT.items():
            part = getattr(self, section)
            out[column] = None if part is None else getattr(part, name)
        return out

    def tidy_rows(self) -> list[dict[str, Any]]:
        """One row per metric: the flat columns, the metric's name, value and direction, and
        (warm starts) its training targets' own score."""
        base, targets = self.flat(), self.targets or {}
        return [{**base, "metric": name, "value": m.value, "higher_is_better": m.higher_is_better,
                 "target": targets.get(name)} for name, m in self.metrics.items()]

    def quality(self) -> dict[str, float]:
        """{metric: value}: what must come out the same whichever executor ran the cell."""
        return {name: m.value for name, m in self.metrics.items()}


def _build(cls: type[CellRecord], data: dict[str, Any]) -> CellRecord:
    """A CellRecord from its (validated) JSON object, nested sections included."""
    kwargs = {}
    for f in dataclasses.fields(cls):
        if f.name not in data:
            continue
        value = data[f.name]
        if f.name == "metrics":
            value = {k: MetricValue(**v) for k, v in value.items()}
        elif f.name in SECTIONS and value is not None:
            value = SECTIONS[f.name](**value)
        kwargs[f.name] = value
    record = cls(**kwargs)
    record.identity.role = Role(record.identity.role)
    return record


# The nested sections of a CellRecord by field name.
SECTIONS: dict[str, type] = {"identity": Identity, "plan": Plan, "sampling": Sampling,
                             "times": Times, "cost": Cost, "bound": BoundCheck,
                             "budget": Budget}

# Tidy column -> (section, field). The per-metric columns (metric, value, higher_is_better) are
# added by CellRecord.tidy_rows.
FLAT: dict[str, tuple[str, str]] = {
    **{k: ("identity", k) for k in ("task", "method", "role", "title", "variant", "draft",
                                    "control")},
    **{k: ("plan", k) for k in ("t0", "solver", "start", "init", "n_steps", "k_steps",
                                "nfe_budget", "nfe_expected", "nfe_note")},
    **{k: ("sampling", k) for k in ("nfe_measured", "nfe_ok")},
    "seed": ("identity", "seed"),
    **{k: ("times", k) for k in ("time_s", "time_spread_s", "draft_time_s", "integrate_time_s",
                                 "time_per_call_s")},
    **{k: ("bound", k) for k in ("ref_time_s", "ref_nfe", "nfe_speedup", "nfe_speedup_theory",
                                 "ideal_speedup", "wall_speedup", "wall_bound",
                                 "timing_noise")},
    "bound_ok": ("bound", "ok"),
    **{k: ("sampling", k) for k in ("n_samples", "n_eval")},
    "device": ("identity", "device"),
    "cell_id": ("identity", "cell_id"),
    **{k: ("bound", k) for k in ("k_observed", "wall_status")},
    **{k: ("identity", k) for k in ("executor", "concurrency")},
    "train_s": ("cost", "train_s"),
}

PER_METRIC = ("metric", "value", "higher_is_better", "target")
COLUMNS: list[str] = [*FLAT, *PER_METRIC]
