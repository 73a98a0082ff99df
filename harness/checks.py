"""Value checks shared by suites, the runner and plugins: each raises ConfigError naming the
value and what is allowed (ConfigError is a ValueError, so a plugin's ``__post_init__`` may
call them; ``harness.plugins.instantiate`` then names the plugin too)."""

from __future__ import annotations

import math
from typing import Any

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
