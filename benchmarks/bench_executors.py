"""Serial vs worker processes (vs Ray): wall-clock of one suite, cold cache each, and whether
every cell's quality values agree bit for bit.

    python benchmarks/bench_executors.py [SUITE.toml] [--workers 2] [--ray] [--out DIR]

Each executor runs the whole suite from a fresh cache in a fresh process (`wsfm-bench run`),
one after another in this one run, so the ratio compares like with like on this machine.
Prints the seconds of each, serial / parallel, and the number of cells whose metrics or NFE
differ from the serial run's (0 is the promise; timings are not compared).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from harness.records.store import quality_by_cell

ROOT = Path(__file__).resolve().parents[1]


def run(suite: str, out: Path, run_id: str, *extra: str) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "harness.cli", "run", suite, "--out", str(out),
                    "--run-id", run_id, "--cache", str(out / f"cache-{run_id}"), "--no-report",
                    "--quiet", *extra], check=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("suite", nargs="?", default=str(ROOT / "harness/suites/smoke.toml"))
    parser.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--ray", action="store_true", help="also a local Ray instance")
    parser.add_argument("--out", help="results folder (default: a temporary one)")
    args = parser.parse_args()
    out = Path(args.out or tempfile.mkdtemp(prefix="bench-executors-"))
    w = str(args.workers)
    runs = {"serial": ["--workers", "1"], f"workers {w}": ["--workers", w]}
    if args.ray:
        runs[f"ray {w}"] = ["--executor", "ray", "--workers", w]
    seconds, values = {}, {}
    for name, extra in runs.items():
        run_id = name.replace(" ", "-")
        seconds[name] = run(args.suite, out, run_id, *extra)
        values[name] = quality_by_cell(out / run_id)
    print(f"suite {args.suite}: {len(values['serial'])} cells, cold cache each, "
          f"{len(os.sched_getaffinity(0))} cores, load average {os.getloadavg()[0]:.2f}")
    for name in runs:
        differ = sum(values[name].get(k) != v for k, v in values["serial"].items())
        ratio = seconds["serial"] / seconds[name]
        print(f"  {name:<12} {seconds[name]:8.1f} s   serial/this {ratio:5.2f}x   "
              f"cells differing from serial: {differ}")


if __name__ == "__main__":
    main()
