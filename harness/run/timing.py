"""Timing on the device's proper clock, one implementation for CPU and GPU.

- CPU: ``time.perf_counter`` around the call.
- GPU: kernel launches are asynchronous, so a host clock alone would time the launch, not the
  work. The clock synchronises the device, records a CUDA event, runs the call, records a
  second event, synchronises again and reads ``elapsed_time`` (milliseconds) between them.

``repeat`` runs a callable ``warmup`` times (the first call's result and time kept apart: it
holds one-off costs such as allocation, lazy initialisation and compilation), then ``repeats``
timed times; ``Timing`` summarises the repeats by their median and spread (max - min, IQR and
MAD). ``compile_network`` wraps a network with ``torch.compile``; ``FirstCall`` times the
first call of the compiled network (where compilation happens) apart from the rest.

The CUDA API is injectable (``Clock(device, cuda=...)``) so the GPU path can be tested with a
stand-in for ``torch.cuda`` on a machine without a GPU.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import torch
from torch import nn

from harness.errors import ConfigError

T = TypeVar("T")

DEFAULT_BACKEND = "inductor"  # what ``compile = true`` means


class Clock:
    """Times a callable on ``device``; ``time(fn)`` returns (result, seconds).

    ``cuda`` is the CUDA API used on a GPU (default ``torch.cuda``): anything with
    ``synchronize(device)`` and ``Event(enable_timing=True)`` whose events have ``record()``
    and ``elapsed_time(other) -> milliseconds``.
    """

    def __init__(self, device: torch.device | str, cuda: Any = None) -> None:
        self.device = torch.device(device)
        self.is_cuda = self.device.type == "cuda"
        self.cuda_api = cuda if cuda is not None else torch.cuda

    def time(self, fn: Callable[[], T]) -> tuple[T, float]:
        if self.is_cuda:
            api = self.cuda_api
            api.synchronize(self.device)  # earlier queued work must not count
            start = api.Event(enable_timing=True)
            end = api.Event(enable_timing=True)
            start.record()
            result = fn()
            end.record()
            api.synchronize(self.device)  # the end event must have happened before reading it
            return result, start.elapsed_time(end) / 1000.0
        start_s = time.perf_counter()
        result = fn()
        return result, time.perf_counter() - start_s


@dataclass
class Timing:
    """Repeated timings of one thing (seconds): the median and spread of the timed repeats,
    with the first (warm-up) call's time kept apart."""

    times: list[float]
    first: float | None = None

    def __post_init__(self) -> None:
        if not self.times:
            raise ValueError("Timing needs at least one timed repeat")

    @property
    def median(self) -> float:
        return statistics.median(self.times)

    @property
    def spread(self) -> float:
        """max - min over the repeats."""
        return max(self.times) - min(self.times)

    @property
    def iqr(self) -> float:
        """Interquartile range (linear interpolation between order statistics)."""
        q75, q25 = np.percentile(self.times, [75, 25])
        return float(q75 - q25)

    @property
    def mad(self) -> float:
        """Median absolute deviation from the median (unscaled)."""
        med = self.median
        return statistics.median(abs(t - med) for t in self.times)

    @property
    def relative_spread(self) -> float:
        return self.spread / self.median if self.median > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {"median": self.median, "spread": self.spread, "iqr": self.iqr, "mad": self.mad,
                "first": self.first, "times": list(self.times)}


def repeat(fn: Callable[[], T], warmup: int, repeats: int) -> tuple[T, list[T]]:
    """Call ``fn`` max(warmup, 1) times, then ``repeats`` times; return the first call's
    result and each repeat's result. The first call is the first warm-up call: its result is
    what a cell keeps (all calls use the same random stream), its time is reported apart."""
    first = fn()
    for _ in range(max(warmup - 1, 0)):
        fn()
    return first, [fn() for _ in range(repeats)]


def measure(clock: Clock, fn: Callable[[], T], warmup: int, repeats: int) -> tuple[T, Timing]:
    """Time ``fn`` as ``repeat`` calls it: the first call's result and a Timing of the repeats
    (its ``first`` is the first call's time)."""
    first, runs = repeat(lambda: clock.time(fn), warmup, repeats)
    return first[0], Timing([t for _, t in runs], first[1])


# --- torch.compile -------------------------------------------------------------------------


def compile_backends() -> list[str]:
    """The torch.compile backends this torch knows (debug ones such as 'eager' included)."""
    try:
        from torch._dynamo import list_backends

        return sorted(set(list_backends(exclude_tags=())) | {DEFAULT_BACKEND})
    except Exception:  # noqa: BLE001 - an old or stripped torch: only the default is known
        return [DEFAULT_BACKEND]


def check_backend(value: Any, where: str) -> str | bool:
    """A suite's compile value as a cell stores it: False, or a backend name (true means
    'inductor'). Raises ConfigError naming the allowed values."""
    if value is False:
        return False
    if value is True:
        value = DEFAULT_BACKEND
    if not isinstance(value, str):
        raise ConfigError(f"{where} must be true, false or a torch.compile backend name, "
                          f"got {value!r}")
    if not hasattr(torch, "compile"):
        raise ConfigError(f"{where} = {value!r}: this torch ({torch.__version__}) has no "
                          "torch.compile; set compile = false")
    known = compile_backends()
    if value not in known:
        raise ConfigError(f"{where}: unknown torch.compile backend {value!r}; "
                          f"known here: {', '.join(known)}")
    return value


def compile_network(network: nn.Module, backend: str) -> nn.Module:
    """``torch.compile(network, backend=backend)``, with dynamo's caches cleared first so
    each cell pays (and records) its own compilation."""
    torch._dynamo.reset()
    return torch.compile(network, backend=backend)


def check_compile(backend: str, device: torch.device | str) -> float:
    """Compile and run a tiny MLP with ``backend`` on ``device``: compilation is lazy, so a
    missing C++ compiler (CPU inductor) or Triton (GPU inductor) shows only when a compiled
    function runs. Returns the seconds it took; raises ConfigError naming the cause."""
    device = torch.device(device)
    net = nn.Sequential(nn.Linear(3, 8), nn.SiLU(), nn.Linear(8, 2)).to(device)
    start = time.perf_counter()
    try:
        with torch.no_grad():
            compile_network(net, backend)(torch.zeros(4, 3, device=device))
    except Exception as exc:  # noqa: BLE001 - any failure here means compiled cells can't run
        lines = str(exc).strip().splitlines()
        cause = f"{type(exc).__name__}: {lines[0] if lines else ''}".strip()
        hint = (" (the CPU inductor backend needs a working C++ compiler: install g++ or set "
                "CXX)" if backend == "inductor" and device.type == "cpu" else "")
        raise ConfigError(
            f"compile = {backend!r}: torch.compile does not work on {device} here{hint}; "
            f"cause: {cause}. Set compile = false, or try compile = \"aot_eager\""
        ) from exc
    finally:
        torch._dynamo.reset()
    return time.perf_counter() - start


class FirstCall:
    """Calls ``fn`` and times its first call with ``clock`` (``seconds``; None until then).

    Wrapped around a compiled network (inside the NFE counter, which still counts every
    call), it separates the one-off compilation from the steady-state time per call.
    """

    def __init__(self, fn: Callable[..., Any], clock: Clock) -> None:
        self.fn = fn
        self.clock = clock
        self.seconds: float | None = None

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self.seconds is not None:
            return self.fn(*args, **kwargs)
        result, self.seconds = self.clock.time(lambda: self.fn(*args, **kwargs))
        return result


def compiled_label(label: str, backend: str | bool) -> str:
    """A variant label marked as compiled, so reports and comparisons keep it apart:
    ' compiled' for the default backend, ' compiled:<backend>' for another."""
    if not backend:
        return label
    mark = "compiled" if backend == DEFAULT_BACKEND else f"compiled:{backend}"
    return f"{label} {mark}".strip()
