"""The Text-8 alphabet: lowercase a-z and space, 27 symbols; and its normaliser.

Torch-free at import, so reports can decode stored samples without loading models.
Id 0 is the space, 1..26 are a..z. The mask token of discrete flow matching is id
VOCAB_SIZE (27): it is only ever a network input, never a sample.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Sequence
from typing import Any

ALPHABET = " abcdefghijklmnopqrstuvwxyz"
VOCAB_SIZE = len(ALPHABET)
MASK_ID = VOCAB_SIZE  # discrete flow models: the [MASK] token
START_ID = VOCAB_SIZE  # character LMs: the start symbol, an input only, never generated
_INDEX = {c: i for i, c in enumerate(ALPHABET)}
_DIGITS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
_DIGIT_WORDS = str.maketrans({str(d): f" {w} " for d, w in enumerate(_DIGITS)})
_NOT_ALPHABET = re.compile(r"[^a-z]+")


def normalise(text: str) -> str:
    """Normalise text the Text-8 way: lowercase a-z and single spaces.

    As in Text-8's filter, digits are spelled out ("1" -> " one ") and every other
    character becomes a space; runs of spaces collapse to one. Accented letters keep
    their base letter (NFKD), so "café" -> "cafe" rather than "caf ".
    """
    text = unicodedata.normalize("NFKD", text)
    text = "".join(c for c in text if not unicodedata.combining(c))
    text = text.lower().translate(_DIGIT_WORDS)
    return _NOT_ALPHABET.sub(" ", text).strip()


def encode(text: str) -> list[int]:
    """Ids of an already normalised string; raises ValueError naming a foreign character."""
    try:
        return [_INDEX[c] for c in text]
    except KeyError as exc:
        raise ValueError(
            f"character {exc.args[0]!r} is not in the Text-8 alphabet; normalise() the text first"
        ) from None


def decode(ids: Iterable[Any]) -> str:
    """One sequence of ids (list, numpy array or tensor) -> string; the mask shows as '_'."""
    return "".join(ALPHABET[int(i)] if int(i) < VOCAB_SIZE else "_" for i in ids)


def decode_batch(ids: Sequence[Any]) -> list[str]:
    """A batch (n, L) of ids -> n strings."""
    return [decode(row) for row in ids]


def interior_words(text: str) -> list[tuple[int, str]]:
    """(start, word) of each word bounded by spaces on both sides: a window's first and last
    words touch its edges and may be cut, so they are left out."""
    out, pos = [], 0
    parts = text.split(" ")
    for i, part in enumerate(parts):
        if 0 < i < len(parts) - 1 and part:
            out.append((pos, part))
        pos += len(part) + 1
    return out
