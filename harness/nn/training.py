"""The one training loop every method and task shares: Adam on a batch loss, with cosine decay
over a fixed length, or until a held-out loss stops improving (a full model).

What is minimised is the method's own business (``wsfm.loss.flow_matching_loss``, the
diffusion and AR losses in baselines/); this loop only steps the optimiser and reports progress.
"""

from __future__ import annotations

import math
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
    """Adam on ``batch_loss``; returns the loss of every step.

    Without ``held_out``, or with ``config.patience`` = 0: ``config.steps`` steps with cosine
    decay. With ``held_out`` (a loss on data the network does not train on, the same batches
    every call), its value at each check is appended to ``curve`` as [step, loss]: the
    convergence record (``convergence``); with ``config.patience`` > 0 training runs until
    that loss stops improving (``_Plateau``), and the best weights are kept."""
    early = held_out is not None and config.patience > 0
    total = config.max_steps if early else config.steps
    opt = torch.optim.Adam(net.parameters(), lr=config.lr)
    sched = None if early else torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total)
    checks = ({max(1, round(total * k / CHECKS)) for k in range(1, CHECKS + 1)}
              if not early else None)
    plateau = _Plateau(config, opt, net) if early else None
    net.train()
    losses: list[float] = []
    bar = tqdm(range(total), desc=desc, leave=False, disable=not progress)
    for step in bar:
        loss = batch_loss(generator)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if sched is not None:
            sched.step()
        losses.append(loss.item())
        if len(losses) % 200 == 0:
            bar.set_postfix(loss=f"{sum(losses[-200:]) / 200:.4f}")
        due = (step + 1) % config.check_every == 0 if early else step + 1 in checks
        if held_out is not None and due:
            net.eval()
            with torch.no_grad():
                value = float(held_out())
            net.train()
            if curve is not None:
                curve.append([step + 1, value])
            if plateau is not None and plateau.stop(step + 1, value):
                break
    if plateau is not None:
        plateau.restore_best()
    net.eval()
    return losses


class _Plateau:
    """Training until the held-out loss stops improving: ``patience`` checks without a
    relative improvement of ``min_delta`` halve the learning rate; the ``halvings``-th such
    plateau stops; the best weights seen are restored at the end."""

    def __init__(self, config: TrainConfig, opt: torch.optim.Optimizer, net: nn.Module) -> None:
        self.config, self.opt, self.net = config, opt, net
        self.best, self.best_state, self.bad, self.plateaus = math.inf, None, 0, 0

    def stop(self, step: int, value: float) -> bool:
        if value < self.best * (1 - self.config.min_delta) or self.best_state is None:
            self.best, self.bad = value, 0
            self.best_state = {k: v.detach().clone() for k, v in self.net.state_dict().items()}
            return False
        self.bad += 1
        if self.bad < self.config.patience:
            return False
        self.plateaus += 1
        self.bad = 0
        if self.plateaus > self.config.halvings:
            return True
        for group in self.opt.param_groups:
            group["lr"] *= 0.5
        return False

    def restore_best(self) -> None:
        if self.best_state is not None:
            self.net.load_state_dict(self.best_state)


CHECKS = 5  # held-out evaluations per training run
PLATEAU = 0.02  # the held-out loss fell by less than this share over the last fifth: plateaued


def convergence(curve: list[list[float]], config: TrainConfig | None = None,
                steps_run: int | None = None) -> dict[str, object]:
    """The convergence record of a held-out ``curve``: the curve, the relative fall of the
    held-out loss over the last fifth of training and whether that is under PLATEAU (fixed
    length), or, trained until the loss stopped improving (``config.patience`` > 0), the
    steps run, the best step and whether training stopped on the plateau or at the cap."""
    record: dict[str, object] = {"heldout_loss": curve, "last_fall": None, "plateaued": None}
    if config is not None and config.patience > 0 and curve:
        best_step, best = min(curve, key=lambda point: point[1])
        capped = steps_run is not None and steps_run >= config.max_steps
        return {**record, "criterion": "held-out loss", "steps_run": steps_run,
                "best_step": best_step, "best_loss": best, "max_steps": config.max_steps,
                "stopped": "cap" if capped else "plateau", "plateaued": not capped}
    if len(curve) < 2:
        return record
    before, last = curve[-2][1], curve[-1][1]
    fall = (before - last) / abs(before) if before else 0.0
    return {**record, "last_fall": fall, "plateaued": bool(fall < PLATEAU)}


def count_parameters(net: nn.Module) -> int:
    """Number of trainable parameters of ``net``."""
    return sum(p.numel() for p in net.parameters() if p.requires_grad)
