"""Where the embedding explorer gets its vectors: a small registry of *sources*.

A source is a function returning a :class:`SourceData`: ``vectors`` (n, d) and a
row-aligned ``meta`` DataFrame with a ``label`` column (the hover text) plus columns
to colour by (topic, series, genre, type, ...). A source may also say how to put a
text query into the same space (``encode_query``) and how to look up a user's items
(``user_items``), which the explorer draws as overlays.

Sources whose pipeline is missing, untrained or without data raise
:class:`SourceUnavailable` with a message the page shows as is, so a missing
pipeline never breaks the page.

Pipeline entry points used (looked up by name; a missing one makes its source unavailable):

* DCDT video tower: ``recsys.pipelines.videos.video_tower_embeddings(run_id: str | None = None)
  -> tuple[np.ndarray, pd.DataFrame]`` when defined (with ``query_tower_embeddings(texts, run_id)``
  for a query overlay), else ``VideoService(backend="local", train_if_missing=False)
  .bundle().model("dcdt").item_tower()``, the served model's packed item vectors.
* Anime items: ``recsys.pipelines.anime.page_recommender()`` (only when ``bundle_path(
  default_settings(quick=True))`` exists), its ``mse`` / ``implicit`` towers' ``item_vectors()``,
  ``split.items`` for metadata and ``dataset_user(recommender, user_id)`` for the user overlay.
* Sequential items (CL-EPIDTN, SASRec, ... per finished run): ``recsys.pipelines.sequential.
  item_embeddings(run_id) -> (vectors, meta)`` when defined, else ``load_dataset``, ``make_split``
  and ``load_checkpoint(path, dataset, split).item_tower()`` (row 0, padding, dropped).
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
    function = next((getattr(module, n) for n in ("video_tower_embeddings", "video_embeddings")
                     if callable(getattr(module, n, None))), None)
    if function is None and hasattr(module, "VideoService"):
        return _dcdt_from_service(module)
    if function is None:
        raise SourceUnavailable(f"`recsys.pipelines.videos` has no `video_tower_embeddings`; this source needs {needs}.")
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


def _dcdt_from_service(module) -> SourceData:
    """The served DCDT model's item tower (``VideoService(...).bundle().model("dcdt").item_tower()``).

    The packed item vector (``t', d', W_t t', W_d d'``, prior, ...) is what serving scores
    against the query tower; the query tower's packing differs, so queries are not
    placed in this space (no query overlay).
    """
    import torch

    service = module.VideoService(backend="local", train_if_missing=False)
    try:
        model = service.bundle().model("dcdt")
    except FileNotFoundError as error:
        raise SourceUnavailable(f"No DCDT checkpoint yet: {error}") from None
    with torch.no_grad():
        vectors = model.item_tower().detach().cpu().numpy()
    return SourceData(vectors, catalog_meta(service.data.catalog),
                      note=f"DCDT video-tower outputs ({service.model_source('dcdt')}), {vectors.shape[1]}-d packed")


def anime_meta(meta: pd.DataFrame) -> pd.DataFrame:
    meta = meta.copy()
    if "label" not in meta:
        meta["label"] = meta["name"].astype(str) if "name" in meta else meta.iloc[:, 0].astype(str)
    if "genre" in meta and "main_genre" not in meta:
        meta["main_genre"] = meta["genre"].map(_first_genre)
    return meta


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


def load_anime_tower(kind: str) -> SourceData:
    """Item vectors of the served anime two-tower model (``kind``: ``mse`` or ``implicit``).

    Uses the bundle the Anime page serves (``page_recommender()``, studio runs applied);
    it is only loaded when already trained, because training it takes minutes.
    """
    needs = "`recsys.pipelines.anime.page_recommender()` and a trained bundle"
    module = _import("recsys.pipelines.anime", needs)
    for name in ("default_settings", "bundle_path", "page_recommender", "dataset_user"):
        if not callable(getattr(module, name, None)):
            raise SourceUnavailable(f"`recsys.pipelines.anime` has no `{name}`; this source needs {needs}.")
    if not module.bundle_path(module.default_settings(quick=True)).exists():
        raise SourceUnavailable("The anime models are not trained yet: open the Anime page once (it trains them, "
                                "a few minutes) or run `python -m recsys evaluate anime`.")
    recommender = module.page_recommender()
    tower = getattr(recommender, kind)
    vectors = np.asarray(tower.item_vectors(), dtype=np.float32)
    columns = [c for c in ("anime_id", "name", "genre", "type", "members") if c in recommender.split.items]
    meta = anime_meta(recommender.split.items[columns].reset_index(drop=True))
    user_ids = np.asarray(recommender.split.user_ids)

    def users() -> list[int]:
        rng = np.random.default_rng(0)
        return sorted(int(u) for u in rng.choice(user_ids, size=min(200, len(user_ids)), replace=False))

    def user_items(user_id: int) -> pd.DataFrame:
        _, table, _ = module.dataset_user(recommender, int(user_id))
        history = pd.DataFrame({"anime_id": table["anime_id"].to_numpy(),
                                "rating": pd.to_numeric(table["rating"], errors="coerce").fillna(-1).to_numpy()})
        return rows_for_history(meta, history)

    label = {"mse": "two-tower (ratings, MSE)", "implicit": "implicit two-tower"}.get(kind, kind)
    served = recommender.train_info.get(f"{kind}_run")
    return SourceData(vectors, meta, user_ids=users, user_items=user_items,
                      note=f"{len(vectors):,} anime, item tower of the served {label} model"
                           + (f" (studio run {served})" if served else ""))


def load_sequential_run(run_id: str) -> SourceData:
    """Item-tower vectors of a finished sequential run (CL-EPIDTN, SASRec, ...), rebuilt from its checkpoint."""
    import torch

    needs = "`recsys.pipelines.sequential.load_checkpoint(path, dataset, split)`"
    module = _import("recsys.pipelines.sequential", needs)
    function = getattr(module, "item_embeddings", None)
    if callable(function):
        vectors, meta = _unpack(function(run_id), needs)
        meta = meta if meta is not None else pd.DataFrame(index=range(len(vectors)))
        return SourceData(vectors, meta, note=f"item tower of run {run_id}")
    for name in ("load_dataset", "make_split", "load_checkpoint"):
        if not callable(getattr(module, name, None)):
            raise SourceUnavailable(f"`recsys.pipelines.sequential` has no `{name}`; this source needs {needs}.")
    run = _registry().get(run_id)
    options = {**getattr(module, "RECIPE_OPTIONS", {}), **run.config.get("options", {})}
    dataset = module.load_dataset(options.get("dataset", "ml-100k"), options.get("anime_max_users"))
    split = module.make_split(dataset, options.get("split", "loo"))
    model = module.load_checkpoint(run.checkpoint_path, dataset, split)
    if not hasattr(model, "item_tower"):
        raise SourceUnavailable(f"{run.recipe} has no item tower to show")
    with torch.no_grad():
        vectors = model.item_tower().detach().cpu().numpy()[1:]  # row 0 is padding
    names = list(getattr(dataset, "item_names", []))[1:]
    meta = pd.DataFrame({"label": names if len(names) == len(vectors) else [f"item {i + 1}" for i in range(len(vectors))],
                         "item_id": np.arange(1, len(vectors) + 1)})
    table = getattr(dataset, "item_features", None)
    if table is not None and getattr(table, "values", None) is not None:
        values = np.asarray(table.values)[1:]
        for f, field_name in enumerate(table.names):
            if len(values) == len(vectors):
                meta[field_name] = values[:, f]
    return SourceData(vectors, meta, note=f"{len(vectors):,} {dataset.name} items, item tower of {run.recipe} "
                                          f"run {run_id}")


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
    sources += [
        Source("anime-two-tower", "Anime items: two-tower (ratings)",
               "Item-tower vectors of the served two-tower rating model (the paper's MSE model).",
               lambda: load_anime_tower("mse")),
        Source("anime-implicit", "Anime items: implicit two-tower",
               "Item-tower vectors of the served implicit-feedback two-tower model.",
               lambda: load_anime_tower("implicit")),
    ]
    seq_runs = finished_runs(lambda r: _recipe_domain(r) == "sequential")
    for run_id, recipe in seq_runs:
        sources.append(Source(f"seq:{run_id}", f"Sequential items: {recipe} ({run_id})",
                              "Item-tower vectors of this finished run.", lambda run_id=run_id: load_sequential_run(run_id)))
    if not seq_runs:
        sources.append(Source("cl-epidtn-items", "Sequential items: CL-EPIDTN item tower",
                              "Item-tower vectors of a finished sequential run (CL-EPIDTN, SASRec, ...).",
                              _unavailable("No finished sequential run yet: train `cl-epidtn` (or another "
                                           "sequential model) in the Training studio, then come back.")))
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
