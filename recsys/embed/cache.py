"""Disk + memory cache for text embeddings.

Why a cache at all: the catalog (thousands of synopses) is embedded once and
then reused by every page, CLI command and test run; only new queries reach
the model.  Why keyed by ``sha256(cleaned text)`` per model name: the same text
embedded by two models gives incomparable vectors, and hashing keeps keys short
whatever the text length.

Storage is one SQLite file per model under
``recsys.paths.cache_dir("embeddings", <model>)`` in WAL mode: many readers and
one writer at a time, each write an atomic transaction, so several Streamlit
sessions / CLI processes can fill the same cache concurrently without torn
files.  A lookup of a whole batch is one query per 500 keys, far cheaper than one
``.npy`` file per text.  If the database cannot be opened or written (read-only
disk, corruption), the cache logs a warning and degrades to memory-only rather
than failing the user's request.

A small in-process LRU sits in front for repeated queries (the search box).
"""

from __future__ import annotations

import hashlib
import logging
import re
import sqlite3
import threading
from collections import OrderedDict
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from recsys.paths import cache_dir

__all__ = ["EmbeddingCache", "LRU", "shared_cache", "text_key", "safe_model_dirname"]

log = logging.getLogger(__name__)

_SQL_BATCH = 500  # keep well under SQLite's bound-parameter limit


def text_key(text: str) -> str:
    """sha256 hex digest of the (already cleaned) text."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def safe_model_dirname(model_name: str) -> str:
    """``openai:text-embedding-3-small`` -> ``openai_text-embedding-3-small`` (a safe folder name)."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", model_name).strip("._")
    if not name:
        raise ValueError(f"model name {model_name!r} gives no usable cache folder name")
    return name


class LRU:
    """A tiny thread-safe LRU mapping ``key -> np.ndarray``."""

    def __init__(self, maxsize: int = 2048) -> None:
        self.maxsize = maxsize
        self._data: OrderedDict[str, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> np.ndarray | None:
        with self._lock:
            vec = self._data.get(key)
            if vec is not None:
                self._data.move_to_end(key)
            return vec

    def put(self, key: str, vec: np.ndarray) -> None:
        if self.maxsize <= 0:
            return
        with self._lock:
            self._data[key] = vec
            self._data.move_to_end(key)
            while len(self._data) > self.maxsize:
                self._data.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._data.clear()

    def __len__(self) -> int:
        return len(self._data)


class EmbeddingCache:
    """Vectors of one model, keyed by text hash: memory LRU in front of a SQLite (WAL) file.

    ``folder`` defaults to ``cache_dir("embeddings", <model>)``; ``persist=False``
    keeps only the LRU (tests, read-only deployments).
    """

    def __init__(self, model_name: str, dim: int, *, folder: Path | None = None,
                 persist: bool = True, lru_size: int = 2048) -> None:
        self.model_name = model_name
        self.dim = int(dim)
        self.lru = LRU(lru_size)
        self.persist = persist
        self.path: Path | None = None
        self.hits_memory = 0
        self.hits_disk = 0
        self.misses = 0
        if persist:
            folder = folder if folder is not None else cache_dir("embeddings", safe_model_dirname(model_name))
            folder.mkdir(parents=True, exist_ok=True)
            self.path = folder / "vectors.sqlite"
            self._init_db()

    # -- sqlite helpers -------------------------------------------------------
    def _connect(self) -> sqlite3.Connection:
        assert self.path is not None
        # A fresh connection per operation: cheap, and safe across Streamlit's threads.
        conn = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
        conn.execute("PRAGMA busy_timeout=30000")
        return conn

    def _init_db(self) -> None:
        try:
            conn = self._connect()
            try:
                conn.execute("PRAGMA journal_mode=WAL")
                conn.execute("CREATE TABLE IF NOT EXISTS vectors ("
                             "key TEXT PRIMARY KEY, dim INTEGER NOT NULL, vec BLOB NOT NULL)")
            finally:
                conn.close()
        except sqlite3.Error as exc:
            self._disable_disk(f"cannot open {self.path}: {exc}")

    def _disable_disk(self, why: str) -> None:
        log.warning("embedding cache for %s is memory-only: %s", self.model_name, why)
        self.persist = False

    # -- public API -----------------------------------------------------------
    def get_many(self, keys: Iterable[str]) -> dict[str, np.ndarray]:
        """Return the cached vectors among ``keys`` (memory first, then disk)."""
        keys = list(dict.fromkeys(keys))
        found: dict[str, np.ndarray] = {}
        missing: list[str] = []
        for key in keys:
            vec = self.lru.get(key)
            if vec is None:
                missing.append(key)
            else:
                found[key] = vec
        self.hits_memory += len(found)
        if missing and self.persist:
            try:
                conn = self._connect()
                try:
                    for start in range(0, len(missing), _SQL_BATCH):
                        chunk = missing[start:start + _SQL_BATCH]
                        marks = ",".join("?" * len(chunk))
                        rows = conn.execute(
                            f"SELECT key, dim, vec FROM vectors WHERE key IN ({marks})", chunk)
                        for key, dim, blob in rows:
                            if not isinstance(blob, bytes) or dim != self.dim or len(blob) != 4 * self.dim:
                                continue  # stale, foreign or planted row: treat as a miss
                            vec = np.frombuffer(blob, dtype="<f4").astype(np.float32)
                            if not np.isfinite(vec).all():
                                continue
                            found[key] = vec
                            self.lru.put(key, vec)
                            self.hits_disk += 1
                finally:
                    conn.close()
            except sqlite3.Error as exc:
                self._disable_disk(f"read failed: {exc}")
        self.misses += len(keys) - len(found)
        return found

    def put_many(self, items: dict[str, np.ndarray]) -> None:
        """Store vectors (one atomic transaction; concurrent writers simply wait their turn)."""
        if not items:
            return
        rows = []
        for key, vec in items.items():
            vec = np.ascontiguousarray(vec, dtype=np.float32).reshape(-1)
            if vec.shape[0] != self.dim:
                raise ValueError(f"vector for {key[:12]}... has dim {vec.shape[0]}, cache expects {self.dim}")
            self.lru.put(key, vec)
            rows.append((key, self.dim, vec.astype("<f4").tobytes()))
        if not self.persist:
            return
        try:
            conn = self._connect()
            try:
                conn.execute("BEGIN IMMEDIATE")
                conn.executemany("INSERT OR REPLACE INTO vectors (key, dim, vec) VALUES (?, ?, ?)", rows)
                conn.execute("COMMIT")
            finally:
                conn.close()
        except sqlite3.Error as exc:
            self._disable_disk(f"write failed: {exc}")

    def __len__(self) -> int:
        """Number of vectors on disk (or in memory when not persisting)."""
        if not self.persist:
            return len(self.lru)
        conn = self._connect()
        try:
            return int(conn.execute("SELECT COUNT(*) FROM vectors").fetchone()[0])
        finally:
            conn.close()

    def clear(self) -> None:
        self.lru.clear()
        if self.persist:
            conn = self._connect()
            try:
                conn.execute("DELETE FROM vectors")
            finally:
                conn.close()


_REGISTRY: dict[tuple[str, str], EmbeddingCache] = {}
_REGISTRY_LOCK = threading.Lock()


def shared_cache(model_name: str, dim: int) -> EmbeddingCache:
    """The process-wide cache for ``model_name`` (one LRU shared by every embedder of that model).

    Keyed by the resolved cache folder too, so tests that point
    ``RECSYS_CACHE_DIR`` somewhere else get a fresh cache.
    """
    folder = cache_dir("embeddings", safe_model_dirname(model_name))
    key = (model_name, str(folder.resolve()))
    with _REGISTRY_LOCK:
        cache = _REGISTRY.get(key)
        if cache is None or cache.dim != dim:
            cache = EmbeddingCache(model_name, dim, folder=folder)
            _REGISTRY[key] = cache
        return cache
