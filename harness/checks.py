"""Value checks shared by suites, the runner and plugins: each raises ConfigError naming the
value and what is allowed (ConfigError is a ValueError, so a plugin's ``__post_init__`` may
call them; ``harness.plugins.instantiate`` then names the plugin too)."""

from __future__ import annotations

import math
from typing import Any

import torch

from harness.errors import ConfigError


def positive_int(value: Any, what: str) -> int:
    """``value`` if it is an integer >= 1 (not a bool), else ConfigError naming ``what``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{what} must be a positive integer, got {value!r}")
    return value


def check_positive_ints(owner: Any, *names: str) -> None:
    """``positive_int`` on each option ``names`` of ``owner`` (a plugin's ``__post_init__``)."""
    for name in names:
        positive_int(getattr(owner, name), name)


def seconds(value: Any, what: str) -> float:
    """A time in seconds: a finite number > 0 (not a bool), else ConfigError naming ``what``."""
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    if not (ok and math.isfinite(value) and value > 0):
        raise ConfigError(f"{what}: {value!r} is not a time budget; it must be a finite number "
                          "of seconds > 0, e.g. time_budgets = [0.02, 0.05, 0.2]")
    return float(value)


def positive_int_list(value: Any, what: str) -> list[int]:
    """A non-empty list (or one value) of positive integers."""
    items = value if isinstance(value, list) else [value]
    if not items:
        raise ConfigError(f"{what} must not be empty")
    bad = [v for v in items if isinstance(v, bool) or not isinstance(v, int) or v < 1]
    if bad:
        raise ConfigError(f"{what}: each must be a positive integer, got {bad[0]!r} in {items!r}")
    return items


def time_budget_list(value: Any, what: str) -> list[float]:
    """Seconds per batch: each a finite number > 0 (an empty list means none)."""
    items = [seconds(v, what) for v in (value if isinstance(value, list) else [value])]
    if len(set(items)) != len(items):
        raise ConfigError(f"{what} has duplicates: {value!r}")
    return items


def seed_list(value: Any, what: str, empty: bool = False) -> list[int]:
    """Distinct integers >= 0 (a list, or one value); empty only if ``empty``."""
    items = value if isinstance(value, list) else [value]
    bad = [s for s in items if isinstance(s, bool) or not isinstance(s, int) or s < 0]
    if (not items and not empty) or bad:
        raise ConfigError(f"{what} must be a non-empty list of integers >= 0, got {value!r}")
    if len(set(items)) != len(items):
        raise ConfigError(f"{what} has duplicates: {value!r}")
    return items


def check_device(device: str) -> str:
    """A device that exists here; 'cuda' without a GPU is an error, not a silent CPU run."""
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ConfigError(
            f"device {device!r} is not a device name; use 'cpu' or 'cuda[:N]'"
        ) from exc
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(
                f"device {device!r} asked for, but no CUDA GPU is available here "
                "(torch.cuda.is_available() is False); use device = 'cpu'"
            )
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ConfigError(
                f"device {device!r}: only {torch.cuda.device_count()} CUDA device(s) here"
            )
    elif dev.type != "cpu":
        raise ConfigError(f"device {device!r} is not supported; use 'cpu' or 'cuda[:N]'")
    return device
