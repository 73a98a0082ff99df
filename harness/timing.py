"""Timing on the device's proper clock: perf_counter on CPU; CUDA events with
synchronisation on GPU (kernel launches are asynchronous, so a host clock alone would
time the launch, not the work)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import torch

T = TypeVar("T")


class Clock:
    """Times a callable on ``device``; returns (result, seconds)."""

    def __init__(self, device: torch.device | str) -> None:
        self.device = torch.device(device)
        self.cuda = self.device.type == "cuda"

    def time(self, fn: Callable[[], T]) -> tuple[T, float]:
        if self.cuda:
            torch.cuda.synchronize(self.device)
            start = torch.cuda.Event(enable_timing=True)
            end = torch.cuda.Event(enable_timing=True)
            start.record()
            result = fn()
            end.record()
            torch.cuda.synchronize(self.device)
            return result, start.elapsed_time(end) / 1000.0
        start_s = time.perf_counter()
        result = fn()
        return result, time.perf_counter() - start_s


@dataclass
class Timing:
    """Repeated timings of one thing: median and spread; the warm-up's time kept apart."""

    times: list[float]
    first: float | None = None

    @property
    def median(self) -> float:
        return statistics.median(self.times)

    @property
    def spread(self) -> float:
        return max(self.times) - min(self.times)

    @property
    def relative_spread(self) -> float:
        return self.spread / self.median if self.median > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {"median": self.median, "spread": self.spread, "first": self.first,
                "times": self.times}
