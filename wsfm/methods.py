"""The flow-matching methods, all one mechanism: (network, source, start time, solver).

The task's data type picks the path: continuous data (points, images) use the affine path
from Gaussian noise, tokens (text, ``task.vocab_size`` set) the mixture path from all-[MASK]
(discrete FM; WS-FM is then WS-DFM). Everything else is shared.

- full-fm:    noise source, t_start = 0, trained on data; N steps.
- ws-fm:      draft or noised-draft source, t_start = t0, trained on (draft, refined) pairs,
              from scratch or fine-tuned from the full model; K = ceil((1 - t0) N) steps.
- warm-start: training-free ablation: the full model itself, started at t0 from the
              noised draft (the SDEdit / img2img idea).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from harness.context import seeded_generator
from harness.hashing import stable_hash
from harness.nn.config import TrainConfig
from harness.nn.training import convergence, optimise
from harness.plugins import Draft, Method, SamplingPlan, Task
from harness.registry import check_draft
from harness.roles import Role
from wsfm import advisor, solvers
from wsfm.loss import flow_matching_loss
from wsfm.paths import make_path
from wsfm.schedule import check_start_time, time_grid
from wsfm.sources import START_KINDS, Source, make_source

if TYPE_CHECKING:
    from harness.context import CellContext


def task_source(task: Task, kind: str, t0: float) -> Source:
    """Source ``kind`` for the task's data type (Gaussian noise or [MASK] tokens)."""
    return make_source(kind, t0, mask_id=task.vocab_size if task.discrete else None)


HELD_OUT_BATCHES = 8  # batches of the held-out loss at each check (the same ones each time)


def validation_split(n: int, seed: int,
                     device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """(indices a model trains on, indices its held-out loss is checked on): a seeded tenth of
    ``n`` training items (at least 64) set aside, so the criterion that stops training sees
    neither the training data nor the evaluation set."""
    order = torch.randperm(n, generator=seeded_generator(seed, "validation")).to(device)
    n_val = min(n // 2, max(64, n // 10))
    return order[n_val:], order[:n_val]


def train_flow(ctx: CellContext, net: nn.Module, path: Any, source: Source,
               targets: torch.Tensor, drafts: torch.Tensor | None, name: str, desc: str,
               check_on: torch.Tensor | None = None,
               config: TrainConfig | None = None) -> dict[str, object]:
    """Train ``net`` on the path from ``source`` to ``targets`` (paired with ``drafts``).

    With the suite's training patience (> 0), every flow model, full FM's and each warm
    start's alike, trains until its flow-matching loss on a held-out tenth of its own
    training items stops improving, so neither side of a comparison is judged under-trained;
    returns the convergence record. Without it, ``steps`` steps; a record only where
    ``check_on`` (data apart from training; full FM: the test split) is given to check
    the loss on as training goes. ``config``: the settings, where not the context's (a warm
    start's own: ``TrainConfig.for_pairs``)."""
    config = config or ctx.train_config
    curve: list[list[float]] = []
    stopped: list[str] = []
    held = None
    if config.patience > 0:
        fit, val = validation_split(len(targets), ctx.seed, targets.device)
        held = flow_matching_loss(net, path, source, targets[val],
                                  None if drafts is None else drafts[val],
                                  min(config.batch_size, len(val)))
        targets, drafts = targets[fit], None if drafts is None else drafts[fit]
    elif check_on is not None and not source.needs_draft:
        held = flow_matching_loss(net, path, source, check_on, None,
                                  min(config.batch_size, len(check_on)))

    def held_out() -> float:  # the same batches at every check
        g = ctx.generator(f"heldout:{name}")
        return sum(float(held(g)) for _ in range(HELD_OUT_BATCHES)) / HELD_OUT_BATCHES

    loss = flow_matching_loss(net, path, source, targets, drafts, config.batch_size)
    losses = optimise(net, loss, config, ctx.generator(f"train:{name}"), desc=desc,
                      progress=ctx.progress, held_out=None if held is None else held_out,
                      curve=curve, stopped=stopped)
    if held is None:
        return {}
    return {"convergence": convergence(curve, config, len(losses),
                                       stopped[0] if stopped else None)}


def full_model(ctx: CellContext) -> nn.Module:
    """The full FM network for the context's task and seed (trained once, cached)."""
    def train(net: nn.Module) -> dict[str, object]:
        return train_flow(ctx, net, make_path(ctx.task.discrete, 0.0),
                          task_source(ctx.task, "noise", 0.0), ctx.data.train, None,
                          "full-fm", f"full-fm {ctx.task_name} seed {ctx.seed}",
                          check_on=ctx.data.test)

    return ctx.network("flow", {"t_start": 0.0, "source": "noise"}, train)


def flow_plan(
    ctx: CellContext,
    network: nn.Module,
    source: Source,
    draft: Draft | None,
    t0: float,
    n_steps: int,
    solver: str,
) -> SamplingPlan:
    """Sample by integrating ``network`` from ``source`` at t0 to 1 with step 1/N."""
    grid = time_grid(t0, n_steps)
    k = len(grid) - 1
    s = solvers.EVALS_PER_STEP[solver]
    data_shape = tuple(ctx.data.test.shape[1:])
    device, dtype = ctx.device, ctx.data.test.dtype

    def draw_start(n: int, g: torch.Generator) -> torch.Tensor:
        like = torch.empty((n, *data_shape), device=device, dtype=dtype)
        x_draft = draft.sample(n, g) if source.needs_draft else None
        return source.start(x_draft, like, g)

    def integrate(net, x, g):
        return solvers.integrate(net, x, grid, solver, g)

    reference = reference_start = None
    if t0 > 0:
        full_grid = time_grid(0.0, n_steps)
        noise = task_source(ctx.task, "noise", 0.0)

        def reference(net, x, g):
            return solvers.integrate(net, x, full_grid, solver, g)

        def reference_start(n: int, g: torch.Generator) -> torch.Tensor:
            return noise.start(None, torch.empty((n, *data_shape), device=device, dtype=dtype), g)

    return SamplingPlan(
        network=network,
        draw_start=draw_start,
        integrate=integrate,
        expected_nfe=k * s,
        n_steps=n_steps,
        k_steps=k,
        evals_per_step=s,
        t0=t0,
        reference_integrate=reference,
        reference_start=reference_start,
        reference_nfe=n_steps * s if t0 > 0 else 0,
        solver=solver,
        start=source.name,
    )


def _check_solver_for(task: Task, solver: str) -> None:
    if task.discrete:
        solvers.check_discrete_solver(solver)


@dataclass
class FullFM(Method):
    """Full flow matching from Gaussian noise, N steps of the chosen solver."""

    solver: str = "euler"
    role = Role.REFERENCE
    title = "Full FM"

    def __post_init__(self) -> None:
        solvers.check_solver(self.solver)

    def check_task(self, task: Task) -> None:
        _check_solver_for(task, self.solver)

    def prepare(self, ctx: CellContext, n_steps: int) -> SamplingPlan:
        source = task_source(ctx.task, "noise", 0.0)
        return flow_plan(ctx, full_model(ctx), source, None, 0.0, n_steps, self.solver)


@dataclass
class _WarmStart(Method):
    """Options every warm start shares: a draft, a start time t0 in (0, 1), a solver."""

    draft: str = "good"
    t0: float = 0.8
    solver: str = "euler"
    role = Role.WARM_START

    def __post_init__(self) -> None:
        self.t0 = check_start_time(self.t0, allow_zero=False)
        solvers.check_solver(self.solver)

    def starts_from(self) -> str:
        return self.draft

    def start_time(self) -> float:
        return self.t0

    def check_task(self, task: Task) -> None:
        check_draft(task, self.draft)
        _check_solver_for(task, self.solver)

    def advice_topic(self) -> str:
        return self.draft

    def advise(self, ctx: CellContext) -> dict[str, Any]:
        """The t0 advisor (wsfm.advisor) for this draft: advisor.N_SAMPLES draft samples
        against as many training points (a seeded subset), cached."""
        n = advisor.N_SAMPLES
        key = {**ctx.draft_key(self.draft), "advisor": advisor.VERSION, "n": n,
               "grid": list(advisor.GRID), "device": ctx.device.type}

        def build() -> dict[str, Any]:
            g = ctx.generator(f"advisor:{self.draft}")
            train = ctx.data.train
            order = torch.randperm(len(train), generator=seeded_generator(ctx.seed, "advisor"))
            x_d = ctx.draft(self.draft).sample(min(n, len(train)), g)
            result = advisor.advise_t0(x_d, train[order[:n].to(train.device)], g,
                                       ctx.task.modality, ctx.task.vocab_size)
            return {"json": json.dumps(result)}

        return json.loads(ctx.cache.load_or_build("advisor", key, build)["json"])


@dataclass
class WarmStartFM(_WarmStart):
    """Warm-Start FM: trained on [t0, 1] from draft-based starts; K = ceil((1-t0)N) steps."""

    start: str = "draft"
    init: str = "scratch"
    title = "WS-FM"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.start not in START_KINDS:
            raise ValueError(f"start={self.start!r}; allowed: {', '.join(START_KINDS)}")
        if self.init not in ("scratch", "finetune"):
            raise ValueError(f"init={self.init!r}; allowed: scratch, finetune")

    def prepare(self, ctx: CellContext, n_steps: int) -> SamplingPlan:
        source = task_source(ctx.task, self.start, self.t0)
        draft = ctx.draft(self.draft)
        x_d, x_r = ctx.pairs(self.draft)

        key = {
            "t_start": self.t0,
            "source": self.start,
            "init": self.init,
            # The training pairs, by their own cache key: draft, refiner, versions, data.
            "pairs": stable_hash(ctx.pairs_key(self.draft)),
        }

        own = ctx.train_config.for_pairs()  # the task's settings unless the pairs' own are set

        def train(net: nn.Module) -> dict[str, object]:
            if self.init == "finetune":
                net.load_state_dict(full_model(ctx).state_dict())
            # The stream is named by the model's purpose and seed, as full FM's and the
            # drafts' are, not by its cache key: a change that only re-keys the model (an
            # option of another draft, the harness's version) does not re-roll its figures.
            return train_flow(ctx, net, make_path(ctx.task.discrete, self.t0), source, x_r, x_d,
                              f"ws-fm:{self.draft}:t0={self.t0:g}:{self.start}:{self.init}",
                              f"ws-fm {self.draft} t0={self.t0:g} {self.start} {self.init} "
                              f"seed {ctx.seed}", config=own)

        # Cached by what it trains with too.
        net = ctx.network("flow", {**key, "train_config": own.key()}, train)
        plan = flow_plan(ctx, net, source, draft, self.t0, n_steps, self.solver)
        plan.init, plan.targets = self.init, x_r
        plan.refiner_stats = ctx.refiner_stats(self.draft)
        return plan

    def label(self) -> str:
        return f"{self.draft} t0={self.t0:g} {self.start} {self.init} {self.solver}"


@dataclass
class TrainingFreeWarmStart(_WarmStart):
    """Training-free warm start: the full model started at t0 from the noised draft."""

    title = "Warm start (training-free)"

    def prepare(self, ctx: CellContext, n_steps: int) -> SamplingPlan:
        source = task_source(ctx.task, "noised-draft", self.t0)
        return flow_plan(
            ctx, full_model(ctx), source, ctx.draft(self.draft), self.t0, n_steps, self.solver
        )

    def label(self) -> str:
        return f"{self.draft} t0={self.t0:g} {self.solver}"
