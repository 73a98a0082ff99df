"""Shared fixtures: every test gets its own cache folder, and a tiny suite to run."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

# Tiny networks gain nothing from intra-op threads, and xdist runs one worker per core:
# more threads than cores makes OpenMP spin and every test crawl.
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WSFM_BENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_EVALUATE_OFFLINE", "1")


TINY_SUITE = """
name = "tiny"
seeds = [0]
budgets = [4]
n_samples = 300
n_eval = 300
repeats = 2
[training]
steps = 60
batch_size = 128
[[tasks]]
name = "two-moons"
n_train = 600
n_test = 300
"""


@pytest.fixture
def tiny_suite_text() -> str:
    return TINY_SUITE
