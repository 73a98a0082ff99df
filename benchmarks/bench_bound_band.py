"""The bound check's noise band, before and after issue 20: a stored run's warm-start cells
re-judged from their recorded repeats with both bands.

    python benchmarks/bench_bound_band.py RUN_DIR

Before: 3 x the sum of the single-repeat robust spreads (1.4826 MAD / median) of the total,
reference and bare-call timings. After: harness.run.measure.median_bands, 3 bootstrap standard
errors of the medians' ratios. Prints, for each: the widest measured speed-up over N/K that
still passes (median and 90th percentile cell), the lowest measured speed-up over S_wall that
still passes, the cells in which no shortfall can be flagged at all, and the cells flagged.

Runs written before the bare call's repeats were recorded (times.timings["call"]) keep only
its median and, inside the old timing_noise, its relative MAD: its repeats are then rebuilt
as five normal quantiles with that median and MAD (said in the output).
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np

from harness.records.record import CellRecord
from harness.records.store import read_cells
from harness.run.measure import NOISE_Z, median_bands
from harness.run.timing import Timing

QUANTILES = np.array([-1.2816, -0.5244, 0.0, 0.5244, 1.2816])  # normal, at (i - 0.5) / 5


def _timing(data: dict) -> Timing:
    return Timing(list(data["times"]), data.get("first"))


def _relative_mad(tm: Timing) -> float:
    return 1.4826 * tm.mad / tm.median if tm.median > 0 else 0.0


def call_timing(record: CellRecord) -> tuple[Timing, bool]:
    """The bare call's repeats, and whether they were rebuilt (older runs)."""
    stored = record.times.timings.get("call")
    if stored:
        return _timing(stored), False
    timings, bound = record.times.timings, record.bound
    rel = bound.timing_noise - sum(_relative_mad(_timing(timings[k]))
                                   for k in ("total", "reference"))
    mad = max(0.0, rel) / 1.4826 * bound.call_time_s
    return Timing(list(bound.call_time_s + mad * QUANTILES / QUANTILES[3])), True


def judge(record: CellRecord) -> dict[str, float]:
    """One warm-start cell's measured ratios and both bands."""
    timings, bound, plan = record.times.timings, record.bound, record.plan
    total, draft, ref = (_timing(timings[k]) for k in ("total", "draft", "reference"))
    call, rebuilt = call_timing(record)
    s = plan.evals_per_step
    old = sum(_relative_mad(tm) for tm in (total, ref, call))
    speed_band, bound_band = median_bands(plan.n_steps * s, plan.k_steps * s, total, draft,
                                          ref, call)
    return {"over_nfe": bound.wall_speedup / bound.nfe_speedup_theory,
            "over_bound": bound.wall_speedup / bound.wall_bound, "old": old,
            "new_speed": speed_band, "new_bound": bound_band, "rebuilt": rebuilt}


def report(rows: list[dict[str, float]]) -> list[str]:
    old = np.array([r["old"] for r in rows])
    speed = np.array([r["new_speed"] for r in rows])
    bound = np.array([r["new_bound"] for r in rows])
    over_nfe = np.array([r["over_nfe"] for r in rows])
    over_bound = np.array([r["over_bound"] for r in rows])
    old_pass, new_pass = 1 + NOISE_Z * old, 1 + speed
    old_floor, new_floor = 1 - NOISE_Z * old, 1 / (1 + bound)
    rebuilt = sum(r["rebuilt"] for r in rows)
    lines = [f"{len(rows)} warm-start cells" + (
        f"; in {rebuilt} the bare call's repeats were not recorded and are rebuilt from its "
        "median and MAD" if rebuilt else "")]
    for name, top, floor, impossible, short in (
        ("old", old_pass, old_floor, over_nfe > old_pass, over_bound < old_floor),
        ("new", new_pass, new_floor, over_nfe > new_pass, over_bound < new_floor),
    ):
        lines.append(
            f"{name}: widest passing speed-up over N/K: median cell {np.median(top):.3f}x, 90th "
            f"percentile {np.percentile(top, 90):.3f}x, widest {top.max():.3f}x; lowest "
            f"passing speed-up over S_wall: median cell {np.median(floor):.3f}, 10th "
            f"percentile {np.percentile(floor, 10):.3f}; no shortfall can be flagged in "
            f"{int((floor <= 0).sum())} cells; flagged impossible {int(impossible.sum())}, "
            f"shortfall {int(short.sum())}")
    worst = int(np.argmax(over_nfe))
    lines.append(f"measured speed-up over N/K: median {np.median(over_nfe):.3f}, highest "
                 f"{over_nfe[worst]:.3f} (old band {old_pass[worst]:.3f}x, new "
                 f"{new_pass[worst]:.3f}x)")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", type=Path)
    args = parser.parse_args()
    warm = [r for r in read_cells(args.run_dir, time_budgets=None) if r.bound is not None]
    # Records from before the bound recorded c and T_d cannot be re-judged.
    cells = [r for r in warm if math.isfinite(r.bound.wall_speedup)
             and r.bound.call_time_s is not None and r.bound.draft_time_s is not None]
    if not cells:
        sys.exit(f"{args.run_dir}: none of its {len(warm)} warm-start cells records the bare "
                 "call's and the draft's times: nothing to re-judge")
    for line in report([judge(r) for r in cells]):
        print(line)


if __name__ == "__main__":
    main()
