"""One metric group of two runs tested against its tolerance (harness.analysis.compare).

With d the change of the mean in the metric's worse direction (new - base for a lower-is-better
metric) and t the group's tolerance (harness.analysis.tolerances.Tol.allowed of the base mean),
the 1 - 2 alpha Welch interval of d decides:

- unchanged: the interval lies within [-t, t] (two one-sided tests, TOST, at level alpha);
- regression: it lies wholly above t (the one-sided test of d > t at level alpha);
- improvement: it lies wholly below -t;
- inconclusive: anything else; never counted as unchanged.

Without an interval: the same value at every seed on both sides is unchanged; zero spread on
both sides (two seeds or more each) makes d exact, judged against t alone; one seed on a side
is inconclusive unless the values are identical (no spread to judge a change by).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats as sps

UNCHANGED, REGRESSION, IMPROVEMENT, INCONCLUSIVE = (
    "unchanged", "regression", "improvement", "inconclusive")


@dataclass(frozen=True)
class Decision:
    """A group's outcome: ``worse`` is d, ``interval`` its 1 - 2 alpha interval (None without
    one), ``p_value`` that of the test that decided it (None without one)."""

    status: str
    worse: float
    interval: tuple[float, float] | None
    p_value: float | None
    how: str


def decide(base: np.ndarray, new: np.ndarray, tolerance: float, alpha: float,
           higher_is_better: bool, identical: bool = False) -> Decision:
    """The outcome for the finite values ``base`` and ``new`` of one group (both non-empty);
    ``identical``: the same value at every seed on both sides."""
    sign = -1.0 if higher_is_better else 1.0
    worse = sign * (float(new.mean()) - float(base.mean()))
    if identical:
        return Decision(UNCHANGED, 0.0, (0.0, 0.0), None, "the same value at every seed")
    if min(base.size, new.size) < 2:
        return Decision(INCONCLUSIVE, worse, None, None,
                        "one seed on a side: a change cannot be told from seed noise")
    var_b, var_n = float(base.var(ddof=1)) / base.size, float(new.var(ddof=1)) / new.size
    se = math.sqrt(var_b + var_n)
    if se == 0.0:
        eps = 1e-12 * max(1.0, abs(float(base.mean())))
        status = (UNCHANGED if abs(worse) <= tolerance + eps
                  else REGRESSION if worse > 0 else IMPROVEMENT)
        return Decision(status, worse, (worse, worse), None,
                        "zero spread on both sides: the change is exact, judged by the "
                        "tolerance alone")
    df = (var_b + var_n) ** 2 / ((var_b ** 2 / (base.size - 1) if var_b else 0.0)
                                 + (var_n ** 2 / (new.size - 1) if var_n else 0.0))
    half = float(sps.t.ppf(1 - alpha, df)) * se
    low, high = worse - half, worse + half
    how = f"Welch {1 - 2 * alpha:.0%} interval of the change, {df:.3g} df"
    if low > tolerance:
        p = float(sps.t.sf((worse - tolerance) / se, df))
        return Decision(REGRESSION, worse, (low, high), p, how)
    if high < -tolerance:
        p = float(sps.t.cdf((worse + tolerance) / se, df))
        return Decision(IMPROVEMENT, worse, (low, high), p, how)
    if -tolerance <= low and high <= tolerance:
        p = max(float(sps.t.sf((worse + tolerance) / se, df)),
                float(sps.t.cdf((worse - tolerance) / se, df)))
        return Decision(UNCHANGED, worse, (low, high), p, how + " (TOST)")
    return Decision(INCONCLUSIVE, worse, (low, high), None, how)
