"""Embedding layer without any model: normalisation, input hygiene, cache arithmetic, fallback.

A stub embedder counts how many texts reach the "model", so the cache
behaviour can be checked exactly.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest

import recsys.embed as E
import recsys.embed.local as local_mod
from recsys.embed.base import Embedder, EmbeddingBackendError, l2_normalize
from recsys.embed.cache import EmbeddingCache, text_key
from recsys.embed.fallback import FallbackEmbedder
from recsys.embed.text import clean_text, prepare_texts, truncate_utf8


@pytest.fixture(autouse=True)
def _tmp_cache(tmp_path, monkeypatch):
    """Every test gets its own cache root, so nothing leaks between tests or into .cache/."""
    monkeypatch.setenv("RECSYS_CACHE_DIR", str(tmp_path / "cache"))


class CountingEmbedder(Embedder):
    """dim 3; vector = [len(text), number of 'a's, 1] (then normalised). Records every model call."""

    name = "stub-count"
    dim = 3

    def __init__(self, **kw):
        super().__init__(**kw)
        self.calls: list[list[str]] = []

    def _embed(self, texts, progress=False):
        self.calls.append(list(texts))
        return np.array([[len(t), t.count("a"), 1.0] for t in texts], dtype=np.float32)

    @property
    def n_embedded(self):
        return sum(len(c) for c in self.calls)


class FailingEmbedder(Embedder):
    name = "stub-fail"
    dim = 3

    def _embed(self, texts, progress=False):
        raise EmbeddingBackendError("HTTP 500: boom")


# ---------------------------------------------------------------------------------- maths


def test_l2_normalize_worked_example():
    # [3, 4] has norm sqrt(9 + 16) = 5  ->  [3/5, 4/5] = [0.6, 0.8]
    np.testing.assert_allclose(l2_normalize(np.array([[3.0, 4.0]])), [[0.6, 0.8]], rtol=1e-6)
    # a 1-d input stays 1-d; a zero row stays zero instead of NaN
    np.testing.assert_allclose(l2_normalize(np.array([0.0, 2.0])), [0.0, 1.0])
    out = l2_normalize(np.zeros((2, 3)))
    assert out.dtype == np.float32 and not np.isnan(out).any() and (out == 0).all()


def test_encode_returns_unit_float32_rows():
    emb = CountingEmbedder()
    X = emb.encode(["abc", "banana"])
    # "abc": [3, 1, 1] / sqrt(11); "banana": [6, 3, 1] / sqrt(46)
    assert X.dtype == np.float32 and X.shape == (2, 3)
    np.testing.assert_allclose(X[0], np.array([3, 1, 1]) / np.sqrt(11), rtol=1e-6)
    np.testing.assert_allclose(X[1], np.array([6, 3, 1]) / np.sqrt(46), rtol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(X, axis=1), 1.0, rtol=1e-6)


# ---------------------------------------------------------------------------------- input hygiene


@pytest.mark.parametrize("bad", ["", "   ", "\n\t \r", "\x00\x01", "\u00a0\u3000", "\u200b\ufeff"])
def test_empty_text_is_a_clear_value_error(bad):
    with pytest.raises(ValueError, match="empty or whitespace-only"):
        CountingEmbedder().encode([bad])


def test_empty_items_are_named_in_the_error():
    with pytest.raises(ValueError, match=r"2 of 4 texts.*#1, #3"):
        CountingEmbedder().encode(["ok", " ", "fine", ""])


def test_single_string_and_non_strings_are_refused():
    with pytest.raises(TypeError, match="not a single string"):
        CountingEmbedder().encode("hello")
    with pytest.raises(TypeError, match="text #1 is int"):
        CountingEmbedder().encode(["hello", 3])


def test_empty_list_gives_empty_matrix_without_model_call():
    emb = CountingEmbedder()
    X = emb.encode([])
    assert X.shape == (0, 3) and emb.calls == []


def test_cleaning_handles_emoji_markup_controls_and_other_scripts():
    raw = "<b>Hi</b>\x00\x07 there\n\n😀👩‍👩‍👧 Привет 日本語 \ud800 عربى\u202e"
    out = clean_text(raw)
    assert "\x00" not in out and "\x07" not in out and "\ud800" not in out
    assert "😀" in out and "👩‍👩‍👧" in out  # ZWJ sequences survive (format chars are kept)
    assert "<b>Hi</b>" in out and "Привет 日本語" in out and "  " not in out
    out.encode("utf-8")  # no lone surrogates left: must not raise


def test_long_text_is_truncated_safely():
    long = "word " * 2000 + "😀" * 3000  # 10,000 ASCII chars then 3,000 four-byte emoji
    # character cap (local backend style)
    assert len(clean_text(long, max_chars=4000)) <= 4000
    # byte cap (OpenAI style): never splits an emoji, stays under the cap
    cut = clean_text("😀" * 3000, max_utf8_bytes=8000)
    assert len(cut.encode("utf-8")) <= 8000 and cut == "😀" * 2000  # 8000 / 4 bytes = 2000 emoji
    assert truncate_utf8("aé", 2) == "a"  # 'é' is 2 bytes: dropped whole, not split
    X = CountingEmbedder().encode([long])
    assert X.shape == (1, 3) and np.isfinite(X).all()


def test_whitespace_variants_share_a_cache_entry():
    assert prepare_texts(["  a\n b  "]) == ["a b"]
    emb = CountingEmbedder()
    emb.encode(["a b"])
    emb.encode(["  a\n\tb "])
    assert emb.n_embedded == 1


# ---------------------------------------------------------------------------------- cache arithmetic


def test_cache_hit_miss_arithmetic():
    emb = CountingEmbedder()
    # 3 texts, 2 unique -> the model sees exactly ["apple", "kiwi"] in one call
    X1 = emb.encode(["apple", "kiwi", "apple"])
    assert emb.calls == [["apple", "kiwi"]]
    np.testing.assert_array_equal(X1[0], X1[2])
    assert (emb.last_stats.n_texts, emb.last_stats.n_unique, emb.last_stats.n_computed) == (3, 2, 2)
    # "kiwi" cached, "fig" new -> 1 more text embedded (total 3)
    emb.encode(["kiwi", "fig"])
    assert emb.calls[-1] == ["fig"] and emb.n_embedded == 3
    assert (emb.last_stats.n_cached, emb.last_stats.n_computed) == (1, 1)
    # a new embedder instance of the same model shares the cache -> 0 model calls
    other = CountingEmbedder()
    X2 = other.encode(["fig", "apple", "kiwi"])
    assert other.calls == [] and other.last_stats.n_cached == 3
    np.testing.assert_allclose(X2[1], X1[0])


def test_disk_cache_survives_a_new_process(tmp_path):
    """Simulate a restart: a fresh EmbeddingCache (empty LRU) on the same folder reads from disk."""
    folder = tmp_path / "vecs"
    first = CountingEmbedder(cache=EmbeddingCache("stub-count", 3, folder=folder))
    first.encode(["alpha", "beta"])
    fresh_cache = EmbeddingCache("stub-count", 3, folder=folder)
    assert len(fresh_cache.lru) == 0 and len(fresh_cache) == 2
    second = CountingEmbedder(cache=fresh_cache)
    second.encode(["beta", "alpha", "gamma"])
    assert second.calls == [["gamma"]]
    assert fresh_cache.hits_disk == 2 and fresh_cache.misses == 1


def test_cache_can_be_disabled():
    emb = CountingEmbedder(cache=False)
    emb.encode(["x"])
    emb.encode(["x"])
    assert emb.n_embedded == 2


def test_cache_rejects_wrong_dim_rows(tmp_path):
    cache = EmbeddingCache("stub-count", 3, folder=tmp_path / "c")
    with pytest.raises(ValueError, match="dim 2"):
        cache.put_many({"k": np.ones(2)})
    # a row stored by a 4-d model under the same folder is ignored, not misread
    EmbeddingCache("stub-count", 4, folder=tmp_path / "c").put_many({text_key("t"): np.ones(4)})
    assert EmbeddingCache("stub-count", 3, folder=tmp_path / "c").get_many([text_key("t")]) == {}


def test_concurrent_writers_share_one_cache(tmp_path):
    """8 threads, each with its own cache object (like separate sessions), write overlapping texts."""
    folder = tmp_path / "shared"
    texts = [f"item {i}" for i in range(40)]
    errors: list[BaseException] = []

    def worker(offset: int) -> None:
        try:
            emb = CountingEmbedder(cache=EmbeddingCache("stub-count", 3, folder=folder))
            emb.encode(texts[offset:offset + 20])
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(k * 5,)) for k in range(5)]  # offsets 0..20
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    # union of [0,20), [5,25), ..., [20,40) = all 40 texts, each stored once
    reader = EmbeddingCache("stub-count", 3, folder=folder)
    assert len(reader) == 40
    got = reader.get_many([text_key(t) for t in texts])
    expected = CountingEmbedder(cache=False).encode(texts)
    np.testing.assert_allclose(np.stack([got[text_key(t)] for t in texts]), expected, rtol=1e-6)


def test_cache_hits_never_load_the_local_model(monkeypatch):
    def boom(*a, **k):
        raise AssertionError("model must not be loaded on a cache hit")

    monkeypatch.setattr(local_mod, "load_minilm", boom)
    emb = E.LocalEmbedder()
    texts = ["already embedded", "me too"]
    vec = l2_normalize(np.arange(384 * 2, dtype=np.float32).reshape(2, 384) + 1)
    emb.cache.put_many({text_key(t): v for t, v in zip(texts, vec)})
    X = emb.encode(texts)
    np.testing.assert_allclose(X, vec, rtol=1e-6)
    # ...whereas a miss does try to load it (wrapped as a backend error)
    with pytest.raises(EmbeddingBackendError, match="must not be loaded"):
        emb.encode(["a new text"])


def test_progress_callback_reports_counts(monkeypatch):
    seen = []

    class Batched(CountingEmbedder):
        name = "stub-progress"

        def _embed(self, texts, progress=False):
            from recsys.embed.base import report_progress

            update, close = report_progress(progress, len(texts), "x")
            for t in texts:
                update(1)
            close()
            return super()._embed(texts)

    Batched().encode(["a", "b", "c"], progress=lambda done, total: seen.append((done, total)))
    assert seen == [(1, 3), (2, 3), (3, 3)]


# ---------------------------------------------------------------------------------- fallback wrapper


def test_fallback_wrapper_switches_and_reports():
    local = CountingEmbedder()
    wrapper = FallbackEmbedder(FailingEmbedder(), lambda: local)
    assert wrapper.name == "stub-fail" and not wrapper.fell_back
    X = wrapper.encode(["hello"])
    assert X.shape == (1, 3)
    assert wrapper.name == "stub-count" and wrapper.dim == 3 and wrapper.backend == "stub-count"
    assert "HTTP 500: boom" in wrapper.last_fallback_reason
    assert "fallback" in wrapper.describe()
    # sticky: the next call goes straight to the local model
    wrapper.encode(["again"])
    assert local.n_embedded == 2


def test_fallback_wrapper_does_not_hide_bad_input():
    wrapper = FallbackEmbedder(FailingEmbedder(), CountingEmbedder)
    with pytest.raises(ValueError):
        wrapper.encode(["  "])
    assert not wrapper.fell_back


def test_get_embedder_without_key(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    # the local default is multilingual: MiniLM (384) and USE multilingual v3 (512) concatenated
    auto = E.get_embedder("auto")
    assert auto.name == "minilm-l6-v2+use-multilingual-v3" and auto.dim == 384 + 512
    assert auto.last_fallback_reason is None and "no OpenAI API key" in auto.describe()
    forced = E.get_embedder("openai")
    assert forced.name == "minilm-l6-v2+use-multilingual-v3" and "no API key" in forced.last_fallback_reason
    local = E.get_embedder("local")
    assert isinstance(local, E.ConcatEmbedder) and [type(p) for p in local.parts] == [E.LocalEmbedder, E.UseEmbedder]
    assert isinstance(E.get_embedder("minilm"), E.LocalEmbedder)
    # blank keys count as missing
    assert E.get_embedder("auto", api_key="  ").name == "minilm-l6-v2+use-multilingual-v3"
    with pytest.raises(ValueError, match="Unknown embedding backend"):
        E.get_embedder("word2vec")


def test_get_embedder_with_key_prefers_openai(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    emb = E.get_embedder("auto", api_key="sk-test")
    assert emb.name == "openai:text-embedding-3-small" and emb.dim == 1536
    assert "sk-test" not in emb.describe() and "sk-test" not in repr(emb)
    monkeypatch.setenv("OPENAI_API_KEY", "sk-env")
    assert E.get_embedder().name == "openai:text-embedding-3-small"


def test_fallback_wrapper_delegates_other_attributes():
    local = CountingEmbedder()
    wrapper = FallbackEmbedder(None, lambda: local, note="test")
    assert wrapper.cache is local.cache and wrapper.calls is local.calls
    with pytest.raises(AttributeError):
        wrapper.no_such_attribute


def test_importing_the_package_is_cheap():
    import subprocess
    import sys

    code = ("import sys, recsys.embed as E; E.get_embedder('auto', api_key='k'); E.get_embedder('local'); "
            "print(sorted(m for m in ('torch', 'openai', 'transformers', 'tokenizers') if m in sys.modules))")
    from recsys.paths import PROJECT_ROOT

    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=PROJECT_ROOT)
    assert out.stdout.strip() == "[]"  # heavy libraries load on first uncached encode only
