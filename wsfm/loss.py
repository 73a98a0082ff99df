"""The flow-matching training loss on [t_start, 1] (velocity regression or cross-entropy)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from wsfm.paths import AffinePath, MixturePath
from wsfm.sources import Source


def flow_matching_loss(
    net: nn.Module,
    path: AffinePath | MixturePath,
    source: Source,
    x_end: torch.Tensor,
    x_draft: torch.Tensor | None,
    batch_size: int,
) -> Callable[[torch.Generator], torch.Tensor]:
    """Batch loss on the path: velocity regression (affine) or cross-entropy (mixture).

    ``x_end`` holds the training targets (data for full FM, refined drafts for WS-FM);
    ``x_draft`` the drafts paired with them (None for a noise source).
    """
    if source.needs_draft and (x_draft is None or len(x_draft) != len(x_end)):
        raise ValueError(f"source {source.name!r} needs one draft per training target")

    def loss(generator: torch.Generator) -> torch.Tensor:
        idx = torch.randint(len(x_end), (batch_size,), generator=generator, device=x_end.device)
        end = x_end[idx]
        start = source.start(None if x_draft is None else x_draft[idx], end, generator)
        t = path.sample_times(batch_size, generator, device=end.device)
        return path.loss(net, start, end, t, generator)

    return loss
