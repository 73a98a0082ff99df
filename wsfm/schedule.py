"""Start time, step count and time grid: the one place where K = ceil((1 - t0) N) lives.

Every method that integrates over part of [0, 1] uses the full model's step size
h = 1 / N, so a warm start at t0 takes K = ceil((1 - t0) N) steps. The count is computed
in exact decimal arithmetic: in floating point (1 - 0.7) * 10 is 3.0000000000000004, whose
ceiling would wrongly be 4.
"""

from __future__ import annotations

import math
from fractions import Fraction
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch is imported where a grid is built, so theory/reports stay light
    import torch


def exact_time(t0: float) -> Fraction:
    """t0 as the exact fraction of the decimal the user wrote."""
    # repr() gives the shortest decimal that round-trips, i.e. the number the user wrote.
    return Fraction(repr(float(t0)))


def check_start_time(t0: float, *, allow_zero: bool = True) -> float:
    """Validate a start time: t0 in [0, 1) (or (0, 1) for a warm start). The one check of t0:
    a method validates its own t0 with it when it is built; what computes with t0 afterwards
    (``num_steps``, the paths, the harness's own arithmetic) takes it as valid."""
    t0 = float(t0)
    low_ok = t0 >= 0.0 if allow_zero else t0 > 0.0
    if not (math.isfinite(t0) and low_ok and t0 < 1.0):
        allowed = "[0, 1)" if allow_zero else "(0, 1)"
        raise ValueError(f"start time t0={t0!r} is outside {allowed}")
    return t0


def num_steps(t0: float, n: int) -> int:
    """K = ceil((1 - t0) N): steps of size 1/N needed to go from t0 to 1 (t0 validated by
    ``check_start_time``)."""
    if isinstance(n, bool) or int(n) != n or n < 1:
        raise ValueError(f"number of steps N={n!r} must be a positive integer")
    return math.ceil((1 - exact_time(t0)) * int(n))


def time_grid(t0: float, n: int, dtype: torch.dtype | None = None) -> torch.Tensor:
    """The K + 1 grid points t0, t0 + h, ..., t0 + (K - 1) h, 1 with h = 1/N.

    The last step is shorter than h when (1 - t0) N is not an integer; the grid always
    ends exactly at 1.
    """
    import torch

    k = num_steps(t0, n)
    start = exact_time(t0)
    points = [float(start + Fraction(i, int(n))) for i in range(k)] + [1.0]
    return torch.tensor(points, dtype=dtype or torch.float64)
