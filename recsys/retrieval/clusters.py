"""Cluster retrieval over item vectors: K-means / Gaussian mixture, elbow choice of k.

The two-tower anime paper clusters the item embeddings, finds the cluster nearest to a
user's (weighted-average) vector and recommends the most popular unwatched anime in
it. Searching one cluster instead of the catalogue is the cost-vs-accuracy trade its
Figures 3-4 study: a scan over ``n/k`` items instead of ``n``.

``k`` is chosen by the elbow method: compute the within-cluster sum of squares (K-means
inertia) over a grid of ``k``, then take the point of the curve farthest from the chord
joining its two ends after scaling both axes to [0, 1] - the "kneedle" rule (Satopaa
et al., "Finding a 'Kneedle' in a Haystack", ICDCS workshops 2011). The paper found
k = 150 on the full data.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

log = logging.getLogger(__name__)


def elbow_point(ks: Sequence[float], values: Sequence[float]) -> int:
    """Index of the elbow of a decreasing curve: the max distance to the chord (kneedle).

    Both axes are min-max scaled to [0, 1]; the chord runs from the first point to the
    last; for a convex decreasing curve the elbow is the point farthest below it.
    """
    x, y = np.asarray(ks, np.float64), np.asarray(values, np.float64)
    if len(x) < 3:
        return 0
    xs = (x - x.min()) / (np.ptp(x) or 1.0)
    ys = (y - y.min()) / (np.ptp(y) or 1.0)
    x0, y0, x1, y1 = xs[0], ys[0], xs[-1], ys[-1]
    # perpendicular distance of each point to the line through (x0, y0), (x1, y1)
    distance = np.abs((y1 - y0) * xs - (x1 - x0) * ys + x1 * y0 - y1 * x0) / np.hypot(y1 - y0, x1 - x0)
    return int(np.argmax(distance))


def elbow_curve(vectors: np.ndarray, ks: Iterable[int], seed: int = 0, max_iter: int = 100) -> dict:
    """K-means inertia for each k and the elbow k: ``{"k": [...], "inertia": [...], "best_k": k}``."""
    from sklearn.cluster import KMeans

    ks = [int(k) for k in ks if 1 <= int(k) <= len(vectors)]
    inertia = [float(KMeans(n_clusters=k, n_init=1, max_iter=max_iter, random_state=seed).fit(vectors).inertia_)
               for k in ks]
    best = ks[elbow_point(ks, inertia)] if ks else 1
    return {"k": ks, "inertia": inertia, "best_k": best}


@dataclass
class ClusterIndex:
    """Item clusters and a popularity score per item; recommends from the query's nearest cluster."""

    labels: np.ndarray  # [n_items] cluster of each item
    centers: np.ndarray  # [k, d]
    popularity: np.ndarray  # [n_items] score used to rank inside a cluster
    kind: str = "kmeans"
    model: object = None  # the fitted sklearn estimator

    @classmethod
    def fit(cls, vectors: np.ndarray, k: int, popularity: np.ndarray, kind: str = "kmeans", seed: int = 0):
        vectors = np.asarray(vectors, np.float32)
        k = max(1, min(int(k), len(vectors)))
        if kind == "kmeans":
            from sklearn.cluster import KMeans

            model = KMeans(n_clusters=k, n_init=1, random_state=seed).fit(vectors)
            labels, centers = model.labels_, model.cluster_centers_
        elif kind == "gmm":
            from sklearn.mixture import GaussianMixture

            model = GaussianMixture(n_components=k, covariance_type="diag", random_state=seed, max_iter=100,
                                    reg_covar=1e-4).fit(vectors)
            labels, centers = model.predict(vectors), model.means_
        else:
            raise ValueError(f"unknown cluster kind {kind!r}; use 'kmeans' or 'gmm'")
        return cls(np.asarray(labels), np.asarray(centers, np.float32), np.asarray(popularity, np.float64), kind, model)

    def cluster_order(self, queries: np.ndarray) -> np.ndarray:
        """Clusters per query, nearest first (Euclidean to K-means centres; GMM posterior)."""
        queries = np.atleast_2d(np.asarray(queries, np.float32))
        if self.kind == "gmm" and self.model is not None:
            return np.argsort(-self.model.predict_proba(queries.astype(np.float64)), axis=1, kind="stable")
        distances = ((queries[:, None, :] - self.centers[None, :, :]) ** 2).sum(-1)
        return np.argsort(distances, axis=1, kind="stable")

    def members(self, cluster: int) -> np.ndarray:
        return np.flatnonzero(self.labels == cluster)

    def recommend(self, queries: np.ndarray, k: int, exclude: Sequence[Iterable[int]] | None = None):
        """``(scores, items)``: the most popular unwatched items of the nearest cluster.

        When the nearest cluster has fewer than ``k`` unwatched items the next nearest
        clusters fill the list, so a user always gets ``k`` results.
        """
        order = self.cluster_order(queries)
        by_cluster = {}
        out_ids = np.full((len(order), k), -1, dtype=np.int64)
        out_scores = np.full((len(order), k), -np.inf)
        for row, clusters in enumerate(order):
            excluded = np.fromiter(exclude[row], dtype=np.int64) if exclude is not None else np.empty(0, np.int64)
            picked: list[int] = []
            for cluster in clusters:
                if cluster not in by_cluster:
                    members = self.members(cluster)
                    by_cluster[cluster] = members[np.argsort(-self.popularity[members], kind="stable")]
                ranked = by_cluster[cluster]
                picked.extend(ranked[~np.isin(ranked, excluded)][: k - len(picked)].tolist())
                if len(picked) >= k:
                    break
            picked = picked[:k]
            out_ids[row, : len(picked)] = picked
            out_scores[row, : len(picked)] = self.popularity[picked]
        return out_scores, out_ids
