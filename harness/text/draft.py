"""The text draft: a small character-level LSTM (harness.nn.lstm; the paper's draft is a
4.2M-parameter LSTM, this one is CPU-sized).

It is trained on the task's windows (n, L) of ids 0..26 by next-character prediction with
teacher forcing: each window is read from a start symbol (id VOCAB_SIZE), so the model learns
p(x_1), p(x_2 | x_1), ... exactly as it is sampled. Sampling is autoregressive and batched:
one LSTM step for the whole batch per position, L steps in all.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from harness.checks import check_positive_ints
from harness.nn.lstm import CharLSTM, sequence_nll
from harness.nn.training import TrainConfig, optimise
from harness.plugins import Draft
from harness.text.alphabet import START_ID, VOCAB_SIZE


@dataclass
class LSTMDraft(Draft):
    """Character LSTM trained by next-character cross-entropy, sampled from a start symbol.

    Options: ``hidden`` (LSTM width), ``layers``, ``embed`` (character embedding width),
    training ``steps``, ``batch_size`` (windows per step) and ``lr`` (Adam with cosine decay,
    as harness.nn.training.optimise), and the sampling ``temperature``. The window length L is the
    data's; every training window is read whole (backpropagation through all L steps).
    The defaults (180K parameters) train in about 25 s of one CPU core on 5000 windows of 64
    characters; hidden=32, steps=100 (10K parameters, about 1 s) makes a poor draft.
    """

    hidden: int = 192
    layers: int = 1
    embed: int = 32
    steps: int = 1500
    batch_size: int = 32
    lr: float = 3e-3
    temperature: float = 1.0
    version = "1"

    def __post_init__(self) -> None:
        check_positive_ints(self, "hidden", "layers", "embed", "steps", "batch_size")
        for name in ("lr", "temperature"):
            value = getattr(self, name)
            if (not isinstance(value, int | float) or isinstance(value, bool)
                    or not math.isfinite(value) or value <= 0):
                raise ValueError(f"{name}={value!r} must be a positive number")
        self._net: CharLSTM | None = None
        self._seq_len = 0
        self._device = torch.device("cpu")

    def _make(self, seed: int | None) -> CharLSTM:
        """Build the network; a seeded init leaves the global RNG stream alone."""
        with torch.random.fork_rng(devices=[]):
            if seed is not None:
                torch.manual_seed(seed)
            return CharLSTM(VOCAB_SIZE, self.embed, self.hidden, self.layers)

    def fit(self, train: torch.Tensor, generator: torch.Generator) -> None:
        if train.ndim != 2 or train.dtype != torch.long:
            raise ValueError(
                f"the lstm draft needs character ids as a LongTensor (n, L), got "
                f"{train.dtype} of shape {tuple(train.shape)}"
            )
        if len(train) == 0 or train.shape[1] == 0:
            raise ValueError("the lstm draft needs at least one non-empty training window")
        if int(train.min()) < 0 or int(train.max()) >= VOCAB_SIZE:
            raise ValueError(f"character ids must lie in 0..{VOCAB_SIZE - 1}")
        data = train.detach().cpu()
        net = self._make(int(torch.randint(2**31 - 1, (1,), generator=generator)))
        config = TrainConfig(steps=self.steps, batch_size=self.batch_size, lr=self.lr)

        def loss(g: torch.Generator) -> torch.Tensor:
            batch = data[torch.randint(len(data), (self.batch_size,), generator=g)]
            return sequence_nll(net, batch)

        optimise(net, loss, config, generator, desc="lstm draft", progress=False)
        self._net, self._seq_len = net.eval().to(self._device), int(train.shape[1])

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator) -> torch.Tensor:
        if self._net is None:
            raise RuntimeError("call fit() or load_state_dict() before sample()")
        self._net.eval()
        ids = torch.full((n, 1), START_ID, dtype=torch.long, device=self._device)
        out = torch.empty((n, self._seq_len), dtype=torch.long, device=self._device)
        if n == 0:
            return out
        state = None
        for pos in range(self._seq_len):  # one LSTM step for the whole batch
            logits, state = self._net(ids, state)
            probs = torch.softmax(logits[:, 0].float() / self.temperature, dim=-1)
            ids = torch.multinomial(probs, 1, generator=generator)
            out[:, pos] = ids[:, 0]
        return out

    def nll(self, windows: torch.Tensor) -> float:
        """Mean next-character NLL (nats) of windows (n, L) under the fitted model."""
        if self._net is None:
            raise RuntimeError("call fit() or load_state_dict() before nll()")
        with torch.no_grad():
            return float(sequence_nll(self._net, windows.to(self._device)))

    def n_parameters(self) -> int:
        """Number of trainable parameters of the fitted network."""
        if self._net is None:
            raise RuntimeError("call fit() or load_state_dict() before n_parameters()")
        return sum(p.numel() for p in self._net.parameters())

    def state_dict(self) -> dict[str, Any]:
        if self._net is None:
            raise RuntimeError("call fit() before state_dict()")
        weights = {k: v.detach().cpu().clone() for k, v in self._net.state_dict().items()}
        return {"hidden": self.hidden, "layers": self.layers, "embed": self.embed,
                "seq_len": self._seq_len, "vocab_size": VOCAB_SIZE, "weights": weights}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for name in ("hidden", "layers", "embed"):
            if state[name] != getattr(self, name):
                raise ValueError(
                    f"saved lstm state has {name}={state[name]}, this draft {getattr(self, name)}"
                )
        if state["vocab_size"] != VOCAB_SIZE:
            raise ValueError(f"saved lstm state has vocab_size={state['vocab_size']}, "
                             f"the alphabet has {VOCAB_SIZE}")
        net = self._make(seed=None)
        net.load_state_dict(state["weights"])
        self._net, self._seq_len = net.eval().to(self._device), int(state["seq_len"])

    def to(self, device: torch.device) -> LSTMDraft:
        self._device = torch.device(device)
        if self._net is not None:
            self._net = self._net.to(self._device)
        return self
