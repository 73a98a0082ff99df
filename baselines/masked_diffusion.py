"""Masked (absorbing-state) discrete diffusion for text, MDLM / D3PM-absorbing style.

Time convention (kept inside this module): diffusion time t in [0, 1], t = 0 is data and
t = 1 is all [MASK]. Each token is independently kept with probability alpha(t) and replaced
by the mask id otherwise; alpha decreases from alpha(0) = 1 to alpha(1) = 0:

- "linear" (MDLM's default):  alpha(t) = 1 - t;
- "cosine":                   alpha(t) = cos(pi t / 2).

The network is the task's own (the same one discrete flow matching uses), called as
``net(x_t, alpha(t))``: its time input is the kept fraction alpha, which matches the flow
convention (0 = all mask, 1 = data). It predicts p(x_0 | x_t) at every position.

Training minimises the continuous-time ELBO (Sahoo et al. 2024, Shi et al. 2024):
E_t [ -alpha'(t) / (1 - alpha(t)) * sum over masked i of -log p(x_0^i | x_t) ] / L.

Sampling is ancestral on the uniform grid t_k = 1 - k / N: going from t to s < t, each still
masked token is revealed with probability (alpha(s) - alpha(t)) / (1 - alpha(t)), its value
drawn from the network's prediction; revealed tokens never change. alpha(0) = 1, so the last
step reveals every token left. One network call per step: NFE = N exactly.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from harness.nn.training import optimise
from harness.plugins import Method, SamplingPlan, Task

if TYPE_CHECKING:
    from harness.context import CellContext

SCHEDULES = ("linear", "cosine")
T_MIN = 1e-3  # training times lie in [T_MIN, 1]: the ELBO weight grows like 1/t at t -> 0


def alpha(t: torch.Tensor, schedule: str) -> torch.Tensor:
    """Probability that a token is still unmasked at diffusion time t (1 at t=0, 0 at t=1)."""
    if schedule == "linear":
        return 1 - t
    if schedule == "cosine":
        return torch.cos(0.5 * math.pi * t)
    raise ValueError(f"schedule={schedule!r}; allowed: {', '.join(SCHEDULES)}")


def elbo_weight(t: torch.Tensor, schedule: str) -> torch.Tensor:
    """-alpha'(t) / (1 - alpha(t)): the ELBO's weight on the masked tokens' cross-entropy."""
    if schedule == "linear":
        return 1 / t
    if schedule == "cosine":
        half = 0.5 * math.pi
        # 1 - cos(x) written as 2 sin^2(x / 2): exact near t = 0, where the weight is large.
        return half * torch.sin(half * t) / (2 * torch.sin(0.5 * half * t) ** 2)
    raise ValueError(f"schedule={schedule!r}; allowed: {', '.join(SCHEDULES)}")


def mask_tokens(
    x0: torch.Tensor, keep: torch.Tensor, mask_id: int, generator: torch.Generator
) -> torch.Tensor:
    """Replace each token of x0 (B, L) by ``mask_id`` with probability 1 - keep (B,)."""
    u = torch.rand(x0.shape, generator=generator, device=x0.device)
    return torch.where(u < keep[:, None], x0, torch.full_like(x0, mask_id))


def masked_diffusion_loss(
    net: nn.Module, data: torch.Tensor, batch_size: int, schedule: str, vocab_size: int
) -> Callable[[torch.Generator], torch.Tensor]:
    """Batch loss: the ELBO-weighted cross-entropy on masked positions, per token."""

    def loss(g: torch.Generator) -> torch.Tensor:
        x0 = data[torch.randint(len(data), (batch_size,), generator=g, device=data.device)]
        t = torch.rand(batch_size, generator=g, device=data.device) * (1 - T_MIN) + T_MIN
        keep = alpha(t, schedule)
        x_t = mask_tokens(x0, keep, vocab_size, g)
        logits = net(x_t, keep)
        ce = F.cross_entropy(logits.reshape(-1, vocab_size).float(), x0.reshape(-1),
                             reduction="none").view_as(x0)
        masked = (x_t == vocab_size).float()
        return (elbo_weight(t, schedule) * (ce * masked).mean(dim=1)).mean()

    return loss


def _categorical(logits: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """One draw per row of logits (..., V), by Gumbel-max with the given generator."""
    u = torch.rand(logits.shape, generator=generator, device=logits.device)
    exponential = -torch.log(u.clamp_min(1e-20))  # Exp(1) draws, > 0
    gumbel = -torch.log(exponential.clamp_min(1e-20))
    return (logits.float() + gumbel).argmax(dim=-1)


@torch.no_grad()
def sample(
    net: Callable, x: torch.Tensor, n_steps: int, schedule: str, vocab_size: int,
    generator: torch.Generator, temperature: float = 1.0,
) -> torch.Tensor:
    """Ancestral sampling from ``x`` (B, L) (all mask) over ``n_steps`` steps, one call each."""
    mask_id = vocab_size
    times = torch.linspace(1.0, 0.0, n_steps + 1, dtype=torch.float64).tolist()
    keep_t = torch.empty(x.shape[0], device=x.device)
    for t, s in zip(times[:-1], times[1:], strict=True):
        a_t = float(alpha(torch.tensor(t, dtype=torch.float64), schedule))
        a_s = 1.0 if s == 0.0 else float(alpha(torch.tensor(s, dtype=torch.float64), schedule))
        logits = net(x, keep_t.fill_(a_t))[..., :vocab_size]
        proposal = _categorical(logits / temperature, generator)
        # P(revealed at s | masked at t); the last step (s = 0) reveals everything left.
        reveal_p = 1.0 if a_s >= 1.0 else (a_s - a_t) / (1.0 - a_t)
        u = torch.rand(x.shape, generator=generator, device=x.device)
        reveal = (x == mask_id) & (u < reveal_p)
        x = torch.where(reveal, proposal, x)
    return x


@dataclass
class MaskedDiffusion(Method):
    """Absorbing-state (masked) discrete diffusion on the task's own network (text only).

    Options: the masking ``schedule`` ("linear": alpha = 1 - t, or "cosine"), and the
    sampling ``temperature``. Trained with the task's training config; N steps of ancestral
    sampling cost exactly N network calls.
    """

    schedule: str = "linear"
    temperature: float = 1.0
    title = "Masked diffusion"
    version = "1"

    def __post_init__(self) -> None:
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule={self.schedule!r}; allowed: {', '.join(SCHEDULES)}")
        value = self.temperature
        if (not isinstance(value, int | float) or isinstance(value, bool)
                or not math.isfinite(value) or value <= 0):
            raise ValueError(f"temperature={value!r} must be a positive number")

    def check_task(self, task: Task) -> None:
        if not task.discrete:
            raise ValueError(
                f"method 'masked-diffusion' needs a discrete (text) task with vocab_size set; "
                f"task modality is {task.modality!r}"
            )

    def network(self, ctx: CellContext) -> nn.Module:
        """The task's network trained on the masked-diffusion ELBO (once per seed, cached)."""
        vocab = int(ctx.task.vocab_size)
        data = ctx.data.train
        if data.ndim != 2 or data.dtype != torch.long:
            raise ValueError(f"method 'masked-diffusion' needs token ids (n, L), got "
                             f"{data.dtype} of shape {tuple(data.shape)}")

        def train(net: nn.Module) -> None:
            loss = masked_diffusion_loss(net, data, ctx.train_config.batch_size, self.schedule,
                                         vocab)
            optimise(net, loss, ctx.train_config, ctx.generator("train:masked-diffusion"),
                     desc=f"masked-diffusion {ctx.task_name} seed {ctx.seed}",
                     progress=ctx.progress)

        key = {"schedule": self.schedule, "t_min": T_MIN, "time_input": "alpha",
               "loss": "elbo", "version": self.version}
        return ctx.network("masked-diffusion", key, train)

    def prepare(self, ctx: CellContext, n_steps: int) -> SamplingPlan:
        vocab = int(ctx.task.vocab_size)
        seq_len = int(ctx.data.test.shape[1])
        device = ctx.device

        def draw_start(n: int, g: torch.Generator) -> torch.Tensor:
            return torch.full((n, seq_len), vocab, dtype=torch.long, device=device)

        def integrate(net, x, g):
            return sample(net, x, n_steps, self.schedule, vocab, g, self.temperature)

        return SamplingPlan(
            network=self.network(ctx),
            draw_start=draw_start,
            integrate=integrate,
            expected_nfe=n_steps,
            n_steps=n_steps,
            k_steps=n_steps,
            solver="ancestral-masked",
            info={"schedule": self.schedule},
        )

    def label(self) -> str:
        changed = "" if self.temperature == 1.0 else f",temperature={self.temperature}"
        return f"schedule={self.schedule}{changed}"
