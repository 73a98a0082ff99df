"""Toy tasks, drafts and the refiner: seeded splits, exact nearest neighbours, cells as data."""

from __future__ import annotations

import json

import pytest
import torch

from harness.context import seeded_generator
from harness.points.drafts import GaussianMixtureDraft
from harness.points.refiner import NearestNeighbour
from harness.records.cell import Cell
from harness.registry import tasks

TOY = ["two-moons", "8gaussians", "checkerboard", "spirals"]


@pytest.mark.parametrize("name", TOY)
def test_toy_split_is_seeded_standardised_and_disjoint(name: str) -> None:
    task = tasks.get(name)(n_train=800, n_test=200)
    a, b = task.load(), task.load()
    assert torch.equal(a.train, b.train) and torch.equal(a.test, b.test)
    assert a.train.shape == (800, 2) and a.test.shape == (200, 2)
    both = torch.cat([a.train, a.test])
    assert both.mean(0).abs().max() < 1e-5 and (both.std(0) - 1).abs().max() < 1e-3
    other = tasks.get(name)(n_train=800, n_test=200, data_seed=1).load()
    assert not torch.equal(a.train, other.train)
    assert {"good", "poor"} <= set(task.drafts)


def test_nearest_neighbour_matches_brute_force_across_batches() -> None:
    g = torch.Generator().manual_seed(0)
    train, drafts = torch.randn(500, 2, generator=g), torch.randn(300, 2, generator=g)
    refiner = NearestNeighbour(batch_size=64)
    refiner.fit(train)
    brute = train[((drafts[:, None, :] - train[None]) ** 2).sum(-1).argmin(1)]
    assert torch.equal(refiner.refine(drafts), brute)
    with pytest.raises(RuntimeError, match="fit"):
        NearestNeighbour().refine(drafts)


def test_gmm_draft_fits_samples_reproducibly_and_round_trips() -> None:
    data = tasks.get("8gaussians")(n_train=2000, n_test=100).load().train
    good, poor = GaussianMixtureDraft(8), GaussianMixtureDraft(1)
    good.fit(data, seeded_generator(0, "fit"))
    poor.fit(data, seeded_generator(0, "fit"))
    x1 = good.sample(1000, seeded_generator(0, "s"))
    assert torch.equal(x1, good.sample(1000, seeded_generator(0, "s")))
    clone = GaussianMixtureDraft(8)
    clone.load_state_dict(good.state_dict())
    assert torch.equal(clone.sample(1000, seeded_generator(0, "s")), x1)
    # Eight components find the eight modes; one Gaussian puts mass in the empty centre.
    centre = lambda x: (x.norm(dim=1) < 0.5).float().mean()  # noqa: E731
    assert centre(x1) < 0.02 < centre(poor.sample(1000, seeded_generator(0, "s")))
    with pytest.raises(ValueError, match="n_components must be a positive integer, got 0"):
        GaussianMixtureDraft(0)


def test_cell_is_plain_data() -> None:
    cell = Cell(task="two-moons", task_options={"n_train": 100}, method="ws-fm",
                method_options={"t0": 0.9, "draft": "good"}, n_steps=10, seed=0, device="cpu",
                n_samples=100, n_eval=100, repeats=2, warmup=1, training={"steps": 5})
    again = Cell.from_dict(json.loads(json.dumps(cell.to_dict())))
    assert again == cell and again.cell_id == cell.cell_id
    moved = Cell.from_dict({**cell.to_dict(), "seed": 1})
    assert moved.cell_id != cell.cell_id


def test_nearest_neighbour_in_pca_space_returns_training_images() -> None:
    g = torch.Generator().manual_seed(1)
    train = torch.randn(200, 1, 4, 4, generator=g)
    drafts = train[:50] + 0.01 * torch.randn(50, 1, 4, 4, generator=g)
    refiner = NearestNeighbour(pca_dims=8)
    refiner.fit(train)
    refined = refiner.refine(drafts)
    assert refined.shape == drafts.shape
    assert torch.equal(refined, train[:50])  # small perturbations keep their neighbour
    with pytest.raises(ValueError, match="pca_dims=-1"):
        NearestNeighbour(pca_dims=-1)
    with pytest.raises(ValueError, match="exceeds"):
        NearestNeighbour(pca_dims=99).fit(train)
