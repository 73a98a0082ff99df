"""Text metrics as Metric plugins, each computed by a local Hugging Face ``evaluate`` module.

Samples and references are torch.long tensors (n, L) of Text-8 ids (0..26), decoded to strings
with harness.text.alphabet. Each plugin hands the strings to one module of
``harness/text/evaluate_metrics/<name>/<name>.py`` (loaded offline from its folder, once per
process, with a per-process experiment id so parallel workers never share evaluate's files):

- ``judge-nll`` / ``judge-ppl`` / ``judge-nll-char``: mean NLL per token / perplexity / NLL
  per character under a pretrained judge LM (default SmolLM2-135M-Instruct, harness.text.lm);
  one forward pass serves all three (memoised by a hash of the samples). Lower is better.
  Without the judge (transformers or the wheel not installed) compute raises ConfigError;
  tasks check ``harness.text.lm.judge_status`` first.
- ``char-nll``: NLL per character (nats) under a character model fitted to the held-out
  reference (a smoothed 5-gram by default, apart from the drafts' LSTMs; the LSTM as an
  option), the same for every cell. The fallback judge: lower is better.
- ``distinct-2``: share of unique word bigrams among all word bigrams (words = space-separated
  tokens). Higher is better (more diverse); read it beside a fidelity metric.
- ``self-bleu``: mean BLEU-3 of each sample against the other samples (at most 500, a subset
  seeded by the cell's seed). Lower is better (more diverse).
- ``word-validity``: share of the samples' whole words (a window's cut first/last word is
  skipped) found among the words of the task's training split (``setup``). Higher is better.
"""

from __future__ import annotations

import json
import math
import os
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from harness.cache import Cache, tensor_sha256
from harness.checks import check_positive_ints
from harness.errors import ConfigError
from harness.nn.lstm import CharLSTM, teacher_inputs
from harness.nn.training import TrainConfig, optimise
from harness.plugins import Metric
from harness.text.alphabet import ALPHABET, START_ID, VOCAB_SIZE, decode_batch, interior_words
from harness.text.ngram import CharNGram

EVALUATE_DIR = Path(__file__).resolve().with_name("evaluate_metrics")
EVALUATE_MODULES = ("judge_nll", "char_nll", "distinct_n", "self_bleu", "word_validity")

_MODULES: dict[str, Any] = {}  # module name -> loaded evaluate module (this process)
_EXPERIMENT: list[Any] = [None, ""]  # [pid, experiment id]: new after a fork


def experiment_id() -> str:
    """An evaluate experiment id unique to this process (xdist workers, forked runners)."""
    if _EXPERIMENT[0] != os.getpid():
        _EXPERIMENT[:] = [os.getpid(), f"wsfm-{os.getpid()}-{uuid.uuid4().hex[:12]}"]
    return _EXPERIMENT[1]


def evaluate_module(name: str) -> Any:
    """The local evaluate module ``name`` (one of EVALUATE_MODULES), loaded offline once."""
    if name not in EVALUATE_MODULES:
        raise ValueError(f"unknown text evaluate module {name!r}; one of {EVALUATE_MODULES}")
    if name not in _MODULES or _MODULES[name][0] != os.getpid():
        os.environ.setdefault("HF_EVALUATE_OFFLINE", "1")  # before evaluate's first import
        try:
            import evaluate
        except ModuleNotFoundError as exc:
            raise ConfigError("text metrics need Hugging Face evaluate: "
                              "pip install evaluate==0.4.6 datasets") from exc
        module = evaluate.load(str(EVALUATE_DIR / name), experiment_id=experiment_id(),
                               keep_in_memory=True)  # no arrow files or locks on disk
        _MODULES[name] = (os.getpid(), module)
    return _MODULES[name][1]


def _check_ids(name: str, x: Any) -> torch.Tensor:
    if not isinstance(x, torch.Tensor) or x.dim() != 2 or x.is_floating_point() or x.is_complex():
        what = f"{x.dtype} {tuple(x.shape)}" if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"{name} must be an integer tensor (n, L) of character ids, got {what}")
    x = x.detach().cpu()
    bad = (x < 0) | (x >= VOCAB_SIZE)
    if bool(bad.any()):
        raise ValueError(f"{name} hold {int(bad.sum())} ids outside 0..{VOCAB_SIZE - 1} in "
                         f"{int(bad.any(dim=1).sum())} of {len(x)} rows (mask id {VOCAB_SIZE}: "
                         f"unfinished sampling?)")
    return x


def texts_of(name: str, x: torch.Tensor) -> list[str]:
    """Validated ids (n, L) -> n strings (harness.text.alphabet.decode_batch)."""
    return decode_batch(_check_ids(name, x).numpy())


_TABLE = np.frombuffer(ALPHABET.encode("ascii"), dtype=np.uint8)


def fast_texts(x: torch.Tensor) -> list[str]:
    """decode_batch's strings by a vectorised table lookup (for large training splits)."""
    rows = _TABLE[_check_ids("train", x).numpy()]
    return [row.tobytes().decode("ascii") for row in rows]


# --- judge language model -------------------------------------------------------------------

_JUDGE_RESULTS: dict[tuple[Any, ...], dict[str, float]] = {}
_JUDGE_MEMO_SIZE = 8
JUDGE_SCORES_VERSION = 1  # bump when the judge_nll module's numbers change


def judge_result(samples: torch.Tensor, judge: str = "smollm2", batch_size: int = 32,
                 max_samples: int | None = None, seed: int = 0,
                 precision: str = "auto") -> dict[str, float]:
    """judge_nll's numbers for ``samples`` (ids) under ``judge``, memoised by their hash.

    With ``max_samples`` and more samples than that, a subset drawn with ``seed`` is judged;
    ``precision`` is the forward pass's (harness.text.lm.judge_precision; "auto" resolved
    here, and the resolved one keys the result)."""
    from harness.text.lm import judge_cache_key, judge_precision, load_causal_lm

    device = str(samples.device)
    subset = max_samples is not None and len(samples) > max_samples
    precision = judge_precision(precision, device)
    ident = {"samples": tensor_sha256(samples), "judge": judge, "device": device,
             "batch_size": batch_size, "subset": max_samples if subset else None,
             "seed": int(seed) if subset else None,
             # float32 keeps the keys of scores cached before precision was an option
             **({"precision": precision} if precision != "float32" else {})}
    key = tuple(ident.values())
    if key not in _JUDGE_RESULTS:
        def build() -> dict[str, Any]:
            texts = texts_of("samples", samples)
            if subset:
                pick = torch.randperm(len(texts),
                                      generator=torch.Generator().manual_seed(int(seed)))
                texts = [texts[i] for i in sorted(pick[:max_samples].tolist())]
            tokenizer, model = load_causal_lm(judge, device)
            result = evaluate_module("judge_nll").compute(
                predictions=texts, model=model, tokenizer=tokenizer, batch_size=batch_size,
                autocast_dtype=getattr(torch, precision) if precision != "float32" else None)
            return {"json": json.dumps(result)}

        # On disk too, by the samples' bytes and the judge's weights: a rerun with a warm cache
        # draws the same samples and then neither loads nor runs the judge.
        cached = Cache().load_or_build("judge-scores", {
            **ident, "judge": judge_cache_key(judge), "version": JUDGE_SCORES_VERSION}, build)
        while len(_JUDGE_RESULTS) >= _JUDGE_MEMO_SIZE:
            _JUDGE_RESULTS.pop(next(iter(_JUDGE_RESULTS)))
        _JUDGE_RESULTS[key] = json.loads(cached["json"])
    return dict(_JUDGE_RESULTS[key])


@dataclass
class JudgeNLL(Metric):
    """Mean NLL per token of the samples under a pretrained judge LM (lower is better).

    Options: ``judge`` ("smollm2", or a local model folder / .gguf file: harness.text.lm),
    ``batch_size``, ``max_samples`` (judge at most this many, a subset drawn with the
    cell's seed; None: all) and ``precision`` ("auto": bfloat16 autocast where the device
    has it natively, else float32; harness.text.lm.judge_precision). It runs on the samples'
    device. Cost: about 2 x (parameters)
    FLOPs per token, 0.27 GFLOP for SmolLM2 (a 64-character sample is 12-13 tokens of
    natural text, up to about 30 of random letters)."""

    judge: str = "smollm2"
    batch_size: int = 32
    max_samples: int | None = None
    precision: str = "auto"
    higher_is_better = False
    result_key = "mean_nll"

    def __post_init__(self) -> None:
        check_positive_ints(self, "batch_size")
        if self.max_samples is not None:
            check_positive_ints(self, "max_samples")
        if not isinstance(self.judge, str) or not self.judge:
            raise ValueError(f"judge must be 'smollm2' or a local model path, got {self.judge!r}")
        from harness.text.lm import check_precision

        check_precision(self.precision, "precision")

    @torch.no_grad()
    def compute(self, samples: torch.Tensor, reference: torch.Tensor, seed: int,
                stats: dict[str, torch.Tensor] | None = None) -> float:
        result = judge_result(samples, self.judge, self.batch_size, self.max_samples, seed,
                              self.precision)
        return float(result[self.result_key])


class JudgePPL(JudgeNLL):
    """Perplexity (exp of judge-nll) of the samples under the judge LM (lower is better)."""

    result_key = "perplexity"


class JudgeNLLChar(JudgeNLL):
    """The judge LM's NLL per character (nats; lower is better): the same sum as judge-nll,
    divided by characters instead of tokens, so it does not reward texts that split into
    many short tokens (random letters)."""

    result_key = "nll_per_char"


# --- character model ------------------------------------------------------------------------

_CHAR_STATES: dict[str, dict[str, torch.Tensor]] = {}  # (reference, options) hash -> weights
_CHAR_MODELS: dict[str, CharNGram] = {}  # (reference, options) hash -> n-gram model


@dataclass
class CharNLL(Metric):
    """NLL per character (nats) under a character model fitted to the held-out reference
    (lower is better): the fallback judge when no judge language model is installed.

    ``architecture = "ngram"`` (default): a smoothed character n-gram model of ``order``
    counted on the reference (harness.text.ngram), apart from the drafts in architecture and
    data. ``"lstm"``: the drafts' own architecture (``embed``, ``hidden``, ``layers``), trained
    for ``steps`` Adam steps (``lr``, cosine decay, ``batch_size`` windows per step) on the
    reference from ``model_seed``; its weights are the reference statistics the harness
    caches. It shares the good draft's bias, so it favours that draft's text."""

    architecture: str = "ngram"
    order: int = 5
    embed: int = 32
    hidden: int = 128
    layers: int = 1
    steps: int = 300
    batch_size: int = 64
    lr: float = 3e-3
    model_seed: int = 0
    higher_is_better = False
    version = "2"  # 2: the n-gram model by default

    def __post_init__(self) -> None:
        check_positive_ints(self, "order", "embed", "hidden", "layers", "steps", "batch_size")
        if self.architecture not in ("ngram", "lstm"):
            raise ValueError(f"architecture={self.architecture!r}; allowed: ngram, lstm")
        if (isinstance(self.lr, bool) or not isinstance(self.lr, int | float)
                or not math.isfinite(self.lr) or self.lr <= 0):
            raise ValueError(f"lr must be a positive number, got {self.lr!r}")
        if isinstance(self.model_seed, bool) or not isinstance(self.model_seed, int):
            raise ValueError(f"model_seed must be an integer, got {self.model_seed!r}")

    def _make(self) -> CharLSTM:
        # The draft's architecture, trained on held-out text instead of the training split.
        with torch.random.fork_rng(devices=[]):  # seeded init, global RNG left alone
            torch.manual_seed(self.model_seed)
            return CharLSTM(VOCAB_SIZE, self.embed, self.hidden, self.layers)

    @torch.enable_grad()  # also when called under no_grad
    def train_model(self, reference: torch.Tensor) -> dict[str, torch.Tensor]:
        """The LSTM's weights after training on ``reference`` (ids (n, L)); deterministic."""
        data = _check_ids("reference", reference).long()
        if data.numel() == 0:
            raise ValueError("char-nll needs a non-empty reference")
        net = self._make()

        def loss(gen: torch.Generator) -> torch.Tensor:
            batch = data[torch.randint(len(data), (self.batch_size,), generator=gen)]
            logits = net(teacher_inputs(batch, START_ID))[0]
            return F.cross_entropy(logits.reshape(-1, VOCAB_SIZE), batch.reshape(-1))

        optimise(net, loss, TrainConfig(self.steps, self.batch_size, self.lr),
                 torch.Generator().manual_seed(self.model_seed), progress=False)
        return {k: v.detach().clone() for k, v in net.state_dict().items()}

    def _weights(self, reference: torch.Tensor) -> dict[str, torch.Tensor]:
        from harness.hashing import stable_hash

        memo = stable_hash([tensor_sha256(reference.detach().cpu()), repr(self), self.version])
        if memo not in _CHAR_STATES:
            _CHAR_STATES[memo] = self.train_model(reference)
        return _CHAR_STATES[memo]

    def reference_stats(self, reference: torch.Tensor, seed: int) -> dict[str, torch.Tensor]:
        if self.architecture == "ngram":
            return {}  # counted afresh in a fraction of a second: nothing worth caching
        return dict(self._weights(reference))

    def _ngram(self, reference: torch.Tensor) -> CharNGram:
        from harness.hashing import stable_hash

        memo = stable_hash([tensor_sha256(reference.detach().cpu()), repr(self), self.version])
        if memo not in _CHAR_MODELS:
            data = _check_ids("reference", reference).long().cpu()
            if data.numel() == 0:
                raise ValueError("char-nll needs a non-empty reference")
            _CHAR_MODELS[memo] = CharNGram(data, VOCAB_SIZE, START_ID, self.order)
        return _CHAR_MODELS[memo]

    @torch.no_grad()
    def compute(self, samples: torch.Tensor, reference: torch.Tensor, seed: int,
                stats: dict[str, torch.Tensor] | None = None) -> float:
        texts = texts_of("samples", samples)
        if self.architecture == "ngram":
            net: torch.nn.Module = self._ngram(reference)
        else:
            net = self._make()
            state = stats if stats else self._weights(reference)
            net.load_state_dict({k: v.cpu() for k, v in state.items()})
        result = evaluate_module("char_nll").compute(
            predictions=texts, model=net.eval(), alphabet=ALPHABET, start_id=START_ID)
        return float(result["nll_per_char"])


# --- diversity and validity -----------------------------------------------------------------

@dataclass
class DistinctN(Metric):
    """Distinct-n over word n-grams (default n = 2): unique / all, pooled (higher: more diverse).

    Uniform random words also score high: read it beside a fidelity metric."""

    n: int = 2
    higher_is_better = True

    def __post_init__(self) -> None:
        check_positive_ints(self, "n")

    def compute(self, samples: torch.Tensor, reference: torch.Tensor, seed: int,
                stats: dict[str, torch.Tensor] | None = None) -> float:
        result = evaluate_module("distinct_n").compute(
            predictions=texts_of("samples", samples), orders=[self.n])
        return float(result[f"distinct_{self.n}"])


@dataclass
class SelfBLEU(Metric):
    """Mean BLEU (orders 1..max_order, add-one smoothing) of each sample against the others
    (lower is better: more diverse). At most ``max_samples`` samples are scored: a subset
    drawn with the cell's seed."""

    max_order: int = 3
    max_samples: int = 500
    higher_is_better = False

    def __post_init__(self) -> None:
        check_positive_ints(self, "max_order", "max_samples")
        if self.max_samples < 2:
            raise ValueError(f"max_samples must be at least 2, got {self.max_samples}")

    def min_points(self) -> int:
        return 2  # each sample is scored against the others

    def compute(self, samples: torch.Tensor, reference: torch.Tensor, seed: int,
                stats: dict[str, torch.Tensor] | None = None) -> float:
        result = evaluate_module("self_bleu").compute(
            predictions=texts_of("samples", samples), max_order=self.max_order,
            max_samples=self.max_samples, seed=int(seed))
        return float(result["self_bleu"])


_VOCABS: dict[str, frozenset[str]] = {}  # sha256 of a training split -> its whole words
_SPLIT_SHA: dict[tuple[Any, ...], str] = {}  # (id, data_ptr, shape) of a split -> its sha256


def whole_words(texts: list[str]) -> frozenset[str]:
    """Every word bounded by spaces on both sides in some text (cut edge words left out)."""
    return frozenset(word for text in texts for _, word in interior_words(text))


@dataclass
class WordValidity(Metric):
    """Share of the samples' whole words found among the training split's words (higher is
    better). A window's first and last words may be cut by its edges: they are skipped, both
    when counting samples' words and when collecting the vocabulary (``setup``)."""

    higher_is_better = True

    def __post_init__(self) -> None:
        self._vocab: frozenset[str] | None = None

    def setup(self, train: torch.Tensor, train_labels: torch.Tensor | None) -> None:
        """Collect the vocabulary: the whole words of the task's training split (memoised)."""
        memo = (id(train), train.data_ptr(), tuple(train.shape))
        if memo not in _SPLIT_SHA:
            _SPLIT_SHA[memo] = tensor_sha256(train)
        sha = _SPLIT_SHA[memo]
        if sha not in _VOCABS:
            _VOCABS[sha] = whole_words(fast_texts(train))
        self._vocab = _VOCABS[sha]

    def compute(self, samples: torch.Tensor, reference: torch.Tensor, seed: int,
                stats: dict[str, torch.Tensor] | None = None) -> float:
        if self._vocab is None:
            raise ConfigError("word-validity needs setup(train, labels) with the task's "
                              "training split before compute (its words are the vocabulary)")
        result = evaluate_module("word_validity").compute(
            predictions=texts_of("samples", samples), vocabulary=self._vocab,
            whole_words_only=True)
        return float(result["word_validity"])
