"""Where the embedding explorer gets its vectors: a small registry of *sources*.

A source is a function returning a :class:`SourceData`: ``vectors`` (n, d) and a
row-aligned ``meta`` DataFrame with a ``label`` column (the hover text) plus columns
to colour by (topic, series, genre, type, ...). A source may also say how to put a
text query into the same space (``encode_query``) and how to look up a user's items
(``user_items``), which the explorer draws as overlays.

Sources whose pipeline is missing, untrained or without data raise
:class:`SourceUnavailable` with a message the page shows as is, so a missing
pipeline never breaks the page.

Pipeline entry points used (looked up by name, so pipelines are wired by defining them):

* ``recsys.pipelines.videos.video_tower_embeddings(run_id: str | None = None)
  -> tuple[np.ndarray, pd.DataFrame]``: DCDT video-tower vectors of the catalogue
  (``meta`` row-aligned with ``load_catalog()``; ``None`` meta means catalogue order);
  ``query_tower_embeddings(texts: list[str], run_id: str | None = None) -> np.ndarray``
  for query overlays in that space.
* ``recsys.pipelines.anime.item_embeddings(run_id: str) -> tuple[np.ndarray, pd.DataFrame]``:
  item-tower vectors of a trained two-tower run, ``meta`` with ``anime_id, name, genre, type``;
  ``user_history(user_id: int) -> pd.DataFrame`` (``anime_id, rating``) and
  ``example_users(n: int = 200) -> list[int]`` for the user overlay (fallback: the raw ratings).
* ``recsys.pipelines.sequential.item_embeddings(run_id: str) -> tuple[np.ndarray, pd.DataFrame]``:
  CL-EPIDTN item-tower vectors, ``meta`` with ``item_id, title, genre`` (ml-100k).
"""

from __future__ import annotations

import importlib
import inspect
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import pandas as pd

from recsys.viz.projections import fingerprint_array

log = logging.getLogger(__name__)


class SourceUnavailable(RuntimeError):
    """This source cannot be shown now; the message says why and what to do."""


@dataclass
class SourceData:
    vectors: np.ndarray
    meta: pd.DataFrame
    encode_query: Callable[[list[str]], np.ndarray] | None = None  # texts -> vectors in this space
    user_ids: Callable[[], Sequence[int]] | None = None  # users offered for the user overlay
    user_items: Callable[[int], pd.DataFrame] | None = None  # user -> DataFrame[row, weight]
    note: str = ""

    def __post_init__(self):
        self.vectors = np.asarray(self.vectors, dtype=np.float32)
        if self.vectors.ndim != 2:
            raise ValueError(f"source vectors must be 2-D, got shape {self.vectors.shape}")
        if len(self.meta) != len(self.vectors):
            raise ValueError(f"{len(self.vectors)} vectors but {len(self.meta)} metadata rows")
        self.meta = self.meta.reset_index(drop=True)
        if "label" not in self.meta:
            self.meta["label"] = [f"item {i}" for i in range(len(self.meta))]

    @cached_property
    def fingerprint(self) -> str:
        return fingerprint_array(self.vectors)


@dataclass
class Source:
    key: str
    title: str
    description: str
    load: Callable[[], SourceData] = field(repr=False)


def _import(module: str, needs: str):
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as error:
        if error.name == module:
            raise SourceUnavailable(f"`{module}` is not written yet; this source needs {needs}.") from None
        raise


def _entry(module, names: Sequence[str], needs: str) -> Callable:
    for name in names:
        function = getattr(module, name, None)
        if callable(function):
            return function
    raise SourceUnavailable(f"`{module.__name__}` has no `{names[0]}`; this source needs {needs}.")


def _call(function: Callable, *args, **kwargs):
    """Call ``function`` passing only the keyword arguments it accepts."""
    try:
        accepted = inspect.signature(function).parameters
        if not any(p.kind is p.VAR_KEYWORD for p in accepted.values()):
            kwargs = {k: v for k, v in kwargs.items() if k in accepted}
    except (TypeError, ValueError):
        pass
    return function(*args, **kwargs)


def _first_of_list(value):
    if isinstance(value, (list, tuple, np.ndarray)):
        return value[0] if len(value) else None
    return value


def _first_genre(value):
    if value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NA:
        return None
    return str(value).split(",")[0].strip() or None


def _unpack(result, needs: str) -> tuple[np.ndarray, pd.DataFrame | None]:
    if isinstance(result, tuple) and len(result) == 2:
        return np.asarray(result[0]), result[1]
    if isinstance(result, np.ndarray):
        return result, None
    raise SourceUnavailable(f"unexpected return type {type(result).__name__}; expected {needs}")


# ---------------------------------------------------------------------------------------------
# catalogue text embeddings (implemented here)
# ---------------------------------------------------------------------------------------------
def catalog_meta(catalog: pd.DataFrame) -> pd.DataFrame:
    """Explorer metadata of the video catalogue: label, video_id, series, level, topic (the central one)."""
    meta = pd.DataFrame({"label": catalog["title"].astype(str)})
    for column in ("video_id", "series", "level"):
        if column in catalog:
            meta[column] = catalog[column].to_numpy()
    if "topics" in catalog:
        meta["topic"] = catalog["topics"].map(_first_of_list).to_numpy()
        meta["all_topics"] = catalog["topics"].map(lambda t: ", ".join(t) if isinstance(t, list) else str(t)).to_numpy()
    return meta


def _local_embedder():
    try:
        from recsys.embed import get_embedder
    except ImportError:
        get_embedder = None
    if get_embedder is not None:
        return get_embedder("local")
    try:
        from recsys.embed.local import LocalEmbedder
    except ImportError as error:
        raise SourceUnavailable(f"no local text embedder available ({error})") from None
    return LocalEmbedder()


def load_catalog_text() -> SourceData:
    """Catalogue videos embedded by the local MiniLM embedder from ``title. description``."""
    try:
        from recsys.data.videos import load_catalog
    except ImportError as error:
        raise SourceUnavailable(f"the video catalogue loader is missing ({error})") from None
    catalog = load_catalog()
    embedder = _local_embedder()
    texts = catalog["text"].tolist() if "text" in catalog else (catalog["title"] + ". " + catalog["description"]).tolist()
    vectors = embedder.encode(texts)
    return SourceData(
        vectors=vectors, meta=catalog_meta(catalog),
        encode_query=lambda queries: embedder.encode(list(queries)),
        note=f"{len(catalog)} videos, {getattr(embedder, 'name', 'local')} text embeddings of title + description",
    )


# ---------------------------------------------------------------------------------------------
# pipeline-backed sources
# ---------------------------------------------------------------------------------------------
def _registry():
    from recsys.train.runs import RunRegistry

    return RunRegistry()


def finished_runs(predicate: Callable[[str], bool]) -> list[tuple[str, str]]:
    """``(run_id, recipe)`` of finished runs with a checkpoint whose recipe satisfies ``predicate``."""
    out = []
    try:
        runs = _registry().list()
    except OSError:
        return out
    for run in runs:
        try:
            recipe = run.recipe
            if predicate(recipe) and run.status().get("status") == "done" and run.checkpoint_path.exists():
                out.append((run.id, recipe))
        except (OSError, ValueError, KeyError):
            continue
    return out


def load_dcdt_videos(run_id: str | None = None) -> SourceData:
    needs = ("`recsys.pipelines.videos.video_tower_embeddings(run_id: str | None = None)"
             " -> tuple[np.ndarray, pd.DataFrame]`")
    module = _import("recsys.pipelines.videos", needs)
    function = _entry(module, ["video_tower_embeddings", "video_embeddings", "item_embeddings"], needs)
    if run_id is None:
        active = _registry().active_run("dcdt")
        run_id = active.id if active else None
    vectors, meta = _unpack(_call(function, run_id=run_id), needs)
    from recsys.data.videos import load_catalog

    catalog_frame = catalog_meta(load_catalog())
    if meta is None:
        meta = catalog_frame
    elif "label" not in meta:
        meta = catalog_frame if len(meta) == len(catalog_frame) else meta.assign(label=meta.iloc[:, 0].astype(str))
    query = getattr(module, "query_tower_embeddings", None) or getattr(module, "encode_queries", None)
    encode = (lambda texts: np.asarray(_call(query, list(texts), run_id=run_id))) if callable(query) else None
    return SourceData(vectors, meta, encode_query=encode,
                      note=f"DCDT video-tower outputs ({'run ' + run_id if run_id else 'default model'})")


def anime_meta(meta: pd.DataFrame) -> pd.DataFrame:
    meta = meta.copy()
    if "label" not in meta:
        meta["label"] = meta["name"].astype(str) if "name" in meta else meta.iloc[:, 0].astype(str)
    if "genre" in meta and "main_genre" not in meta:
        meta["main_genre"] = meta["genre"].map(_first_genre)
    return meta


def _anime_users(module) -> tuple[Callable[[], Sequence[int]], Callable[[int], pd.DataFrame]]:
    """User list and history functions: the pipeline's, else read from the raw ratings."""
    history = getattr(module, "user_history", None)
    examples = getattr(module, "example_users", None)
    cache: dict[str, pd.DataFrame] = {}

    def ratings() -> pd.DataFrame:
        if "r" not in cache:
            from recsys.data.anime import load_anime

            cache["r"] = load_anime()[1]
        return cache["r"]

    def users() -> Sequence[int]:
        if callable(examples):
            return list(examples(200))
        frame = ratings()
        counts = frame["user_id"].value_counts()
        pool = counts[(counts >= 20) & (counts <= 300)].index.to_numpy()
        rng = np.random.default_rng(0)
        return sorted(int(u) for u in rng.choice(pool, size=min(200, len(pool)), replace=False))

    def items(user_id: int) -> pd.DataFrame:
        if callable(history):
            return history(user_id)
        frame = ratings()
        return frame.loc[frame["user_id"] == user_id, ["anime_id", "rating"]]

    return users, items


def rows_for_history(meta: pd.DataFrame, history: pd.DataFrame, id_column: str = "anime_id") -> pd.DataFrame:
    """Map a user's ``(anime_id, rating)`` history to ``(row, weight)`` rows of ``meta``.

    Weights are the ratings; ``-1`` ("watched, not rated") counts as a neutral 5 so a
    watched title still pulls the average. Items the model does not know are dropped.
    """
    if id_column not in meta or id_column not in history:
        return pd.DataFrame(columns=["row", "weight"])
    lookup = pd.Series(np.arange(len(meta)), index=meta[id_column].to_numpy())
    lookup = lookup[~lookup.index.duplicated()]
    rows = lookup.reindex(history[id_column].to_numpy())
    weight = history["rating"].to_numpy(dtype=float) if "rating" in history else np.ones(len(history))
    weight = np.where(weight > 0, weight, 5.0)
    frame = pd.DataFrame({"row": rows.to_numpy(), "weight": weight}).dropna()
    return frame.astype({"row": int})


def load_anime_items(run_id: str) -> SourceData:
    needs = "`recsys.pipelines.anime.item_embeddings(run_id: str) -> tuple[np.ndarray, pd.DataFrame]`"
    module = _import("recsys.pipelines.anime", needs)
    function = _entry(module, ["item_embeddings", "item_tower_embeddings"], needs)
    vectors, meta = _unpack(_call(function, run_id), needs)
    meta = anime_meta(meta if meta is not None else pd.DataFrame(index=range(len(vectors))))
    users, history = _anime_users(module)
    return SourceData(
        vectors, meta, user_ids=users,
        user_items=lambda user_id: rows_for_history(meta, history(user_id)),
        note=f"item-tower vectors of two-tower run {run_id}",
    )


def load_sequential_items(run_id: str) -> SourceData:
    needs = "`recsys.pipelines.sequential.item_embeddings(run_id: str) -> tuple[np.ndarray, pd.DataFrame]`"
    module = _import("recsys.pipelines.sequential", needs)
    function = _entry(module, ["item_embeddings", "item_tower_embeddings"], needs)
    vectors, meta = _unpack(_call(function, run_id), needs)
    meta = meta if meta is not None else pd.DataFrame(index=range(len(vectors)))
    if "label" not in meta:
        meta = meta.assign(label=meta["title"].astype(str) if "title" in meta else [f"item {i}" for i in range(len(meta))])
    if "genre" in meta and "main_genre" not in meta:
        meta = meta.assign(main_genre=meta["genre"].map(_first_genre))
    return SourceData(vectors, meta, note=f"CL-EPIDTN item tower of run {run_id}")


def _unavailable(message: str) -> Callable[[], SourceData]:
    def load() -> SourceData:
        raise SourceUnavailable(message)

    return load


def _recipe_domain(recipe: str) -> str:
    try:
        from recsys.train.recipes import all_recipes

        found = all_recipes().get(recipe)
        return found.domain if found else ""
    except Exception:  # a broken pipeline must not break the explorer's source list
        return ""


def list_sources() -> list[Source]:
    """Every source the explorer offers now; untrained pipelines appear with a reason."""
    sources = [
        Source("catalog-text", "Video catalogue: text embeddings",
               "MiniLM embeddings of each video's title and description.", load_catalog_text),
        Source("dcdt-videos", "Video catalogue: DCDT video tower",
               "The trained DCDT video tower's output for each video (active dcdt run).", load_dcdt_videos),
    ]
    anime_runs = finished_runs(lambda r: "two-tower" in r or (_recipe_domain(r) == "anime"))
    for run_id, recipe in anime_runs:
        sources.append(Source(f"anime-items:{run_id}", f"Anime items: {recipe} ({run_id})",
                              "Item-tower vectors of this trained two-tower run.",
                              lambda run_id=run_id: load_anime_items(run_id)))
    if not anime_runs:
        sources.append(Source("anime-items", "Anime items: two-tower item tower",
                              "Item-tower vectors of a trained two-tower run.",
                              _unavailable("No finished anime two-tower run yet: train one (e.g. `anime-two-tower`) "
                                           "in the Training studio, then come back.")))
    seq_runs = finished_runs(lambda r: r.startswith("cl-epidtn"))
    for run_id, recipe in seq_runs:
        sources.append(Source(f"cl-epidtn-items:{run_id}", f"ml-100k items: {recipe} ({run_id})",
                              "CL-EPIDTN item-tower vectors.", lambda run_id=run_id: load_sequential_items(run_id)))
    if not seq_runs:
        sources.append(Source("cl-epidtn-items", "ml-100k items: CL-EPIDTN item tower",
                              "CL-EPIDTN item-tower vectors of a trained run.",
                              _unavailable("No finished `cl-epidtn` run yet: train one in the Training studio.")))
    return sources


def get_source(key: str) -> Source:
    for source in list_sources():
        if source.key == key:
            return source
    raise KeyError(f"unknown explorer source {key!r}")


def load_source(key: str) -> SourceData:
    """Load a source by key; raises :class:`SourceUnavailable` with the reason when it cannot."""
    source = get_source(key)
    try:
        return source.load()
    except SourceUnavailable:
        raise
    except FileNotFoundError as error:  # a missing dataset (DataNotFoundError) or checkpoint
        raise SourceUnavailable(str(error)) from error
