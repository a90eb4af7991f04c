"""A tiny OpenAI-compatible HTTP server for tests (loopback only, no network).

It speaks just enough of the OpenAI REST API for the project's clients and
the official ``openai`` SDK to talk to it:

* ``POST /v1/embeddings``        -> deterministic vectors (a text always maps
  to the same unit vector, derived from its sha256), ``float`` or ``base64``
  encoding, ``dimensions`` honoured.
* ``POST /v1/chat/completions``  -> a canned reply (a string, or a callable
  ``reply(messages, body) -> str`` so a test can answer per prompt).

Failures are injectable so retry / timeout / fallback paths can be tested:

* ``fail_next(n, status=500)``        the next ``n`` requests answer HTTP ``status``
  (429 carries a ``Retry-After`` header when ``retry_after`` is given);
* ``malformed_next(n)``               the next ``n`` requests answer 200 with a body
  that is not JSON;
* ``delay_s``                         every request sleeps this long before answering
  (a client with a smaller timeout sees a timeout);
* ``slow_next(n, seconds)``           only the next ``n`` requests are slow;
* ``require_key``                     when set, requests without
  ``Authorization: Bearer <require_key>`` get 401;
* ``auth_error``                      the 401's message; ``{key}`` is replaced by the key the
  client sent (a hostile or careless server that echoes it back).

Every request is recorded in ``server.requests`` (path, parsed JSON body,
headers) so a test can count batches.  Use it as a context manager::

    with FakeOpenAI() as server:
        monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)   # ".../v1"
        ...
        assert len(server.requests_to("/v1/embeddings")) == 2

The server binds 127.0.0.1 on a free port and runs in a daemon thread; it
stops on ``__exit__``/``stop()``.  It never reaches anything but loopback.

Or import the ready-made fixture into a test module (importing registers it)::

    from fake_openai import fake_openai_server  # noqa: F401  (or tests.fake_openai)

    def test_judge(fake_openai_server):
        fake_openai_server.chat_reply = '{"score": 4}'
        ...   # OPENAI_BASE_URL and OPENAI_API_KEY ("sk-fake") are set for the test
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable

import numpy as np
import pytest

__all__ = ["FakeOpenAI", "RecordedRequest", "fake_openai_server", "fake_vector"]


def fake_vector(text: str, dim: int = 1536) -> np.ndarray:
    """The unit vector the fake server returns for ``text`` (deterministic, sha256-seeded)."""
    seed = int.from_bytes(hashlib.sha256(text.encode("utf-8")).digest()[:8], "little")
    vec = np.random.default_rng(seed).standard_normal(dim).astype(np.float32)
    return vec / np.linalg.norm(vec)


@dataclass
class RecordedRequest:
    path: str
    body: Any
    headers: dict[str, str]
    at: float = field(default_factory=time.monotonic)


class _Handler(BaseHTTPRequestHandler):
    server_version = "FakeOpenAI/1.0"
    protocol_version = "HTTP/1.1"

    # silence the default stderr access log
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass

    @property
    def fake(self) -> "FakeOpenAI":
        return self.server.fake  # type: ignore[attr-defined]

    def _send(self, status: int, payload: bytes, content_type: str = "application/json",
              extra_headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        for key, value in (extra_headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        try:
            self.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):  # client gave up (timeout test)
            pass

    def _send_json(self, status: int, obj: Any, extra_headers: dict[str, str] | None = None) -> None:
        self._send(status, json.dumps(obj).encode("utf-8"), extra_headers=extra_headers)

    def _error(self, status: int, message: str, kind: str = "server_error",
               extra_headers: dict[str, str] | None = None) -> None:
        self._send_json(status, {"error": {"message": message, "type": kind, "param": None,
                                           "code": None}}, extra_headers)

    def do_GET(self) -> None:  # noqa: N802
        if self.path.rstrip("/") == "/v1/models":
            self._send_json(200, {"object": "list", "data": [
                {"id": m, "object": "model", "created": 0, "owned_by": "fake"}
                for m in ("text-embedding-3-small", "gpt-4o-mini")]})
        else:
            self._error(404, f"unknown path {self.path}", "invalid_request_error")

    def do_POST(self) -> None:  # noqa: N802
        fake = self.fake
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else None
        except json.JSONDecodeError:
            body = None
        path = self.path.split("?", 1)[0].rstrip("/")
        fake._record(RecordedRequest(path, body, {k.lower(): v for k, v in self.headers.items()}))

        delay = fake._take_delay()
        if delay:
            time.sleep(delay)

        if fake.require_key is not None:
            if self.headers.get("Authorization") != f"Bearer {fake.require_key}":
                sent = (self.headers.get("Authorization") or "").removeprefix("Bearer ")
                self._error(401, fake.auth_error.replace("{key}", sent), "invalid_request_error")
                return

        action = fake._take_injected()
        if action is not None:
            kind, status, retry_after = action
            if kind == "malformed":
                self._send(200, b'{"object": "list", "data": [ this is not json',
                           content_type="application/json")
            else:
                headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
                label = "rate_limit_exceeded" if status == 429 else "server_error"
                self._error(status, f"injected failure (HTTP {status})", label, headers)
            return

        if not isinstance(body, dict):
            self._error(400, "request body must be a JSON object", "invalid_request_error")
            return
        if path == "/v1/embeddings":
            self._embeddings(body)
        elif path == "/v1/chat/completions":
            self._chat(body)
        else:
            self._error(404, f"unknown path {self.path}", "invalid_request_error")

    def _embeddings(self, body: dict) -> None:
        fake = self.fake
        inputs = body.get("input")
        if isinstance(inputs, str):
            inputs = [inputs]
        if not isinstance(inputs, list) or not inputs or not all(isinstance(t, str) for t in inputs):
            self._error(400, "'input' must be a non-empty string or list of strings",
                        "invalid_request_error")
            return
        if any(t == "" for t in inputs):
            self._error(400, "'input' cannot contain empty strings", "invalid_request_error")
            return
        dim = int(body.get("dimensions") or fake.embedding_dim)
        fmt = body.get("encoding_format") or "float"
        data = []
        for i, text in enumerate(inputs):
            vec = fake_vector(text, dim)
            if fmt == "base64":
                emb: Any = base64.b64encode(vec.astype("<f4").tobytes()).decode("ascii")
            else:
                emb = [float(x) for x in vec]
            data.append({"object": "embedding", "index": i, "embedding": emb})
        if fake.shuffle_embeddings:  # the API does not promise order; clients must sort by index
            data.reverse()
        tokens = sum(max(1, len(t) // 4) for t in inputs)
        self._send_json(200, {"object": "list", "data": data, "model": body.get("model", ""),
                              "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})

    def _chat(self, body: dict) -> None:
        fake = self.fake
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            self._error(400, "'messages' must be a non-empty list", "invalid_request_error")
            return
        reply = fake.chat_reply
        content = reply(messages, body) if callable(reply) else str(reply)
        self._send_json(200, {
            "id": f"chatcmpl-fake-{len(fake.requests)}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model", "fake-model"),
            "choices": [{"index": 0, "finish_reason": "stop", "logprobs": None,
                         "message": {"role": "assistant", "content": content, "refusal": None}}],
            "usage": {"prompt_tokens": 1, "completion_tokens": max(1, len(content) // 4),
                      "total_tokens": 1 + max(1, len(content) // 4)},
        })


class FakeOpenAI:
    """An OpenAI-compatible server on ``127.0.0.1:<free port>``; see the module docstring."""

    def __init__(self, *, embedding_dim: int = 1536,
                 chat_reply: str | Callable[[list, dict], str] = "OK",
                 delay_s: float = 0.0, require_key: str | None = None,
                 shuffle_embeddings: bool = False, auth_error: str = "Incorrect API key provided.") -> None:
        self.embedding_dim = embedding_dim
        self.chat_reply = chat_reply
        self.delay_s = delay_s
        self.require_key = require_key
        self.auth_error = auth_error
        self.shuffle_embeddings = shuffle_embeddings
        self.requests: list[RecordedRequest] = []
        self._injected: list[tuple[str, int, int | None]] = []
        self._delays: list[float] = []
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- failure injection -------------------------------------------------
    def fail_next(self, n: int, status: int = 500, retry_after: int | None = None) -> None:
        """The next ``n`` requests (any endpoint) answer HTTP ``status``."""
        with self._lock:
            self._injected.extend([("status", status, retry_after)] * n)

    def malformed_next(self, n: int = 1) -> None:
        """The next ``n`` requests answer 200 with a body that is not valid JSON."""
        with self._lock:
            self._injected.extend([("malformed", 200, None)] * n)

    def slow_next(self, n: int, seconds: float) -> None:
        """The next ``n`` requests sleep ``seconds`` before answering (then ``delay_s`` applies again)."""
        with self._lock:
            self._delays.extend([float(seconds)] * n)

    def _take_delay(self) -> float:
        with self._lock:
            return self._delays.pop(0) if self._delays else float(self.delay_s)

    def reset(self) -> None:
        with self._lock:
            self._injected.clear()
            self._delays.clear()
            self.requests.clear()
        self.delay_s = 0.0

    def _take_injected(self) -> tuple[str, int, int | None] | None:
        with self._lock:
            return self._injected.pop(0) if self._injected else None

    def _record(self, req: RecordedRequest) -> None:
        with self._lock:
            self.requests.append(req)

    def requests_to(self, path: str) -> list[RecordedRequest]:
        with self._lock:
            return [r for r in self.requests if r.path == path.rstrip("/")]

    # -- lifecycle ------------------------------------------------------------
    @property
    def port(self) -> int:
        assert self._httpd is not None, "server not started"
        return self._httpd.server_address[1]

    @property
    def base_url(self) -> str:
        """What to put in ``OPENAI_BASE_URL`` (ends in ``/v1``)."""
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> "FakeOpenAI":
        httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        httpd.daemon_threads = True
        httpd.fake = self  # type: ignore[attr-defined]
        self._httpd = httpd
        self._thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="fake-openai", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> "FakeOpenAI":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


@pytest.fixture
def fake_openai_server(monkeypatch):
    """A running :class:`FakeOpenAI`, with ``OPENAI_BASE_URL``/``OPENAI_API_KEY`` pointing at it."""
    with FakeOpenAI() as server:
        monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
        monkeypatch.setenv("OPENAI_API_KEY", "sk-fake")
        yield server
