"""The one pixel grid every image method is judged on: floats in [-1, 1] <-> uint8 0..255.

Quantising every method's samples the same way (round, clamp) before a metric is what makes
FID and the others comparable across methods."""

from __future__ import annotations

import torch


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    """Images in [-1, 1] (clamped first) -> uint8 pixels round((x + 1) * 127.5) in 0..255."""
    return ((x.detach().float().clamp(-1.0, 1.0) + 1.0) * 127.5).round().to(torch.uint8)


def from_uint8(u: torch.Tensor) -> torch.Tensor:
    """uint8 pixels -> float32 images u / 127.5 - 1 in [-1, 1]."""
    return u.float() / 127.5 - 1.0
