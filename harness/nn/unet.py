"""A small time-conditioned U-Net: the network every image method shares.

Full FM, WS-FM and DDPM/DDIM all use this one architecture (only what it is trained to
predict differs), so the cost per network call is equal across methods and NFE comparisons
are fair. Each entry of ``mults`` is one level: a residual block, then a 2x2 average pool on
the way down; a 2x2 transposed convolution, the level's skip added, then a residual block
on the way up; one more block in the middle. Additive skips (rather than concatenation)
keep the full-resolution blocks, which dominate the cost, as narrow as possible.
Images whose side is not a multiple of ``2 ** len(mults)`` are padded (replicating the
border) inside ``forward`` and cropped back, so 8x8, 28x28 and 32x32 all work.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from harness.nn.mlp import time_embedding


def _groups(channels: int) -> int:
    """The largest of 8, 4, 2, 1 that divides ``channels`` (GroupNorm groups)."""
    return next(g for g in (8, 4, 2, 1) if channels % g == 0)


class ResBlock(nn.Module):
    """GroupNorm-SiLU-conv twice, with the time embedding added after the first conv."""

    def __init__(self, c_in: int, c_out: int, time_dim: int) -> None:
        super().__init__()
        self.norm1 = nn.GroupNorm(_groups(c_in), c_in)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.time = nn.Linear(time_dim, c_out)
        self.norm2 = nn.GroupNorm(_groups(c_out), c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        nn.init.zeros_(self.conv2.weight)  # each block starts as the identity (or its skip)
        nn.init.zeros_(self.conv2.bias)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.time(emb)[:, :, None, None]
        h = self.conv2(F.silu(self.norm2(h)))
        return self.skip(x) + h


class TimeUNet(nn.Module):
    """v(x, t): x of shape (B, channels, H, W), t of shape (B,) in [0, 1] -> (B, channels, H, W).

    ``mults`` gives the width of each level as a multiple of ``base``; there is one
    down/upsampling step per entry. ``image_size`` is the side the network is built for; it
    only sets the padding (any square or non-square input whose sides pad to a multiple of
    ``2 ** len(mults)`` works).
    """

    def __init__(
        self,
        channels: int = 1,
        base: int = 32,
        mults: tuple[int, ...] = (1, 2),
        time_dim: int = 64,
        image_size: int = 8,
    ) -> None:
        super().__init__()
        if channels < 1 or base < 1 or time_dim < 2 or not mults or min(mults) < 1:
            raise ValueError(
                f"TimeUNet needs channels, base, mults >= 1 and time_dim >= 2; got "
                f"channels={channels}, base={base}, mults={tuple(mults)}, time_dim={time_dim}"
            )
        self.channels, self.image_size = channels, image_size
        self.time_dim = time_dim
        self.factor = 2 ** len(mults)
        self.time_mlp = nn.Sequential(
            nn.Linear(time_dim, time_dim), nn.SiLU(), nn.Linear(time_dim, time_dim)
        )
        self.conv_in = nn.Conv2d(channels, base, 3, padding=1)
        widths = [base * m for m in mults]
        self.down_blocks = nn.ModuleList()
        c = base
        for w in widths:
            self.down_blocks.append(ResBlock(c, w, time_dim))
            c = w
        self.mid = ResBlock(c, c, time_dim)
        self.upsamples, self.up_blocks = nn.ModuleList(), nn.ModuleList()
        for w in reversed(widths):
            self.upsamples.append(nn.ConvTranspose2d(c, w, 2, stride=2))
            self.up_blocks.append(ResBlock(w, w, time_dim))
            c = w
        self.norm_out = nn.GroupNorm(_groups(c), c)
        self.conv_out = nn.Conv2d(c, channels, 3, padding=1)
        nn.init.zeros_(self.conv_out.weight)  # starts by predicting zero velocity
        nn.init.zeros_(self.conv_out.bias)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1] != self.channels:
            raise ValueError(
                f"TimeUNet expects (B, {self.channels}, H, W) images, got {tuple(x.shape)}"
            )
        height, width = x.shape[-2:]
        pad_h, pad_w = -height % self.factor, -width % self.factor
        if pad_h or pad_w:
            x = F.pad(x, (0, pad_w, 0, pad_h), mode="replicate")
        emb = self.time_mlp(time_embedding(t.reshape(-1), self.time_dim).to(x.dtype))
        h = self.conv_in(x)
        skips = []
        for block in self.down_blocks:
            h = block(h, emb)
            skips.append(h)
            h = F.avg_pool2d(h, 2)
        h = self.mid(h, emb)
        for up, block in zip(self.upsamples, self.up_blocks, strict=True):
            h = block(up(h) + skips.pop(), emb)
        out = self.conv_out(F.silu(self.norm_out(h)))
        return out[..., :height, :width]
