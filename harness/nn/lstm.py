"""A character-level LSTM language model: the text draft's network.

It reads a window from a start symbol (id ``vocab_size``, an input only, never predicted), so
one network learns p(x_1), p(x_2 | x_1), ... with teacher forcing and is sampled the same way,
one step per position.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class CharLSTM(nn.Module):
    """Embedding (vocab_size + 1 symbols, the start included) -> LSTM -> vocab_size logits."""

    def __init__(self, vocab_size: int, embed: int, hidden: int, layers: int) -> None:
        super().__init__()
        self.vocab_size = vocab_size
        self.embed = nn.Embedding(vocab_size + 1, embed)
        self.lstm = nn.LSTM(embed, hidden, num_layers=layers, batch_first=True)
        self.head = nn.Linear(hidden, vocab_size)

    @property
    def start_id(self) -> int:
        return self.vocab_size

    def forward(
        self, ids: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor] | None = None
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """ids (B, T) -> (logits (B, T, vocab_size), the LSTM state after the last step)."""
        out, state = self.lstm(self.embed(ids), state)
        return self.head(out), state


def teacher_inputs(windows: torch.Tensor, start_id: int) -> torch.Tensor:
    """Teacher-forcing inputs for targets (B, L): the start symbol, then windows[:, :-1]."""
    start = torch.full_like(windows[:, :1], start_id)
    return torch.cat([start, windows[:, :-1]], dim=1)


def sequence_nll(net: CharLSTM, windows: torch.Tensor) -> torch.Tensor:
    """Mean next-character negative log-likelihood (nats per character) of windows (B, L)."""
    logits, _ = net(teacher_inputs(windows, net.start_id))
    return F.cross_entropy(logits.reshape(-1, net.vocab_size), windows.reshape(-1))
