"""Migrations of stored results to the current schema version, one step per version.

A file of an older version is first checked against its own version's schema (kept under
harness/records/schemas/v1/ for version 1), then migrated step by step, then checked against the
current schema (harness.records.schema). Nothing on disk is rewritten: a migrated run reads the
same as one written by this version.

- Version 1 -> 2: a record's flat fields go into typed sections (identity, plan, sampling,
  times, bound, cost, budget; harness.records.record) and its method ``family`` becomes its
  ``role`` to the evidence (harness.roles). Manifests are unchanged apart from the version.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

# Version 1's autoregressive family had one-token calls with a KV cache (version 2 records say
# so in plan.nfe_note, from the method's plan).
NFE_NOTE = {"autoregressive": "one network call per token, each a one-token call with a KV "
                              "cache: compare it by its time, not its NFE"}
# Version 1 families -> roles (version 1 had no roles; its only "flow" method was the full
# model, its only "draft" method the draft alone).
ROLE_OF_FAMILY = {"flow": "reference", "warm-start": "warm-start", "draft": "floor"}

_IDENTITY = ("cell_id", "task", "method", "variant", "draft", "seed", "device", "threads",
             "executor", "concurrency")
_PLAN = ("t0", "n_steps", "k_steps", "solver", "start", "init", "nfe_budget", "nfe_expected")
_SAMPLING = ("n_samples", "n_eval", "nfe_measured", "nfe_ok", "deterministic", "nonfinite",
             "finalize")
_TIMES = ("time_s", "time_spread_s", "first_call_s", "draft_time_s", "integrate_time_s",
          "time_per_call_s", "compile_s", "timings")
_BOUND = ("ref_time_s", "ref_nfe", "k_observed", "start_time_observed", "nfe_speedup",
          "nfe_speedup_theory", "ideal_speedup", "wall_speedup", "wall_bound", "wall_status",
          "call_time_s", "fixed_time_s", "timing_noise")
_COST = ("train_s", "train_parts", "convergence", "refiner_stats")
_BUDGET = ("time_budget_s", "time_batch", "predicted_time_s", "min_time_s", "min_n_steps",
           "capped", "n_max", "cost_fixed_s", "cost_per_call_s", "actual_time_s",
           "actual_time_spread_s", "overrun_s", "overrun")


def _pick(record: dict[str, Any], names: tuple[str, ...]) -> dict[str, Any]:
    return {k: record[k] for k in names if k in record}


def record_1_to_2(old: dict[str, Any]) -> dict[str, Any]:
    """A version-1 (flat) cell record as version 2 (typed sections)."""
    n, budget = old["n_steps"], old["nfe_budget"]
    new: dict[str, Any] = {
        "schema_version": "2",
        "cell": old["cell"],
        "identity": {**_pick(old, _IDENTITY),
                     "role": ROLE_OF_FAMILY.get(old["family"], "baseline"),
                     "title": old["method"]},
        "plan": {**_pick(old, _PLAN), "evals_per_step": budget // n if n else 1,
                 "compile": old.get("compile", False),
                 "nfe_note": NFE_NOTE.get(old["family"])},
        "sampling": {"finalize": {}, **_pick(old, _SAMPLING)},
        "times": _pick(old, _TIMES),
        "cost": {"train_parts": {}, **_pick(old, _COST)},
        "metrics": old["metrics"],
    }
    if old.get("bound_ok") is not None:
        new["bound"] = {**_pick(old, _BOUND), "ok": old["bound_ok"]}
        if "bound_draft_time_s" in old:
            new["bound"]["draft_time_s"] = old["bound_draft_time_s"]
    if "time_budget_s" in old:
        new["budget"] = {**_pick(old, _BUDGET), "status": old["budget_status"],
                         "probe": old["budget_probe"]}
    return new


def manifest_1_to_2(old: dict[str, Any]) -> dict[str, Any]:
    return {**old, "schema_version": "2"}


# version -> {kind: the step to the next version}
MIGRATIONS: dict[str, dict[str, Callable[[dict[str, Any]], dict[str, Any]]]] = {
    "1": {"record": record_1_to_2, "manifest": manifest_1_to_2},
}


def to_current(kind: str, obj: dict[str, Any]) -> dict[str, Any]:
    """``obj`` (a record or manifest of an older version) migrated step by step."""
    while obj["schema_version"] in MIGRATIONS:
        obj = MIGRATIONS[obj["schema_version"]][kind](obj)
    return obj
