"""Discrete flow matching in the one mechanism: mixture path, token sources, mixture Euler."""

from __future__ import annotations

import pytest
import torch

from harness.nn.training import TrainConfig, optimise
from harness.nn.transformer import TokenTransformer
from harness.run.nfe import CountingNetwork
from wsfm import solvers
from wsfm.loss import flow_matching_loss
from wsfm.paths import MixturePath, make_path
from wsfm.schedule import time_grid
from wsfm.sources import MaskedDraftSource, MaskSource, make_source

V, MASK, L = 5, 5, 12


def test_mixture_path_endpoints_and_fraction():
    g = torch.Generator().manual_seed(0)
    start = torch.full((4000, L), MASK)
    end = torch.randint(0, V, (4000, L), generator=g)
    path = MixturePath(0.0)
    assert torch.equal(path.interpolate(start, end, torch.zeros(4000), g), start)
    assert torch.equal(path.interpolate(start, end, torch.ones(4000), g), end)
    # At t0 = 0.6, t = 0.8 the fraction s is 0.5: half the tokens come from the end.
    warm = MixturePath(0.6)
    x = warm.interpolate(start, end, torch.full((4000,), 0.8), g)
    assert abs((x == end).float().mean().item() - 0.5) < 0.02
    assert set(x.unique().tolist()) <= set(range(V + 1))
    assert make_path(True, 0.3).discrete and not make_path(False, 0.3).discrete


def test_token_sources():
    g = torch.Generator().manual_seed(1)
    like = torch.empty((3, L), dtype=torch.long)
    assert torch.equal(make_source("noise", 0.0, MASK).start(None, like, g),
                       torch.full((3, L), MASK))
    assert isinstance(make_source("noise", 0.0, MASK), MaskSource)
    drafts = torch.randint(0, V, (20000, 1), generator=g)
    src = make_source("noised-draft", 0.8, MASK)
    assert isinstance(src, MaskedDraftSource)
    x = src.start(drafts, drafts, g)
    masked = x == MASK
    assert abs(masked.float().mean().item() - 0.2) < 0.01  # masked with probability 1 - t0
    assert torch.equal(x[~masked], drafts[~masked])
    assert torch.equal(make_source("draft", 0.8, MASK).start(drafts, drafts, g), drafts)


class Oracle(torch.nn.Module):
    """Logits that put (almost) all mass on a fixed target sequence."""

    def __init__(self, target: torch.Tensor) -> None:
        super().__init__()
        self.target = target

    def forward(self, x, t):
        logits = torch.full((*x.shape, V), -30.0)
        return logits.scatter(-1, self.target.expand(x.shape[0], -1)[..., None], 30.0)


@pytest.mark.parametrize(("t0", "n"), [(0.0, 10), (0.8, 10), (0.7, 10), (0.75, 7)])
def test_mixture_euler_nfe_exact_and_masks_resolved(t0, n):
    target = torch.randint(0, V, (1, L), generator=torch.Generator().manual_seed(2))
    net = CountingNetwork(Oracle(target))
    g = torch.Generator().manual_seed(3)
    grid = time_grid(t0, n)
    x = torch.full((64, L), MASK)
    out = solvers.integrate(net, x, grid, "euler", g)
    assert net.reset() == len(grid) - 1  # one call per step, K = ceil((1 - t0) N)
    assert not (out == MASK).any()  # the last step jumps with probability one
    assert torch.equal(out, target.expand(64, -1))


def test_mixture_euler_deterministic_and_rejects_ode_solvers():
    net = TokenTransformer(V, L, d_model=16, n_layer=1, n_head=2)
    x = torch.full((8, L), MASK)
    grid = time_grid(0.0, 6)
    a = solvers.integrate(net, x, grid, "euler", torch.Generator().manual_seed(5))
    b = solvers.integrate(net, x, grid, "euler", torch.Generator().manual_seed(5))
    assert torch.equal(a, b) and a.dtype == torch.long and a.max() < V
    with pytest.raises(ValueError, match="tokens"):
        solvers.integrate(net, x, grid, "heun", torch.Generator())


def test_early_steps_jump_with_the_right_probability():
    # From t = 0 with h = 1/4, each token jumps with probability 1/4.
    target = torch.zeros((1, 1), dtype=torch.long)
    x = torch.full((20000, 1), MASK)
    out = solvers.mixture_euler_step(Oracle(target), x, 0.0, 0.25, torch.Generator())
    assert abs((out != MASK).float().mean().item() - 0.25) < 0.015


def test_discrete_fm_learns_and_more_steps_help():
    # Data: every sequence is "aaaa..." or "bbbb...". Tokens that jump in the same mixture
    # Euler step are drawn independently, so few steps mix the two; many steps do not.
    a = torch.zeros(L, dtype=torch.long)
    data = torch.stack([a, a + 1] * 64)
    torch.manual_seed(0)
    net = TokenTransformer(V, L, d_model=32, n_layer=1, n_head=2)
    loss = flow_matching_loss(net, MixturePath(0.0), MaskSource(MASK), data, None, 64)
    losses = optimise(net, loss, TrainConfig(steps=150, batch_size=64, lr=3e-3),
                      torch.Generator().manual_seed(0), progress=False)
    assert sum(losses[-20:]) / 20 < 0.2 * losses[0]

    def consistent(n_steps: int) -> float:
        out = solvers.integrate(net, torch.full((256, L), MASK), time_grid(0.0, n_steps),
                                "euler", torch.Generator().manual_seed(1))
        return (out == out[:, :1]).all(dim=1).float().mean().item()

    few, many = consistent(2), consistent(4 * L)
    print(f"consistent sequences: {few:.2f} with 2 steps, {many:.2f} with {4 * L}")
    assert many > 0.7 and few < many - 0.3
