"""Distinct-n: the share of unique word n-grams among all word n-grams of a set of texts.

A local Hugging Face ``evaluate`` metric (loaded offline from this folder). Words are the
whitespace-separated tokens of each prediction (character-level samples are split into words
at spaces; a word cut at a window's edge counts as it stands). N-grams never cross from one
prediction into the next. The ratio is pooled over the whole set (Li et al., 2016):

    distinct-n = |set of n-grams over all predictions| / (number of n-grams over all predictions)

A set without any n-gram of order n (all predictions shorter than n words) scores 0.0.
Higher means more diverse; uniformly random words also score high, so read it beside a
fidelity metric. Keep one import per line: evaluate's import scanner reads lines naively.
"""

import datasets
import evaluate

_CITATION = """\
@inproceedings{li2016diversity,
  title={A Diversity-Promoting Objective Function for Neural Conversation Models},
  author={Li, Jiwei and Galley, Michel and Brockett, Chris and Gao, Jianfeng and Dolan, Bill},
  booktitle={NAACL-HLT},
  year={2016}
}
"""

_DESCRIPTION = "Distinct-n: unique word n-grams / all word n-grams, pooled over the predictions."

_KWARGS_DESCRIPTION = """
Args:
    predictions (list of str): the texts.
    orders (list of int, optional): the n-gram orders n, default [1, 2].
Returns:
    "distinct_<n>" (float) for each order, plus "ngrams_<n>" (int) and "unique_<n>" (int),
    the counts the ratio is made of.
Examples:
    >>> m = evaluate.load("harness/text/evaluate_metrics/distinct_n")
    >>> m.compute(predictions=["a b a b"], orders=[2])["distinct_2"]  # (a b), (b a), (a b)
    0.6666666666666666
"""


def ngrams(words, n):
    """The n-grams (tuples) of a word list, in order."""
    return [tuple(words[i : i + n]) for i in range(len(words) - n + 1)]


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class DistinctN(evaluate.Metric):
    """Distinct-n over word n-grams."""

    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({"predictions": datasets.Value("string")}),
        )

    def _compute(self, predictions, orders=(1, 2)):
        orders = [int(n) for n in orders]
        if not orders or any(n < 1 for n in orders):
            raise ValueError(f"orders must be a non-empty list of positive integers, got {orders}")
        split = [text.split() for text in predictions]
        result = {}
        for n in orders:
            total, unique = 0, set()
            for words in split:
                grams = ngrams(words, n)
                total += len(grams)
                unique.update(grams)
            result[f"distinct_{n}"] = len(unique) / total if total else 0.0
            result[f"ngrams_{n}"] = total
            result[f"unique_{n}"] = len(unique)
        return result
