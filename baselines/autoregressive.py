"""Autoregressive (AR) baseline: a small causal transformer over pixels or characters.

Images (C, H, W) in [-1, 1] are quantised to ``levels`` tokens and read in channel-last
raster order (rows, then columns, the C channels of a pixel consecutive), a sequence of
T = C * H * W tokens. Text (a task with ``vocab_size`` set) is modelled directly: the tokens
are the characters, T = L, and the model has the size of the task's own network
(``task.net_size``), so it is "a transformer of the same size" as the flow model.
The model (nanoGPT-style) predicts each token from the ones before it.
Sampling feeds one token at a time through a key-value cache, so it takes exactly T network
calls (NFE = T) and step t costs O(t), not O(t^2).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import nn

from harness.checks import check_positive_ints
from harness.nn.training import TrainConfig, count_parameters, optimise
from harness.plugins import Method, SamplingPlan, Task

if TYPE_CHECKING:
    from harness.context import CellContext

# Per layer: (keys, values), each (batch, n_head, seq_len, head_dim), filled up to the step.
KVCache = list[tuple[torch.Tensor, torch.Tensor]]


def quantise(x: torch.Tensor, levels: int) -> torch.Tensor:
    """Values in [-1, 1] -> integer tokens round((x + 1) / 2 * (levels - 1)) (clamped)."""
    return torch.round((x.clamp(-1, 1) + 1) / 2 * (levels - 1)).long()


def dequantise(tokens: torch.Tensor, levels: int) -> torch.Tensor:
    """Integer tokens -> values token / (levels - 1) * 2 - 1 in [-1, 1]."""
    return tokens.float() / (levels - 1) * 2 - 1


def to_sequence(tokens: torch.Tensor) -> torch.Tensor:
    """(N, C, H, W) -> (N, H * W * C): channel-last raster order."""
    return tokens.permute(0, 2, 3, 1).reshape(len(tokens), -1)


def from_sequence(seq: torch.Tensor, shape: tuple[int, int, int]) -> torch.Tensor:
    """(N, H * W * C) -> (N, C, H, W), the inverse of ``to_sequence``."""
    c, h, w = shape
    return seq.reshape(len(seq), h, w, c).permute(0, 3, 1, 2)


class CausalSelfAttention(nn.Module):
    """Multi-head self-attention where position t sees positions <= t."""

    def __init__(self, d_model: int, n_head: int) -> None:
        super().__init__()
        self.n_head = n_head
        self.qkv = nn.Linear(d_model, 3 * d_model)
        self.proj = nn.Linear(d_model, d_model)

    def _heads(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        b, t, d = x.shape
        q, k, v = self.qkv(x).split(d, dim=2)
        return tuple(z.view(b, t, self.n_head, d // self.n_head).transpose(1, 2) for z in (q, k, v))

    def forward(
        self, x: torch.Tensor, pos: int | None = None,
        cache: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """Full sequence (pos None): x (B, T, D). One step: x (B, 1, D) at position ``pos``,
        whose key and value are written into ``cache`` (attending to positions 0..pos)."""
        b, t, d = x.shape
        q, k, v = self._heads(x)
        if pos is None:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            keys, values = cache
            keys[:, :, pos : pos + 1] = k
            values[:, :, pos : pos + 1] = v
            y = F.scaled_dot_product_attention(q, keys[:, :, : pos + 1], values[:, :, : pos + 1])
        return self.proj(y.transpose(1, 2).reshape(b, t, d))


class Block(nn.Module):
    """Pre-LayerNorm transformer block: x + attn(ln(x)), then x + mlp(ln(x))."""

    def __init__(self, d_model: int, n_head: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(d_model)
        self.attn = CausalSelfAttention(d_model, n_head)
        self.ln2 = nn.LayerNorm(d_model)
        self.mlp = nn.Sequential(
            nn.Linear(d_model, 4 * d_model), nn.GELU(), nn.Linear(4 * d_model, d_model)
        )
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, pos: int | None = None, cache=None) -> torch.Tensor:
        x = x + self.drop(self.attn(self.ln1(x), pos, cache))
        return x + self.drop(self.mlp(self.ln2(x)))


class ARTransformer(nn.Module):
    """Causal transformer over ``levels`` pixel tokens plus a start token (index ``levels``).

    - ``forward(tokens)``: tokens (B, T) -> logits (B, T, levels), teacher forcing; input
      position t holds the start token (t = 0) or data token t - 1, and predicts token t.
    - ``forward(tokens, pos, cache)``: tokens (B,) at input position ``pos`` -> (logits
      (B, levels), cache); pass cache=None at pos = 0 and the returned cache afterwards.
    """

    def __init__(
        self, levels: int, seq_len: int, n_layer: int, n_head: int, d_model: int,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.levels, self.seq_len, self.n_head = levels, seq_len, n_head
        self.tok = nn.Embedding(levels + 1, d_model)
        self.pos = nn.Embedding(seq_len, d_model)
        self.blocks = nn.ModuleList(Block(d_model, n_head, dropout) for _ in range(n_layer))
        self.ln_f = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, levels)

    @property
    def start_token(self) -> int:
        return self.levels

    def empty_cache(self, batch: int, device: torch.device, dtype: torch.dtype) -> KVCache:
        d = self.pos.embedding_dim
        shape = (batch, self.n_head, self.seq_len, d // self.n_head)
        return [
            (torch.zeros(shape, device=device, dtype=dtype),
             torch.zeros(shape, device=device, dtype=dtype))
            for _ in self.blocks
        ]

    def forward(
        self, tokens: torch.Tensor, pos: int | None = None, cache: KVCache | None = None
    ) -> torch.Tensor | tuple[torch.Tensor, KVCache]:
        if pos is None:  # the whole sequence at once (training, likelihoods)
            positions = torch.arange(tokens.shape[1], device=tokens.device)
            x = self.tok(tokens) + self.pos(positions)
            for block in self.blocks:
                x = block(x)
            return self.head(self.ln_f(x))
        if not 0 <= pos < self.seq_len:
            raise ValueError(f"position {pos} is outside 0..{self.seq_len - 1}")
        x = self.tok(tokens)[:, None] + self.pos.weight[pos]
        if cache is None:
            cache = self.empty_cache(len(tokens), tokens.device, x.dtype)
        for block, layer_cache in zip(self.blocks, cache, strict=True):
            x = block(x, pos, layer_cache)
        return self.head(self.ln_f(x))[:, 0], cache


def teacher_forcing_inputs(seq: torch.Tensor, start_token: int) -> torch.Tensor:
    """The model's inputs for targets ``seq`` (B, T): the start token, then seq[:, :-1]."""
    start = torch.full_like(seq[:, :1], start_token)
    return torch.cat([start, seq[:, :-1]], dim=1)


def sequence_nll(net: ARTransformer, seq: torch.Tensor) -> torch.Tensor:
    """Mean next-token negative log-likelihood (nats per token) of token sequences (B, T)."""
    logits = net(teacher_forcing_inputs(seq, net.start_token))
    return F.cross_entropy(logits.reshape(-1, net.levels), seq.reshape(-1))


@torch.no_grad()
def sample_tokens(
    net, start: torch.Tensor, seq_len: int, temperature: float, generator: torch.Generator
) -> torch.Tensor:
    """Draw (B, seq_len) tokens, calling ``net(tokens, pos, cache)`` once per token."""
    tokens, cache, out = start, None, []
    for pos in range(seq_len):
        logits, cache = net(tokens, pos, cache)
        probs = torch.softmax(logits.float() / temperature, dim=-1)
        tokens = torch.multinomial(probs, 1, generator=generator)[:, 0]
        out.append(tokens)
    return torch.stack(out, dim=1)


# The image model's size when no option sets it; text models take the task's ``net_size``.
# Reports print this beside AR's NFE: its calls are not the other methods' full calls.
NFE_NOTE = ("one network call per token, each a one-token call with a KV cache, far cheaper "
            "than a full call of the other methods' networks; compare it by its time, not its "
            "NFE")
IMAGE_SIZE = {"n_layer": 2, "n_head": 4, "d_model": 64}
SIZE_KEYS = tuple(IMAGE_SIZE)


@dataclass
class Autoregressive(Method):
    """Autoregressive transformer, one network call per token (NFE = sequence length).

    Images: quantised pixels in raster order (``levels`` tokens, NFE = C*H*W). Text: the
    characters themselves (``levels`` is ignored, NFE = L). Options: the architecture
    (``n_layer``, ``n_head``, ``d_model``; unset, they are the task's ``net_size`` for text and
    2 / 4 / 64 for images; residual ``dropout``), its own training (``steps``,
    ``batch_size``, ``lr``; next-token cross-entropy with teacher forcing, not the task's
    flow-training config) and the sampling ``temperature``. The step budget does not apply:
    one run per seed.
    """

    levels: int = 16
    n_layer: int | None = None
    n_head: int | None = None
    d_model: int | None = None
    steps: int = 1500
    batch_size: int = 32
    lr: float = 3e-3
    dropout: float = 0.1
    temperature: float = 1.0
    title = "AR"
    uses_budget = False
    version = "1"

    def __post_init__(self) -> None:
        set_sizes = [k for k in SIZE_KEYS if getattr(self, k) is not None]  # None: the task's
        check_positive_ints(self, "levels", *set_sizes, "steps", "batch_size")
        if not 2 <= self.levels <= 256:
            raise ValueError(f"levels={self.levels} must be between 2 and 256")
        if self.d_model is not None and self.n_head is not None and self.d_model % self.n_head:
            raise ValueError(f"d_model={self.d_model} must be a multiple of n_head={self.n_head}")
        for name in ("lr", "temperature"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
                raise ValueError(f"{name}={value!r} must be a positive number")
        if not isinstance(self.dropout, (int, float)) or not 0 <= self.dropout < 1:
            raise ValueError(f"dropout={self.dropout!r} must be in [0, 1)")

    def size(self, task: Task) -> dict[str, int]:
        """{"n_layer", "n_head", "d_model"}: the options, else the task's (text) or defaults."""
        if task.discrete:
            base = getattr(task, "net_size", None) or {}
            missing = [k for k in SIZE_KEYS if getattr(self, k) is None and k not in base]
            if missing:
                raise ValueError(
                    f"method 'ar' takes its size from the text task's net_size, which lacks "
                    f"{', '.join(missing)}; set them as options of 'ar'"
                )
        else:
            base = IMAGE_SIZE
        size = {k: int(base[k]) if getattr(self, k) is None else getattr(self, k)
                for k in SIZE_KEYS}
        if size["d_model"] % size["n_head"]:
            raise ValueError(
                f"method 'ar': d_model={size['d_model']} must be a multiple of "
                f"n_head={size['n_head']}"
            )
        return size

    def check_task(self, task: Task) -> None:
        if task.modality != "images" and not task.discrete:
            raise ValueError(
                f"method 'ar' models images (quantised pixels) or text (a task with "
                f"vocab_size set); task modality is {task.modality!r}"
            )
        self.size(task)

    def _sequences(self, ctx: CellContext) -> tuple[torch.Tensor, int]:
        """The training split as token sequences (N, T), and the vocabulary size."""
        data = ctx.data.train
        if ctx.task.discrete:
            vocab = int(ctx.task.vocab_size)
            if data.ndim != 2 or data.dtype != torch.long:
                raise ValueError(f"method 'ar' needs text as token ids (N, L), got "
                                 f"{data.dtype} of shape {tuple(data.shape)}")
            if len(data) and not 0 <= int(data.min()) <= int(data.max()) < vocab:
                raise ValueError(f"method 'ar': text token ids must lie in 0..{vocab - 1}")
            return data, vocab
        shape = tuple(data.shape[1:])
        if len(shape) != 3:
            raise ValueError(f"method 'ar' needs (N, C, H, W) images, got data shape {shape}")
        return to_sequence(quantise(data, self.levels)), self.levels

    def network(self, ctx: CellContext) -> ARTransformer:
        """The transformer trained with teacher forcing on the task's training split (cached)."""
        seq, vocab = self._sequences(ctx)
        size = self.size(ctx.task)
        config = TrainConfig(steps=self.steps, batch_size=self.batch_size, lr=self.lr)

        def train(net: nn.Module) -> None:
            def loss(g: torch.Generator) -> torch.Tensor:
                idx = torch.randint(len(seq), (self.batch_size,), generator=g, device=seq.device)
                return sequence_nll(net, seq[idx])

            optimise(net, loss, config, ctx.generator("train:ar"),
                     desc=f"ar {ctx.task_name} seed {ctx.seed}", progress=ctx.progress)

        key = {"architecture": "nanogpt", "version": self.version, "levels": vocab, **size,
               "dropout": self.dropout, "steps": self.steps, "batch_size": self.batch_size,
               "lr": self.lr, "seq_len": seq.shape[1]}
        if ctx.task.discrete:
            key["tokens"] = "text"  # characters, not quantised pixels

        def make() -> ARTransformer:
            return ARTransformer(vocab, seq.shape[1], dropout=self.dropout, **size)

        return ctx.network("ar-transformer", key, train, make=make)

    def prepare(self, ctx: CellContext, n_steps: int) -> SamplingPlan:
        net = self.network(ctx)
        text = ctx.task.discrete
        shape = tuple(ctx.data.train.shape[1:])
        seq_len = net.seq_len
        device = ctx.device

        def draw_start(n: int, g: torch.Generator) -> torch.Tensor:
            return torch.full((n,), net.start_token, dtype=torch.long, device=device)

        def integrate(network, start: torch.Tensor, g: torch.Generator) -> torch.Tensor:
            tokens = sample_tokens(network, start, seq_len, self.temperature, g)
            if text:
                return tokens
            return dequantise(from_sequence(tokens, shape), self.levels)

        return SamplingPlan(
            network=net,
            draw_start=draw_start,
            integrate=integrate,
            expected_nfe=seq_len,
            n_steps=seq_len,
            k_steps=seq_len,
            evals_per_step=1,
            t0=0.0,
            solver="ancestral-ar",
            nfe_note=NFE_NOTE,
            info={"levels": net.levels, **self.size(ctx.task),
                  "parameters": count_parameters(net)},
            variant=self.label(text=text),
        )

    def label(self, text: bool = False) -> str:
        """'levels=16' (images; text has no levels: 'characters'), followed by any option that
        differs from its default."""
        changed = [f"{f.name}={getattr(self, f.name)}" for f in fields(self)
                   if f.name != "levels" and getattr(self, f.name) != f.default]
        return ",".join(["characters" if text else f"levels={self.levels}", *changed])
