"""The headline's evidence rules (issue 11): paired non-inferiority with a margin, Holm, the
frontier reference, the draft-alone floor, selection apart from evaluation, the speed-ups, and
an independent recomputation of every non-inferior claim from records.csv."""

from __future__ import annotations

import json
import math
import tomllib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps

from harness.analysis.evidence import headline, versus_draft
from harness.analysis.frontier import Config
from harness.analysis.noninferiority import VERDICTS, Rules, holm, paired_test
from harness.cli import main
from harness.errors import ConfigError
from harness.records.schema import SCHEMA_VERSION
from harness.records.store import load_run, read_manifest, write_records_csv
from harness.run.expand import expand_cells
from harness.run.suite import parse_suite
from tests.synthetic import write_run

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests" / "fixtures" / "smoke-2026-11"  # the smoke reference of 2026-11
REFERENCE = ROOT / "results" / "reference" / "smoke"
SELECTION, EVALUATION = [100, 101, 102], list(range(10))


def test_paired_test_matches_scipy_with_the_margin_shifted() -> None:
    rng = np.random.default_rng(0)
    ref = pd.Series(rng.normal(1.0, 0.1, 8))
    cand = ref + rng.normal(0.02, 0.03, 8)
    for hib in (False, True):
        test = paired_test(cand, ref, hib, margin=0.05)
        # d = how much worse: cand - ref (lower is better) or ref - cand (higher is better).
        worse, base = (ref, cand) if hib else (cand, ref)
        expect = sps.ttest_rel(worse - 0.05, base, alternative="less").pvalue
        assert test.p_noninferior == pytest.approx(expect)
        assert test.p_inferior == pytest.approx(1 - expect)
        assert test.n == 8 and test.worse == pytest.approx(float((worse - base).mean()))
    # Seeds are paired by index: missing or NaN values drop that seed on both sides.
    short = paired_test(cand.drop(index=[0, 1]), ref.where(ref.index != 2), False, 0.05)
    assert short.n == 5
    assert math.isnan(paired_test(cand[:1], ref[:1], False, 0.05).p_noninferior)
    # No spread: the sign of mean(d) - margin decides.
    flat = paired_test(pd.Series([1.0, 1.0]), pd.Series([1.0, 1.0]), False, 0.01)
    assert (flat.p_noninferior, flat.p_inferior) == (0.0, 1.0)


def test_holm() -> None:
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    out = holm([0.2, float("nan"), 0.01])
    assert out[0] == pytest.approx(0.2) and math.isnan(out[1]) and out[2] == pytest.approx(0.02)
    assert holm([]) == []


def test_rules() -> None:
    rules = Rules.from_dict({"alpha": 0.1, "margin": {"rel": 0.02},
                             "margins": {"fid": {"abs": 1.5}}})
    assert rules.margin_for("swd").value(0.1, None, False) == pytest.approx(0.002)
    assert rules.margin_for("fid").value(30.0, None, False) == pytest.approx(1.5)
    assert Rules.from_dict(rules.to_dict()) == rules
    with pytest.raises(ConfigError, match="alpha must be a number in"):
        Rules.from_dict({"alpha": 1.5})
    with pytest.raises(ConfigError, match="unknown key 'margn'"):
        Rules.from_dict({"margn": {}})
    with pytest.raises(ConfigError, match="margins.fid.*finite number"):
        Rules.from_dict({"margins": {"fid": {"abs": "x"}}})


# A synthetic run: two moons-like quality with shared seed effects and per-cell noise.
FULL = {("solver=euler", 1): 0.50, ("solver=euler", 2): 0.30, ("solver=euler", 5): 0.15,
        ("solver=euler", 10): 0.105, ("solver=euler", 20): 0.100,
        ("solver=heun", 2): 0.20, ("solver=heun", 5): 0.102, ("solver=heun", 10): 0.100}
C, T_D = 1e-3, 2e-4


def _cell(method: str, variant: str, n: int, seed: int, value: float, nfe: int, time_s: float,
          draft: str | None = None, t0: float | None = None) -> dict:
    family = {"full-fm": "flow", "draft-only": "draft"}.get(method, "warm-start")
    timing = {"median": time_s, "spread": 0.0, "first": time_s, "times": [time_s]}
    return {
        "cell_id": f"{method}-{variant}-{n}-{seed}".replace(" ", "_").replace("=", ""),
        "cell": {"task": "toy", "task_options": {}, "method": method, "method_options": {},
                 "n_steps": n, "seed": seed, "device": "cpu", "n_samples": 10, "n_eval": 10,
                 "repeats": 5, "warmup": 1, "training": {}},
        "task": "toy", "method": method, "family": family, "variant": variant,
        "draft": draft, "t0": t0, "start": None, "init": None, "solver": None, "n_steps": n,
        "k_steps": nfe, "nfe_budget": n, "nfe_expected": nfe, "nfe_measured": nfe,
        "nfe_ok": True, "seed": seed, "time_s": time_s, "time_spread_s": 0.0,
        "first_call_s": time_s, "draft_time_s": T_D, "integrate_time_s": time_s - T_D,
        "time_per_call_s": C, "deterministic": True,
        "timings": {"total": timing, "draft": timing, "integrate": timing, "reference": None},
        "nonfinite": 0, "n_samples": 10, "n_eval": 10, "device": "cpu", "threads": 1,
        "metrics": {"swd": {"value": value, "higher_is_better": False}},
    }


def _records(rng: np.random.Generator) -> list[dict]:
    out = []
    for seed in SELECTION + EVALUATION:
        shared = rng.normal(0, 0.01)  # what every cell of a seed shares (split, projections)

        def q(mean: float, shared: float = shared) -> float:
            return mean + shared + rng.normal(0, 0.001)
        for (variant, n), mean in FULL.items():
            calls = n * (2 if "heun" in variant else 1)
            out.append(_cell("full-fm", variant, n, seed, q(mean), calls, calls * C))
        out.append(_cell("draft-only", "good", 0, seed, q(0.3), 0, T_D, "good"))
        out.append(_cell("draft-only", "poor", 0, seed, q(0.6), 0, T_D, "poor"))
        for t0 in (0.8, 0.9):
            for n in (5, 10, 20):
                k = math.ceil(round((1 - t0) * n, 9))
                out.append(_cell("ws-fm", f"good t0={t0}", n, seed, q(0.101), k, T_D + k * C,
                                 "good", t0))
                out.append(_cell("ws-fm", f"poor t0={t0}", n, seed, q(0.2), k, T_D + k * C,
                                 "poor", t0))
    return out


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run = tmp_path_factory.mktemp("evidence") / "run"
    manifest = {
        "schema_version": SCHEMA_VERSION, "run_id": "run", "config_hash": "abc",
        "suite": {"name": "s", "tasks": [["toy", {}]], "methods": [], "budgets": [1],
                  "seeds": EVALUATION},
        "seeds": EVALUATION, "versions": {}, "git_commit": {"commit": None, "dirty": None},
        "device": {"device": "cpu", "description": "cpu"}, "started": "t", "resumed": [],
        "finished": "t", "status": "complete", "primary_metrics": {"toy": "swd"},
        "cells": {"total": 1, "reused": 0, "run": 1},
        "evidence": {"rules": Rules().to_dict(),
                     "seeds": {"toy": {"selection": SELECTION, "evaluation": EVALUATION}}},
    }
    write_run(run, manifest, _records(np.random.default_rng(1)))
    write_records_csv(run)
    return run


def test_synthetic_headline(synthetic: Path) -> None:
    rows, notes = headline(load_run(synthetic), read_manifest(synthetic))
    by = {r["draft"]: r for r in rows}
    # Full FM's best is N=20 (Euler) or N=10 (Heun); the cheapest within 5% is Heun N=5:
    # 10 calls, fewer than Euler N=10.
    assert by["good"]["reference"] == {"method": "full-fm", "title": "Full FM",
                                       "variant": "solver=heun",
                                       "n_budget": 5, "nfe": 10.0}
    # Good draft: every setting is as good; the cheapest take K=1 step (N=5 at t0=0.8 or
    # 0.9, equally cheap): 10 calls / 1 = 10x.
    good = by["good"]
    assert good["verdict"] == "non-inferior"
    assert (good["n_budget"], good["k_steps"]) == (5, 1)
    assert good["speedup_nfe"] == pytest.approx(10.0)
    low, high = good["interval"]
    assert low <= good["speedup_wall"] <= high
    # Poor draft: WS-FM twice as bad as the reference: inferior, never a speed-up.
    assert by["poor"]["verdict"] == "inferior"
    assert notes["toy"] == []
    # Against their own drafts (0.3 and 0.6 alone) both warm starts are far better.
    for draft, gap in (("good", 0.101 - 0.3), ("poor", 0.2 - 0.6)):
        versus = by[draft]["versus_draft"]
        assert versus["state"] == "not behind" and versus["n"] == len(EVALUATION)
        assert versus["worse"] == pytest.approx(gap, abs=0.01)
        assert versus["interval"][0] < versus["worse"] < versus["interval"][1]


def _config(values: list[float]) -> Config:
    seeds = pd.Series(values, index=range(len(values)))
    return Config("m", "warm-start", "M", "v", "good", 10.0, seeds, seeds * 0 + 1.0, 1.0, 1.0,
                  0.8)


def test_versus_draft_says_behind_not_behind_or_inconclusive() -> None:
    draft = [1.0, 1.1, 0.9, 1.05, 0.95]
    seeds = list(range(5))
    behind = versus_draft(_config([v + 0.5 for v in draft]), _config(draft), seeds, False,
                          0.05, 0.05)
    assert behind["state"] == "behind" and behind["worse"] == pytest.approx(0.5)
    level = [v + 0.01 * (-1) ** i for i, v in enumerate(draft)]
    same = versus_draft(_config(level), _config(draft), seeds, False, 0.05, 0.05)
    assert same["state"] == "not behind" and same["interval"][1] < 0.05
    noisy = versus_draft(_config([v + d for v, d in zip(draft, (0.3, -0.3, 0.2, -0.2, 0.1),
                                                        strict=True)]),
                         _config(draft), seeds, False, 0.05, 0.05)
    assert noisy["state"] == "inconclusive"
    # The interval is the 1 - 2 alpha one: its upper end below the margin iff "not behind".
    d = np.array([0.3, -0.3, 0.2, -0.2, 0.1])
    half = sps.t.ppf(0.95, 4) * d.std(ddof=1) / math.sqrt(5)
    assert noisy["interval"] == pytest.approx([d.mean() - half, d.mean() + half])
    assert noisy["level"] == pytest.approx(0.9)


def _independent_claims(run: Path) -> list[tuple[dict, float, float]]:
    """Recompute each headline row's evaluation test from records.csv alone (pandas + scipy:
    one-sided paired t-tests, Holm over the whole headline written out here: each row's test
    and one test per draft alone and reference) and return (row, adjusted p, NFE ratio)."""
    manifest = json.loads((run / "manifest.json").read_text())
    csv = pd.read_csv(run / "records.csv")
    rows, _ = headline(load_run(run), manifest)
    tests: dict[tuple, pd.Series] = {}  # name -> paired "worse by" minus the margin, by seed
    for i, r in enumerate(rows):
        ev = manifest["evidence"]["seeds"][r["task"]]["evaluation"]
        d = csv[(csv["task"] == r["task"]) & (csv["metric"] == r["metric"])
                & csv["seed"].isin(ev)]
        hib = bool(d["higher_is_better"].iloc[0])

        def values(method: str, variant: str, n: float, d: pd.DataFrame = d) -> pd.Series:
            g = d[(d["method"] == method) & (d["variant"] == variant) & (d["n_steps"] == n)]
            return g.set_index("seed")["value"].sort_index()

        ref = r["reference"]
        r_vals = values(ref["method"], ref["variant"], ref["n_budget"])
        for name, c in ((("row", i), values(r["method"], r["variant"], r["n_budget"])),
                        (("draft", r["task"], r["draft"], ref["variant"], ref["n_budget"]),
                         values("draft-only", r["draft"], 0))):
            c, rr = c.align(r_vals, join="inner")
            tests[name] = ((rr - c) if hib else (c - rr)) - r["margin"]
    names = list(tests)
    ps = [sps.ttest_1samp(tests[k], 0.0, alternative="less").pvalue for k in names]
    order = np.argsort(ps)
    adj, running = [0.0] * len(ps), 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(ps) - rank) * ps[i]))
        adj[i] = running
    p_of = dict(zip(names, adj, strict=True))
    out = []
    for i, r in enumerate(rows):
        cand = csv[(csv["task"] == r["task"]) & (csv["method"] == r["method"])
                   & (csv["variant"] == r["variant"]) & (csv["n_steps"] == r["n_budget"])]
        out.append((r, p_of[("row", i)], r["reference"]["nfe"] / cand["nfe_measured"].mean()))
    return out


def test_independent_recomputation_agrees_with_every_claim(synthetic: Path) -> None:
    claims = [(r, p, s) for r, p, s in _independent_claims(synthetic)
              if r["verdict"] == "non-inferior"]
    assert claims, "the synthetic run must hold a non-inferior claim"
    for row, p, nfe_ratio in claims:
        assert p < 0.05 and row["p_value"] == pytest.approx(p)
        assert row["speedup_nfe"] == pytest.approx(nfe_ratio)


@pytest.mark.skipif(not (REFERENCE / "records.csv").is_file(), reason="no smoke reference")
def test_independent_recomputation_on_the_smoke_reference() -> None:
    for row, p, nfe_ratio in _independent_claims(REFERENCE):
        if row["verdict"] == "non-inferior":
            assert p < 0.05 and row["speedup_nfe"] == pytest.approx(nfe_ratio)
        elif row["verdict"] in ("inferior", "inconclusive") and row["p_value"] is not None:
            assert row["p_value"] == pytest.approx(p)  # the same test, not passed


def test_old_smoke_reference_good_draft_is_not_shown_to_suffice(
        capsys: pytest.CaptureFixture[str]) -> None:
    """The smoke reference of 2026-11 (3 seeds, full FM at N = 10 and 20 only) said "10x" for
    the good draft; its draft alone is about as good, but 3 seeds do not show it non-inferior,
    so the row is inconclusive with the seeds that would decide it, and the reference is
    censored (its frontier starts at N = 10)."""
    assert main(["summary", str(FIXTURE), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    good = [r for r in rows if r["draft"] == "good"]
    assert {r["method"] for r in good} == {"ws-fm", "warm-start"}
    for r in rows:
        assert set(r) >= {"task", "draft", "method", "variant", "t0", "n_budget", "reference",
                          "metric", "margin", "speedup_nfe", "speedup_wall", "interval",
                          "verdict", "floor", "target_quality", "detectable_margin",
                          "seeds_needed", "control"}
        assert set(r["reference"]) >= {"method", "variant", "n_budget"}
        assert r["reference"]["method"] == "full-fm" and r["metric"] == "swd"
        assert len(r["interval"]) == 2 and r["margin"] > 0 and r["verdict"] in VERDICTS
        assert r["reference_censored"] is True and r["control"] is None
        assert r["floor"] is None  # the run has no data floor cells
    for r in good:
        assert r["verdict"] == "inconclusive" and r["seeds_needed"] > 3
        assert r["speedup_nfe"] is None and r["speedup_wall"] is None
        assert r["measured_speedup_nfe"] >= 5  # measured, but not a WS-FM speed-up
        assert r["detectable_margin"] > r["margin"]
        assert "better than full FM at every budget" in r["draft_position"]
    poor = next(r for r in rows if r["draft"] == "poor")
    assert poor["verdict"] == "inconclusive" and "selection_seeds" in poor["reason"]
    assert main(["summary", str(FIXTURE)]) == 0
    text = capsys.readouterr().out
    assert "evaluation seeds would decide it" in text and "the reference is censored" in text


SUITE = """
name = "ev"
seeds = [0, 1]
selection_seeds = [7]
budgets = [2]
[[tasks]]
name = "two-moons"
[[tasks]]
name = "spirals"
seeds = [3, 4, 5]
selection_seeds = []
[[methods]]
name = "full-fm"
[evidence]
margin = { rel = 0.1 }
"""


def test_suite_seeds_and_evidence() -> None:
    suite = parse_suite(tomllib.loads(SUITE), "t")
    assert suite.seeds_for("two-moons") == ([7], [0, 1])
    assert suite.seeds_for("spirals") == ([], [3, 4, 5])
    seeds = {(c.task, c.seed) for c in expand_cells(suite)}
    assert seeds == {("two-moons", s) for s in (7, 0, 1)} | {("spirals", s) for s in (3, 4, 5)}
    assert suite.evidence["margin"] == {"rel": 0.1}
    bad = tomllib.loads(SUITE.replace("selection_seeds = [7]", "selection_seeds = [1]"))
    with pytest.raises(ConfigError, match=r"task 'two-moons': seeds \[1\] are both selection"):
        parse_suite(bad, "t")
    with pytest.raises(ConfigError, match=r"\[evidence\]: unknown key 'alfa'"):
        parse_suite(tomllib.loads(SUITE.replace("margin = { rel = 0.1 }", "alfa = 1")), "t")
