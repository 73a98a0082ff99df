"""Full models train until a held-out criterion stops improving: cosine cycles of doubling
length, the held-out loss checked where each cycle has annealed, patience and a step cap, the
best weights kept; the record says where and why training stopped."""

from __future__ import annotations

import torch
from torch import nn

from harness.nn.config import TrainConfig
from harness.nn.training import convergence, optimise


def _problem() -> tuple[nn.Module, callable]:
    torch.manual_seed(0)
    net = nn.Linear(1, 1)

    def loss(g: torch.Generator) -> torch.Tensor:
        x = torch.randn(16, 1, generator=g)
        return (net(x) - 3 * x).pow(2).mean()

    return net, loss


def test_cycles_double_until_the_held_out_loss_stops_improving_and_keep_the_best() -> None:
    net, loss = _problem()
    scripted = iter([1.0, 0.5, 0.6, 0.7])  # the third cycle is worse: stop, keep the second's
    snapshots = []

    def held_out() -> float:
        snapshots.append({k: v.clone() for k, v in net.state_dict().items()})
        return next(scripted)

    curve, stopped = [], []
    config = TrainConfig(steps=10, patience=1, max_steps=1000, lr=0.05)
    losses = optimise(net, loss, config, torch.Generator().manual_seed(1), progress=False,
                      held_out=held_out, curve=curve, stopped=stopped)
    assert [step for step, _ in curve] == [10, 30, 70] and len(losses) == 70
    assert stopped == ["plateau"]
    assert all(torch.equal(v, snapshots[1][k]) for k, v in net.state_dict().items())
    record = convergence(curve, config, len(losses), stopped[0])
    assert (record["best_step"], record["steps_run"], record["stopped"]) == (30, 70, "plateau")
    assert record["plateaued"] is True


def test_the_step_cap_stops_a_model_still_improving_and_says_so() -> None:
    net, loss = _problem()
    values = iter([1.0, 0.5, 0.25, 0.1])
    curve, stopped = [], []
    config = TrainConfig(steps=10, patience=2, max_steps=40, lr=0.05)
    losses = optimise(net, loss, config, torch.Generator().manual_seed(1), progress=False,
                      held_out=lambda: next(values), curve=curve, stopped=stopped)
    assert len(losses) == 30 and stopped == ["cap"]  # 10 + 20; a cycle of 40 would not fit
    record = convergence(curve, config, len(losses), stopped[0])
    assert record["stopped"] == "cap" and record["plateaued"] is False


def test_without_patience_training_is_one_cosine_cycle_of_steps() -> None:
    net, loss = _problem()
    curve = []
    losses = optimise(net, loss, TrainConfig(steps=50, lr=0.05),
                      torch.Generator().manual_seed(1), progress=False,
                      held_out=lambda: 1.0, curve=curve)
    assert len(losses) == 50 and [s for s, _ in curve] == [10, 20, 30, 40, 50]
    assert losses[-1] < losses[0]
