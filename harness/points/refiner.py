"""Refiner plugins: map drafts to refined targets when building WS-FM training pairs."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from harness.plugins import Refiner


@dataclass
class NearestNeighbour(Refiner):
    """Exact nearest neighbour in the training set (Euclidean, batched; pixel or PCA space)."""

    batch_size: int = 4096
    pca_dims: int = 0  # 0: search the raw (pixel) space; k > 0: the top-k PCA feature space
    version = "2"

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError(f"batch_size={self.batch_size} must be positive")
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

    @torch.no_grad()
    def refine(self, drafts: torch.Tensor) -> torch.Tensor:
        if self._train is None:
            raise RuntimeError("call fit(train) before refine()")
        queries = self._features(drafts.reshape(len(drafts), -1).to(self._keys))
        index = torch.cat([
            torch.cdist(chunk, self._keys).argmin(dim=1)
            for chunk in queries.split(self.batch_size)
        ])
        return self._train[index]
