"""Clustering of embedding sets: K-means and Gaussian mixtures, with the elbow and silhouette curves.

Why both: K-means (Lloyd, 1982) assumes round, equally sized clusters and gives the
inertia whose "elbow" suggests k; a Gaussian mixture fits elliptical clusters of
different sizes and gives soft assignments. The silhouette score (Rousseeuw, 1987)
is a k-independent check of either: the mean over points of
``(b - a) / max(a, b)``, with ``a`` the mean distance to the own cluster and ``b``
to the nearest other cluster; near 1 is well separated, near 0 is overlapping.

Clusters are found in the original vector space (reduced to at most
``reduce_dims`` PCA dimensions to keep it fast), not in the 2-D map: the map is a
picture, the clusters should describe the embeddings themselves.

The fitting itself is :mod:`recsys.retrieval.clusters` (one K-means/GMM implementation
for the explorer and the anime recommender); this module keeps the explorer's checks,
its defaults (several K-means starts) and the silhouette.
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from recsys.retrieval.clusters import CLUSTER_METHODS, fit_clusters, kmeans_sweep

log = logging.getLogger(__name__)

__all__ = ["CLUSTER_METHODS", "cluster", "elbow_table", "reduce_for_clustering", "silhouette", "suggest_k"]


def reduce_for_clustering(vectors: np.ndarray, reduce_dims: int = 50, seed: int = 0) -> np.ndarray:
    """At most ``reduce_dims`` PCA dimensions of ``vectors`` (unchanged when already small)."""
    x = np.asarray(vectors, dtype=np.float32)
    if x.shape[1] <= reduce_dims or x.shape[0] <= reduce_dims:
        return x
    from sklearn.decomposition import PCA

    return PCA(n_components=reduce_dims, random_state=seed).fit_transform(x).astype(np.float32)


def _check_k(k: int, n: int) -> None:
    if k < 2:
        raise ValueError(f"k must be at least 2, got {k}")
    if k > n - 1:
        raise ValueError(f"k={k} needs at least {k + 1} points, got {n}")


def cluster(vectors: np.ndarray, k: int, method: str = "kmeans", seed: int = 0) -> np.ndarray:
    """Cluster labels ``0..k-1`` for each row of ``vectors``."""
    x = np.asarray(vectors, dtype=np.float32)
    if method not in CLUSTER_METHODS:
        raise ValueError(f"unknown clustering method {method!r}; choose one of {', '.join(CLUSTER_METHODS)}")
    _check_k(k, len(x))
    # four K-means starts: the explorer clusters a few thousand points once, quality over speed
    return fit_clusters(x, k, method, seed, n_init=4 if method == "kmeans" else 1).labels


def silhouette(vectors: np.ndarray, labels: np.ndarray, sample_size: int = 2000, seed: int = 0) -> float:
    """Mean silhouette (euclidean), on a seeded sample of ``sample_size`` points for speed; NaN for one cluster."""
    from sklearn.metrics import silhouette_score

    labels = np.asarray(labels)
    if len(np.unique(labels)) < 2:
        return float("nan")
    size = sample_size if len(labels) > sample_size else None
    return float(silhouette_score(vectors, labels, sample_size=size, random_state=seed))


def elbow_table(vectors: np.ndarray, ks=range(2, 13), seed: int = 0) -> pd.DataFrame:
    """K-means inertia and silhouette for each k: columns ``k, inertia, silhouette``.

    Inertia always falls with k; the elbow is where it stops falling fast. The
    silhouette peaks at the k that separates best; read the two together.
    """
    x = np.asarray(vectors, dtype=np.float32)
    fits = kmeans_sweep(x, [k for k in ks if 2 <= k <= len(x) - 1], seed, n_init=2)
    rows = [{"k": len(c.centers), "inertia": c.inertia, "silhouette": silhouette(x, c.labels, seed=seed)}
            for c in fits]
    return pd.DataFrame(rows, columns=["k", "inertia", "silhouette"])


def suggest_k(table: pd.DataFrame) -> int | None:
    """The k with the best silhouette in an :func:`elbow_table` (ties: the smaller k)."""
    valid = table.dropna(subset=["silhouette"])
    if valid.empty:
        return None
    return int(valid.sort_values(["silhouette", "k"], ascending=[False, True]).iloc[0]["k"])
