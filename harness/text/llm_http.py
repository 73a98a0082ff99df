"""A small client for OpenAI-compatible chat-completions servers, standard library only.

ollama ("http://127.0.0.1:11434/v1"), vLLM and llama.cpp's server all speak
``POST {base_url}/chat/completions``. ``complete_all`` sends one request per prompt from a
thread pool, retries what is worth retrying, and returns the answers in the prompts' order.

What is retried (per item, ``retries`` more attempts, exponential backoff): timeouts,
refused or dropped connections, HTTP 408, 429 (honouring Retry-After) and 5xx, malformed
JSON or missing fields, and empty answers. What is not: HTTP 401/403/404/405 (a wrong key,
URL or model: the whole run stops, whatever ``on_failure`` says) and other 4xx (that item
fails). An endpoint still unreachable after an item's retries also stops the whole run:
keeping every draft unrefined because the server is down would be silent garbage.
"""

from __future__ import annotations

import errno
import http.client
import json
import socket
import threading
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import urlsplit

from harness.errors import WsfmBenchError
from harness.text.alphabet import normalise

DEFAULT_INSTRUCTION = (
    "Rewrite the following text into natural, fluent lowercase English of about the same "
    "length ({length} characters). Use only lowercase letters and spaces: no digits, "
    "punctuation or line breaks. Answer with the rewritten text only."
)
MAX_WAIT_S = 60.0  # cap on one backoff or Retry-After wait
_FATAL_HTTP = (401, 403, 404, 405)
_RETRY_HTTP = (408, 429)
_UNREACHABLE_ERRNO = (errno.ECONNREFUSED, errno.EHOSTUNREACH, errno.ENETUNREACH)
COUNTERS = ("requests", "retries", "failed_items", "kept_drafts", "empty_answers", "http_errors",
            "timeouts", "connection_errors", "malformed")


class LLMRefinerError(WsfmBenchError, RuntimeError):
    """An LLM refiner could not refine the drafts; the message names endpoint, item and cause."""


class _Retry(Exception):
    """A failed attempt worth another; ``wait`` is a server's Retry-After, in seconds."""

    def __init__(self, message: str, wait: float = 0.0, unreachable: bool = False) -> None:
        super().__init__(message)
        self.wait = wait
        self.unreachable = unreachable


class _ItemFailed(Exception):
    """A failure of this item that another attempt will not fix (an HTTP 400, say)."""


class _Fatal(Exception):
    """A failure of the configuration: every item would fail the same way."""


class Counts:
    """Thread-safe counters for ``stats()``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.values = dict.fromkeys(COUNTERS, 0)

    def add(self, name: str, n: int = 1) -> None:
        with self._lock:
            self.values[name] += n


def _is_loopback(url: str) -> bool:
    return (urlsplit(url).hostname or "") in ("127.0.0.1", "localhost", "::1")


class ChatClient:
    """One chat-completions endpoint; ``complete`` makes exactly one HTTP attempt."""

    def __init__(self, base_url: str, model: str, api_key: str | None, timeout_s: float,
                 temperature: float, max_tokens: int, api_key_env: str = "") -> None:
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.model = model
        self.api_key = api_key
        self.api_key_env = api_key_env
        self.timeout_s = timeout_s
        self.temperature = temperature
        self.max_tokens = max_tokens
        # A local server must not be reached through $http_proxy; a remote one may need it.
        handlers = [urllib.request.ProxyHandler({})] if _is_loopback(self.url) else []
        self._opener = urllib.request.build_opener(*handlers)

    def body(self, prompt: str) -> dict[str, Any]:
        """The request JSON: one user turn (every chat template accepts one; not all a system)."""
        return {"model": self.model, "messages": [{"role": "user", "content": prompt}],
                "temperature": self.temperature, "max_tokens": self.max_tokens, "stream": False}

    def complete(self, prompt: str, counts: Counts) -> str:
        """The answer's text; raises _Retry, _ItemFailed or _Fatal, counting what happened."""
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        request = urllib.request.Request(self.url, data=json.dumps(self.body(prompt)).encode(),
                                         headers=headers, method="POST")
        counts.add("requests")
        try:
            with self._opener.open(request, timeout=self.timeout_s) as response:
                raw = response.read()
        except urllib.error.HTTPError as exc:
            counts.add("http_errors")
            raise self._http_error(exc) from None
        except urllib.error.URLError as exc:  # no HTTP answer: connect failed or timed out
            reason = exc.reason
            if isinstance(reason, TimeoutError):
                counts.add("timeouts")
                raise _Retry(f"no answer within timeout_s={self.timeout_s}") from None
            counts.add("connection_errors")
            unreachable = (isinstance(reason, socket.gaierror)
                           or getattr(reason, "errno", None) in _UNREACHABLE_ERRNO)
            raise _Retry(f"cannot connect: {reason}", unreachable=unreachable) from None
        except TimeoutError:
            counts.add("timeouts")
            raise _Retry(f"no answer within timeout_s={self.timeout_s}") from None
        except (http.client.HTTPException, OSError) as exc:  # dropped or garbled connection
            counts.add("connection_errors")
            raise _Retry(f"connection failed: {type(exc).__name__}: {exc}") from None
        return self._content(raw, counts)

    def _http_error(self, exc: urllib.error.HTTPError) -> Exception:
        try:
            detail = exc.read(300).decode("utf-8", "replace").strip()
        except (OSError, http.client.HTTPException):
            detail = ""
        message = f"HTTP {exc.code} {exc.reason}" + (f": {detail}" if detail else "")
        if exc.code in _RETRY_HTTP or exc.code >= 500:
            try:
                wait = float(exc.headers.get("Retry-After") or 0)
            except ValueError:  # an HTTP date: fall back to our own backoff
                wait = 0.0
            return _Retry(message, wait=wait)
        if exc.code in (401, 403):
            key = f"${self.api_key_env}" if self.api_key_env else "none set (api_key_env)"
            return _Fatal(f"{message}; check the API key (from {key})")
        if exc.code in _FATAL_HTTP:
            return _Fatal(f"{message}; check base_url (usually ends in /v1) and that the server "
                          f"serves model {self.model!r}")
        return _ItemFailed(message)

    def _content(self, raw: bytes, counts: Counts) -> str:
        try:
            data = json.loads(raw)
        except ValueError:
            counts.add("malformed")
            raise _Retry(f"malformed JSON in the answer: {raw[:120]!r}") from None
        try:
            content = data["choices"][0]["message"]["content"]
        except (KeyError, IndexError, TypeError):
            counts.add("malformed")
            raise _Retry(f"the answer lacks choices[0].message.content: {raw[:200]!r}") from None
        if content is not None and not isinstance(content, str):
            counts.add("malformed")
            raise _Retry(f"choices[0].message.content is not text: {content!r:.120}")
        return content or ""


def _hint(message: str, unreachable: bool) -> str:
    if unreachable:
        return "is the server running, and is base_url right?"
    if "timeout" in message:
        return "raise timeout_s or retries, or lower workers"
    if message.startswith("HTTP"):
        return "the server is failing or overloaded: retry later, raise retries or backoff_s"
    return "check that the server speaks the OpenAI chat-completions API"


class _Batch:
    """One complete_all call: its answers, the first failures, and the stop flag its worker
    threads share."""

    def __init__(self, client: ChatClient, prompts: list[str], retries: int, backoff_s: float,
                 keep_on_failure: bool, counts: Counts) -> None:
        self.client, self.prompts, self.counts = client, prompts, counts
        self.retries, self.backoff_s, self.keep_on_failure = retries, backoff_s, keep_on_failure
        self.results: list[str | None] = [None] * len(prompts)
        self.errors: dict[int, str] = {}
        self.stop = threading.Event()
        self.lock = threading.Lock()

    def fail(self, index: int, message: str, whole_run: bool) -> None:
        self.counts.add("failed_items")
        if self.keep_on_failure and not whole_run:
            self.counts.add("kept_drafts")
            return
        if not whole_run:
            message += '; or set on_failure = "keep-draft" to keep such drafts unrefined'
        with self.lock:
            self.errors[index] = message
        self.stop.set()

    def one(self, index: int) -> None:
        """Ask for item ``index`` until an answer, a final failure, or the batch stops."""
        last, wait, unreachable = "", 0.0, False
        for attempt in range(self.retries + 1):
            if self.stop.is_set():
                return
            if attempt:
                self.counts.add("retries")
                delay = min(self.backoff_s * 2 ** (attempt - 1), MAX_WAIT_S)
                if self.stop.wait(max(delay, min(wait, MAX_WAIT_S))):
                    return
            try:
                answer = normalise(self.client.complete(self.prompts[index], self.counts))
            except _Retry as exc:
                last, wait, unreachable = str(exc), exc.wait, exc.unreachable
                continue
            except (_ItemFailed, _Fatal) as exc:
                self.fail(index, f"item {index}: {exc} (not retried)",
                          whole_run=isinstance(exc, _Fatal))
                return
            wait = 0.0
            if answer:
                self.results[index] = answer
                return
            self.counts.add("empty_answers")
            last, unreachable = "empty answer (nothing left after normalising)", False
        tries = f"{self.retries + 1} attempt{'s' if self.retries else ''}"
        self.fail(index, f"item {index} failed after {tries}: {last}; "
                         f"{_hint(last, unreachable)}", whole_run=unreachable)


def complete_all(
    client: ChatClient,
    prompts: list[str],
    *,
    retries: int,
    backoff_s: float,
    workers: int,
    keep_on_failure: bool,
    counts: Counts,
) -> list[str | None]:
    """Normalised answers in the prompts' order; None where an item failed and
    ``keep_on_failure`` is set. Otherwise the first item to fail stops the batch: items in
    flight finish their current request, unsent ones are not sent, and LLMRefinerError names
    the lowest index among the items that failed (when several fail at once, which of them
    gave up first is a matter of thread timing)."""
    batch = _Batch(client, prompts, retries, backoff_s, keep_on_failure, counts)
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="llm-http") as pool:
        for future in [pool.submit(batch.one, i) for i in range(len(prompts))]:
            future.result()  # re-raises a bug in ``one`` itself
    if batch.errors:
        first = min(batch.errors)
        more = f" ({len(batch.errors) - 1} more item(s) failed)" if len(batch.errors) > 1 else ""
        raise LLMRefinerError(f"llm-http refiner at {client.url}: {batch.errors[first]}{more}")
    return batch.results

