"""Text embeddings: local multilingual (MiniLM + USE, 896-d, offline) or OpenAI text-embedding-3-small (1536-d).

The local default is all-MiniLM-L6-v2 (:mod:`recsys.embed.local`, English) concatenated
with USE multilingual v3 (:mod:`recsys.embed.usem`, 16 languages) by
:class:`~recsys.embed.combined.ConcatEmbedder`: the best of the measured encoders on our
validation split once DCDT is trained on it (``docs/results/videos/encoders.md``).
``"minilm"`` keeps the English-only MiniLM alone.

Use :func:`get_embedder`; every embedder has ``.name``, ``.dim``,
``.encode(texts, progress=False) -> float32 (n, dim)`` with unit rows, and
``.describe()``.  Results are cached on disk per (model, sha256(text)), so a
catalog is embedded once; cached texts never load the model.

>>> emb = get_embedder("local")                       # doctest: +SKIP
>>> X = emb.encode(["eigenvalues of a matrix"])       # doctest: +SKIP
>>> X.shape                                           # doctest: +SKIP
(1, 384)

"auto"/"openai" return a :class:`FallbackEmbedder`: OpenAI when a key is
available (``api_key=`` or ``$OPENAI_API_KEY``; ``$OPENAI_BASE_URL`` honoured),
falling back to the local model on failure with ``last_fallback_reason`` set.
Importing this package is cheap: torch/transformers/openai load on first use.
"""

from __future__ import annotations

from typing import Any

from recsys.embed.base import (
    Embedder,
    EmbeddingBackendError,
    EmbeddingError,
    EncodeStats,
    l2_normalize,
)
from recsys.embed.combined import ConcatEmbedder
from recsys.embed.fallback import FallbackEmbedder
from recsys.embed.local import MINILM_SHA256, LocalEmbedder, ModelIntegrityError
from recsys.embed.openai_backend import OpenAIEmbedder, resolve_api_key
from recsys.embed.usem import UseEmbedder

__all__ = [
    "BACKENDS",
    "ConcatEmbedder",
    "Embedder",
    "EmbeddingBackendError",
    "EmbeddingError",
    "EncodeStats",
    "FallbackEmbedder",
    "LocalEmbedder",
    "MINILM_SHA256",
    "ModelIntegrityError",
    "OpenAIEmbedder",
    "UseEmbedder",
    "get_embedder",
    "l2_normalize",
    "multilingual_embedder",
]

BACKENDS = ("auto", "local", "minilm", "openai")


def multilingual_embedder() -> ConcatEmbedder:
    """The local default: MiniLM (English) and USE multilingual v3, concatenated (896-d, name ``minilm-l6-v2+use-multilingual-v3``)."""
    return ConcatEmbedder(LocalEmbedder(), UseEmbedder())


def get_embedder(backend: str = "auto", api_key: str | None = None, **openai_options: Any):
    """Build an embedder.

    * ``"local"``: :func:`multilingual_embedder` (MiniLM + USE multilingual, 896-d).
    * ``"minilm"``: :class:`LocalEmbedder` alone (MiniLM, 384-d, English only).
    * ``"openai"``: OpenAI text-embedding-3-small, falling back to local (with a
      logged warning and ``last_fallback_reason``) if there is no key or it fails.
    * ``"auto"``: OpenAI if a key is available, else local (no warning: that
      is the expected default; ``note`` says why).

    ``openai_options`` go to :class:`OpenAIEmbedder` (``timeout``,
    ``max_retries``, ``batch_size``, ``base_url``, ``backoff_base``...).
    Construction never touches the network or loads a model.
    """
    choice = (backend or "auto").strip().lower()
    if choice not in BACKENDS:
        raise ValueError(f"Unknown embedding backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if choice == "local":
        return multilingual_embedder()
    if choice == "minilm":
        return LocalEmbedder()
    key = resolve_api_key(api_key)
    if key is None:
        if choice == "openai":
            return FallbackEmbedder(
                None, multilingual_embedder,
                reason="OpenAI embeddings requested but no API key is set (OPENAI_API_KEY)")
        return FallbackEmbedder(None, multilingual_embedder, note="no OpenAI API key; using the local model")
    try:
        primary = OpenAIEmbedder(key, **openai_options)
    except EmbeddingBackendError as exc:
        return FallbackEmbedder(None, multilingual_embedder, reason=str(exc))
    return FallbackEmbedder(primary, multilingual_embedder)
