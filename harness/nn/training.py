"""The one training loop every method and task shares: Adam on a batch loss with cosine decay,
over a fixed length, or in cycles of doubling length until a held-out loss stops improving (a
full model).

What is minimised is the method's own business (``wsfm.loss.flow_matching_loss``, the
diffusion and AR losses in baselines/); this loop only steps the optimiser and reports progress.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from harness.nn.config import TrainConfig


def adam(params: Iterable[torch.Tensor], **options: Any) -> torch.optim.Adam:
    """``torch.optim.Adam`` with its multi-tensor (foreach) update, which torch uses by default
    only on CUDA: on the CPU it computes the same numbers, bit for bit, in one call per update
    rule instead of one per tensor (the U-Net's step: 1.1 ms instead of 1.6, of about 16)."""
    return torch.optim.Adam(params, foreach=True, **options)


def optimise(
    net: nn.Module,
    batch_loss: Callable[[torch.Generator], torch.Tensor],
    config: TrainConfig,
    generator: torch.Generator,
    desc: str = "train",
    progress: bool = True,
    held_out: Callable[[], float] | None = None,
    curve: list[list[float]] | None = None,
    stopped: list[str] | None = None,
) -> list[float]:
    """Adam with cosine decay on ``batch_loss``; returns the loss of every step.

    Without ``held_out``, or with ``config.patience`` = 0: one cycle of ``config.steps``
    steps; with ``held_out`` (a loss on data the network does not train on, the same batches
    every call), its value after each fifth of training is appended to ``curve`` as
    [step, loss], the convergence record (``convergence``). With ``config.patience`` > 0:
    cycles of doubling length until the held-out loss at a cycle's end stops improving
    (TrainConfig), the best weights kept; ``curve`` gets each cycle's end and ``stopped`` why
    training stopped ("plateau" or "cap")."""
    if held_out is None or config.patience <= 0:
        checks = {max(1, round(config.steps * k / CHECKS)) for k in range(1, CHECKS + 1)}
        return _cycle(net, batch_loss, config, config.steps, generator, desc, progress,
                      held_out, curve, checks, 0)
    losses: list[float] = []
    best, best_state, stale, length = math.inf, None, 0, config.steps
    why = "cap"
    while len(losses) + length <= config.max_steps:
        losses += _cycle(net, batch_loss, config, length, generator, desc, progress, None,
                         None, set(), len(losses))
        with torch.no_grad():
            value = float(held_out())
        if curve is not None:
            curve.append([len(losses), value])
        if improves(value, best, config):
            best, stale = value, 0
            best_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
        else:
            stale += 1
            if stale >= config.patience:
                why = "plateau"
                break
        length *= 2
    if best_state is not None:
        net.load_state_dict(best_state)
    if stopped is not None:
        stopped.append(why)
    return losses


def improves(value: float, best: float, config: TrainConfig) -> bool:
    """Whether a held-out loss improves on the best so far by ``config.min_delta`` (relative):
    the rule that keeps a cycle's weights."""
    return value < best * (1 - config.min_delta)


def _cycle(net: nn.Module, batch_loss: Callable[[torch.Generator], torch.Tensor],
           config: TrainConfig, steps: int, generator: torch.Generator, desc: str,
           progress: bool, held_out: Callable[[], float] | None,
           curve: list[list[float]] | None, checks: set[int], done: int) -> list[float]:
    """One cosine cycle of ``steps`` Adam steps from ``config.lr``; the held-out loss at the
    steps in ``checks`` goes to ``curve``. Leaves the network in eval mode."""
    opt = adam(net.parameters(), lr=config.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
    net.train()
    losses: list[float] = []
    bar = tqdm(range(steps), desc=desc, leave=False, disable=not progress)
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
                curve.append([done + step + 1, float(held_out())])
            net.train()
    net.eval()
    return losses


CHECKS = 5  # held-out evaluations per training run
PLATEAU = 0.02  # the held-out loss fell by less than this share over the last fifth: plateaued


def convergence(curve: list[list[float]], config: TrainConfig | None = None,
                steps_run: int | None = None, stopped: str | None = None) -> dict[str, object]:
    """The convergence record of a held-out ``curve``: the curve, the relative fall of the
    held-out loss over the last fifth of training and whether that is under PLATEAU (fixed
    length), or, trained until the loss stopped improving (``config.patience`` > 0), the
    steps run, the best step and whether training stopped on the plateau or at the cap."""
    record: dict[str, object] = {"heldout_loss": curve, "last_fall": None, "plateaued": None}
    if config is not None and config.patience > 0 and curve:
        # The weights kept: those of the last cycle that improved by min_delta (``optimise``),
        # not the curve's minimum, which a smaller fall may have set.
        best_step, best = curve[0]
        for step, value in curve[1:]:
            if improves(value, best, config):
                best_step, best = step, value
        capped = stopped == "cap"
        return {**record, "criterion": "held-out loss at each cycle's end",
                "steps_run": steps_run, "best_step": best_step, "best_loss": best,
                "max_steps": config.max_steps, "stopped": "cap" if capped else "plateau",
                "plateaued": not capped}
    if len(curve) < 2:
        return record
    before, last = curve[-2][1], curve[-1][1]
    fall = (before - last) / abs(before) if before else 0.0
    return {**record, "last_fall": fall, "plateaued": bool(fall < PLATEAU)}


def count_parameters(net: nn.Module) -> int:
    """Number of trainable parameters of ``net``."""
    return sum(p.numel() for p in net.parameters() if p.requires_grad)
