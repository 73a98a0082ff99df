"""Schedule, solvers, theory: the K rounding rule, exact NFE per solver, the speed-up bound."""

from __future__ import annotations

import math

import pytest
import torch

from harness.run.nfe import CountingNetwork
from wsfm import solvers, theory
from wsfm.methods import WarmStartFM
from wsfm.paths import AffinePath
from wsfm.schedule import check_start_time, num_steps, time_grid
from wsfm.sources import make_source


@pytest.mark.parametrize(
    ("t0", "n", "k"),
    [(0.0, 10, 10), (0.9, 10, 1), (0.8, 10, 2), (0.7, 10, 3), (0.7, 7, 3), (0.8, 7, 2),
     (0.5, 3, 2), (0.3, 10, 7), (0.95, 10, 1), (0.9, 100, 10), (0.99, 7, 1)],
)
def test_k_is_ceil_of_remaining_steps(t0: float, n: int, k: int) -> None:
    assert num_steps(t0, n) == k
    grid = time_grid(t0, n)
    assert len(grid) == k + 1
    assert grid[0].item() == pytest.approx(t0) and grid[-1].item() == 1.0
    steps = grid.diff()
    assert torch.allclose(steps[:-1], torch.full_like(steps[:-1], 1 / n))
    assert 0 < steps[-1] <= 1 / n + 1e-12


def test_float_rounding_does_not_add_a_step() -> None:
    assert (1 - 0.7) * 10 > 3  # the trap: naive ceil would give 4
    assert num_steps(0.7, 10) == 3


@pytest.mark.parametrize("bad", [-0.1, 1.0, 1.5, float("nan")])
def test_bad_start_time_is_refused_by_the_one_check(bad: float) -> None:
    with pytest.raises(ValueError, match="outside"):
        check_start_time(bad)
    with pytest.raises(ValueError, match="outside"):  # a warm start checks its t0 with it
        WarmStartFM(t0=bad)


@pytest.mark.parametrize("bad", [0, -3, 2.5, True])
def test_bad_step_count(bad) -> None:
    with pytest.raises(ValueError, match="positive integer"):
        num_steps(0.5, bad)


@pytest.mark.parametrize("solver", list(solvers.STEPS))
@pytest.mark.parametrize(("t0", "n"), [(0.0, 10), (0.7, 10), (0.8, 7)])
def test_nfe_is_exact_per_solver(solver: str, t0: float, n: int) -> None:
    net = CountingNetwork(lambda x, t: -x)
    solvers.integrate(net, torch.ones(4, 2), time_grid(t0, n), solver)
    assert net.calls == num_steps(t0, n) * solvers.EVALS_PER_STEP[solver]


def test_solvers_converge_in_order() -> None:
    # dx/dt = -x from 1 at t=0: x(1) = e^-1. Higher-order solvers are more accurate.
    errors = {}
    for solver in solvers.STEPS:
        x = solvers.integrate(lambda x, t: -x, torch.ones(1, 1, dtype=torch.float64),
                              time_grid(0.0, 10), solver)
        errors[solver] = abs(x.item() - math.exp(-1))
    assert errors["rk4"] < 1e-6 < errors["heun"] < errors["euler"]
    assert errors["midpoint"] < errors["euler"] / 10


def test_speedup_theory() -> None:
    assert theory.nfe_speedup(0.9, 10) == 10.0
    assert theory.nfe_speedup(0.8, 7) == 3.5  # 7 / ceil(1.4)
    assert theory.nfe_speedup(0.8, 7) < theory.ideal_speedup(0.8) == pytest.approx(5.0)
    # With no draft cost the wall-clock bound is the NFE ratio; a draft cost lowers it.
    assert theory.wall_clock_bound(10, 1, 1, 0.01, 0.0) == pytest.approx(10.0)
    assert theory.wall_clock_bound(10, 1, 1, 0.01, 0.01) == pytest.approx(5.0)


def test_affine_path_is_condot_at_zero_and_warm_start_at_t0() -> None:
    x0, x1 = torch.zeros(3, 2), torch.ones(3, 2)
    t = torch.tensor([0.0, 0.25, 1.0])
    path = AffinePath(0.0)
    assert torch.allclose(path.interpolate(x0, x1, t)[:, 0], t)
    assert torch.allclose(path.target_velocity(x0, x1), x1 - x0)
    warm = AffinePath(0.5)
    xt = warm.interpolate(x0, x1, torch.tensor([0.5, 0.75, 1.0]))
    assert torch.allclose(xt[:, 0], torch.tensor([0.0, 0.5, 1.0]))
    assert torch.allclose(warm.target_velocity(x0, x1), 2 * (x1 - x0))


def test_noised_draft_source_lies_on_the_noise_path() -> None:
    g = torch.Generator().manual_seed(0)
    x_d = torch.full((20000, 2), 3.0)
    start = make_source("noised-draft", 0.8).start(x_d, x_d, g)
    assert start.mean().item() == pytest.approx(0.8 * 3.0, abs=0.01)
    assert start.std().item() == pytest.approx(0.2, abs=0.01)
    assert torch.equal(make_source("draft", 0.8).start(x_d, x_d, g), x_d)
    with pytest.raises(ValueError, match="unknown start"):
        make_source("warm", 0.5)
