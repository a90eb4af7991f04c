"""OpenAI ``text-embedding-3-small`` (1536-d) over HTTP, with batching, retries and timeouts.

The official ``openai`` client is used for transport, with its own retries
switched off (``max_retries=0``) so that *this* module owns the policy and can
report it: bounded exponential backoff with jitter on 429 / 5xx / timeouts /
connection errors, honouring ``Retry-After`` (capped), no retry on other 4xx
(a bad key or bad request will not get better by waiting).  Anything that
still fails is raised as :class:`EmbeddingBackendError` with a short, human
reason (never the API key: the configured key and anything shaped like ``sk-...``
are redacted from every message and log line, see :func:`recsys.embed.base.redact`),
which the fallback wrapper shows in the UI.

The whole attempt (connect, every retry and backoff) is bounded by ``total_timeout``
seconds (``$RECSYS_OPENAI_TOTAL_TIMEOUT``, default 15): a hanging server costs the
user at most that long before the local fallback answers, not minutes.

Batching respects both API limits: at most ``batch_size`` (default 256) inputs
per request and at most ~250k UTF-8 bytes per request (OpenAI caps a request
at 300k tokens, and a token is at least one byte).  Each input is cut to 8000
UTF-8 bytes (< 8191 tokens whatever the script).

``OPENAI_BASE_URL`` is honoured (tests point it at ``tests/fake_openai.py``).
"""

from __future__ import annotations

import base64
import logging
import os
import random
import threading
import time
from collections.abc import Iterator

import numpy as np

from recsys.embed.base import Embedder, EmbeddingBackendError, Progress, RedactingFilter, redact, report_progress

__all__ = ["OpenAIEmbedder", "OPENAI_MODEL", "OPENAI_DIM", "resolve_api_key"]

log = logging.getLogger(__name__)
#: keys configured in this process, redacted from this module's log lines whatever their shape
_KEYS: set[str] = set()
log.addFilter(RedactingFilter(lambda: tuple(_KEYS)))

OPENAI_MODEL = "text-embedding-3-small"
OPENAI_DIM = 1536
MAX_INPUT_BYTES = 8000
MAX_REQUEST_BYTES = 250_000
_RETRY_STATUS = {408, 409, 429, 500, 502, 503, 504}
DEFAULT_TOTAL_TIMEOUT = 15.0


def total_timeout_default() -> float:
    """``$RECSYS_OPENAI_TOTAL_TIMEOUT`` seconds if set to a positive number, else 15."""
    text = os.environ.get("RECSYS_OPENAI_TOTAL_TIMEOUT", "").strip()
    try:
        value = float(text) if text else DEFAULT_TOTAL_TIMEOUT
    except ValueError:
        log.warning("RECSYS_OPENAI_TOTAL_TIMEOUT=%r is not a number; using %gs", text, DEFAULT_TOTAL_TIMEOUT)
        return DEFAULT_TOTAL_TIMEOUT
    return value if value > 0 and value == value else DEFAULT_TOTAL_TIMEOUT


def resolve_api_key(api_key: str | None = None) -> str | None:
    """An explicit key (e.g. from ``st.secrets``) wins, else ``$OPENAI_API_KEY``; blank counts as none."""
    key = api_key if api_key is not None else os.environ.get("OPENAI_API_KEY")
    key = (key or "").strip()
    return key or None


class OpenAIEmbedder(Embedder):
    """``text-embedding-3-small`` via the OpenAI API (or any compatible ``base_url``)."""

    max_utf8_bytes = MAX_INPUT_BYTES

    def __init__(self, api_key: str | None = None, *, model: str = OPENAI_MODEL, dim: int = OPENAI_DIM,
                 base_url: str | None = None, batch_size: int = 256, timeout: float = 20.0,
                 max_retries: int = 3, backoff_base: float = 0.5, backoff_max: float = 8.0,
                 total_timeout: float | None = None, cache=True) -> None:
        key = resolve_api_key(api_key)
        if key is None:
            raise EmbeddingBackendError("no OpenAI API key (set OPENAI_API_KEY or pass api_key=)")
        if not 1 <= batch_size <= 2048:
            raise ValueError(f"batch_size must be in 1..2048 (API limit), got {batch_size}")
        self.model_id = model
        self.dim = int(dim)
        # the default width keeps the plain name; a shortened one (``dimensions=``) is another cache
        self._send_dimensions = not (model == OPENAI_MODEL and self.dim == OPENAI_DIM)
        self.name = f"openai:{model}" + (f"@{self.dim}" if self._send_dimensions else "")
        self.base_url = (base_url or os.environ.get("OPENAI_BASE_URL") or "").strip() or None
        self.batch_size = batch_size
        self.timeout = float(timeout)
        self.max_retries = int(max_retries)
        self.backoff_base = float(backoff_base)
        self.backoff_max = float(backoff_max)
        self.total_timeout = float(total_timeout) if total_timeout is not None else total_timeout_default()
        if not self.total_timeout > 0:
            raise ValueError(f"total_timeout must be above 0 seconds, got {total_timeout}")
        self._local = threading.local()  # the deadline of the encode call running in this thread
        self._api_key = key
        _KEYS.add(key)
        self._client = None
        self.n_requests = 0  # HTTP attempts made, retries included
        super().__init__(cache=cache)

    def describe(self) -> str:
        where = f" via {_redact_url(self.base_url)}" if self.base_url else ""
        return f"OpenAI {self.model_id} ({self.dim}-d){where}"

    # -- transport ----------------------------------------------------------------
    @property
    def client(self):
        if self._client is None:
            try:
                from openai import OpenAI
            except ImportError as exc:  # pragma: no cover - openai is a project dependency
                raise EmbeddingBackendError("the `openai` package is not installed") from exc
            self._client = OpenAI(api_key=self._api_key, base_url=self.base_url,
                                  timeout=self.timeout, max_retries=0)
        return self._client

    def _batches(self, texts: list[str]) -> Iterator[list[str]]:
        batch: list[str] = []
        size = 0
        for text in texts:
            nbytes = len(text.encode("utf-8"))
            if batch and (len(batch) >= self.batch_size or size + nbytes > MAX_REQUEST_BYTES):
                yield batch
                batch, size = [], 0
            batch.append(text)
            size += nbytes
        if batch:
            yield batch

    def _redact(self, text: object) -> str:
        return redact(text, (self._api_key,))

    def _remaining(self) -> float:
        deadline = getattr(self._local, "deadline", None)
        return float("inf") if deadline is None else deadline - time.monotonic()

    def _embed(self, texts: list[str], progress: Progress = False) -> np.ndarray:
        update, close = report_progress(progress, len(texts), "embedding (OpenAI)")
        parts = []
        self._local.deadline = time.monotonic() + self.total_timeout
        try:
            for batch in self._batches(texts):
                parts.append(self._request_with_retries(batch))
                update(len(batch))
        finally:
            self._local.deadline = None
            close()
        return np.concatenate(parts, axis=0)

    def _request_with_retries(self, batch: list[str]) -> np.ndarray:
        import openai

        last_reason = "unknown error"
        started = time.monotonic()
        for attempt in range(self.max_retries + 1):
            retry_after: float | None = None
            try:
                self.n_requests += 1
                return self._request(batch, timeout=min(self.timeout, max(self._remaining(), 0.01)))
            except openai.APITimeoutError:
                last_reason = f"timeout after {min(self.timeout, time.monotonic() - started):.3g}s"
                retryable = True
            except openai.APIStatusError as exc:
                status = exc.status_code
                last_reason = f"HTTP {status}: {self._redact(_short_message(exc))}"
                retryable = status in _RETRY_STATUS or status >= 500
                retry_after = _retry_after_seconds(exc)
            except openai.APIConnectionError as exc:
                last_reason = f"connection error: {type(exc.__cause__ or exc).__name__}"
                retryable = True
            except EmbeddingBackendError as exc:  # malformed response
                last_reason = self._redact(exc)
                retryable = False
            except Exception as exc:  # JSON decode errors and the like from the SDK
                last_reason = self._redact(f"bad response ({type(exc).__name__}: {str(exc)[:120]})")
                retryable = False
            if not retryable or attempt == self.max_retries:
                break
            delay = min(self.backoff_max, self.backoff_base * (2 ** attempt))
            delay *= 0.5 + random.random() / 2  # jitter: concurrent clients do not retry in lockstep
            if retry_after is not None:
                delay = max(delay, min(retry_after, self.backoff_max))
            if delay >= self._remaining():
                last_reason += f"; gave up after the {self.total_timeout:g}s limit for the whole attempt"
                break
            log.info("OpenAI embeddings: %s; retry %d/%d in %.2fs",
                     last_reason, attempt + 1, self.max_retries, delay)
            time.sleep(delay)
        raise EmbeddingBackendError(f"OpenAI embeddings failed after {attempt + 1} attempt(s): {last_reason}")

    def _request(self, batch: list[str], timeout: float | None = None) -> np.ndarray:
        extra = {"dimensions": self.dim} if self._send_dimensions else {}
        if timeout is not None:
            extra["timeout"] = timeout
        resp = self.client.embeddings.create(model=self.model_id, input=batch, encoding_format="float", **extra)
        data = getattr(resp, "data", None)
        if not isinstance(data, list) or len(data) != len(batch):
            got = len(data) if isinstance(data, list) else type(data).__name__
            raise EmbeddingBackendError(f"bad response: expected {len(batch)} embeddings, got {got}")
        out = np.zeros((len(batch), self.dim), dtype=np.float32)
        seen = set()
        for pos, item in enumerate(data):
            index = getattr(item, "index", pos)
            emb = getattr(item, "embedding", None)
            if isinstance(emb, str):  # base64 float32 (if a proxy ignores encoding_format)
                emb = np.frombuffer(base64.b64decode(emb), dtype="<f4")
            vec = np.asarray(emb, dtype=np.float32) if emb is not None else np.zeros(0, np.float32)
            if not isinstance(index, int) or not 0 <= index < len(batch) or index in seen:
                raise EmbeddingBackendError(f"bad response: embedding index {index!r}")
            if vec.shape != (self.dim,):
                raise EmbeddingBackendError(
                    f"bad response: embedding of length {vec.shape[0] if vec.ndim else 0}, expected {self.dim}")
            seen.add(index)
            out[index] = vec
        return out


def _redact_url(url: str) -> str:
    """Drop any ``user:password@`` part before showing a URL."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if "@" in parts.netloc:
        parts = parts._replace(netloc=parts.netloc.rsplit("@", 1)[1])
    return urlunsplit(parts)


def _short_message(exc) -> str:
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        err = body.get("error", body)
        if isinstance(err, dict) and err.get("message"):
            return str(err["message"])[:160]
    return str(getattr(exc, "message", exc))[:160]


def _retry_after_seconds(exc) -> float | None:
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None)
    if headers is None:
        return None
    value = headers.get("retry-after")
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None
