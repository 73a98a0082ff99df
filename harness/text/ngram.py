"""A smoothed character n-gram model: the fallback text judge's (char-nll) default model.

Counted, not trained, on the held-out text, so it shares neither the drafts' architecture (a
character LSTM) nor their training data, nor any training noise. Interpolated absolute
discounting (discount ``d``) down to an add-one unigram:

    P(c | h) = max(C(h c) - d, 0) / C(h) + d N(h) / C(h) * P(c | h'),

with h' the history without its oldest character and N(h) the number of distinct characters
seen after h; a history never seen falls back to h'. It has the interface the char_nll evaluate
module scores with: ``model(ids) -> logits (B, T, V)`` where ``logits[:, t]`` predicts
character t from the input ids ``[start, c_0, ..., c_{t-1}]``.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import torch
from torch import nn


def _decode(code: int, k: int, base: int) -> tuple[int, ...]:
    """The k ids packed into ``code`` (oldest first)."""
    ids = []
    for _ in range(k):
        code, last = divmod(code, base)
        ids.append(last)
    return tuple(reversed(ids))


class CharNGram(nn.Module):
    """Order-``order`` character model over ``vocab`` characters plus a start symbol."""

    def __init__(self, windows: torch.Tensor, vocab: int, start_id: int, order: int = 5,
                 discount: float = 0.75) -> None:
        super().__init__()
        if order < 1 or not 0 < discount < 1:
            raise ValueError(f"order={order} must be >= 1 and discount={discount} in (0, 1)")
        self.vocab, self.start_id, self.order, self.discount = vocab, start_id, order, discount
        self.counts: dict[tuple[int, ...], np.ndarray] = {}
        data = windows.long().cpu().numpy()
        n, length = data.shape
        inputs = np.concatenate([np.full((n, 1), start_id), data[:, :-1]], axis=1)
        base = max(vocab, start_id) + 1
        for k in range(order):  # histories of k characters, counted all at once
            t = np.arange(max(k - 1, 0), length)  # positions with k inputs up to the target
            code = np.zeros((n, len(t)), dtype=np.int64)
            for j in range(k):  # the k inputs ending at position t, oldest first
                code = code * base + inputs[:, t - (k - 1) + j]
            keys, counts = np.unique(np.stack([code.ravel(), data[:, t].ravel()]), axis=1,
                                     return_counts=True)
            table: dict[int, np.ndarray] = defaultdict(lambda: np.zeros(vocab))
            for (h, c), m in zip(keys.T.tolist(), counts.tolist(), strict=True):
                table[h][c] += m
            for h, row in table.items():
                self.counts[_decode(h, k, base)] = row
        self._memo: dict[tuple[int, ...], np.ndarray] = {}

    def probabilities(self, history: tuple[int, ...]) -> np.ndarray:
        """P(. | history), the history's last order-1 ids at most."""
        history = history[max(0, len(history) - self.order + 1):]
        if history in self._memo:
            return self._memo[history]
        if not history:
            unigram = self.counts.get((), np.zeros(self.vocab))
            p = (unigram + 1.0) / (unigram.sum() + self.vocab)
        else:
            lower = self.probabilities(history[1:])
            seen = self.counts.get(history)
            if seen is None:
                p = lower
            else:
                total = seen.sum()
                p = (np.maximum(seen - self.discount, 0.0)
                     + self.discount * np.count_nonzero(seen) * lower) / total
        self._memo[history] = p
        return p

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        out = np.empty((*ids.shape, self.vocab), dtype=np.float64)
        for b, row in enumerate(ids.tolist()):
            for t in range(len(row)):
                out[b, t] = self.probabilities(tuple(row[: t + 1]))
        return torch.from_numpy(np.log(out)).float()
