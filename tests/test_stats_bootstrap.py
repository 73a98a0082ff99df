"""Statistics of issue 5 part 4: bootstrap coverage, the paired parity test, the
quality-matched speed-up with its bootstrap interval, and the report's evidence sections."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from harness.analysis.resample import SMALL_N, bootstrap_ci, interval, parity_test, speedup_interval
from harness.analysis.stats import mean_ci, quality_matched_speedup
from harness.records.store import COLUMNS, load_run
from harness.report.document import write_report
from harness.report.evidence import (
    best_sweep_t0,
    parity_table,
    per_seed_table,
    speedup_sweep_table,
)
from tests.test_report import run_dir  # noqa: F401  (the synthetic run folder fixture)

REPS = 1000  # coverage repetitions: the binomial SE of a 95% coverage is about 0.007


def _coverage(draw, truth: float, n: int, how) -> float:
    rng = np.random.default_rng(123)
    hits = 0
    for r in range(REPS):
        low, high = how(draw(rng, n), r)
        hits += low <= truth <= high
    return hits / REPS


def _bca(x: np.ndarray, r: int) -> tuple[float, float]:
    return bootstrap_ci(x, n_resamples=2000, seed=r)[1:]


@pytest.mark.parametrize("name, draw, truth, tol", [
    ("normal", lambda rng, n: rng.normal(2.0, 1.0, n), 2.0, 0.03),
    # Skewed: the bootstrap of a mean of 30 is known to undercover a little (~0.91-0.93).
    ("exponential (skewed)", lambda rng, n: rng.exponential(1.0, n), 1.0, 0.05),
])
def test_bootstrap_covers_the_true_mean_at_about_the_stated_rate(name, draw, truth,
                                                                 tol) -> None:
    cover = _coverage(draw, truth, 30, _bca)  # n = 30, 1000 repetitions
    assert abs(cover - 0.95) <= tol, (name, cover)


def test_small_samples_undercover_so_interval_falls_back_to_student_t() -> None:
    normal = lambda rng, n: rng.normal(0.0, 1.0, n)  # noqa: E731
    # Three seeds: the bootstrap of the mean covers ~0.71 at a nominal 0.95 ...
    assert _coverage(normal, 0.0, 3, _bca) < 0.8
    # ... which is why ``interval`` uses Student-t below SMALL_N replicates (exact for normal).
    t_cover = _coverage(normal, 0.0, 3, lambda x, r: interval(x)[1:3])
    assert abs(t_cover - 0.95) <= 0.025
    assert interval([1.0, 2.0, 4.0])[3] == "Student-t"
    assert interval([1.0, 2.0, 4.0])[:3] == pytest.approx(mean_ci([1.0, 2.0, 4.0]))
    assert interval(np.arange(SMALL_N, dtype=float))[3] == "bootstrap BCa"


def test_bootstrap_ci_edge_cases_and_determinism() -> None:
    x = np.random.default_rng(0).exponential(size=40)
    assert bootstrap_ci(x, seed=3) == bootstrap_ci(x, seed=3)
    mean, low, high = bootstrap_ci(x)
    assert low < mean < high and mean == pytest.approx(x.mean())
    assert bootstrap_ci([2.0]) == (2.0, 2.0, 2.0)
    assert bootstrap_ci([1.5, 1.5, 1.5]) == (1.5, 1.5, 1.5)
    assert bootstrap_ci([1.0, None, float("nan"), 3.0])[0] == pytest.approx(2.0)
    assert all(math.isnan(v) for v in bootstrap_ci([]))
    # Right-skewed data: BCa shifts the interval right of the percentile one.
    pct = bootstrap_ci(x, method="percentile")
    assert high - mean > mean - low and high >= pct[2]
    with pytest.raises(ValueError, match="bca"):
        bootstrap_ci(x, method="studentized")


def test_parity_verdicts_on_synthetic_groups() -> None:
    full = {s: 0.10 + 0.01 * s for s in range(5)}
    same = parity_test({s: v + 0.001 * (-1) ** s for s, v in full.items()}, full, False, 0.02)
    assert same["verdict"] == "not worse" and same["p"] < 0.05 and same["n_pairs"] == 5
    assert same["diff_low"] < same["diff"] < same["diff_high"] < 0.02
    worse = parity_test({s: v + 0.1 + 0.002 * s for s, v in full.items()}, full, False, 0.02)
    assert worse["verdict"] == "worse" and worse["p"] > 0.95 and worse["diff"] > 0.09
    noisy = parity_test({s: v + 0.02 + 0.05 * (-1) ** s for s, v in full.items()}, full,
                        False, 0.02)
    assert noisy["verdict"] == "inconclusive"
    # Higher is better: WS-FM lower by 0.1 is worse; pairs are matched by seed only.
    prec = {s: 0.9 for s in range(3)}
    low = parity_test({0: 0.8, 1: 0.79, 2: 0.81, 7: 0.0}, prec, True, 0.02)
    assert low["verdict"] == "worse" and low["n_pairs"] == 3
    assert low["diff"] == pytest.approx(-0.1)
    better = parity_test({s: 0.95 + 0.001 * s for s in range(3)}, prec, True, 0.0)
    assert better["verdict"] == "not worse"
    one = parity_test({0: 0.5}, {0: 0.1}, False, 0.01)
    assert one["verdict"] == "inconclusive" and math.isnan(one["p"]) and one["n_pairs"] == 1
    assert parity_test({}, full, False, 0.01)["n_pairs"] == 0


def _frame(seeds=(0, 1, 2), poor_noise: float = 0.0) -> pd.DataFrame:
    """A tidy run (load_run's columns) on one task and metric (swd, lower is better)."""
    noise = np.linspace(-0.01, 0.01, len(seeds))
    rows = []

    def add(method, n, k, value, seed, **extra):
        row = dict.fromkeys(COLUMNS)
        row.update(task="moons", method=method, n_steps=n, k_steps=k, nfe_measured=k,
                   seed=seed, metric="swd", value=value, higher_is_better=False, **extra)
        rows.append(row)

    for i, s in enumerate(seeds):
        for n, q in ((10, 0.30), (20, 0.100), (50, 0.098)):
            add("full-fm", n, n, q + noise[i], s, solver="euler", variant="euler")
            for t0 in (0.5, 0.9):
                k = math.ceil(round((1 - t0) * n, 9))
                for draft, value in (("good", 0.105 if t0 == 0.9 else 0.099),
                                     ("poor", 0.101 + (poor_noise if i == 0 else 0.0)
                                      if t0 == 0.5 else 0.4)):
                    add("ws-fm", n, k, value + noise[i], s, draft=draft, t0=t0,
                        start="draft", init="scratch", solver="euler",
                        variant=f"{draft} t0={t0} draft scratch euler")
    return pd.DataFrame(rows, columns=COLUMNS)


def test_quality_matched_speedup_with_intervals() -> None:
    df = _frame()
    good = speedup_interval(df, "moons", "swd", "good")
    # Full FM: best N=50 (0.098 +- 0.025), reference its cheapest budget within: N=20 (20 calls).
    # Good draft: t0=0.9 at N=10 takes K=1 step and matches: 20x; every resample agrees.
    assert good["speedup"] == pytest.approx(20.0)
    assert good["speedup"] == quality_matched_speedup(df, "moons", "swd", "good")["speedup"]
    assert good["low"] == good["high"] == 20.0 and good["p_match"] == 1.0
    assert good["n_seeds"] == 3
    one = speedup_interval(df, "moons", "swd", "good", where={"t0": 0.5})
    assert one["speedup"] == pytest.approx(20 / 5)  # t0=0.5 at N=10: K=5
    poor = speedup_interval(df, "moons", "swd", "poor", where={"t0": 0.9})
    assert math.isnan(poor["speedup"]) and poor["p_match"] == 0.0 and poor["high"] == 0.0

    # One seed of the poor draft much worse: the mean still matches, resamples often do not.
    shaky = speedup_interval(_frame(poor_noise=0.06), "moons", "swd", "poor")
    assert shaky["speedup"] == pytest.approx(4.0) and 0.0 < shaky["p_match"] < 1.0
    assert shaky["low"] == 0.0 and shaky["high"] == pytest.approx(4.0)
    # Paired: the same seed's noise in full FM and WS-FM cancels only if resampled together.
    assert speedup_interval(df, "moons", "swd", "good", seed=1)["low"] == 20.0

    table = speedup_sweep_table(df, {"moons": "swd"}, methods=("ws-fm",))
    assert set(table["setting"]) == {"all", "one"} and len(table) == 2 * 3
    best = best_sweep_t0(table, "moons", "good")
    assert best["s_t0"] == 0.9 and best["speedup"] == pytest.approx(20.0)
    assert best_sweep_t0(table, "moons", "poor")["s_t0"] == 0.5
    assert best_sweep_t0(table[table["s_t0"] != 0.5], "moons", "poor") is None


def test_parity_table_and_per_seed_values() -> None:
    df = _frame(seeds=(0, 1, 2, 3))
    table = parity_table(df, {"moons": "swd"}, lambda metric, base: 0.1 * abs(base))
    assert len(table) == 2 * 2 * 3  # draft x t0 x N
    row = lambda d, t0, n: table[(table["draft"] == d) & (table["t0"] == t0)  # noqa: E731
                                 & (table["n_steps"] == n)].iloc[0]
    assert row("good", 0.9, 10)["verdict"] == "not worse"  # 0.105 vs 0.30
    assert row("poor", 0.9, 50)["verdict"] == "worse"  # 0.4 vs 0.098
    assert row("good", 0.9, 50)["tolerance"] == pytest.approx(0.0098)
    assert row("good", 0.9, 50)["diff"] == pytest.approx(0.007)
    assert (table["n_pairs"] == 4).all() and table["p"].between(0, 1).all()

    seeds = per_seed_table(df)
    full = seeds[(seeds["method"] == "full-fm") & (seeds["n_steps"] == 20)].iloc[0]
    assert [c for c in seeds.columns if c.startswith("seed ")] == [f"seed {s}" for s in range(4)]
    assert full["seed 0"] == pytest.approx(0.09) and full["seed 3"] == pytest.approx(0.11)
    assert full["mean"] == pytest.approx(0.1) and full["sd"] > 0


def test_report_has_the_evidence_sections(run_dir: Path) -> None:  # noqa: F811
    advice = {"two-moons": {"good": {"t0": 0.85, "grid": [0.05, 0.5, 0.85, 0.9],
                                     "accuracy": [0.5, 0.5, 0.51, 0.6], "threshold": 0.53,
                                     "n_test": 2000},
                            "poor": {"t0": None, "grid": [0.05], "accuracy": [0.7],
                                     "threshold": 0.53, "n_test": 2000}}}
    (run_dir / "advisor.json").write_text(json.dumps({"version": "1", "tasks": advice}))
    md = write_report(run_dir).read_text()
    for heading in ("## Quality-matched speed-up per draft and t0, with intervals",
                    "## t0 advisor", "## Parity: WS-FM with K steps against full FM",
                    "## Per-seed values", "### t0 sweep: two-moons, good draft"):
        assert heading in md, heading
    assert md.index("## Quality-matched speed-up\n") < md.index("## t0 advisor")
    # test_report's design: good draft 20x at t0=0.9; the poor draft never matches.
    assert "| two-moons | good | 0.85 | 0.9 (draft, scratch; 20x) | 0.5, 0.9 |" in md
    assert "| two-moons | poor | none (distinguishable at every t) | no quality-matched" in md
    assert "| eight-gaussians | good | not computed" in md
    assert "with the good draft, 20x [20x, 20x], is higher than the poor draft's, none" in md
    figs = run_dir / "report" / "figures"
    for task in ("two-moons", "eight-gaussians"):
        for draft in ("good", "poor"):
            assert (figs / f"{task}_{draft}_t0_sweep.png").stat().st_size > 1000
    per_seed = pd.read_csv(run_dir / "report" / "per_seed.csv")
    assert {"seed 0", "seed 1", "seed 2"} <= set(per_seed.columns)
    assert len(per_seed) == len(load_run(run_dir).groupby(
        ["task", "method", "variant", "n_steps", "metric"], dropna=False))
