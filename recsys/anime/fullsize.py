"""A full-size stand-in for the Kaggle ``rating.csv`` (7.8 M rows, 73,516 users), drawn from the sample.

Why: the loader and the serving path claim to handle the full file, but only the 5,000-user
sample is at hand. This writes a file of the full file's size and shape, seeded, from the
sample's statistics, so load time, peak memory and ``recommend anime`` can be measured on
it. It is *not* data: never evaluate on it, never commit it.

What is drawn (numpy ``default_rng(seed)``):

* history lengths: bootstrapped from the sample's per-user row counts, rescaled so that the
  total is ``rows`` (users with one row are kept: the paper's preprocessing drops them);
* anime: from the sample's watch counts (+1 for every catalogue anime, so the whole
  catalogue appears), without repeats within a user (drawn with repeats, 1.6x over, then
  de-duplicated and cut to each user's length);
* ratings: from the sample's distribution of rating values, ``-1`` (watched) included.

``python -m recsys.anime.fullsize --out DIR`` writes ``DIR/rating.csv`` and copies ``anime.csv``;
``--measure`` then loads it through the strict loader and reports time and peak memory.
"""

from __future__ import annotations

import argparse
import logging
import resource
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)

FULL_USERS = 73_516
FULL_ROWS = 7_813_737  # the Kaggle rating.csv


def generate(sample: pd.DataFrame, catalogue_ids: np.ndarray, n_users: int = FULL_USERS, rows: int = FULL_ROWS,
             seed: int = 0) -> pd.DataFrame:
    """``user_id, anime_id, rating`` rows of the full file's shape, drawn from ``sample``'s statistics."""
    rng = np.random.default_rng(seed)
    lengths = sample["user_id"].value_counts().to_numpy()
    drawn = rng.choice(lengths, n_users).astype(np.float64)
    n_items = len(catalogue_ids)
    drawn = np.clip(np.round(drawn * rows / drawn.sum()), 1, n_items).astype(np.int64)
    counts = sample["anime_id"].value_counts()
    weights = counts.reindex(catalogue_ids).fillna(0).to_numpy(np.float64) + 1.0
    over = np.ceil(drawn * 1.6).astype(np.int64) + 5
    users = np.repeat(np.arange(1, n_users + 1, dtype=np.int64), over)
    items = catalogue_ids[rng.choice(n_items, len(users), p=weights / weights.sum())]
    frame = pd.DataFrame({"user_id": users, "anime_id": items}).drop_duplicates()
    position = frame.groupby("user_id", sort=False).cumcount().to_numpy()
    frame = frame[position < drawn[frame["user_id"].to_numpy() - 1]].reset_index(drop=True)
    values, value_counts = np.unique(sample["rating"].to_numpy(), return_counts=True)
    frame["rating"] = rng.choice(values, len(frame), p=value_counts / value_counts.sum()).astype(np.int64)
    return frame


def peak_memory_mb() -> float:
    """This process's peak resident memory (Linux ``ru_maxrss`` is in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for rating.csv and anime.csv (not committed)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--measure", action="store_true", help="then load it with the strict loader (own process)")
    args = parser.parse_args(argv)
    from recsys.data.anime import load_anime

    if args.measure:
        started = time.perf_counter()
        catalogue, ratings = load_anime(args.out, use_cache=False)
        print(f"loaded {len(ratings):,} rows, {ratings['user_id'].nunique():,} users, {len(catalogue):,} anime "
              f"in {time.perf_counter() - started:.1f} s; peak memory {peak_memory_mb():.0f} MB")
        return 0
    catalogue, sample = load_anime()
    started = time.perf_counter()
    frame = generate(sample, np.sort(catalogue["anime_id"].unique()), seed=args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    frame.to_csv(args.out / "rating.csv", index=False)
    from recsys.data.anime import anime_data_dir

    shutil.copyfile(anime_data_dir() / "anime.csv", args.out / "anime.csv")
    print(f"wrote {len(frame):,} rows, {frame['user_id'].nunique():,} users to {args.out / 'rating.csv'} "
          f"in {time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
