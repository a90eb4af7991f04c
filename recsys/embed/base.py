"""The common embedder interface, and the caching/validation every backend shares.

An :class:`Embedder` turns a list of texts into an ``(n, dim)`` float32 array of
L2-normalised rows.  Unit rows matter downstream: cosine similarity becomes a
plain dot product, so FAISS inner-product indexes and ``X @ q`` give cosine
scores directly.

Subclasses implement only :meth:`Embedder._embed` (texts -> raw vectors, no
caching, no validation).  :meth:`Embedder.encode` does the rest, in this order:
clean/validate (ValueError for empty text), look up the memory LRU and the disk
cache by ``sha256(cleaned text)``, send only the *unique misses* to the
backend, normalise, store, and reassemble in input order.  Because the model is
only touched for misses, a fully cached call never loads the model.
"""

from __future__ import annotations

import logging
import re
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Union

import numpy as np

from recsys.embed.cache import EmbeddingCache, shared_cache, text_key
from recsys.embed.text import prepare_texts

__all__ = [
    "Embedder",
    "EmbeddingError",
    "EmbeddingBackendError",
    "EncodeStats",
    "Progress",
    "l2_normalize",
    "redact",
    "report_progress",
]

log = logging.getLogger(__name__)

#: ``progress`` may be a bool (tqdm bar on stderr) or a callback ``(done, total)``
#: that Streamlit pages can wire to ``st.progress``.
Progress = Union[bool, Callable[[int, int], None]]


#: anything shaped like an OpenAI-style secret key (``sk-...``, ``sk-proj-...``) or a bearer token
_KEY_SHAPES = re.compile(r"(sk-[A-Za-z0-9_\-]{6,}|(?<=Bearer )[A-Za-z0-9_\-.=]{8,})")
REDACTED = "[redacted key]"


def redact(text: object, secrets: Sequence[str | None] = ()) -> str:
    """``text`` with the given ``secrets`` and anything shaped like an API key replaced.

    Why here: server error bodies are untrusted and may echo the key a client sent (a
    401 saying "Incorrect API key provided: sk-..."); every message, log line and
    warning the embed package produces from outside text goes through this first.
    """
    out = str(text)
    for secret in secrets:
        if secret and len(secret) >= 4:
            out = out.replace(secret, REDACTED)
    return _KEY_SHAPES.sub(REDACTED, out)


class RedactingFilter(logging.Filter):
    """A logging filter that redacts key-shaped strings from a record's final message."""

    def __init__(self, secrets: Callable[[], Sequence[str | None]] = lambda: ()):
        super().__init__()
        self.secrets = secrets

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = redact(message, self.secrets())
        if clean != message:
            record.msg, record.args = clean, None
        return True


class EmbeddingError(RuntimeError):
    """Base class for embedding failures (other than bad input, which is ValueError/TypeError)."""


class EmbeddingBackendError(EmbeddingError):
    """A backend could not serve (network, HTTP error, bad response, model missing).

    The fallback wrapper catches this and switches to the local model.
    """


def l2_normalize(x: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """Row-wise L2 normalisation to float32; all-zero rows stay zero instead of becoming NaN.

    Worked example: ``[3, 4]`` has norm ``sqrt(9 + 16) = 5`` -> ``[0.6, 0.8]``.
    """
    x = np.asarray(x, dtype=np.float32)
    if x.ndim == 1:
        return l2_normalize(x[None, :], eps)[0]
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.maximum(norms, eps)).astype(np.float32, copy=False)


@dataclass
class EncodeStats:
    """What the last :meth:`Embedder.encode` call did (for the UI and tests)."""

    n_texts: int = 0
    n_unique: int = 0
    n_cached: int = 0
    n_computed: int = 0
    seconds: float = 0.0


def report_progress(progress: Progress, total: int, desc: str):
    """Return ``(update(n), close())`` for a bool/callable ``progress`` argument."""
    done = 0
    bar = None
    if progress is True and total > 0:
        from tqdm.auto import tqdm

        bar = tqdm(total=total, desc=desc, unit="text", leave=False)

    def update(n: int) -> None:
        nonlocal done
        done += n
        if bar is not None:
            bar.update(n)
        elif callable(progress):
            progress(done, total)

    def close() -> None:
        if bar is not None:
            bar.close()

    return update, close


class Embedder(ABC):
    """Text -> unit vectors.  See the module docstring for what :meth:`encode` guarantees.

    Class attributes a backend sets:

    * ``name``: stable id, also the cache namespace (``"minilm-l6-v2"``).
    * ``dim``: output width.
    * ``max_chars`` / ``max_utf8_bytes``: truncation applied during cleaning.
    """

    name: str = "embedder"
    dim: int = 0
    max_chars: int | None = None
    max_utf8_bytes: int | None = None

    def __init__(self, *, cache: bool | EmbeddingCache = True) -> None:
        self._cache_opt = cache
        self._cache: EmbeddingCache | None = cache if isinstance(cache, EmbeddingCache) else None
        self.last_stats = EncodeStats()

    # -- to implement -------------------------------------------------------------
    @abstractmethod
    def _embed(self, texts: list[str], progress: Progress = False) -> np.ndarray:
        """Embed cleaned, non-empty, unique texts; return ``(len(texts), dim)`` (need not be normalised)."""

    def describe(self) -> str:
        """One line for the UI."""
        return f"{self.name} ({self.dim}-d)"

    # -- shared machinery --------------------------------------------------------------
    @property
    def backend(self) -> str:
        """Name of the backend that serves (the wrapper overrides this)."""
        return self.name

    @property
    def cache(self) -> EmbeddingCache | None:
        if self._cache is None and self._cache_opt is True:
            self._cache = shared_cache(self.name, self.dim)
        return self._cache

    def prepare(self, texts: Sequence[str]) -> list[str]:
        """Clean and validate ``texts`` the way :meth:`encode` will (ValueError on empty text)."""
        return prepare_texts(texts, max_chars=self.max_chars, max_utf8_bytes=self.max_utf8_bytes)

    def encode(self, texts: Sequence[str], progress: Progress = False) -> np.ndarray:
        """Embed ``texts`` -> float32 ``(n, dim)``, rows L2-normalised, served from cache where possible.

        Raises ``ValueError`` for empty/whitespace-only texts, ``TypeError`` for
        non-string input, :class:`EmbeddingBackendError` when the backend fails.
        """
        start = time.perf_counter()
        cleaned = self.prepare(texts)
        out = np.zeros((len(cleaned), self.dim), dtype=np.float32)
        if not cleaned:
            self.last_stats = EncodeStats()
            return out
        keys = [text_key(t) for t in cleaned]
        unique: dict[str, str] = dict(zip(keys, cleaned))  # key -> text, first occurrence order
        cache = self.cache
        found = cache.get_many(unique) if cache is not None else {}
        todo_keys = [k for k in unique if k not in found]
        if todo_keys:
            raw = self._embed([unique[k] for k in todo_keys], progress)
            vecs = self._check_output(raw, len(todo_keys))
            fresh = dict(zip(todo_keys, vecs))
            if cache is not None:
                cache.put_many(fresh)
            found.update(fresh)
        for i, key in enumerate(keys):
            out[i] = found[key]
        self.last_stats = EncodeStats(
            n_texts=len(cleaned), n_unique=len(unique), n_cached=len(unique) - len(todo_keys),
            n_computed=len(todo_keys), seconds=time.perf_counter() - start)
        return out

    def _check_output(self, raw: np.ndarray, n: int) -> np.ndarray:
        arr = np.asarray(raw, dtype=np.float32)
        if arr.shape != (n, self.dim):
            raise EmbeddingBackendError(
                f"{self.name} returned shape {arr.shape}, expected ({n}, {self.dim})")
        if not np.isfinite(arr).all():
            raise EmbeddingBackendError(f"{self.name} returned non-finite values")
        return l2_normalize(arr)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name} dim={self.dim}>"
