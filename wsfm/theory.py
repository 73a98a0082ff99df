"""The guaranteed speed-up of a warm start (docs/method.md): exact NFE ratio, wall-clock bound."""

from __future__ import annotations

from wsfm.schedule import exact_time, num_steps


def nfe_speedup(t0: float, n: int) -> float:
    """S_nfe = N / ceil((1 - t0) N): exact for any solver, since both use s calls per step."""
    return n / num_steps(t0, n)


def ideal_speedup(t0: float) -> float:
    """1 / (1 - t0): the bound S_nfe reaches when (1 - t0) N is an integer."""
    return float(1 / (1 - exact_time(t0)))


def wall_clock_bound(
    n: int, k: int, evals_per_step: int, time_per_call: float, draft_time: float
) -> float:
    """S_wall = N s c / (T_d + K s c): the best wall-clock speed-up a draft of cost T_d allows."""
    full = n * evals_per_step * time_per_call
    return full / (draft_time + k * evals_per_step * time_per_call)
