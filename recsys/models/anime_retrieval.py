"""The anime paper's retrieval for users the two-tower model never saw, as model objects.

The paper's rating two-tower (:mod:`recsys.models.two_tower`) has a vector only for the
users it was trained on. For anyone else it builds a user vector from the item tower:
the **weighted average** of the vectors of the anime they rated, weighted by the
ratings (Sec. 5.2.1), and then either recommends the anime *closest in distance* to it
(:class:`WeightedAverage`; Sec. 5.2.1 and Sec. 7, "we calculate the distance to all animes
... to identify the closest one": Euclidean distance, the paper's method; ``metric="ip"`` is
our inner-product variant, registered separately) or finds the **nearest K-means cluster / most likely GMM
component** of the item vectors and recommends its most popular unwatched anime
(:class:`ClusterRetrieval`, Sec. 5.2.2).

Both are *fitted* models over the trained MSE model's item vectors: ``data`` must carry
``item_vectors`` (:meth:`recsys.anime.prep.AnimeData.with_item_vectors`) and, for the
clusters, ``popularity`` (training interaction counts). Their state keeps a copy of
the item vectors (7,390 x 32 floats, about 1 MB), so a saved model serves alone.

Batch keys (:mod:`recsys.anime.prep`): ``user`` (rows of the training ratings) or
``history`` (a ``[B, n_items]`` CSR of ratings: 1..10, or -1 = watched, not rated).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from recsys.anime.prep import batch_histories, binary, positive_ratings
from recsys.models.base import Batch, FittedRecommender
from recsys.retrieval.clusters import ClusterIndex


def weighted_average_vectors(ratings, watched, item_vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The paper's vector for a user the model never saw: ``sum_i r_i q_i / sum_i r_i``.

    ``ratings`` is a users x items sparse matrix of explicit ratings (> 0), ``watched`` the
    binary matrix of everything watched. Rows without an explicit rating fall back to the
    plain mean over what they watched; rows with nothing get a zero vector and ``True`` in
    the returned flag array.
    """
    import scipy.sparse as sp

    ratings, watched = sp.csr_matrix(ratings, dtype=np.float64), sp.csr_matrix(watched, dtype=np.float64)
    totals = np.asarray(ratings.sum(axis=1)).ravel()
    no_ratings = totals <= 0
    weights = sp.diags((~no_ratings).astype(np.float64)) @ ratings + sp.diags(no_ratings.astype(np.float64)) @ watched
    totals = np.asarray(weights.sum(axis=1)).ravel()
    vectors = np.asarray(weights @ np.asarray(item_vectors, np.float64)) / np.maximum(totals, 1e-12)[:, None]
    return vectors.astype(np.float32), totals <= 0


@dataclass
class WeightedAverageConfig:
    # "l2": the paper's nearest anime by Euclidean distance; "ip": inner product (ours, a variant)
    metric: str = "l2"


class WeightedAverage(FittedRecommender):
    """Nearest anime to ``u = sum_j r_uj q_j / sum_j r_uj`` over the MSE model's item vectors.

    ``metric="l2"`` (the paper): ``score(u, i) = -||u - q_i||^2``, the same order as a faiss
    ``IndexFlatL2`` search. Why it matters: the inner product ``<u, q_i>`` grows with
    ``||q_i||``, so it favours the large-norm vectors of barely-rated anime with a few 10/10
    ratings for *every* user (the same list for everyone); the distance penalises a norm far
    from the user's. ``metric="ip"``: ``score = <u, q_i>`` (faiss ``IndexFlatIP``), kept as a
    documented variant.
    """

    display_name = "Weighted average of item vectors"

    def __init__(self, config: WeightedAverageConfig | None, data):
        super().__init__(config if config is not None else WeightedAverageConfig(), data)
        if getattr(self.config, "metric", "l2") not in ("l2", "ip"):
            raise ValueError(f"unknown metric {self.config.metric!r}; use 'l2' (the paper) or 'ip'")
        self.n_items = self.n_columns = int(data.n_items)
        self.train = getattr(data, "ratings", None)
        self.item_vectors: np.ndarray | None = None

    def fit(self, data) -> "WeightedAverage":
        vectors = getattr(data, "item_vectors", None)
        if vectors is None:
            raise ValueError(f"{type(self).__name__} needs the trained two-tower's item vectors (data.item_vectors)")
        self._set_vectors(vectors)
        return self

    def _set_vectors(self, vectors) -> None:
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[0] != self.n_items:
            raise ValueError(f"item vectors of shape {vectors.shape} do not fit {self.n_items} items")
        self.item_vectors = vectors

    def user_vectors(self, batch: Batch) -> np.ndarray:
        """The weighted-average vector of each row (zeros for a row with nothing known)."""
        histories = batch_histories(batch, self.train)
        return weighted_average_vectors(positive_ratings(histories), binary(histories), self.item_vectors)[0]

    def full_sort_predict(self, batch: Batch) -> torch.Tensor:
        users = self.user_vectors(batch)
        inner = users @ self.item_vectors.T
        if self.config.metric == "ip":
            return torch.as_tensor(inner)
        # -||u - q||^2 = 2<u, q> - ||q||^2 - ||u||^2 (float64 so near-ties keep their order)
        users64, items64 = users.astype(np.float64), self.item_vectors.astype(np.float64)
        squared = (2 * users64 @ items64.T - (items64**2).sum(1)[None, :] - (users64**2).sum(1)[:, None])
        return torch.as_tensor(squared)

    def state(self) -> dict[str, np.ndarray]:
        return {"item_vectors": self.item_vectors}

    def load_state(self, arrays) -> None:
        self._set_vectors(arrays["item_vectors"])


@dataclass
class ClusterRetrievalConfig:
    algorithm: str = "kmeans"  # kmeans | gmm
    n_clusters: int = 150  # the paper's elbow on the full data; training passes the elbow of this data
    seed: int = 0


class ClusterRetrieval(WeightedAverage):
    """Most popular unwatched anime of the cluster nearest to the weighted-average vector.

    Scores (:meth:`recsys.retrieval.clusters.ClusterIndex.scores`): an item of the nearest
    cluster scores its training popularity; items of the next clusters score lower, one
    band per cluster, so the top-k is the nearest cluster's most popular items and then
    the next cluster's. State: the item vectors, the labels, the centres (K-means) or the
    mixture's means, weights and diagonal covariances, and the popularity.
    """

    display_name = "Nearest cluster, most popular"

    def __init__(self, config: ClusterRetrievalConfig | None, data):
        super().__init__(config if config is not None else ClusterRetrievalConfig(), data)
        if self.config.algorithm not in ("kmeans", "gmm"):
            raise ValueError(f"unknown cluster algorithm {self.config.algorithm!r}; use 'kmeans' or 'gmm'")
        self.index: ClusterIndex | None = None

    def fit(self, data) -> "ClusterRetrieval":
        super().fit(data)
        popularity = getattr(data, "popularity", None)
        if popularity is None:
            raise ValueError("cluster retrieval needs data.popularity (training interaction counts)")
        self.index = ClusterIndex.fit(self.item_vectors, self.config.n_clusters, popularity, self.config.algorithm,
                                      self.config.seed)
        return self

    def full_sort_predict(self, batch: Batch) -> torch.Tensor:
        return torch.as_tensor(self.index.scores(self.user_vectors(batch)))

    def state(self) -> dict[str, np.ndarray]:
        index = self.index
        arrays = {"item_vectors": self.item_vectors, "labels": np.asarray(index.labels, np.int64),
                  "centers": index.centers, "popularity": index.popularity}
        if index.kind == "gmm":
            arrays |= {"weights": index.weights, "covariances": index.covariances}
        return arrays

    def load_state(self, arrays) -> None:
        self._set_vectors(arrays["item_vectors"])
        labels, centers = np.asarray(arrays["labels"], np.int64), np.asarray(arrays["centers"], np.float32)
        popularity = np.asarray(arrays["popularity"], np.float64)
        if labels.shape != (self.n_items,) or popularity.shape != (self.n_items,) or centers.ndim != 2 \
                or centers.shape[1] != self.item_vectors.shape[1] or labels.min() < 0 or labels.max() >= len(centers):
            raise ValueError("cluster state does not fit the item vectors")
        weights = covariances = None
        if self.config.algorithm == "gmm":
            weights = np.asarray(arrays["weights"], np.float64)
            covariances = np.asarray(arrays["covariances"], np.float64)
            if weights.shape != (len(centers),) or covariances.shape != centers.shape:
                raise ValueError("mixture state does not fit its means")
        self.index = ClusterIndex(labels, centers, popularity, self.config.algorithm, weights, covariances)
