"""Full models train until a held-out criterion stops improving: cosine cycles of doubling
length, the held-out loss checked where each cycle has annealed, patience and a step cap, the
best weights kept; the record says where and why training stopped."""

from __future__ import annotations

import torch
from torch import nn

from harness.nn.config import TrainConfig
from harness.nn.training import adam, convergence, optimise
from harness.nn.unet import TimeUNet


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


def test_a_fall_below_min_delta_keeps_the_earlier_weights_and_the_record_says_so() -> None:
    """A last cycle that lowers the held-out loss by less than ``min_delta`` stops training
    and its weights are not kept; the record names the step whose weights are."""
    net, loss = _problem()
    scripted = iter([1.0, 0.995])  # 0.5% lower: under min_delta = 2%
    snapshots = []

    def held_out() -> float:
        snapshots.append({k: v.clone() for k, v in net.state_dict().items()})
        return next(scripted)

    curve, stopped = [], []
    config = TrainConfig(steps=10, patience=1, min_delta=0.02, max_steps=1000, lr=0.05)
    losses = optimise(net, loss, config, torch.Generator().manual_seed(1), progress=False,
                      held_out=held_out, curve=curve, stopped=stopped)
    assert stopped == ["plateau"] and len(losses) == 30
    assert all(torch.equal(v, snapshots[0][k]) for k, v in net.state_dict().items())
    record = convergence(curve, config, len(losses), stopped[0])
    assert (record["best_step"], record["best_loss"]) == (10, 1.0)


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


CONVERGED_SUITE = """
name = "converged"
seeds = [0]
budgets = [4]
n_samples = 200
n_eval = 200
repeats = 1
[training]
steps = 20
batch_size = 128
patience = 1
max_steps = 140
[[tasks]]
name = "two-moons"
n_train = 600
n_test = 300
[[methods]]
name = "full-fm"
[[methods]]
name = "ws-fm"
draft = "good"
t0 = 0.5
init = ["scratch", "finetune"]
[[methods]]
name = "warm-start"
draft = "good"
t0 = 0.5
"""


def test_every_flow_model_trains_until_its_own_held_out_loss_stops(tmp_path) -> None:
    """Neither side of a comparison is under-trained: with patience, a warm start's own model
    trains in doubling cycles on held-out pairs like full FM's; each record carries the
    curve of the network it samples with, and the report lists each model's curve once."""
    import tomllib

    from harness.cache import Cache
    from harness.records.store import read_cells
    from harness.report.training import convergence_table
    from harness.run.runner import run_suite
    from harness.run.suite import parse_suite

    run = run_suite(parse_suite(tomllib.loads(CONVERGED_SUITE)), tmp_path / "out",
                    run_id="conv", cache=Cache(tmp_path / "cache"), progress=False)
    records = list(read_cells(run))
    conv = {(r.identity.method, r.identity.variant): r.cost.convergence for r in records}
    full = conv[("full-fm", "solver=euler")]
    assert full["criterion"] == "held-out loss at each cycle's end"
    scratch = conv[("ws-fm", "good t0=0.5 draft scratch euler")]
    finetune = conv[("ws-fm", "good t0=0.5 draft finetune euler")]
    for own in (scratch, finetune):
        assert own["criterion"] == full["criterion"]
        assert own["steps_run"] >= 20 and own["steps_run"] <= 140
        assert [s for s, _ in own["heldout_loss"]][:2] == [20, 60]  # cycles of 20, then 40
        assert own["heldout_loss"] != full["heldout_loss"]  # its own pairs, not full FM's data
    assert conv[("warm-start", "good t0=0.5 euler")] == full  # training-free: full FM's network
    table = convergence_table(records)
    assert table.count("| two-moons |") == 3  # full FM and the two warm starts' own models
    assert "Full FM" in table and "good t0=0.5 draft finetune euler" in table


def test_a_warm_starts_own_batch_and_cap_apply_to_its_model_alone(tmp_path) -> None:
    """``pairs_batch_size`` / ``pairs_max_steps`` train the warm start's own network on its
    pairs; full FM (and the training-free warm start on its network) keep the task's."""
    import tomllib

    from harness.cache import Cache
    from harness.records.store import read_cells
    from harness.run.runner import run_suite
    from harness.run.suite import parse_suite

    scratch = CONVERGED_SUITE.replace('init = ["scratch", "finetune"]', 'init = "scratch"')
    suite = scratch.replace("max_steps = 140",
                            "max_steps = 140\npairs_batch_size = 64\npairs_max_steps = 60")
    run = run_suite(parse_suite(tomllib.loads(suite)), tmp_path / "out", run_id="pairs",
                    cache=Cache(tmp_path / "cache"), progress=False)
    conv = {r.identity.method: r.cost.convergence for r in read_cells(run)}
    assert conv["ws-fm"]["max_steps"] == 60 and conv["ws-fm"]["steps_run"] <= 60
    assert conv["full-fm"]["max_steps"] == 140 and conv["warm-start"] == conv["full-fm"]
    # The same full model as without them: found in the cache, not trained again.
    cache = Cache(tmp_path / "cache")
    run_suite(parse_suite(tomllib.loads(scratch)), tmp_path / "out", run_id="plain",
              cache=cache, progress=False)
    assert cache.built["models"] == 1  # the warm start's own model alone

    config = TrainConfig(batch_size=1024, max_steps=1500, pairs_batch_size=256,
                         pairs_max_steps=3500)
    own = config.for_pairs()
    assert (own.batch_size, own.max_steps, own.pairs_batch_size) == (256, 3500, 0)
    # A full model's key leaves them out (changing them retrains no full model); a warm
    # start's key is that of what it trains with.
    assert config.key() == TrainConfig(batch_size=1024, max_steps=1500).key()
    assert own.key() == TrainConfig(batch_size=256, max_steps=3500).key()
    # Fixed-length training (no patience): the cap bounds its length, never lengthens it.
    fixed = TrainConfig(steps=1000, pairs_max_steps=300)
    assert fixed.for_pairs().steps == 300
    assert TrainConfig(steps=200, pairs_max_steps=300).for_pairs().steps == 200
    assert TrainConfig(steps=1000, patience=1, pairs_max_steps=300).for_pairs().steps == 1000


def test_a_bad_pairs_setting_is_named() -> None:
    import tomllib

    import pytest

    from harness.errors import ConfigError
    from harness.run.suite import parse_suite
    from harness.run.validate import validate

    suite = CONVERGED_SUITE.replace("max_steps = 140", "max_steps = 140\npairs_batch_size = 0")
    with pytest.raises(ConfigError, match="pairs_batch_size"):
        validate(parse_suite(tomllib.loads(suite)))
    # A cap below the first cycle would leave the network untrained.
    short = CONVERGED_SUITE.replace("max_steps = 140", "max_steps = 140\npairs_max_steps = 1")
    with pytest.raises(ConfigError, match="pairs_max_steps = 1 is shorter than the first"):
        validate(parse_suite(tomllib.loads(short)))
    # Judged on the training the cells get: the suite's steps, the task's own cap.
    split = CONVERGED_SUITE.replace("n_test = 300",
                                    "n_test = 300\ntraining = { pairs_max_steps = 5 }")
    with pytest.raises(ConfigError,
                       match=r"task 'two-moons' training: pairs_max_steps = 5 .*steps = 20"):
        validate(parse_suite(tomllib.loads(split)))


def test_a_methods_own_training_applies_to_its_cells_alone(tmp_path) -> None:
    """``training`` on a [[methods]] entry (a control that needs less, say) overrides the
    task's for that entry's cells only; overriding only ``pairs_*`` keeps full FM's model, so
    a fine-tune starts from the same one the other cells use; it is checked like the task's."""
    import tomllib

    import pytest

    from harness.cache import Cache
    from harness.errors import ConfigError
    from harness.records.store import read_cells
    from harness.run.runner import run_suite
    from harness.run.suite import parse_suite

    suite = CONVERGED_SUITE.replace('init = ["scratch", "finetune"]', 'init = "finetune"')
    suite += ('[[methods]]\nname = "ws-fm"\ndraft = "positive"\nt0 = 0.5\ninit = "finetune"\n'
              'training = { pairs_max_steps = 20 }\n')
    parsed = parse_suite(tomllib.loads(suite))
    cache = Cache(tmp_path / "cache")
    run = run_suite(parsed, tmp_path / "out", run_id="own", cache=cache, progress=False)
    records = list(read_cells(run))
    conv = {(r.identity.method, r.identity.draft): r.cost.convergence for r in records}
    assert conv[("ws-fm", "positive")]["max_steps"] == 20
    assert conv[("ws-fm", "positive")]["steps_run"] == 20  # one cycle: its cap
    assert conv[("ws-fm", "good")]["max_steps"] == 140  # the task's, untouched
    assert conv[("full-fm", None)]["max_steps"] == 140
    # One full FM model, shared by both fine-tunes: three models in all.
    assert cache.built["models"] == 3
    fulls = {part for r in records if r.identity.method == "ws-fm"
             for part in r.cost.train_parts if part.startswith("models/")}
    assert len(fulls) == 3  # full FM's, shared, and each warm start's own
    # Suites without it keep their hash; checked like the task's, named by the method.
    assert "training" not in parse_suite(tomllib.loads(CONVERGED_SUITE)).as_dict()["methods"][0]
    with pytest.raises(ConfigError, match=r"method 'ws-fm' training has no key 'stepz'"):
        parse_suite(tomllib.loads(suite.replace("pairs_max_steps = 20", "stepz = 20")))
    with pytest.raises(ConfigError, match=r"method 'ws-fm' training: pairs_max_steps = 5 is "
                                          "shorter than the first cycle"):
        parse_suite(tomllib.loads(suite.replace("pairs_max_steps = 20", "pairs_max_steps = 5")))
    # Two entries differing only in training would share a variant's name: refused.
    twice = suite + ('[[methods]]\nname = "ws-fm"\ndraft = "positive"\nt0 = 0.5\n'
                     'init = "finetune"\ntraining = { pairs_max_steps = 40 }\n')
    with pytest.raises(ConfigError, match="given twice"):
        parse_suite(tomllib.loads(twice))


def test_the_shared_adam_updates_weights_exactly_as_torchs_per_tensor_adam() -> None:
    # Every cached model and every figure was made with torch's per-tensor Adam on the CPU:
    # the multi-tensor update the harness uses must not move a single bit of them.
    def train(make_optimiser) -> torch.Tensor:
        torch.manual_seed(0)
        net = TimeUNet(channels=1, base=8, image_size=8)
        opt = make_optimiser(net.parameters())
        g = torch.Generator().manual_seed(1)
        for _ in range(5):
            x, t = torch.randn(8, 1, 8, 8, generator=g), torch.rand(8, generator=g)
            loss = (net(x, t) - x).pow(2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        return torch.cat([p.detach().flatten() for p in net.parameters()])

    options = {"lr": 1e-2, "betas": (0.5, 0.999), "weight_decay": 1e-4}
    ours = train(lambda params: adam(params, **options))
    theirs = train(lambda params: torch.optim.Adam(params, foreach=False, **options))
    assert torch.equal(ours, theirs)
    assert not torch.equal(ours, train(lambda params: adam(params, lr=2e-2)))  # it trains
