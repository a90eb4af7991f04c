"""Hostile or broken OpenAI-compatible servers: keys never leak, a hang is bounded.

Before the fix a 401 whose body echoed the key put the full key in the exception, the
fallback warning (log) and ``describe()``; a hanging server held a query for
``timeout x (retries + 1)`` plus backoff (85 s) before the local fallback.
"""

from __future__ import annotations

import logging
import time

import numpy as np
import pytest

from recsys.embed import get_embedder
from recsys.embed.base import Embedder, EmbeddingBackendError, redact
from recsys.embed.fallback import FallbackEmbedder
from recsys.embed.openai_backend import OpenAIEmbedder
from tests.fake_openai import FakeOpenAI

KEY = "sk-proj-SECRET0123456789abcdefXYZ"
ODD_KEY = "my-company-token-42"  # a configured key of no known shape


class Local(Embedder):
    """A stand-in local model: 4-d vectors, no download."""

    name = "local-test"
    dim = 4

    def __init__(self):
        super().__init__(cache=False)

    def _embed(self, texts, progress=False):
        return np.ones((len(texts), 4), np.float32)


def openai(server: FakeOpenAI, key: str = KEY, **kw) -> OpenAIEmbedder:
    return OpenAIEmbedder(key, base_url=server.base_url, cache=False, backoff_base=0.01, **kw)


def test_redact_removes_configured_and_key_shaped_secrets():
    text = f"bad key {KEY} and sk-other123456 and Bearer abcdefgh1234 and {ODD_KEY}"
    clean = redact(text, (ODD_KEY,))
    assert KEY not in clean and "sk-other123456" not in clean and ODD_KEY not in clean
    assert "abcdefgh1234" not in clean and clean.count("[redacted key]") == 4
    assert redact("sk-", ()) == "sk-" and redact("nothing secret", (None, "")) == "nothing secret"


@pytest.mark.parametrize("key", [KEY, ODD_KEY])
def test_a_401_echoing_the_key_never_leaks_it(key, caplog):
    with FakeOpenAI(require_key="the-right-key", auth_error="Incorrect API key provided: {key}. Check {key}") as server:
        wrapper = FallbackEmbedder(openai(server, key), Local)
        with caplog.at_level(logging.DEBUG):
            vectors = wrapper.encode(["what is an eigenvector"])
    assert vectors.shape == (1, 4) and wrapper.fell_back
    texts = [wrapper.fallback_reason, wrapper.describe(), repr(wrapper), caplog.text,
             *(r.getMessage() for r in caplog.records)]
    assert all(key not in text for text in texts)
    assert "HTTP 401" in wrapper.fallback_reason and "[redacted key]" in wrapper.fallback_reason


def test_the_backend_error_itself_is_redacted():
    with FakeOpenAI(require_key="x", auth_error="echo {key}") as server:
        with pytest.raises(EmbeddingBackendError) as info:
            openai(server).encode(["q"])
    assert KEY not in str(info.value) and "[redacted key]" in str(info.value)


def test_a_hanging_server_costs_at_most_the_total_bound():
    with FakeOpenAI(delay_s=5.0) as server:
        embedder = openai(server, timeout=20.0, max_retries=5, total_timeout=0.6)
        wrapper = FallbackEmbedder(embedder, Local)
        started = time.monotonic()
        vectors = wrapper.encode(["q"])
        elapsed = time.monotonic() - started
    assert vectors.shape == (1, 4) and wrapper.fell_back
    assert elapsed < 2.0, elapsed  # before: 20 s x 6 attempts
    assert "timeout" in wrapper.fallback_reason and "0.6s limit" in wrapper.fallback_reason


def test_the_total_bound_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv("RECSYS_OPENAI_TOTAL_TIMEOUT", "2.5")
    assert OpenAIEmbedder(KEY, cache=False).total_timeout == 2.5
    monkeypatch.setenv("RECSYS_OPENAI_TOTAL_TIMEOUT", "soon")
    assert OpenAIEmbedder(KEY, cache=False).total_timeout == 15.0
    monkeypatch.delenv("RECSYS_OPENAI_TOTAL_TIMEOUT")
    assert OpenAIEmbedder(KEY, cache=False).total_timeout == 15.0


def test_a_slow_first_attempt_still_leaves_a_retry_within_the_bound():
    with FakeOpenAI(embedding_dim=1536) as server:
        server.slow_next(1, 3.0)
        embedder = openai(server, timeout=0.3, max_retries=2, total_timeout=5.0)
        vectors = embedder.encode(["q"])
    assert vectors.shape == (1, 1536) and embedder.n_requests == 2


def test_a_server_error_body_becomes_one_plain_capped_line():
    class Noisy(Embedder):
        name = "noisy"
        dim = 4

        def __init__(self):
            super().__init__(cache=False)

        def _embed(self, texts, progress=False):
            raise EmbeddingBackendError("line one\n## heading\x1b[31m red " + "x" * 1000 + " sk-abcdef123456")

    wrapper = FallbackEmbedder(Noisy(), Local)
    wrapper.encode(["q"])
    reason = wrapper.fallback_reason
    assert "\n" not in reason and "\x1b" not in reason and len(reason) <= 300
    assert "sk-abcdef" not in reason


def test_get_embedder_with_no_key_reports_a_plain_reason(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.setattr("recsys.embed.multilingual_embedder", Local)
    wrapper = get_embedder("openai")
    assert wrapper.fallback_reason.startswith("OpenAI embeddings requested but no API key")
