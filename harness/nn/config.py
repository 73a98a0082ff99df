"""The training loop's settings, apart from the loop so that plugin declarations (a task's
``train_config``) need no torch: ``wsfm-bench list`` imports them without it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TrainConfig:
    """How a network is trained (harness.nn.training.optimise).

    ``steps`` Adam steps with cosine decay, for every network trained for a fixed length.
    A flow model (full FM's reference and each warm start's own, so that neither side of a
    comparison is under-trained) is trained until a held-out criterion stops improving
    instead, when ``patience`` > 0: in cosine cycles, the
    first ``steps`` long and each next one twice as long (warm restarts), its held-out
    flow-matching loss checked at the end of each cycle (where the schedule has annealed);
    ``patience`` cycles in a row without a relative improvement of ``min_delta`` stop it, and
    so does the cap ``max_steps``; the best weights are kept.
    """

    steps: int = 2000
    batch_size: int = 256
    lr: float = 2e-3
    patience: int = 0  # 0: flow models too train for ``steps``
    min_delta: float = 0.01
    max_steps: int = 20_000
