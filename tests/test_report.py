"""The report and its statistics on a synthetic run directory (no training, no GPU)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from harness.analysis.stats import mean_ci, summarise
from harness.records.schema import SCHEMA_VERSION
from harness.records.store import load_run, read_cells
from harness.report.document import write_report
from tests.synthetic import write_run

SEEDS = [0, 1, 2, 3]
NOISE = {0: -0.01, 1: 0.0, 2: 0.01, 3: 0.0}  # shared by every method of a seed
TASKS = {"two-moons": "swd", "eight-gaussians": "swd"}
PNG = b"\x89PNG\r\n\x1a\n"


def _quality(method: str, draft: str | None, t0: float, n: int) -> tuple[float, float]:
    """Designed (swd, precision) means: full FM is best from N=20 on; the poor draft never is."""
    if method == "full-fm":
        return {10: (0.30, 0.60), 20: (0.100, 0.90), 50: (0.098, 0.91)}[n]
    if method == "draft-only":
        return (0.2, 0.7) if draft == "good" else (0.6, 0.4)
    if draft == "poor":
        return 0.5, 0.5
    # WS-FM within 5% of full FM's reference (N=20): non-inferior; the warm start is not.
    return (0.102, 0.898) if method == "ws-fm" else (0.15, 0.85)


def _record(task: str, method: str, seed: int, *, n: int = 0, t0: float | None = None,
            draft: str | None = None, solver: str | None = "euler") -> dict:
    warm = method in ("ws-fm", "warm-start")
    family = {"full-fm": "flow", "draft-only": "draft", "ddim": "diffusion"}.get(method,
                                                                                 "warm-start")
    if method == "draft-only":
        variant, k, nfe, solver = f"draft={draft}", 0, 0, None
    elif warm:
        variant = f"{draft} t0={t0} draft scratch euler"
        k = math.ceil(round((1 - t0) * n, 9))
        nfe = k
    else:
        variant, k, nfe = f"solver={solver}", n, n
    swd, prec = _quality(method, draft, t0 or 0.0, n)
    c, t_d = 1e-4, 2e-5
    time_s = t_d + k * c if warm or method == "draft-only" else n * c
    rec = {
        "task": task, "method": method, "family": family, "variant": variant, "draft": draft,
        "t0": t0 if method != "draft-only" else None, "start": "draft" if warm else None,
        "init": "scratch" if method == "ws-fm" else None, "solver": solver, "n_steps": n,
        "k_steps": k, "nfe_budget": n, "nfe_expected": nfe, "nfe_measured": nfe, "nfe_ok": True,
        "seed": seed, "time_s": time_s, "time_spread_s": 1e-6, "draft_time_s": t_d,
        "integrate_time_s": k * c, "time_per_call_s": c, "n_samples": 200, "n_eval": 200,
        "device": "cpu", "ref_time_s": None, "ref_nfe": None, "nfe_speedup": None,
        "nfe_speedup_theory": None, "ideal_speedup": None, "wall_speedup": None,
        "wall_bound": None, "timing_noise": None, "bound_ok": None,
        "metrics": {"swd": {"value": swd + NOISE[seed], "higher_is_better": False},
                    "precision": {"value": prec - NOISE[seed], "higher_is_better": True}},
    }
    if warm:
        bound = n * c / (t_d + k * c)
        rec.update(ref_time_s=n * c, ref_nfe=n, nfe_speedup=n / nfe, nfe_speedup_theory=n / k,
                   ideal_speedup=1 / (1 - t0), wall_speedup=bound * 0.98, wall_bound=bound,
                   timing_noise=0.05, bound_ok=True, wall_status="ok")
    timing = {"median": time_s, "spread": 1e-6, "first": time_s, "times": [time_s]}
    rec.update(first_call_s=time_s, deterministic=True, nonfinite=0, threads=1,
               timings={"total": timing, "draft": timing, "integrate": timing,
                        "reference": timing if warm else None})
    slug = variant.replace(" ", "_").replace("=", "")
    rec["cell_id"] = f"{task}-{method}-{slug}-N{n}-s{seed}"
    rec["cell"] = {"task": task, "task_options": {}, "method": method,
                   "method_options": {"draft": draft} if draft else {}, "n_steps": n,
                   "seed": seed, "device": "cpu", "n_samples": 200, "n_eval": 200,
                   "repeats": 1, "warmup": 1, "training": {}}
    return rec


def _records() -> list[dict]:
    out = []
    for task in TASKS:
        for seed in SEEDS:
            out += [_record(task, "draft-only", seed, draft=d) for d in ("good", "poor")]
            for n in (10, 20, 50):
                out.append(_record(task, "full-fm", seed, n=n, t0=0.0))
                for draft in ("good", "poor"):
                    out += [_record(task, "ws-fm", seed, n=n, t0=t0, draft=draft)
                            for t0 in (0.5, 0.9)]
                out.append(_record(task, "warm-start", seed, n=n, t0=0.5, draft="good"))
    # One diffusion cell whose call count is wrong, and one warm start short of its bound.
    bad = _record("eight-gaussians", "ddim", 0, n=20, t0=0.0, solver="ddim")
    bad.update(nfe_measured=21, nfe_ok=False)
    slow = next(r for r in out if r["method"] == "ws-fm" and r["seed"] == 1)
    slow.update(wall_speedup=slow["wall_bound"] * 0.5, bound_ok=False, wall_status="shortfall")
    return out + [bad]


@pytest.fixture()
def run_dir(tmp_path: Path) -> Path:
    run = tmp_path / "run-1"
    manifest = {
        "schema_version": SCHEMA_VERSION, "run_id": "run-1",
        "suite": {"name": "synthetic", "tasks": [[t, {}] for t in TASKS], "methods": [],
                  "budgets": [10, 20, 50], "seeds": SEEDS},
        "config_hash": "abc123", "seeds": SEEDS, "versions": {"torch": "x"},
        "git_commit": {"commit": "deadbeef", "dirty": False},
        "device": {"device": "cpu", "description": "test cpu"},
        "started": "2026-01-01T00:00:00", "resumed": [], "finished": "2026-01-01T00:10:00",
        "status": "complete", "cells": {"total": 121, "reused": 0, "run": 121},
        "primary_metrics": TASKS,
        # Settings are chosen on seeds 0 and 1, the headline measured on seeds 2 and 3.
        "evidence": {"rules": {"alpha": 0.05, "margin": {"rel": 0.05, "abs": 0.0},
                               "margins": {}},
                     "seeds": {t: {"selection": [0, 1], "evaluation": [2, 3]} for t in TASKS}},
    }
    rng = np.random.default_rng(0)
    write_run(run, manifest, _records(), lambda record: rng.normal(size=(200, 2)))
    return run


def test_mean_ci_known_numbers() -> None:
    mean, low, high = mean_ci([1.0, 2.0, 3.0])
    half = 4.302652729911275 / math.sqrt(3)  # t(0.975, df=2) * sd / sqrt(n), sd = 1
    assert mean == pytest.approx(2.0)
    assert (low, high) == pytest.approx((2.0 - half, 2.0 + half))
    assert mean_ci([5.0]) == (5.0, 5.0, 5.0)
    assert mean_ci([2.0, None, float("nan"), 4.0])[0] == pytest.approx(3.0)
    assert all(math.isnan(v) for v in mean_ci([]))


def test_summarise_single_seed(run_dir: Path) -> None:
    df = load_run(run_dir)
    one = summarise(df[df["seed"] == 0])
    assert (one["n_seeds"] == 1).all()
    assert (one["ci_low"] == one["mean"]).all() and (one["ci_high"] == one["mean"]).all()
    full = summarise(df)
    row = full[(full["task"] == "two-moons") & (full["method"] == "full-fm")
               & (full["n_steps"] == 20) & (full["metric"] == "swd")].iloc[0]
    assert row["mean"] == pytest.approx(0.1) and row["n_seeds"] == 4
    assert row["nfe_measured"] == 20 and row["higher_is_better"] == 0.0


def test_write_report(run_dir: Path) -> None:
    path = write_report(run_dir)
    assert path == run_dir / "report" / "report.md"
    md = path.read_text()
    html = (run_dir / "report" / "report.html").read_text()
    for heading in ("# WS-FM benchmark report: run-1", "## Errors: NFE mismatch", "## Run",
                    "## Headline", "## Bound check", "## Task: two-moons",
                    "### Quality vs NFE", "### Quality vs wall-clock", "### Speed-up vs t0",
                    "### Samples", "## All methods"):
        assert heading in md
    # The report opens with the headline; the run's details come last.
    assert md.index("## Errors") < md.index("## Headline") < md.index("## t0 advisor") \
        < md.index("## Run")
    [bad] = [r for r in read_cells(run_dir) if r.sampling.nfe_ok is False]
    assert bad.identity.task == "eight-gaussians" and f"`{bad.cell_id}`" in md
    n_warm = len(TASKS) * len(SEEDS) * 3 * 5
    assert (f"NFE speed-up equals N/ceil((1-t0)N) (recomputed here from N and t0) in {n_warm} "
            f"of {n_warm} warm-start cells") in md
    assert md.count("wall-clock shortfall") == 1
    # WS-FM with the good draft: cheapest non-inferior setting t0=0.9, N=10 (K=1) against
    # full FM's cheapest non-inferior budget N=20: 20 calls / 1 = 20x; full FM's frontier
    # starts at N = 10 here, so the reference is censored and 20x an upper bound.
    assert "| two-moons | good | WS-FM | good t0=0.9 draft scratch euler, N=10, K=1 |" in md
    assert "| ≤20x |" in md and "**non-inferior**" in md and "**inferior**" in md
    assert "the reference is censored" in md and "upper bound" in md
    assert "<table>" in html and "<h2>Bound check</h2>" in html and "deadbeef" in html
    figs = run_dir / "report" / "figures"
    for task in TASKS:
        for kind in ("headline", "quality_vs_nfe", "quality_vs_time", "speedup_vs_t0",
                     "samples"):
            png = figs / f"{task}_{kind}.png"
            assert png.stat().st_size > 1000 and png.read_bytes()[:8] == PNG
            assert f"figures/{png.name}" in md and f'src="figures/{png.name}"' in html


def test_report_tolerates_sparse_runs(run_dir: Path) -> None:
    # Keep one seed of one task's full FM and draft-only cells: no warm starts at all.
    for cell in (run_dir / "cells").glob("*.json"):
        rec = json.loads(cell.read_text())["identity"]
        if rec["task"] != "two-moons" or rec["method"] not in ("full-fm", "draft-only") \
                or rec["seed"] != 0:
            cell.unlink()
    md = write_report(run_dir).read_text()
    assert "_No warm-start cells" in md and "## Task: two-moons" in md
    assert isinstance(load_run(run_dir), pd.DataFrame)


def test_figures_drawn_in_parallel_are_the_serial_ones_and_fail_alike(tmp_path: Path) -> None:
    """The report rasterises its figures in forked processes: each PNG is byte for byte the
    one drawn in turn, and a figure that cannot be written fails the report as before."""
    import matplotlib.pyplot as plt

    from harness.report import figures

    def draw(path: Path) -> Path:
        fig, ax = plt.subplots(figsize=(3, 2))
        ax.plot([1, 2, 3], [3, 1, 2], label="a line")
        ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1))  # outside: tight bbox matters
        return figures._save(fig, path)

    serial = draw(tmp_path / "serial" / "f.png")
    with figures.drawn_in_parallel(workers=2):
        parallel = draw(tmp_path / "parallel" / "f.png")
        assert figures._BACKGROUND  # handed to the pool, not drawn here
    assert parallel.read_bytes() == serial.read_bytes()
    (tmp_path / "taken.png").mkdir()  # a folder where the PNG should go
    with pytest.raises(IsADirectoryError), figures.drawn_in_parallel(workers=2):
        draw(tmp_path / "taken.png")
    assert not figures._BACKGROUND
