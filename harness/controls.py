"""Control drafts: warm starts whose verdict is known before the run, so a run shows that the
harness can say "non-inferior" when that is true and "inferior" when that is true. They work
for every modality: continuous data (points, images) and tokens (text).

- ``corrupted-data`` (known positive): training data under a known, removable corruption
  (Gaussian noise for points, a Gaussian blur for images, random character substitutions for
  text), paired with the clean data it was made from. A warm start trained on these pairs
  learns to remove the corruption; sampled from fresh corrupted data it gives data back, so it
  must read non-inferior to the full model (and, by a late t0, with a speed-up near its
  bound). The corruption must be strong enough that the corrupted data alone read worse than
  the full model, or the row reads "draft-alone-suffices" and the control tests nothing.
- ``noise`` (known negative): pure noise presented as a draft (a Gaussian with the data's
  mean and spread per coordinate; uniformly random characters), paired with itself: it holds
  nothing about the data to refine towards, so a warm start from it at a late t0 must read
  inferior.

If a control misreads, the report says so at its top: that run cannot be trusted.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from harness.plugins import Draft


class _DataDraft(Draft):
    """A draft that keeps statistics of (or the whole of) the training split."""

    def __init__(self) -> None:
        self._state: dict[str, Any] = {}

    def state_dict(self) -> dict[str, Any]:
        return {k: v.cpu() if torch.is_tensor(v) else v for k, v in self._state.items()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._state = dict(state)

    def to(self, device: torch.device) -> _DataDraft:
        self._state = {k: v.to(device) if torch.is_tensor(v) else v
                       for k, v in self._state.items()}
        return self

    def _uniform_tokens(self, shape: tuple[int, ...], g: torch.Generator,
                        device: torch.device) -> torch.Tensor:
        return torch.randint(int(self._state["vocab"]), shape, generator=g, device=device)


@dataclass
class CorruptedData(_DataDraft):
    """Known-positive control: corrupted training data, paired with the clean data.

    The corruption is removable: Gaussian noise of ``noise`` times the data's spread per
    coordinate for points, a Gaussian blur of ``blur`` pixels (standard deviation) for images,
    each character replaced by a random one with probability ``substitute`` for text."""

    noise: float = 0.2
    blur: float = 0.7
    substitute: float = 0.15
    control = "positive"
    version = "1"

    def __post_init__(self) -> None:
        super().__init__()
        if not (self.noise > 0 and self.blur > 0 and 0 < self.substitute < 1):
            raise ValueError(f"need noise > 0, blur > 0 and 0 < substitute < 1; got noise="
                             f"{self.noise}, blur={self.blur}, substitute={self.substitute}")

    def fit(self, train: torch.Tensor, generator: torch.Generator) -> None:
        vocab = 0 if train.is_floating_point() else int(train.max()) + 1
        std = train.float().std(0) if train.is_floating_point() else torch.zeros(())
        self._state = {"data": train.clone(), "vocab": vocab, "std": std}

    def _clean(self, n: int, g: torch.Generator) -> torch.Tensor:
        data = self._state["data"]
        return data[torch.randint(len(data), (n,), generator=g, device=data.device)]

    def _corrupt(self, clean: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        if clean.is_floating_point() and clean.dim() == 4:  # images (N, C, H, W)
            return gaussian_blur(clean, self.blur)
        if clean.is_floating_point():
            noise = torch.randn(clean.shape, generator=g, device=clean.device)
            return clean + self.noise * self._state["std"] * noise
        swap = torch.rand(clean.shape, generator=g, device=clean.device) < self.substitute
        return torch.where(swap, self._uniform_tokens(tuple(clean.shape), g, clean.device),
                           clean)

    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        return self._corrupt(self._clean(n, generator), generator)

    def pairs(self, n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        clean = self._clean(n, generator)
        return self._corrupt(clean, generator), clean


def gaussian_blur(images: torch.Tensor, sigma: float) -> torch.Tensor:
    """``images`` (N, C, H, W) blurred by a Gaussian of ``sigma`` pixels (edges reflected)."""
    radius = max(1, math.ceil(3 * sigma))
    x = torch.arange(-radius, radius + 1, dtype=images.dtype, device=images.device)
    kernel = torch.exp(-0.5 * (x / sigma) ** 2)
    kernel = kernel / kernel.sum()
    channels = images.shape[1]
    padded = F.pad(images, (radius, radius, radius, radius), mode="reflect")
    rows = F.conv2d(padded, kernel.view(1, 1, 1, -1).repeat(channels, 1, 1, 1),
                    groups=channels)
    return F.conv2d(rows, kernel.view(1, 1, -1, 1).repeat(channels, 1, 1, 1), groups=channels)


@dataclass
class NoiseDraft(_DataDraft):
    """Known-negative control: pure noise presented as a draft, paired with itself.

    A Gaussian with the data's per-coordinate mean and std; uniformly random characters."""

    control = "negative"
    version = "1"

    def __post_init__(self) -> None:
        super().__init__()

    def fit(self, train: torch.Tensor, generator: torch.Generator) -> None:
        if train.is_floating_point():
            flat = train.reshape(len(train), -1).float()
            self._state = {"mean": flat.mean(0), "std": flat.std(0).clamp_min(1e-6),
                           "shape": torch.tensor(train.shape[1:]), "vocab": 0}
        else:
            self._state = {"shape": torch.tensor(train.shape[1:]),
                           "vocab": int(train.max()) + 1}

    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        shape = (n, *self._state["shape"].tolist())
        if self._state["vocab"]:
            return self._uniform_tokens(shape, generator, self._state["shape"].device)
        mean, std = self._state["mean"], self._state["std"]
        z = torch.randn((n, len(mean)), generator=generator, device=mean.device)
        return (mean + std * z).reshape(shape)

    def pairs(self, n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.sample(n, generator)
        return x, x.clone()
