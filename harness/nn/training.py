"""The one training loop every method and task shares: Adam with cosine decay on a batch loss.

What is minimised is the method's own business (``wsfm.loss.flow_matching_loss``, the
diffusion and AR losses in baselines/); this loop only steps the optimiser and reports progress.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn
from tqdm.auto import tqdm

from harness.nn.config import TrainConfig


def optimise(
    net: nn.Module,
    batch_loss: Callable[[torch.Generator], torch.Tensor],
    config: TrainConfig,
    generator: torch.Generator,
    desc: str = "train",
    progress: bool = True,
    held_out: Callable[[], float] | None = None,
    curve: list[list[float]] | None = None,
) -> list[float]:
    """Adam with cosine decay on ``batch_loss``; returns the loss of every step.

    With ``held_out`` (a loss on data the network does not train on, the same batches every
    call), its value after each fifth of training is appended to ``curve`` as [step, loss]:
    the convergence record (``convergence``)."""
    opt = torch.optim.Adam(net.parameters(), lr=config.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=config.steps)
    checks = {max(1, round(config.steps * k / CHECKS)) for k in range(1, CHECKS + 1)}
    net.train()
    losses = []
    bar = tqdm(range(config.steps), desc=desc, leave=False, disable=not progress)
    for step in bar:
        loss = batch_loss(generator)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        losses.append(loss.item())
        if len(losses) % 200 == 0:
            bar.set_postfix(loss=f"{sum(losses[-200:]) / 200:.4f}")
        if held_out is not None and curve is not None and step + 1 in checks:
            net.eval()
            with torch.no_grad():
                curve.append([step + 1, float(held_out())])
            net.train()
    net.eval()
    return losses


CHECKS = 5  # held-out evaluations per training run
PLATEAU = 0.02  # the held-out loss fell by less than this share over the last fifth: plateaued


def convergence(curve: list[list[float]]) -> dict[str, object]:
    """The convergence record of a held-out ``curve``: the curve, the relative fall of the
    held-out loss over the last fifth of training, and whether that is under PLATEAU."""
    if len(curve) < 2:
        return {"heldout_loss": curve, "last_fall": None, "plateaued": None}
    before, last = curve[-2][1], curve[-1][1]
    fall = (before - last) / abs(before) if before else 0.0
    return {"heldout_loss": curve, "last_fall": fall, "plateaued": bool(fall < PLATEAU)}


def count_parameters(net: nn.Module) -> int:
    """Number of trainable parameters of ``net``."""
    return sum(p.numel() for p in net.parameters() if p.requires_grad)
