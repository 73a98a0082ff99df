"""The headline: is WS-FM as good as full FM, and how much faster? Judged as a paired
non-inferiority claim per task, draft and warm-start method (docs/method.md, "Evidence
rules"). Pure pandas/scipy: computed from a run's records alone.

Methods take part by their role (harness.roles), never by name: reference (a full model),
warm-start (with the draft it starts from), floor (a draft alone), data (real data: the best
any method can score), or baseline (not judged). For each task and its primary metric:

1. Margin, stated before the data (harness.analysis.margins): in the metric's units, a share
   of the reference, or effect retention (a share of full FM's improvement over the draft
   alone to keep, the effect estimated on the selection seeds).
2. Reference, chosen on the selection seeds. The configurations of the reference methods
   (every solver and budget N the run holds) form full FM's quality-vs-cost frontier. The
   best is the one with the best mean; the reference is the cheapest configuration whose
   paired difference from the best (by seed) is within the margin: fewest network calls
   (``reference``) and, for the wall-clock speed-up, least time (``reference_wall``). A
   frontier that does not reach N <= 2 for a solver censors the reference: its speed-ups are
   upper bounds, and the row says so.
3. Setting, chosen on the selection seeds. For each warm-start method and draft, the chosen
   setting (t0, start, init, solver, N) is the cheapest whose paired difference from the
   reference is within the margin (or, if none is, the best one, which the evaluation then
   judges). These are choices, not claims: the claims are tested on seeds the choices never
   saw.
4. Verdict, on the evaluation seeds (harness.analysis.verdicts): each chosen setting and its
   draft alone against the reference, one-sided paired tests, Holm over the whole headline,
   looks of a sequential design each at its share of alpha; ``non-inferior`` (credited to
   the warm start only when its draft alone is shown worse), ``inferior``,
   ``draft-alone-suffices`` (the draft alone is shown non-inferior) or ``inconclusive``
   (with the smallest margin the evidence could have shown and about how many evaluation
   seeds would decide it).
5. Beside each row: the data floor (real data's own score), the warm start's training
   targets' own score (its ceiling), where the draft alone stands on full FM's frontier
   ("as good as full FM with about k NFE"), how the warm start compares with its own draft,
   and its speed-ups: NFE (reference calls / its calls) and wall-clock (the reference_wall's
   time per batch over its time, draft included, both measured in this run) with a paired
   bootstrap interval over the evaluation seeds. Only a non-inferior row whose cells all
   passed the bound and NFE checks states them as a speed-up.
6. Controls: rows whose draft is a control (harness.controls) must read non-inferior
   (positive) or inferior (negative); ``control_misreads`` lists those that do not.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
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
from harness.analysis.noninferiority import Rules, paired_interval, paired_test, verdict
from harness.analysis.stats import coerce_numeric, higher_is_better, primary_metric
from harness.analysis.verdicts import Claim, judge_all
from harness.roles import Role

EXPECTED = {"positive": "non-inferior", "negative": "inferior"}  # a control's verdict


@dataclass
class TaskEvidence:
    """What one task's headline is judged on: its configurations of the primary metric, the
    seeds that choose settings and those that report them, full FM's frontier and best
    configuration, each draft alone, and real data's own score."""

    task: str
    metric: str
    hib: bool
    selection: list[int]
    evaluation: list[int]
    configs: list[Config]
    full: list[Config]
    floors: dict[str | None, Config]
    data: Config | None
    best: Config | None
    censored: list[str]
    looks: list[int] = field(default_factory=list)
    _references: dict[float, tuple[Config, Config]] = field(default_factory=dict)

    @property
    def chosen_on(self) -> list[int]:
        """Where settings are chosen: the selection seeds (else, no claim, the evaluation)."""
        return self.selection or self.evaluation

    def references(self, margin: float) -> tuple[Config, Config]:
        """(by NFE, by time): the cheapest of full FM's configurations within ``margin`` of
        its best on the selection seeds (the best itself when none is)."""
        if margin not in self._references:
            pick = [cheapest_within_margin(self.full, self.best, self.chosen_on, self.hib,
                                           margin, by_time=by_time) or self.best
                    for by_time in (False, True)]
            self._references[margin] = (pick[0], pick[1])
        return self._references[margin]


def task_evidence(frame: pd.DataFrame, task: str, metric: str,
                  manifest: Mapping[str, Any]) -> TaskEvidence:
    """One task's evidence, from its rows of its primary metric."""
    hib = higher_is_better(frame)
    selection, evaluation = seeds_by_role(manifest, task,
                                          sorted(frame["seed"].dropna().astype(int).unique()))
    every = configs(frame)
    full = [c for c in every if c.role == Role.REFERENCE]
    data = [c for c in every if c.role == Role.DATA]
    looks = ((manifest.get("evidence") or {}).get("looks") or {}).get(task) or []
    return TaskEvidence(task, metric, hib, selection, evaluation, every, full,
                        {c.draft: c for c in every if c.role == Role.FLOOR},
                        data[0] if data else None, best_of(full, selection or evaluation, hib),
                        _censored(full), [int(n) for n in looks])


def _censored(full: list[Config]) -> list[str]:
    """The reference solvers whose frontier does not reach N <= 2: "solver=euler from N=10"."""
    lowest: dict[str, float] = {}
    for c in full:
        lowest[c.variant] = min(lowest.get(c.variant, math.inf), c.n_steps)
    return [f"{v} from N={n:g}" for v, n in sorted(lowest.items()) if n > 2]


def _row(ev: TaskEvidence, method: str, title: str, draft: str) -> dict[str, Any]:
    return {"task": ev.task, "draft": draft, "method": method, "title": title, "control": None,
            "variant": None, "t0": None, "n_budget": None, "k_steps": None, "nfe": None,
            "reference": None, "reference_wall": None, "reference_censored": bool(ev.censored),
            "metric": ev.metric, "higher_is_better": ev.hib, "margin": None,
            "margin_rule": None, "margin_reason": None, "mean": None, "reference_mean": None,
            "draft_mean": None, "floor": None if ev.data is None else as_num(
                ev.data.mean(ev.evaluation)), "target_quality": None, "draft_position": None,
            "speedup_nfe": None, "speedup_wall": None, "interval": [None, None],
            "speedup_backed": False, "flagged": 0, "p_value": None, "verdict": "inconclusive",
            "reason": "", "versus_draft": None, "detectable_margin": None,
            "seeds_needed": None, "looks": 1, "n_selection_seeds": len(ev.selection),
            "n_evaluation_seeds": len(ev.evaluation)}


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


def draft_position(ev: TaskEvidence, alone: Config) -> str | None:
    """Where the draft alone stands on full FM's frontier (evaluation seeds): "as good as full
    FM with about k NFE", or beyond either end of it."""
    mine = alone.mean(ev.evaluation)
    points = sorted((c.nfe, c.mean(ev.evaluation)) for c in ev.full
                    if math.isfinite(c.mean(ev.evaluation)))
    if not math.isfinite(mine) or not points:
        return None
    best = None
    for nfe, value in points:  # full FM's best at each cost or less
        best = value if best is None else (max if ev.hib else min)(best, value)
        if (best >= mine) if ev.hib else (best <= mine):
            if nfe == points[0][0]:
                return f"no better than full FM at its cheapest ({nfe:g} NFE)"
            return f"as good as full FM with about {nfe:g} NFE"
    return f"better than full FM at every budget run (up to {points[-1][0]:g} NFE)"


def choose_setting(ev: TaskEvidence, method: str, title: str, draft: str,
                   rules: Rules) -> Claim:
    """A warm start's headline row and what it is tested with: the margin, the reference and
    the setting chosen on the selection seeds, its draft alone; the verdict comes later."""
    row = _row(ev, method, title, draft)
    rule = rules.margin_for(ev.metric, ev.task)
    alone = ev.floors.get(draft)
    margin = rule.value(ev.best.mean(ev.chosen_on),
                        alone.mean(ev.chosen_on) if alone is not None else None, ev.hib)
    row.update(margin_rule=rule.describe(), margin_reason=rule.reason or None,
               margin=as_num(margin), control=next(
                   (c.control for c in ev.configs if c.method == method and c.draft == draft
                    and c.control), None))
    if alone is not None:
        row.update(draft_mean=as_num(alone.mean(ev.evaluation)),
                   draft_position=draft_position(ev, alone))
    if not margin > 0:  # NaN, or a retention margin with no effect to retain
        row["reason"] = ("no margin: " + ("the draft alone is not worse than full FM's best, "
                         "so there is no improvement to retain" if rule.retain is not None
                         else "it is zero"))
        return Claim(ev, row, None, None, alone, margin)
    ref, ref_wall = ev.references(margin)
    row.update(reference=ref.label(), reference_wall=ref_wall.label(),
               reference_mean=as_num(ref.mean(ev.evaluation)))
    cands = [c for c in ev.configs if c.method == method and c.draft == draft]
    pick = cheapest_within_margin(cands, ref, ev.chosen_on, ev.hib, margin)
    if pick is None:
        pick = best_of(cands, ev.chosen_on, ev.hib)
        row["reason"] = ("no setting was within the margin on the selection seeds; the best "
                         "one is judged")
    if pick is None:
        row["reason"] = "no finite values"
        return Claim(ev, row, None, ref, alone, margin)
    _describe_pick(ev, row, pick, ref, ref_wall, alone, margin, rules.alpha)
    return Claim(ev, row, pick, ref, alone, margin)


def _describe_pick(ev: TaskEvidence, row: dict[str, Any], pick: Config, ref: Config,
                   ref_wall: Config, alone: Config | None, margin: float, alpha: float) -> None:
    """The chosen setting's fields of its row: what it is, its quality and its targets', how
    it compares with its draft, its speed-ups, and its cells flagged by the bound check."""
    evaluation = ev.evaluation
    targets = pick.targets[pick.targets.index.isin(evaluation)].dropna() \
        if pick.targets is not None else pd.Series(dtype=float)
    flagged = pick.flagged[pick.flagged.index.isin(evaluation)] \
        if pick.flagged is not None else pd.Series(dtype=float)
    row.update(variant=pick.variant, t0=as_num(pick.t0), n_budget=as_int(pick.n_steps),
               k_steps=as_int(pick.k_steps), nfe=as_num(pick.nfe),
               mean=as_num(pick.mean(evaluation)), flagged=int(flagged.sum()),
               target_quality=as_num(float(targets.mean())) if len(targets) else None)
    if alone is not None:
        row["versus_draft"] = versus_draft(pick, alone, evaluation, ev.hib, margin, alpha)
    wall = ref_wall.times
    ratio, interval = bootstrap_ratio(wall[wall.index.isin(evaluation)],
                                      pick.times[pick.times.index.isin(evaluation)])
    row.update(speedup_nfe=as_num(ref.nfe / pick.nfe if pick.nfe else math.nan),
               speedup_wall=as_num(ratio), interval=interval)


def headline(df: pd.DataFrame, manifest: Mapping[str, Any]) -> tuple[list[dict], dict]:
    """The headline rows (one per task, warm-start method and draft) and notes per task."""
    frame = coerce_numeric(df)
    rules = Rules.from_dict((manifest.get("evidence") or {}).get("rules"))
    primary = manifest.get("primary_metrics") or {}
    claims: list[Claim] = []
    evidence: dict[str, TaskEvidence] = {}
    for task in sorted(frame["task"].dropna().unique()):
        metric = primary_metric(frame, task, primary)
        if metric is None:
            continue
        rows = frame[(frame["task"] == task) & (frame["metric"] == metric)]
        ev = evidence[task] = task_evidence(rows, task, metric, manifest)
        warm = rows[rows["role"] == Role.WARM_START]
        titles = {str(m): str(t) for m, t in zip(warm["method"], warm["title"], strict=True)}
        for method, draft in sorted({(str(m), str(d)) for m, d in zip(
                warm["method"], warm["draft"], strict=True)}):
            if ev.best is None:
                row = _row(ev, method, titles[method], draft)
                row["reason"] = (f"no reference (full model) cells measure {metric}: nothing "
                                 "to compare with")
                claims.append(Claim(ev, row, None, None, None, math.nan))
            else:
                claims.append(choose_setting(ev, method, titles[method], draft, rules))
    judge_all(claims, rules)
    for c in claims:
        control = c.row["control"]
        c.row["control_ok"] = (c.row["verdict"] == EXPECTED[control]) if control else None
    return [c.row for c in claims], {t: task_notes(ev, [c.row for c in claims
                                                        if c.ev is ev])
                                     for t, ev in evidence.items()}


def task_notes(ev: TaskEvidence, rows: list[dict[str, Any]]) -> list[str]:
    """What the headline says about a task beside its rows: no reference, a censored
    reference, drafts that make it no test of WS-FM, a full model its draft beats, no
    selection seeds."""
    if ev.best is None:
        return [f"{ev.task}: no cells of a reference (full model) method, so no reference and "
                "no headline."]
    notes = []
    if ev.censored:
        notes.append(f"{ev.task}: the reference is censored: full FM's frontier does not reach "
                     f"N <= 2 ({', '.join(ev.censored)}), so a cheaper full-FM configuration "
                     "may be as good and every speed-up is an upper bound.")
    for row in rows:
        if row["verdict"] == "draft-alone-suffices":
            notes.append(f"{ev.task} does not test WS-FM with the {row['draft']} draft: that "
                         "draft alone is non-inferior to full FM's reference "
                         f"({ev.metric}, margin {row['margin']:.4g}).")
    best = ev.best.mean(ev.evaluation)
    for d, alone in sorted(ev.floors.items(), key=lambda kv: str(kv[0])):
        mine = alone.mean(ev.evaluation)
        if math.isfinite(mine) and mine != best and (mine > best) == ev.hib:
            notes.append(f"The {d} draft alone scores better than full FM's best configuration "
                         f"on {ev.task}: the full model is under-trained for this comparison.")
    if not ev.selection:
        notes.append(f"{ev.task}: no selection seeds, so settings were chosen on the evaluation "
                     "seeds and no row makes a claim (set selection_seeds in the suite).")
    return list(dict.fromkeys(notes))


def control_misreads(rows: list[dict[str, Any]]) -> list[str]:
    """A line for each control row whose verdict is not the one it must read: when any, the
    run's verdicts cannot be trusted."""
    return [f"the {r['control']} control ({r['task']}, {r['title']} from the {r['draft']} "
            f"draft) reads {r['verdict']}, not {EXPECTED[r['control']]}"
            for r in rows if r.get("control") in EXPECTED
            and r["verdict"] != EXPECTED[r["control"]]]
