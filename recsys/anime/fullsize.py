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

``python -m recsys.anime.fullsize --out DIR`` writes ``DIR/anime/rating.csv`` and copies ``anime.csv``
there, so ``RECSYS_DATA_DIR=DIR`` points every loader at it;
``--measure`` then loads it through the strict loader and reports time and peak memory;
``--train`` trains the default bundle (every anime method, the settings ``recommend anime``
serves) on it with a fresh cache under ``DIR/cache``, saves and reloads it, asks every method
for one user's list, and writes the time and peak memory of each stage to
``docs/results/anime/fullsize.{csv,md}`` (:func:`train_and_serve`).
"""

from __future__ import annotations

import argparse
import logging
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd

from recsys.memory import peak_memory_mb

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


class StagePeaks:
    """Peak resident memory per stage: a thread samples ``/proc/self/statm`` every 20 ms.

    ``ru_maxrss`` only gives the process's peak so far; this gives each stage its own.
    """

    def __init__(self):
        import os
        import threading

        self.page = os.sysconf("SC_PAGE_SIZE")
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()

    def rss_mb(self) -> float:
        with open("/proc/self/statm") as handle:
            return int(handle.read().split()[1]) * self.page / 1e6

    def _sample(self):
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, self.rss_mb())

    def reset(self) -> None:
        self.peak = self.rss_mb()

    def stop(self) -> None:
        self._stop.set()


def train_and_serve(out: Path, docs: Path, user_id: int = 5, methods=None) -> pd.DataFrame:
    """Train, save, reload and serve the default anime bundle on the full-size file in ``out``.

    ``methods`` (registry names of fitted models) fits only those, one at a time, and serves
    them from a partial bundle: for the methods whose training takes too long on a shared
    machine to fit the whole bundle in one go.
    """
    import os

    os.environ["RECSYS_DATA_DIR"] = str(out)  # out/anime/{rating,anime}.csv
    os.environ["RECSYS_CACHE_DIR"] = str(out / "cache")
    shutil.rmtree(out / "cache", ignore_errors=True)
    from recsys import registry
    from recsys.anime.cli import recommend_rows
    from recsys.anime.prep import AnimeData, default_settings, load_split
    from recsys.anime.serving import bundle_path, load_bundle, save_bundle
    from recsys.anime.training import build

    settings = default_settings(quick=True)
    peaks, rows = StagePeaks(), []

    def record(stage, started, **extra):
        rows.append({"stage": stage, "seconds": round(time.perf_counter() - started, 1),
                     "peak_rss_mb": round(max(peaks.peak, peaks.rss_mb())), **extra})
        log.info("%s", rows[-1])
        peaks.reset()
        return time.perf_counter()

    started = time.perf_counter()
    split, fingerprint = load_split(settings)
    started = record("load rating.csv (strict parser) + split", started,
                     detail=f"{split.n_users:,} seen users, {split.n_items:,} anime, {len(split.train):,} train rows")
    stage = {}

    def progress(i, n, label):
        nonlocal started
        if stage:
            started = record(f"fit: {stage['label']}", started)
        stage["label"] = label

    if methods:
        from recsys.anime.serving import AnimeRecommender
        from recsys.anime.training import config_overrides, fit_bias

        data = AnimeData.from_split(split, fingerprint)
        started = record("model data (sparse matrices)", started)
        models = {}
        for name in methods:
            spec = registry.get(name, "anime")
            models[spec.name] = spec.build(data, **config_overrides(settings)).fit(data)
            started = record(f"fit: {spec.display_name}", started)
        recommender = AnimeRecommender(settings, data, models, fit_bias(split), {}, {"partial": True})
        for spec in [registry.get(name, "anime") for name in methods]:
            out_rows = recommend_rows(recommender, spec.name, 10, user_id=user_id)
            first = out_rows[0]
            state_mb = sum(np.asarray(a).nbytes for a in models[spec.name].state().values()) / 1e6
            started = record(f"recommend: {spec.name}", started,
                             detail=f"{len(first['results'])} results, {first['latency_ms']:.1f} ms in rank, "
                                    f"state {state_mb:.1f} MB")
        return _write(peaks, rows, docs, user_id, "fullsize_partial", "--train --methods " + " ".join(methods))
    recommender = build(split, settings, progress=progress, fingerprint=fingerprint)
    started = record(f"fit: {stage['label']}", started)
    path = save_bundle(recommender, bundle_path(settings))
    sizes = {}
    for name, model in recommender.models.items():
        sizes[name] = sum(np.asarray(a).nbytes for a in model.state().values()) / 1e6
    started = record("save bundle", started, detail=f"{path.stat().st_size / 1e6:.0f} MB on disk")
    loaded = load_bundle(path, AnimeData.from_split(split, fingerprint), settings)
    started = record("load bundle (split recomputed from the parsed cache)", started)
    for spec in registry.by_domain("anime"):
        out_rows = recommend_rows(loaded, spec.name, 10, user_id=user_id)
        first = out_rows[0]
        started = record(f"recommend: {spec.name}", started,
                         detail=f"{len(first['results'])} results, {first['latency_ms']:.1f} ms in rank, "
                                f"state {sizes[spec.name]:.1f} MB" + (f", fallback: {first['fallback']}"
                                                                      if first["fallback"] else ""))
    return _write(peaks, rows, docs, user_id, "fullsize", "--train")


def _write(peaks: StagePeaks, rows: list, docs: Path, user_id: int, name: str, command: str) -> pd.DataFrame:
    peaks.stop()
    table = pd.DataFrame(rows)
    docs.mkdir(parents=True, exist_ok=True)
    table.to_csv(docs / f"{name}.csv", index=False)
    from recsys.eval.tables import frame_to_markdown

    (docs / f"{name}.md").write_text(
        "# The default anime bundle on the full-size stand-in\n\n"
        f"Written by `python -m recsys.anime.fullsize --out DIR {command}` after `python -m recsys.anime.fullsize "
        "--out DIR` (a seeded stand-in of the full Kaggle file's size, drawn from the sample's statistics: not data, "
        f"never evaluated on). One process, one torch thread, fresh cache; the machine's 2 cores were shared "
        f"with other jobs, so times are upper bounds. Peak RSS is per stage (sampled every 20 ms). User {user_id} "
        "is a seen user.\n\n" + frame_to_markdown(table.fillna(""), 1) + "\n")
    return table


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for rating.csv and anime.csv (not committed)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--measure", action="store_true", help="then load it with the strict loader (own process)")
    parser.add_argument("--train", action="store_true",
                        help="train, save, reload and serve the default bundle on DIR (writes docs/results/anime)")
    parser.add_argument("--methods", nargs="+", default=None,
                        help="with --train: fit only these fitted methods (registry names) and serve them")
    args = parser.parse_args(argv)
    from recsys.data.anime import load_anime

    if args.train:
        logging.basicConfig(level=logging.INFO)
        from recsys.anime.experiments import DOCS_DIR

        print(train_and_serve(args.out, DOCS_DIR, methods=args.methods).to_string(index=False))
        return 0
    folder = args.out / "anime"
    if args.measure:
        started = time.perf_counter()
        catalogue, ratings = load_anime(folder, use_cache=False)
        print(f"loaded {len(ratings):,} rows, {ratings['user_id'].nunique():,} users, {len(catalogue):,} anime "
              f"in {time.perf_counter() - started:.1f} s; peak memory {peak_memory_mb():.0f} MB")
        return 0
    catalogue, sample = load_anime()
    started = time.perf_counter()
    frame = generate(sample, np.sort(catalogue["anime_id"].unique()), seed=args.seed)
    folder.mkdir(parents=True, exist_ok=True)
    frame.to_csv(folder / "rating.csv", index=False)
    from recsys.data.anime import anime_data_dir

    shutil.copyfile(anime_data_dir() / "anime.csv", folder / "anime.csv")
    print(f"wrote {len(frame):,} rows, {frame['user_id'].nunique():,} users to {folder / 'rating.csv'} "
          f"in {time.perf_counter() - started:.1f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
