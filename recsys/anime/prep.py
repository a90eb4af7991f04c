"""Anime data preparation: the settings, the paper's split, and the model data every anime model is built on.

Every anime model is built ``Model(config, data)`` with ``data`` an :class:`AnimeData`
(:mod:`recsys.models.base`): sizes, the training interactions and ratings, the
catalogue's weighted-rating inputs and, for the paper's retrieval methods, the trained
MSE model's item vectors (:meth:`AnimeData.with_item_vectors`), because those methods
are built *on* the two-tower model rather than trained themselves.

**Batch keys** of the anime domain (a plain dict; tensors are ``torch.long``):

* ``user``: ``[B]`` seen-user indices (rows of ``data.ratings``), ``-1`` for a user
  outside the training data (unseen users, a new user on the page);
* ``history``: optional ``[B, n_items]`` ``scipy.sparse.csr_matrix`` of each row's
  ratings (1..10, ``-1`` = watched, not rated). When present, history-based models
  (weighted average, clusters, EASE, item-kNN, the implicit tower) read the user from it
  instead of the training row, which is how unseen and new users are served;
* ``item``: ``[B]`` item indices (``predict`` and training);
* ``rating``: ``[B]`` float ratings (the MSE model's training target).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recsys.data.anime import AnimeSplit, interaction_matrix
from recsys.paths import cache_dir


@dataclass
class AnimeSettings:
    """Everything that changes a fitted bundle (its cache key is a hash of this)."""

    seed: int = 0
    n_unseen: int = 500
    # the paper's two-tower (MSE)
    mse_epochs: int = 35
    mse_lr: float = 0.01
    mse_batch: int = 10_000
    factors: int = 32
    # the implicit two-tower
    implicit_epochs: int = 10
    implicit_lr: float = 0.005
    implicit_batch: int = 1024
    implicit_temperature: float = 0.2
    # clusters: k by the elbow rule over this grid (None -> use cluster_k)
    elbow_grid: tuple[int, ...] | None = (10, 25, 50, 75, 100, 150, 200, 250, 300)
    cluster_k: int = 150
    # baselines
    knn_neighbours: int = 100
    ease_l2: float = 500.0
    ease_max_items: int = 10_000
    wr_quantile: float = 0.9

    def key(self) -> str:
        return hashlib.sha1(json.dumps(dataclasses.asdict(self), sort_keys=True, default=list).encode()).hexdigest()[:12]

    def as_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(dataclasses.asdict(self), default=list))

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "AnimeSettings":
        known = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in values.items() if k in known}
        if isinstance(values.get("elbow_grid"), list):
            values["elbow_grid"] = tuple(values["elbow_grid"])
        return cls(**values)


#: the quick settings the page, the CLI and ``evaluate --quick`` use
QUICK = dict(mse_epochs=10, implicit_epochs=3, elbow_grid=(10, 25, 50, 100, 150, 200, 300))


def default_settings(quick: bool = True, **overrides) -> AnimeSettings:
    """Serving defaults: quick epochs (the page and CLI); ``quick=False`` is the paper's 35 epochs."""
    base = {**(QUICK if quick else {}), **{k: v for k, v in overrides.items() if v is not None}}
    return AnimeSettings(**base)


# ---------------------------------------------------------------------------------------------
# batches of histories
# ---------------------------------------------------------------------------------------------
def binary(matrix) -> sp.csr_matrix:
    """A copy of ``matrix`` with every stored entry 1.0 (watched), float32."""
    out = sp.csr_matrix(matrix, dtype=np.float32, copy=True)
    out.data = np.ones_like(out.data)
    return out


def positive_ratings(matrix) -> sp.csr_matrix:
    """Only the explicit ratings (> 0) of a ratings matrix; ``-1`` (watched) entries dropped."""
    out = sp.csr_matrix(matrix, dtype=np.float32, copy=True)
    out.data = np.where(out.data > 0, out.data, 0).astype(np.float32)
    out.eliminate_zeros()
    return out


def batch_histories(batch: dict, train: sp.csr_matrix | None) -> sp.csr_matrix:
    """The rows a history-based model reads: ``batch["history"]`` or the training rows of ``batch["user"]``."""
    history = batch.get("history")
    if history is not None:
        return history if sp.issparse(history) and history.format == "csr" else sp.csr_matrix(history)
    if train is None:
        raise ValueError("this model was built without training histories; pass the batch's 'history'")
    users = np.asarray(batch["user"].cpu() if hasattr(batch["user"], "cpu") else batch["user"], dtype=np.int64)
    if len(users) and (users.min() < 0 or users.max() >= train.shape[0]):
        raise ValueError("a row with user = -1 (not in the training data) needs the batch's 'history'")
    return train[users]


# ---------------------------------------------------------------------------------------------
# the model data
# ---------------------------------------------------------------------------------------------
@dataclass
class AnimeData:
    """What anime models are built and fitted on (see the module docstring).

    ``ratings``: users x items CSR of the training ratings (``-1`` = watched, not rated);
    ``interactions`` is its binary (watched) version; ``train_items`` every training
    positive (for the implicit model's log-Q correction); ``item_mean_rating`` /
    ``item_votes``: the catalogue's mean rating and member count per item (the weighted
    rating's R and v); ``item_vectors``: the trained MSE model's item tower, for the
    retrieval methods; ``fingerprint``: which data and split this is (checked when a
    saved model is loaded); ``split``: the split it came from (``None`` in tiny tests).
    """

    n_users: int
    n_items: int
    ratings: sp.csr_matrix
    item_mean_rating: np.ndarray | None = None
    item_votes: np.ndarray | None = None
    item_vectors: np.ndarray | None = None
    fingerprint: str = ""
    split: AnimeSplit | None = None

    def __post_init__(self):
        self.ratings = sp.csr_matrix(self.ratings, dtype=np.float32)
        self.interactions = binary(self.ratings)
        self.train_items = self.interactions.indices.astype(np.int64)
        #: training interaction count per item (what the clusters rank by)
        self.popularity = np.asarray(self.interactions.sum(axis=0)).ravel().astype(np.float64)

    @classmethod
    def from_split(cls, split: AnimeSplit, fingerprint: str = "") -> "AnimeData":
        ratings = interaction_matrix(split.train, split.n_users, split.n_items, binary=False)
        mean_rating, votes = catalogue_wr_inputs(split)
        return cls(split.n_users, split.n_items, ratings, mean_rating, votes, fingerprint=fingerprint, split=split)

    def with_item_vectors(self, vectors: np.ndarray) -> "AnimeData":
        """The same data carrying the trained MSE model's item vectors (for the retrieval methods)."""
        out = dataclasses.replace(self, item_vectors=np.ascontiguousarray(vectors, dtype=np.float32))
        return out

    def rated_train(self) -> pd.DataFrame:
        """Explicit training ratings as a frame (user, item, rating); needs ``split``."""
        return self.split.rated(self.split.train)


def catalogue_wr_inputs(split: AnimeSplit) -> tuple[np.ndarray, np.ndarray]:
    """WR inputs per item: R = the catalogue's mean rating (the train mean when missing),
    v = the catalogue's member count (the train rating count when missing)."""
    rated = split.rated(split.train)
    n = split.n_items
    counts = np.bincount(rated["item"], minlength=n).astype(np.float64)
    sums = np.bincount(rated["item"], rated["rating"], minlength=n)
    train_mean = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
    R = split.items["rating"].astype("Float64").to_numpy(dtype=np.float64, na_value=np.nan)
    v = split.items["members"].astype("Float64").to_numpy(dtype=np.float64, na_value=np.nan)
    return np.where(np.isnan(R), train_mean, R), np.where(np.isnan(v), counts, v)


def split_fingerprint(files_fingerprint: str, settings: AnimeSettings) -> str:
    """Which data files and which split: a saved model fits only data with the same key."""
    return f"{files_fingerprint}-seed{settings.seed}-unseen{settings.n_unseen}"


def load_split(settings: AnimeSettings) -> tuple[AnimeSplit, str]:
    """The paper's split of the real data for ``settings`` and its fingerprint."""
    from recsys.data.anime import data_fingerprint, load_anime, split_anime

    catalogue, ratings = load_anime()
    split = split_anime(catalogue, ratings, n_unseen=settings.n_unseen, seed=settings.seed)
    return split, split_fingerprint(data_fingerprint(), settings)


def bundle_path(settings: AnimeSettings) -> Path:
    """Where the trained bundle of ``settings`` is cached (:mod:`recsys.anime.serving` writes and reads it)."""
    from recsys.data.anime import data_fingerprint

    return cache_dir("anime", "models") / f"bundle-{data_fingerprint()}-{settings.key()}.safetensors"


def load_data(settings: AnimeSettings) -> AnimeData:
    split, fingerprint = load_split(settings)
    return AnimeData.from_split(split, fingerprint)
