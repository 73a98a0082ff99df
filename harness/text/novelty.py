"""Memorisation of text: how much of each generated window exists verbatim in the training text.

- ``verbatim-rate``: the share of samples found whole in the training text (lower is better).
- ``novelty-lcs``: the mean length, in characters, of each sample's longest substring that
  occurs in the training text (lower is better: more novel). Held-out text has a typical
  value of its own (common words and phrases recur), shown in the report beside the methods'.

A method whose training pairs come from a nearest-window refiner, or that copies its data,
is seen doing so here while judge NLL and word validity reward it. Substrings are searched in
the training windows joined by a newline (no sample contains one, so no match spans two
windows); ``max_samples`` (a subset seeded by the cell's seed) bounds the cost.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from harness.cache import tensor_sha256
from harness.checks import check_positive_ints
from harness.plugins import Metric
from harness.text.alphabet import decode_batch
from harness.text.metrics import fast_texts

_CORPORA: dict[str, str] = {}  # the training split's text, by the split's hash (one kept)


def longest_match(text: str, corpus: str) -> int:
    """Length of the longest substring of ``text`` found in ``corpus`` (a sliding window:
    each step either extends the best length or moves the start, so at most 2 len(text)
    substring searches)."""
    best = 0
    for start in range(len(text)):
        while start + best < len(text) and text[start : start + best + 1] in corpus:
            best += 1
    return best


@dataclass
class _Novelty(Metric):
    max_samples: int = 20
    higher_is_better = False

    def __post_init__(self) -> None:
        check_positive_ints(self, "max_samples")
        self._corpus: str | None = None

    def setup(self, train: torch.Tensor, labels: torch.Tensor | None = None) -> None:
        key = tensor_sha256(train)  # every cell of a task sets up on the same split
        if key not in _CORPORA:
            _CORPORA.clear()
            _CORPORA[key] = "\n".join(fast_texts(train.cpu()))
        self._corpus = _CORPORA[key]

    def _texts(self, samples: torch.Tensor, seed: int) -> list[str]:
        if self._corpus is None:
            raise ValueError(f"{type(self).__name__} needs the training set: call setup(train)")
        rows = samples.cpu()
        if len(rows) > self.max_samples:
            g = torch.Generator().manual_seed(int(seed))
            rows = rows[torch.randperm(len(rows), generator=g)[: self.max_samples]]
        return decode_batch(rows)


@dataclass
class VerbatimRate(_Novelty):
    """Share of samples found verbatim in the training text (lower is better)."""

    def compute(self, samples: torch.Tensor, reference: torch.Tensor, seed: int,
                stats: dict[str, torch.Tensor] | None = None) -> float:
        texts = self._texts(samples, seed)
        return sum(t in self._corpus for t in texts) / max(1, len(texts))


@dataclass
class NoveltyLCS(_Novelty):
    """Mean longest substring shared with the training text, in characters (lower: novel)."""

    def compute(self, samples: torch.Tensor, reference: torch.Tensor, seed: int,
                stats: dict[str, torch.Tensor] | None = None) -> float:
        texts = self._texts(samples, seed)
        return sum(longest_match(t, self._corpus) for t in texts) / max(1, len(texts))
