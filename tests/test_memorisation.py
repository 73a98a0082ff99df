"""Memorisation metrics (issue 12, item 4): a method that copies its training data is seen
doing so, next to one that does not; held-out data sit at the metric's floor."""

from __future__ import annotations

import random

import pytest
import torch

from harness.points.metrics import CopyRate
from harness.text.alphabet import VOCAB_SIZE, encode
from harness.text.novelty import NoveltyLCS, VerbatimRate, longest_match


def test_copy_rate_sees_copies_and_passes_fresh_samples() -> None:
    g = torch.Generator().manual_seed(0)
    train, held_out, fresh = (torch.randn(600, 2, generator=g) for _ in range(3))
    metric = CopyRate()
    metric.setup(train)
    stats = metric.reference_stats(held_out, 0)
    copies = train[:300] + 1e-4 * torch.randn(300, 2, generator=g)
    assert metric.compute(copies, held_out, 0, stats) > 0.95
    assert 0.0 <= metric.compute(fresh, held_out, 0, stats) < 0.15  # about the quantile, 0.05
    images = CopyRate()
    images.setup(train.reshape(600, 1, 2, 1))  # images are flattened the same way
    assert images.compute(copies.reshape(300, 1, 2, 1), held_out.reshape(600, 1, 2, 1), 0) > 0.95
    with pytest.raises(ValueError, match="quantile"):
        CopyRate(quantile=1.5)


def _ids(texts: list[str]) -> torch.Tensor:
    return torch.tensor([encode(t) for t in texts])


def test_text_novelty_sees_verbatim_copies() -> None:
    rng = random.Random(0)
    words = "the cat sat on a mat and then the dog ran over to the old tree".split()
    corpus = [" ".join(rng.choice(words) for _ in range(20))[:40] for _ in range(200)]
    train = _ids(corpus)
    letters = "abcdefghijklmnopqrstuvwxyz "
    noise = _ids(["".join(rng.choice(letters) for _ in range(40)) for _ in range(30)])
    verbatim, lcs = VerbatimRate(), NoveltyLCS()
    for metric in (verbatim, lcs):
        metric.setup(train)
    assert verbatim.compute(train[:30], train, 0) == 1.0
    assert verbatim.compute(noise, train, 0) == 0.0
    assert lcs.compute(train[:30], train, 0) == 40.0
    assert lcs.compute(noise, train, 0) < 8
    assert train.max() < VOCAB_SIZE


@pytest.mark.parametrize("seed", range(20))
def test_longest_match_is_the_longest_common_substring(seed: int) -> None:
    rng = random.Random(seed)
    text = "".join(rng.choice("ab c") for _ in range(rng.randint(0, 12)))
    corpus = "".join(rng.choice("ab c") for _ in range(30))
    brute = max((j - i for i in range(len(text)) for j in range(i, len(text) + 1)
                 if text[i:j] in corpus), default=0)
    assert longest_match(text, corpus) == brute
