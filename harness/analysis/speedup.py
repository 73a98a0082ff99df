"""The guaranteed speed-up of a warm start, in the harness's own arithmetic (docs/method.md).

The harness checks a method's step count against this module, never against the method's own
code: K = ceil((1 - t0) N) is computed here from the decimal t0 as written, in integers
(t0 = p / q exactly, so K = ceil((q - p) N / q)); in floating point (1 - 0.7) * 10 is
3.0000000000000004, whose ceiling would wrongly be 4. Pure Python: reports use it too.
"""

from __future__ import annotations

import math
from decimal import Decimal, InvalidOperation


def _ratio(t0: float) -> tuple[int, int]:
    """t0 = p / q exactly, from its shortest round-tripping decimal. Its range is the method's
    to check (wsfm.schedule.check_start_time, when the method is built): a t0 the method let
    through gives a K that the bound check then finds wrong."""
    try:
        return Decimal(repr(float(t0))).as_integer_ratio()
    except (InvalidOperation, OverflowError, ValueError) as exc:
        raise ValueError(f"start time t0={t0!r} is not a finite number") from exc


def warm_steps(t0: float, n: int) -> int:
    """K = ceil((1 - t0) N): the steps of size 1/N from t0 to 1."""
    if isinstance(n, bool) or int(n) != n or n < 1:
        raise ValueError(f"number of steps N={n!r} must be a positive integer")
    p, q = _ratio(t0)
    return -(-(q - p) * int(n) // q)


def nfe_speedup(t0: float, n: int) -> float:
    """S_nfe = N / K, exact for any solver (both sides take s calls per step)."""
    return n / warm_steps(t0, n)


def ceil_speedup(t0: float, n_steps: float) -> float:
    """``nfe_speedup`` for stored values (floats, None, NaN): NaN when undefined."""
    try:
        n = float(n_steps)
        return nfe_speedup(float(t0), int(n)) if n == int(n) else math.nan
    except (TypeError, ValueError, OverflowError):
        return math.nan


def ideal_speedup(t0: float) -> float:
    """1 / (1 - t0): the bound S_nfe reaches when (1 - t0) N is an integer."""
    p, q = _ratio(t0)
    return q / (q - p)


def wall_clock_bound(
    n: int, k: int, evals_per_step: int, time_per_call: float, draft_time: float
) -> float:
    """S_wall = N s c / (T_d + K s c): the best wall-clock speed-up a draft of cost T_d allows."""
    full = n * evals_per_step * time_per_call
    return full / (draft_time + k * evals_per_step * time_per_call)
