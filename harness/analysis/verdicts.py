"""The headline's verdicts (harness.analysis.evidence): every claim of the headline, on its
evaluation seeds, one family.

Each claim is a warm start's chosen setting against full FM's reference, with its draft alone
against the same reference beside it: one-sided paired non-inferiority tests at the claim's
margin, Holm-adjusted over every test of the headline (all tasks, controls included). With a
sequential design (``[evidence] max_seeds``, harness.run.sequential) a task's evaluation seeds
grow in looks; a claim is tested at each look of its task on the seeds it had then, at that
look's share of alpha (harness.analysis.power.look_levels: p-values are divided by the
share before Holm, a weighted Holm), and its verdict is the first decided one (else the last
look's). An undecided claim says the smallest margin its evidence could have shown and about
how many evaluation seeds would decide it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from harness.analysis.frontier import Config, as_num
from harness.analysis.noninferiority import PairedTest, Rules, holm, paired_test, verdict
from harness.analysis.power import detectable_margin, look_levels, seeds_needed


@dataclass
class Claim:
    """One headline row and what it is tested with (``pick`` None: nothing to test)."""

    ev: Any  # harness.analysis.evidence.TaskEvidence
    row: dict[str, Any]
    pick: Config | None
    ref: Config | None
    alone: Config | None
    margin: float

    @property
    def testable(self) -> bool:
        return self.pick is not None and self.ref is not None


def _looks(claim: Claim, rules: Rules) -> tuple[list[int], list[float]]:
    """(evaluation seeds at each look of the claim's task, the level each look is tested at)."""
    looks = [n for n in claim.ev.looks if 0 < n <= len(claim.ev.evaluation)]
    if not looks or looks[-1] != len(claim.ev.evaluation):
        looks.append(len(claim.ev.evaluation))
    if len(looks) == 1:
        return looks, [rules.alpha]
    cap = max(rules.max_seeds or looks[-1], looks[-1])
    return looks, look_levels(looks, cap, rules.alpha)


def _draft_key(c: Claim) -> tuple:
    """One test per draft alone, reference and margin: claims sharing them share it."""
    return ("draft", c.ev.task, c.row["draft"], c.ref.method, c.ref.variant, c.ref.n_steps,
            c.margin)


def _tests_at(claims: list[Claim], pending: set[int], look: int,
              rules: Rules) -> dict[tuple, tuple[PairedTest, float, int]]:
    """Every pending claim's tests at ``look`` of its task: (test, share of alpha, seeds), the
    claim's own under ("row", i), its draft alone's under ``_draft_key``."""
    tests = {}
    for i in sorted(pending):
        c = claims[i]
        looks, levels = _looks(c, rules)
        if look >= len(looks):
            continue
        seeds, share = c.ev.evaluation[: looks[look]], levels[look] / rules.alpha
        hib = c.ev.hib
        tests[("row", i)] = (paired_test(c.pick.on(seeds), c.ref.on(seeds), hib, c.margin),
                             share, len(seeds))
        if c.alone is not None:
            tests[_draft_key(c)] = (paired_test(c.alone.on(seeds), c.ref.on(seeds), hib,
                                                c.margin), share, len(seeds))
    return tests


def _weighted(tests: dict, side: str) -> dict:
    """Each test's p-value of one side ("p_noninferior" or "p_inferior") divided by its share
    of alpha (a share of 0 never rejects: infinity)."""
    return {key: getattr(t, side) / share if share > 0 else math.inf
            for key, (t, share, _) in tests.items()}


def _adjusted(tests: dict, side: str) -> dict:
    """Holm-adjusted p-values of one side, each divided by its share of alpha first."""
    raw = _weighted(tests, side)
    return dict(zip(raw, holm([min(p, 1.0) for p in raw.values()]), strict=True))


def _holm_levels(tests: dict, alpha: float) -> dict:
    """The level Holm's step-down holds each non-inferiority test to at its rank r (1: the
    smallest p / share) among the m finite ones: alpha * share / (m - r + 1). A row decided
    non-inferior has its own p within it, so the margin shown at that level is within the
    margin; a plain alpha * share / m (Bonferroni) could state a larger one beside the verdict."""
    weighted = _weighted(tests, "p_noninferior")  # sorted by value alone: keys may not compare
    ranked = sorted((key for key, p in weighted.items() if math.isfinite(p)),
                    key=weighted.__getitem__)
    return {key: alpha * tests[key][1] / (len(ranked) - r) for r, key in enumerate(ranked)}


def judge_all(claims: list[Claim], rules: Rules) -> None:
    """Set each claim's verdict, reason, p-value and power statement in its row."""
    pending = {i for i, c in enumerate(claims) if c.testable}
    look = 0
    while pending and look < max(len(_looks(claims[i], rules)[0]) for i in pending):
        tests = _tests_at(claims, pending, look, rules)
        ni, inf = _adjusted(tests, "p_noninferior"), _adjusted(tests, "p_inferior")
        size = sum(math.isfinite(t.p_noninferior) for t, _, _ in tests.values()) or 1
        levels = _holm_levels(tests, rules.alpha)
        for key_row, (test, share, _) in tests.items():
            if key_row[0] != "row":
                continue
            i = key_row[1]
            c = claims[i]
            key = _draft_key(c) if c.alone is not None else None
            floor = verdict(ni[key], inf[key], rules.alpha) if key in tests else None
            own = verdict(ni[("row", i)], inf[("row", i)], rules.alpha)
            v, why = _verdict(own, floor, c.row["draft"], bool(c.ev.selection), test.n)
            last = look == len(_looks(c, rules)[0]) - 1
            if v == "inconclusive" and not last:
                continue
            pending.discard(i)
            c.row.update(verdict=v, p_value=as_num(ni[("row", i)]), looks=look + 1,
                         n_evaluation_seeds=test.n)
            c.row["reason"] = why or c.row["reason"]
            _power(c, test, tests[key][0] if key in tests else None, own, floor,
                   levels.get(("row", i), rules.alpha * share / size))
        look += 1
    for c in claims:
        _speed_up_claim(c.row)


def _verdict(own: str, floor: str | None, draft: str, selected: bool,
             n: int) -> tuple[str, str]:
    """(verdict, reason) of a claim whose own test says ``own``, given its draft alone's
    verdict ``floor`` (None: not run), whether settings were chosen on selection seeds, and
    ``n`` evaluation seeds with values on both sides."""
    if floor is None:
        return "inconclusive", (f"no cells of the {draft} draft alone: the floor is untested "
                                "(add a floor method, the draft alone, with this draft)")
    if floor == "non-inferior":
        return "draft-alone-suffices", (f"the {draft} draft alone is non-inferior to the "
                                        "reference: not a WS-FM speed-up")
    if not selected:
        return "inconclusive", ("settings were chosen on the evaluation seeds (the suite has no "
                                "selection_seeds): no claim")
    if n < 2:
        return "inconclusive", "fewer than 2 evaluation seeds with values on both sides"
    if own == "non-inferior" and floor != "inferior":
        return "inconclusive", (f"the {draft} draft alone is neither shown worse than the "
                                "reference nor non-inferior to it, so the speed-up cannot be "
                                "credited to WS-FM")
    return own, ""


def _power(c: Claim, test: PairedTest, draft_test: PairedTest | None, own: str,
           floor: str | None, alpha: float) -> None:
    """The smallest margin the claim's evidence could have shown (at ``alpha``, the level
    Holm held its test to at the look that decided it) and, undecided, about how many
    evaluation seeds would decide what blocks it."""
    row = c.row
    shown = detectable_margin(test.worse, test.sd, test.n, alpha)
    row["detectable_margin"] = None if shown is None else as_num(shown)
    if row["verdict"] != "inconclusive":
        return
    blocking = [t for t, state in ((test, own), (draft_test, floor))
                if t is not None and state == "inconclusive"]
    needed = [seeds_needed(t.worse, t.sd, t.n, c.margin, alpha) for t in blocking]
    if not blocking or any(n is None for n in needed):
        row["reason"] += ("; " if row["reason"] else "") + (
            "at its observed mean and spread, no feasible number of evaluation seeds decides "
            "it (its mean lies too close to the margin)" if blocking
            else "more seeds would not decide it")
        return
    row["seeds_needed"] = max(needed)
    row["reason"] += ("; " if row["reason"] else "") + (
        f"about {max(needed)} evaluation seeds would decide it (it has {test.n})")


def _speed_up_claim(row: dict[str, Any]) -> None:
    """A row states its speed-ups only when non-inferior with every chosen cell passing the
    bound and NFE checks; a censored reference makes them upper bounds."""
    backed = row["verdict"] == "non-inferior"
    if backed and row["flagged"]:
        row["reason"] += ("; " if row["reason"] else "") + (
            f"{row['flagged']} of its cells failed the bound or NFE check: no speed-up is "
            "claimed from them")
        backed = False
    if backed and row["reference_censored"]:
        row["reason"] += ("; " if row["reason"] else "") + (
            "the reference is censored (full FM's frontier does not reach N <= 2): the "
            "speed-ups are upper bounds")
    row["speedup_backed"] = backed
