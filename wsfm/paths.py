"""The affine (CondOT) probability path, on [t_start, 1].

With s = (t - t_start) / (1 - t_start), x_t = x_start + s (x_end - x_start) and the target
velocity is (x_end - x_start) / (1 - t_start). For t_start = 0 and Gaussian x_start this is
the usual CondOT path x_t = (1 - t) x_0 + t x_1 with target x_1 - x_0; for t_start = t0 it is
the warm-start path from a draft-based start to its refinement. One formula serves both.
"""

from __future__ import annotations

import torch


class AffinePath:
    """Straight-line path between paired endpoints over [t_start, 1]."""

    def __init__(self, t_start: float = 0.0) -> None:
        if not 0.0 <= t_start < 1.0:
            raise ValueError(f"t_start={t_start!r} must lie in [0, 1)")
        self.t_start = float(t_start)

    def sample_times(self, n: int, generator: torch.Generator, device=None) -> torch.Tensor:
        """Training times, uniform on [t_start, 1]."""
        u = torch.rand(n, generator=generator, device=device)
        return self.t_start + (1.0 - self.t_start) * u

    def interpolate(
        self, x_start: torch.Tensor, x_end: torch.Tensor, t: torch.Tensor
    ) -> torch.Tensor:
        s = ((t - self.t_start) / (1.0 - self.t_start)).view(-1, *([1] * (x_start.dim() - 1)))
        return x_start + s * (x_end - x_start)

    def target_velocity(self, x_start: torch.Tensor, x_end: torch.Tensor) -> torch.Tensor:
        return (x_end - x_start) / (1.0 - self.t_start)
