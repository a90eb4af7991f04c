"""The paper's cost-vs-accuracy study (its Figures 3 and 4), the popularity diagnosis, and their plots."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from recsys import registry
from recsys.anime.serving import AnimeRecommender
from recsys.anime.training import VECTOR_SOURCE
from recsys.retrieval.clusters import fit_clusters


def cost_study(recommender: AnimeRecommender, ks=(10, 25, 50, 100, 150, 200, 300), n_users: int = 300,
               k: int = 10, seed: int = 0) -> pd.DataFrame:
    """Per number of clusters: distance computations and time per recommendation (nearest
    cluster: k centroid distances, plus the members of that cluster when they are ranked by
    distance; full scan: one distance per anime, the paper's weighted average) and
    the MSE model's RMSE on seen users' test ratings inside their nearest cluster vs on all anime.

    Each seen user's vector is the weighted average of their train ratings' item vectors
    (the unseen-user construction), so the cluster is the one the paper would search.
    """
    split = recommender.split
    mse = recommender.models[VECTOR_SOURCE]
    items = mse.item_vectors()
    rng = np.random.default_rng(seed)
    test = split.rated(split.test)
    users = np.sort(rng.choice(test["user"].unique(), min(n_users, test["user"].nunique()), replace=False))
    histories = recommender.seen_histories(users)
    vectors = recommender.model("anime-weighted").user_vectors(histories.batch())
    watched = histories.watched()
    test = test[test["user"].isin(users)]
    row_of = pd.Series(np.arange(len(users)), index=users)
    with torch.no_grad():
        predicted = mse.predict({"user": torch.tensor(test["user"].to_numpy()),
                                 "item": torch.tensor(test["item"].to_numpy())}).numpy()
    error = (predicted - test["rating"].to_numpy()) ** 2

    item_sq = (items.astype(np.float64) ** 2).sum(1)

    def full_scan(v, w):  # the paper's weighted average: distance to every anime (N distances)
        scores = 2 * (items @ v) - item_sq
        scores[w] = -np.inf
        top = np.argpartition(-scores, k)[:k]
        return top[np.argsort(-scores[top])]

    started = time.perf_counter()
    for v, w in zip(vectors, watched, strict=True):
        full_scan(v, w)
    full_ms = 1000 * (time.perf_counter() - started) / len(users)
    rows = []
    for n_clusters in ks:
        clustering = fit_clusters(items, n_clusters, "kmeans", seed)
        members = [np.flatnonzero(clustering.labels == c) for c in range(n_clusters)]
        centers = clustering.centers
        started = time.perf_counter()
        nearest = []
        for v, w in zip(vectors, watched, strict=True):
            c = int(np.argmin(((centers - v) ** 2).sum(1)))  # k distances
            nearest.append(c)
            candidates = members[c][~np.isin(members[c], w)]
            scores = 2 * (items[candidates] @ v) - item_sq[candidates]  # + |cluster| distances
            candidates[np.argsort(-scores)[:k]]
        cluster_ms = 1000 * (time.perf_counter() - started) / len(users)
        sizes = np.array([len(m) for m in members])
        user_cluster = np.asarray(nearest)[row_of.reindex(test["user"].to_numpy()).to_numpy()]
        inside = clustering.labels[test["item"].to_numpy()] == user_cluster
        rows.append({
            "clusters": n_clusters, "mean_cluster_size": float(np.mean([len(m) for m in members])),
            "distances_full_scan": len(items), "distances_centroids": n_clusters,
            "distances_centroids_and_cluster": float(n_clusters + sizes[np.asarray(nearest)].mean()),
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
    ``methods`` defaults to every model that serves unseen users itself.
    """
    from recsys.eval.anime import unseen_protocol

    split = recommender.split
    counts = recommender.data.popularity
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
    if methods is None:
        methods = [spec.name for spec in registry.by_domain("anime")
                   if not getattr(recommender.models[spec.name], "known_users_only", False)]
    for method in methods:
        _, ids, _ = recommender.rank(method, histories, k)
        rows.append(row(method, ids.ravel()))
    return pd.DataFrame(rows)


def plot_lines(path: Path, x, series: dict[str, Any], xlabel: str, ylabel: str, title: str, mark_x=None) -> None:
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
