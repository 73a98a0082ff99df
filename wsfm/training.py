"""Training: one optimisation loop, and the flow-matching loss on [t_start, 1]."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from tqdm.auto import tqdm

from wsfm.paths import AffinePath, MixturePath
from wsfm.sources import Source


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 2000
    batch_size: int = 256
    lr: float = 2e-3


def optimise(
    net: nn.Module,
    batch_loss: Callable[[torch.Generator], torch.Tensor],
    config: TrainConfig,
    generator: torch.Generator,
    desc: str = "train",
    progress: bool = True,
) -> list[float]:
    """Adam with cosine decay on ``batch_loss``; returns the loss of every step."""
    opt = torch.optim.Adam(net.parameters(), lr=config.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=config.steps)
    net.train()
    losses = []
    bar = tqdm(range(config.steps), desc=desc, leave=False, disable=not progress)
    for _ in bar:
        loss = batch_loss(generator)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        losses.append(loss.item())
        if len(losses) % 200 == 0:
            bar.set_postfix(loss=f"{sum(losses[-200:]) / 200:.4f}")
    net.eval()
    return losses


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
