"""The headline: is WS-FM as good as full FM, and how much faster? Judged as a paired
non-inferiority claim per task, draft and warm-start method (docs/method.md, "Evidence
rules"). Pure pandas/scipy: computed from a run's records alone.

Methods take part by their role (harness.roles), never by name: reference (a full model),
warm-start (with the draft it starts from), floor (a draft alone) or baseline (not judged).
For each task and its primary metric:

1. Reference, chosen on the selection seeds. The configurations of the reference methods
   (every solver and budget N the run holds) form full FM's quality-vs-cost frontier. The
   best is the one with the best mean; the reference is the cheapest configuration whose
   paired difference from the best (by seed, below) is within the margin: fewest network
   calls (``reference``) and, for the wall-clock speed-up, least time (``reference_wall``).
2. Setting, chosen on the selection seeds. For each warm-start method and draft, the chosen
   setting (t0, start, init, solver, N) is the cheapest whose paired difference from the
   reference is within the margin (or, if none is, the best one, which the evaluation then
   judges). These are choices, not claims: a test on a few selection seeds has no power and
   would fall back to full FM's costliest configuration, inflating every speed-up; the
   claims are tested on seeds the choices never saw.
3. Verdict, on the evaluation seeds (disjoint from the selection seeds). The draft alone
   (the floor) and each chosen setting are tested against the reference (Holm over
   these tests of the task):
   - ``draft-alone-suffices``: the draft alone is non-inferior to the reference, or at least
     not shown worse and within the margin on average: the run cannot tell WS-FM's quality
     from its draft's, so the row is not a WS-FM speed-up;
   - ``non-inferior``: the one-sided test rejects "worse than the reference by the margin"
     and the draft alone is shown worse than the reference by the same test (otherwise the
     speed-up cannot be credited to WS-FM and the row stays inconclusive);
   - ``inferior``: the one-sided test rejects "within the margin";
   - ``inconclusive``: neither, or the run cannot back a claim (no selection seeds, no
     floor cells for the draft, fewer than two evaluation seeds).
4. Against its own draft: the chosen setting is also compared with its draft alone on the
   evaluation seeds (``versus_draft``: mean paired "worse by", its 1 - 2 alpha t-interval, and
   "not behind" / "behind" / "inconclusive" by the same one-sided tests and margin, not
   Holm-adjusted: it says whether the warm start degrades what it starts from, not a claim).
5. Speed-ups of the chosen setting: NFE (reference calls / its calls) and wall-clock (the
   reference_wall's time per batch over its time per batch, draft included, both measured in
   this run), with a paired bootstrap interval over the evaluation seeds (both sides resampled
   with the same seeds). Only a non-inferior row states them as a speed-up.

The paired test, Holm's correction and the rules are harness.analysis.noninferiority's. The
margin is stated per metric in the suite (``[evidence]``; default 5% of the reference's best
mean) and recorded in the manifest.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd

from harness.analysis.frontier import (
    Config,
    as_int,
    as_num,
    best_of,
    bootstrap_ratio,
    cheapest_within_margin,
    configs,
    seeds_by_role,
)
from harness.analysis.noninferiority import (
    Rules,
    floor_state,
    holm,
    paired_interval,
    paired_test,
    verdict,
)
from harness.analysis.stats import (
    coerce_numeric,
    higher_is_better,
    primary_metric,
)
from harness.roles import Role


def headline(df: pd.DataFrame, manifest: Mapping[str, Any]) -> tuple[list[dict], dict]:
    """The headline rows (one per task, warm-start method and draft) and notes per task."""
    frame = coerce_numeric(df)
    rules = Rules.from_dict((manifest.get("evidence") or {}).get("rules"))
    primary = manifest.get("primary_metrics") or {}
    rows: list[dict] = []
    notes: dict[str, list[str]] = {}
    for task in sorted(frame["task"].dropna().unique()):
        metric = primary_metric(frame, task, primary)
        if metric is None:
            continue
        t_rows, t_notes = task_headline(frame[(frame["task"] == task)
                                              & (frame["metric"] == metric)],
                                        task, metric, rules, manifest)
        rows += t_rows
        notes[task] = t_notes
    return rows, notes


def _row(task: str, method: str, title: str, draft: str, metric: str,
         hib: bool) -> dict[str, Any]:
    return {"task": task, "draft": draft, "method": method, "title": title, "variant": None,
            "t0": None,
            "n_budget": None, "k_steps": None, "nfe": None, "reference": None,
            "reference_wall": None, "metric": metric, "higher_is_better": hib,
            "margin": None, "mean": None, "reference_mean": None, "draft_mean": None,
            "speedup_nfe": None, "speedup_wall": None, "interval": [None, None],
            "p_value": None, "verdict": "inconclusive", "reason": "", "versus_draft": None,
            "n_selection_seeds": 0, "n_evaluation_seeds": 0}


def versus_draft(pick: Config, alone: Config, seeds: list[int], hib: bool, margin: float,
                 alpha: float) -> dict[str, Any]:
    """The chosen setting against its draft alone, paired by seed (how much worse it is)."""
    test = paired_test(pick.on(seeds), alone.on(seeds), hib, margin)
    # The 1 - 2 alpha interval: its upper end is below the margin iff the one-sided test at
    # alpha says "not behind", so the interval and the word never disagree.
    level = 1 - 2 * alpha
    low, high = paired_interval(pick.on(seeds), alone.on(seeds), hib, level)
    state = {"non-inferior": "not behind", "inferior": "behind"}.get(
        verdict(test.p_noninferior, test.p_inferior, alpha), "inconclusive")
    return {"worse": as_num(test.worse), "interval": [as_num(low), as_num(high)], "level": level,
            "state": state, "n": test.n}


@dataclass
class TaskEvidence:
    """What one task's headline is judged on: its configurations of the primary metric, the
    seeds that choose settings and those that report them, full FM's best configuration and
    the reference chosen from its frontier, the margin, and each draft alone."""

    task: str
    metric: str
    hib: bool
    selection: list[int]
    evaluation: list[int]
    configs: list[Config]
    floors: dict[str | None, Config]
    best: Config | None
    margin: float = math.nan
    reference: Config | None = None
    reference_wall: Config | None = None

    @property
    def chosen_on(self) -> list[int]:
        """Where settings are chosen: the selection seeds (else, no claim, the evaluation)."""
        return self.selection or self.evaluation


def task_evidence(frame: pd.DataFrame, task: str, metric: str, rules: Rules,
                  manifest: Mapping[str, Any]) -> TaskEvidence:
    """One task's evidence (rows of its primary metric): the reference is the cheapest of
    the reference methods' configurations within the margin of their best (chosen on the
    selection seeds), by NFE and, for the wall-clock speed-up, by time."""
    hib = higher_is_better(frame)
    selection, evaluation = seeds_by_role(manifest, task,
                                          sorted(frame["seed"].dropna().astype(int).unique()))
    all_configs = configs(frame)
    full = [c for c in all_configs if c.role == Role.REFERENCE]
    ev = TaskEvidence(task, metric, hib, selection, evaluation, all_configs,
                      {c.draft: c for c in all_configs if c.role == Role.FLOOR},
                      best_of(full, selection or evaluation, hib))
    if ev.best is not None:
        ev.margin = rules.margin_for(metric).allowed(ev.best.mean(ev.chosen_on))
        ev.reference = cheapest_within_margin(full, ev.best, ev.chosen_on, hib,
                                              ev.margin) or ev.best
        ev.reference_wall = cheapest_within_margin(full, ev.best, ev.chosen_on, hib, ev.margin,
                                                   by_time=True) or ev.best
    return ev


def choose_setting(ev: TaskEvidence, method: str, title: str, draft: str,
                   alpha: float) -> tuple[dict[str, Any], Config | None]:
    """A warm start's headline row and the setting chosen for it on the selection seeds (the
    cheapest within the margin of the reference, else its best), with its draft alone, its
    speed-ups and how it compares with its draft; the verdict comes later (``judge``)."""
    row = _row(ev.task, method, title, draft, ev.metric, ev.hib)
    ref, evaluation = ev.reference, ev.evaluation
    row.update(reference=ref.label(), reference_wall=ev.reference_wall.label(),
               margin=ev.margin, n_selection_seeds=len(ev.selection),
               n_evaluation_seeds=len(evaluation), reference_mean=as_num(ref.mean(evaluation)))
    cands = [c for c in ev.configs if c.method == method and c.draft == draft]
    pick = cheapest_within_margin(cands, ref, ev.chosen_on, ev.hib, ev.margin)
    if pick is None:
        pick = best_of(cands, ev.chosen_on, ev.hib)
        row["reason"] = ("no setting was within the margin on the selection seeds; the best "
                         "one is judged")
    if pick is None:
        row["reason"] = "no finite values"
        return row, None
    row.update(variant=pick.variant, t0=as_num(pick.t0), n_budget=as_int(pick.n_steps),
               k_steps=as_int(pick.k_steps), nfe=as_num(pick.nfe),
               mean=as_num(pick.mean(evaluation)))
    alone = ev.floors.get(draft)
    if alone is not None:
        row["draft_mean"] = as_num(alone.mean(evaluation))
        row["versus_draft"] = versus_draft(pick, alone, evaluation, ev.hib, ev.margin, alpha)
    wall = ev.reference_wall.times
    ratio, interval = bootstrap_ratio(wall[wall.index.isin(evaluation)],
                                       pick.times[pick.times.index.isin(evaluation)])
    row.update(speedup_nfe=as_num(ref.nfe / pick.nfe if pick.nfe else math.nan),
               speedup_wall=as_num(ratio), interval=interval)
    return row, pick


def judge(ev: TaskEvidence, rows: list[dict[str, Any]], picks: list[Config | None],
          alpha: float) -> dict[str, str]:
    """The verdicts of a task's rows, on the evaluation seeds: each draft alone and each chosen
    setting against the reference, Holm-adjusted over these tests; returns each draft alone's
    state ("non-inferior", "close", "inferior", "unclear")."""
    evaluation, ref = ev.evaluation, ev.reference
    drafts = sorted({r["draft"] for r in rows})
    tests = {("draft", d): paired_test(ev.floors[d].on(evaluation), ref.on(evaluation), ev.hib,
                                       ev.margin) for d in drafts if d in ev.floors}
    for i, pick in enumerate(picks):
        if pick is not None:
            tests[("row", i)] = paired_test(pick.on(evaluation), ref.on(evaluation), ev.hib,
                                            ev.margin)
    keys = list(tests)
    adj_ni = dict(zip(keys, holm([tests[k].p_noninferior for k in keys]), strict=True))
    adj_inf = dict(zip(keys, holm([tests[k].p_inferior for k in keys]), strict=True))
    floor = {d: floor_state(tests[("draft", d)], adj_ni[("draft", d)], adj_inf[("draft", d)],
                            ev.margin, alpha) for d in drafts if ("draft", d) in tests}
    for i, row in enumerate(rows):
        key = ("row", i)
        if key in tests:
            row["p_value"] = as_num(adj_ni[key])
            own = verdict(adj_ni[key], adj_inf[key], alpha)
            row["verdict"], why = _verdict(own, floor.get(row["draft"]), row["draft"],
                                           bool(ev.selection), tests[key].n)
            row["reason"] = why or row["reason"]
    return floor


def _verdict(own: str, floor: str | None, draft: str, selected: bool,
             n: int) -> tuple[str, str]:
    """(verdict, reason) of a row whose own test says ``own``, given its draft alone's state
    ``floor`` (None: not run), whether settings were chosen on selection seeds, and ``n``
    evaluation seeds with values on both sides."""
    if floor is None:
        return "inconclusive", (f"no cells of the {draft} draft alone: the floor is untested "
                                "(add a floor method, the draft alone, with this draft)")
    if floor in ("non-inferior", "close"):
        how = ("non-inferior to the reference" if floor == "non-inferior" else
               "not shown worse than the reference and within the margin on average")
        return "draft-alone-suffices", f"the {draft} draft alone is {how}: not a WS-FM speed-up"
    if not selected:
        return "inconclusive", ("settings were chosen on the evaluation seeds (the suite has no "
                                "selection_seeds): no claim")
    if n < 2:
        return "inconclusive", "fewer than 2 evaluation seeds with values on both sides"
    if own == "non-inferior" and floor != "inferior":
        return "inconclusive", (f"the {draft} draft alone is not shown worse than the "
                                "reference, so the speed-up cannot be credited to WS-FM")
    return own, ""


def task_notes(ev: TaskEvidence, floor: dict[str, str]) -> list[str]:
    """What the headline should say about a task beside its rows: drafts that make it no
    test of WS-FM, a full model that its draft beats, no selection seeds."""
    notes = []
    for d, state in sorted(floor.items()):
        if state in ("non-inferior", "close"):
            how = ("non-inferior to" if state == "non-inferior" else
                   "not shown worse than, and on average within the margin of,")
            notes.append(f"{ev.task} does not test WS-FM with the {d} draft: that draft alone is "
                         f"already {how} full FM's reference ({ev.metric}, margin "
                         f"{ev.margin:.4g}).")
    best = ev.best.mean(ev.evaluation)
    for d in sorted(floor):
        alone = ev.floors[d].mean(ev.evaluation)
        if math.isfinite(alone) and alone != best and (alone > best) == ev.hib:
            notes.append(f"The {d} draft alone scores better than full FM's best configuration "
                         f"on {ev.task}: the full model is under-trained for this comparison.")
    if not ev.selection:
        notes.append(f"{ev.task}: no selection seeds, so settings were chosen on the evaluation "
                     "seeds and no row makes a claim (set selection_seeds in the suite).")
    return notes


def task_headline(frame: pd.DataFrame, task: str, metric: str, rules: Rules,
                  manifest: Mapping[str, Any]) -> tuple[list[dict], list[str]]:
    """``headline`` for one task's rows of its primary metric."""
    ev = task_evidence(frame, task, metric, rules, manifest)
    warm = frame[frame["role"] == Role.WARM_START]
    groups = sorted({(str(m), str(d)) for m, d in zip(warm["method"], warm["draft"],
                                                      strict=True)})
    titles = {str(m): str(t) for m, t in zip(warm["method"], warm["title"], strict=True)}
    if ev.best is None:
        why = f"no reference (full model) cells measure {metric}: nothing to compare with"
        rows = [_row(task, m, titles[m], d, metric, ev.hib) | {"reason": why}
                for m, d in groups]
        return rows, [f"{task}: no cells of a reference (full model) method, so no reference "
                      "and no headline."]
    chosen = [choose_setting(ev, m, titles[m], d, rules.alpha) for m, d in groups]
    rows = [row for row, _ in chosen]
    floor = judge(ev, rows, [pick for _, pick in chosen], rules.alpha)
    return rows, task_notes(ev, floor)
