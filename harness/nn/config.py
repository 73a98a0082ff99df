"""The training loop's settings, apart from the loop so that plugin declarations (a task's
``train_config``) need no torch: ``wsfm-bench list`` imports them without it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 2000
    batch_size: int = 256
    lr: float = 2e-3
