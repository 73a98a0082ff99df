"""Compare two runs (BASE, NEW) and report regressions: quality, NFE, speed-up bound, timing.

Groups (task, method, variant, N, metric) match by their labels, seeds are replicates. Quality
regresses when the new mean is worse than the base mean by more than the metric's tolerance
(see suites/tolerances.toml) and, with >= 2 seeds on both sides, a one-sided Welch t-test gives
p < alpha. NFE and the NFE speed-up are exact, so any change is a regression. Timing is judged
by wall_speedup, a ratio measured within each run; absolute seconds are information only.
"""

from __future__ import annotations

import argparse
import json
import math
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats as sps

from harness.analysis.speedup import ceil_speedup
from harness.analysis.stats import GROUP, coerce_numeric, flag
from harness.analysis.tolerances import Tol, Tolerances
from harness.errors import ConfigError, RunDirError
from harness.records import atomic
from harness.records.record import COLUMNS, CellRecord
from harness.records.store import read_cells, read_manifest
from harness.roles import Role

CELL = ["task", "method", "variant", "n_steps"]


def _norm(value: Any) -> Any:
    """A hashable, comparable label: NaN -> None, 20.0 -> 20, numpy scalars -> Python."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float):
        return None if math.isnan(value) else int(value) if value.is_integer() else value
    return value


def _num(value: Any) -> float:
    try:
        return math.nan if value is None else float(value)
    except (TypeError, ValueError):
        return math.nan


def _mean(values: list[float]) -> float:
    finite = [v for v in values if math.isfinite(v)]
    return float(np.mean(finite)) if finite else math.nan


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    obj = _norm(obj)
    return None if isinstance(obj, float) and not math.isfinite(obj) else obj


def _fmt(value: Any) -> str:
    value = _norm(value)
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


def _entry(kind: str, key: tuple, metric: str | None, base: float, new: float,
           tolerance: float | None = None, p_value: float | None = None,
           detail: str = "") -> dict[str, Any]:
    return {"kind": kind, **dict(zip(CELL, key[:4], strict=True)), "metric": metric,
            "base": base, "new": new, "delta": _num(new) - _num(base), "tolerance": tolerance,
            "p_value": p_value, "detail": detail}


def _load(path: str | Path, side: str, out: Comparison) -> list[CellRecord]:
    """The run's cell records (manifest and records validated); errors say which side; an
    unfinished run is compared, with a warning under the header."""
    try:
        manifest = read_manifest(path)
        status = manifest.get("status")
        if status != "complete":
            why = f": {manifest['error']}" if manifest.get("error") else ""
            out.unfinished.append(
                f"the {side} run {path} is unfinished (status {status}{why}): what it did not "
                "record is not compared")
        return read_cells(path)
    except RunDirError as exc:  # keep the subclass (SchemaError, ...), name the side
        raise type(exc)(f"{side} run: {exc}") from exc


def _quality(key: tuple, xb: np.ndarray, xn: np.ndarray, hib: bool, tol: Tol, alpha: float,
             out: Comparison) -> None:
    """Classify one metric group as regression, improvement or unchanged."""
    mb, mn = float(xb.mean()), float(xn.mean())
    allowed = tol.allowed(mb)
    worse = (mb - mn) if hib else (mn - mb)
    eps = 1e-12 * max(1.0, abs(mb))
    if abs(worse) <= allowed + eps:
        out.unchanged += 1
        return
    p, how = None, "Welch t-test"
    if min(xb.size, xn.size) < 2:
        how = "fewer than 2 seeds on a side: tolerance alone"
    elif xb.var() == 0 and xn.var() == 0:
        how = "zero spread on both sides: tolerance alone"
    else:
        # worse > 0: test "new worse than base", else "new better than base".
        alt = "greater" if (worse > 0) != hib else "less"
        p = float(sps.ttest_ind(xn, xb, equal_var=False, alternative=alt).pvalue)
    if p is not None and not p < alpha:
        out.unchanged += 1
        return
    detail = (f"{'higher' if hib else 'lower'} is better; {xb.size} vs {xn.size} seeds, {how}; "
              f"tol rel {tol.rel:g} / abs {tol.abs:g}")
    (out.regressions if worse > 0 else out.improvements).append(
        _entry("quality", key, key[4], mb, mn, allowed, p, detail))


def compare_runs(base_dir: str | Path, new_dir: str | Path,
                 tolerances: Tolerances | None = None, alpha: float = 0.05,
                 strict: bool = False, timing: str = "warn",
                 named_metrics: tuple[str, ...] = ()) -> Comparison:
    """Compare run NEW against run BASE; ``strict`` makes groups missing from NEW regressions."""
    if not 0 < alpha < 1:
        raise ConfigError(f"alpha must be in (0, 1), got {alpha}")
    tol = tolerances or Tolerances.default()
    # Runs of an older schema version are migrated as they are read (harness.records.migrate),
    # so both sides are compared in this version's terms; a version this wsfm-bench cannot
    # read is refused by read_manifest, naming the side.
    if timing not in ("warn", "strict"):
        raise ConfigError(f"--timing {timing!r}: choose warn or strict")
    out = Comparison(str(base_dir), str(new_dir), alpha, tol, strict, timing)
    cb, cn = _load(base_dir, "base", out), _load(new_dir, "new", out)
    cells = [{tuple(_norm(f.get(k)) for k in CELL + ["seed"]): f for f in map(CellRecord.flat, c)}
             for c in (cb, cn)]
    frames = [coerce_numeric(pd.DataFrame([row for r in c for row in r.tidy_rows()],
                                          columns=COLUMNS)) for c in (cb, cn)]
    groups = [{tuple(map(_norm, k)): g for k, g in f.groupby(GROUP, dropna=False, sort=False)}
              for f in frames]
    measured = sorted({k[4] for g in groups for k in g})
    for name in named_metrics:
        if name not in measured:
            raise ConfigError(f"--metric-tol names metric {name!r}, which neither run measures; "
                              f"they measure: {', '.join(map(str, measured)) or 'nothing'}")
    if not groups[0].keys() & groups[1].keys():
        raise RunDirError(
            f"the runs have no (task, method, variant, N, metric) group in common: nothing to "
            f"compare (base {base_dir}: {len(groups[0])} groups of tasks "
            f"{sorted({k[0] for k in groups[0]}, key=str)}; new {new_dir}: {len(groups[1])} "
            f"groups of tasks {sorted({k[0] for k in groups[1]}, key=str)})")
    by_cell: list[dict[tuple, list[dict]]] = [defaultdict(list), defaultdict(list)]
    for side, c in zip(by_cell, cells, strict=True):
        for k, r in c.items():
            side[k[:4]].append(r)

    # Comparability: n_eval and n_samples must agree per (task, method, variant, N).
    bad: set[tuple] = set()
    for key in sorted(by_cell[0].keys() & by_cell[1].keys(), key=str):
        for col in ("n_eval", "n_samples"):
            vals = [sorted({_norm(r.get(col)) for r in c[key]}, key=str) for c in by_cell]
            if vals[0] != vals[1]:
                bad.add(key)
                why = f"{col} {vals[0]} in base vs {vals[1]} in new"
                out.not_comparable.append({**dict(zip(CELL, key, strict=True)), "detail": why})

    # Quality, one metric group at a time.
    one_seed = 0
    for key in sorted(groups[0].keys() & groups[1].keys(), key=str):
        if key[:4] in bad:
            continue
        gb, gn = groups[0][key], groups[1][key]
        xb, xn = (g["value"].to_numpy(float) for g in (gb, gn))
        xb, xn = xb[np.isfinite(xb)], xn[np.isfinite(xn)]
        if not xb.size or not xn.size:
            out.notes.append(f"{' / '.join(map(str, key))}: no finite values on one side")
            continue
        hib = [f for f in map(flag, pd.concat([gb, gn])["higher_is_better"]) if f is not None]
        out.compared += 1
        one_seed += min(xb.size, xn.size) < 2
        _quality(key, xb, xn, bool(hib) and 2 * sum(hib) >= len(hib),
                 tol.for_metric(str(key[4])), alpha, out)
    if one_seed:
        out.notes.append(f"{one_seed} group(s) had a single seed on a side: decided by the "
                         "tolerance alone (no t-test); run more seeds for a significance test")
    for side, keys, target in (("base", groups[0].keys() - groups[1].keys(), out.removed),
                               ("new", groups[1].keys() - groups[0].keys(), out.added)):
        target += [{**dict(zip(GROUP, k, strict=True)), "detail": f"only in {side}"}
                   for k in sorted(keys, key=str)]
    if strict:
        out.regressions += [_entry("missing", tuple(r[c] for c in CELL), r["metric"], math.nan,
                                   math.nan, detail="in base, missing from new (--strict)")
                            for r in out.removed]

    # NFE and the speed-up bound: exact, per cell (same seed).
    common = sorted(cells[0].keys() & cells[1].keys(), key=str)
    ratios, n_warm, flips = [], 0, 0
    for key in common:
        b, n = cells[0][key], cells[1][key]
        seed = f"seed {key[4]}"
        nb, nn = _num(b.get("nfe_measured")), _num(n.get("nfe_measured"))
        if not (nb == nn or (math.isnan(nb) and math.isnan(nn))):
            out.regressions.append(_entry("nfe", key, "nfe_measured", nb, nn, 0.0, None,
                                          f"NFE accounting changed ({seed})"))
        if flag(n.get("nfe_ok")) is False:
            why = f"NFE accounting changed: nfe_ok False in new ({seed})"
            out.regressions.append(_entry("nfe", key, "nfe_ok", nb, nn, None, None, why))
        tb, tn = _num(b.get("time_s")), _num(n.get("time_s"))
        if tb > 0 and math.isfinite(tn):
            ratios.append(tn / tb)
        sn = _num(n.get("nfe_speedup"))
        if n.get("role") != Role.WARM_START or math.isnan(sn):
            continue
        n_warm += 1
        theory = _num(n.get("nfe_speedup_theory"))
        theory = ceil_speedup(n.get("t0"), key[3]) if math.isnan(theory) else theory
        if not math.isnan(theory) and abs(sn - theory) > 1e-9 * max(1.0, abs(theory)):
            out.regressions.append(_entry("bound", key, "nfe_speedup", theory, sn, 0.0, None,
                                          f"speed-up bound broken: NFE speed-up {sn:.6g} != "
                                          f"N/ceil((1-t0)N) = {theory:.6g} ({seed})"))
        # A single cell's wall-clock verdict flips with timing noise: counted, and judged
        # per group below against the timing tolerance.
        flips += flag(b.get("bound_ok")) is True and flag(n.get("bound_ok")) is False

    # Timing: wall_speedup (a within-run ratio) per warm-start group, mean over seeds.
    rel = tol.wall_speedup_rel
    warm = {k[:4] for k in common if cells[1][k].get("role") == Role.WARM_START}
    for key in sorted(warm - bad, key=str):
        wb, wn = (_mean([_num(r.get("wall_speedup")) for r in c[key]]) for c in by_cell)
        if not (math.isfinite(wb) and math.isfinite(wn)):
            continue
        if wn < wb * (1 - rel) or wn > wb * (1 + rel):
            why = f"{'dropped' if wn < wb else 'rose'} beyond rel {rel:g} (within-run ratio)"
            out.timing_change(_entry("timing", key, "wall_speedup", wb, wn, wb * rel, None,
                                     why), worse=wn < wb)
        # The wall-clock bound, per group: measured speed-up over S_wall (both from one run).
        eb, en = (_mean([_num(r.get("wall_speedup")) / _num(r.get("wall_bound"))
                         for r in c[key]]) for c in by_cell)
        if math.isfinite(en) and en < 1 - rel and not (math.isfinite(eb) and eb < 1 - rel):
            out.timing_change(_entry(
                "bound", key, "wall_speedup/S_wall", eb, en, rel, None,
                f"speed-up bound broken: measured wall-clock speed-up is {en:.3g} of S_wall "
                f"(mean over seeds), short by more than the timing tolerance {rel:g}"),
                worse=True)
    out.notes.append(f"checked NFE on {len(common)} matched cells and the speed-up bound on "
                     f"{n_warm} warm-start cells")
    if flips:
        out.notes.append(f"{flips} warm-start cell(s) passed the per-cell wall-clock bound check "
                         "in base but not in new (timing noise is judged per group, not per "
                         "cell)")
    if ratios:
        out.notes.append(f"time_s new/base over {len(ratios)} cells: median "
                         f"{float(np.median(ratios)):.3g}x (range {min(ratios):.3g}-"
                         f"{max(ratios):.3g}x); information only, never a regression")
    return out


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The `compare` subcommand's arguments."""
    parser.add_argument("base", type=Path, metavar="BASE", help="the reference run folder")
    parser.add_argument("new", type=Path, metavar="NEW", help="the run folder to check")
    parser.add_argument("--json", action="store_true", help="print JSON instead of Markdown")
    parser.add_argument("--tolerances", type=Path, metavar="FILE",
                        help="tolerance TOML (default: the harness's suites/tolerances.toml)")
    parser.add_argument("--rel", type=float, help="relative tolerance for every metric")
    parser.add_argument("--abs", dest="abs_tol", type=float,
                        help="absolute tolerance for every metric")
    parser.add_argument("--metric-tol", action="append", default=[], metavar="METRIC:KEY=X",
                        help="one metric's tolerance, e.g. swd:rel=0.1,abs=0.01 (repeatable)")
    parser.add_argument("--alpha", type=float, default=0.05,
                        help="significance level of the one-sided Welch t-test (default 0.05)")
    parser.add_argument("--strict", action="store_true",
                        help="groups in BASE that are missing from NEW are regressions")
    parser.add_argument("--timing", choices=("warn", "strict"), default="warn",
                        help="timing changes (wall_speedup, the wall-clock bound) are warnings "
                             "(default: load noise never fails a comparison by itself) or, "
                             "with strict, regressions")
    parser.add_argument("--output", type=Path, metavar="FILE",
                        help="also write the Markdown comparison to FILE")


def run(args: argparse.Namespace) -> int:
    """Compare, print Markdown (or JSON with --json), return 1 on any regression, else 0."""
    tol = Tolerances.from_file(args.tolerances) if args.tolerances else Tolerances.default()
    tol = tol.with_overrides(args.rel, args.abs_tol, args.metric_tol)
    named = tuple(text.partition(":")[0].strip() for text in args.metric_tol)
    result = compare_runs(args.base, args.new, tol, args.alpha, args.strict, args.timing, named)
    if args.output:
        atomic.write_text(args.output, result.to_markdown())
    print(json.dumps(result.to_json(), indent=2) if args.json else result.to_markdown())
    return result.exit_code
