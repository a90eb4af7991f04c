"""The Kaggle "Anime Recommendations Database" (MyAnimeList): loading, cleaning and splitting.

Files (``<data dir>/anime/``)::

    anime.csv   anime_id,name,genre,type,episodes,rating,members
    rating.csv  user_id,anime_id,rating          (rating -1 = watched but not rated)

Cleaning (:func:`load_catalogue`, :func:`load_ratings`): HTML entities in names are
unescaped (``Gintama&#039;`` -> ``Gintama'``), ``episodes == "Unknown"`` and empty
genre/type/rating become missing values, CRLF line ends are accepted. A malformed
row (wrong number of fields, a cut last line), a value of the wrong type or an id
outside 1..2^31-1 raises :class:`AnimeDataError` naming the file and the line,
because a silently dropped or wrapped row changes every number downstream (an
``anime_id`` of 4294967316 once wrapped to 20, Naruto). Ids are int64. Each load
compares the files with the public release (:mod:`recsys.data.integrity`); the
reports, with any warnings, are in :data:`LAST_REPORTS`.

Parsing the full 7.8 M-row rating file takes a few seconds, so both tables are
cached as parquet under ``cache_dir("anime")`` keyed by the source files' size and
mtime: editing or replacing a CSV invalidates its cache.

Splitting (:func:`split_anime`) follows the two-tower anime paper's preprocessing:
drop users with a single interaction, shuffle with a fixed seed, hold out
``n_unseen`` (500) users as *unseen* validation users, and split every other
user's rows 90/10 into train and test. ``-1`` rows are not ratings: they are
kept as *watched* (never recommended back, usable as implicit positives) and are
left out of everything that fits or scores a rating (MSE training, RMSE).

Everything is vectorised pandas/numpy so the same code runs on the full dataset.
"""

from __future__ import annotations

import csv
import hashlib
import html
import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from recsys.artifacts import atomic_write_bytes
from recsys.data.integrity import MAX_ID, DataFileError, FileReport, check_complete, report
from recsys.paths import cache_dir, find_data_dir

log = logging.getLogger(__name__)

HOW_TO_GET = (
    "download the Kaggle dataset 'Anime Recommendations Database' "
    "(https://www.kaggle.com/datasets/CooperUnion/anime-recommendations-database) and put "
    "anime.csv and rating.csv into <data dir>/anime/"
)
CATALOGUE_COLUMNS = ["anime_id", "name", "genre", "type", "episodes", "rating", "members"]
RATING_COLUMNS = ["user_id", "anime_id", "rating"]
CACHE_VERSION = 2  # bump when the cleaning rules change (2: int64 ids, strict rows, file reports)

#: the reports of the files last loaded by :func:`load_anime` (rows, release, warnings)
LAST_REPORTS: list[FileReport] = []


class AnimeDataError(DataFileError):
    """A malformed anime data file; the message names the file and the line."""


# ---------------------------------------------------------------------------------------------
# loading
# ---------------------------------------------------------------------------------------------
def anime_data_dir() -> Path:
    return find_data_dir("anime", ["anime.csv", "rating.csv"], how_to_get=HOW_TO_GET)


def _read_csv(path: Path, columns: list[str], **kwargs) -> pd.DataFrame:
    """``pd.read_csv`` that turns tokenizer errors into an error naming the file and line.

    A cut last line is refused first (pandas would read it as a short row with
    missing values), and blank lines are kept so row ``i`` is line ``i + 2``.
    """
    try:
        check_complete(path)
    except DataFileError as error:
        raise AnimeDataError(str(error)) from None
    try:
        frame = pd.read_csv(path, skip_blank_lines=False, **kwargs)
    except pd.errors.ParserError as error:  # "Expected 7 fields in line 5, saw 8"
        raise AnimeDataError(f"{path}: malformed CSV ({error})") from None
    except (pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise AnimeDataError(f"{path}: unreadable or empty file ({error})") from None
    frame.columns = [str(c).strip() for c in frame.columns]
    if list(frame.columns) != columns:
        raise AnimeDataError(f"{path}: line 1: expected header {','.join(columns)}, got {','.join(frame.columns)}")
    return frame


def _bad_line(path: Path, frame: pd.DataFrame, bad: np.ndarray, column: str, what: str) -> None:
    """Raise for the first ``True`` in ``bad`` (row 0 is line 2: line 1 is the header)."""
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise AnimeDataError(
            f"{path}: line {row + 2}: column '{column}' {what}, got {frame[column].iloc[row]!r} "
            f"({int(bad.sum())} such row(s))"
        )


def _field_counts(path: Path, n_fields: int) -> None:
    """Every line has exactly ``n_fields`` CSV fields (pandas pads short rows with missing values)."""
    with open(path, encoding="utf-8", newline="") as handle:
        reader = csv.reader(handle)
        for row in reader:
            if len(row) != n_fields:
                raise AnimeDataError(f"{path}: line {reader.line_num}: {len(row)} field(s), expected {n_fields}")


def _ids(path: Path, frame: pd.DataFrame, values: pd.Series, column: str) -> np.ndarray:
    """``values`` as int64 after checking 1 <= id <= 2^31 - 1 (never wrapped into another id)."""
    array = values.to_numpy(dtype=np.int64)
    _bad_line(path, frame, (array < 1) | (array > MAX_ID), column, f"must be an id in 1..{MAX_ID}")
    return array


def _integers(path: Path, frame: pd.DataFrame, column: str, allow_missing: bool = False) -> pd.Series:
    values = frame[column]
    text = values.astype("string").str.strip()
    numbers = pd.to_numeric(text, errors="coerce")
    missing = text.isna() | (text == "")
    big = numbers.notna() & (numbers.abs() >= 2**62)  # beyond exact float/int64: never a valid value here
    numbers = numbers.mask(big)
    bad = (numbers.isna() & ~missing) | (numbers.notna() & (numbers != numbers.round())) | big
    if not allow_missing:
        bad = bad | missing
    _bad_line(path, frame, bad.to_numpy(dtype=bool), column, "must be an integer")
    return numbers.astype("Int64") if allow_missing else numbers.astype("int64")


def load_catalogue(path: Path) -> pd.DataFrame:
    """Parse ``anime.csv``; see the module docstring for the cleaning rules."""
    path = Path(path)
    frame = _read_csv(path, CATALOGUE_COLUMNS, dtype=str, keep_default_na=False, na_values=[])
    if frame.empty:
        raise AnimeDataError(f"{path}: no anime rows")
    _field_counts(path, len(CATALOGUE_COLUMNS))
    out = pd.DataFrame({"anime_id": _ids(path, frame, _integers(path, frame, "anime_id"), "anime_id")})
    out["name"] = frame["name"].map(html.unescape).astype("string")
    for column in ("genre", "type"):
        text = frame[column].map(html.unescape).astype("string").str.strip()
        out[column] = text.mask(text == "")
    episodes = frame["episodes"].astype("string").str.strip()
    out["episodes"] = _integers(path, frame.assign(episodes=episodes.mask(episodes.str.lower() == "unknown")),
                                "episodes", allow_missing=True)
    rating_text = frame["rating"].astype("string").str.strip()
    rating = pd.to_numeric(rating_text, errors="coerce")
    _bad_line(path, frame, (rating.isna() & (rating_text != "")).to_numpy(bool), "rating", "must be a number")
    out["rating"] = rating.astype("Float64")
    out["members"] = _integers(path, frame, "members", allow_missing=True)
    duplicated = out["anime_id"].duplicated(keep="first").to_numpy()
    _bad_line(path, frame, duplicated, "anime_id", "must be unique")
    return out.reset_index(drop=True)


def load_ratings(path: Path) -> pd.DataFrame:
    """Parse ``rating.csv``: int64 ids in 1..2^31-1, int32 ratings -1 or 1..10; a short or garbage row is refused."""
    path = Path(path)
    frame = _read_csv(path, RATING_COLUMNS, skipinitialspace=True)
    if frame.empty:
        raise AnimeDataError(f"{path}: no rating rows")
    out = {}
    for column in RATING_COLUMNS:
        values = frame[column]
        if not pd.api.types.is_integer_dtype(values.dtype):  # fast path for clean files
            values = _integers(path, frame, column)
        if column == "rating":
            array = values.to_numpy(dtype=np.int64)
            _bad_line(path, frame, (array < -1) | (array > 10), column, "must be -1 (watched, not rated) or 1..10")
            out[column] = array.astype(np.int32)
        else:
            out[column] = _ids(path, frame, values, column)
    ratings = pd.DataFrame(out)
    ratings.attrs["rows"] = len(frame)  # before dropping duplicates: what the file holds
    bad = ~((ratings["rating"].to_numpy() == -1) | ((ratings["rating"] >= 1) & (ratings["rating"] <= 10)).to_numpy())
    _bad_line(path, frame, bad, "rating", "must be -1 (watched, not rated) or 1..10")
    duplicates = ratings.duplicated(["user_id", "anime_id"], keep="last")
    if duplicates.any():
        log.warning("%s: %d duplicate (user_id, anime_id) rows; keeping the last of each", path, int(duplicates.sum()))
        ratings = ratings[~duplicates].reset_index(drop=True)
    return ratings


def _fingerprint(*paths: Path) -> str:
    parts = [f"v{CACHE_VERSION}"]
    for path in paths:
        stat = path.stat()
        parts.append(f"{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}")
    return hashlib.sha1("|".join(parts).encode()).hexdigest()[:16]


def load_anime(data_dir: Path | None = None, use_cache: bool = True) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(catalogue, ratings)``, parsed once and cached as parquet keyed by file size + mtime."""
    data_dir = Path(data_dir) if data_dir else anime_data_dir()
    anime_csv, rating_csv = data_dir / "anime.csv", data_dir / "rating.csv"
    for path in (anime_csv, rating_csv):
        if not path.is_file():
            raise AnimeDataError(f"{path}: file not found ({HOW_TO_GET})")
    key = _fingerprint(anime_csv, rating_csv)
    folder = cache_dir("anime", "parsed")
    cat_path, rat_path = folder / f"catalogue-{key}.parquet", folder / f"ratings-{key}.parquet"
    report_path = folder / f"reports-{key}.json"
    if use_cache and cat_path.exists() and rat_path.exists() and report_path.exists():
        try:
            reports = [FileReport(**row) for row in json.loads(report_path.read_text())]
            catalogue, ratings = pd.read_parquet(cat_path), pd.read_parquet(rat_path)
        except Exception as error:  # noqa: BLE001 - a damaged cache is rebuilt from the CSVs
            log.warning("rebuilding the anime cache %s: %s", folder, error)
        else:
            LAST_REPORTS[:] = reports
            for warning in data_warnings():
                log.warning("%s", warning)
            return catalogue, ratings
    catalogue, ratings = load_catalogue(anime_csv), load_ratings(rating_csv)
    reports = [report(anime_csv, len(catalogue)), report(rating_csv, ratings.attrs.get("rows", len(ratings)))]
    if use_cache:
        for old in [*folder.glob("*.parquet"), *folder.glob("reports-*.json")]:  # keep one version only
            old.unlink(missing_ok=True)
        # atomic: a second loader (another thread or server) reads the old files or the new, never half of one
        atomic_write_bytes(cat_path, catalogue.to_parquet(index=False))
        atomic_write_bytes(rat_path, ratings.to_parquet(index=False))
        atomic_write_bytes(report_path, json.dumps([vars(r) for r in reports]).encode())
    LAST_REPORTS[:] = reports  # report() has logged the warnings
    return catalogue, ratings


def data_warnings() -> list[str]:
    """The warnings of the files last loaded (for pages and the CLI to show)."""
    return [warning for item in LAST_REPORTS for warning in item.warnings]


def data_fingerprint(data_dir: Path | None = None) -> str:
    """A short key that changes whenever either source file changes (for model caches)."""
    data_dir = Path(data_dir) if data_dir else anime_data_dir()
    return _fingerprint(data_dir / "anime.csv", data_dir / "rating.csv")


# ---------------------------------------------------------------------------------------------
# splitting
# ---------------------------------------------------------------------------------------------
@dataclass
class AnimeSplit:
    """Contiguous indices and the paper's split.

    * ``items``: one row per item index ``0..n_items-1`` (anime_id, name, genre, type,
      episodes, rating, members); items are every anime that occurs in the kept ratings,
      metadata joined from the catalogue (missing -> NA).
    * ``train`` / ``test``: seen users' rows with columns ``user`` (index ``0..n_users-1``),
      ``item``, ``rating`` (``-1`` = watched, not rated).
    * ``unseen``: the held-out users' rows with ``user_id``, ``item``, ``rating``.
    """

    items: pd.DataFrame
    user_ids: np.ndarray  # user index -> dataset user_id (seen users)
    train: pd.DataFrame
    test: pd.DataFrame
    unseen: pd.DataFrame
    seed: int
    catalogue: pd.DataFrame | None = None  # the full anime.csv (cold-start lists may use it)

    @property
    def n_users(self) -> int:
        return len(self.user_ids)

    @property
    def n_items(self) -> int:
        return len(self.items)

    @property
    def item_ids(self) -> np.ndarray:
        return self.items["anime_id"].to_numpy()

    def item_index(self, anime_ids) -> np.ndarray:
        """Item indices of ``anime_ids``; ``-1`` for anime the model does not know."""
        lookup = pd.Series(np.arange(self.n_items), index=self.item_ids)
        return lookup.reindex(np.asarray(anime_ids)).fillna(-1).to_numpy(dtype=np.int64)

    def user_index(self, user_id: int) -> int | None:
        hits = np.flatnonzero(self.user_ids == user_id)
        return int(hits[0]) if len(hits) else None

    def rated(self, frame: pd.DataFrame) -> pd.DataFrame:
        """Only explicit ratings (``-1`` rows dropped)."""
        return frame[frame["rating"] > 0]

    def summary(self) -> dict[str, int]:
        return {
            "seen_users": self.n_users, "items": self.n_items, "train_rows": len(self.train),
            "test_rows": len(self.test), "unseen_users": int(self.unseen["user_id"].nunique()),
            "unseen_rows": len(self.unseen),
        }


def split_ratings(
    ratings: pd.DataFrame, n_unseen: int = 500, test_fraction: float = 0.1, seed: int = 0
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """The paper's split on raw ids: ``(train, test, unseen)`` frames with user_id/anime_id/rating.

    1. drop users with a single row;
    2. shuffle all rows with ``seed``;
    3. the first ``n_unseen`` users of a seeded permutation of user ids become unseen users;
    4. each remaining user with ``n`` rows gets ``floor(n * test_fraction)`` of its (shuffled)
       rows in test, the rest in train (integer arithmetic: ``n=25`` -> 2 test, 23 train).
    """
    counts = ratings["user_id"].value_counts()
    keep = ratings["user_id"].map(counts).to_numpy() > 1
    kept = ratings[keep]
    rng = np.random.default_rng(seed)
    shuffled = kept.iloc[rng.permutation(len(kept))].reset_index(drop=True)
    users = np.sort(shuffled["user_id"].unique())
    if n_unseen >= len(users):
        raise ValueError(f"n_unseen={n_unseen} leaves no seen users (only {len(users)} users with >1 rating)")
    unseen_users = rng.permutation(users)[:n_unseen]
    is_unseen = shuffled["user_id"].isin(unseen_users).to_numpy()
    unseen, seen = shuffled[is_unseen], shuffled[~is_unseen]
    position = seen.groupby("user_id", sort=False).cumcount().to_numpy()
    size = seen["user_id"].map(seen["user_id"].value_counts()).to_numpy()
    n_test = np.floor(size * test_fraction + 1e-9).astype(np.int64)
    in_test = position >= size - n_test
    return (seen[~in_test].reset_index(drop=True), seen[in_test].reset_index(drop=True),
            unseen.reset_index(drop=True))


def split_anime(
    catalogue: pd.DataFrame, ratings: pd.DataFrame, n_unseen: int = 500, test_fraction: float = 0.1, seed: int = 0
) -> AnimeSplit:
    """:func:`split_ratings` plus contiguous user and item indices."""
    train, test, unseen = split_ratings(ratings, n_unseen, test_fraction, seed)
    item_ids = np.sort(pd.concat([train["anime_id"], test["anime_id"], unseen["anime_id"]]).unique())
    items = pd.DataFrame({"anime_id": item_ids}).merge(catalogue, on="anime_id", how="left")
    missing = items["name"].isna()
    if missing.any():
        log.warning("%d anime in rating.csv are not in anime.csv; named by id", int(missing.sum()))
        items["name"] = items["name"].fillna("anime " + items["anime_id"].astype(str))
    user_ids = np.sort(train["user_id"].unique())
    item_of = pd.Series(np.arange(len(item_ids)), index=item_ids)
    user_of = pd.Series(np.arange(len(user_ids)), index=user_ids)

    def seen_frame(frame):
        return pd.DataFrame({
            "user": user_of.reindex(frame["user_id"]).to_numpy(np.int64),
            "item": item_of.reindex(frame["anime_id"]).to_numpy(np.int64),
            "rating": frame["rating"].to_numpy(np.float32),
        })

    # a seen user always has >= 1 train row (floor(0.1 n) < n), so reindex never yields NaN
    unseen_frame = pd.DataFrame({
        "user_id": unseen["user_id"].to_numpy(np.int64),
        "item": item_of.reindex(unseen["anime_id"]).to_numpy(np.int64),
        "rating": unseen["rating"].to_numpy(np.float32),
    })
    return AnimeSplit(items=items, user_ids=user_ids, train=seen_frame(train), test=seen_frame(test),
                      unseen=unseen_frame, seed=seed, catalogue=catalogue)


def interaction_matrix(frame: pd.DataFrame, n_rows: int, n_items: int, row: str = "user", binary: bool = True):
    """A ``scipy.sparse.csr_matrix`` of watched items (1.0) or ratings (``binary=False``)."""
    import scipy.sparse as sp

    values = np.ones(len(frame), np.float32) if binary else frame["rating"].to_numpy(np.float32)
    matrix = sp.csr_matrix((values, (frame[row].to_numpy(), frame["item"].to_numpy())), shape=(n_rows, n_items))
    matrix.sum_duplicates()
    if binary:
        matrix.data[:] = 1.0
    return matrix


def synthetic_anime(n_users: int = 80, n_items: int = 40, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A small made-up dataset with the Kaggle schema (for tests and smoke runs, never for results).

    Items belong to one of four genres; each user prefers one genre, watches mostly from
    it and rates those higher; about one row in six is ``-1`` (watched, not rated).
    """
    rng = np.random.default_rng(seed)
    genres = np.array(["Action, Shounen", "Romance, Drama", "Comedy, Slice of Life", "Sci-Fi, Mecha"])
    item_genre = np.arange(n_items) % len(genres)
    catalogue = pd.DataFrame({
        "anime_id": np.arange(1, n_items + 1) * 10, "name": [f"Anime {i}" for i in range(n_items)],
        "genre": pd.array(genres[item_genre], dtype="string"), "type": pd.array(["TV"] * n_items, dtype="string"),
        "episodes": pd.array(rng.integers(1, 50, n_items), dtype="Int64"),
        "rating": pd.array(np.round(rng.uniform(5, 9, n_items), 2), dtype="Float64"),
        "members": pd.array(rng.integers(100, 10_000, n_items), dtype="Int64"),
    })
    rows = []
    for user in range(1, n_users + 1):
        liked = rng.integers(len(genres))
        weights = np.where(item_genre == liked, 6.0, 1.0) * np.linspace(2, 1, n_items)
        count = int(rng.integers(4, max(5, n_items // 2)))
        items = rng.choice(n_items, count, replace=False, p=weights / weights.sum())
        for item in items:
            rating = int(np.clip(rng.normal(8.5 if item_genre[item] == liked else 5, 1), 1, 10))
            rows.append((user, int(catalogue["anime_id"][item]), -1 if rng.random() < 1 / 6 else rating))
    ratings = pd.DataFrame(rows, columns=["user_id", "anime_id", "rating"]).astype(np.int32)
    return catalogue, ratings
