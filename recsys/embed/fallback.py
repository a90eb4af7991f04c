"""An embedder that prefers OpenAI and falls back to the local model, visibly.

Why sticky: once the wrapper has fallen back it keeps serving the local model.
Mixing 1536-d OpenAI vectors and 384-d MiniLM vectors in one index would be
meaningless (and crash on shape), so a caller that embedded its catalog through
this wrapper and then queries through it always gets vectors from one model;
``name``/``dim`` always say which (compare ``embedder.name`` with the name
stored beside an index before searching it).

``last_fallback_reason`` (alias ``fallback_reason``) says why the fallback happened
(missing key, timeout, HTTP 500 after retries, malformed response...), a warning is
logged, and ``describe()`` includes the reason so the UI can show it. The reason is
plain, redacted text: one line, at most 300 characters, API keys replaced (server
error bodies may echo the key); pages still show it as plain text, never Markdown.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence

import numpy as np

from recsys.embed.base import Embedder, Progress, RedactingFilter, redact

__all__ = ["FallbackEmbedder"]

log = logging.getLogger(__name__)
log.addFilter(RedactingFilter())

#: longest fallback reason kept (server bodies can be long)
MAX_REASON = 300


def plain_reason(text: object, secrets=()) -> str:
    """One line of redacted text: control characters and newlines become spaces, capped in length."""
    clean = redact(text, secrets)
    clean = "".join(ch if ch.isprintable() else " " for ch in clean)
    clean = " ".join(clean.split())
    return clean if len(clean) <= MAX_REASON else clean[: MAX_REASON - 1] + "…"


class FallbackEmbedder:
    """Serve with ``primary``; on failure switch (for good) to ``fallback_factory()``.

    ``primary=None`` means "serve locally from the start"; pass
    ``reason`` to record why (e.g. "OpenAI requested but no API key").
    Bad input (``ValueError``/``TypeError``) is the caller's problem and is
    re-raised, never a reason to fall back.
    """

    def __init__(self, primary: Embedder | None, fallback_factory: Callable[[], Embedder], *,
                 reason: str | None = None, note: str | None = None) -> None:
        self.primary = primary
        self._factory = fallback_factory
        self._fallback: Embedder | None = None
        self._lock = threading.Lock()
        self.last_fallback_reason: str | None = None
        #: why this backend was chosen when no fallback happened (e.g. "no OpenAI key")
        self.note = note
        if primary is None:
            self._switch(reason, warn=reason is not None)

    # -- which backend serves --------------------------------------------------
    @property
    def active(self) -> Embedder:
        if self._fallback is not None:
            return self._fallback
        assert self.primary is not None
        return self.primary

    @property
    def fallback_reason(self) -> str | None:
        """Why the local model serves (plain, redacted, one line), or ``None`` if it does not."""
        return self.last_fallback_reason

    @property
    def fell_back(self) -> bool:
        return self.last_fallback_reason is not None

    @property
    def backend(self) -> str:
        return self.active.name

    @property
    def name(self) -> str:
        return self.active.name

    @property
    def dim(self) -> int:
        return self.active.dim

    @property
    def last_stats(self):
        return self.active.last_stats

    def __getattr__(self, attr: str):
        """Anything else (``cache``, ``model_dir``, ``batch_size``...) comes from the serving backend."""
        if attr.startswith("_") or attr in ("primary", "note", "last_fallback_reason", "fallback_reason"):
            raise AttributeError(attr)
        return getattr(self.active, attr)

    def prepare(self, texts: Sequence[str]) -> list[str]:
        return self.active.prepare(texts)

    def _switch(self, reason: str | None, *, warn: bool = True) -> Embedder:
        with self._lock:
            if self._fallback is None:
                self._fallback = self._factory()
                if reason is not None:
                    self.last_fallback_reason = plain_reason(reason, self._secrets())
                    reason = self.last_fallback_reason
                if warn:
                    log.warning("embeddings: falling back to %s: %s", self._fallback.name, reason)
            return self._fallback

    def _secrets(self) -> tuple[str, ...]:
        key = getattr(self.primary, "_api_key", None)
        return (key,) if key else ()

    def encode(self, texts: Sequence[str], progress: Progress = False) -> np.ndarray:
        if self._fallback is None:
            primary = self.active
            try:
                return primary.encode(texts, progress=progress)
            except (ValueError, TypeError):
                raise
            except Exception as exc:  # noqa: BLE001 - any backend failure means "use local"
                reason = f"{primary.name} failed: {exc}"
                self._switch(reason)
        return self._fallback.encode(texts, progress=progress)

    def describe(self) -> str:
        text = self.active.describe()
        if self.last_fallback_reason:
            text += f" [fallback: {self.last_fallback_reason}]"
        elif self.note:
            text += f" [{self.note}]"
        return text

    def __repr__(self) -> str:
        extra = f" fallback={self.last_fallback_reason!r}" if self.last_fallback_reason else ""
        return f"<FallbackEmbedder serving {self.name} dim={self.dim}{extra}>"
