"""NFE is counted here, by wrapping the network, never taken from a method's word."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


class CountingNetwork:
    """Calls the wrapped network and counts each call (one call = one NFE, whatever the batch).

    It also keeps the time of the first call since the last reset (``first_time``): where the
    solver actually started, from which the harness recounts the steps it had to take."""

    def __init__(self, network: nn.Module) -> None:
        self.network = network
        self.calls = 0
        self.first_time: float | None = None

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self.calls == 0 and len(args) > 1 and isinstance(args[1], torch.Tensor):
            self.first_time = float(args[1].reshape(-1)[0])
        self.calls += 1
        return self.network(*args, **kwargs)

    def reset(self) -> int:
        """Zero the counter (and forget the first time); return the count it held."""
        calls, self.calls = self.calls, 0
        return calls
