"""Real data as a method: the data floor. Its samples are n_samples points of the task's
training split (a seeded draw, without replacement while the split lasts), judged against the
evaluation set like any method's, with zero network calls: the score held-out data gets, the
best any method can score at this sample count. Methods within noise of it cannot be told
apart; the headline shows it beside every row."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from harness.plugins import Method, SamplingPlan
from harness.roles import Role

if TYPE_CHECKING:
    from harness.context import CellContext


@dataclass
class RealData(Method):
    """The data floor: n_samples training points judged against the evaluation set."""

    role = Role.DATA
    title = "Data (floor)"
    uses_budget = False

    def prepare(self, ctx: CellContext, n_steps: int) -> SamplingPlan:
        train = ctx.data.train

        def draw(n: int, g: torch.Generator) -> torch.Tensor:
            index = torch.cat([torch.randperm(len(train), generator=g, device=g.device)
                               for _ in range(-(-n // len(train)))])[:n]
            return train[index.to(train.device)]

        return SamplingPlan(network=None, draw_start=draw, integrate=lambda net, x, g: x,
                            expected_nfe=0, n_steps=0, k_steps=0)

    def label(self) -> str:
        return "training split"
