"""Probability paths between paired endpoints on [t_start, 1], with their training losses.

Both paths use s = (t - t_start) / (1 - t_start), the fraction of the way from the start
(noise at t_start = 0; a draft-based start at t_start = t0) to the end (data, or refined
drafts). One formula per path serves full FM (t_start = 0) and the warm start (t_start = t0).

- ``AffinePath`` (continuous: points, images): x_t = x_start + s (x_end - x_start), target
  velocity (x_end - x_start) / (1 - t_start). For t_start = 0 and Gaussian x_start this is
  the usual CondOT path x_t = (1 - t) x_0 + t x_1 with target x_1 - x_0.
- ``MixturePath`` (discrete: text, Gat et al. 2024): token i of x_t is x_end^i with
  probability kappa = s, else x_start^i. The network predicts p(x_end^i | x_t, t) and is
  trained with cross-entropy; the mixture discrete Euler step (wsfm.solvers) samples it.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class _Path:
    discrete = False

    def __init__(self, t_start: float = 0.0) -> None:
        self.t_start = float(t_start)  # a method's t0, validated by the method itself

    def sample_times(self, n: int, generator: torch.Generator, device=None) -> torch.Tensor:
        """Training times, uniform on [t_start, 1]."""
        u = torch.rand(n, generator=generator, device=device)
        return self.t_start + (1.0 - self.t_start) * u

    def fraction(self, t: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """s = (t - t_start) / (1 - t_start), shaped to broadcast against ``like``."""
        return ((t - self.t_start) / (1.0 - self.t_start)).view(-1, *([1] * (like.dim() - 1)))


class AffinePath(_Path):
    """Straight-line path between paired endpoints over [t_start, 1]."""

    def interpolate(
        self, x_start: torch.Tensor, x_end: torch.Tensor, t: torch.Tensor,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        return x_start + self.fraction(t, x_start) * (x_end - x_start)

    def target_velocity(self, x_start: torch.Tensor, x_end: torch.Tensor) -> torch.Tensor:
        return (x_end - x_start) / (1.0 - self.t_start)

    def loss(self, net: nn.Module, x_start, x_end, t, generator) -> torch.Tensor:
        """Mean squared error of v(x_t, t) against the target velocity."""
        x_t = self.interpolate(x_start, x_end, t)
        return (net(x_t, t) - self.target_velocity(x_start, x_end)).pow(2).mean()


class MixturePath(_Path):
    """Factorised mixture path over tokens: x_t^i = x_end^i w.p. s, else x_start^i."""

    discrete = True

    def interpolate(
        self, x_start: torch.Tensor, x_end: torch.Tensor, t: torch.Tensor,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        u = torch.rand(x_end.shape, generator=generator, device=x_end.device)
        return torch.where(u < self.fraction(t, x_end), x_end, x_start)

    def loss(self, net: nn.Module, x_start, x_end, t, generator) -> torch.Tensor:
        """Cross-entropy of the predicted p(x_end | x_t, t) over every position."""
        logits = net(self.interpolate(x_start, x_end, t, generator), t)
        return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), x_end.reshape(-1))


def make_path(discrete: bool, t_start: float = 0.0) -> AffinePath | MixturePath:
    """The path for a task's data type: MixturePath for tokens, AffinePath otherwise."""
    return MixturePath(t_start) if discrete else AffinePath(t_start)
