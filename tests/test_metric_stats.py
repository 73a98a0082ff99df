"""Reference-side metric statistics: same values with or without them, computed once, cached."""

from __future__ import annotations

import pytest
import torch

from harness.cache import Cache
from harness.context import CellContext
from harness.registry import metrics


@pytest.mark.parametrize("name", ["swd", "mmd", "energy", "precision", "recall"])
def test_stats_do_not_change_the_value(name: str) -> None:
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(400, 2, generator=g), torch.randn(300, 2, generator=g) + 0.3
    metric = metrics.get(name)()
    stats = metric.reference_stats(y, 5)
    assert metric.compute(x, y, 5, stats=stats) == pytest.approx(metric.compute(x, y, 5), abs=1e-9)


def test_reference_stats_are_cached_on_disk(tmp_path) -> None:
    ctx = CellContext("two-moons", {"n_train": 300, "n_test": 200}, 0, "cpu", Cache(tmp_path))
    reference = ctx.data.test
    metric = metrics.get("precision")()
    first = ctx.metric_stats("precision", metric, reference, 0)
    assert ctx.cache.misses == 1 and set(first) == {"knn_radii"}
    # Another worker (its own memo): loaded from disk, not recomputed.
    ctx2 = CellContext("two-moons", {"n_train": 300, "n_test": 200}, 0, "cpu", Cache(tmp_path))
    again = ctx2.metric_stats("precision", metric, reference, 0)
    assert ctx2.cache.hits == 1 and ctx2.cache.misses == 0
    assert torch.equal(first["knn_radii"], again["knn_radii"])
    # A metric that precomputes nothing caches nothing.
    assert ctx2.metric_stats("distinct-2", metrics.get("distinct-2")(), reference, 0) == {}
    assert len(list((tmp_path / "features").glob("*.pt"))) == 1


def test_a_rerun_reads_each_score_back_by_the_samples_content(tmp_path) -> None:
    """A metric is a deterministic function of its points, the reference and the seed: a warm
    rerun that draws the same samples reads the numbers back (none computed again), and other
    samples, another seed or another option are scored anew."""
    from dataclasses import replace

    from harness.records.cell import Cell
    from harness.run.judging import judge

    def context() -> CellContext:
        return CellContext("two-moons", {"n_train": 300, "n_test": 200}, 0, "cpu",
                           Cache(tmp_path))

    cell = Cell(task="two-moons", task_options={}, method="data", method_options={},
                n_steps=0, seed=0, device="cpu", n_samples=200, n_eval=200, repeats=1,
                warmup=0, training={}, metrics=["swd", "mmd"])
    samples = torch.randn(200, 2, generator=torch.Generator().manual_seed(3))
    ctx = context()
    first, _ = judge(cell, ctx, samples)
    assert ctx.cache.built["scores"] == 2
    ctx = context()  # another worker, or a warm run
    again, _ = judge(cell, ctx, samples.clone())
    assert again == first and ctx.cache.built["scores"] == 0
    other, _ = judge(cell, ctx, samples + 0.5)
    assert ctx.cache.built["scores"] == 2 and other["swd"].value != first["swd"].value
    judge(replace(cell, seed=1), ctx, samples)
    judge(replace(cell, metric_options={"swd": {"n_projections": 64}}), ctx, samples)
    assert ctx.cache.built["scores"] == 5  # both metrics for seed 1; swd with its option
