"""Fixed-grid solvers on an explicit time grid: ODE steps for continuous states, the
mixture discrete Euler step for tokens.

Each solver takes the grid as given (the caller builds it with wsfm.schedule.time_grid),
so that the step count, and with it the NFE, is decided in one place. ``EVALS_PER_STEP``
is what a step costs in network calls; the harness checks it by counting the calls.
``integrate`` picks the discrete step when the state holds integer tokens; there the
network returns logits of p(x_1 | x_t, t) and only "euler" is defined.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

Velocity = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _t(t: float, x: torch.Tensor) -> torch.Tensor:
    # One time per sample, in the state's dtype and device.
    return torch.full((x.shape[0],), t, dtype=x.dtype, device=x.device)


def euler_step(v: Velocity, x, t, t_next):
    return x + (t_next - t) * v(x, _t(t, x))


def midpoint_step(v: Velocity, x, t, t_next):
    h = t_next - t
    x_mid = x + 0.5 * h * v(x, _t(t, x))
    return x + h * v(x_mid, _t(t + 0.5 * h, x))


def heun_step(v: Velocity, x, t, t_next):
    """Heun's method (explicit trapezoid), with the correction on every step: 2 calls."""
    h = t_next - t
    d0 = v(x, _t(t, x))
    x_pred = x + h * d0
    d1 = v(x_pred, _t(t_next, x))
    return x + 0.5 * h * (d0 + d1)


def rk4_step(v: Velocity, x, t, t_next):
    h = t_next - t
    k1 = v(x, _t(t, x))
    k2 = v(x + 0.5 * h * k1, _t(t + 0.5 * h, x))
    k3 = v(x + 0.5 * h * k2, _t(t + 0.5 * h, x))
    k4 = v(x + h * k3, _t(t_next, x))
    return x + h / 6.0 * (k1 + 2 * k2 + 2 * k3 + k4)


def mixture_euler_step(logits_fn, x, t, t_next, generator):
    """One mixture discrete Euler step from t to t_next (Gat et al. 2024, kappa linear in s).

    On the mixture path the rate of jumping to a draw of p(x_1 | x_t) is
    kappa'/(1 - kappa) = 1 / (1 - t) in t for any start time, so each token jumps with
    probability (t_next - t) / (1 - t) and keeps its value otherwise. The last step (t_next = 1)
    jumps with probability 1: every token, and every mask, is resolved at t = 1.
    """
    logits = logits_fn(x, torch.full((x.shape[0],), t, device=x.device))
    probs = torch.softmax(logits.float(), dim=-1)
    draw = torch.multinomial(probs.reshape(-1, probs.shape[-1]), 1, generator=generator)
    draw = draw.view(x.shape)
    jump = torch.rand(x.shape, generator=generator, device=x.device) < (t_next - t) / (1 - t)
    return torch.where(jump, draw, x)


STEPS = {"euler": euler_step, "midpoint": midpoint_step, "heun": heun_step, "rk4": rk4_step}
EVALS_PER_STEP = {"euler": 1, "midpoint": 2, "heun": 2, "rk4": 4}


def check_solver(name: str) -> str:
    if name not in STEPS:
        raise ValueError(f"unknown solver {name!r}; allowed: {', '.join(STEPS)}")
    return name


def check_discrete_solver(name: str) -> str:
    if name != "euler":
        raise ValueError(f"solver {name!r} is for continuous states; tokens (text) use 'euler', "
                         "the mixture discrete Euler step")
    return name


@torch.no_grad()
def integrate(
    v: Velocity, x: torch.Tensor, grid: torch.Tensor, solver: str = "euler",
    generator: torch.Generator | None = None,
):
    """Integrate from grid[0] to grid[-1], one solver step per grid interval."""
    # Python floats for the steps: exact grid values, no per-step device transfer.
    times = [float(t) for t in grid.tolist()]
    if not x.is_floating_point():  # tokens: the mixture discrete Euler step
        check_discrete_solver(solver)
        for t, t_next in zip(times[:-1], times[1:], strict=True):
            x = mixture_euler_step(v, x, t, t_next, generator)
        return x
    step = STEPS[check_solver(solver)]
    for t, t_next in zip(times[:-1], times[1:], strict=True):
        x = step(v, x, t, t_next)
    return x
