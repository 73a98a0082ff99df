"""The draft model's own samples: the quality floor, with zero network calls."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from harness.plugins import Method, SamplingPlan, Task
from harness.registry import check_draft
from harness.roles import Role

if TYPE_CHECKING:
    from harness.context import CellContext


@dataclass
class DraftOnly(Method):
    """The draft's samples as they are (no refinement): the quality floor."""

    draft: str = "good"
    role = Role.FLOOR
    title = "Draft only"
    uses_budget = False

    def check_task(self, task: Task) -> None:
        check_draft(task, self.draft)

    def starts_from(self) -> str:
        return self.draft

    def prepare(self, ctx: CellContext, n_steps: int) -> SamplingPlan:
        draft = ctx.draft(self.draft)
        return SamplingPlan(
            network=None,
            draw_start=draft.sample,
            integrate=lambda net, x, g: x,
            expected_nfe=0,
            n_steps=0,
            k_steps=0,
        )

    def label(self) -> str:
        return self.draft
