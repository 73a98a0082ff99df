"""The outcome of comparing two runs (harness.analysis.compare): what regressed, improved,
stayed, and what could not be compared, as JSON and as Markdown."""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from harness.analysis.equivalence import IMPROVEMENT, INCONCLUSIVE, REGRESSION, UNCHANGED
from harness.analysis.tolerances import Tolerances


def norm_label(value: Any) -> Any:
    """A hashable, comparable label: NaN -> None, 20.0 -> 20, numpy scalars -> Python."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float):
        return None if math.isnan(value) else int(value) if value.is_integer() else value
    return value


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    obj = norm_label(obj)
    return None if isinstance(obj, float) and not math.isfinite(obj) else obj


def _fmt(value: Any) -> str:
    if isinstance(value, tuple | list):
        return "[" + ", ".join(map(_fmt, value)) + "]"
    value = norm_label(value)
    if value is None:
        return "–"
    return f"{value:.4g}" if isinstance(value, float) else str(value).replace("|", "\\|")


@dataclass
class Comparison:
    """What changed from BASE to NEW. Entries are dicts with the keys of ``_entry``."""

    base: str
    new: str
    alpha: float
    tolerances: Tolerances
    strict: bool = False
    timing: str = "warn"  # "strict": timing changes are regressions, not warnings
    compared: int = 0
    regressions: list[dict[str, Any]] = field(default_factory=list)
    improvements: list[dict[str, Any]] = field(default_factory=list)
    unchanged: int = 0
    # Groups whose change could not be shown within or beyond the tolerance: never unchanged;
    # failures with ``strict``.
    inconclusive: list[dict[str, Any]] = field(default_factory=list)
    groups: list[dict[str, Any]] = field(default_factory=list)  # every quality group, decided
    added: list[dict[str, Any]] = field(default_factory=list)
    removed: list[dict[str, Any]] = field(default_factory=list)
    not_comparable: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    unfinished: list[str] = field(default_factory=list)  # said right under the header

    def record(self, entry: dict[str, Any], status: str) -> str:
        """One decided quality group (harness.analysis.equivalence); returns its status."""
        self.groups.append({**entry, "status": status})
        if status == UNCHANGED:
            self.unchanged += 1
        else:
            {REGRESSION: self.regressions, IMPROVEMENT: self.improvements,
             INCONCLUSIVE: self.inconclusive}[status].append(entry)
        return status

    def timing_change(self, entry: dict[str, Any], worse: bool) -> None:
        """A change judged by timing alone: a warning (load noise must never fail CI by
        itself) unless --timing strict; an improvement stays an improvement."""
        if not worse:
            self.improvements.append(entry)
        elif self.timing == "strict":
            self.regressions.append(entry)
        else:
            self.warnings.append(entry)

    @property
    def exit_code(self) -> int:
        return 1 if self.regressions or (self.strict and self.inconclusive) else 0

    @property
    def counts(self) -> str:
        """The quality counts in one sentence."""
        worse = sum(r["kind"] in ("quality", "nonfinite") for r in self.regressions)
        better = sum(r["kind"] in ("quality", "nonfinite") for r in self.improvements)
        return (f"quality in {self.compared} compared metric groups: {worse} worse, {better} "
                f"better, {self.unchanged} unchanged, {len(self.inconclusive)} inconclusive")

    @property
    def rule(self) -> str:
        """How groups were decided, and what --strict does, in one paragraph."""
        level = f"{1 - 2 * self.alpha:.0%}"
        strict = ("With --strict, inconclusive groups fail the comparison, as do groups missing "
                  "from NEW" if self.strict else "Inconclusive groups do not fail the "
                  "comparison (with --strict they do)")
        return (f"Each metric group is tested against its tolerance t: unchanged when the "
                f"{level} Welch interval of the change lies within ±t (two one-sided tests at "
                f"alpha {self.alpha:g}), a regression (improvement) when it lies wholly beyond "
                "t in the worse (better) direction, otherwise inconclusive, never counted as "
                "unchanged. The same value at every seed is unchanged; zero spread on both "
                "sides makes the change exact, judged by t alone; one seed on a side is "
                "inconclusive unless identical. Non-finite values in NEW where BASE was "
                f"finite are a regression. {strict}.")

    def to_json(self) -> dict[str, Any]:
        keys = ("base", "new", "alpha", "strict", "timing", "compared", "regressions",
                "improvements", "unchanged", "inconclusive", "added", "removed",
                "not_comparable", "warnings", "unfinished", "notes")
        out = {k: getattr(self, k) for k in keys}
        return _jsonable({**out, "tolerances": self.tolerances.to_json(),
                          "exit_code": self.exit_code})

    @property
    def headline(self) -> str:
        """The first line: regressions, the quality counts, the other kinds."""
        n = len(self.regressions)
        kinds = defaultdict(int)
        for r in self.regressions:
            kinds[r["kind"]] += r["kind"] not in ("quality", "nonfinite")
        other = ", ".join(f"{v} {k}" for k, v in sorted(kinds.items()) if v)
        fails = " (failing: --strict)" if self.strict and self.inconclusive else ""
        return (f"**{n} regression{'s' if n != 1 else ''}**: {self.counts}{fails}"
                + (f"; plus {other}" if other else ""))

    def to_markdown(self) -> str:
        lines = [f"# Comparison: {self.base} -> {self.new}", "",
                 self.headline
                 + f". {len(self.warnings)} timing warning(s)"
                 + (" (timing is judged strictly: --timing strict)" if self.timing == "strict"
                    else " (never a regression unless --timing strict)")
                 + f". Alpha {self.alpha:g}, tolerances: {self.tolerances.source}.", "",
                 self.rule, ""]
        lines += [f"**Warning: {u}**" for u in self.unfinished] + ([""] if self.unfinished
                                                                  else [])
        cols = ["kind", "task", "method", "variant", "n_steps", "metric", "base", "new", "delta",
                "interval", "tolerance", "p_value", "detail"]
        head = [{"n_steps": "N", "p_value": "p", "interval": "interval of delta"}.get(c, c)
                for c in cols]
        for title, rows in (("Regressions", self.regressions),
                            ("Improvements", self.improvements),
                            ("Inconclusive", self.inconclusive),
                            ("Timing warnings", self.warnings)):
            lines += [f"## {title}", ""]
            if not rows:
                lines += ["_None._", ""]
                continue
            lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
            lines += ["| " + " | ".join(_fmt(r.get(c)) for c in cols) + " |" for r in rows]
            lines.append("")
        for title, rows in (("Not comparable", self.not_comparable),
                            ("Added (only in new)", self.added),
                            ("Removed (only in base)", self.removed)):
            if rows:
                lines += [f"## {title}", ""]
                lines += [f"- {r['task']} / {r['method']} / {r['variant']} / N={_fmt(r['n_steps'])}"
                          + (f" / {r['metric']}" if r.get("metric") else "")
                          + (f": {r['detail']}" if r.get("detail") else "") for r in rows[:50]]
                lines += [f"- ... and {len(rows) - 50} more"] if len(rows) > 50 else []
                lines.append("")
        if self.notes:
            lines += ["## Notes", ""] + [f"- {note}" for note in self.notes] + [""]
        return "\n".join(lines)
