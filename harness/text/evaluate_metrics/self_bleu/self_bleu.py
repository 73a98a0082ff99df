"""Self-BLEU: each prediction's BLEU against all the other predictions as its references.

A local Hugging Face ``evaluate`` metric (loaded offline from this folder), after Zhu et al.
(2018, Texygen). Tokens are whitespace-separated words. BLEU is computed here (no external
package): modified n-gram precisions for n = 1..max_order with counts clipped by the largest
count of the n-gram in any single reference, uniform weights, the brevity penalty against
the reference length closest to the hypothesis (ties: the shorter), and add-one smoothing of
the orders n >= 2 (Lin and Och, 2004; nltk's smoothing method 2), so that a hypothesis
without a longer match still scores above zero, while one sharing no word with any other
scores 0. Self-BLEU is the mean sentence BLEU over the hypotheses.

Cost: with n predictions every one is scored against n - 1 references. Clipping only needs,
for each n-gram, its two largest per-prediction counts (the largest count among the others
is the largest overall unless this prediction holds it), so the cost is linear in the total
number of n-grams. Still, when there are more than ``max_samples`` predictions a seeded
random subset of ``max_samples`` (``seed``) is scored against itself, as Texygen does.

Higher means the samples repeat each other (less diverse); identical predictions score 1.0.
Keep one import per line: evaluate's import scanner reads lines naively.
"""

import math
import random
from collections import Counter

import datasets
import evaluate

_CITATION = """\
@inproceedings{zhu2018texygen,
  title={Texygen: A Benchmarking Platform for Text Generation Models},
  author={Zhu, Yaoming and Lu, Sidi and Zheng, Lei and Guo, Jiaxian and Zhang, Weinan
          and Wang, Jun and Yu, Yong},
  booktitle={SIGIR},
  year={2018}
}
"""

_DESCRIPTION = "Self-BLEU: mean BLEU of each prediction against all other predictions."

_KWARGS_DESCRIPTION = """
Args:
    predictions (list of str): the texts (at least two).
    max_order (int, optional): the highest n-gram order, default 3.
    max_samples (int, optional): score at most this many predictions (a seeded random subset
        when there are more), default 500.
    seed (int, optional): seed of that subset, default 0.
Returns:
    "self_bleu" (float in [0, 1]), "n_scored" (int): how many predictions were scored.
"""


def ngram_counts(words, max_order):
    """Counter of every n-gram (tuple) of orders 1..max_order."""
    counts = Counter()
    for n in range(1, max_order + 1):
        for i in range(len(words) - n + 1):
            counts[tuple(words[i : i + n])] += 1
    return counts


def top_two(all_counts):
    """n-gram -> ((largest count, its owner index), second largest count) over predictions."""
    best = {}
    for owner, counts in enumerate(all_counts):
        for gram, c in counts.items():
            first, second = best.get(gram, ((0, -1), 0))
            if c > first[0]:
                best[gram] = ((c, owner), first[0])
            elif c > second:
                best[gram] = (first, c)
    return best


def closest_length(lengths, i, hyp_len):
    """Length among the references (all but i) closest to hyp_len; ties go to the shorter."""
    best = None
    for j, ref_len in enumerate(lengths):
        if j == i:
            continue
        if best is None or (abs(ref_len - hyp_len), ref_len) < (abs(best - hyp_len), best):
            best = ref_len
    return best


def sentence_bleu(hyp_counts, hyp_len, ref_len, clip, max_order):
    """Smoothed BLEU of one hypothesis given its reference clip counts (n-gram -> max count)."""
    matches = [0] * max_order
    possible = [max(hyp_len - n, 0) for n in range(max_order)]
    for gram, c in hyp_counts.items():
        matches[len(gram) - 1] += min(c, clip(gram))
    if hyp_len == 0 or matches[0] == 0:
        return 0.0
    log_precision = math.log(matches[0] / possible[0]) + sum(
        math.log((m + 1) / (p + 1)) for m, p in zip(matches[1:], possible[1:], strict=True))
    brevity = 1.0 if hyp_len > ref_len else math.exp(1 - ref_len / hyp_len)
    return brevity * math.exp(log_precision / max_order)


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class SelfBleu(evaluate.Metric):
    """Self-BLEU over word n-grams, smoothed, with a seeded cap on the number scored."""

    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation=_CITATION,
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features({"predictions": datasets.Value("string")}),
        )

    def _compute(self, predictions, max_order=3, max_samples=500, seed=0):
        max_order, max_samples = int(max_order), int(max_samples)
        if max_order < 1 or max_samples < 2:
            raise ValueError(f"max_order must be >= 1 and max_samples >= 2, got "
                             f"{max_order} and {max_samples}")
        texts = list(predictions)
        if len(texts) < 2:
            raise ValueError(f"self-BLEU needs at least 2 predictions, got {len(texts)}")
        if len(texts) > max_samples:
            pick = sorted(random.Random(int(seed)).sample(range(len(texts)), max_samples))
            texts = [texts[i] for i in pick]
        words = [t.split() for t in texts]
        lengths = [len(w) for w in words]
        counts = [ngram_counts(w, max_order) for w in words]
        best = top_two(counts)
        scores = []
        for i, hyp in enumerate(counts):
            def clip(gram, i=i):
                (first, owner), second = best[gram]
                return second if owner == i else first

            ref_len = closest_length(lengths, i, lengths[i])
            scores.append(sentence_bleu(hyp, lengths[i], ref_len, clip, max_order))
        return {"self_bleu": sum(scores) / len(scores), "n_scored": len(scores)}
