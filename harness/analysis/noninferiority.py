"""Paired non-inferiority, the rule every headline claim is judged by
(harness.analysis.evidence): the test, Holm's correction, the verdicts, and the rules (alpha,
margins) a suite states in ``[evidence]``.

Per seed s, d_s is how much worse the candidate is than the reference (candidate - reference
for lower-is-better metrics, the reverse otherwise). With margin m, non-inferiority tests
H0: mean(d) >= m against H1: mean(d) < m with a one-sided paired t-test at level alpha;
inferiority tests H0: mean(d) <= m against H1: mean(d) > m. Same seed means the same data
split and the same evaluation randomness (metric projections are seeded by the seed), so
pairing removes what a seed's cells share.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats as sps

from harness.analysis.margins import DEFAULT as DEFAULT_MARGIN
from harness.analysis.margins import Margin, margin_from_table
from harness.errors import ConfigError

VERDICTS = ("non-inferior", "inferior", "inconclusive", "draft-alone-suffices")


@dataclass(frozen=True)
class Rules:
    """How claims are judged: the level alpha, the margins (harness.analysis.margins: by
    default, per metric, per task and metric), and the sequential design's seed cap
    (``max_seeds`` evaluation seeds per task at most, added ``seed_batch`` at a time)."""

    alpha: float = 0.05
    margin: Margin = DEFAULT_MARGIN
    margins: dict[str, Margin] = field(default_factory=dict)
    task_margins: dict[str, dict[str, Margin]] = field(default_factory=dict)
    max_seeds: int | None = None
    seed_batch: int | None = None

    def margin_for(self, metric: str, task: str | None = None) -> Margin:
        """The task's margin for the metric, else the metric's, else the default."""
        return (self.task_margins.get(task or "", {}).get(metric)
                or self.margins.get(metric, self.margin))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None, source: str = "[evidence]") -> Rules:
        data = dict(data or {})
        allowed = ("alpha", "margin", "margins", "task_margins", "max_seeds", "seed_batch")
        unknown = sorted(set(data) - set(allowed))
        if unknown:
            raise ConfigError(f"{source}: unknown key {', '.join(map(repr, unknown))}; "
                              f"allowed: {', '.join(allowed)}")
        alpha = data.get("alpha", 0.05)
        if isinstance(alpha, bool) or not isinstance(alpha, int | float) or not 0 < alpha < 1:
            raise ConfigError(f"{source}: alpha must be a number in (0, 1), got {alpha!r}")
        margin = (margin_from_table(data["margin"], f"{source}: margin") if "margin" in data
                  else DEFAULT_MARGIN)
        return cls(float(alpha), margin, _margins(data.get("margins", {}), f"{source}: margins"),
                   {task: _margins(table, f"{source}: task {task!r} margins")
                    for task, table in _table(data.get("task_margins", {}),
                                              f"{source}: task_margins").items()},
                   *(_optional_count(data.get(k), f"{source}: {k}")
                     for k in ("max_seeds", "seed_batch")))

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "alpha": self.alpha, "margin": self.margin.to_dict(),
            "margins": {m: t.to_dict() for m, t in self.margins.items()},
            "task_margins": {task: {m: t.to_dict() for m, t in table.items()}
                             for task, table in self.task_margins.items()}}
        out.update({k: getattr(self, k) for k in ("max_seeds", "seed_batch")
                    if getattr(self, k) is not None})
        return out


def _table(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where} must be a table of metric = {{ abs/rel/retain, reason }}")
    return dict(value)


def _margins(value: Any, where: str) -> dict[str, Margin]:
    return {m: margin_from_table(t, f"{where}.{m}") for m, t in _table(value, where).items()}


def _optional_count(value: Any, where: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{where} must be a positive integer, got {value!r}")
    return value


@dataclass(frozen=True)
class PairedTest:
    """A paired comparison of a candidate with a reference on common seeds."""

    n: int
    worse: float  # mean of d: how much worse the candidate is (in the metric's units)
    p_noninferior: float  # H1: mean(d) < margin
    p_inferior: float  # H1: mean(d) > margin
    sd: float = math.nan  # standard deviation of d over the seeds


def paired_test(candidate: pd.Series, reference: pd.Series, hib: bool,
                margin: float) -> PairedTest:
    """The one-sided paired t-tests of the module docstring; ``candidate`` and ``reference``
    are values indexed by seed (only seeds with finite values on both sides count)."""
    both = pd.concat([candidate.rename("c"), reference.rename("r")], axis=1).dropna()
    d = (both["r"] - both["c"]) if hib else (both["c"] - both["r"])
    d = d.to_numpy(float)
    n = len(d)
    if n == 0:
        return PairedTest(0, math.nan, math.nan, math.nan)
    mean = float(d.mean())
    if n < 2:
        return PairedTest(n, mean, math.nan, math.nan)
    sd = float(d.std(ddof=1))
    if sd <= 1e-12 * max(1.0, abs(mean), abs(margin)):  # no spread: the sign decides
        return PairedTest(n, mean, float(mean >= margin), float(mean <= margin), sd)
    t = (mean - margin) / (sd / math.sqrt(n))
    return PairedTest(n, mean, float(sps.t.cdf(t, n - 1)), float(sps.t.sf(t, n - 1)), sd)


def paired_interval(candidate: pd.Series, reference: pd.Series, hib: bool,
                    level: float = 0.95) -> tuple[float, float]:
    """A Student-t interval of the mean paired d (how much worse the candidate is), over the
    seeds with finite values on both sides; NaNs with fewer than two seeds."""
    both = pd.concat([candidate.rename("c"), reference.rename("r")], axis=1).dropna()
    d = ((both["r"] - both["c"]) if hib else (both["c"] - both["r"])).to_numpy(float)
    if len(d) < 2:
        return math.nan, math.nan
    half = float(sps.t.ppf(0.5 + level / 2, len(d) - 1)) * float(d.std(ddof=1)) / math.sqrt(len(d))
    return float(d.mean()) - half, float(d.mean()) + half


def holm(p_values: list[float]) -> list[float]:
    """Holm's step-down adjusted p-values (NaN stays NaN and does not count in the family)."""
    p = np.asarray(p_values, dtype=float)
    out = np.full_like(p, np.nan)
    idx = np.flatnonzero(np.isfinite(p))
    m = len(idx)
    running = 0.0
    for rank, i in enumerate(idx[np.argsort(p[idx], kind="stable")]):
        running = max(running, min(1.0, (m - rank) * p[i]))
        out[i] = running
    return out.tolist()


def verdict(p_noninferior: float, p_inferior: float, alpha: float) -> str:
    if p_noninferior < alpha:
        return "non-inferior"
    if p_inferior < alpha:
        return "inferior"
    return "inconclusive"
