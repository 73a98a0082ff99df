"""The continuous refiners: the assignment refiner keeps the data's distribution (each block of
drafts matched one to one with as many training points), the nearest-neighbour refiner follows
the drafts' mass."""

from __future__ import annotations

import pytest
import torch

from harness.errors import ConfigError
from harness.plugins import instantiate
from harness.points.metrics import SlicedWasserstein
from harness.registry import refiners


def _train(n: int = 2000) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.randn(n, 2, generator=g)


def test_assignment_matches_each_block_one_to_one_with_training_points() -> None:
    train = _train()
    refiner = instantiate(refiners, "assignment", {"block": 300})
    refiner.fit(train)
    drafts = 0.3 * torch.randn(1000, 2, generator=torch.Generator().manual_seed(1))
    targets = refiner.refine(drafts)
    rows = {tuple(t.tolist()): None for t in train}
    assert all(tuple(t.tolist()) in rows for t in targets)  # every target a training point
    for start in range(0, 1000, 300):  # no training point twice within a block
        block = targets[start:start + 300]
        assert len({tuple(t.tolist()) for t in block}) == len(block)
    assert torch.equal(refiner.refine(drafts), targets)  # the same drafts, the same targets


def test_assignment_keeps_the_data_distribution_nearest_neighbour_follows_the_drafts() -> None:
    train = _train(4000)
    reference = torch.randn(2000, 2, generator=torch.Generator().manual_seed(2))
    # A poor draft: all its mass near the origin, a third of the data's spread.
    drafts = 0.3 * torch.randn(2000, 2, generator=torch.Generator().manual_seed(3))
    swd = SlicedWasserstein()
    scores = {}
    for name in ("assignment", "nearest-neighbour"):
        refiner = instantiate(refiners, name, {})
        refiner.fit(train)
        scores[name] = swd.compute(refiner.refine(drafts), reference, 0)
    floor = swd.compute(train[:2000], reference, 0)
    assert scores["assignment"] < 2 * floor < scores["nearest-neighbour"], (scores, floor)


def test_assignment_in_pca_space_and_its_bad_options() -> None:
    train = torch.randn(100, 1, 4, 4, generator=torch.Generator().manual_seed(4))
    refiner = instantiate(refiners, "assignment", {"pca_dims": 6, "block": 100})
    refiner.fit(train)
    # A block as large as the training split holds all of it: points just off training
    # points are matched back to themselves.
    out = refiner.refine(train + 0.01)
    assert out.shape == (100, 1, 4, 4) and torch.equal(out, train)
    for bad, match in (({"block": 0}, "block=0"), ({"pca_dims": -1}, "pca_dims=-1")):
        with pytest.raises(ConfigError, match=match):
            instantiate(refiners, "assignment", bad)
