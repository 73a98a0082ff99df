"""Shared fixtures: every test gets its own cache folder, and a tiny suite to run."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

# Tiny networks gain nothing from intra-op threads, and xdist runs one worker per core:
# more threads than cores makes OpenMP spin and every test crawl.
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WSFM_BENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_EVALUATE_OFFLINE", "1")
    # Runs started by tests take one cell at a time unless a test asks for workers: xdist
    # already runs one test per core (tests/test_executors.py covers the executors).
    monkeypatch.setenv("WSFM_BENCH_WORKERS", "1")


TINY_SUITE = """
name = "tiny"
seeds = [0]
budgets = [4]
n_samples = 300
n_eval = 300
repeats = 2
[training]
steps = 60
batch_size = 128
[[tasks]]
name = "two-moons"
n_train = 600
n_test = 300
"""


@pytest.fixture
def tiny_suite_text() -> str:
    return TINY_SUITE


@pytest.fixture(scope="session")
def tiny_lm_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random GPT-2 with a character tokenizer, saved as a local model folder."""
    if importlib.util.find_spec("transformers") is None:
        pytest.skip("transformers not installed")
    import transformers
    from tokenizers import Tokenizer, models

    from harness.text.alphabet import ALPHABET

    folder = tmp_path_factory.mktemp("tiny-gpt2")
    vocab = {"<|endoftext|>": 0, **{c: i + 1 for i, c in enumerate(ALPHABET)}}
    tokenizer = transformers.PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<|endoftext|>")),
        bos_token="<|endoftext|>", eos_token="<|endoftext|>")
    config = transformers.GPT2Config(vocab_size=len(vocab), n_positions=128, n_embd=16,
                                     n_layer=1, n_head=2, bos_token_id=0, eos_token_id=0)
    torch.manual_seed(0)
    transformers.GPT2LMHeadModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
