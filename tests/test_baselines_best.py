"""Baselines at their best (issue 12, item 1): DDIM/DDPM take their usual time spacings, and
full FM's training records a convergence check on held-out data."""

from __future__ import annotations

import pytest
import torch

from baselines.diffusion import DDIM, time_grid
from harness.nn.training import PLATEAU, TrainConfig, convergence, optimise


@pytest.mark.parametrize("spacing", ["trailing", "quadratic", "leading"])
def test_spacings_run_from_noise_to_data_in_n_steps(spacing: str) -> None:
    grid = time_grid(10, spacing)
    assert len(grid) == 11 and grid[-1] == 0.0
    assert all(a > b for a, b in zip(grid, grid[1:], strict=False))
    assert grid[0] == (10 / 11 if spacing == "leading" else 1.0)


def test_quadratic_spacing_is_denser_near_the_data() -> None:
    grid = time_grid(10, "quadratic")
    assert grid[-2] - grid[-1] < grid[0] - grid[1]
    assert DDIM(spacing="quadratic").label() == "eta=0 quadratic"
    assert DDIM().label() == "eta=0"  # the default's variant label is what it always was
    with pytest.raises(ValueError, match="spacing='cosine'; allowed: trailing, quadratic"):
        DDIM(spacing="cosine")


def test_optimise_records_a_held_out_curve_and_the_plateau() -> None:
    torch.manual_seed(0)
    net = torch.nn.Linear(1, 1)
    x = torch.linspace(-1, 1, 64)[:, None]

    def loss(_: torch.Generator) -> torch.Tensor:
        return (net(x) - 3 * x - torch.sin(20 * x)).pow(2).mean()  # a floor a line cannot fit

    curve: list[list[float]] = []
    optimise(net, loss, TrainConfig(steps=200, batch_size=64, lr=5e-2), torch.Generator(),
             progress=False, held_out=lambda: float(loss(torch.Generator())), curve=curve)
    assert [step for step, _ in curve] == [40, 80, 120, 160, 200]
    record = convergence(curve)
    assert record["plateaued"] is True and record["last_fall"] < PLATEAU
    still = convergence([[1, 2.0], [2, 1.0]])
    assert still["plateaued"] is False and still["last_fall"] == 0.5
