"""Text metrics: the local evaluate modules (offline, exact values on hand-made strings), the
Metric plugins on id tensors, the character-model judge, and the judge LM loader and cache
(a tiny GPT-2 folder made here; the real SmolLM2 when its wheel is installed)."""

from __future__ import annotations

import importlib.util
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from harness.cache import Cache
from harness.errors import ConfigError
from harness.registry import metrics
from harness.text import lm
from harness.text import metrics as tm
from harness.text.alphabet import ALPHABET, VOCAB_SIZE, encode, normalise

L = 64
HAS_TRANSFORMERS = importlib.util.find_spec("transformers") is not None
needs_transformers = pytest.mark.skipif(not HAS_TRANSFORMERS, reason="transformers not installed")


def windows(n: int, offset: int = 0) -> torch.Tensor:
    """n windows of L characters of English prose (CPython's own documentation)."""
    from pydoc_data.topics import topics

    text = normalise(" ".join(topics.values()))[offset * L : (offset + n) * L]
    return torch.tensor(encode(text), dtype=torch.long).view(n, L)


PROSE = (
    "The village sat at the foot of a long green hill, and every morning the baker opened "
    "his shop before the sun was up. Children walked to school along the river, where the "
    "water was clear and cold in the spring. In the summer the farmers worked in the fields "
    "until late in the evening, and on Sundays most families went to the small church near "
    "the market square. The old teacher had lived there for forty years; she knew the name "
    "of every child and the story of every house. When the first snow came, the roads were "
    "closed for weeks, and people spent their days reading books by the fire and telling "
    "stories about the war, the harvest and the people who had left for the city."
)


def prose_windows() -> torch.Tensor:
    """Plain English narrative, normalised to the Text-8 alphabet, as windows of L."""
    text = normalise(PROSE)
    n = len(text) // L
    return torch.tensor(encode(text[: n * L]), dtype=torch.long).view(n, L)


def shuffled(x: torch.Tensor) -> torch.Tensor:
    """The same windows with their characters shuffled (same letter counts, no words)."""
    gen = torch.Generator().manual_seed(0)
    return torch.stack([row[torch.randperm(len(row), generator=gen)] for row in x])


def ids(*texts: str) -> torch.Tensor:
    assert len(set(map(len, texts))) == 1, "windows have one length"
    return torch.tensor([encode(t) for t in texts], dtype=torch.long)


# --- evaluate modules -------------------------------------------------------------------------


def test_every_module_loads_offline_from_its_folder() -> None:
    for name in tm.EVALUATE_MODULES:
        module = tm.evaluate_module(name)
        assert module.name == name
        assert tm.evaluate_module(name) is module  # memoised
        assert (tm.EVALUATE_DIR / name / f"{name}.py").is_file()
    assert os.environ["HF_EVALUATE_OFFLINE"] == "1"
    with pytest.raises(ValueError, match="unknown text evaluate module"):
        tm.evaluate_module("bleu")


def test_distinct_n_exact_counts() -> None:
    result = tm.evaluate_module("distinct_n").compute(
        predictions=["the cat the cat", "the dog"], orders=[1, 2, 3, 5])
    # words: the cat the cat | the dog -> unigrams 6 (3 unique), bigrams 3 + 1 (3 unique:
    # "the cat", "cat the", "the dog"), trigrams 2 (2 unique), no 5-grams
    assert (result["ngrams_1"], result["unique_1"]) == (6, 3)
    assert result["distinct_1"] == pytest.approx(3 / 6)
    assert result["distinct_2"] == pytest.approx(3 / 4)
    assert result["distinct_3"] == pytest.approx(2 / 2)
    assert result["distinct_5"] == 0.0 and result["ngrams_5"] == 0


def test_self_bleu_identical_diverse_and_by_hand() -> None:
    module = tm.evaluate_module("self_bleu")
    same = module.compute(predictions=["the cat sat on the mat"] * 4)
    assert same["self_bleu"] == pytest.approx(1.0)
    apart = module.compute(predictions=["a b c d", "e f g h", "i j k l"])
    assert apart["self_bleu"] == 0.0
    # "a b c d" vs "a b c e": unigrams 3/4, bigrams (2+1)/(3+1), trigrams (1+1)/(2+1), BP 1
    pair = module.compute(predictions=["a b c d", "a b c e"], max_order=3)
    assert pair["self_bleu"] == pytest.approx((3 / 4 * 3 / 4 * 2 / 3) ** (1 / 3))
    texts = [f"w{i % 7} w{i % 5} w{i % 3} x" for i in range(40)]
    capped = module.compute(predictions=texts, max_samples=10, seed=3)
    assert capped["n_scored"] == 10
    assert module.compute(predictions=texts, max_samples=10, seed=3) == capped
    with pytest.raises(ValueError, match="at least 2"):
        module.compute(predictions=["only one"])


def test_word_validity_exact_fraction() -> None:
    module = tm.evaluate_module("word_validity")
    vocab = {"the", "cat", "sat"}
    # whole words only: "xhe" (cut at the start) and "ma" (cut at the end) are skipped
    result = module.compute(predictions=["xhe cat sat on ma", " the dog "], vocabulary=vocab)
    assert (result["n_words"], result["n_valid"]) == (5, 3)  # cat sat on | the dog
    assert result["word_validity"] == pytest.approx(3 / 5)
    every = module.compute(predictions=["xhe cat sat on ma"], vocabulary=vocab,
                           whole_words_only=False)
    assert every["word_validity"] == pytest.approx(2 / 5)
    assert module.compute(predictions=["abc"], vocabulary=vocab)["word_validity"] == 0.0


class _Uniform(torch.nn.Module):
    """A character 'model' giving every character the same probability."""

    def __init__(self) -> None:
        super().__init__()
        self.bias = torch.nn.Parameter(torch.zeros(VOCAB_SIZE))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.bias.expand(*x.shape, VOCAB_SIZE)


def test_char_nll_module_uniform_model_and_foreign_characters() -> None:
    module = tm.evaluate_module("char_nll")
    result = module.compute(predictions=["hello world", "ab"], model=_Uniform(),
                            alphabet=ALPHABET)
    assert result["n_chars"] == 13
    assert result["nll_per_char"] == pytest.approx(math.log(VOCAB_SIZE))
    assert result["bits_per_char"] == pytest.approx(math.log2(VOCAB_SIZE))
    with pytest.raises(ValueError, match="'!' .* not in the model's alphabet"):
        module.compute(predictions=["hi!"], model=_Uniform(), alphabet=ALPHABET)


# --- plugins on id tensors ----------------------------------------------------------------


def test_plugins_registered_with_their_direction() -> None:
    expected = {"judge-nll": False, "judge-ppl": False, "judge-nll-char": False,
                "char-nll": False, "distinct-2": True, "self-bleu": False,
                "word-validity": True}
    for name, higher in expected.items():
        assert metrics.get(name).higher_is_better is higher, name


def test_diversity_plugins_on_ids() -> None:
    samples = ids("the cat the cat", "the dog the dog")
    # bigrams: the cat, cat the, the cat | the dog, dog the, the dog -> 4 unique of 6
    assert tm.DistinctN().compute(samples, samples, 0) == pytest.approx(4 / 6)
    repeated = ids(*["the cat sat on the mat"] * 5)
    varied = windows(5)
    bleu = tm.SelfBLEU()
    assert bleu.compute(repeated, repeated, 0) == pytest.approx(1.0)
    assert bleu.compute(varied, varied, 0) < 0.5
    with pytest.raises(ValueError, match="ids outside 0..26"):
        tm.DistinctN().compute(torch.full((2, 4), VOCAB_SIZE), samples, 0)
    with pytest.raises(ValueError, match="integer tensor"):
        tm.DistinctN().compute(torch.zeros(2, 4), samples, 0)
    with pytest.raises(ValueError, match="max_samples"):
        tm.SelfBLEU(max_samples=1)


def test_word_validity_plugin_vocabulary_from_training_split() -> None:
    train = ids("xx the cat sat yy", "zz on the mat wwv")
    metric = tm.WordValidity()
    with pytest.raises(ConfigError, match="setup"):
        metric.compute(train, train, 0)
    metric.setup(train, None)
    assert metric._vocab == {"the", "cat", "sat", "on", "mat"}
    samples = ids("q the cat sat on a mat q", "q dog the mat sat on a q")  # a, dog: unknown
    assert metric.compute(samples, samples, 0) == pytest.approx(9 / 12)
    assert tm.fast_texts(train) == tm.texts_of("train", train)


def test_char_nll_plugin_separates_text_and_retrains_identically() -> None:
    reference, natural = windows(200), windows(50, offset=200)
    small = {"architecture": "lstm", "hidden": 32, "steps": 200, "batch_size": 16, "lr": 2e-2}
    metric = tm.CharNLL(**small)
    stats = metric.reference_stats(reference, seed=0)
    real = metric.compute(natural, reference, 0, stats)
    noise = metric.compute(shuffled(natural), reference, 0, stats)
    assert real < noise - 0.5, (real, noise)
    tm._CHAR_STATES.clear()  # retrain from scratch, without the reference statistics
    assert tm.CharNLL(**small).compute(natural, reference, 7) == real
    with pytest.raises(ValueError, match="lr"):
        tm.CharNLL(lr=0)


def test_char_nll_defaults_to_an_ngram_model_apart_from_the_drafts() -> None:
    from harness.text.ngram import CharNGram

    reference, natural = windows(200), windows(50, offset=200)
    metric = tm.CharNLL()
    assert metric.architecture == "ngram" and metric.reference_stats(reference, 0) == {}
    real = metric.compute(natural, reference, 0)
    noise = metric.compute(shuffled(natural), reference, 0)
    assert real < noise - 1.0, (real, noise)
    assert tm.CharNLL().compute(natural, reference, 3) == real  # counted, not trained
    model = CharNGram(reference, VOCAB_SIZE, VOCAB_SIZE, order=3)
    probs = model(torch.full((2, 5), VOCAB_SIZE)).exp()
    assert torch.allclose(probs.sum(-1), torch.ones(2, 5), atol=1e-5)
    with pytest.raises(ValueError, match="architecture"):
        tm.CharNLL(architecture="gpt")
    # The vectorised counts are those of reading every window character by character.
    counts: dict = {}
    for row in reference[:20].tolist():
        inputs = [VOCAB_SIZE, *row[:-1]]
        for t, target in enumerate(row):
            history = inputs[max(0, t - 3): t + 1]
            for k in range(len(history) + 1):
                counts.setdefault(tuple(history[len(history) - k:]), [0] * VOCAB_SIZE)
                counts[tuple(history[len(history) - k:])][target] += 1
    fast = CharNGram(reference[:20], VOCAB_SIZE, VOCAB_SIZE, order=5).counts
    assert {k: list(v) for k, v in fast.items()} == counts


# --- judge language model -----------------------------------------------------------------


def test_judge_status_names_the_fix(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    ok, why = lm.judge_status(str(tmp_path / "nowhere"))
    assert not ok and "config.json" in why
    monkeypatch.setattr(lm, "smollm2_folder", lambda: None)
    ok, why = lm.judge_status("smollm2")
    assert not ok and lm.INSTALL_HINT in why
    monkeypatch.setattr(lm, "_missing_modules", lambda modules: ["transformers"])
    (tmp_path / "config.json").write_text("{}")
    ok, why = lm.judge_status(str(tmp_path))
    assert not ok and "transformers" in why and lm.INSTALL_HINT in why
    with pytest.raises(ConfigError, match="transformers"):
        tm.JudgeNLL(judge=str(tmp_path)).compute(ids("ab cd"), ids("ab cd"), 0)


@needs_transformers
def test_judge_nll_on_a_local_model_folder_matches_a_direct_computation(
    tiny_lm_folder: Path,
) -> None:
    ok, why = lm.judge_status(str(tiny_lm_folder))
    assert ok, why
    tokenizer, model = lm.load_causal_lm(str(tiny_lm_folder))
    texts = ["the cat", "a dog ran", ""]
    result = tm.evaluate_module("judge_nll").compute(predictions=texts, model=model,
                                                     tokenizer=tokenizer, batch_size=2)
    total, count = 0.0, 0
    for text in texts:
        seq = torch.tensor([[0] + [ALPHABET.index(c) + 1 for c in text]])
        logp = torch.log_softmax(model(input_ids=seq).logits[0, :-1].double(), dim=-1)
        total -= float(logp.gather(-1, seq[0, 1:, None]).sum())
        count += seq.shape[1] - 1
    assert result["n_tokens"] == count == 16
    assert result["mean_nll"] == pytest.approx(total / count, rel=1e-5)
    assert result["perplexity"] == pytest.approx(math.exp(total / count), rel=1e-5)
    assert result["nll_per_char"] == pytest.approx(total / 16, rel=1e-5)


@needs_transformers
def test_judge_weights_cache_serves_a_fresh_load(tiny_lm_folder: Path, tmp_path: Path) -> None:
    cache = Cache(tmp_path / "judges")
    lm.clear_memo()
    _, first = lm.load_causal_lm(str(tiny_lm_folder), cache=cache, cache_weights=True)
    assert (cache.misses, cache.hits) == (1, 0)
    assert lm.load_causal_lm(str(tiny_lm_folder), cache=cache, cache_weights=True)[1] is first
    lm.clear_memo()  # as in a fresh process
    tokenizer, again = lm.load_causal_lm(str(tiny_lm_folder), cache=cache, cache_weights=True)
    assert (cache.misses, cache.hits) == (1, 1)
    assert again is not first
    x = torch.tensor(tokenizer(["the cat sat"], add_special_tokens=False)["input_ids"])
    assert torch.equal(first(input_ids=x).logits, again(input_ids=x).logits)
    assert again.lm_head.weight.data_ptr() == again.transformer.wte.weight.data_ptr()  # tied
    lm.clear_memo()


@needs_transformers
def test_judge_scores_come_from_the_cache_without_loading_the_judge(
        tiny_lm_folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    samples = torch.tensor([encode("the cat sat on"), encode("a dog ran away")])
    metric = tm.JudgeNLLChar(judge=str(tiny_lm_folder), max_samples=1)
    first = metric.compute(samples, samples, seed=3)
    tm._JUDGE_RESULTS.clear()  # as in a fresh process with a warm cache
    lm.clear_memo()

    def no_load(*args: object, **kwargs: object) -> None:
        raise AssertionError("the judge was loaded although its scores are cached")
    monkeypatch.setattr(lm, "load_causal_lm", no_load)
    assert metric.compute(samples, samples, seed=3) == first  # bit for bit
    # Other samples, or another subset's seed, are judged afresh.
    with pytest.raises(AssertionError, match="was loaded"):
        metric.compute(samples[[1, 0]], samples, seed=3)
    with pytest.raises(AssertionError, match="was loaded"):
        metric.compute(samples, samples, seed=4)


# --- the real SmolLM2 judge (only where its wheel and transformers are installed) -------------

SMOLLM2_OK, SMOLLM2_WHY = lm.judge_status("smollm2")


@pytest.mark.skipif(not SMOLLM2_OK, reason=SMOLLM2_WHY)
def test_smollm2_judges_natural_text_and_loads_from_the_cache(tmp_path: Path) -> None:
    """One test (one dequantisation, also under xdist): natural text scores clearly below its
    shuffled characters, the plugins share one computation, and a fresh process loads the
    judge from the cache entry the first load wrote."""
    folder = tmp_path / "judge-cache"
    cache = Cache(folder)
    lm.clear_memo()
    lm.load_causal_lm("smollm2", cache=cache)
    assert (cache.misses, cache.hits) == (1, 0)
    natural = prose_windows()
    real = tm.judge_result(natural)  # memoised judge: no second load
    noise = tm.judge_result(shuffled(natural))
    assert real["mean_nll"] < noise["mean_nll"] - 1.0, (real, noise)
    assert real["nll_per_char"] < noise["nll_per_char"] / 2, (real, noise)
    assert tm.JudgeNLL().compute(natural, natural, 0) == real["mean_nll"]
    assert tm.JudgePPL().compute(natural, natural, 0) == pytest.approx(math.exp(real["mean_nll"]))
    assert tm.JudgeNLLChar().compute(natural, natural, 0) == real["nll_per_char"]

    code = ("from harness.cache import Cache; from harness.text.lm import load_causal_lm; "
            "c = Cache(); load_causal_lm('smollm2', cache=c); print(c.hits, c.misses)")
    env = {**os.environ, "WSFM_BENCH_CACHE": str(folder)}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         timeout=300, check=True)
    assert out.stdout.split()[-2:] == ["1", "0"], out.stdout + out.stderr
    lm.clear_memo()


def test_judge_precision_resolves_auto_by_what_the_device_computes_natively(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: True)
    assert lm.judge_precision("auto", "cpu") == "bfloat16"
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    assert lm.judge_precision("auto", "cpu") == "float32"  # emulated bf16 is slower
    assert lm.judge_precision("bfloat16", "cpu") == "bfloat16"  # asked for: as asked
    with pytest.raises(ConfigError, match="'half'.*auto, float32, bfloat16"):
        lm.judge_precision("half")
    with pytest.raises(ValueError, match="precision='half'"):
        tm.JudgeNLLChar(precision="half")


@needs_transformers
def test_judge_in_bfloat16_is_keyed_apart_and_close_to_float32(tiny_lm_folder: Path) -> None:
    samples = torch.tensor([encode("the cat sat on the mat"), encode("a dog ran far far away")])
    full = tm.judge_result(samples, str(tiny_lm_folder), precision="float32")
    half = tm.judge_result(samples, str(tiny_lm_folder), precision="bfloat16")
    assert full["n_tokens"] == half["n_tokens"]
    assert half["nll_per_char"] != full["nll_per_char"]  # computed afresh, not the memo's
    assert half["nll_per_char"] == pytest.approx(full["nll_per_char"], rel=0.02)
