"""The report's training-cost section: what each method's models, drafts and refiner pairs
took to train (``train_s`` of its records, from the cache's build times, so a warm cache shows
the cold run's cost), and for each headline row the number of samples after which the warm
start's extra training pays for itself in sampling time against full FM's reference."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import pandas as pd

from harness.records.record import CellRecord
from harness.report.format import fmt, fmt_int, md_table
from harness.roles import Role


def _median(cells: pd.DataFrame, column: str) -> float:
    values = pd.to_numeric(cells[column], errors="coerce").dropna()
    return float(values.median()) if len(values) else math.nan


def _config(cells: pd.DataFrame, task: str, variant: Any, n_steps: Any) -> pd.DataFrame:
    return cells[(cells["task"] == task) & (cells["variant"] == variant)
                 & (cells["n_steps"] == n_steps)]


def break_even(extra_s: float, saving_s: float) -> str:
    """Samples after which ``extra_s`` seconds of training are paid back at ``saving_s``
    seconds saved per sample, in words when there is no such number."""
    if not (math.isfinite(extra_s) and math.isfinite(saving_s)):
        return "–"
    if saving_s <= 0:
        return "never (not faster per sample)"
    if extra_s <= 0:
        return "from the first sample (no extra training)"
    return f"{math.ceil(extra_s / saving_s):,}"


def convergence_table(records: list[CellRecord]) -> str:
    """Per task, seed and trained model: its quality against training steps (its held-out
    flow-matching loss at each check) and where and why training stopped. Full FM's model
    first; a warm start's own model where it trained one (a training-free one samples full
    FM's, whose row is already there)."""
    seen: dict[tuple[str, int, int, str], Mapping[str, Any]] = {}
    curves: set[tuple[str, int, str]] = set()
    for r in sorted(records, key=lambda r: r.identity.role != Role.REFERENCE):
        conv, ident = r.cost.convergence, r.identity
        if ident.role not in (Role.REFERENCE, Role.WARM_START) or not isinstance(conv, Mapping):
            continue
        curve = (ident.task, ident.seed, repr(conv.get("heldout_loss")))
        if curve in curves:
            continue
        curves.add(curve)
        name = ident.title if ident.role == Role.REFERENCE else f"{ident.title} {ident.variant}"
        seen[(ident.task, ident.role != Role.REFERENCE, ident.seed, name)] = conv
    if not seen:
        return ""
    body = [[task, name, str(seed), " → ".join(f"{fmt(step)}: {fmt(loss, 3)}"
                                               for step, loss in conv.get("heldout_loss") or []),
             _stopped(conv)] for (task, _, seed, name), conv in sorted(seen.items())]
    return ("### Did the models converge?\n\nEach trained flow model's quality against training "
            "steps: its flow-matching loss on held-out data (the same batches each time) at each "
            "check, per seed; full FM's first, then each warm start's own. Trained until that "
            "loss stops improving (the suite's training patience), it is checked at the end of "
            "each cosine cycle, where the learning rate has annealed, the next cycle twice as "
            "long, and the best weights are kept; trained for a fixed number of steps, after "
            "each fifth, and a fall of under 2% over the last fifth reads as settled (a cosine "
            "schedule flattens the end of any run, so settled is not converged). A full model "
            "still improving is a weak reference: a warm start that matches it may not match a "
            "trained one.\n\n"
            + md_table(["task", "model", "seed", "held-out loss by step", "stopped"], body))


def _stopped(conv: Mapping[str, Any]) -> str:
    """Where and why a model's training stopped, in words."""
    if conv.get("criterion"):
        why = {"plateau": "the held-out loss stopped improving",
               "cap": "at the step cap, still improving: under-trained"}.get(
            conv.get("stopped"), "–")
        return f"{why} ({fmt(conv.get('steps_run'))} steps, best at {fmt(conv.get('best_step'))})"
    fall = conv.get("last_fall")
    state = {True: "settled", False: "still falling: under-trained"}.get(conv.get("plateaued"),
                                                                          "–")
    return state + ("" if fall is None else f" (fell {100 * fall:.1f}% over the last fifth)")


def training_section(cells: pd.DataFrame, rows: list[Mapping[str, Any]],
                     records: list[CellRecord] | None = None) -> str:
    """Markdown: training seconds per method variant, full FM's convergence, and break-even
    per headline row."""
    head = "## Training cost\n\n"
    if "train_s" not in cells or pd.to_numeric(cells["train_s"], errors="coerce").isna().all():
        return head + ("_No cell records its training time (runs before build times were "
                       "recorded, or cache entries built by them): rerun with an empty cache "
                       "to measure it._")
    table = []
    for (task, method, variant), g in cells.groupby(["task", "method", "variant"], sort=True):
        table.append([task, method, variant, fmt(_median(g, "train_s")),
                      fmt_int(g["train_s"].notna().sum()), str(g["device"].iloc[0])])
    intro = ("Seconds of training what each method needs (its networks, drafts and refiner "
             "pairs; a fine-tune includes the full model it starts from), median over the "
             "cells that record it, as built on the device shown. Metric extractors and the "
             "judge are not included.")
    parts = [head + intro, md_table(["task", "method", "variant", "train s", "cells",
                                     "device"], table), convergence_table(records or [])]
    even = []
    for row in rows:
        ref = row.get("reference") or {}
        if row.get("variant") is None or not ref:
            continue
        task = row["task"]
        warm = _config(cells, task, row["variant"], row["n_budget"])
        full = _config(cells, task, ref.get("variant"), ref.get("n_budget"))
        if warm.empty or full.empty:
            continue
        extra = _median(warm, "train_s") - _median(full, "train_s")
        per_sample = [_median(g, "time_s") / _median(g, "n_samples") for g in (warm, full)]
        saving = per_sample[1] - per_sample[0]
        even.append([task, str(row["draft"]), row["method"], f"N={row['n_budget']}",
                     f"{ref.get('variant')}, N={ref.get('n_budget')}", fmt(extra),
                     fmt(1e3 * saving), break_even(extra, saving), str(row.get("verdict"))])
    if even:
        parts.append(
            "### When the warm start's extra training pays for itself\n\n"
            "Per headline row: extra training = the warm start's train s − the reference's; "
            "saved per sample = the reference's wall-clock per sample − the warm start's "
            "(both with their draft's time, medians over seeds); break-even = extra / saved. "
            "Only a non-inferior verdict makes the saving a like-for-like one.\n\n"
            + md_table(["task", "draft", "method", "setting", "reference (full FM)",
                        "extra train s", "saved ms/sample", "break-even samples", "verdict"],
                       even))
    return "\n\n".join(p for p in parts if p)
