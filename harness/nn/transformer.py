"""A small time-conditioned bidirectional transformer over tokens: the text network.

Full DFM, WS-DFM and masked diffusion all use this one architecture (only what it is
trained on differs), so per-call cost is equal across methods. Input: token ids (B, L) in
0..vocab_size, where id vocab_size is [MASK]; time t (B,). Output: logits (B, L, vocab_size)
of p(x_1 | x_t, t); [MASK] is never predicted, so every sampled token is a real one.
"""

from __future__ import annotations

import torch
from torch import nn

from harness.nn.mlp import time_embedding


class TokenTransformer(nn.Module):
    """Pre-LayerNorm transformer encoder; the time embedding is added to every position."""

    def __init__(
        self, vocab_size: int, seq_len: int, d_model: int = 128, n_layer: int = 4,
        n_head: int = 4,
    ) -> None:
        super().__init__()
        self.vocab_size, self.seq_len, self.d_model = vocab_size, seq_len, d_model
        self.tok = nn.Embedding(vocab_size + 1, d_model)  # + [MASK]
        self.pos = nn.Parameter(torch.zeros(seq_len, d_model))
        self.time = nn.Sequential(nn.Linear(d_model, d_model), nn.SiLU(),
                                  nn.Linear(d_model, d_model))
        layer = nn.TransformerEncoderLayer(
            d_model, n_head, 4 * d_model, dropout=0.0, activation="gelu", batch_first=True,
            norm_first=True,
        )
        # enable_nested_tensor only matters with padding masks, which tokens never have.
        self.blocks = nn.TransformerEncoder(layer, n_layer, enable_nested_tensor=False)
        self.ln_f = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, vocab_size)
        nn.init.normal_(self.pos, std=0.02)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        h = self.tok(x) + self.pos[: x.shape[1]]
        h = h + self.time(time_embedding(t, self.d_model).to(h.dtype))[:, None, :]
        return self.head(self.ln_f(self.blocks(h)))
