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
"""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)

CLUSTER_METHODS = ("kmeans", "gmm")


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
    _check_k(k, len(x))
    if method == "kmeans":
        from sklearn.cluster import KMeans

        return KMeans(n_clusters=k, n_init=4, random_state=seed).fit_predict(x)
    if method == "gmm":
        from sklearn.mixture import GaussianMixture

        # diagonal covariances: a full covariance per cluster in 50-d overfits small sets
        return GaussianMixture(n_components=k, covariance_type="diag", random_state=seed, reg_covar=1e-4).fit_predict(x)
    raise ValueError(f"unknown clustering method {method!r}; choose one of {', '.join(CLUSTER_METHODS)}")


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
    from sklearn.cluster import KMeans

    x = np.asarray(vectors, dtype=np.float32)
    rows = []
    for k in ks:
        if k < 2 or k > len(x) - 1:
            continue
        model = KMeans(n_clusters=k, n_init=2, random_state=seed).fit(x)
        rows.append({"k": k, "inertia": float(model.inertia_), "silhouette": silhouette(x, model.labels_, seed=seed)})
    return pd.DataFrame(rows, columns=["k", "inertia", "silhouette"])


def suggest_k(table: pd.DataFrame) -> int | None:
    """The k with the best silhouette in an :func:`elbow_table` (ties: the smaller k)."""
    valid = table.dropna(subset=["silhouette"])
    if valid.empty:
        return None
    return int(valid.sort_values(["silhouette", "k"], ascending=[False, True]).iloc[0]["k"])
