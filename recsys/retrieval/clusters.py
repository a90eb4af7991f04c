"""Clustering of vectors: K-means / Gaussian mixture, the elbow choice of k, cluster retrieval.

The one implementation the project uses: the anime paper's cluster retrieval
(:class:`ClusterIndex`, used by :mod:`recsys.models.anime_retrieval`), its cost study, and
the embedding explorer's colouring (:mod:`recsys.viz.clustering` delegates here).

The two-tower anime paper clusters the item embeddings, finds the cluster nearest to a
user's (weighted-average) vector and recommends the most popular unwatched anime in
it. Searching one cluster instead of the catalogue is the cost-vs-accuracy trade its
Figures 3-4 study: a scan over ``n/k`` items instead of ``n``.

``k`` is chosen by the elbow method: compute the within-cluster sum of squares (K-means
inertia) over a grid of ``k``, then take the point of the curve farthest from the chord
joining its two ends after scaling both axes to [0, 1] - the "kneedle" rule (Satopaa
et al., "Finding a 'Kneedle' in a Haystack", ICDCS workshops 2011). The paper found
k = 150 on the full data.

A fitted clustering is kept as plain arrays (labels, centres, and for a mixture its
weights and diagonal covariances), so it can be stored in an artifact without pickling
an sklearn estimator; the mixture's posteriors are recomputed from them with sklearn's
own diagonal-Gaussian formula.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

log = logging.getLogger(__name__)

CLUSTER_METHODS = ("kmeans", "gmm")


@dataclass
class Clustering:
    """A fitted clustering as arrays: ``labels [n]``, ``centers [k, d]``; mixtures add
    ``weights [k]`` and ``covariances [k, d]`` (diagonal); ``inertia`` for K-means."""

    method: str
    labels: np.ndarray
    centers: np.ndarray
    weights: np.ndarray | None = None
    covariances: np.ndarray | None = None
    inertia: float = float("nan")


def fit_clusters(vectors: np.ndarray, k: int, method: str = "kmeans", seed: int = 0, n_init: int = 1,
                 max_iter: int | None = None) -> Clustering:
    """K-means (Lloyd, seeded k-means++ starts) or a diagonal Gaussian mixture with ``k`` parts.

    ``max_iter`` defaults to sklearn's (300 for K-means, 100 for the mixture). Diagonal
    covariances with a small ``reg_covar``: a full covariance per cluster overfits
    clusters of a few dozen items.
    """
    x = np.asarray(vectors, dtype=np.float32)
    if method == "kmeans":
        from sklearn.cluster import KMeans

        model = KMeans(n_clusters=k, n_init=n_init, max_iter=max_iter or 300, random_state=seed).fit(x)
        return Clustering("kmeans", np.asarray(model.labels_), np.asarray(model.cluster_centers_, np.float32),
                          inertia=float(model.inertia_))
    if method == "gmm":
        from sklearn.mixture import GaussianMixture

        model = GaussianMixture(n_components=k, covariance_type="diag", random_state=seed, max_iter=max_iter or 100,
                                n_init=n_init, reg_covar=1e-4).fit(x)
        return Clustering("gmm", np.asarray(model.predict(x)), np.asarray(model.means_, np.float32),
                          np.asarray(model.weights_, np.float64), np.asarray(model.covariances_, np.float64))
    raise ValueError(f"unknown clustering method {method!r}; choose one of {', '.join(CLUSTER_METHODS)}")


def gmm_posteriors(queries: np.ndarray, weights: np.ndarray, means: np.ndarray, covariances: np.ndarray) -> np.ndarray:
    """``P(component | query)`` of a diagonal Gaussian mixture, ``[n, k]``.

    The same arithmetic as sklearn's ``GaussianMixture.predict_proba`` for
    ``covariance_type="diag"`` (log-density through the precision Cholesky factors, then
    a log-sum-exp), so a mixture restored from arrays orders components as the fitted one.
    """
    from scipy.special import logsumexp

    x = np.asarray(queries, np.float64)
    means = np.asarray(means, np.float64)
    precisions_chol = 1.0 / np.sqrt(np.asarray(covariances, np.float64))
    log_det = np.sum(np.log(precisions_chol), axis=1)
    precisions = precisions_chol**2
    log_prob = (np.sum(means**2 * precisions, 1) - 2.0 * (x @ (means * precisions).T) + (x**2) @ precisions.T)
    weighted = -0.5 * (x.shape[1] * np.log(2 * np.pi) + log_prob) + log_det + np.log(np.asarray(weights, np.float64))
    return np.exp(weighted - logsumexp(weighted, axis=1)[:, None])


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


def kmeans_sweep(vectors: np.ndarray, ks: Iterable[int], seed: int = 0, n_init: int = 1,
                 max_iter: int | None = None) -> list[Clustering]:
    """One K-means fit per ``k`` (the elbow curve's points); ``k`` outside ``1..n`` is skipped."""
    x = np.asarray(vectors, dtype=np.float32)
    return [fit_clusters(x, int(k), "kmeans", seed, n_init, max_iter) for k in ks if 1 <= int(k) <= len(x)]


def elbow_curve(vectors: np.ndarray, ks: Iterable[int], seed: int = 0, max_iter: int = 100) -> dict:
    """K-means inertia for each k and the elbow k: ``{"k": [...], "inertia": [...], "best_k": k}``."""
    ks = [int(k) for k in ks if 1 <= int(k) <= len(vectors)]
    inertia = [c.inertia for c in kmeans_sweep(vectors, ks, seed, max_iter=max_iter)]
    best = ks[elbow_point(ks, inertia)] if ks else 1
    return {"k": ks, "inertia": inertia, "best_k": best}


@dataclass
class ClusterIndex:
    """Item clusters and a popularity score per item; recommends from the query's nearest cluster."""

    labels: np.ndarray  # [n_items] cluster of each item
    centers: np.ndarray  # [k, d]
    popularity: np.ndarray  # [n_items] score used to rank inside a cluster
    kind: str = "kmeans"
    weights: np.ndarray | None = None  # mixture weights (gmm)
    covariances: np.ndarray | None = None  # diagonal covariances (gmm)

    @classmethod
    def fit(cls, vectors: np.ndarray, k: int, popularity: np.ndarray, kind: str = "kmeans", seed: int = 0):
        vectors = np.asarray(vectors, np.float32)
        k = max(1, min(int(k), len(vectors)))
        fitted = fit_clusters(vectors, k, kind, seed)
        return cls(fitted.labels, fitted.centers, np.asarray(popularity, np.float64), kind, fitted.weights,
                   fitted.covariances)

    def cluster_order(self, queries: np.ndarray) -> np.ndarray:
        """Clusters per query, nearest first (Euclidean to K-means centres; GMM posterior)."""
        queries = np.atleast_2d(np.asarray(queries, np.float32))
        if self.kind == "gmm" and self.covariances is not None:
            posteriors = gmm_posteriors(queries, self.weights, self.centers, self.covariances)
            return np.argsort(-posteriors, axis=1, kind="stable")
        distances = ((queries[:, None, :] - self.centers[None, :, :]) ** 2).sum(-1)
        return np.argsort(distances, axis=1, kind="stable")

    def scores(self, queries: np.ndarray) -> np.ndarray:
        """``[n_queries, n_items]`` scores whose order is the cluster recommendation.

        An item's score is its popularity minus ``rank * span``, ``rank`` the position of
        its cluster in the query's order (0 = nearest) and ``span`` more than the spread
        of popularity: the nearest cluster's items keep their popularity as score and come
        first, most popular first; the next clusters follow, so a user whose nearest
        cluster is all watched still gets a full list.
        """
        order = self.cluster_order(queries)
        rank = np.empty_like(order)
        np.put_along_axis(rank, order, np.arange(order.shape[1])[None, :].repeat(len(order), 0), axis=1)
        popularity = np.asarray(self.popularity, np.float64)
        span = float(np.ptp(popularity)) + 1.0 if len(popularity) else 1.0
        return popularity[None, :] - rank[:, self.labels] * span

    def recommend(self, queries: np.ndarray, k: int, exclude: Sequence[Iterable[int]] | None = None):
        """``(scores, items)``: the most popular unwatched items of the nearest cluster, then the next."""
        from recsys.retrieval.topk import top_k

        return top_k(self.scores(queries), k, exclude)
