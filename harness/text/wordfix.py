"""A local, light-touch text refiner: each misspelt word of a draft snapped to a real word.

The paper refines text drafts with an LLM asked to rewrite them into natural text: the target
keeps most of the draft and repairs what is broken. The nearest training window (the
"text-nearest-neighbour" refiner) does the opposite: it swaps the whole draft for a copy of
training text, so a warm-start model trained on such pairs learns to throw its draft away and
its samples are copies. "text-word-fix" is the cheap local stand-in for the LLM: a whole word of
the draft (bounded by spaces on both sides) that is not in the training text's vocabulary is
replaced by the vocabulary word of the same length at the least Hamming distance (ties: the
more frequent word), when that distance is at most ``max_edits`` (a fraction of the word's
length); every other character stays. Same-length substitutions keep the draft and its target
aligned character by character, so WS-DFM learns corrections, not shifts. A window's cut first
and last words are left alone (they may be parts of real words).
"""

from __future__ import annotations

import math
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

import torch

from harness.plugins import Refiner
from harness.text.alphabet import decode_batch, encode, interior_words
from harness.text.refiners import check_windows


@dataclass
class WordFix(Refiner):
    """Snap each out-of-vocabulary whole word of a draft to the nearest same-length real word.

    Options: ``min_count`` (a training word must occur this often to be a target; raise it on a
    corpus with typos of its own), ``max_edits`` (the largest share of a word's letters
    that may change, 0..1; at least one letter may always change). Deterministic and fast:
    the distances of one word to every vocabulary word of its length are one tensor
    comparison, and each distinct misspelling is looked up once per ``refine``.
    """

    min_count: int = 1
    max_edits: float = 0.34
    version = "1"

    def __post_init__(self) -> None:
        if self.min_count < 1:
            raise ValueError(f"min_count={self.min_count} must be at least 1")
        if not 0 <= self.max_edits <= 1:
            raise ValueError(f"max_edits={self.max_edits} must be a share of a word's letters, "
                             "in [0, 1] (0.34: about one letter in three)")
        self._vocab: frozenset[str] | None = None
        self._by_length: dict[int, tuple[list[str], torch.Tensor]] = {}
        self._stats: dict[str, Any] = {}

    def fit(self, train: torch.Tensor) -> None:
        check_windows(train, "training windows")
        counts: Counter[str] = Counter()
        for text in decode_batch(train.cpu()):
            counts.update(word for _, word in interior_words(text))
        words = [w for w, c in counts.items() if c >= self.min_count]
        if not words:
            raise ValueError(f"no training word occurs {self.min_count} times (min_count): the "
                             "training text is too small for text-word-fix; lower min_count")
        # Most frequent first, so argmin's first minimum is the most frequent nearest word.
        words.sort(key=lambda w: (-counts[w], w))
        self._vocab = frozenset(words)
        grouped: dict[int, list[str]] = {}
        for word in words:
            grouped.setdefault(len(word), []).append(word)
        self._by_length = {n: (ws, torch.tensor([encode(w) for w in ws]))
                           for n, ws in grouped.items()}

    def _nearest(self, word: str) -> str | None:
        """The closest vocabulary word of the same length within ``max_edits``, or None."""
        if len(word) not in self._by_length:
            return None
        words, ids = self._by_length[len(word)]
        dist = (ids != torch.tensor(encode(word))).sum(dim=1)
        best = int(dist.argmin())
        allowed = max(1, math.floor(self.max_edits * len(word)))
        return words[best] if int(dist[best]) <= allowed else None

    @torch.no_grad()
    def refine(self, drafts: torch.Tensor) -> torch.Tensor:
        """The drafts with their misspelt whole words replaced in place, (m, L)."""
        if self._vocab is None:
            raise RuntimeError("call fit(train) before refine()")
        check_windows(drafts, "drafts")
        start = time.perf_counter()
        out = drafts.detach().cpu().clone().long()
        memo: dict[str, str | None] = {}
        words = unknown = fixed = 0
        for row, text in enumerate(decode_batch(out)):
            for pos, word in interior_words(text):
                words += 1
                if word in self._vocab:
                    continue
                unknown += 1
                if word not in memo:
                    memo[word] = self._nearest(word)
                if memo[word] is not None:
                    fixed += 1
                    out[row, pos : pos + len(word)] = torch.tensor(encode(memo[word]))
        changed = float((out != drafts.cpu().long()).float().mean()) if out.numel() else 0.0
        self._stats = {"items": len(out), "words": words, "unknown_words": unknown,
                       "fixed_words": fixed, "changed_chars": round(changed, 4),
                       "seconds": round(time.perf_counter() - start, 3)}
        return out.to(device=drafts.device, dtype=drafts.dtype)

    def stats(self) -> dict[str, Any]:
        """Counts of the last ``refine``: items, words (whole words seen), unknown_words (not
        in the vocabulary), fixed_words (replaced), changed_chars (share), seconds."""
        return dict(self._stats)
