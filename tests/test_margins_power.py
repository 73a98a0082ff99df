"""Margins stated before the data (abs, rel, effect retention, with a reason), what the evidence
could show (the smallest margin, the seeds that would decide), and alpha spending."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from harness.analysis.margins import Margin, margin_from_table
from harness.analysis.noninferiority import Rules, paired_test
from harness.analysis.power import detectable_margin, look_levels, seeds_needed, spent
from harness.errors import ConfigError


def test_margin_kinds_and_their_values() -> None:
    assert Margin(abs=0.004).value(0.03, None, False) == pytest.approx(0.004)
    assert Margin(rel=0.05).value(-40.0, None, True) == pytest.approx(2.0)
    assert Margin(abs=1.0, rel=0.05).value(30.0, None, False) == pytest.approx(1.5)
    # Retention: keep 80% of full FM's improvement over the draft alone (lower is better:
    # the draft at 5.0, full FM at 3.0: the warm start may be at most 0.4 worse than it).
    keep = Margin(retain=0.8)
    assert keep.value(3.0, 5.0, False) == pytest.approx(0.4)
    assert keep.value(0.9, 0.6, True) == pytest.approx(0.06)  # higher is better
    assert keep.value(3.0, 2.5, False) < 0  # the draft is better: nothing to retain
    assert math.isnan(keep.value(3.0, None, False))
    assert "80%" in keep.describe() and "abs 0.004" in Margin(abs=0.004).describe()


@pytest.mark.parametrize(("table", "message"), [
    ({"abs": 0.1, "retain": 0.8}, "retain is a margin of its own"),
    ({"retain": 1.2}, r"retain = 1.2 must lie in \(0, 1\)"),
    ({"abs": -1}, "negative"),
    ({"reason": "no number"}, "give abs"),
    ({"abs": 0.1, "why": "x"}, "unknown key 'why'"),
    ({"abs": 0.1, "reason": 3}, "reason must be a string"),
])
def test_bad_margins_are_refused_naming_the_key(table: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        margin_from_table(table, "[evidence]: margins.fid")


def test_rules_take_task_margins_first_and_round_trip() -> None:
    rules = Rules.from_dict({
        "margin": {"rel": 0.05}, "margins": {"fid": {"abs": 0.5, "reason": "a reader"}},
        "task_margins": {"digits": {"fid": {"retain": 0.8, "reason": "effect"}}},
        "max_seeds": 12, "seed_batch": 3})
    assert rules.margin_for("fid", "digits").retain == 0.8
    assert rules.margin_for("fid", "cifar10").abs == 0.5
    assert rules.margin_for("swd", "digits").rel == 0.05
    assert Rules.from_dict(rules.to_dict()) == rules
    with pytest.raises(ConfigError, match="max_seeds must be a positive integer"):
        Rules.from_dict({"max_seeds": 0})


def test_detectable_margin_is_the_one_sided_upper_bound() -> None:
    d = np.array([0.01, -0.02, 0.03, 0.0, 0.015])
    shown = detectable_margin(float(d.mean()), float(d.std(ddof=1)), len(d), 0.05)
    assert shown == pytest.approx(d.mean() + sps.t.ppf(0.95, 4) * d.std(ddof=1) / math.sqrt(5))
    # At exactly that margin the one-sided paired test sits at alpha.
    test = paired_test(__import__("pandas").Series(d), __import__("pandas").Series(d * 0),
                       False, shown)
    assert test.p_noninferior == pytest.approx(0.05)
    assert detectable_margin(0.1, 0.2, 1, 0.05) is None


def test_seeds_needed_decides_and_is_the_least_such_count() -> None:
    mean, sd, margin, alpha = 0.01, 0.02, 0.03, 0.05
    n = seeds_needed(mean, sd, 3, margin, alpha)
    def decides(k: int) -> bool:
        return (margin - mean) / (sd / math.sqrt(k)) > sps.t.ppf(1 - alpha, k - 1)

    assert n is not None and decides(n) and not decides(n - 1)
    assert seeds_needed(mean, sd, 50, margin, alpha) == 50  # already enough: as it has
    assert seeds_needed(0.03, sd, 3, margin, alpha) is None  # on the margin: never
    assert seeds_needed(0.0301, 1.0, 3, margin, alpha) is None  # beyond any feasible count


def test_obrien_fleming_spending_adds_up_to_alpha() -> None:
    assert spent(1.0, 0.05) == pytest.approx(0.05)
    assert spent(0.25, 0.05) < 0.001 < spent(0.5, 0.05) < 0.05  # little spent early
    levels = look_levels([5, 10, 15, 20], 20, 0.05)
    assert sum(levels) == pytest.approx(0.05) and levels[0] < levels[-1]
    stopped_early = look_levels([5, 10], 20, 0.05)  # a run that stopped before the cap
    assert sum(stopped_early) == pytest.approx(spent(0.5, 0.05))
    assert sum(stopped_early) < 0.05


def test_the_margin_shown_uses_the_level_holm_held_the_row_to() -> None:
    """Holm's step-down holds the r-th smallest of m p-values to alpha / (m - r + 1): a row it
    decides has its p within that level, so the margin shown there is within the margin. At
    Bonferroni's alpha / m a decided row could show a margin beyond its own (seen on digits'
    positive control after --until-decided: 0.528 beside a margin of 0.5)."""
    from types import SimpleNamespace

    from harness.analysis.noninferiority import holm
    from harness.analysis.verdicts import _holm_levels

    ps = {"a": 0.004, "b": 0.012, "c": 0.02, "d": float("nan"), "e": 0.3}
    tests = {k: (SimpleNamespace(p_noninferior=p), 1.0, 6) for k, p in ps.items()}
    tests["f"] = (SimpleNamespace(p_noninferior=0.001), 0.5, 6)  # half the look's alpha
    levels = _holm_levels(tests, 0.05)
    # Ranked by p / share: f (0.002), a, b, c, e; five finite, so 0.05 / 5, / 4, / 3, / 2, / 1.
    assert levels == pytest.approx({"f": 0.05 * 0.5 / 5, "a": 0.05 / 4, "b": 0.05 / 3,
                                    "c": 0.05 / 2, "e": 0.05})
    assert "d" not in levels
    keys = ["f", "a", "b", "c", "e"]
    adjusted = holm([tests[k][0].p_noninferior / tests[k][1] for k in keys])
    for key, p_adj in zip(keys, adjusted, strict=True):
        if p_adj <= 0.05:  # decided by Holm: its own p is within its level
            assert tests[key][0].p_noninferior <= levels[key]
    assert tests["c"][0].p_noninferior > 0.05 / 5  # Bonferroni would not have held c
