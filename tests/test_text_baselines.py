"""Text baselines: the LSTM draft (learns, deterministic, state round trip) and masked
discrete diffusion (exact NFE, no mask left, deterministic, an oracle is reproduced, and a
tiny trained model follows a repetitive corpus)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import pytest
import torch
from torch import nn

from baselines.masked_diffusion import (
    MaskedDiffusion,
    alpha,
    elbo_weight,
    mask_tokens,
    masked_diffusion_loss,
    sample,
)
from harness.cache import Cache
from harness.context import CellContext
from harness.errors import ConfigError
from harness.plugins import Task, TaskData, instantiate
from harness.registry import drafts, methods, tasks
from harness.run.nfe import CountingNetwork
from harness.text.alphabet import ALPHABET, MASK_ID, VOCAB_SIZE, decode, encode
from harness.text.draft import LSTMDraft

L = 16
PATTERN = "abc "


def _repetitive(n: int, seed: int) -> torch.Tensor:
    """n windows of length L cut at random offsets from 'abc abc abc ...'."""
    ids = torch.tensor(encode(PATTERN * (L + 8)))
    starts = torch.randint(len(PATTERN), (n,), generator=torch.Generator().manual_seed(seed))
    return torch.stack([ids[s : s + L] for s in starts.tolist()])


def _pattern_score(samples: torch.Tensor) -> float:
    """Fraction of adjacent pairs that follow the pattern (a->b, b->c, c->' ', ' '->a)."""
    nxt = {ALPHABET.index(PATTERN[i]): ALPHABET.index(PATTERN[(i + 1) % 4]) for i in range(4)}
    table = torch.full((VOCAB_SIZE + 1,), -1, dtype=torch.long)
    for a, b in nxt.items():
        table[a] = b
    return (table[samples[:, :-1]] == samples[:, 1:]).float().mean().item()


# ----------------------------------------------------------------------- LSTM draft


@pytest.fixture(scope="module")
def lstm_pair() -> tuple[LSTMDraft, LSTMDraft, torch.Tensor]:
    """(untrained-ish draft: 1 step, trained draft: 150 steps, the training windows)."""
    train = _repetitive(200, seed=0)
    drafts_ = []
    for steps in (1, 150):
        d = LSTMDraft(hidden=32, embed=8, steps=steps, batch_size=16, lr=1e-2)
        d.fit(train, torch.Generator().manual_seed(0))
        drafts_.append(d)
    return drafts_[0], drafts_[1], train


def test_lstm_registered_and_validates_options() -> None:
    assert drafts.get("lstm") is LSTMDraft
    for bad in ({"hidden": 0}, {"layers": 1.5}, {"lr": 0.0}, {"temperature": math.nan},
                {"steps": True}):
        with pytest.raises(ValueError):
            LSTMDraft(**bad)
        with pytest.raises(ConfigError, match="'lstm'"):
            instantiate(drafts, "lstm", bad)


def test_lstm_learns_the_pattern(lstm_pair) -> None:
    untrained, trained, train = lstm_pair
    assert trained.nll(train) < 0.3 < math.log(VOCAB_SIZE) - 0.5 < untrained.nll(train)
    g = torch.Generator().manual_seed(1)
    before = _pattern_score(untrained.sample(64, g))
    after = _pattern_score(trained.sample(64, g))
    assert after > 0.9 and before < 0.3, (before, after)


def test_lstm_samples_shape_range_and_determinism(lstm_pair) -> None:
    _, trained, _ = lstm_pair
    a = trained.sample(32, torch.Generator().manual_seed(5))
    assert a.shape == (32, L) and a.dtype == torch.long
    assert 0 <= int(a.min()) and int(a.max()) < VOCAB_SIZE
    assert torch.equal(a, trained.sample(32, torch.Generator().manual_seed(5)))
    hot = LSTMDraft(hidden=32, embed=8, temperature=5.0)
    hot.load_state_dict(trained.state_dict())
    b = hot.sample(32, torch.Generator().manual_seed(5))
    assert not torch.equal(a, b)  # the temperature is used
    assert trained.sample(0, torch.Generator()).shape == (0, L)


def test_lstm_state_round_trip(lstm_pair) -> None:
    _, trained, train = lstm_pair
    state = trained.state_dict()
    assert all(v.device.type == "cpu" for v in state["weights"].values())
    loaded = LSTMDraft(hidden=32, embed=8).to(torch.device("cpu"))
    loaded.load_state_dict(state)
    g = torch.Generator().manual_seed(9)
    assert torch.equal(loaded.sample(8, g), trained.sample(8, torch.Generator().manual_seed(9)))
    assert loaded.nll(train) == trained.nll(train)
    with pytest.raises(ValueError, match="hidden"):
        LSTMDraft(hidden=64, embed=8).load_state_dict(state)


def test_lstm_fit_is_deterministic_and_checks_its_data() -> None:
    train = _repetitive(50, seed=2)
    states = []
    for _ in range(2):
        d = LSTMDraft(hidden=16, embed=4, steps=5, batch_size=8)
        d.fit(train, torch.Generator().manual_seed(3))
        states.append(d.state_dict()["weights"])
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])
    with pytest.raises(ValueError, match="LongTensor"):
        LSTMDraft().fit(train.float(), torch.Generator())
    with pytest.raises(ValueError, match="0..26"):
        LSTMDraft(steps=1).fit(train + VOCAB_SIZE, torch.Generator())
    with pytest.raises(RuntimeError, match="fit"):
        LSTMDraft().sample(1, torch.Generator())


# ------------------------------------------------------------------ masked diffusion


class _Oracle(nn.Module):
    """Knows the answer: logits 0 on the target's id, -inf elsewhere, whatever the input."""

    def __init__(self, target: torch.Tensor) -> None:
        super().__init__()
        self.target = target

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        assert x.shape == self.target.shape and t.shape == (len(x),)
        logits = torch.full((*x.shape, VOCAB_SIZE), -math.inf)
        return logits.scatter(-1, self.target[..., None], 0.0)


class _Uniform(nn.Module):
    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return torch.zeros(*x.shape, VOCAB_SIZE)


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
def test_schedule_ends_and_elbo_weight(schedule: str) -> None:
    t = torch.tensor([0.0, 1.0], dtype=torch.float64)
    torch.testing.assert_close(alpha(t, schedule), torch.tensor([1.0, 0.0], dtype=torch.float64))
    # The weight is -alpha'(t) / (1 - alpha(t)), checked by finite differences.
    t = torch.linspace(0.05, 0.95, 7, dtype=torch.float64)
    h = 1e-6
    deriv = (alpha(t + h, schedule) - alpha(t - h, schedule)) / (2 * h)
    torch.testing.assert_close(elbo_weight(t, schedule), -deriv / (1 - alpha(t, schedule)))


def test_masking_probability() -> None:
    x0 = torch.zeros(200, 100, dtype=torch.long)
    keep = torch.tensor([0.25] * 100 + [0.9] * 100)
    x_t = mask_tokens(x0, keep, MASK_ID, torch.Generator().manual_seed(0))
    assert set(x_t.unique().tolist()) == {0, MASK_ID}
    kept = (x_t == 0).float().mean(1)
    assert abs(kept[:100].mean() - 0.25) < 0.02 and abs(kept[100:].mean() - 0.9) < 0.02


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
@pytest.mark.parametrize("n_steps", [1, 3, 20])
def test_sampler_exact_nfe_and_no_mask_left(schedule: str, n_steps: int) -> None:
    counter = CountingNetwork(_Uniform())
    x = torch.full((5, L), MASK_ID)
    out = sample(counter, x, n_steps, schedule, VOCAB_SIZE, torch.Generator().manual_seed(0))
    assert counter.calls == n_steps
    assert out.shape == (5, L) and out.dtype == torch.long
    assert int(out.max()) < VOCAB_SIZE and int(out.min()) >= 0


def test_sampler_reveals_gradually_and_is_deterministic() -> None:
    seen: list[float] = []

    class Watch(_Uniform):
        def forward(self, x, t):
            seen.append((x == MASK_ID).float().mean().item())
            return super().forward(x, t)

    x = torch.full((64, L), MASK_ID)
    a = sample(Watch(), x, 8, "linear", VOCAB_SIZE, torch.Generator().manual_seed(4))
    # The network first sees all mask, then (linear schedule) about 1 - k/8 of it.
    assert seen[0] == 1.0 and all(s1 >= s2 for s1, s2 in zip(seen, seen[1:], strict=False))
    assert abs(seen[4] - 0.5) < 0.1
    b = sample(_Uniform(), x, 8, "linear", VOCAB_SIZE, torch.Generator().manual_seed(4))
    c = sample(_Uniform(), x, 8, "linear", VOCAB_SIZE, torch.Generator().manual_seed(5))
    assert torch.equal(a, b) and not torch.equal(a, c)


@pytest.mark.parametrize("n_steps", [1, 7])
def test_oracle_network_reproduces_its_target(n_steps: int) -> None:
    target = torch.randint(VOCAB_SIZE, (6, L), generator=torch.Generator().manual_seed(1))
    x = torch.full_like(target, MASK_ID)
    out = sample(_Oracle(target), x, n_steps, "cosine", VOCAB_SIZE, torch.Generator())
    assert torch.equal(out, target)


def test_loss_is_log_vocab_for_uniform_guesses_and_zero_for_an_oracle() -> None:
    data = _repetitive(8, seed=3)
    g = torch.Generator().manual_seed(0)
    # Uniform guessing costs log(27) per masked token; the ELBO weight -alpha'/(1 - alpha)
    # times the masked fraction 1 - alpha makes the expected loss log(27) (batch 1024).
    uniform = masked_diffusion_loss(_Uniform(), data, 1024, "linear", VOCAB_SIZE)(g)
    assert abs(uniform.item() - math.log(VOCAB_SIZE)) < 0.3
    one = data[:1].expand(8, L)  # one window: an oracle knows every x_0

    class Exact(nn.Module):
        def forward(self, x, t):
            return torch.full((*x.shape, VOCAB_SIZE), -30.0).scatter(-1, one[:1, :, None]
                                                                   .expand(len(x), L, 1), 30.0)

    exact = masked_diffusion_loss(Exact(), one, 64, "cosine", VOCAB_SIZE)(g)
    assert 0 <= exact.item() < 1e-6


class _TinyDenoiser(nn.Module):
    """A one-layer bidirectional transformer with the text network's interface."""

    def __init__(self, d: int = 32) -> None:
        super().__init__()
        self.tok = nn.Embedding(VOCAB_SIZE + 1, d)
        self.pos = nn.Parameter(torch.randn(L, d) * 0.1)
        self.time = nn.Linear(1, d)
        self.layer = nn.TransformerEncoderLayer(d, 2, 2 * d, dropout=0.0, batch_first=True)
        self.head = nn.Linear(d, VOCAB_SIZE)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        h = self.tok(x) + self.pos + self.time(t[:, None].float())[:, None]
        return self.head(self.layer(h))


@dataclass
class _RepetitiveText(Task):
    """Test task: windows of 'abc abc ...', 27-symbol vocabulary."""

    modality = "text"
    vocab_size = VOCAB_SIZE
    seq_len = L
    net_size = {"d_model": 32, "n_layer": 1, "n_head": 2}

    def load(self) -> TaskData:
        return TaskData(train=_repetitive(256, seed=0), test=_repetitive(64, seed=1))

    def make_network(self) -> nn.Module:
        return _TinyDenoiser()


tasks.add("md-test-text", _RepetitiveText)


@pytest.fixture(scope="module")
def md_plan(tmp_path_factory: pytest.TempPathFactory):
    ctx = CellContext("md-test-text", {}, seed=0, device="cpu",
                      cache=Cache(tmp_path_factory.mktemp("md-cache")), progress=False)
    ctx.train_config = type(ctx.train_config)(steps=1000, batch_size=32, lr=3e-3)
    # Many steps (64 for 16 tokens): few tokens are revealed together, so they agree.
    return ctx, MaskedDiffusion().prepare(ctx, n_steps=64)


def test_masked_diffusion_method_end_to_end(md_plan) -> None:
    ctx, plan = md_plan
    assert methods.get("masked-diffusion") is MaskedDiffusion
    assert MaskedDiffusion.role == "baseline" and MaskedDiffusion().label() == "schedule=linear"
    g = ctx.generator("sample")
    start = plan.draw_start(40, g)
    assert start.shape == (40, L) and bool((start == MASK_ID).all())
    counter = CountingNetwork(plan.network)
    out = plan.integrate(counter, start, g)
    assert counter.calls == plan.expected_nfe == plan.n_steps == plan.k_steps == 64
    assert int(out.max()) < VOCAB_SIZE
    # The trained model follows the corpus; an untrained one of the same shape does not.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        fresh = _TinyDenoiser().eval()
    noise = sample(fresh, start, 64, "linear", VOCAB_SIZE, torch.Generator().manual_seed(0))
    assert _pattern_score(out) > 0.75 > 0.3 > _pattern_score(noise), decode(out[0])
    g1, g2 = torch.Generator().manual_seed(2), torch.Generator().manual_seed(2)
    assert torch.equal(plan.integrate(plan.network, start, g1),
                       plan.integrate(plan.network, start, g2))


def test_masked_diffusion_options_and_task_check() -> None:
    for bad in ({"schedule": "sqrt"}, {"temperature": 0}, {"temperature": math.inf}):
        with pytest.raises(ConfigError, match="'masked-diffusion'"):
            instantiate(methods, "masked-diffusion", bad)
    MaskedDiffusion().check_task(_RepetitiveText())
    with pytest.raises(ValueError, match="vocab_size"):
        MaskedDiffusion().check_task(tasks.get("two-moons")())
    assert MaskedDiffusion(schedule="cosine", temperature=0.8).label() == \
        "schedule=cosine,temperature=0.8"


def test_masked_diffusion_training_reduces_the_loss() -> None:
    data = _repetitive(128, seed=5)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        net = _TinyDenoiser()
    loss = masked_diffusion_loss(net, data, 32, "cosine", VOCAB_SIZE)
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    g = torch.Generator().manual_seed(0)
    values = []
    for _ in range(300):
        value = loss(g)
        opt.zero_grad()
        value.backward()
        opt.step()
        values.append(value.item())
    assert sum(values[-20:]) / 20 < 0.5 * sum(values[:10]) / 10, values[-20:]


def test_runner_counts_nfe_and_sees_deterministic_text(tmp_path) -> None:
    from harness.records.cell import Cell
    from harness.run.jobs import Worker

    cell = Cell(task="md-test-text", task_options={}, method="masked-diffusion",
                method_options={"schedule": "cosine"}, n_steps=5, seed=0, device="cpu",
                n_samples=12, n_eval=12, repeats=2, warmup=1,
                training={"steps": 20, "batch_size": 16})
    record, samples = Worker().run(cell, Cache(tmp_path), progress=False)
    assert record.sampling.nfe_measured == record.plan.nfe_expected == 5
    assert record.sampling.nfe_ok and record.sampling.deterministic
    assert record.identity.role == "baseline" and record.identity.title == "Masked diffusion"
    assert samples.shape == (12, L) and int(samples.max()) < VOCAB_SIZE
