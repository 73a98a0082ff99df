"""The text-word-fix refiner: misspelt whole words snapped in place to real words."""

from __future__ import annotations

import pytest
import torch

from harness.plugins import instantiate
from harness.registry import refiners
from harness.text.alphabet import decode, encode
from harness.text.wordfix import WordFix

CORPUS = ("the cat sat on the mat and the dog ate the bone while the cat slept on "
          "the warm mat by the door and the dog sat by the bone ")


def windows(text: str, length: int = 32, stride: int = 4) -> torch.Tensor:
    ids = encode(text)
    return torch.tensor([ids[i : i + length] for i in range(0, len(ids) - length + 1, stride)])


def fitted(**options: object) -> WordFix:
    refiner = WordFix(**options)
    refiner.fit(windows(CORPUS))
    return refiner


def test_misspelt_words_are_snapped_in_place_and_the_rest_is_kept() -> None:
    draft = "ca the dxg ate thw bone zzzzz on xyz"  # edges "ca" and "xyz" may be cut words
    out = fitted().refine(torch.tensor([encode(draft)]))
    assert decode(out[0]) == "ca the dog ate the bone zzzzz on xyz"
    assert out.shape == (1, len(draft))  # same length: the pair stays aligned


def test_stats_count_what_was_seen_and_changed() -> None:
    refiner = fitted()
    draft = torch.tensor([encode("ca the dxg ate thw bone zzzzz on xyz")])
    refiner.refine(draft)
    stats = refiner.stats()
    assert (stats["items"], stats["words"]) == (1, 7)
    assert (stats["unknown_words"], stats["fixed_words"]) == (3, 2)  # zzzzz: too far from all
    assert stats["changed_chars"] == pytest.approx(2 / 36, abs=1e-4)


def test_max_edits_bounds_how_much_of_a_word_may_change() -> None:
    draft = torch.tensor([encode("x the dqx ate y")])  # "dqx" is two letters from "dog"
    assert decode(fitted(max_edits=0.34).refine(draft)[0]) == "x the dqx ate y"
    assert decode(fitted(max_edits=0.67).refine(draft)[0]) == "x the dog ate y"


def test_ties_go_to_the_more_frequent_word() -> None:
    refiner = WordFix()
    refiner.fit(windows("x bap y " + "x zap y " * 8))
    # "cap" is one letter from both; "zap" is the more frequent though "bap" sorts first.
    out = refiner.refine(torch.tensor([encode("x cap y")]))
    assert decode(out[0]) == "x zap y"


def test_bad_options_and_misuse_say_what_to_do() -> None:
    with pytest.raises(ValueError, match="min_count=0"):
        WordFix(min_count=0)
    with pytest.raises(ValueError, match=r"max_edits=1.5 .*\[0, 1\]"):
        WordFix(max_edits=1.5)
    with pytest.raises(RuntimeError, match="fit"):
        WordFix().refine(torch.zeros(1, 8, dtype=torch.long))
    with pytest.raises(ValueError, match="min_count"):
        WordFix(min_count=100).fit(windows(CORPUS))
    with pytest.raises(ValueError, match="mask id"):
        fitted().refine(torch.full((1, 8), 27))


def test_found_through_the_registry_by_name() -> None:
    refiner = instantiate(refiners, "text-word-fix", {"max_edits": 0.5})
    assert isinstance(refiner, WordFix) and refiner.max_edits == 0.5
