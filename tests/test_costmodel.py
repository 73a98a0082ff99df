"""The cost model: it recovers a known time per call and fixed cost from synthetic records,
predicts each cell, fits the degenerate cases sensibly, sizes a plan to a time budget, and
agrees with the bound check's S_wall; the report shows it."""

from __future__ import annotations

import dataclasses
import math
import re
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from harness.analysis.costmodel import (
    FIT_COLUMNS,
    fit_cost_model,
    fit_line,
    max_steps,
    predict,
    predict_cells,
)
from harness.report.cost import cost_model_section
from harness.run import measure
from harness.run.timing import Timing
from wsfm import theory

C, F = 2.5e-4, 3e-3  # seconds per call, fixed seconds per batch


def _cell(method: str, variant: str, n: int, seed: int, *, nfe: int, draft: float,
          c: float = C, f: float = F, ref: bool = False, metrics: int = 2,
          noise: float = 0.0) -> list[dict]:
    """One cell as tidy rows (one per metric, like records.load_run gives)."""
    time_s = draft + nfe * c + f + noise
    row = {"task": "two-moons", "method": method, "variant": variant, "device": "cpu",
           "n_steps": n, "seed": seed, "nfe_measured": nfe, "time_s": time_s,
           "draft_time_s": draft, "cell_id": f"{method}-{variant}-{n}-{seed}",
           "time_per_call_s": c if nfe else None,  # as records carry it
           "ref_nfe": n if ref else None, "ref_time_s": n * c + f if ref else None}
    return [{**row, "metric": f"m{i}", "value": 0.0} for i in range(metrics)]


def _frame(rows: list[list[dict]]) -> pd.DataFrame:
    return pd.DataFrame([r for cell in rows for r in cell])


def test_recovers_known_time_per_call_and_fixed_cost() -> None:
    rng = np.random.default_rng(0)
    rows = [_cell("full-fm", "solver=euler", n, seed, nfe=n, draft=float(rng.uniform(1e-5, 5e-4)))
            for n in (4, 8, 16, 32) for seed in (0, 1, 2)]
    rows += [_cell("full-fm", "solver=heun", n, 0, nfe=2 * n, draft=1e-5, c=4e-4, f=0.0)
             for n in (4, 8)]
    fits = fit_cost_model(_frame(rows)).set_index("variant")
    assert list(fit_cost_model(_frame(rows)).columns) == FIT_COLUMNS
    euler = fits.loc["solver=euler"]
    assert euler["time_per_call_s"] == pytest.approx(C, rel=1e-9)
    assert euler["fixed_s"] == pytest.approx(F, rel=1e-7, abs=1e-12)
    assert euler["r2"] == pytest.approx(1.0)
    assert euler["fit"] == "lsq" and euler["cells"] == 12 and euler["points"] == 12
    assert (euler["nfe_min"], euler["nfe_max"]) == (4, 32)
    heun = fits.loc["solver=heun"]
    assert heun["time_per_call_s"] == pytest.approx(4e-4, rel=1e-9)
    assert heun["fixed_s"] == pytest.approx(0.0, abs=1e-12)
    assert math.isnan(euler["bound_time_per_call_s"])  # no reference run in this group

    pred = predict_cells(_frame(rows))
    assert len(pred) == len(rows)  # one row per cell, not per metric
    assert np.allclose(pred["rel_error"], 0.0, atol=1e-9)


def test_noisy_times_fit_approximately_with_r2_below_one() -> None:
    rng = np.random.default_rng(1)
    rows = [_cell("full-fm", "e", n, s, nfe=n, draft=1e-4, noise=float(rng.normal(0, 1e-4)))
            for n in (5, 10, 20, 50, 100) for s in range(4)]
    fit = fit_cost_model(_frame(rows)).iloc[0]
    assert fit["time_per_call_s"] == pytest.approx(C, rel=0.05)
    assert abs(fit["fixed_s"] - F) < 2e-4
    assert 0.95 < fit["r2"] < 1.0


def test_warm_start_reference_runs_are_points_of_the_fit() -> None:
    # One K for every cell: only the full-grid reference runs (N calls, no draft) give c.
    rows = [_cell("ws-fm", "good t0=0.75", n, s, nfe=math.ceil(0.25 * n), draft=2e-3, ref=True)
            for n in (8, 12) for s in (0, 1)]
    fit = fit_cost_model(_frame(rows)).iloc[0]
    assert fit["points"] == 8 and fit["cells"] == 4 and fit["fit"] == "lsq"
    assert fit["time_per_call_s"] == pytest.approx(C, rel=1e-9)
    assert fit["fixed_s"] == pytest.approx(F, rel=1e-7)
    # What the bound check used: ref_time / ref_nfe, fixed cost folded into c.
    expected = np.median([(n * C + F) / n for n in (8, 8, 12, 12)])
    assert fit["bound_time_per_call_s"] == pytest.approx(expected)
    assert fit["draft_time_s"] == pytest.approx(2e-3)


def test_degenerate_groups() -> None:
    c, f, r2, how = fit_line([10, 10, 10], [0.02, 0.02, 0.02])
    assert how == "ratio" and c == pytest.approx(2e-3) and f == 0.0 and r2 == 1.0
    c, f, r2, how = fit_line([0, 0], [1e-3, 3e-3])
    assert how == "constant" and math.isnan(c) and f == pytest.approx(2e-3)
    assert fit_line([], [])[3] == "none"
    assert fit_line([1, 2, float("nan")], [1.0, 2.0, 5.0])[3] == "lsq"  # NaN points dropped

    rows = [_cell("draft-only", "draft=good", 0, s, nfe=0, draft=1e-3, f=0.0) for s in (0, 1)]
    pred = predict_cells(_frame(rows))
    assert np.allclose(pred["predicted_time_s"], pred["time_s"])  # T_d + f, no calls


def test_predict_and_max_steps() -> None:
    assert predict(10, 1e-3, evals_per_step=2, draft_s=0.01, fixed_s=0.002) == pytest.approx(
        0.032)
    assert np.allclose(predict(np.array([1, 2]), 0.5), [0.5, 1.0])
    for budget in (0.0125, 0.05, 0.1, 0.3333):
        k = max_steps(budget, 1e-3, evals_per_step=2, draft_s=0.01, fixed_s=0.002)
        assert predict(k, 1e-3, 2, 0.01, 0.002) <= budget < predict(k + 1, 1e-3, 2, 0.01, 0.002)
    assert max_steps(0.1, 1e-3, 1, 0.2) == 0  # not even the draft fits
    assert max_steps(0.03, 1e-3) == 30  # exact boundary, despite float rounding
    with pytest.raises(ValueError, match="time_per_call"):
        max_steps(1.0, 0.0)


def _bound(*args: object) -> dict:
    """measure.bound_check's section as a dict (``bound_ok``: its ``ok``)."""
    out = dataclasses.asdict(measure.bound_check(*args))
    return {**out, "bound_ok": out["ok"]}


def _timing(median: float, n: int = 5, jitter: float = 0.0) -> Timing:
    return Timing([median + jitter * (i - n // 2) for i in range(n)], median)


def test_bound_check_includes_the_fixed_cost_and_the_draft() -> None:
    plan = SimpleNamespace(n_steps=20, k_steps=5, evals_per_step=2, t0=0.75)
    c, fixed, t_d = 1e-3, 4e-3, 2e-3
    ref = _timing(fixed + 40 * c)  # the full grid: F + N s c
    total = _timing(t_d + fixed + 10 * c)  # the warm start: T_d + F + K s c
    out = _bound(plan, 0.75, 10, 0.75, 40, total, _timing(t_d), ref, _timing(c))
    assert out["fixed_time_s"] == pytest.approx(fixed) and out["call_time_s"] == c
    # S_wall = (F + N s c) / (F + T_d + K s c): met exactly by these timings.
    assert out["wall_bound"] == pytest.approx((fixed + 40 * c) / (fixed + t_d + 10 * c))
    assert out["wall_speedup"] == pytest.approx(out["wall_bound"])
    assert out["wall_status"] == "ok" and out["bound_ok"] is True
    assert out["k_observed"] == 5 and out["nfe_speedup"] == 4 == out["nfe_speedup_theory"]
    # The bound without F (the old one) would have asked for more than was possible.
    assert theory.wall_clock_bound(20, 5, 2, c, t_d) > out["wall_speedup"]


def test_bound_check_flags_impossible_and_short_speedups() -> None:
    plan = SimpleNamespace(n_steps=10, k_steps=1, evals_per_step=1, t0=0.9)
    ref, call, draft = _timing(0.010), _timing(0.001), _timing(0.0)
    fast = _bound(plan, 0.9, 1, 0.9, 10, _timing(0.0005), draft, ref, call)
    assert fast["wall_status"] == "impossible" and fast["bound_ok"] is False  # 20x > N/K = 10
    slow = _bound(plan, 0.9, 1, 0.9, 10, _timing(0.005), draft, ref, call)
    assert slow["wall_status"] == "shortfall" and slow["bound_ok"] is False  # 2x < S_wall 10x
    # 10% below S_wall: a shortfall when the timings are steady, within the band when noisy.
    steady = _bound(plan, 0.9, 1, 0.9, 10, _timing(0.0011), draft, ref, call)
    assert steady["wall_status"] == "shortfall"
    spread = Timing([0.0011 * (1 + x) for x in (-0.3, -0.15, 0.0, 0.15, 0.3)])
    noisy = _bound(plan, 0.9, 1, 0.9, 10, spread, draft, ref, call)
    assert noisy["wall_status"] == "ok" and noisy["bound_noise"] > 0.1
    few = _bound(plan, 0.9, 1, 0.9, 10, _timing(0.0005, n=3), draft, _timing(
        0.010, n=3), call)
    assert few["wall_status"] == "not judged" and few["bound_ok"] is True


def _noisy(median: float, rel: float, n: int = 5, seed: int = 0) -> Timing:
    """``n`` repeats around ``median`` with a relative normal spread ``rel``."""
    rng = np.random.default_rng(seed)
    return Timing(list(median * (1 + rel * rng.standard_normal(n))), median)


def test_bound_band_is_the_uncertainty_of_the_medians() -> None:
    plan = SimpleNamespace(n_steps=10, k_steps=1, evals_per_step=1, t0=0.9)
    ref, call, draft = _noisy(0.010, 0.05, seed=1), _noisy(0.001, 0.05, seed=2), _timing(0.0)
    # 1.3 x N/K, with 5% noise on each timing: the old band (3 x the sum of single-repeat
    # spreads, 0.2 or more here) let it pass; the medians of 5 repeats are surer than that.
    total = _noisy(ref.median / 13, 0.05, seed=3)
    old = 3 * sum(1.4826 * t.mad / t.median for t in (total, ref, call))
    measured = ref.median / total.median / 10  # speed-up over N/K: about 1.3
    out = _bound(plan, 0.9, 1, 0.9, 10, total, draft, ref, call)
    # The same cell, both bands: the old one passes it, the new one flags it impossible.
    assert measured < 1 + old and measured > 1 + out["timing_noise"]
    assert out["wall_status"] == "impossible" and out["timing_noise"] < 0.2
    assert out == _bound(plan, 0.9, 1, 0.9, 10, total, draft, ref, call)  # seeded bootstrap
    # More repeats, the same spread: a narrower band (the median's error falls as 1/sqrt(n)).
    few = measure.median_bands(10, 1, _noisy(1.0, 0.05, 5, 4), draft, _noisy(13.0, 0.05, 5, 5),
                               _noisy(1.0, 0.05, 5, 6))
    many = measure.median_bands(10, 1, _noisy(1.0, 0.05, 45, 4), draft,
                                _noisy(13.0, 0.05, 45, 5), _noisy(1.0, 0.05, 45, 6))
    assert many[0] < 0.6 * few[0] and many[1] < 0.6 * few[1]
    # One slow repeat (another process woke up) hardly widens it: medians ignore it.
    slow = Timing([*sorted(total.times)[:4], 10 * max(total.times)])
    assert measure.median_bands(10, 1, slow, draft, ref, call)[0] < 1.25 * out["timing_noise"]


def test_bound_check_recounts_k_from_where_the_solver_started() -> None:
    plan = SimpleNamespace(n_steps=10, k_steps=2, evals_per_step=1, t0=0.8)
    t = _timing(0.001)
    honest = _bound(plan, 0.8, 2, 0.800000011920929, 10, t, t, t, t)  # float32 t0
    assert honest["k_observed"] == 2 and honest["bound_ok"] is True
    # A sampler that started at t = 0.9 although the method says t0 = 0.8 (and reports K = 2).
    lying = _bound(plan, 0.8, 2, 0.9, 10, t, t, t, t)
    assert lying["k_observed"] == 1 and lying["bound_ok"] is False


def test_cost_model_section() -> None:
    rows = [_cell("full-fm", "solver=euler", n, s, nfe=n, draft=1e-4) for n in (4, 8)
            for s in (0, 1)]
    rows += [_cell("ws-fm", "good t0=0.5", n, 0, nfe=n // 2, draft=1e-3, ref=True)
             for n in (4, 8)]
    cells = _frame(rows).drop_duplicates("cell_id")
    md = cost_model_section(cells)
    assert md.startswith("## Cost model")
    assert "| two-moons | full-fm | solver=euler | cpu | 4 | 4–8 | 0.25 | 3 | 1 | lsq |" in md
    assert "+0.0%" in md and "median 0.0%" in md
    assert "Predicted vs measured" in md
    assert cost_model_section(cells.iloc[0:0]).endswith("_No timed cells in this run._")


def test_the_band_before_and_after_on_the_reference_smoke_run() -> None:
    """benchmarks/bench_bound_band.py on the checked-in smoke run (351 timed warm-start
    cells): the new band is narrower than the old at the median cell and can flag a shortfall
    in every cell. (On the noisier host of the reference's first version 2 run, the old band
    let 1.98 x N/K pass at the median cell and could flag no shortfall in 170 cells.)"""
    import importlib.util
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    spec = importlib.util.spec_from_file_location(
        "bench_bound_band", root / "benchmarks" / "bench_bound_band.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    from harness.records.store import read_cells

    cells = [r for r in read_cells(root / "results" / "reference" / "smoke") if r.bound]
    old, new, _ = bench.report([bench.judge(r) for r in cells])[1:]
    assert "median cell 1.144x, 90th percentile 1.280x" in old
    assert "no shortfall can be flagged in 0 cells" in new
    median = re.search(r"median cell ([\d.]+)x", new).group(1)
    assert float(median) < 1.144
