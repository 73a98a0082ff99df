"""The autoregressive baseline: exact NFE, KV cache equal to the full forward, seeded
sampling, quantisation, and a model that learns digits better than a uniform guess; and its
text case (characters as tokens, the task's network size, NFE = L)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from baselines.autoregressive import (
    NFE_NOTE,
    ARTransformer,
    Autoregressive,
    dequantise,
    from_sequence,
    quantise,
    sequence_nll,
    to_sequence,
)
from harness.cache import Cache
from harness.context import CellContext
from harness.errors import ConfigError
from harness.plugins import Task, TaskData, instantiate
from harness.records.cell import Cell
from harness.registry import methods, tasks
from harness.run.jobs import Worker
from harness.run.nfe import CountingNetwork

LEVELS = 16
# A tiny model: a few seconds of training on one thread.
TINY = dict(levels=LEVELS, n_layer=1, n_head=2, d_model=32, steps=300, batch_size=32, lr=3e-3)


@dataclass
class _ARDigits(Task):
    """Test task: scikit-learn digits as (N, 1, 8, 8) in [-1, 1], 297 held out."""

    n_test: int = 297
    modality = "images"

    def load(self) -> TaskData:
        from sklearn.datasets import load_digits

        x = torch.as_tensor(load_digits().images, dtype=torch.float32)[:, None] / 16 * 2 - 1
        perm = torch.as_tensor(np.random.default_rng(0).permutation(len(x)))
        x = x[perm]
        return TaskData(train=x[self.n_test :], test=x[: self.n_test])

    def make_network(self) -> nn.Module:
        raise NotImplementedError("the AR baseline builds its own network")


@dataclass
class _ARColour(_ARDigits):
    """Test task: random 3-channel 4x4 images (checks channel-last order and NFE = C*H*W)."""

    def load(self) -> TaskData:
        g = torch.Generator().manual_seed(0)
        x = dequantise(torch.randint(LEVELS, (80, 3, 4, 4), generator=g), LEVELS)
        return TaskData(train=x[:60], test=x[60:])


tasks.add("ar-test-digits", _ARDigits)
tasks.add("ar-test-colour", _ARColour)


def _context(task: str, root: Path) -> CellContext:
    return CellContext(task, {}, seed=0, device="cpu", cache=Cache(root), progress=False)


@pytest.fixture(scope="module")
def digits(tmp_path_factory: pytest.TempPathFactory):
    """(ctx, method, plan) for the tiny model trained on digits (once for this module)."""
    ctx = _context("ar-test-digits", tmp_path_factory.mktemp("ar-cache"))
    method = Autoregressive(**TINY)
    return ctx, method, method.prepare(ctx, n_steps=7)


def test_registered_as_a_once_per_seed_method() -> None:
    assert methods.get("ar") is Autoregressive
    assert Autoregressive.uses_budget is False and Autoregressive.role == "baseline"
    assert Autoregressive().label() == "levels=16"
    assert Autoregressive(levels=8, temperature=0.9).label() == "levels=8,temperature=0.9"


def test_quantise_round_trip() -> None:
    for levels in (2, LEVELS, 256):
        tokens = torch.arange(levels)
        grid = dequantise(tokens, levels)
        assert grid[0] == -1 and grid[-1] == 1
        assert torch.equal(quantise(grid, levels), tokens)  # grid values survive exactly
        x = torch.rand(1000, generator=torch.Generator().manual_seed(levels)) * 2 - 1
        err = (dequantise(quantise(x, levels), levels) - x).abs().max()
        assert err <= 1 / (levels - 1) + 1e-6  # at most half a grid step (2 / (levels - 1))
    assert quantise(torch.tensor([-3.0, 3.0]), LEVELS).tolist() == [0, LEVELS - 1]


def test_raster_order_is_channel_last() -> None:
    img = torch.arange(2 * 3 * 2 * 2).reshape(2, 3, 2, 2)  # (N, C, H, W)
    seq = to_sequence(img)
    # Pixel (h=0, w=0) with its 3 channels, then (0, 1), then (1, 0), ...
    assert seq[0, :6].tolist() == [0, 4, 8, 1, 5, 9]
    assert seq[0, 9:].tolist() == [3, 7, 11]
    assert torch.equal(from_sequence(seq, (3, 2, 2)), img)


def test_kv_cached_steps_equal_the_full_causal_forward() -> None:
    torch.manual_seed(0)
    net = ARTransformer(LEVELS, seq_len=12, n_layer=2, n_head=4, d_model=32, dropout=0.1).eval()
    seq = torch.randint(LEVELS, (3, 12))
    inputs = torch.cat([torch.full((3, 1), net.start_token), seq[:, :-1]], dim=1)
    with torch.no_grad():
        full = net(inputs)  # (3, 12, LEVELS)
        cache = None
        for pos in range(12):
            logits, cache = net(inputs[:, pos], pos, cache)
            torch.testing.assert_close(logits, full[:, pos], atol=1e-5, rtol=1e-5)
    # Changing a later token leaves earlier logits alone: the forward really is causal.
    changed = inputs.clone()
    changed[:, 7] = (changed[:, 7] + 1) % LEVELS
    with torch.no_grad():
        torch.testing.assert_close(net(changed)[:, :7], full[:, :7])
        assert not torch.allclose(net(changed)[:, 7], full[:, 7])


@pytest.mark.parametrize("task", ["ar-test-digits", "ar-test-colour"])
def test_nfe_is_exactly_one_call_per_token(task: str, digits, tmp_path: Path) -> None:
    if task == "ar-test-digits":
        ctx, _, plan = digits
    else:
        ctx = _context(task, tmp_path)
        plan = Autoregressive(**{**TINY, "steps": 5}).prepare(ctx, n_steps=7)
    c, h, w = ctx.data.train.shape[1:]
    counter = CountingNetwork(plan.network)
    g = ctx.generator("sample")
    samples = plan.integrate(counter, plan.draw_start(10, g), g)
    assert counter.calls == c * h * w == plan.expected_nfe == plan.n_steps == plan.k_steps
    assert plan.evals_per_step == 1 and plan.t0 == 0.0
    assert samples.shape == (10, c, h, w)
    assert torch.equal(dequantise(quantise(samples, LEVELS), LEVELS), samples)  # on the grid


def test_same_seed_gives_identical_samples(digits) -> None:
    _, _, plan = digits

    def draw(seed: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(seed)
        return plan.integrate(plan.network, plan.draw_start(16, g), g)

    assert torch.equal(draw(3), draw(3))
    assert not torch.equal(draw(3), draw(4))


def test_trained_model_beats_uniform_and_independent_pixels(digits) -> None:
    ctx, method, plan = digits
    train = to_sequence(quantise(ctx.data.train, LEVELS))
    test = to_sequence(quantise(ctx.data.test, LEVELS))
    with torch.no_grad():
        nll = sequence_nll(plan.network, test).item()
    # The best model with independent pixels: per-position frequencies (smoothed).
    counts = torch.stack([torch.bincount(train[:, i], minlength=LEVELS) for i in range(64)])
    probs = (counts + 0.5) / (counts + 0.5).sum(1, keepdim=True)
    independent = -probs.log().gather(1, test.T).mean().item()
    assert nll < math.log(LEVELS)
    assert nll < independent, (nll, independent)  # it uses the pixels before each token
    assert plan.info["parameters"] == sum(p.numel() for p in plan.network.parameters())


def test_runner_counts_nfe_and_sees_deterministic_samples(digits, tmp_path: Path) -> None:
    cell = Cell(task="ar-test-digits", task_options={}, method="ar", method_options=TINY,
                n_steps=0, seed=0, device="cpu", n_samples=20, n_eval=20, repeats=2, warmup=1,
                training={})
    record, samples = Worker().run(cell, Cache(tmp_path), progress=False)
    assert record.sampling.nfe_measured == record.plan.nfe_expected == 64
    assert record.sampling.nfe_ok and record.sampling.deterministic
    assert record.identity.role == "baseline" and record.plan.nfe_note == NFE_NOTE
    assert samples.shape == (20, 1, 8, 8)


@pytest.mark.parametrize("options", [
    {"levels": 1}, {"levels": 257}, {"n_head": 3, "d_model": 64}, {"d_model": 0}, {"steps": 0},
    {"batch_size": 1.5}, {"lr": 0.0}, {"temperature": -1.0}, {"temperature": math.inf},
    {"dropout": 1.0}, {"n_layer": True},
])
def test_bad_options_raise(options: dict) -> None:
    with pytest.raises(ValueError):
        Autoregressive(**options)
    with pytest.raises(ConfigError, match="'ar'"):
        instantiate(methods, "ar", options)


def test_refuses_tasks_that_are_neither_images_nor_text() -> None:
    with pytest.raises(ValueError, match="modality"):
        Autoregressive().check_task(tasks.get("two-moons")())
    Autoregressive().check_task(_ARDigits())  # images: accepted
    Autoregressive().check_task(_ARText())  # text: accepted
    with pytest.raises(ValueError, match="n_head=3"):  # 64 (the image default) % 3 != 0
        Autoregressive(n_head=3).check_task(_ARDigits())


# ------------------------------------------------------------------------------- text

TEXT_L = 12
TEXT_SIZE = {"d_model": 32, "n_layer": 1, "n_head": 2}


@dataclass
class _ARText(Task):
    """Test task: windows of 'hello world ' (27-symbol alphabet), ids 0..26, length 12."""

    modality = "text"
    vocab_size = 27
    seq_len = TEXT_L
    net_size = TEXT_SIZE

    def load(self) -> TaskData:
        from harness.text.alphabet import encode

        ids = torch.tensor(encode("hello world " * 4))
        starts = torch.randint(12, (120,), generator=torch.Generator().manual_seed(0)).tolist()
        x = torch.stack([ids[s : s + TEXT_L] for s in starts])
        return TaskData(train=x[:100], test=x[100:])

    def make_network(self) -> nn.Module:
        raise NotImplementedError("the AR baseline builds its own network")


tasks.add("ar-test-text", _ARText)


@pytest.fixture(scope="module")
def text_plan(tmp_path_factory: pytest.TempPathFactory):
    ctx = _context("ar-test-text", tmp_path_factory.mktemp("ar-text-cache"))
    return ctx, Autoregressive(steps=200, batch_size=16).prepare(ctx, n_steps=3)


def test_text_uses_characters_and_the_task_network_size(text_plan) -> None:
    ctx, plan = text_plan
    net = plan.network
    assert (net.levels, net.seq_len, net.start_token) == (27, TEXT_L, 27)
    assert len(net.blocks) == 1 and net.n_head == 2 and net.pos.embedding_dim == 32
    assert {k: plan.info[k] for k in TEXT_SIZE} == TEXT_SIZE and plan.info["levels"] == 27
    counter = CountingNetwork(net)
    g = ctx.generator("sample")
    samples = plan.integrate(counter, plan.draw_start(9, g), g)
    assert counter.calls == TEXT_L == plan.expected_nfe == plan.n_steps == plan.k_steps
    assert samples.shape == (9, TEXT_L) and samples.dtype == torch.long
    assert 0 <= int(samples.min()) and int(samples.max()) < 27
    g1, g2 = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    assert torch.equal(plan.integrate(net, plan.draw_start(9, g1), g1),
                       plan.integrate(net, plan.draw_start(9, g2), g2))


def test_text_model_learns_and_its_cache_matches_the_full_forward(text_plan) -> None:
    ctx, plan = text_plan
    net, test = plan.network, ctx.data.test
    with torch.no_grad():
        assert sequence_nll(net, test).item() < 0.5 * math.log(27)
        inputs = torch.cat([torch.full((len(test), 1), net.start_token), test[:, :-1]], dim=1)
        full, cache = net(inputs), None
        for pos in range(TEXT_L):
            logits, cache = net(inputs[:, pos], pos, cache)
            torch.testing.assert_close(logits, full[:, pos], atol=1e-5, rtol=1e-5)


def test_text_size_options_override_the_task_and_are_needed_without_net_size() -> None:
    assert Autoregressive(d_model=48, n_head=3).size(_ARText()) == \
        {"n_layer": 1, "n_head": 3, "d_model": 48}
    assert Autoregressive().size(_ARDigits()) == {"n_layer": 2, "n_head": 4, "d_model": 64}

    class NoSize(_ARText):
        net_size = {"d_model": 32}

    with pytest.raises(ValueError, match="n_layer, n_head"):
        Autoregressive().check_task(NoSize())
    Autoregressive(n_layer=1, n_head=2).check_task(NoSize())


def test_text_data_out_of_range_is_refused(tmp_path: Path) -> None:
    class Bad(_ARText):
        def load(self) -> TaskData:
            d = super().load()
            return TaskData(train=d.train + 20, test=d.test)

    tasks.add("ar-test-bad-text", Bad)
    with pytest.raises(ValueError, match="0..26"):
        Autoregressive(steps=1).prepare(_context("ar-test-bad-text", tmp_path), n_steps=1)


def test_runner_on_text(tmp_path: Path) -> None:
    cell = Cell(task="ar-test-text", task_options={}, method="ar",
                method_options={"steps": 5, "batch_size": 8}, n_steps=0, seed=0, device="cpu",
                n_samples=6, n_eval=6, repeats=2, warmup=1, training={})
    record, samples = Worker().run(cell, Cache(tmp_path), progress=False)
    assert record.sampling.nfe_measured == record.plan.nfe_expected == TEXT_L
    assert record.sampling.nfe_ok and record.sampling.deterministic
    assert samples.shape == (6, TEXT_L)
