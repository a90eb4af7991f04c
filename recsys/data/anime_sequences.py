"""The anime sample (MyAnimeList, Kaggle) as a :class:`SequentialDataset`.

**Order unknown**: ``rating.csv`` has no timestamps; each user's rows are in file order,
which is ascending ``anime_id``. So "the last interaction" means the highest anime id the
user watched (loosely correlated with newer titles), not the most recent one. Every table
built on this dataset says so. Rows with rating ``-1`` (watched, not rated) count as
interactions like the rated ones (implicit feedback).

Filtering (so that every item can be learned and every user split): items with fewer than
``min_item_count`` interactions are dropped, then users with fewer than ``min_user_count``;
``max_users`` keeps the first users by id (the sample's ids are already a random draw).

Features: users have none in the data, so the one user field is an *activity* bucket
(``floor(log2(#interactions))``, it reveals how much a user watched, never what); items have
type (TV, Movie, OVA, ...), an episode-count bucket, a members (popularity) bucket and genres.
"""

from __future__ import annotations

import html
import logging
import math
from pathlib import Path

import pandas as pd
import torch

from recsys.data.sequential import FeatureTable, SequentialDataset, bucketize

log = logging.getLogger(__name__)

EPISODE_EDGES = [2, 7, 14, 27, 53, 101]
MEMBER_EDGES = [1_000, 10_000, 50_000, 100_000, 300_000]


def _read_raw(data_dir: Path | None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(catalogue, ratings)`` through :mod:`recsys.data.anime` when present, else pandas directly."""
    try:
        from recsys.data.anime import load_anime
    except ImportError:  # the anime helper's loader is optional here
        load_anime = None
    if load_anime is not None:
        return load_anime(data_dir)
    from recsys.paths import find_data_dir

    folder = Path(data_dir) if data_dir else find_data_dir(
        "anime", ["anime.csv", "rating.csv"], how_to_get="Kaggle 'Anime Recommendations Database' (CooperUnion)"
    )
    catalogue = pd.read_csv(folder / "anime.csv")
    catalogue["name"] = catalogue["name"].map(lambda s: html.unescape(str(s)))
    catalogue["episodes"] = pd.to_numeric(catalogue["episodes"], errors="coerce")
    ratings = pd.read_csv(folder / "rating.csv")
    return catalogue, ratings


def load_anime_sequences(
    data_dir: Path | None = None, min_item_count: int = 10, min_user_count: int = 5, max_users: int | None = None
) -> SequentialDataset:
    catalogue, ratings = _read_raw(data_dir)
    ratings = ratings[["user_id", "anime_id"]].reset_index(drop=True)
    ratings = ratings[~ratings.duplicated(["user_id", "anime_id"], keep="first")]
    item_counts = ratings["anime_id"].value_counts()
    ratings = ratings[ratings["anime_id"].map(item_counts) >= min_item_count]
    user_counts = ratings["user_id"].value_counts()
    ratings = ratings[ratings["user_id"].map(user_counts) >= min_user_count]
    if max_users is not None:
        keep = sorted(ratings["user_id"].unique())[:max_users]
        ratings = ratings[ratings["user_id"].isin(set(keep))]
    if ratings.empty:
        raise ValueError("no anime interactions left after filtering; lower min_item_count/min_user_count")

    user_ids = sorted(ratings["user_id"].unique())
    item_ids = sorted(ratings["anime_id"].unique())
    user_map = {int(u): k for k, u in enumerate(user_ids, start=1)}
    item_map = {int(i): k for k, i in enumerate(item_ids, start=1)}
    n_users, n_items = len(user_map), len(item_map)
    ratings = ratings.assign(u=ratings["user_id"].map(user_map), i=ratings["anime_id"].map(item_map))
    # file order within each user ("order unknown"): a stable sort by user keeps it
    ratings = ratings.sort_values("u", kind="stable")
    sequences = {int(u): [int(i) for i in g] for u, g in ratings.groupby("u", sort=True)["i"]}

    activity = torch.zeros(n_users + 1, 1, dtype=torch.long)
    for u, seq in sequences.items():
        activity[u, 0] = 1 + int(math.log2(len(seq)))
    user_table = FeatureTable(names=["activity_bucket"], values=activity, cardinalities=[int(activity.max()) + 1])

    cat = catalogue.set_index("anime_id")
    types = sorted({str(t) for t in cat["type"].dropna().unique()})
    type_codes = {t: k for k, t in enumerate(types, start=1)}
    genres_of = {}
    item_values = torch.zeros(n_items + 1, 3, dtype=torch.long)
    names = ["<pad>"] + [""] * n_items
    for raw, i in item_map.items():
        row = cat.loc[raw] if raw in cat.index else None
        if row is None:
            names[i] = f"anime {raw}"
            genres_of[i] = []
            continue
        names[i] = str(row["name"])
        episodes = row["episodes"]
        members = row["members"]
        item_values[i, 0] = type_codes.get(str(row["type"]), 0) if pd.notna(row["type"]) else 0
        item_values[i, 1] = bucketize([float(episodes) if pd.notna(episodes) else None], EPISODE_EDGES)[0]
        item_values[i, 2] = bucketize([float(members) if pd.notna(members) else None], MEMBER_EDGES)[0]
        genre = row["genre"]
        genres_of[i] = [g.strip() for g in str(genre).split(",") if g.strip()] if pd.notna(genre) else []
    vocab = {g: k for k, g in enumerate(sorted({g for gs in genres_of.values() for g in gs}), start=1)}
    width = max((len(g) for g in genres_of.values()), default=1) or 1
    genres = torch.zeros(n_items + 1, width, dtype=torch.long)
    for i, gs in genres_of.items():
        if gs:
            genres[i, : len(gs)] = torch.tensor([vocab[g] for g in gs])
    item_table = FeatureTable(
        names=["type", "episodes_bucket", "members_bucket"],
        values=item_values,
        cardinalities=[len(types) + 1, len(EPISODE_EDGES) + 2, len(MEMBER_EDGES) + 2],
        multi_name="genres",
        multi=genres,
        multi_cardinality=len(vocab) + 1,
    )
    log.info("anime sample: %d users, %d items, %d interactions (order unknown)", n_users, n_items, len(ratings))
    return SequentialDataset(
        name="anime", n_users=n_users, n_items=n_items, user_features=user_table, item_features=item_table,
        sequences=sequences, has_timestamps=False, item_names=names,
    )
