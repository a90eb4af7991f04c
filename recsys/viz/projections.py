"""2-D projections of embedding sets (PCA, UMAP, t-SNE), seeded sampling, and a disk cache.

Why three methods: PCA is linear, instant and *transformable* (a query vector lands
exactly where the same linear map sends it), so the explorer shows it at once.
UMAP (McInnes et al., 2018) keeps local neighbourhoods and global layout better and
can also ``transform`` new points, but its first fit in a process compiles numba
code for about a minute, so it runs in the background. t-SNE (van der Maaten &
Hinton, 2008) gives the crispest clusters but has no transform: overlays on a t-SNE
map are placed at the weighted mean of their nearest neighbours' positions.

Fitted projections are cached under ``cache_dir("projections")`` keyed by the
source's fingerprint and the parameters, so a rerun, another browser tab or a
restarted server reuses them. The cache holds plain arrays only (``.npz`` through
:mod:`recsys.artifacts`, never pickle: a planted cache file must not run code): the
coordinates, PCA's mean and components (its transform is that linear map), and the
fitted vectors. A fitted UMAP object cannot be stored without pickle, so a UMAP map
read back from disk places new points like t-SNE does (by neighbours); the process
that fitted it keeps the object in memory and uses UMAP's own ``transform``. Old
``.pkl`` entries are never opened; a damaged entry is dropped and refitted. Background jobs (:class:`ProjectionJobs`) run in a
thread of the calling process; the page polls :meth:`ProjectionJobs.state`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from recsys.artifacts import ArtifactError, load_arrays, save_arrays
from recsys.paths import cache_dir

log = logging.getLogger(__name__)

METHODS = ("pca", "umap", "tsne")
#: default parameters per method (the page exposes a few of them)
DEFAULT_PARAMS: dict[str, dict[str, Any]] = {
    "pca": {},
    "umap": {"n_neighbors": 15, "min_dist": 0.1, "metric": "cosine"},
    "tsne": {"perplexity": 30.0, "metric": "cosine", "max_iter": 1000},
}


def fingerprint_array(x: np.ndarray) -> str:
    """A short content hash of an array (shape, dtype and bytes), used in cache keys."""
    x = np.ascontiguousarray(x)
    digest = hashlib.sha1(f"{x.shape}|{x.dtype}".encode())
    digest.update(x.tobytes())
    return digest.hexdigest()[:16]


def sample_indices(n: int, max_points: int, seed: int = 0) -> np.ndarray:
    """Sorted indices of a seeded uniform sample of ``min(n, max_points)`` rows out of ``n``.

    Sorted so the sample keeps the source's row order (colours and tables line up).
    """
    if max_points <= 0:
        raise ValueError(f"max_points must be positive, got {max_points}")
    if n <= max_points:
        return np.arange(n)
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n, size=max_points, replace=False))


@dataclass
class Projection:
    """A fitted 2-D projection: the coordinates of the fitted rows and, when possible, a transform."""

    method: str
    coords: np.ndarray  # (n, 2) float32
    params: dict[str, Any] = field(default_factory=dict)
    model: Any = None  # PCA / UMAP object with .transform; None for t-SNE
    fit_vectors: np.ndarray | None = None  # kept for t-SNE's neighbour-based placement
    seconds: float = 0.0

    @property
    def can_transform(self) -> bool:
        return self.model is not None

    def transform(self, vectors: np.ndarray, k: int = 10) -> np.ndarray:
        """2-D positions of new vectors in this projection.

        PCA and UMAP use their own ``transform``. t-SNE has none, so a new point is put
        at the similarity-weighted mean of the positions of its ``k`` nearest fitted
        rows (cosine), which is where t-SNE's attraction term would pull it.
        """
        vectors = np.atleast_2d(np.asarray(vectors, dtype=np.float32))
        if isinstance(self.model, LinearMap):
            return self.model.transform(vectors)
        if self.model is not None:
            return np.asarray(self.model.transform(vectors), dtype=np.float32)
        if self.fit_vectors is None:
            raise ValueError(f"this {self.method} projection cannot place new points")
        base = _unit(self.fit_vectors)
        sims = _unit(vectors) @ base.T
        k = min(k, base.shape[0])
        top = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        weights = np.clip(np.take_along_axis(sims, top, axis=1), 1e-6, None)
        weights /= weights.sum(axis=1, keepdims=True)
        return np.einsum("nk,nkd->nd", weights, self.coords[top]).astype(np.float32)


@dataclass
class LinearMap:
    """PCA's transform as plain arrays: ``(x - mean) @ components.T`` (what sklearn's PCA does unwhitened)."""

    mean: np.ndarray
    components: np.ndarray

    def transform(self, vectors: np.ndarray) -> np.ndarray:
        return ((np.asarray(vectors, np.float32) - self.mean) @ self.components.T).astype(np.float32)


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def fit_projection(vectors: np.ndarray, method: str = "pca", seed: int = 0, **params: Any) -> Projection:
    """Fit ``method`` on ``vectors`` (n, d) and return the 2-D :class:`Projection`."""
    if method not in METHODS:
        raise ValueError(f"unknown projection {method!r}; choose one of {', '.join(METHODS)}")
    x = np.asarray(vectors, dtype=np.float32)
    if x.ndim != 2 or x.shape[0] < 3:
        raise ValueError(f"need a 2-D array with at least 3 rows to project, got shape {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError("vectors contain NaN or infinite values")
    merged = {**DEFAULT_PARAMS[method], **params}
    started = time.perf_counter()
    if method == "pca":
        from sklearn.decomposition import PCA

        pca = PCA(n_components=2, random_state=seed).fit(x)
        model = LinearMap(pca.mean_.astype(np.float32), pca.components_.astype(np.float32))
        projection = Projection("pca", model.transform(x), merged, model)
    elif method == "umap":
        import umap  # imported lazily: it pulls numba

        n_neighbors = int(min(merged["n_neighbors"], x.shape[0] - 1))
        model = umap.UMAP(
            n_components=2, n_neighbors=n_neighbors, min_dist=float(merged["min_dist"]),
            metric=merged["metric"], random_state=seed, n_jobs=1,
        )
        coords = model.fit_transform(x)
        projection = Projection("umap", np.asarray(coords, dtype=np.float32), merged, model, fit_vectors=x)
    else:
        from sklearn.manifold import TSNE

        perplexity = float(min(merged["perplexity"], max(1.0, (x.shape[0] - 1) / 3)))
        init = "pca" if merged["metric"] == "euclidean" else "random"
        model = TSNE(n_components=2, perplexity=perplexity, metric=merged["metric"], init=init, random_state=seed,
                     max_iter=int(merged["max_iter"]))
        coords = model.fit_transform(x)
        projection = Projection("tsne", np.asarray(coords, dtype=np.float32), merged, None, fit_vectors=x)
    projection.seconds = time.perf_counter() - started
    log.info("%s projection of %s in %.1fs", method, x.shape, projection.seconds)
    return projection


# ---------------------------------------------------------------------------------------------
# disk cache
# ---------------------------------------------------------------------------------------------
def projection_key(fingerprint: str, method: str, seed: int = 0, **params: Any) -> str:
    """Cache key of a projection: the data's fingerprint, the method, the seed and the parameters."""
    merged = {**DEFAULT_PARAMS.get(method, {}), **params}
    blob = json.dumps({"fp": fingerprint, "method": method, "seed": seed, "params": merged}, sort_keys=True)
    return f"{method}-{hashlib.sha1(blob.encode()).hexdigest()[:16]}"


#: cache file suffix; ``.pkl`` files of the old format are never opened
CACHE_SUFFIX = ".npz"
#: projections fitted by this process, with their live model objects (UMAP keeps its transform)
_MEMORY: dict[tuple[str, str], Projection] = {}


def _cache_path(key: str, root: Path | None = None) -> Path:
    return (Path(root) if root else cache_dir("projections")) / f"{key}{CACHE_SUFFIX}"


def save_projection(key: str, projection: Projection, root: Path | None = None) -> Path:
    """Store ``projection`` as plain arrays (atomic); see the module docstring for what is kept."""
    path = _cache_path(key, root)
    arrays = {"coords": projection.coords, "meta": np.array(json.dumps({
        "method": projection.method, "params": projection.params, "seconds": projection.seconds}))}
    if isinstance(projection.model, LinearMap):
        arrays.update(mean=projection.model.mean, components=projection.model.components)
    elif projection.fit_vectors is not None:
        arrays["fit_vectors"] = projection.fit_vectors
    save_arrays(path, **arrays)
    _MEMORY[(str(path), key)] = projection
    return path


def load_projection(key: str, root: Path | None = None) -> Projection | None:
    """The cached projection for ``key``, or ``None`` (a damaged or foreign entry is removed and ignored)."""
    path = _cache_path(key, root)
    if (str(path), key) in _MEMORY and path.exists():
        return _MEMORY[(str(path), key)]
    if not path.exists():
        return None
    try:
        return _from_arrays(load_arrays(path))
    except (ArtifactError, KeyError, ValueError, TypeError) as error:
        log.warning("dropping unreadable projection cache %s: %s", path, error)
        path.unlink(missing_ok=True)
        return None


def _from_arrays(arrays: dict[str, np.ndarray]) -> Projection:
    """Rebuild a :class:`Projection` from its cached arrays, checking shapes (the file is untrusted)."""
    meta = json.loads(str(arrays["meta"]))
    if not isinstance(meta, dict) or meta.get("method") not in METHODS:
        raise ValueError("not a projection cache entry")
    coords = np.asarray(arrays["coords"], np.float32)
    if coords.ndim != 2 or coords.shape[1] != 2:
        raise ValueError(f"coordinates of shape {coords.shape}")
    model, fit_vectors = None, None
    if "components" in arrays:
        model = LinearMap(np.asarray(arrays["mean"], np.float32), np.asarray(arrays["components"], np.float32))
        if model.components.shape[0] != 2 or model.mean.shape != (model.components.shape[1],):
            raise ValueError("PCA arrays of inconsistent shapes")
    elif "fit_vectors" in arrays:
        fit_vectors = np.asarray(arrays["fit_vectors"], np.float32)
        if fit_vectors.ndim != 2 or len(fit_vectors) != len(coords):
            raise ValueError("fitted vectors do not match the coordinates")
    params = meta.get("params") if isinstance(meta.get("params"), dict) else {}
    return Projection(meta["method"], coords, params, model, fit_vectors, float(meta.get("seconds", 0.0)))


def cached_projection(
    vectors: np.ndarray, method: str, seed: int = 0, fingerprint: str | None = None,
    root: Path | None = None, **params: Any,
) -> Projection:
    """Load the projection from the cache or fit and store it (blocking)."""
    key = projection_key(fingerprint or fingerprint_array(vectors), method, seed, **params)
    projection = load_projection(key, root)
    if projection is None:
        projection = fit_projection(vectors, method, seed, **params)
        save_projection(key, projection, root)
    return projection


class ProjectionJobs:
    """Fit slow projections in a background thread; results go to the disk cache.

    One worker thread: two UMAP fits at once would only fight over the same cores.
    ``state(key)`` is ``"done"``, ``"running"`` (queued or fitting), ``"failed: ..."``
    or ``"absent"``; a page submits once and polls on its next reruns.
    """

    def __init__(self, root: Path | None = None):
        self.root = root
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="projection")
        self._futures: dict[str, Future] = {}
        self._started: dict[str, float] = {}
        self._lock = threading.Lock()

    def submit(self, vectors: np.ndarray, method: str, seed: int = 0, fingerprint: str | None = None,
               **params: Any) -> str:
        """Start fitting unless cached or already under way; returns the cache key."""
        key = projection_key(fingerprint or fingerprint_array(vectors), method, seed, **params)
        with self._lock:
            if _cache_path(key, self.root).exists():
                return key
            future = self._futures.get(key)
            if future is not None and not (future.done() and future.exception() is not None):
                return key
            vectors = np.array(vectors, dtype=np.float32, copy=True)

            def work() -> str:
                save_projection(key, fit_projection(vectors, method, seed, **params), self.root)
                return key

            self._futures[key] = self._executor.submit(work)
            self._started[key] = time.time()
        return key

    def state(self, key: str) -> str:
        if _cache_path(key, self.root).exists():
            return "done"
        future = self._futures.get(key)
        if future is None:
            return "absent"
        if not future.done():
            return "running"
        error = future.exception()
        return f"failed: {type(error).__name__}: {error}" if error else "done"

    def elapsed(self, key: str) -> float:
        return time.time() - self._started[key] if key in self._started else 0.0

    def result(self, key: str) -> Projection | None:
        return load_projection(key, self.root)

    def wait(self, key: str, timeout: float | None = None) -> Projection | None:
        future = self._futures.get(key)
        if future is not None:
            future.result(timeout=timeout)
        return self.result(key)


_JOBS: ProjectionJobs | None = None
_JOBS_LOCK = threading.Lock()


def background_jobs() -> ProjectionJobs:
    """The process-wide job runner (shared by every session of a Streamlit server)."""
    global _JOBS
    with _JOBS_LOCK:
        if _JOBS is None:
            _JOBS = ProjectionJobs()
        return _JOBS
