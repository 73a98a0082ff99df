"""Non-inferiority margins, stated before the data: how much worse than full FM's reference a
warm start may be and still count as "as good". A suite states them per metric (and per task
and metric), each with the reason a reader would accept it:

    [evidence]
    margin = { rel = 0.05 }                                    # every metric, by default
    margins = { fid = { abs = 0.5, reason = "..." } }          # per metric
    [[tasks]]
    name = "two-moons"
    margins = { swd = { abs = 0.004, reason = "..." } }        # per task and metric

Three kinds:
- ``abs``: in the metric's units (stated before any data is seen);
- ``rel``: a share of the reference's best mean (derived from the data: the report says so);
- ``retain``: effect retention, as in non-inferiority trials: the warm start keeps at least
  this share r of full FM's improvement over that draft alone, margin = (1 - r) x (draft
  alone - full FM's best) for lower-is-better metrics (the effect estimated on the selection
  seeds, never on those that report the claim).
``abs`` and ``rel`` together: the larger applies.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from harness.checks import non_negative
from harness.errors import ConfigError

KEYS = ("abs", "rel", "retain", "reason")


@dataclass(frozen=True)
class Margin:
    """A non-inferiority margin: ``abs`` and/or ``rel``, or ``retain``; and why."""

    abs: float = 0.0
    rel: float = 0.0
    retain: float | None = None
    reason: str = ""

    def value(self, best: float, draft_alone: float | None, hib: bool) -> float:
        """The margin in the metric's units, given full FM's best mean and (for ``retain``)
        the draft alone's mean; NaN when ``retain`` has no draft to measure the effect by.
        A retention margin is <= 0 when the draft alone is not worse than full FM's best:
        there is no effect to retain."""
        if self.retain is None:
            return max(self.rel * abs(best), self.abs)
        if draft_alone is None or not (math.isfinite(draft_alone) and math.isfinite(best)):
            return math.nan
        effect = (best - draft_alone) if hib else (draft_alone - best)
        return (1 - self.retain) * effect

    def describe(self) -> str:
        """The rule in words: "abs 0.004", "5% of the reference's best", "keeps 80% of ..."."""
        if self.retain is not None:
            return f"keeps {self.retain:.0%} of full FM's improvement over the draft alone"
        parts = [f"abs {self.abs:g}"] if self.abs else []
        parts += [f"{self.rel:.0%} of the reference's best mean"] if self.rel else []
        return " or ".join(parts) + (" (the larger)" if len(parts) > 1 else "") or "0"

    def to_dict(self) -> dict[str, Any]:
        """The TOML/JSON table ``margin_from_table`` reads back: only what is set."""
        if self.retain is not None:
            keep = {"retain": self.retain}
        else:
            keep = {k: v for k, v in (("abs", self.abs), ("rel", self.rel)) if v} or {"abs": 0.0}
        return {**keep, **({"reason": self.reason} if self.reason else {})}


DEFAULT = Margin(rel=0.05, reason="the default: 5% of the reference's best mean (no margin "
                                  "stated for this metric)")


def margin_from_table(table: Any, where: str) -> Margin:
    """A Margin from its TOML table; errors name ``where`` and what is allowed."""
    if not isinstance(table, Mapping):
        raise ConfigError(f"{where} must be a table, e.g. {{ abs = 0.01, reason = \"...\" }} or "
                          "{ retain = 0.8 }")
    unknown = sorted(set(table) - set(KEYS))
    if unknown:
        raise ConfigError(f"{where}: unknown key {', '.join(map(repr, unknown))}; allowed: "
                          f"{', '.join(KEYS)}")
    reason = table.get("reason", "")
    if not isinstance(reason, str):
        raise ConfigError(f"{where}: reason must be a string, got {reason!r}")
    if "retain" in table:
        if set(table) & {"abs", "rel"}:
            raise ConfigError(f"{where}: retain is a margin of its own; give it without abs "
                              "or rel")
        retain = non_negative(table["retain"], f"{where}: retain", "a margin")
        if not 0 < retain < 1:
            raise ConfigError(f"{where}: retain = {retain:g} must lie in (0, 1): the share of "
                              "full FM's improvement over the draft alone that must be kept")
        return Margin(retain=retain, reason=reason)
    if not set(table) & {"abs", "rel"}:
        raise ConfigError(f"{where}: give abs (metric units), rel (a share of the reference) "
                          "or retain (a share of full FM's improvement over the draft)")
    return Margin(abs=non_negative(table.get("abs", 0.0), f"{where}: abs", "a margin"),
                  rel=non_negative(table.get("rel", 0.0), f"{where}: rel", "a margin"),
                  reason=reason)
