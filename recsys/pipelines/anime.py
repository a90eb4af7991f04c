"""Anime domain glue: training, caching, recommending, evaluating; used by the CLI and the page.

The pieces (each documented in its own module):

* data and the paper's split: :mod:`recsys.data.anime`;
* the paper's rating two-tower (MSE) and its RMSE baselines: :mod:`recsys.models.two_tower`;
* the implicit two-tower (sampled softmax, history user tower): :mod:`recsys.models.implicit_two_tower`;
* popularity / weighted rating, item-kNN, EASE: :mod:`recsys.models.popularity`, ``itemknn``, ``ease``;
* faiss and cluster retrieval: :mod:`recsys.retrieval.index`, :mod:`recsys.retrieval.clusters`;
* protocols and tables: :mod:`recsys.eval.anime`; the LLM judge: :mod:`recsys.eval.llm_judge`.

:class:`AnimeRecommender` holds one split and every fitted model, and answers
``rank(method, histories, k)`` for a batch of users given as rating histories: the
same call serves dataset users (``--user-id``), unseen users (``--history-file``, the
page's "New user" tab) and the evaluation. Fitted bundles are cached under
``cache_dir("anime", "models")`` keyed by the data files and the settings, so the CLI
and the page train once.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import pickle
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch

from recsys.data.anime import AnimeSplit, data_fingerprint, interaction_matrix, load_anime, split_anime
from recsys.eval.anime import Histories
from recsys.models.ease import EASE, EASEConfig
from recsys.models.implicit_two_tower import ImplicitTwoTower, ImplicitTwoTowerConfig, in_batch_log_q, pair_batches
from recsys.models.itemknn import ItemKNN, ItemKNNConfig
from recsys.models.popularity import Popularity, PopularityConfig
from recsys.models.two_tower import BiasBaseline, TwoTowerConfig, TwoTowerRating, rating_batches, rmse
from recsys.paths import cache_dir
from recsys.retrieval.clusters import ClusterIndex, elbow_curve
from recsys.retrieval.index import ItemIndex, weighted_average_vectors
from recsys.train.loop import Callback, TrainConfig, fit

log = logging.getLogger(__name__)

#: every method the CLI, the page and the evaluation know, with a label for tables
METHODS = {
    "model": "Two-tower MSE (seen users: predicted rating)",
    "weighted": "Weighted average of item vectors (paper)",
    "kmeans": "K-means nearest cluster, most popular (paper)",
    "gmm": "Gaussian mixture nearest cluster, most popular (paper)",
    "popular": "Popular: weighted rating WR (cold start)",
    "popular-count": "Popular: interaction count",
    "itemknn": "Item-kNN cosine",
    "ease": "EASE",
    "implicit": "Implicit two-tower (sampled softmax + logQ)",
}
DOCS_DIR = Path(__file__).resolve().parents[2] / "docs" / "results" / "anime"


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
    implicit_batch: int = 2048
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


QUICK = dict(mse_epochs=10, implicit_epochs=5, elbow_grid=(10, 50, 100, 150, 200, 300))


@dataclass
class AnimeRecommender:
    """One split and all its fitted models; ``rank`` serves every method."""

    settings: AnimeSettings
    split: AnimeSplit
    mse: TwoTowerRating
    implicit: ImplicitTwoTower
    bias: BiasBaseline
    popular_count: Popularity
    popular_wr: Popularity
    itemknn: ItemKNN
    ease: EASE
    kmeans: ClusterIndex
    gmm: ClusterIndex
    elbow: dict
    train_info: dict = field(default_factory=dict)
    _index: ItemIndex | None = None
    _implicit_index: ItemIndex | None = None

    # --- histories -----------------------------------------------------------------------------
    def seen_histories(self, users: np.ndarray) -> Histories:
        """Train-split histories of seen users (what the models know about them)."""
        users = np.asarray(users, dtype=np.int64)
        matrix = self._train_ratings[users]
        return Histories(matrix, self.split.user_ids[users], users)

    @property
    def _train_ratings(self) -> sp.csr_matrix:
        if not hasattr(self, "_train_ratings_cache"):
            self._train_ratings_cache = interaction_matrix(self.split.train, self.split.n_users, self.split.n_items,
                                                           binary=False)
        return self._train_ratings_cache

    def histories_from_ids(self, anime_ids, ratings, user_id: int = -1) -> tuple[Histories, int]:
        """One unseen user's history from dataset anime ids; returns it and the unknown-id count."""
        items = self.split.item_index(np.asarray(anime_ids, dtype=np.int64))
        known = items >= 0
        ratings = np.asarray(ratings, dtype=np.float32)[known]
        items = items[known]
        ratings = np.where(ratings == 0, -1, ratings)  # 0 would vanish in a sparse matrix
        matrix = sp.csr_matrix((ratings, (np.zeros(len(items), np.int64), items)), shape=(1, self.split.n_items))
        matrix.sum_duplicates()
        return Histories(matrix, np.array([user_id])), int((~known).sum())

    # --- vectors ---------------------------------------------------------------------------------
    def weighted_vectors(self, histories: Histories) -> tuple[np.ndarray, np.ndarray]:
        """The paper's unseen-user vector: rating-weighted mean of the MSE model's item vectors.

        Rows with no explicit rating (only ``-1`` rows) use equal weights over what they
        watched; rows with nothing known are zero and flagged in the second return value.
        """
        return weighted_average_vectors(histories.positive_ratings(), histories.binary(), self.mse.item_vectors())

    @property
    def index(self) -> ItemIndex:
        if self._index is None:
            self._index = ItemIndex(self.mse.item_vectors(), "flat")
        return self._index

    @property
    def implicit_index(self) -> ItemIndex:
        if self._implicit_index is None:
            self._implicit_index = ItemIndex(self.implicit.item_vectors(), "flat")
        return self._implicit_index

    # --- ranking -------------------------------------------------------------------------------------
    def rank(self, method: str, histories: Histories, k: int = 10) -> tuple[np.ndarray, np.ndarray, list]:
        """Top-``k`` ``(scores, items, fallbacks)`` per history row, watched items excluded.

        ``fallbacks[row]`` is ``None`` or the reason the method could not serve the row
        (e.g. an empty history falls back to the weighted-rating popularity list).
        """
        if method not in METHODS:
            raise ValueError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
        n = len(histories)
        watched = histories.watched()
        empty = np.array([len(w) == 0 for w in watched])
        fallbacks: list = [None] * n
        if method == "model" and histories.users is None:
            fallbacks = ["unseen user: the MSE model has no user vector; served by the weighted average"] * n
            method = "weighted"
        if method in ("weighted", "kmeans", "gmm"):
            vectors, _ = self.weighted_vectors(histories)
            if method == "weighted":
                scores, ids = self.index.search(vectors, k, watched)
            else:
                scores, ids = (self.kmeans if method == "kmeans" else self.gmm).recommend(vectors, k, watched)
        elif method == "model":
            with torch.no_grad():
                full = self.mse.full_sort_predict({"user": torch.as_tensor(histories.users)}).numpy()
            scores, ids = _topk(full, k, watched)
        elif method == "implicit":
            with torch.no_grad():
                users = self.implicit.encode_histories(histories.binary()).numpy()
            scores, ids = self.implicit_index.search(users, k, watched)
        else:
            model = {"popular": self.popular_wr, "popular-count": self.popular_count, "itemknn": self.itemknn,
                     "ease": self.ease}[method]
            scores, ids = _topk(model.score_histories(histories.binary()), k, watched)
        if empty.any():  # nothing known about the user: the cold-start list
            pop_scores, pop_ids = _topk(self.popular_wr.score_histories(histories.binary()[empty]), k,
                                        [watched[r] for r in np.flatnonzero(empty)])
            scores, ids = np.array(scores, np.float64), ids.copy()
            scores[empty], ids[empty] = pop_scores, pop_ids
            for r in np.flatnonzero(empty):
                fallbacks[r] = "no known anime in the history: popularity (weighted rating)"
        return np.asarray(scores), ids, fallbacks

    def results(self, scores, ids, row: int) -> list[dict[str, Any]]:
        items = self.split.items
        out = []
        for score, item in zip(scores[row], ids[row], strict=True):
            if item < 0:
                continue
            meta = items.iloc[int(item)]
            out.append({
                "anime_id": int(meta["anime_id"]), "name": str(meta["name"]),
                "genre": None if pd.isna(meta["genre"]) else str(meta["genre"]),
                "score": None if not np.isfinite(score) else round(float(score), 4),
            })
        return out

    # --- persistence ---------------------------------------------------------------------------------
    def save(self, path: Path) -> None:
        from recsys.train.runs import atomic_write_bytes

        state = dict(self.__dict__)
        state.pop("_index", None), state.pop("_implicit_index", None), state.pop("_train_ratings_cache", None)
        atomic_write_bytes(Path(path), pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL))

    @classmethod
    def load(cls, path: Path) -> "AnimeRecommender":
        state = pickle.loads(Path(path).read_bytes())  # our own cache file, written by save()
        return cls(**{k: v for k, v in state.items() if not k.startswith("_")})


def _topk(scores: np.ndarray, k: int, exclude: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Top-k per row with ``exclude[row]`` masked; vectorised over rows."""
    scores = np.array(scores, dtype=np.float64, copy=True)
    rows = np.repeat(np.arange(len(exclude)), [len(e) for e in exclude])
    if len(rows):
        scores[rows, np.concatenate(exclude).astype(np.int64)] = -np.inf
    k = min(k, scores.shape[1])
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(scores, part, axis=1), axis=1, kind="stable")
    ids = np.take_along_axis(part, order, axis=1)
    top = np.take_along_axis(scores, ids, axis=1)
    ids = np.where(np.isfinite(top), ids, -1)
    return top, ids


# =================================================================================================
# training
# =================================================================================================
def train_mse(split: AnimeSplit, settings: AnimeSettings, callbacks=(), epochs: int | None = None):
    """The paper's two-tower on explicit ratings (NAdam, lr 0.01, batch 10k); returns model, result."""
    rated = split.rated(split.train)
    test = split.rated(split.test)
    model = TwoTowerRating(TwoTowerConfig(split.n_users, split.n_items, settings.factors))
    users_t, items_t = torch.tensor(test["user"].to_numpy()), torch.tensor(test["item"].to_numpy())

    def evaluate(m):
        predicted = m.predict({"user": users_t, "item": items_t}).cpu().numpy()
        return {"test_rmse": rmse(predicted, test["rating"].to_numpy())}

    config = TrainConfig(epochs=epochs or settings.mse_epochs, lr=settings.mse_lr, batch_size=settings.mse_batch,
                         optimizer="nadam", scheduler="none", grad_clip=None, seed=settings.seed, device="cpu")
    result = fit(model, rating_batches(rated["user"].to_numpy(), rated["item"].to_numpy(),
                                       rated["rating"].to_numpy(), config.batch_size, settings.seed),
                 config, evaluate=evaluate, callbacks=callbacks)
    return model, result


def train_implicit(split: AnimeSplit, settings: AnimeSettings, callbacks=(), epochs: int | None = None,
                   evaluate=None):
    """The implicit two-tower on every watched train pair (incl. -1 rows)."""
    history = interaction_matrix(split.train, split.n_users, split.n_items, binary=True)
    users, items = split.train["user"].to_numpy(), split.train["item"].to_numpy()
    model = ImplicitTwoTower(
        ImplicitTwoTowerConfig(split.n_items, settings.factors, settings.implicit_temperature),
        history=history, item_log_q=in_batch_log_q(items, split.n_items),
    )
    config = TrainConfig(epochs=epochs or settings.implicit_epochs, lr=settings.implicit_lr,
                         batch_size=settings.implicit_batch, optimizer="adam", scheduler="cosine", grad_clip=5.0,
                         seed=settings.seed, device="cpu")
    result = fit(model, pair_batches(users, items, config.batch_size, settings.seed), config,
                 evaluate=evaluate, callbacks=callbacks)
    return model, result


def build(split: AnimeSplit, settings: AnimeSettings, callbacks: list[Callback] | None = None,
          progress=None) -> AnimeRecommender:
    """Fit every model on ``split``; ``progress(step, total, label)`` reports stages."""
    stages = ["two-tower (MSE)", "implicit two-tower", "baselines", "EASE", "elbow", "K-means", "GMM"]
    timings: dict[str, float] = {}

    def stage(i):
        if progress:
            progress(i, len(stages), stages[i])
        return time.perf_counter()

    t = stage(0)
    mse, mse_result = train_mse(split, settings, callbacks or ())
    timings["mse_seconds"] = time.perf_counter() - t
    t = stage(1)
    implicit, implicit_result = train_implicit(split, settings, callbacks or ())
    timings["implicit_seconds"] = time.perf_counter() - t
    t = stage(2)
    rated = split.rated(split.train)
    bias = BiasBaseline.fit(rated["user"], rated["item"], rated["rating"], split.n_users, split.n_items)
    X = interaction_matrix(split.train, split.n_users, split.n_items, binary=True)
    popular_count = Popularity(PopularityConfig("count")).fit(X)
    mean_rating, votes = _catalogue_wr_inputs(split, rated)
    popular_wr = Popularity(PopularityConfig("wr", settings.wr_quantile)).fit(X, mean_rating, votes)
    itemknn = ItemKNN(ItemKNNConfig(settings.knn_neighbours)).fit(X)
    timings["baselines_seconds"] = time.perf_counter() - t
    t = stage(3)
    ease = EASE(EASEConfig(settings.ease_l2, max_items=settings.ease_max_items)).fit(X)
    timings["ease_seconds"] = time.perf_counter() - t
    t = stage(4)
    vectors = mse.item_vectors()
    if settings.elbow_grid:
        elbow = elbow_curve(vectors, settings.elbow_grid, seed=settings.seed)
    else:
        elbow = {"k": [], "inertia": [], "best_k": settings.cluster_k}
    timings["elbow_seconds"] = time.perf_counter() - t
    t = stage(5)
    popularity = popular_count.scores
    kmeans = ClusterIndex.fit(vectors, elbow["best_k"], popularity, "kmeans", settings.seed)
    t = stage(6)
    gmm = ClusterIndex.fit(vectors, elbow["best_k"], popularity, "gmm", settings.seed)
    info = {
        **timings, "mse_history": mse_result.history, "implicit_history": implicit_result.history,
        "mse_seconds_train": mse_result.seconds, "implicit_seconds_train": implicit_result.seconds,
        "device": mse_result.device, "split": split.summary(),
    }
    return AnimeRecommender(settings, split, mse, implicit, bias, popular_count, popular_wr, itemknn, ease,
                            kmeans, gmm, elbow, info)


def _catalogue_wr_inputs(split: AnimeSplit, rated: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """WR inputs per item: R = the catalogue's mean rating (the train mean when missing),
    v = the catalogue's member count (the train rating count when missing)."""
    n = split.n_items
    counts = np.bincount(rated["item"], minlength=n).astype(np.float64)
    sums = np.bincount(rated["item"], rated["rating"], minlength=n)
    train_mean = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
    R = split.items["rating"].astype("Float64").to_numpy(dtype=np.float64, na_value=np.nan)
    v = split.items["members"].astype("Float64").to_numpy(dtype=np.float64, na_value=np.nan)
    return np.where(np.isnan(R), train_mean, R), np.where(np.isnan(v), counts, v)


# =================================================================================================
# cached bundles
# =================================================================================================
def bundle_path(settings: AnimeSettings) -> Path:
    return cache_dir("anime", "models") / f"bundle-{data_fingerprint()}-{settings.key()}.pkl"


def get_recommender(settings: AnimeSettings | None = None, callbacks=None, progress=None,
                    retrain: bool = False) -> AnimeRecommender:
    """The cached bundle for ``settings`` (trained and saved on first use)."""
    settings = settings or default_settings()
    path = bundle_path(settings)
    if path.exists() and not retrain:
        try:
            return AnimeRecommender.load(path)
        except Exception as error:  # a stale or truncated cache is rebuilt, not fatal
            log.warning("could not load %s (%s); retraining", path, error)
    catalogue, ratings = load_anime()
    split = split_anime(catalogue, ratings, n_unseen=settings.n_unseen, seed=settings.seed)
    recommender = build(split, settings, callbacks, progress)
    recommender.save(path)
    return recommender


def default_settings(quick: bool = True, **overrides) -> AnimeSettings:
    """Serving defaults: quick epochs (the page and CLI); ``quick=False`` is the paper's 35 epochs."""
    base = {**(QUICK if quick else {}), **{k: v for k, v in overrides.items() if v is not None}}
    return AnimeSettings(**base)


# =================================================================================================
# evaluation
# =================================================================================================
def evaluate_bundle(recommender: AnimeRecommender, protocol_seed: int, k: int = 10,
                    seen_users: int | None = 2000, methods=None) -> list[dict[str, Any]]:
    """Metrics of every method on both protocols for one fitted bundle (one seed)."""
    from recsys.eval.anime import score_rankings, seen_protocol, unseen_protocol

    split = recommender.split
    records = []
    unseen_hist, unseen_targets = unseen_protocol(split.unseen, split.n_items, protocol_seed)
    seen_hist, seen_targets = seen_protocol(split.train, split.test, split.n_users, split.n_items, split.user_ids,
                                            max_users=seen_users, seed=protocol_seed)
    for protocol, histories, targets in (("unseen", unseen_hist, unseen_targets), ("seen", seen_hist, seen_targets)):
        for method in methods or METHODS:
            if method == "model" and protocol == "unseen":
                continue  # served by the weighted average; reported under its own name
            started = time.perf_counter()
            _, ids, _ = recommender.rank(method, histories, k)
            seconds = time.perf_counter() - started
            metrics = score_rankings(ids, targets)
            records.append({"protocol": protocol, "method": method, "seed": recommender.settings.seed,
                            "users": len(histories), **metrics, "ms_per_user": 1000 * seconds / len(histories)})
    return records
