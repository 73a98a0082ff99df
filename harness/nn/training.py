"""The one training loop every method and task shares: Adam with cosine decay on a batch loss.

What is minimised is the method's own business (``wsfm.loss.flow_matching_loss``, the
diffusion and AR losses in baselines/); this loop only steps the optimiser and reports progress.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from tqdm.auto import tqdm


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


def count_parameters(net: nn.Module) -> int:
    """Number of trainable parameters of ``net``."""
    return sum(p.numel() for p in net.parameters() if p.requires_grad)
