"""The runner end to end on a tiny suite: exact NFE, speed-up accounting, determinism,
records, resume after SIGKILL, and a trained warm start beating its draft."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from harness.cache import Cache
from harness.records import store as records
from harness.records.store import load_run, load_samples
from harness.run import runner
from harness.run.expand import expand_cells
from harness.run.jobs import Worker
from harness.run.suite import parse_suite
from wsfm.schedule import num_steps

METHODS = """
[[methods]]
name = "full-fm"
solver = ["euler", "heun"]
[[methods]]
name = "ws-fm"
t0 = [0.75, 0.8]
start = ["draft", "noised-draft"]
[[methods]]
name = "warm-start"
draft = "poor"
t0 = 0.5
[[methods]]
name = "ddpm"
[[methods]]
name = "ddim"
[[methods]]
name = "draft-only"
"""


def _suite(text: str, **overrides):
    import tomllib

    data = tomllib.loads(text)
    data.update(overrides)
    return parse_suite(data, "test suite")


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory) -> tuple[Path, object]:
    from tests.conftest import TINY_SUITE

    tmp = tmp_path_factory.mktemp("run")
    suite = _suite(TINY_SUITE + METHODS, budgets=[4, 7])
    run_dir = runner.run_suite(suite, tmp / "results", cache=Cache(tmp / "cache"),
                               progress=False)
    return run_dir, suite


def test_every_cell_counts_exact_nfe(tiny_run) -> None:
    run_dir, suite = tiny_run
    df = load_run(run_dir)
    cells = df.drop_duplicates("cell_id")
    assert len(cells) == len(expand_cells(suite)) == 2 * 2 + 4 * 2 + 2 + 2 + 2 + 1
    assert cells["nfe_ok"].all()
    for _, row in cells.iterrows():
        per_step = {"heun": 2}.get(row["solver"], 1)
        if row["method"] == "draft-only":
            expected = 0
        elif row["method"] in ("ws-fm", "warm-start"):
            expected = num_steps(row["t0"], row["n_steps"]) * per_step
        else:
            expected = row["n_steps"] * per_step
        assert row["nfe_measured"] == expected, row["variant"]


def test_warm_start_speedup_is_exactly_n_over_k(tiny_run) -> None:
    df = load_run(tiny_run[0]).drop_duplicates("cell_id")
    warm = df[df["method"].isin(["ws-fm", "warm-start"])]
    assert len(warm) == 10
    for _, row in warm.iterrows():
        n, t0 = row["n_steps"], row["t0"]
        assert row["nfe_speedup"] == n / math.ceil(round((1 - t0) * n, 9))
        assert row["nfe_speedup"] == row["nfe_speedup_theory"]
        assert row["nfe_speedup"] <= row["ideal_speedup"] + 1e-12
        # S_wall = (F + N s c) / (F + T_d + K s c) never exceeds N / K.
        assert 0 < row["wall_bound"] <= row["nfe_speedup_theory"] + 1e-9
        assert row["wall_speedup"] > 0
    # (1 - 0.8) * 7 = 1.4 is not an integer: the ceil-rounded speed-up is below 1/(1 - t0).
    r = warm[(warm["t0"] == 0.8) & (warm["n_steps"] == 7)].iloc[0]
    assert r["nfe_speedup"] == 3.5 and r["ideal_speedup"] == pytest.approx(5.0)


def test_records_are_tidy_and_complete(tiny_run) -> None:
    run_dir, suite = tiny_run
    df = load_run(run_dir)
    assert list(df.columns) == records.COLUMNS
    assert set(df["metric"]) == {"swd", "mmd", "energy", "precision", "recall", "copy-rate"}
    assert df.groupby("cell_id").size().eq(6).all()
    assert df["value"].notna().all()
    assert (df[df.metric == "precision"]["higher_is_better"]).all()
    assert not (df[df.metric == "swd"]["higher_is_better"]).any()
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["config_hash"] == suite.config_hash
    assert manifest["status"] == "complete" and manifest["finished"]
    assert manifest["versions"]["torch"] and manifest["device"]["description"]
    assert (run_dir / "records.csv").read_text().count("\n") == len(df) + 1


def test_same_seed_same_samples_across_fresh_caches(tmp_path, tiny_run) -> None:
    from tests.conftest import TINY_SUITE

    run_dir, _ = tiny_run
    text = TINY_SUITE + '[[methods]]\nname = "ws-fm"\nt0 = 0.75\n[[methods]]\nname = "ddpm"\n'
    again = runner.run_suite(_suite(text, budgets=[4]), tmp_path / "r", run_id="again",
                             cache=Cache(tmp_path / "fresh-cache"), progress=False)
    other_seed = runner.run_suite(_suite(text, budgets=[4], seeds=[1]), tmp_path / "r",
                                  run_id="seed1", cache=Cache(tmp_path / "c2"), progress=False)
    first = load_run(run_dir).drop_duplicates("cell_id").set_index(["method", "variant"])
    for cell in load_run(again).drop_duplicates("cell_id").itertuples():
        original = first.loc[(cell.method, cell.variant)]
        original = original[original["n_steps"] == 4].iloc[0]
        assert np.array_equal(load_samples(again, cell.cell_id),
                              load_samples(run_dir, original["cell_id"]))
    a = load_run(again).drop_duplicates("cell_id").sort_values("method")
    b = load_run(other_seed).drop_duplicates("cell_id").sort_values("method")
    for ca, cb in zip(a["cell_id"], b["cell_id"], strict=True):
        assert not np.array_equal(load_samples(again, ca), load_samples(other_seed, cb))


def test_a_trained_warm_start_beats_its_poor_draft(tmp_path) -> None:
    from tests.conftest import TINY_SUITE

    text = (TINY_SUITE.replace("steps = 60", "steps = 1000")
            .replace("batch_size = 128", "batch_size = 256")
            .replace("n_train = 600", "n_train = 2000"))
    text += '[[methods]]\nname = "ws-fm"\ndraft = "poor"\nt0 = 0.5\n'
    text += '[[methods]]\nname = "draft-only"\ndraft = "poor"\n'
    run_dir = runner.run_suite(_suite(text, budgets=[10], n_samples=1000), tmp_path,
                               cache=Cache(tmp_path / "cache"), progress=False)
    df = load_run(run_dir)
    # The refined samples land on the data (precision up); the 2-component draft does not.
    precision = df[df.metric == "precision"].set_index("method")["value"]
    assert precision["ws-fm"] > precision["draft-only"] + 0.15, precision.to_dict()
    swd = df[df.metric == "swd"].set_index("method")["value"]
    assert swd["ws-fm"] < 1.1 * swd["draft-only"], swd.to_dict()


RESUME_SUITE = """
name = "resume"
seeds = [0]
budgets = [2, 3, 4, 5, 6, 8, 10, 12, 16, 20, 24, 32]
n_samples = 300
n_eval = 300
repeats = 3
[training]
steps = 40
[[tasks]]
name = "two-moons"
n_train = 500
n_test = 300
[[methods]]
name = "full-fm"
solver = ["euler", "midpoint", "rk4"]
"""


def test_resume_after_sigkill_reuses_finished_cells(tmp_path) -> None:
    suite_file = tmp_path / "resume.toml"
    suite_file.write_text(RESUME_SUITE)
    out, cache = tmp_path / "results", tmp_path / "cache"
    cmd = [sys.executable, "-m", "harness.cli", "run", str(suite_file), "--out", str(out),
           "--cache", str(cache), "--run-id", "r", "--quiet", "--no-report"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    cells_dir = out / "r" / "cells"
    deadline = time.time() + 120
    while time.time() < deadline and len(list(cells_dir.glob("*.json"))) < 3:
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    finished = {p.name: p.read_bytes() for p in cells_dir.glob("*.json")}
    total = len(expand_cells(_suite(RESUME_SUITE)))
    assert 3 <= len(finished) < total, "the run ended before it could be killed"
    assert json.loads((out / "r" / "manifest.json").read_text())["status"] == "running"

    ran = []
    real_run = Worker.run

    def counting_run(worker, cell, *args, **kwargs):
        ran.append(cell.cell_id)
        return real_run(worker, cell, *args, **kwargs)

    pytest.MonkeyPatch().setattr(Worker, "run", counting_run)
    runner.run_suite(_suite(RESUME_SUITE), out, run_id="r", cache=Cache(cache), progress=False)
    assert len(ran) == total - len(finished)
    assert not {f"{c}.json" for c in ran} & set(finished)
    for name, content in finished.items():  # finished records untouched
        assert (cells_dir / name).read_bytes() == content
    manifest = json.loads((out / "r" / "manifest.json").read_text())
    assert manifest["cells"] == {"total": total, "reused": len(finished), "run": len(ran)}
    assert manifest["status"] == "complete" and len(manifest["resumed"]) == 1
    assert len(load_run(out / "r").drop_duplicates("cell_id")) == total
