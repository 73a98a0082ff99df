"""Fixed-grid ODE solvers for dx/dt = v(x, t) on an explicit time grid.

Each solver takes the grid as given (the caller builds it with wsfm.schedule.time_grid),
so that the step count, and with it the NFE, is decided in one place. ``EVALS_PER_STEP``
is what a step costs in network calls; the harness checks it by counting the calls.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

Velocity = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _t(t: float, x: torch.Tensor) -> torch.Tensor:
    # One time per sample, in the state's dtype and device.
    return torch.full((x.shape[0],), t, dtype=x.dtype, device=x.device)


def euler_step(v: Velocity, x, t0, t1):
    return x + (t1 - t0) * v(x, _t(t0, x))


def midpoint_step(v: Velocity, x, t0, t1):
    h = t1 - t0
    x_mid = x + 0.5 * h * v(x, _t(t0, x))
    return x + h * v(x_mid, _t(t0 + 0.5 * h, x))


def heun_step(v: Velocity, x, t0, t1):
    """Heun's method (explicit trapezoid), with the correction on every step: 2 calls."""
    h = t1 - t0
    d0 = v(x, _t(t0, x))
    x_pred = x + h * d0
    d1 = v(x_pred, _t(t1, x))
    return x + 0.5 * h * (d0 + d1)


def rk4_step(v: Velocity, x, t0, t1):
    h = t1 - t0
    k1 = v(x, _t(t0, x))
    k2 = v(x + 0.5 * h * k1, _t(t0 + 0.5 * h, x))
    k3 = v(x + 0.5 * h * k2, _t(t0 + 0.5 * h, x))
    k4 = v(x + h * k3, _t(t1, x))
    return x + h / 6.0 * (k1 + 2 * k2 + 2 * k3 + k4)


STEPS = {"euler": euler_step, "midpoint": midpoint_step, "heun": heun_step, "rk4": rk4_step}
EVALS_PER_STEP = {"euler": 1, "midpoint": 2, "heun": 2, "rk4": 4}


def check_solver(name: str) -> str:
    if name not in STEPS:
        raise ValueError(f"unknown solver {name!r}; allowed: {', '.join(STEPS)}")
    return name


@torch.no_grad()
def integrate(v: Velocity, x: torch.Tensor, grid: torch.Tensor, solver: str = "euler"):
    """Integrate from grid[0] to grid[-1], one solver step per grid interval."""
    step = STEPS[check_solver(solver)]
    # Python floats for the steps: exact grid values, no per-step device transfer.
    times = [float(t) for t in grid.tolist()]
    for t0, t1 in zip(times[:-1], times[1:], strict=True):
        x = step(v, x, t0, t1)
    return x
