"""2-D toy tasks: two moons (the paper's), 8 gaussians, checkerboard, spirals.

Data come from a seeded generator, standardised to zero mean and unit variance per
coordinate, and split into train and held-out test by ``data_seed``. Each task has a
"good" draft (a Gaussian mixture with ``good_components`` components, 8 by default) and a
"poor" one (``poor_components``, 2), and a refiner that builds the warm start's training pairs
(``refiner_name``): the one-to-one assignment of drafts to training points by default (its
targets keep the data's distribution), or the paper's nearest neighbour.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from sklearn.datasets import make_moons
from torch import nn

from harness.checks import check_positive_ints
from harness.nn.mlp import TimeMLP
from harness.nn.training import TrainConfig
from harness.plugins import Task, TaskData
from harness.points.refiner import continuous_refiner


def two_moons(n: int, rng: np.random.Generator) -> np.ndarray:
    x, _ = make_moons(n, noise=0.05, random_state=int(rng.integers(2**31)))
    return x


def eight_gaussians(n: int, rng: np.random.Generator) -> np.ndarray:
    angles = 2 * math.pi * rng.integers(8, size=n) / 8
    centres = np.stack([np.cos(angles), np.sin(angles)], axis=1) * 2.0
    return centres + 0.1 * rng.standard_normal((n, 2))


def checkerboard(n: int, rng: np.random.Generator) -> np.ndarray:
    # 4 x 4 board on [-2, 2]^2, points uniform on the 8 dark squares.
    col = rng.integers(4, size=n)
    row = 2 * rng.integers(2, size=n) + (col % 2)
    return np.stack([col + rng.random(n), row + rng.random(n)], axis=1) - 2.0


def spirals(n: int, rng: np.random.Generator) -> np.ndarray:
    # Two interleaved arms, r proportional to the angle.
    theta = np.sqrt(rng.random(n)) * 3 * math.pi
    arm = rng.integers(2, size=n)
    r = theta / (3 * math.pi) * 2
    sign = np.where(arm == 0, 1.0, -1.0)
    x = np.stack([sign * r * np.cos(theta), sign * r * np.sin(theta)], axis=1)
    return x + 0.03 * rng.standard_normal((n, 2))


GENERATORS = {
    "two-moons": two_moons,
    "8gaussians": eight_gaussians,
    "checkerboard": checkerboard,
    "spirals": spirals,
}


@dataclass
class Toy2D(Task):
    """A 2-D point cloud; subclasses pick the generator."""

    n_train: int = 10_000
    n_test: int = 5_000
    data_seed: int = 0
    hidden: int = 128
    depth: int = 3
    good_components: int = 8
    poor_components: int = 2
    # The positive control's corruption: Gaussian noise of this times the data's spread.
    control_noise: float = 0.2
    refiner_name: str = "assignment"
    refiner_options: dict[str, Any] = field(default_factory=dict)

    generator_name = ""
    draft_options = ("good_components", "poor_components", "control_noise", "refiner_name",
                     "refiner_options")
    modality = "points"
    metrics = ("swd", "mmd", "energy", "precision", "recall", "copy-rate")
    primary_metric = "swd"
    train_config = TrainConfig(steps=1500, batch_size=256, lr=5e-3)

    def __post_init__(self) -> None:
        self.refiner = continuous_refiner(self.refiner_name, self.refiner_options)
        if not self.control_noise > 0:
            raise ValueError(f"control_noise={self.control_noise} must be positive")
        for name in ("n_train", "n_test"):
            if getattr(self, name) < 10:
                raise ValueError(f"{name}={getattr(self, name)} must be at least 10")
        check_positive_ints(self, "good_components", "poor_components", "hidden", "depth")

    @property
    def control_options(self) -> dict[str, float]:
        return {"noise": self.control_noise}

    @property
    def drafts(self) -> dict[str, tuple[str, dict[str, int]]]:
        """Gaussian mixtures: many components make a good draft, few a poor one."""
        return {
            "good": ("gmm", {"n_components": self.good_components}),
            "poor": ("gmm", {"n_components": self.poor_components}),
        }

    def load(self) -> TaskData:
        rng = np.random.default_rng(self.data_seed)
        x = GENERATORS[self.generator_name](self.n_train + self.n_test, rng)
        x = (x - x.mean(0)) / x.std(0)
        perm = rng.permutation(len(x))
        x = torch.as_tensor(x[perm], dtype=torch.float32)
        return TaskData(train=x[: self.n_train], test=x[self.n_train :])

    def make_network(self) -> nn.Module:
        return TimeMLP(dim=2, hidden=self.hidden, depth=self.depth)


@dataclass
class TwoMoons(Toy2D):
    """Two interleaving half-circles (the paper's toy task), 2-D."""

    generator_name = "two-moons"


@dataclass
class EightGaussians(Toy2D):
    """Eight Gaussians on a circle, 2-D."""

    generator_name = "8gaussians"


@dataclass
class Checkerboard(Toy2D):
    """Uniform points on the dark squares of a 4x4 checkerboard, 2-D."""

    generator_name = "checkerboard"


@dataclass
class Spirals(Toy2D):
    """Two interleaved spiral arms, 2-D."""

    generator_name = "spirals"
