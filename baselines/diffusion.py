"""DDPM (ancestral) and DDIM (eta = 0) samplers over one epsilon-prediction network.

Variance-preserving diffusion in continuous time with the linear-beta schedule of DDPM:
alpha_bar(t) = exp(-(b_min t + (b_max - b_min) t^2 / 2)), t = 0 data, t = 1 noise (the
reverse of the flow convention; kept inside this module). The network is the task's own
architecture, so per-call cost matches the flow models. N steps cost exactly N calls.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import nn

from harness.nn.training import optimise
from harness.plugins import Method, SamplingPlan

if TYPE_CHECKING:
    from harness.context import CellContext

B_MIN, B_MAX = 0.1, 20.0


def alpha_bar(t: float) -> float:
    return math.exp(-(B_MIN * t + 0.5 * (B_MAX - B_MIN) * t * t))


def _alpha_bar_tensor(t: torch.Tensor) -> torch.Tensor:
    return torch.exp(-(B_MIN * t + 0.5 * (B_MAX - B_MIN) * t * t))


def eps_network(ctx: CellContext) -> nn.Module:
    """The epsilon-prediction network for the context's task and seed (trained once)."""
    data = ctx.data.train
    batch = ctx.train_config.batch_size

    def train(net: nn.Module) -> None:
        def loss(g: torch.Generator) -> torch.Tensor:
            x0 = data[torch.randint(len(data), (batch,), generator=g, device=data.device)]
            t = torch.rand(batch, generator=g, device=data.device) * (1 - 1e-3) + 1e-3
            ab = _alpha_bar_tensor(t).view(-1, *([1] * (x0.dim() - 1)))
            eps = torch.randn(x0.shape, generator=g, device=x0.device)
            x_t = ab.sqrt() * x0 + (1 - ab).sqrt() * eps
            return (net(x_t, t) - eps).pow(2).mean()

        optimise(net, loss, ctx.train_config, ctx.generator("train:diffusion"),
                 desc=f"diffusion {ctx.task_name} seed {ctx.seed}", progress=ctx.progress)

    return ctx.network("diffusion-eps", {"schedule": ["linear-vp", B_MIN, B_MAX]}, train)


SPACINGS = ("trailing", "quadratic", "leading")


def time_grid(n_steps: int, spacing: str = "trailing") -> list[float]:
    """The N + 1 times from noise to data. "trailing": uniform from t = 1 (the first step sees
    pure noise; Lin et al. 2024); "quadratic": t = (1 - i/N)^2, denser near the data (DDIM's
    choice for small N); "leading": uniform from t = N/(N+1) (older DDPM codebases: the first
    step never sees pure noise, a known flaw, kept for comparison)."""
    if spacing == "trailing":
        return [1.0 - i / n_steps for i in range(n_steps + 1)]
    if spacing == "quadratic":
        return [(1.0 - i / n_steps) ** 2 for i in range(n_steps + 1)]
    if spacing == "leading":
        return [(n_steps - i) / (n_steps + 1) for i in range(n_steps)] + [0.0]
    raise ValueError(f"spacing={spacing!r}; allowed: {', '.join(SPACINGS)}")


@torch.no_grad()
def sample(
    eps_net, x: torch.Tensor, n_steps: int, ancestral: bool, generator: torch.Generator,
    spacing: str = "trailing",
) -> torch.Tensor:
    """Integrate from noise to t = 0 on the ``spacing`` grid of ``n_steps`` steps."""
    times = time_grid(n_steps, spacing)
    batch_t = torch.empty(x.shape[0], dtype=x.dtype, device=x.device)
    for t, s in zip(times[:-1], times[1:], strict=True):
        ab_t, ab_s = alpha_bar(t), alpha_bar(s)
        eps = eps_net(x, batch_t.fill_(t))
        x0 = (x - math.sqrt(1 - ab_t) * eps) / math.sqrt(ab_t)
        if not ancestral:  # DDIM, deterministic
            x = math.sqrt(ab_s) * x0 + math.sqrt(1 - ab_s) * eps
            continue
        # DDPM posterior q(x_s | x_t, x0) with the predicted x0.
        a_ts = ab_t / ab_s
        mean = (math.sqrt(ab_s) * (1 - a_ts) / (1 - ab_t)) * x0 + (
            math.sqrt(a_ts) * (1 - ab_s) / (1 - ab_t)
        ) * x
        var = (1 - ab_s) / (1 - ab_t) * (1 - a_ts)
        noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        x = mean + math.sqrt(var) * noise
    return x


@dataclass
class _Diffusion(Method):
    spacing: str = "trailing"  # the time grid (time_grid): trailing, quadratic or leading
    ancestral = True

    def __post_init__(self) -> None:
        if self.spacing not in SPACINGS:
            raise ValueError(f"spacing={self.spacing!r}; allowed: {', '.join(SPACINGS)}")

    def prepare(self, ctx: CellContext, n_steps: int) -> SamplingPlan:
        shape = tuple(ctx.data.test.shape[1:])
        device = ctx.device

        def draw_start(n: int, g: torch.Generator) -> torch.Tensor:
            return torch.randn((n, *shape), generator=g, device=device)

        def integrate(net, x, g):
            return sample(net, x, n_steps, self.ancestral, g, self.spacing)

        return SamplingPlan(
            network=eps_network(ctx),
            draw_start=draw_start,
            integrate=integrate,
            expected_nfe=n_steps,
            n_steps=n_steps,
            k_steps=n_steps,
            solver="ddpm" if self.ancestral else "ddim",
        )

    def label(self) -> str:
        base = "ancestral" if self.ancestral else "eta=0"
        return base if self.spacing == "trailing" else f"{base} {self.spacing}"


@dataclass
class DDPM(_Diffusion):
    """DDPM ancestral sampling, epsilon-prediction, N steps (N network calls)."""

    ancestral = True
    title = "DDPM"


@dataclass
class DDIM(_Diffusion):
    """DDIM deterministic sampling (eta = 0) on the same epsilon network, N calls."""

    ancestral = False
    title = "DDIM"
