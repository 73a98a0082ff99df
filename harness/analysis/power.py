"""What the evidence could show, and what more would decide it (harness.analysis.evidence):

- the smallest margin a paired comparison could have shown non-inferior with (the upper end
  of the one-sided 1 - alpha t-bound on the mean paired difference);
- about how many evaluation seeds an undecided paired test needs, at its observed mean and
  spread, to reject one side at level alpha;
- alpha spending for a group-sequential design: seeds added in looks, the level spent at each
  look an increment of the O'Brien-Fleming-type spending function (Lan & DeMets)
  A(t) = 2 - 2 Phi(z_{1 - alpha/2} / sqrt(t)), t the information fraction (evaluation seeds
  so far over the most allowed). The increments sum to alpha, so testing each look at its
  increment keeps the error rate at alpha (a Bonferroni split over the looks: conservative,
  since looks are correlated).
"""

from __future__ import annotations

import math

from scipy import stats as sps

MAX_SEEDS_STATED = 10_000  # beyond this, "no feasible number of seeds decides it"


def detectable_margin(mean: float, sd: float, n: int, alpha: float) -> float | None:
    """The smallest margin a one-sided paired test at ``alpha`` would have shown the candidate
    non-inferior with: mean + t_{1 - alpha, n - 1} sd / sqrt(n) (None with < 2 seeds)."""
    if n < 2 or not (math.isfinite(mean) and math.isfinite(sd)):
        return None
    return mean + float(sps.t.ppf(1 - alpha, n - 1)) * sd / math.sqrt(n)


def seeds_needed(mean: float, sd: float, n: int, margin: float, alpha: float) -> int | None:
    """About how many seeds decide a paired test of mean difference ``mean`` (spread ``sd``)
    against ``margin`` at ``alpha``, one side or the other, if the mean and spread held: the
    least n with |mean - margin| / (sd / sqrt(n)) > t_{1 - alpha, n - 1}. None when none up to
    MAX_SEEDS_STATED does (the mean sits on the margin)."""
    if not (math.isfinite(mean) and math.isfinite(sd) and math.isfinite(margin)):
        return None
    gap = abs(mean - margin)
    if gap == 0:
        return None
    if sd <= 0:
        return max(n, 2)
    low = max(2, n)
    if gap / (sd / math.sqrt(low)) > sps.t.ppf(1 - alpha, low - 1):
        return low
    high = MAX_SEEDS_STATED
    if gap / (sd / math.sqrt(high)) <= sps.t.ppf(1 - alpha, high - 1):
        return None
    while high - low > 1:  # the statistic grows with n faster than the quantile falls
        mid = (low + high) // 2
        if gap / (sd / math.sqrt(mid)) > sps.t.ppf(1 - alpha, mid - 1):
            high = mid
        else:
            low = mid
    return high


def spent(fraction: float, alpha: float) -> float:
    """The O'Brien-Fleming-type spending function A(t) at information fraction t."""
    if fraction <= 0:
        return 0.0
    z = sps.norm.ppf(1 - alpha / 2)
    return float(2 - 2 * sps.norm.cdf(z / math.sqrt(min(fraction, 1.0))))


def look_levels(seeds_at_looks: list[int], max_seeds: int, alpha: float) -> list[float]:
    """The level each look is tested at: the increments of A(t) at t = n_k / max_seeds, the
    last look given what remains of alpha (a look at the cap spends all of it)."""
    levels, before = [], 0.0
    for i, n in enumerate(seeds_at_looks):
        last = i == len(seeds_at_looks) - 1 and n >= max_seeds
        now = alpha if last else spent(n / max_seeds, alpha)
        levels.append(max(now - before, 0.0))
        before = now
    return levels
