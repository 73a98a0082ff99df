"""Word validity: the share of the predictions' words that occur in a given vocabulary.

A local Hugging Face ``evaluate`` metric (loaded offline from this folder). Words are the
whitespace-separated tokens of each prediction. Character-level samples are usually windows
cut out of running text, so their first and last words may be fragments of real words; with
``whole_words_only`` (the default) a word counts only when a space (or the text's edge with a
space beside it) bounds it on both sides: the first word is skipped unless the prediction
starts with a space, the last unless it ends with one. Pooled over all counted words:

    validity = (counted words found in the vocabulary) / (counted words)

A set with no counted word scores 0.0. Higher is better. Keep one import per line:
evaluate's import scanner reads lines naively.
"""

import datasets
import evaluate

_DESCRIPTION = "Share of the predictions' (whole) words that are in a vocabulary."

_KWARGS_DESCRIPTION = """
Args:
    predictions (list of str): the texts.
    vocabulary (set of str): the known words.
    whole_words_only (bool, optional): skip a first or last word that the text's edge may
        have cut (no space before or after it), default True.
Returns:
    "word_validity" (float), "n_words" (int): counted words, "n_valid" (int): found ones.
"""


def counted_words(text, whole_words_only):
    """The words of ``text`` that count: all of them, or only those bounded on both sides."""
    words = text.split()
    if whole_words_only and words:
        if not text[:1].isspace():
            words = words[1:]
        if words and not text[-1:].isspace():
            words = words[:-1]
    return words


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class WordValidity(evaluate.Metric):
    """Fraction of words found in a vocabulary."""

    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({"predictions": datasets.Value("string")}),
        )

    def _compute(self, predictions, vocabulary=None, whole_words_only=True):
        if vocabulary is None:
            raise ValueError("word_validity needs vocabulary=<set of known words>")
        vocabulary = vocabulary if isinstance(vocabulary, (set, frozenset)) else set(vocabulary)
        n_words = n_valid = 0
        for text in predictions:
            words = counted_words(text, bool(whole_words_only))
            n_words += len(words)
            n_valid += sum(w in vocabulary for w in words)
        return {"word_validity": n_valid / n_words if n_words else 0.0,
                "n_words": n_words, "n_valid": n_valid}
