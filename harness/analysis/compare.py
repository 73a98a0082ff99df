"""Compare two runs (BASE, NEW) and report regressions: quality, NFE, speed-up bound, timing.

Groups (task, method, variant, N, metric) match by their labels, seeds are replicates. Each
quality group is tested against its metric's tolerance (suites/tolerances.toml), not against
a zero difference: unchanged, regression, improvement or inconclusive
(harness.analysis.equivalence). Non-finite values in NEW at seeds where BASE was finite are a
regression (kind "nonfinite"): a diverged run never passes as unchanged. NFE and the NFE
speed-up are exact, so any change is a regression. Timing is judged by wall_speedup, a ratio
measured within each run; absolute seconds are information only.
"""

from __future__ import annotations

import argparse
import json
import math
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from harness.analysis.ci_outputs import junit_xml, short_markdown
from harness.analysis.comparison import Comparison, norm_label
from harness.analysis.equivalence import IMPROVEMENT, INCONCLUSIVE, REGRESSION, decide
from harness.analysis.speedup import ceil_speedup
from harness.analysis.stats import GROUP, coerce_numeric, flag
from harness.analysis.tolerances import Tol, Tolerances
from harness.errors import ConfigError, RunDirError
from harness.records import atomic
from harness.records.record import COLUMNS, CellRecord
from harness.records.store import read_cells, read_manifest
from harness.roles import Role

CELL = ["task", "method", "variant", "n_steps"]


def _num(value: Any) -> float:
    try:
        return math.nan if value is None else float(value)
    except (TypeError, ValueError):
        return math.nan


def _mean(values: list[float]) -> float:
    finite = [v for v in values if math.isfinite(v)]
    return float(np.mean(finite)) if finite else math.nan


def _entry(kind: str, key: ConfigKey, metric: str | None, base: float, new: float,
           tolerance: float | None = None, p_value: float | None = None,
           detail: str = "", interval: tuple[float, float] | None = None) -> dict[str, Any]:
    return {"kind": kind, **key._asdict(), "metric": metric,
            "base": base, "new": new, "delta": _num(new) - _num(base), "tolerance": tolerance,
            "p_value": p_value, "interval": interval, "detail": detail}


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


def _by_seed(group: pd.DataFrame) -> dict[Any, float]:
    return {norm_label(seed): float(v) for seed, v in zip(group["seed"], group["value"],
                                                          strict=True)}


def _seeds(values: dict[Any, float], which: list[Any]) -> str:
    return ", ".join(f"{s} ({values[s]:g})" for s in which)


def _quality(key: GroupKey, gb: pd.DataFrame, gn: pd.DataFrame, hib: bool, tol: Tol,
             alpha: float, out: Comparison) -> str:
    """Decide one metric group (harness.analysis.equivalence) and record it; returns its
    status. Non-finite values in NEW where BASE was finite are a regression."""
    vb, vn = _by_seed(gb), _by_seed(gn)
    finite_b = {s: v for s, v in vb.items() if math.isfinite(v)}
    finite_n = {s: v for s, v in vn.items() if math.isfinite(v)}
    xb, xn = np.array(list(finite_b.values())), np.array(list(finite_n.values()))
    mb = float(xb.mean()) if xb.size else math.nan
    allowed = tol.allowed(mb) if xb.size else None
    broke = sorted(set(vn) - set(finite_n) - (set(vb) - set(finite_b)), key=str)
    mended = sorted((set(vb) - set(finite_b)) & set(finite_n), key=str)
    detail = f"{'higher' if hib else 'lower'} is better; {len(vb)} vs {len(vn)} seeds; "
    if broke:
        why = f"non-finite in new at seed(s) {_seeds(vn, broke)} where base was finite"
        return out.record(_entry("nonfinite", key.config, key.metric, mb,
                                 float(np.mean(list(vn.values()))), allowed, None,
                                 detail + why), REGRESSION)
    if mended or not (xb.size and xn.size):
        why = (f"finite again at seed(s) {', '.join(map(str, mended))}" if mended
               else "no finite value on a side")
        entry = _entry("nonfinite", key.config, key.metric, mb,
                       float(np.mean(list(vn.values()))), allowed, None, detail + why)
        return out.record(entry, IMPROVEMENT if mended else INCONCLUSIVE)
    d = decide(xb, xn, allowed, alpha, hib, identical=finite_b == finite_n)
    sign = -1.0 if hib else 1.0  # the interval of d, as one of new - base
    interval = None if d.interval is None else tuple(sorted(sign * v for v in d.interval))
    return out.record(_entry("quality", key.config, key.metric, mb, float(xn.mean()), allowed,
                             d.p_value, detail + f"{d.how}; tol rel {tol.rel:g} / abs "
                             f"{tol.abs:g}", interval), d.status)


class ConfigKey(NamedTuple):
    """One configuration of a run: what its seeds replicate."""

    task: Any
    method: Any
    variant: Any
    n_steps: Any


class CellKey(NamedTuple):
    """One cell: a configuration at one seed."""

    config: ConfigKey
    seed: Any


class GroupKey(NamedTuple):
    """One metric of one configuration: what quality is compared on."""

    config: ConfigKey
    metric: Any

    def label(self) -> str:
        return " / ".join(map(str, (*self.config, self.metric)))


@dataclass
class Side:
    """One run as compare sees it: its cells (flat), metric groups and cells per config."""

    cells: dict[CellKey, dict[str, Any]]
    groups: dict[GroupKey, pd.DataFrame]
    configs: dict[ConfigKey, list[dict[str, Any]]]

    @classmethod
    def of(cls, records: list[CellRecord]) -> Side:
        flat = [r.flat() for r in records]
        cells = {CellKey(_config_key(f), norm_label(f["seed"])): f for f in flat}
        configs: dict[ConfigKey, list[dict[str, Any]]] = defaultdict(list)
        for key, f in cells.items():
            configs[key.config].append(f)
        frame = coerce_numeric(pd.DataFrame([row for r in records for row in r.tidy_rows()],
                                            columns=COLUMNS))
        groups = {GroupKey(ConfigKey(*map(norm_label, k[:4])), norm_label(k[4])): g
                  for k, g in frame.groupby(GROUP, dropna=False, sort=False)}
        return cls(cells, groups, dict(configs))


def _config_key(row: dict[str, Any]) -> ConfigKey:
    return ConfigKey(*(norm_label(row.get(k)) for k in CELL))


def compare_runs(base_dir: str | Path, new_dir: str | Path,
                 tolerances: Tolerances | None = None, alpha: float = 0.05,
                 strict: bool = False, timing: str = "warn",
                 named_metrics: tuple[str, ...] = ()) -> Comparison:
    """Compare run NEW against run BASE; ``strict`` makes groups missing from NEW regressions.
    Runs of an older schema version are migrated as they are read (harness.records.migrate),
    so both sides are compared in this version's terms; a version this wsfm-bench cannot read
    is refused by read_manifest, naming the side."""
    if not 0 < alpha < 1:
        raise ConfigError(f"alpha must be in (0, 1), got {alpha}")
    if timing not in ("warn", "strict"):
        raise ConfigError(f"--timing {timing!r}: choose warn or strict")
    tol = tolerances or Tolerances.default()
    out = Comparison(str(base_dir), str(new_dir), alpha, tol, strict, timing)
    base, new = Side.of(_load(base_dir, "base", out)), Side.of(_load(new_dir, "new", out))
    _check_overlap(base, new, base_dir, new_dir, named_metrics)
    bad = _not_comparable(base, new, out)
    _compare_quality(base, new, bad, tol, alpha, out)
    _compare_presence(base, new, strict, out)
    common = sorted(base.cells.keys() & new.cells.keys(), key=str)
    _compare_cells(base, new, common, out)
    warm = {k.config for k in common if new.cells[k].get("role") == Role.WARM_START}
    _compare_timing(base, new, sorted(warm - bad, key=str), tol.wall_speedup_rel, out)
    return out


def _check_overlap(base: Side, new: Side, base_dir: str | Path, new_dir: str | Path,
                   named_metrics: tuple[str, ...]) -> None:
    """Refuse a --metric-tol for a metric neither run measures, and runs with nothing in
    common."""
    measured = sorted({k.metric for side in (base, new) for k in side.groups}, key=str)
    for name in named_metrics:
        if name not in measured:
            raise ConfigError(f"--metric-tol names metric {name!r}, which neither run measures; "
                              f"they measure: {', '.join(map(str, measured)) or 'nothing'}")
    if not base.groups.keys() & new.groups.keys():
        def tasks(side: Side) -> list[Any]:
            return sorted({k.config.task for k in side.groups}, key=str)

        raise RunDirError(
            f"the runs have no (task, method, variant, N, metric) group in common: nothing to "
            f"compare (base {base_dir}: {len(base.groups)} groups of tasks {tasks(base)}; new "
            f"{new_dir}: {len(new.groups)} groups of tasks {tasks(new)})")


def _not_comparable(base: Side, new: Side, out: Comparison) -> set[ConfigKey]:
    """Configurations whose n_eval or n_samples differ between the runs (not compared)."""
    bad: set[ConfigKey] = set()
    for key in sorted(base.configs.keys() & new.configs.keys(), key=str):
        for col in ("n_eval", "n_samples"):
            vals = [sorted({norm_label(r.get(col)) for r in side.configs[key]}, key=str)
                    for side in (base, new)]
            if vals[0] != vals[1]:
                bad.add(key)
                out.not_comparable.append({**key._asdict(), "detail": f"{col} {vals[0]} in "
                                                                      f"base vs {vals[1]} in new"})
    return bad


def _compare_quality(base: Side, new: Side, bad: set[ConfigKey], tol: Tolerances,
                     alpha: float, out: Comparison) -> None:
    """Quality, one metric group at a time (harness.analysis.compare._quality)."""
    one_seed = 0
    for key in sorted(base.groups.keys() & new.groups.keys(), key=str):
        if key.config in bad:
            continue
        gb, gn = base.groups[key], new.groups[key]
        hib = [f for f in map(flag, pd.concat([gb, gn])["higher_is_better"]) if f is not None]
        out.compared += 1
        status = _quality(key, gb, gn, bool(hib) and 2 * sum(hib) >= len(hib),
                          tol.for_metric(str(key.metric)), alpha, out)
        one_seed += status == INCONCLUSIVE and min(len(gb), len(gn)) < 2
    if one_seed:
        out.notes.append(f"{one_seed} group(s) had a single seed on a side: inconclusive "
                         "unless their values are identical; run more seeds to decide them")


def _compare_presence(base: Side, new: Side, strict: bool, out: Comparison) -> None:
    """Groups only in one run; with ``strict``, those missing from NEW are regressions."""
    for side, keys, target in (("base", base.groups.keys() - new.groups.keys(), out.removed),
                               ("new", new.groups.keys() - base.groups.keys(), out.added)):
        target += [{**k.config._asdict(), "metric": k.metric, "detail": f"only in {side}"}
                   for k in sorted(keys, key=str)]
    if strict:
        out.regressions += [_entry("missing", _config_key(r), r["metric"], math.nan, math.nan,
                                   detail="in base, missing from new (--strict)")
                            for r in out.removed]


def _compare_cells(base: Side, new: Side, common: list[CellKey], out: Comparison) -> None:
    """NFE and the NFE speed-up bound: exact, per cell (same seed); absolute times as
    information."""
    ratios, n_warm, flips = [], 0, 0
    for key in common:
        b, n = base.cells[key], new.cells[key]
        seed = f"seed {key.seed}"
        nb, nn = _num(b.get("nfe_measured")), _num(n.get("nfe_measured"))
        if not (nb == nn or (math.isnan(nb) and math.isnan(nn))):
            out.regressions.append(_entry("nfe", key.config, "nfe_measured", nb, nn, 0.0, None,
                                          f"NFE accounting changed ({seed})"))
        if flag(n.get("nfe_ok")) is False:
            why = f"NFE accounting changed: nfe_ok False in new ({seed})"
            out.regressions.append(_entry("nfe", key.config, "nfe_ok", nb, nn, None, None, why))
        tb, tn = _num(b.get("time_s")), _num(n.get("time_s"))
        if tb > 0 and math.isfinite(tn):
            ratios.append(tn / tb)
        sn = _num(n.get("nfe_speedup"))
        if n.get("role") != Role.WARM_START or math.isnan(sn):
            continue
        n_warm += 1
        theory = _num(n.get("nfe_speedup_theory"))
        theory = ceil_speedup(n.get("t0"), key.config.n_steps) if math.isnan(theory) else theory
        if not math.isnan(theory) and abs(sn - theory) > 1e-9 * max(1.0, abs(theory)):
            out.regressions.append(_entry("bound", key.config, "nfe_speedup", theory, sn, 0.0,
                                          None, f"speed-up bound broken: NFE speed-up {sn:.6g} "
                                          f"!= N/ceil((1-t0)N) = {theory:.6g} ({seed})"))
        # A single cell's wall-clock verdict flips with timing noise: counted, and judged
        # per group against the timing tolerance (_compare_timing).
        flips += flag(b.get("bound_ok")) is True and flag(n.get("bound_ok")) is False
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


def _compare_timing(base: Side, new: Side, warm: list[ConfigKey], rel: float,
                    out: Comparison) -> None:
    """Per warm-start configuration: wall_speedup (a within-run ratio, mean over seeds) and
    the wall-clock bound (measured speed-up over S_wall), against the timing tolerance."""
    for key in warm:
        wb, wn = (_mean([_num(r.get("wall_speedup")) for r in side.configs[key]])
                  for side in (base, new))
        if not (math.isfinite(wb) and math.isfinite(wn)):
            continue
        if wn < wb * (1 - rel) or wn > wb * (1 + rel):
            why = f"{'dropped' if wn < wb else 'rose'} beyond rel {rel:g} (within-run ratio)"
            out.timing_change(_entry("timing", key, "wall_speedup", wb, wn, wb * rel, None,
                                     why), worse=wn < wb)
        eb, en = (_mean([_num(r.get("wall_speedup")) / _num(r.get("wall_bound"))
                         for r in side.configs[key]]) for side in (base, new))
        if math.isfinite(en) and en < 1 - rel and not (math.isfinite(eb) and eb < 1 - rel):
            out.timing_change(_entry(
                "bound", key, "wall_speedup/S_wall", eb, en, rel, None,
                f"speed-up bound broken: measured wall-clock speed-up is {en:.3g} of S_wall "
                f"(mean over seeds), short by more than the timing tolerance {rel:g}"),
                worse=True)


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
                        help="level of the tests against the tolerance: unchanged needs the "
                             "1 - 2 alpha Welch interval within it (default 0.05: 90%%)")
    parser.add_argument("--strict", action="store_true",
                        help="groups in BASE that are missing from NEW are regressions, and "
                             "inconclusive groups fail the comparison")
    parser.add_argument("--timing", choices=("warn", "strict"), default="warn",
                        help="timing changes (wall_speedup, the wall-clock bound) are warnings "
                             "(default: load noise never fails a comparison by itself) or, "
                             "with strict, regressions")
    parser.add_argument("--output", type=Path, metavar="FILE",
                        help="also write the Markdown comparison to FILE")
    parser.add_argument("--junit", type=Path, metavar="FILE",
                        help="also write JUnit XML to FILE: a test case per metric group, "
                             "regressions as failures, inconclusive groups skipped (failures "
                             "with --strict)")
    parser.add_argument("--markdown", type=Path, metavar="FILE",
                        help="also write a short Markdown summary to FILE (a CI job summary "
                             "or pull-request comment): counts, regressions, inconclusive")


def _outputs(args: argparse.Namespace) -> dict[str, Path]:
    """--output, --junit, --markdown as given; a folder is refused before any work."""
    given = {name: getattr(args, name) for name in ("output", "junit", "markdown")
             if getattr(args, name) is not None}
    for name, path in given.items():
        if path.is_dir():
            raise ConfigError(f"--{name} {path} is a folder; give a file path to write")
    return given


def _write(name: str, path: Path, text: str) -> None:
    try:
        atomic.write_text(path, text)
    except OSError as exc:
        raise ConfigError(f"--{name} {path} cannot be written ({exc.strerror or exc}); give a "
                          "file path in a folder you can write") from exc


def run(args: argparse.Namespace) -> int:
    """Compare, print Markdown (or JSON with --json), write the files asked for; return 1 on
    any regression (or, with --strict, any inconclusive group), else 0."""
    outputs = _outputs(args)
    tol = Tolerances.from_file(args.tolerances) if args.tolerances else Tolerances.default()
    tol = tol.with_overrides(args.rel, args.abs_tol, args.metric_tol)
    named = tuple(text.partition(":")[0].strip() for text in args.metric_tol)
    result = compare_runs(args.base, args.new, tol, args.alpha, args.strict, args.timing, named)
    render = {"output": result.to_markdown, "junit": lambda: junit_xml(result),
              "markdown": lambda: short_markdown(result)}
    for name, path in outputs.items():
        _write(name, path, render[name]())
    print(json.dumps(result.to_json(), indent=2) if args.json else result.to_markdown())
    return result.exit_code
