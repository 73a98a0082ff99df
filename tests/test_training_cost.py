"""Training cost on the bill (issue 12, item 2): every cache entry records how long it took to
build; every record carries ``train_s``, the training seconds of what its method needs (a
fine-tune includes its full model), the same from a warm cache; the report shows it per method
and when a warm start's extra training pays for itself."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from harness.cache import Cache
from harness.records.store import read_cells
from harness.report.document import write_report
from harness.report.training import break_even
from harness.run.runner import run_suite
from harness.run.suite import parse_suite
from tests.synthetic import fields_of

SUITE = """
name = "cost"
seeds = [0]
budgets = [4]
n_samples = 200
n_eval = 200
repeats = 2
[training]
steps = 40
batch_size = 128
[[tasks]]
name = "two-moons"
n_train = 600
n_test = 300
[[methods]]
name = "draft-only"
draft = "good"
[[methods]]
name = "full-fm"
[[methods]]
name = "ws-fm"
draft = "good"
t0 = 0.5
init = ["scratch", "finetune"]
"""


def _records(tmp_path: Path, run_id: str) -> dict[str, dict]:
    import tomllib

    run = run_suite(parse_suite(tomllib.loads(SUITE)), tmp_path / "out", run_id=run_id,
                    cache=Cache(tmp_path / "cache"), progress=False)
    return {r["cell_id"]: r for r in map(fields_of, read_cells(run))}


def test_records_carry_the_training_cost_of_what_their_method_needs(tmp_path: Path) -> None:
    cold = _records(tmp_path, "cold")
    by_method = {(r["method"], r["cell"]["method_options"].get("init")): r
                 for r in cold.values()}
    for record in cold.values():
        assert record["train_s"] > 0
        assert math.isclose(record["train_s"], sum(record["train_parts"].values()))
    kinds = {m: {name.split("/")[0] for name in r["train_parts"]} for m, r in by_method.items()}
    assert kinds[("draft-only", None)] == {"drafts"}
    assert kinds[("full-fm", None)] == {"models"}
    assert kinds[("ws-fm", "scratch")] == {"drafts", "pairs", "models"}
    conv = by_method[("full-fm", None)]["convergence"]  # full FM's held-out check
    assert [step for step, _ in conv["heldout_loss"]] == [8, 16, 24, 32, 40]
    assert isinstance(conv["plateaued"], bool)
    assert by_method[("draft-only", None)]["convergence"] is None
    full = set(by_method[("full-fm", None)]["train_parts"])
    scratch = set(by_method[("ws-fm", "scratch")]["train_parts"])
    finetune = set(by_method[("ws-fm", "finetune")]["train_parts"])
    assert full <= finetune and not full <= scratch  # a fine-tune pays for its full model
    # Every entry's sidecar holds its build time and device.
    for sidecar in (tmp_path / "cache").glob("*/*.json"):
        meta = json.loads(sidecar.read_text())
        assert meta["build_s"] >= 0 and meta["device"] == "cpu"
        if meta["kind"] == "models":
            assert meta["steps"] == 40

    warm = _records(tmp_path, "warm")  # same cache: nothing is trained again
    assert {k: r["train_s"] for k, r in warm.items()} == {k: r["train_s"]
                                                          for k, r in cold.items()}
    report = write_report(tmp_path / "out" / "warm").read_text()
    assert "## Training cost" in report and "ws-fm" in report.split("## Training cost")[1]


@pytest.mark.parametrize(("extra", "saving", "expected"), [
    (10.0, 0.001, "10,000"), (0.0, 0.001, "from the first sample (no extra training)"),
    (-5.0, 0.001, "from the first sample (no extra training)"),
    (10.0, 0.0, "never (not faster per sample)"), (math.nan, 1.0, "–"),
])
def test_break_even(extra: float, saving: float, expected: str) -> None:
    assert break_even(extra, saving) == expected


def test_an_entry_built_inside_another_is_counted_once(tmp_path: Path) -> None:
    import time

    import torch

    cache = Cache(tmp_path)

    def inner() -> dict:
        time.sleep(0.3)
        return {"w": torch.zeros(1)}

    def outer() -> dict:
        cache.load_or_build("models", {"inner": 1}, inner)
        time.sleep(0.05)
        return {"w": torch.ones(1)}

    cache.load_or_build("models", {"outer": 1}, outer)
    assert cache.meta("models", {"inner": 1})["build_s"] >= 0.3
    assert cache.meta("models", {"outer": 1})["build_s"] < 0.25  # its own time only


def test_the_time_book_accounts_for_the_wall_before_the_cells_and_the_workers_rest() -> None:
    """The printed breakdown adds up: work, plus the workers' rest, is the workers' time from
    the first cell on; the seconds before it (the t0 advice) are named apart."""
    from types import SimpleNamespace

    from harness.run.accounting import TimeBook

    book = TimeBook(workers=2)
    book.before_s = 10.0
    book.prepared(SimpleNamespace(task="digits", method="full-fm"), 120.0)
    book.prepared(SimpleNamespace(task="digits", method="ws-fm"), 30.0)
    times = book.as_dict(wall_s=110.0)
    assert times["rest_s"] == 2 * (110 - 10) - 150 == 50
    assert times["before_cells_s"] == 10 and times["workers"] == 2
    assert times["preparing_s"] == {"digits / full-fm": 120.0, "digits / ws-fm": 30.0}
    first, *_, rest = book.lines(110.0)
    assert "110 s wall" in first and "10 s of it before them" in first and "2 workers" in first
    assert rest.startswith("  the rest of the workers' time: 50 s")
    assert TimeBook(workers=1).rest_s(0.0) == 0.0  # never negative
