"""Publication figures and LaTeX tables from a synthetic run folder (no training, no model)."""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from harness.errors import ConfigError, RunDirError
from harness.report import latex, publish
from tests.synthetic import write_run

try:
    from harness.records.schema import SCHEMA_VERSION
except ImportError:  # a checkout from before results were versioned
    SCHEMA_VERSION = None

SEEDS = [0, 1, 2]
NOISE = {0: -0.01, 1: 0.0, 2: 0.01}
TASKS = {"two_moons": "swd", "eight-gaussians": "swd"}  # "_" must be escaped in LaTeX
NS = (10, 20, 50)
WS_T0 = (0.5, 0.9)
KINDS = ("metric_vs_nfe", "metric_vs_time", "speedup_vs_t0", "t0_sweep")
C, T_D = 1e-4, 2e-5  # time per network call, draft time


def _swd(method: str, draft: str | None, n: int) -> float:
    """Designed means: full FM is best from N=20 on; the poor draft never reaches it."""
    if method == "full-fm":
        return {10: 0.30, 20: 0.100, 50: 0.098}[n]
    if method == "draft-only":
        return 0.2 if draft == "good" else 0.6
    if method in ("ddpm", "ddim"):
        return {10: 0.4, 20: 0.2, 50: 0.12}[n] + (0.01 if method == "ddim" else 0.0)
    if draft == "poor":
        return 0.5
    return 0.11 if method == "ws-fm" else 0.15


def _timing(x: float) -> dict:
    return {"median": x, "spread": 1e-6, "first": x, "times": [x, x, x]}


def _record(task: str, method: str, seed: int, n: int = 0, t0: float | None = None,
            draft: str | None = None) -> dict:
    warm = method in ("ws-fm", "warm-start")
    family = {"full-fm": "flow", "draft-only": "draft", "ddpm": "diffusion",
              "ddim": "diffusion"}.get(method, "warm-start")
    solver = {"draft-only": None, "ddpm": "ddpm", "ddim": "ddim"}.get(method, "euler")
    if method == "draft-only":
        variant, k = draft, 0
    elif warm:
        variant = f"{draft} t0={t0} draft scratch euler" if method == "ws-fm" else \
            f"{draft} t0={t0} euler"
        k = math.ceil(round((1 - t0) * n, 9))
    else:
        variant = {"full-fm": "solver=euler", "ddpm": "ancestral", "ddim": "eta_0"}[method]
        k = n
    time_s = T_D + k * C if warm or method == "draft-only" else n * C
    swd = _swd(method, draft, n) + NOISE[seed]
    rec = {
        "cell_id": f"{task}-{method}-{variant}-N{n}-s{seed}".replace(" ", "_"),
        "cell": {"task": task, "task_options": {}, "method": method, "method_options": {},
                 "n_steps": n, "seed": seed, "device": "cpu", "n_samples": 50, "n_eval": 50,
                 "repeats": 3, "warmup": 1, "training": {}},
        "task": task, "method": method, "family": family, "variant": variant, "draft": draft,
        "t0": None if method == "draft-only" else (t0 if warm else 0.0),
        "start": "draft" if warm else None, "init": "scratch" if method == "ws-fm" else None,
        "solver": solver, "n_steps": n, "k_steps": k, "nfe_budget": n, "nfe_expected": k,
        "nfe_measured": k, "nfe_ok": True, "seed": seed, "time_s": time_s,
        "time_spread_s": 1e-6, "first_call_s": time_s, "draft_time_s": T_D,
        "integrate_time_s": k * C, "time_per_call_s": C,
        "timings": {"total": _timing(time_s), "draft": _timing(T_D),
                    "integrate": _timing(k * C), "reference": _timing(n * C) if warm else None},
        "deterministic": True, "nonfinite": 0, "n_samples": 50, "n_eval": 50, "device": "cpu",
        "threads": 1, "ref_time_s": None, "ref_nfe": None, "nfe_speedup": None,
        "nfe_speedup_theory": None, "ideal_speedup": None, "wall_speedup": None,
        "wall_bound": None, "timing_noise": None, "bound_ok": None,
        "metrics": {"swd": {"value": swd, "higher_is_better": False},
                    "precision": {"value": 1 - swd, "higher_is_better": True}},
    }
    if warm:
        bound = n * C / (T_D + k * C)
        rec.update(ref_time_s=n * C, ref_nfe=n, nfe_speedup=n / k, nfe_speedup_theory=n / k,
                   ideal_speedup=1 / (1 - t0), wall_speedup=bound * 0.98, wall_bound=bound,
                   timing_noise=0.05, bound_ok=True)
    return rec


def _records() -> list[dict]:
    out = []
    for task in TASKS:
        for seed in SEEDS:
            out += [_record(task, "draft-only", seed, draft=d) for d in ("good", "poor")]
            for n in NS:
                out += [_record(task, m, seed, n) for m in ("full-fm", "ddpm", "ddim")]
                out += [_record(task, "ws-fm", seed, n, t0, d)
                        for d in ("good", "poor") for t0 in WS_T0]
                out.append(_record(task, "warm-start", seed, n, 0.5, "good"))
    slow = next(r for r in out if r["method"] == "ws-fm" and r["task"] == "two_moons")
    slow.update(wall_speedup=slow["wall_bound"] * 0.5, bound_ok=False)  # short of its bound
    return out


def _manifest() -> dict:
    manifest = {
        "run_id": "run-pub", "config_hash": "abc123", "seeds": SEEDS, "resumed": [],
        "suite": {"name": "synthetic", "tasks": [[t, {}] for t in TASKS],
                  "methods": [{"name": "full-fm", "options": {}}], "budgets": list(NS),
                  "seeds": SEEDS},
        "versions": {"numpy": "x"}, "git_commit": {"commit": "deadbeef", "dirty": False},
        "device": {"device": "cpu", "description": "test cpu"},
        "started": "2026-01-01T00:00:00", "finished": "2026-01-01T00:10:00",
        "status": "complete", "cells": {"total": 1, "reused": 0, "run": 1},
        "primary_metrics": TASKS,
    }
    return manifest if SCHEMA_VERSION is None else {"schema_version": SCHEMA_VERSION, **manifest}


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("publish") / "run-pub"
    write_run(run, _manifest(), _records())
    return run


@pytest.fixture(scope="module")
def written(run_dir: Path) -> list[Path]:
    return publish.write_figures(run_dir)  # default out_dir: run_dir/figures


def _n_groups(methods: tuple[str, ...]) -> int:
    """(method, variant, N) groups per task among ``methods``."""
    per_n = {"full-fm": 1, "ddpm": 1, "ddim": 1, "ws-fm": 2 * len(WS_T0), "warm-start": 1}
    return sum(per_n[m] for m in methods) * len(NS)


def test_figures_in_every_format(run_dir: Path, written: list[Path]) -> None:
    out = run_dir / "figures"
    assert all(p.parent == out and p.exists() for p in written)
    for task in TASKS:
        for kind in KINDS:
            base = out / f"{publish.slug(task)}_{kind}"
            for fmt in publish.FORMATS:
                path = base.with_suffix(f".{fmt}")
                assert path in written and path.stat().st_size > 1000, path
            assert base.with_suffix(".pdf").read_bytes()[:4] == b"%PDF"
            assert base.with_suffix(".png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
            assert ET.parse(base.with_suffix(".svg")).getroot().tag.endswith("svg")
            assert base.with_suffix(".csv") in written
    index = (out / "index.md").read_text()
    assert all(f"({p.name})" in index for p in written if p.name != "index.md")


def test_csv_holds_the_plotted_groups(run_dir: Path, written: list[Path]) -> None:
    out = run_dir / "figures"
    for task in TASKS:
        s = publish.slug(task)
        for kind in ("metric_vs_nfe", "metric_vs_time"):
            d = pd.read_csv(out / f"{s}_{kind}.csv")
            curves = d[d["series"] == "curve"]
            assert len(curves) == _n_groups(("full-fm", "ddpm", "ddim", "ws-fm", "warm-start"))
            assert not curves.duplicated(["method", "variant", "n_steps"]).any()
            assert (d["series"] == "draft alone").sum() == 2 and (d["metric"] == "swd").all()
            full20 = curves[(curves["method"] == "full-fm") & (curves["n_steps"] == 20)].iloc[0]
            assert full20["mean"] == pytest.approx(0.1)  # mean over the three seeds
            assert full20["ci_low"] < 0.1 < full20["ci_high"]
            x = 20 if kind == "metric_vs_nfe" else 20 * C * 1000  # NFE, or ms per batch
            assert full20["x"] == pytest.approx(x)
        sp = pd.read_csv(out / f"{s}_speedup_vs_t0.csv")
        n_warm = _n_groups(("ws-fm", "warm-start"))
        for series in ("nfe measured", "wall-clock measured", "wall-clock bound S_wall"):
            assert (sp["series"] == series).sum() == n_warm
        nfe = sp[sp["series"] == "nfe measured"]
        theory = [n / math.ceil(round((1 - t) * n, 9))
                  for t, n in zip(nfe["t0"], nfe["n_steps"], strict=True)]
        assert np.allclose(nfe["mean"], theory)
        assert sp.loc[sp["series"] == "N/ceil((1-t0)N)", "n_steps"].nunique() == len(NS)
        assert (sp["series"] == "1/(1-t0)").sum() > 10
        sw = pd.read_csv(out / f"{s}_t0_sweep.csv")
        ws = sw[(sw["series"] == "warm start") & (sw["method"] == "ws-fm")]
        assert len(ws) == 2 * len(WS_T0) * len(NS) and set(ws["draft"]) == {"good", "poor"}
        best = sw[sw["series"] == "full FM best"]
        assert len(best) == 1 and best["mean"].iloc[0] == pytest.approx(0.098)
        assert best["n_steps"].iloc[0] == 50


def test_latex_tables(run_dir: Path, written: list[Path]) -> None:
    out = run_dir / "figures"
    tables = {p.name: p.read_text() for p in out.glob("*.tex")}
    assert set(tables) == {f"{publish.slug(t)}_main.tex" for t in TASKS} | {
        "headline.tex", "bound_check.tex"}
    for name, tex in tables.items():
        assert tex.count(r"\toprule") == 1 and tex.count(r"\bottomrule") == 1, name
        assert r"\midrule" in tex and r"\hline" not in tex and r"\vline" not in tex
        spec = tex.split(r"\begin{tabular}{", 1)[1].split("}", 1)[0]
        assert "|" not in spec and set(spec) <= set("lrc")
    main = tables["two_moons_main.tex"]
    body = main.split(r"\midrule", 1)[1].split(r"\bottomrule")[0]
    rows = [line for line in body.splitlines() if line.endswith(r"\\")]
    assert len(rows) == 2 + _n_groups(("full-fm", "ddpm", "ddim", "ws-fm", "warm-start"))
    assert r"eta\_0" in main and "eta_0" not in main.replace(r"eta\_0", "")
    assert r"swd $\downarrow$" in main and r"$0.100 \pm 0.025$" in main
    first = [r.split(" & ")[0] for r in rows]
    # By role (floor, reference, warm starts, other baselines), then by method name.
    order = ["Draft only", "Full FM", "Warm start (training-free)", "WS-FM", "DDIM", "DDPM"]
    assert sorted(set(first), key=first.index) == order
    head = tables["headline.tex"]
    assert r"two\_moons (swd)" in head and "two_moons" not in head.replace(r"two\_moons", "")
    good = next(line for line in head.splitlines()
                if "two\\_moons" in line and "WS-FM & good &" in line)
    # Full FM's reference is N=20 (the cheapest within 5% of N=50's best). This run has no
    # selection seeds, so no row makes a claim and no speed-up is printed.
    assert r"solver=euler, $N$=20" in good and "inconclusive" in good
    assert r"$\times$" not in head and "& poor &" in head
    bound = tables["bound_check.tex"]
    n_cells = _n_groups(("ws-fm", "warm-start")) * len(SEEDS)
    assert rf"two\_moons & {n_cells} & {n_cells} & {n_cells - 1} & {n_cells - 1} \\" in bound
    assert rf"eight-gaussians & {n_cells} & {n_cells} & {n_cells} & {n_cells} \\" in bound


def test_tex_escape_and_pm() -> None:
    assert latex.tex_escape("a_b 5% & #1 {x} $y ~ ^") == (
        r"a\_b 5\% \& \#1 \{x\} \$y \textasciitilde{} \textasciicircum{}")
    assert latex.tex_escape(None) == "--"
    assert latex.pm(0.1234, 0.1134, 0.1334) == r"$0.123 \pm 0.010$"
    assert latex.pm(2.0, 2.0, 2.0) == "$2$" and latex.pm(float("nan"), 0, 1) == "--"


def test_cli_glue(run_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser()
    publish.add_arguments(parser)
    args = parser.parse_args([str(run_dir), "--out", str(tmp_path / "pub"), "--formats", "png"])
    assert publish.run(args) == 0
    printed = capsys.readouterr().out.split()
    assert printed and all(Path(p).exists() and Path(p).parent == tmp_path / "pub"
                           for p in printed)
    assert not list((tmp_path / "pub").glob("*.pdf")) and list((tmp_path / "pub").glob("*.png"))
    with pytest.raises(ConfigError, match="jpg"):
        publish.run(parser.parse_args([str(run_dir), "--formats", "png,jpg"]))


def test_not_a_run_dir(tmp_path: Path) -> None:
    with pytest.raises(RunDirError):
        publish.write_figures(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(RunDirError, match="manifest"):
        publish.write_figures(tmp_path / "empty")


IMPORT_CHECK = """
import json, sys
import harness.report.publish as p
p.write_figures(sys.argv[1], sys.argv[2])
print(json.dumps(sorted(sys.modules)))
"""


@pytest.fixture(scope="module")
def imported(run_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """The modules a fresh interpreter has loaded after write_figures."""
    out = tmp_path_factory.mktemp("imports")
    proc = subprocess.run([sys.executable, "-c", IMPORT_CHECK, str(run_dir), str(out)],
                          capture_output=True, text=True, check=True, timeout=300)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_no_model_code_runs(imported: list[str]) -> None:
    model = [m for m in imported if m.split(".")[0] in ("baselines", "wsfm")
             or m.startswith(("harness.run", "harness.nn", "harness.points", "harness.images"))
             or m in ("harness.context", "harness.plugins", "harness.registry")]
    assert not model, model


def test_no_torch_or_wsfm_imported(imported: list[str]) -> None:
    # The harness's own arithmetic (harness.analysis.speedup) serves the report: no wsfm code.
    bad = [m for m in imported if m.split(".")[0] in ("torch", "baselines", "wsfm")
           or m in ("harness.run.runner", "harness.context")]
    assert not bad, bad[:10]
