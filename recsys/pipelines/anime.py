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
import functools
import hashlib
import json
import logging
import os
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
from recsys.train.loop import Callback, TrainConfig, cpu_threads, fit

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


QUICK = dict(mse_epochs=10, implicit_epochs=3, elbow_grid=(10, 25, 50, 100, 150, 200, 300))


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
            # = mse.full_sort_predict, in numpy: a [B, 32] x [32, n] product needs no torch threads
            user_vectors = self.mse.user_embedding.weight.detach().numpy()[histories.users]
            full = np.maximum(user_vectors @ self.mse.item_vectors().T, 0.0)
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
def torch_threads():
    """One torch thread for these tiny models unless ``RECSYS_ANIME_THREADS`` says otherwise."""
    return cpu_threads(int(os.environ.get("RECSYS_ANIME_THREADS", "1")))


def mse_train_config(settings: AnimeSettings, epochs: int | None = None) -> TrainConfig:
    """The paper's optimiser settings: NAdam, lr 0.01, batch 10,000, no schedule."""
    return TrainConfig(epochs=epochs or settings.mse_epochs, lr=settings.mse_lr, batch_size=settings.mse_batch,
                       optimizer="nadam", scheduler="none", grad_clip=None, seed=settings.seed, device="cpu")


def implicit_train_config(settings: AnimeSettings, epochs: int | None = None) -> TrainConfig:
    return TrainConfig(epochs=epochs or settings.implicit_epochs, lr=settings.implicit_lr,
                       batch_size=settings.implicit_batch, optimizer="adam", scheduler="cosine", grad_clip=5.0,
                       seed=settings.seed, device="cpu")


def train_mse(split: AnimeSplit, settings: AnimeSettings, callbacks=(), epochs: int | None = None,
              config: TrainConfig | None = None):
    """The paper's two-tower on explicit ratings (``-1`` rows left out); returns (model, TrainResult).

    The test RMSE is recorded every epoch (it is a report, not used to pick the epoch:
    ``monitor`` is unset, so the last epoch's weights are kept, as in the paper).
    """
    rated = split.rated(split.train)
    test = split.rated(split.test)
    model = TwoTowerRating(TwoTowerConfig(split.n_users, split.n_items, settings.factors))
    users_t, items_t = torch.tensor(test["user"].to_numpy()), torch.tensor(test["item"].to_numpy())

    def evaluate(m):
        predicted = m.predict({"user": users_t.to(m.device), "item": items_t.to(m.device)}).cpu().numpy()
        return {"test_rmse": rmse(predicted, test["rating"].to_numpy())}

    config = config or mse_train_config(settings, epochs)
    with torch_threads():
        result = fit(model, rating_batches(rated["user"].to_numpy(), rated["item"].to_numpy(),
                                           rated["rating"].to_numpy(), config.batch_size, config.seed),
                     config, evaluate=evaluate, callbacks=callbacks)
    model.cpu()
    return model, result


def train_implicit(split: AnimeSplit, settings: AnimeSettings, callbacks=(), epochs: int | None = None,
                   evaluate=None, config: TrainConfig | None = None):
    """The implicit two-tower on every watched train pair (incl. -1 rows); returns (model, TrainResult)."""
    history = interaction_matrix(split.train, split.n_users, split.n_items, binary=True)
    users, items = split.train["user"].to_numpy(), split.train["item"].to_numpy()
    model = ImplicitTwoTower(
        ImplicitTwoTowerConfig(split.n_items, settings.factors, settings.implicit_temperature),
        history=history, item_log_q=in_batch_log_q(items, split.n_items),
    )
    config = config or implicit_train_config(settings, epochs)
    with torch_threads():
        result = fit(model, pair_batches(users, items, config.batch_size, config.seed), config,
                     evaluate=evaluate, callbacks=callbacks)
    model.cpu()
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


def rmse_rows(recommender: AnimeRecommender) -> list[dict[str, Any]]:
    """Test RMSE on explicit ratings: the paper's model vs the global mean and user+item biases."""
    split = recommender.split
    rated, test = split.rated(split.train), split.rated(split.test)
    users, items, actual = test["user"].to_numpy(), test["item"].to_numpy(), test["rating"].to_numpy()
    with torch.no_grad():
        model = recommender.mse.predict({"user": torch.tensor(users), "item": torch.tensor(items)}).numpy()
    seed = recommender.settings.seed
    return [
        {"seed": seed, "predictor": "global mean", "test_rmse": rmse(np.full(len(actual), rated["rating"].mean()), actual)},
        {"seed": seed, "predictor": "user + item bias", "test_rmse": rmse(recommender.bias.predict(users, items), actual)},
        {"seed": seed, "predictor": f"two-tower MSE ({recommender.settings.mse_epochs} epochs)",
         "test_rmse": rmse(model, actual)},
    ]


# =================================================================================================
# the paper's cost-vs-accuracy study (its Figures 3 and 4)
# =================================================================================================
def cost_study(recommender: AnimeRecommender, ks=(10, 25, 50, 100, 150, 200, 300), n_users: int = 300,
               k: int = 10, seed: int = 0) -> pd.DataFrame:
    """Per number of clusters: time per recommendation (nearest-cluster scan vs full scan) and
    the MSE model's RMSE on seen users' test ratings inside their nearest cluster vs on all anime.

    Each seen user's vector is the weighted average of their train ratings' item vectors
    (the unseen-user construction), so the cluster is the one the paper would search.
    """
    from sklearn.cluster import KMeans

    split = recommender.split
    items = recommender.mse.item_vectors()
    rng = np.random.default_rng(seed)
    test = split.rated(split.test)
    users = np.sort(rng.choice(test["user"].unique(), min(n_users, test["user"].nunique()), replace=False))
    histories = recommender.seen_histories(users)
    vectors, _ = recommender.weighted_vectors(histories)
    watched = histories.watched()
    test = test[test["user"].isin(users)]
    row_of = pd.Series(np.arange(len(users)), index=users)
    with torch.no_grad():
        predicted = recommender.mse.predict({"user": torch.tensor(test["user"].to_numpy()),
                                             "item": torch.tensor(test["item"].to_numpy())}).numpy()
    error = (predicted - test["rating"].to_numpy()) ** 2

    def full_scan(v, w):
        scores = items @ v
        scores[w] = -np.inf
        top = np.argpartition(-scores, k)[:k]
        return top[np.argsort(-scores[top])]

    started = time.perf_counter()
    for v, w in zip(vectors, watched, strict=True):
        full_scan(v, w)
    full_ms = 1000 * (time.perf_counter() - started) / len(users)
    rows = []
    for n_clusters in ks:
        model = KMeans(n_clusters=n_clusters, n_init=1, random_state=seed).fit(items)
        members = [np.flatnonzero(model.labels_ == c) for c in range(n_clusters)]
        centers = model.cluster_centers_.astype(np.float32)
        started = time.perf_counter()
        nearest = []
        for v, w in zip(vectors, watched, strict=True):
            c = int(np.argmin(((centers - v) ** 2).sum(1)))
            nearest.append(c)
            candidates = members[c][~np.isin(members[c], w)]
            scores = items[candidates] @ v
            candidates[np.argsort(-scores)[:k]]
        cluster_ms = 1000 * (time.perf_counter() - started) / len(users)
        user_cluster = np.asarray(nearest)[row_of.reindex(test["user"].to_numpy()).to_numpy()]
        inside = model.labels_[test["item"].to_numpy()] == user_cluster
        rows.append({
            "clusters": n_clusters, "mean_cluster_size": float(np.mean([len(m) for m in members])),
            "ms_full_scan": full_ms, "ms_nearest_cluster": cluster_ms,
            "rmse_all_anime": float(np.sqrt(error.mean())),
            "rmse_nearest_cluster": float(np.sqrt(error[inside].mean())) if inside.any() else float("nan"),
            "test_ratings_in_cluster": int(inside.sum()), "test_ratings": len(error),
        })
    return pd.DataFrame(rows)


def popularity_diagnosis(recommender: AnimeRecommender, methods=None, seed: int = 0, k: int = 10) -> pd.DataFrame:
    """Why a method hits or misses: how popular are the anime it recommends, vs what users watch next?

    For the unseen-user protocol: the median training-interaction count of the recommended
    anime, the share of them among the 500 most watched, and the mean explicit train rating
    of the recommended anime; the first row is the same for the held-out second halves.
    """
    from recsys.eval.anime import unseen_protocol

    split = recommender.split
    counts = recommender.popular_count.scores
    top500 = np.zeros(split.n_items, bool)
    top500[np.argsort(-counts, kind="stable")[:500]] = True
    rated = split.rated(split.train)
    mean_rating = np.bincount(rated["item"], rated["rating"], split.n_items) / np.maximum(
        np.bincount(rated["item"], minlength=split.n_items), 1)
    histories, targets = unseen_protocol(split.unseen, split.n_items, seed)

    def row(name, items):
        items = np.asarray(items, dtype=np.int64)
        items = items[items >= 0]
        return {"list": name, "median_train_interactions": float(np.median(counts[items])),
                "share_in_top500": float(top500[items].mean()), "mean_train_rating": float(mean_rating[items].mean())}

    rows = [row("held-out second halves (what users watch)", np.concatenate(targets))]
    for method in methods or [m for m in METHODS if m != "model"]:
        _, ids, _ = recommender.rank(method, histories, k)
        rows.append(row(method, ids.ravel()))
    return pd.DataFrame(rows)


def _plot_lines(path: Path, x, series: dict[str, Any], xlabel: str, ylabel: str, title: str, mark_x=None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for label, y in series.items():
        ax.plot(x, y, marker="o", label=label)
    if mark_x is not None:
        ax.axvline(mark_x, color="grey", linestyle="--", label=f"elbow k={mark_x}")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


# =================================================================================================
# the evaluate / recommend / bench verbs
# =================================================================================================
def run_evaluation(seeds: int = 3, quick: bool = False, out_dir: Path | None = None, echo=print,
                   seen_users: int | None = 2000) -> dict[str, pd.DataFrame]:
    """Every method on both protocols over ``seeds`` seeds; tables and plots written to ``out_dir``."""
    from tqdm.auto import tqdm

    from recsys.eval.anime import METRICS, PAPER_TABLE1, SEEN_PROTOCOL, UNSEEN_PROTOCOL, mean_std_table

    out_dir = Path(out_dir or DOCS_DIR)
    out_dir.mkdir(parents=True, exist_ok=True)
    records, rmse_records, infos, first = [], [], [], None
    for seed in tqdm(range(seeds), desc="seeds", unit="seed"):
        settings = default_settings(quick=quick, seed=seed)
        bar = tqdm(total=7, desc=f"seed {seed}: fit", leave=False)
        recommender = get_recommender(settings, progress=lambda i, n, label: (bar.set_description(label), bar.update(1)))
        bar.close()
        records += evaluate_bundle(recommender, protocol_seed=seed, seen_users=seen_users)
        rmse_records += rmse_rows(recommender)
        infos.append({"seed": seed, "elbow_k": recommender.elbow["best_k"],
                      **{key: recommender.train_info.get(key) for key in
                         ("mse_seconds", "implicit_seconds", "ease_seconds", "elbow_seconds", "device")}})
        first = first or recommender
    raw = pd.DataFrame(records)
    summary = mean_std_table(records, ["protocol", "method"])
    rmse_table = pd.DataFrame(rmse_records).groupby("predictor", sort=False)["test_rmse"].agg(["mean", "std"]).reset_index()
    cost = cost_study(first, ks=sorted({10, 25, 50, 100, 150, 200, 300, int(first.elbow["best_k"])}))
    diagnosis = popularity_diagnosis(first)
    diagnosis.to_csv(out_dir / "diagnosis.csv", index=False)
    raw.to_csv(out_dir / "evaluation_per_seed.csv", index=False)
    summary.to_csv(out_dir / "evaluation.csv", index=False)
    rmse_table.to_csv(out_dir / "rmse.csv", index=False)
    cost.to_csv(out_dir / "cost_study.csv", index=False)
    pd.DataFrame(infos).to_csv(out_dir / "training.csv", index=False)
    elbow = first.elbow
    if elbow["k"]:
        pd.DataFrame({"k": elbow["k"], "inertia": elbow["inertia"]}).to_csv(out_dir / "elbow.csv", index=False)
        _plot_lines(out_dir / "elbow.png", elbow["k"], {"K-means inertia": elbow["inertia"]}, "k (clusters)",
                    "within-cluster sum of squares", "Elbow over two-tower item vectors", mark_x=elbow["best_k"])
    _plot_lines(out_dir / "cost_time.png", cost["clusters"],
                {"nearest cluster": cost["ms_nearest_cluster"], "full scan": cost["ms_full_scan"]},
                "k (clusters)", "ms per recommendation", "Time per recommendation (paper Fig. 3)")
    _plot_lines(out_dir / "cost_rmse.png", cost["clusters"],
                {"nearest cluster": cost["rmse_nearest_cluster"], "all anime": cost["rmse_all_anime"]},
                "k (clusters)", "RMSE on test ratings", "Rating error in the nearest cluster (paper Fig. 4)")

    lines = [f"# Anime recommender evaluation ({seeds} seed(s), {'quick' if quick else 'paper'} settings)", ""]
    lines += [f"Data: {first.split.summary()}", "",
              f"Settings (seed 0): `{json.dumps(dataclasses.asdict(first.settings), default=list)}`", "",
              "Protocols:", f"- {UNSEEN_PROTOCOL}.", f"- {SEEN_PROTOCOL} (a seeded sample of {seen_users} users).",
              "- each seed re-draws the split (which 500 users are unseen, the 90/10 rows), the halves, and the "
              "model initialisation; values are mean ± std over seeds.", ""]
    for protocol in ("unseen", "seen"):
        lines += [f"## {protocol.capitalize()} users", "", "| method | " + " | ".join(METRICS) + " | paper Table 1 |",
                  "|---|" + "---|" * (len(METRICS) + 1)]
        for _, row in summary[summary["protocol"] == protocol].iterrows():
            cells = [f"{row[f'{m} mean']:.4f} ± {0 if pd.isna(row[f'{m} std']) else row[f'{m} std']:.4f}" for m in METRICS]
            paper = PAPER_TABLE1.get(row["method"]) if protocol == "unseen" else None
            paper_cell = " / ".join(f"{v:.4f}" for v in paper) if paper else ""
            lines.append(f"| {row['method']}: {METHODS[row['method']]} | " + " | ".join(cells) + f" | {paper_cell} |")
        lines.append("")
    lines += ["## Rating prediction (test RMSE, explicit ratings only)", "", "| predictor | RMSE |", "|---|---|"]
    lines += [f"| {r['predictor']} | {r['mean']:.4f} ± {0 if pd.isna(r['std']) else r['std']:.4f} |"
              for _, r in rmse_table.iterrows()]
    lines += ["", f"## Elbow (seed 0): k = {elbow['best_k']} (max distance to the chord over {elbow['k']})", "",
              "![elbow](elbow.png)", "", "## Cost vs accuracy (seed 0; paper Figures 3-4)", "",
              "Time per top-10 for one user (weighted-average vector; nearest centroid + scan of its members vs "
              "scan of all anime), and the MSE model's RMSE on seen users' test ratings of anime inside their "
              "nearest cluster vs all test ratings.", "", cost.to_markdown(index=False, floatfmt=".4f") if _has_tabulate()
              else cost.to_string(index=False), "", "![time](cost_time.png) ![rmse](cost_rmse.png)", "",
              "## Why the rating two-tower loses (seed 0, unseen users)", "",
              "Popularity of what each method recommends vs what the users actually watched next:", "",
              diagnosis.to_string(index=False, float_format=lambda v: f"{v:.3f}"), "",
              "## Fitting time per seed (this machine)", "", pd.DataFrame(infos).to_string(index=False), ""]
    (out_dir / "evaluation.md").write_text("\n".join(lines))
    echo("\n".join(lines))
    return {"raw": raw, "summary": summary, "rmse": rmse_table, "cost": cost, "diagnosis": diagnosis}


def _has_tabulate() -> bool:
    try:
        import tabulate  # noqa: F401
    except ImportError:
        return False
    return True


def read_history_file(path: Path) -> pd.DataFrame:
    """A CSV of ``user_id,anime_id,rating`` (one or many users); bad lines are reported by number."""
    from recsys.data.anime import AnimeDataError, load_ratings

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"history file {path} does not exist")
    try:
        return load_ratings(path)
    except AnimeDataError as error:
        raise ValueError(f"bad history file: {error}") from None


def recommend_rows(recommender: AnimeRecommender, method: str, k: int = 10, user_id: int | None = None,
                   history: pd.DataFrame | None = None) -> list[dict[str, Any]]:
    """The CLI's output records (one per user): results, fallback, skipped unknown ids, latency."""
    split = recommender.split
    jobs = []
    if user_id is not None:
        index = split.user_index(user_id)
        if index is not None:  # a seen user: everything known (train + test rows) is watched
            rows = pd.concat([split.train[split.train["user"] == index], split.test[split.test["user"] == index]])
            matrix = sp.csr_matrix((rows["rating"].to_numpy(np.float32),
                                    (np.zeros(len(rows), np.int64), rows["item"].to_numpy())), shape=(1, split.n_items))
            jobs.append((user_id, Histories(matrix, np.array([user_id]), np.array([index])), 0))
        else:
            rows = split.unseen[split.unseen["user_id"] == user_id]
            if rows.empty:
                raise KeyError(f"user_id {user_id} is not in the anime dataset (users with at least 2 ratings); "
                               "pass --history-file for a new user")
            anime_ids = split.item_ids[rows["item"].to_numpy()]
            hist, skipped = recommender.histories_from_ids(anime_ids, rows["rating"].to_numpy(), user_id)
            jobs.append((user_id, hist, skipped))
    if history is not None:
        for uid, rows in history.groupby("user_id", sort=False):
            hist, skipped = recommender.histories_from_ids(rows["anime_id"].to_numpy(), rows["rating"].to_numpy(),
                                                           int(uid))
            jobs.append((int(uid), hist, skipped))
    out = []
    for uid, hist, skipped in jobs:
        started = time.perf_counter()
        scores, ids, fallbacks = recommender.rank(method, hist, k)
        latency = 1000 * (time.perf_counter() - started)
        out.append({"user_id": uid, "method": method, "results": recommender.results(scores, ids, 0),
                    "fallback": fallbacks[0], "skipped_unknown": skipped, "latency_ms": round(latency, 3)})
    return out


def bench(recommender: AnimeRecommender, methods=None, n_users: int = 200, k: int = 10) -> pd.DataFrame:
    """p50/p99 latency of one recommendation per method (unseen-protocol users, one at a time)."""
    from recsys.eval.anime import unseen_protocol

    histories, _ = unseen_protocol(recommender.split.unseen, recommender.split.n_items, 0)
    users = list(range(min(n_users, len(histories))))
    seen_users = recommender.split.test["user"].unique()[: len(users)]
    rows = []
    for method in methods or METHODS:
        recommender.rank(method, Histories(histories.matrix[:1], histories.user_ids[:1]), k)  # warm-up
        times = []
        for row in users:
            if method == "model":
                one = recommender.seen_histories(seen_users[row: row + 1])
            else:
                one = Histories(histories.matrix[row: row + 1], histories.user_ids[row: row + 1])
            started = time.perf_counter()
            recommender.rank(method, one, k)
            times.append(1000 * (time.perf_counter() - started))
        rows.append({"method": method, "p50_ms": float(np.percentile(times, 50)),
                     "p99_ms": float(np.percentile(times, 99)), "users": len(times)})
    return pd.DataFrame(rows)


def _settings_from_args(args) -> AnimeSettings:
    return default_settings(quick=not getattr(args, "full", False), seed=getattr(args, "seed", None) or 0)


def _cli_recommender(args) -> AnimeRecommender:
    from tqdm.auto import tqdm

    settings = _settings_from_args(args)
    if bundle_path(settings).exists():
        return apply_active_runs(get_recommender(settings))
    import sys

    print("anime: no cached models for these settings; training once (cached afterwards)", file=sys.stderr)
    bar = tqdm(total=7, desc="anime models", unit="stage")
    recommender = get_recommender(settings, progress=lambda i, n, label: (bar.set_description(label), bar.update(1)))
    bar.close()
    return apply_active_runs(recommender)


def _cmd_recommend(args) -> int:
    if (args.user_id is None) == (args.history_file is None):
        raise ValueError("give exactly one of --user-id N or --history-file FILE")
    history = read_history_file(args.history_file) if args.history_file else None
    recommender = _cli_recommender(args)
    rows = recommend_rows(recommender, args.method, args.k, args.user_id, history)
    for row in rows:
        if args.format == "jsonl":
            print(json.dumps(row, ensure_ascii=False))
        else:
            print(f"user {row['user_id']} ({row['method']}; fallback: {row['fallback']}; "
                  f"skipped unknown: {row['skipped_unknown']}; {row['latency_ms']:.1f} ms)")
            for rank, item in enumerate(row["results"], 1):
                print(f"  {rank:2d}. {item['name']} [{item['genre']}] score={item['score']}")
    return 0


def _cmd_evaluate(args) -> int:
    run_evaluation(seeds=args.seeds, quick=args.quick, out_dir=args.out)
    return 0


def _cmd_bench(args) -> int:
    recommender = _cli_recommender(args)
    table = bench(recommender, n_users=args.users)
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    DOCS_DIR.mkdir(parents=True, exist_ok=True)
    table.to_csv(DOCS_DIR / "latency.csv", index=False)
    return 0


def register_cli(verbs) -> None:
    """Adds ``anime`` to the ``evaluate``, ``recommend`` and ``bench`` verbs."""
    evaluate = verbs["evaluate"].add_parser("anime", help="all anime methods on the paper's protocol, multi-seed")
    evaluate.add_argument("--seeds", type=int, default=3)
    evaluate.add_argument("--quick", action="store_true", help="fewer epochs (about a minute per seed)")
    evaluate.add_argument("--out", type=Path, default=None, help=f"output folder (default {DOCS_DIR})")
    evaluate.set_defaults(func=_cmd_evaluate)

    recommend = verbs["recommend"].add_parser("anime", help="anime recommendations as JSON lines")
    recommend.add_argument("--method", choices=list(METHODS), default="weighted")
    recommend.add_argument("--k", type=int, default=10)
    recommend.add_argument("--user-id", type=int, help="a dataset user_id")
    recommend.add_argument("--history-file", type=Path, help="CSV user_id,anime_id,rating; one output line per user")
    recommend.add_argument("--format", choices=["jsonl", "text"], default="jsonl")
    recommend.add_argument("--seed", type=int, default=0, help="which split/model seed to serve")
    recommend.add_argument("--full", action="store_true", help="serve the paper's 35-epoch models")
    recommend.set_defaults(func=_cmd_recommend)

    bench_parser = verbs["bench"].add_parser("anime", help="p50/p99 latency per method")
    bench_parser.add_argument("--users", type=int, default=200)
    bench_parser.add_argument("--seed", type=int, default=0)
    bench_parser.add_argument("--full", action="store_true")
    bench_parser.set_defaults(func=_cmd_bench)


# =================================================================================================
# recipes: the two two-tower models in the Training studio / `python -m recsys train`
# =================================================================================================
def _recipe_split(context) -> tuple[AnimeSplit, AnimeSettings]:
    settings = default_settings(quick=True, seed=context.train.seed)
    catalogue, ratings = load_anime()
    return split_anime(catalogue, ratings, n_unseen=settings.n_unseen, seed=settings.seed), settings


def _run_mse(context) -> dict[str, Any]:
    from recsys.train.runs import atomic_torch_save

    split, settings = _recipe_split(context)
    model, result = train_mse(split, settings, context.callbacks, config=context.train)
    if context.checkpoint_path:
        atomic_torch_save({"state_dict": model.state_dict(), "seed": settings.seed,
                           "n_users": split.n_users, "n_items": split.n_items}, context.checkpoint_path)
    return {"test_rmse": result.history[-1]["test_rmse"] if result.history else None, "seconds": result.seconds}


def _run_implicit(context) -> dict[str, Any]:
    from recsys.eval.anime import score_rankings, unseen_protocol
    from recsys.train.runs import atomic_torch_save

    split, settings = _recipe_split(context)
    histories, targets = unseen_protocol(split.unseen, split.n_items, settings.seed)

    def evaluate(model):
        users = model.encode_histories(histories.binary()).numpy()
        _, ids = _topk(users @ model.item_vectors().T, 10, histories.watched())
        return score_rankings(ids, targets)

    model, result = train_implicit(split, settings, context.callbacks, evaluate=evaluate, config=context.train)
    if context.checkpoint_path:
        atomic_torch_save({"state_dict": model.state_dict(), "seed": settings.seed, "n_items": split.n_items},
                          context.checkpoint_path)
    final = result.history[-1] if result.history else {}
    return {k: final.get(k) for k in ("train_loss", "precision@10", "map@10", "ndcg@10")} | {"seconds": result.seconds}


def apply_active_runs(recommender: AnimeRecommender) -> AnimeRecommender:
    """Serve the Training studio's chosen checkpoints when they fit this bundle's split.

    A checkpoint trained on another seed's split (different user/item indices) is
    ignored with a warning; a replaced MSE model re-fits the clusters that depend on it.
    """
    from recsys.train.runs import RunRegistry

    registry = RunRegistry()
    for recipe, attribute in zip(SERVED_RECIPES, ("mse", "implicit"), strict=True):
        run = registry.active_run(recipe)
        if run is None:
            continue
        checkpoint = torch.load(run.checkpoint_path, map_location="cpu", weights_only=True)
        if checkpoint.get("seed") != recommender.settings.seed or checkpoint.get("n_items") != recommender.split.n_items:
            log.warning("active run %s was trained on another split; serving the cached model", run.id)
            continue
        getattr(recommender, attribute).load_state_dict(checkpoint["state_dict"])
        if attribute == "mse":
            vectors, popularity = recommender.mse.item_vectors(), recommender.popular_count.scores
            k = recommender.elbow["best_k"]
            recommender.kmeans = ClusterIndex.fit(vectors, k, popularity, "kmeans", recommender.settings.seed)
            recommender.gmm = ClusterIndex.fit(vectors, k, popularity, "gmm", recommender.settings.seed)
            recommender._index = None
        else:
            recommender._implicit_index = None
        recommender.train_info[f"{attribute}_run"] = run.id
    return recommender


def _register_recipes() -> None:
    from recsys.train.recipes import Recipe, register

    register(Recipe(
        name="anime-two-tower", domain="anime",
        summary="Paper's two-tower: 32-factor user/item embeddings, relu(dot), MSE on ratings (NAdam)",
        defaults=mse_train_config(default_settings(quick=True)),
        full=mse_train_config(default_settings(quick=False)),
        run=_run_mse,
    ))
    register(Recipe(
        name="anime-two-tower-implicit", domain="anime",
        summary="Implicit two-tower: watched pairs, in-batch softmax + logQ, history-mean user tower",
        defaults=implicit_train_config(default_settings(quick=True)),
        full=implicit_train_config(default_settings(quick=False)),
        run=_run_implicit,
    ))


_register_recipes()


# =================================================================================================
# helpers for the page (app_pages/anime.py is UI only)
# =================================================================================================
PAGE_METHODS = ["model", "weighted", "kmeans", "implicit", "ease", "itemknn", "popular"]


SERVED_RECIPES = ("anime-two-tower", "anime-two-tower-implicit")


def page_recommender() -> AnimeRecommender:
    """The bundle the pages serve: the quick seed-0 settings, studio runs applied (trains once).

    One in-process copy (about 240 MB) is shared by the Anime page and the explorer, and
    it is rebuilt when the Training studio changes which runs are served.
    """
    from recsys.train.runs import RunRegistry

    registry = RunRegistry()
    served = tuple(getattr(registry.active_run(recipe), "id", None) for recipe in SERVED_RECIPES)
    return _served_bundle(served)


@functools.lru_cache(maxsize=1)
def _served_bundle(served_run_ids: tuple) -> AnimeRecommender:
    return apply_active_runs(get_recommender(default_settings(quick=True)))


def dataset_user(recommender: AnimeRecommender, user_id: int) -> tuple[Histories, pd.DataFrame, str]:
    """A dataset user's known history (all rows), a display table, and "seen" / "unseen"."""
    split = recommender.split
    index = split.user_index(user_id)
    if index is not None:
        rows = pd.concat([split.train[split.train["user"] == index], split.test[split.test["user"] == index]])
        kind, users = "seen", np.array([index])
    else:
        rows = split.unseen[split.unseen["user_id"] == user_id]
        if rows.empty:
            raise KeyError(f"user_id {user_id} is not in the anime dataset")
        kind, users = "unseen", None
    matrix = sp.csr_matrix((rows["rating"].to_numpy(np.float32), (np.zeros(len(rows), np.int64), rows["item"].to_numpy())),
                           shape=(1, split.n_items))
    return Histories(matrix, np.array([user_id]), users), history_table(recommender, rows["item"], rows["rating"]), kind


def history_table(recommender: AnimeRecommender, items, ratings) -> pd.DataFrame:
    meta = recommender.split.items.iloc[np.asarray(items, dtype=np.int64)]
    table = pd.DataFrame({"anime_id": meta["anime_id"].to_numpy(), "name": meta["name"].astype(str).to_numpy(),
                          "rating": np.asarray(ratings, dtype=np.float64),
                          "genre": meta["genre"].astype(object).where(meta["genre"].notna(), None).to_numpy()})
    table["rating"] = table["rating"].map(lambda r: "watched" if r <= 0 else f"{r:g}")
    return table.sort_values("rating", key=lambda s: s.map(lambda r: -1 if r == "watched" else float(r)),
                             ascending=False).reset_index(drop=True)


def recommend_table(recommender: AnimeRecommender, method: str, histories: Histories, k: int = 10):
    """``(DataFrame[name, genre, score, anime_id], fallback reason or None, latency ms)`` for one user."""
    started = time.perf_counter()
    scores, ids, fallbacks = recommender.rank(method, histories, k)
    latency = 1000 * (time.perf_counter() - started)
    return pd.DataFrame(recommender.results(scores, ids, 0), columns=["name", "genre", "score", "anime_id"]), \
        fallbacks[0], latency


def search_anime(recommender: AnimeRecommender, query: str, limit: int = 50) -> pd.DataFrame:
    """Anime whose name contains ``query`` (case-insensitive), most watched first."""
    items = recommender.split.items.assign(watched=recommender.popular_count.scores)
    if query:
        items = items[items["name"].str.contains(query, case=False, regex=False, na=False)]
    return items.sort_values("watched", ascending=False).head(limit)[["anime_id", "name", "genre", "watched"]]
