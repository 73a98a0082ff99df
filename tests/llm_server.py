"""A fake OpenAI-compatible chat-completions server on 127.0.0.1, for the LLM refiner tests.

    with FakeLLMServer(script=[500, "ok"]) as server:
        LLMHttp(base_url=server.url, model="fake").refine(drafts)

Each request takes the next step of ``script`` (the last one repeats); a step is "ok" (the
default answer: the draft's text in upper case with punctuation, so that normalising shows),
an int HTTP status, "timeout" (sleep ``sleep_s`` before answering), "malformed" (not JSON),
"no-content" (JSON without choices), "empty" (an empty answer), or a callable
``(request_json) -> answer text or an int HTTP status`` (to fail some items, not others).
``server.requests`` holds every request body, parsed.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Step = str | int | Callable[[dict[str, Any]], str | int]


def draft_of(request: dict[str, Any]) -> str:
    """The draft text of a request: the prompt's last paragraph."""
    return request["messages"][-1]["content"].rsplit("\n\n", 1)[-1]


def shout(request: dict[str, Any]) -> str:
    """The default rewrite: upper case, a comma after the first word, and a full stop."""
    words = draft_of(request).split()
    return (", ".join(words[:1] + [" ".join(words[1:])]) + "!").upper()


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class FakeLLMServer:
    """ThreadingHTTPServer on 127.0.0.1:0 in a daemon thread, answering by ``script``."""

    def __init__(self, script: list[Step] | None = None, sleep_s: float = 0.5) -> None:
        self.script = list(script or ["ok"])
        self.sleep_s = sleep_s
        self.requests: list[dict[str, Any]] = []
        self.paths: list[str] = []
        self.headers: list[dict[str, str]] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    def __enter__(self) -> FakeLLMServer:
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _next(self, request: dict[str, Any], path: str, headers: dict[str, str]) -> Step:
        with self._lock:
            self.requests.append(request)
            self.paths.append(path)
            self.headers.append(headers)
            return self.script[min(len(self.requests), len(self.script)) - 1]

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # keep test output quiet
                pass

            def _send(self, status: int, body: bytes, extra: dict[str, str] | None = None) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                for k, v in (extra or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                try:
                    self.wfile.write(body)
                except OSError:  # the client gave up (a timeout test)
                    pass

            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                request = json.loads(raw)
                step = server._next(request, self.path, dict(self.headers))
                if callable(step):  # an answer for this request, or a status
                    step = step(request)
                    if not isinstance(step, int):
                        self._answer(request, step)
                        return
                if isinstance(step, int):
                    extra = {"Retry-After": "0"} if step == 429 else None
                    body = json.dumps({"error": {"message": f"fake error {step}"}}).encode()
                    self._send(step, body, extra)
                    return
                if step == "malformed":
                    self._send(200, b"{not json")
                    return
                if step == "no-content":
                    self._send(200, json.dumps({"object": "chat.completion"}).encode())
                    return
                if step == "timeout":
                    time.sleep(server.sleep_s)
                self._answer(request, "" if step == "empty" else shout(request))

            def _answer(self, request: dict[str, Any], answer: str) -> None:
                body = {"object": "chat.completion", "model": request.get("model"),
                        "choices": [{"index": 0, "finish_reason": "stop",
                                     "message": {"role": "assistant", "content": answer}}]}
                self._send(200, json.dumps(body).encode())

        return Handler
