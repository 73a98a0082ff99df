"""The training loop's settings, apart from the loop so that plugin declarations (a task's
``train_config``) need no torch: ``wsfm-bench list`` imports them without it."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any


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

    ``pairs_batch_size`` and ``pairs_max_steps``, where set (0: the same as for full FM),
    are a warm start's own batch and cap (``for_pairs``): its targets, refined from drafts
    that already sit near the data, vary far less than full FM's noise-to-data ones, so a
    smaller batch can serve it, and a fine-tune (which starts from full FM's weights) needs
    fewer steps. The cap bounds ``steps`` too where training is of fixed length.
    """

    steps: int = 2000
    batch_size: int = 256
    lr: float = 2e-3
    patience: int = 0  # 0: flow models too train for ``steps``
    min_delta: float = 0.01
    max_steps: int = 20_000
    pairs_batch_size: int = 0
    pairs_max_steps: int = 0

    def for_pairs(self) -> TrainConfig:
        """The settings a warm start's own network trains with, on (draft, refined) pairs."""
        cap = self.pairs_max_steps
        return replace(self, batch_size=self.pairs_batch_size or self.batch_size,
                       max_steps=cap or self.max_steps,
                       steps=min(self.steps, cap) if cap and self.patience == 0 else self.steps,
                       pairs_batch_size=0, pairs_max_steps=0)

    def key(self) -> dict[str, Any]:
        """The settings a network trains with, as a cache key: the pairs' own stay out (a
        full model does not depend on them; a warm start keys its model by ``for_pairs``)."""
        return {k: v for k, v in asdict(self).items() if not k.startswith("pairs_")}
