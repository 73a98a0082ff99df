"""Refiner plugins: map drafts to refined targets when building WS-FM training pairs."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from harness.plugins import Refiner
from harness.registry import refiners


@refiners.register("nearest-neighbour")
@dataclass
class NearestNeighbour(Refiner):
    """Exact nearest neighbour in the training set (Euclidean, batched)."""

    batch_size: int = 4096
    version = "1"

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError(f"batch_size={self.batch_size} must be positive")
        self._train: torch.Tensor | None = None

    def fit(self, train: torch.Tensor) -> None:
        self._train = train.reshape(len(train), -1)
        self._shape = train.shape[1:]

    @torch.no_grad()
    def refine(self, drafts: torch.Tensor) -> torch.Tensor:
        if self._train is None:
            raise RuntimeError("call fit(train) before refine()")
        flat = drafts.reshape(len(drafts), -1).to(self._train)
        index = torch.cat([
            torch.cdist(chunk, self._train).argmin(dim=1)
            for chunk in flat.split(self.batch_size)
        ])
        return self._train[index].reshape(len(drafts), *self._shape)
