"""The outcome of comparing two runs (harness.analysis.compare): what regressed, improved,
stayed, and what could not be compared, as JSON and as Markdown."""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import numpy as np

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
    added: list[dict[str, Any]] = field(default_factory=list)
    removed: list[dict[str, Any]] = field(default_factory=list)
    not_comparable: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[dict[str, Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    unfinished: list[str] = field(default_factory=list)  # said right under the header

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
        return 1 if self.regressions else 0

    def to_json(self) -> dict[str, Any]:
        keys = ("base", "new", "alpha", "strict", "timing", "compared", "regressions",
                "improvements", "unchanged", "added", "removed", "not_comparable", "warnings",
                "unfinished", "notes")
        out = {k: getattr(self, k) for k in keys}
        return _jsonable({**out, "tolerances": self.tolerances.to_json(),
                          "exit_code": self.exit_code})

    def to_markdown(self) -> str:
        n = len(self.regressions)
        kinds = defaultdict(int)
        for r in self.regressions:
            kinds[r["kind"]] += 1
        worse_quality = kinds.pop("quality", 0)
        better_quality = sum(r["kind"] == "quality" for r in self.improvements)
        other = ", ".join(f"{v} {k}" for k, v in sorted(kinds.items()))
        lines = [f"# Comparison: {self.base} -> {self.new}", "",
                 f"**{n} regression{'s' if n != 1 else ''}**: quality in {self.compared} "
                 f"compared metric groups: {worse_quality} worse, {better_quality} better, "
                 f"{self.unchanged} unchanged"
                 + (f"; plus {other}" if other else "")
                 + f". {len(self.warnings)} timing warning(s)"
                 + (" (timing is judged strictly: --timing strict)" if self.timing == "strict"
                    else " (never a regression unless --timing strict)")
                 + f". Alpha {self.alpha:g}, tolerances: {self.tolerances.source}.", ""]
        lines += [f"**Warning: {u}**" for u in self.unfinished] + ([""] if self.unfinished
                                                                  else [])
        cols = ["kind", "task", "method", "variant", "n_steps", "metric", "base", "new", "delta",
                "tolerance", "p_value", "detail"]
        head = [{"n_steps": "N", "p_value": "p"}.get(c, c) for c in cols]
        for title, rows in (("Regressions", self.regressions),
                            ("Improvements", self.improvements),
                            ("Timing warnings", self.warnings)):
            lines += [f"## {title}", ""]
            if not rows:
                lines += ["_None._", ""]
                continue
            lines += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
            lines += ["| " + " | ".join(_fmt(r[c]) for c in cols) + " |" for r in rows]
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
