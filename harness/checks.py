"""Value checks shared by suites, the runner and plugins: each raises ConfigError naming the
value and what is allowed (ConfigError is a ValueError, so a plugin's ``__post_init__`` may
call them; ``harness.plugins.instantiate`` then names the plugin too)."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

from harness.errors import ConfigError, given


def positive_int(value: Any, what: str) -> int:
    """``value`` if it is an integer >= 1 (not a bool), else ConfigError naming ``what``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{what} must be a positive integer, got {given(value)}")
    return value


MAX_SAMPLES = 1_000_000  # samples per cell, all generated, timed and judged in one batch
MAX_SAMPLES_ENV = "WSFM_BENCH_MAX_SAMPLES"  # a higher (or lower) limit, for those who mean it


def sample_count(value: int, what: str) -> int:
    """``value`` if one cell may make that many samples: at most MAX_SAMPLES, or
    $WSFM_BENCH_MAX_SAMPLES when set; a typo's extra zeros are refused before any work, not
    met as an allocation of gigabytes after the training."""
    env = os.environ.get(MAX_SAMPLES_ENV, "")
    limit = int(env) if env.isdigit() and int(env) > 0 else MAX_SAMPLES
    if value > limit:
        raise ConfigError(
            f"{what} = {value} is more than the {limit} samples one cell may make (it "
            "generates, times and judges them all in one batch: memory grows with them); "
            f"lower it, or set {MAX_SAMPLES_ENV}={value} if you really want that many")
    return value


def check_positive_ints(owner: Any, *names: str) -> None:
    """``positive_int`` on each option ``names`` of ``owner`` (a plugin's ``__post_init__``)."""
    for name in names:
        positive_int(getattr(owner, name), name)


def seconds(value: Any, what: str) -> float:
    """A time in seconds: a finite number > 0 (not a bool), else ConfigError naming ``what``."""
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    if not (ok and math.isfinite(value) and value > 0):
        raise ConfigError(f"{what}: {given(value)} is not a time budget; it must be a finite "
                          "number of seconds > 0, e.g. time_budgets = [0.02, 0.05, 0.2]")
    return float(value)


def non_negative(value: Any, what: str, kind: str) -> float:
    """A finite number >= 0 (not a bool), else ConfigError naming ``what`` and that ``kind``
    (a margin, a tolerance) is never negative."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ConfigError(f"{what} must be a finite number, got {value!r}")
    if value < 0:
        raise ConfigError(f"{what} = {value} is negative; {kind} must be >= 0")
    return float(value)


def positive_int_list(value: Any, what: str) -> list[int]:
    """A non-empty list (or one value) of distinct positive integers."""
    items = value if isinstance(value, list) else [value]
    if not items:
        raise ConfigError(f"{what} must not be empty")
    bad = [v for v in items if isinstance(v, bool) or not isinstance(v, int) or v < 1]
    if bad:
        raise ConfigError(f"{what}: each must be a positive integer, got {given(bad[0])} in "
                          f"{items!r}")
    distinct_values(items, what)
    return items


def distinct_values(values: list[Any], what: str) -> list[Any]:
    """A suite's list of values for ``what``, each once: an empty list would drop what it
    belongs to without a word, a repeated value run the same cells twice."""
    if not values:
        raise ConfigError(f"{what} = [] has no value, so nothing would run with it; give at "
                          "least one value, or leave the key out (its default)")
    repeated = [v for i, v in enumerate(values) if v in values[:i]]
    if repeated:
        raise ConfigError(f"{what} = {values!r} lists {repeated[0]!r} twice: the same cells "
                          "would run twice; list each value once")
    return values


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
        raise ConfigError(f"{what} must be a non-empty list of integers >= 0, got "
                          f"{given(value)}")
    if len(set(items)) != len(items):
        raise ConfigError(f"{what} has duplicates: {value!r}")
    return items


def check_device(device: str) -> str:
    """A device that exists here; 'cuda' without a GPU is an error, not a silent CPU run."""
    import torch  # here, not at the top: the report and the suite checks never load torch

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


def plain_name(value: Any, what: str, why: str = "") -> str:
    """``value`` if it can name a folder under --out (not empty, no '/', not starting with
    '.', so it cannot climb out of it), else ConfigError naming ``what``."""
    text = str(value)
    if (not isinstance(value, str) or not text or "/" in text or "\\" in text
            or text.startswith(".")):
        raise ConfigError(f"{what} {value!r} must be a plain folder name (not empty, no '/', "
                          f"not starting with '.'), e.g. my-run-1{why}")
    return text


def writable_folder(path: str | Path, what: str, purpose: str = "") -> Path:
    """``path`` if it is a folder this process can write into, or can be created as one;
    else ConfigError naming ``what`` and the path (and the folder's ``purpose``: " for the
    results"). Nothing is created."""
    path = Path(path)
    probe = path
    while not os.path.lexists(probe) and probe.parent != probe:
        probe = probe.parent
    if not probe.is_dir():
        where = "is a file" if probe == path else f"would be inside {probe}, which is a file"
        raise ConfigError(f"{what} {path} {where}; give a folder{purpose}")
    if not os.access(probe, os.W_OK | os.X_OK):
        which = "" if probe == path else f" ({probe}, where it would be made, is not)"
        raise ConfigError(f"{what} {path} is not writable{which}: make it writable, or give "
                          f"another folder{purpose}")
    return path
