"""Refiner plugins for continuous data (points, images): map drafts to refined targets when
building WS-FM training pairs. Both search the training split, in the raw (pixel) space or the
top-k PCA feature space.

- ``assignment``: each block of drafts is matched one to one with an equal block of random
  training points, the matching of least total squared distance (an exact assignment,
  scipy.optimize.linear_sum_assignment). The targets are training points in equal measure, so
  they keep the data's distribution whatever the drafts' (a discrete optimal-transport
  coupling of the block).
- ``nearest-neighbour`` (the paper's choice for images): each draft's nearest training point.
  Its targets follow the drafts' mass, not the data's: a draft that puts too much mass in one
  region teaches the warm start to do the same.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

from harness.cache import tensor_sha256
from harness.plugins import Refiner

REFINERS = ("assignment", "nearest-neighbour")


def continuous_refiner(name: str, options: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """A points or images task's refiner (assignment or nearest-neighbour) with its options."""
    if name not in REFINERS:
        raise ValueError(f"refiner_name={name!r}; allowed: {', '.join(REFINERS)} (the paper's "
                         "choice is nearest-neighbour)")
    if not isinstance(options, dict):
        raise ValueError(f"refiner_options must be a table, got {options!r}")
    return name, dict(options)


@dataclass
class _FeatureRefiner(Refiner):
    """A refiner that compares drafts and training points in the raw space or, with
    ``pca_dims`` > 0, in the top-``pca_dims`` principal components of the training split."""

    pca_dims: int = 0  # 0: search the raw (pixel) space; k > 0: the top-k PCA feature space

    def __post_init__(self) -> None:
        if self.pca_dims < 0:
            raise ValueError(f"pca_dims={self.pca_dims} must be 0 (pixel space) or positive")
        self._train: torch.Tensor | None = None

    def _features(self, flat: torch.Tensor) -> torch.Tensor:
        if not self.pca_dims:
            return flat
        return (flat - self._mean) @ self._components

    def fit(self, train: torch.Tensor) -> None:
        self._train = train
        flat = train.reshape(len(train), -1).float()
        if self.pca_dims:
            if self.pca_dims > min(flat.shape):
                raise ValueError(f"pca_dims={self.pca_dims} exceeds the data's rank bound "
                                 f"{min(flat.shape)}")
            self._mean = flat.mean(dim=0)
            # Right singular vectors of the centred data: the principal directions.
            _, _, vh = torch.linalg.svd(flat - self._mean, full_matrices=False)
            self._components = vh[: self.pca_dims].T
        self._keys = self._features(flat)

    def _queries(self, drafts: torch.Tensor) -> torch.Tensor:
        if self._train is None:
            raise RuntimeError("call fit(train) before refine()")
        return self._features(drafts.reshape(len(drafts), -1).to(self._keys))


@dataclass
class NearestNeighbour(_FeatureRefiner):
    """Exact nearest neighbour in the training set (Euclidean, batched; pixel or PCA space):
    the paper's refiner for images."""

    batch_size: int = 4096
    version = "2"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.batch_size < 1:
            raise ValueError(f"batch_size={self.batch_size} must be positive")

    @torch.no_grad()
    def refine(self, drafts: torch.Tensor) -> torch.Tensor:
        queries = self._queries(drafts)
        index = torch.cat([
            torch.cdist(chunk, self._keys).argmin(dim=1)
            for chunk in queries.split(self.batch_size)
        ])
        return self._train[index]


@dataclass
class Assignment(_FeatureRefiner):
    """One-to-one assignment of each block of drafts to an equal block of random training
    points, least total squared distance (pixel or PCA space): targets keep the data's
    distribution."""

    block: int = 1000
    version = "1"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.block < 1:
            raise ValueError(f"block={self.block} must be positive")

    @torch.no_grad()
    def refine(self, drafts: torch.Tensor) -> torch.Tensor:
        queries = self._queries(drafts)
        n_train = len(self._keys)
        # The training blocks are a seeded function of the drafts themselves: the same drafts
        # always get the same targets, other drafts (another seed) other blocks.
        seed = int(tensor_sha256(drafts.detach().cpu().contiguous())[:15], 16)
        g = torch.Generator().manual_seed(seed)
        index = []
        for chunk in queries.split(self.block):
            size = len(chunk)
            # Without replacement while the training split lasts (a block larger than it
            # draws the split whole, then again).
            pool = torch.cat([torch.randperm(n_train, generator=g)
                              for _ in range(-(-size // n_train))])[:size].to(self._keys.device)
            cost = torch.cdist(chunk, self._keys[pool]).pow(2).cpu().double().numpy()
            rows, cols = linear_sum_assignment(cost)
            matched = np.empty(size, dtype=np.int64)
            matched[rows] = cols
            index.append(pool[torch.as_tensor(matched, device=pool.device)])
        return self._train[torch.cat(index)]
