"""Anime serving: one fitted bundle of every registered anime model, ranked through the model contract.

:class:`AnimeRecommender` holds one split's :class:`~recsys.anime.prep.AnimeData` and a
model object per entry of ``registry.by_domain("anime")``, and answers
``rank(name, histories, k)`` for a batch of users given as rating histories: dataset
users (``--user-id``), unseen users (``--history-file``, the page's "New user" tab) and
the evaluation all go through the same call, which is ``full_sort_predict`` on the
batch of :meth:`recsys.eval.anime.Histories.batch` and the shared
:func:`recsys.retrieval.topk.top_k` with the watched items excluded. Two fallbacks,
decided by the model's attributes and the rows, not by the method's name: a model with
``known_users_only`` (the paper's MSE model: a per-user table) serves users outside its
training data with :data:`UNSEEN_FALLBACK`; a row with nothing known gets the cold-start
list :data:`COLD_START`.

The bundle is cached under ``cache_dir("anime", "models")`` as one artifact
(:mod:`recsys.artifacts`: safetensors arrays, JSON settings + data fingerprint), keyed
by the data files and the settings. The split is recomputed from the data on load (it
is a seeded function of the files). A damaged, foreign or stale bundle is refused with
a message naming it and rebuilt; old pickle bundles (``*.pkl``) are never read.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch

from recsys import registry
from recsys.anime.prep import AnimeData, AnimeSettings, bundle_path, default_settings, split_fingerprint
from recsys.artifacts import ArtifactError, read_artifact, write_artifact
from recsys.eval.anime import Histories
from recsys.models.two_tower import BiasBaseline
from recsys.anime.ranking import candidate_top_k

log = logging.getLogger(__name__)

#: serves rows a ``known_users_only`` model has no vector for (users outside its training data)
UNSEEN_FALLBACK = "anime-weighted"
#: serves rows with nothing known (an empty history): the paper's cold-start list
COLD_START = "anime-popular"
BUNDLE_FORMAT = "recsys.anime.bundle/3"  # /3: EASE and the DLAE towers stored as float16 (scaled P for EASE)


def method_names() -> list[str]:
    """Registry names of the anime models, in registry order (the CLI, page and tables use them)."""
    return [spec.name for spec in registry.by_domain("anime")]


def scores_of(model, batch: dict) -> np.ndarray:
    """``model.full_sort_predict(batch)`` as a numpy array in the model's own dtype (float32 or float64).

    No conversion: :func:`top_k` compares in float64, which holds either exactly.
    """
    with torch.no_grad():
        return np.asarray(torch.as_tensor(model.full_sort_predict(batch)).cpu().numpy())


@dataclass
class AnimeRecommender:
    """One split and all its fitted models (by registry name); ``rank`` serves every method."""

    settings: AnimeSettings
    data: AnimeData
    models: dict[str, Any]
    bias: BiasBaseline
    elbow: dict
    train_info: dict = field(default_factory=dict)

    @property
    def split(self):
        return self.data.split

    def model(self, name: str):
        """The model of registry entry ``name`` (or an alias such as ``weighted``)."""
        return self.models[registry.get(name, "anime").name]

    # --- histories -----------------------------------------------------------------------------
    def seen_histories(self, users: np.ndarray) -> Histories:
        """Train-split histories of seen users (what the models know about them)."""
        users = np.asarray(users, dtype=np.int64)
        return Histories(self.data.ratings[users], self.split.user_ids[users], users)

    def histories_from_ids(self, anime_ids, ratings, user_id: int = -1) -> tuple[Histories, int]:
        """One unseen user's history from dataset anime ids; returns it and the unknown-id count.

        Ids are compared as Python integers, never cast to a narrower type: an id above
        2^31 (4294967316) is unknown, not the anime it would wrap to (20).
        """
        items = self.split.item_index(_as_int64_ids(anime_ids))
        known = items >= 0
        ratings = np.asarray(ratings, dtype=np.float32)[known]
        items = items[known]
        ratings = np.where(ratings == 0, -1, ratings)  # 0 would vanish in a sparse matrix
        matrix = sp.csr_matrix((ratings, (np.zeros(len(items), np.int64), items)), shape=(1, self.split.n_items))
        matrix.sum_duplicates()
        return Histories(matrix, np.array([user_id])), int((~known).sum())

    # --- ranking -------------------------------------------------------------------------------------
    def rank(self, method: str, histories: Histories, k: int = 10) -> tuple[np.ndarray, np.ndarray, list]:
        """Top-``k`` ``(scores, items, fallbacks)`` per history row, watched items excluded.

        ``fallbacks[row]`` is ``None`` or the reason the method could not serve the row.
        The common case (every row served by the method itself) scores the whole batch in one
        call without slicing it, and each row's top-k is taken among its best ``k + watched``
        columns (:func:`candidate_top_k`): the same list as :func:`top_k` over all columns,
        without copying and masking the full row (the hot path of one serving request).
        """
        spec = registry.get(method, "anime")
        model = self.models[spec.name]
        n, watched = len(histories), histories.watched()
        empty = np.array([len(w) == 0 for w in watched], dtype=bool)
        unknown = np.zeros(n, bool)
        if getattr(model, "known_users_only", False):
            users = np.full(n, -1) if histories.users is None else np.asarray(histories.users)
            unknown = (users < 0) & ~empty
        fallbacks: list = [None] * n
        served = ~empty & ~unknown
        if served.all():  # the hot path: one model serves every row; no slicing, no copy, no reasons
            users = np.full(n, -1, np.int64) if histories.users is None else np.asarray(histories.users, np.int64)
            full = scores_of(model, {"user": torch.from_numpy(users), "history": histories.matrix})
        else:
            full = np.empty((n, self.data.n_items), np.float64)
            for rows, name, reason in (
                (served, spec.name, None),
                (unknown, UNSEEN_FALLBACK, f"unseen user: {spec.display_name} has no user vector; served by "
                                           f"{registry.get(UNSEEN_FALLBACK).display_name.lower()}"),
                (empty, COLD_START, "no known anime in the history: the cold-start popularity list "
                                    f"({registry.get(COLD_START).display_name.lower()})"),
            ):
                if rows.any():
                    full[rows] = scores_of(self.models[name], histories.batch(np.flatnonzero(rows)))
                    for r in np.flatnonzero(rows):
                        fallbacks[r] = reason
        scores, ids = candidate_top_k(full, k, watched)
        return scores, ids, fallbacks

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


def dataset_history(recommender: AnimeRecommender, user_id: int) -> tuple[Histories, pd.DataFrame, str]:
    """A dataset user's known history (all rows: train + test for a seen user), the rows, and the kind.

    Raises :class:`KeyError` for an id that is not a user of the dataset.
    """
    split = recommender.split
    index = split.user_index(int(user_id))
    if index is not None:
        rows = pd.concat([split.train[split.train["user"] == index], split.test[split.test["user"] == index]])
        kind, users = "seen", np.array([index])
    else:
        rows = split.unseen[split.unseen["user_id"] == int(user_id)]
        if rows.empty:
            raise KeyError(f"user_id {user_id} is not in the anime dataset (users with at least 2 ratings); "
                           "pass --history-file for a new user")
        kind, users = "unseen", None
    matrix = sp.csr_matrix((rows["rating"].to_numpy(np.float32), (np.zeros(len(rows), np.int64),
                                                                  rows["item"].to_numpy())), shape=(1, split.n_items))
    return Histories(matrix, np.array([int(user_id)]), users), rows, kind


def _as_int64_ids(ids) -> np.ndarray:
    """Ids as int64 without wrapping: a value outside int64 becomes -1 (no anime has it)."""
    values = [int(v) for v in np.asarray(ids, dtype=object).ravel()]
    return np.array([v if -(2**63) <= v < 2**63 else -1 for v in values], dtype=np.int64)


# =================================================================================================
# the cached bundle
# =================================================================================================
def save_bundle(recommender: AnimeRecommender, path: Path) -> Path:
    """Every model's ``state()`` arrays (``<name>/<array>``) plus settings, configs and data fingerprint."""
    from recsys.checkpoint import config_dict

    arrays = {f"{name}/{key}": value for name, model in recommender.models.items()
              for key, value in model.state().items()}
    bias = recommender.bias
    arrays |= {"bias/user": bias.user_bias, "bias/item": bias.item_bias}
    meta = {"settings": recommender.settings.as_dict(), "settings_key": recommender.settings.key(),
            "data_fingerprint": recommender.data.fingerprint, "bias_mu": bias.mu, "elbow": recommender.elbow,
            "configs": {name: config_dict(model.config) for name, model in recommender.models.items()},
            "train_info": recommender.train_info}
    path = write_artifact(Path(path), arrays, meta, BUNDLE_FORMAT)
    for stale in Path(path).parent.glob("bundle-*.pkl"):  # the old pickle format is never read again
        stale.unlink(missing_ok=True)
    return path


def load_bundle(path: Path, data: AnimeData, settings: AnimeSettings) -> AnimeRecommender:
    """The bundle at ``path`` for ``data``; :class:`ArtifactError` naming the file if it does not fit."""
    from recsys.checkpoint import restore_model

    artifact = read_artifact(Path(path), BUNDLE_FORMAT,
                             expect={"settings_key": settings.key(), "data_fingerprint": data.fingerprint})
    meta, arrays = artifact.meta, artifact.arrays
    models: dict[str, Any] = {}
    try:
        for spec in registry.by_domain("anime"):
            prefix = f"{spec.name}/"
            state = {key[len(prefix):]: value for key, value in arrays.items() if key.startswith(prefix)}
            models[spec.name] = restore_model(spec, data, meta["configs"][spec.name], state)
        bias = BiasBaseline(float(meta["bias_mu"]), np.asarray(arrays["bias/user"]), np.asarray(arrays["bias/item"]))
        if len(bias.user_bias) != data.n_users or len(bias.item_bias) != data.n_items:
            raise ValueError("bias arrays do not fit the data")
    except (KeyError, TypeError, ValueError, RuntimeError) as error:
        raise ArtifactError(f"{path} does not fit this anime data and settings: {error}") from error
    from recsys.anime.training import VECTOR_SOURCE

    data = data.with_item_vectors(models[VECTOR_SOURCE].item_vectors())
    return AnimeRecommender(settings, data, models, bias, meta.get("elbow") or {}, meta.get("train_info") or {})


def get_recommender(settings: AnimeSettings | None = None, callbacks=None, progress=None,
                    retrain: bool = False) -> AnimeRecommender:
    """The cached bundle for ``settings`` (trained and saved on first use, or when the file is refused)."""
    from recsys.anime.prep import load_split
    from recsys.anime.training import build

    settings = settings or default_settings()
    path = bundle_path(settings)
    split, fingerprint = load_split(settings)
    if path.exists() and not retrain:
        try:
            return load_bundle(path, AnimeData.from_split(split, fingerprint), settings)
        except ArtifactError as error:  # damaged, foreign or stale: rebuilt, not fatal
            log.warning("%s; retraining the anime models", error)
    recommender = build(split, settings, callbacks, progress, fingerprint=fingerprint)
    save_bundle(recommender, path)
    return recommender


def apply_active_runs(recommender: AnimeRecommender) -> AnimeRecommender:
    """Serve the Training studio's chosen checkpoints when they fit this bundle's split.

    A checkpoint is loaded through :func:`recsys.checkpoint.load_model` (safetensors, never
    pickle) and must name the same model and data fingerprint (files, seed, unseen
    users); anything else (another split, another model, a damaged or hostile file) is
    refused with a warning naming it, recorded in ``train_info["refused"]``, and the
    cached model is served. A replaced MSE model re-fits the retrieval methods built on
    its item vectors.
    """
    from recsys.anime.training import VECTOR_SOURCE
    from recsys.checkpoint import load_model
    from recsys.models.anime_retrieval import WeightedAverage
    from recsys.train.runs import RunRegistry

    runs = RunRegistry()
    for spec in registry.by_domain("anime"):
        run = runs.active_run(spec.name) if spec.kind == "neural" else None
        if run is None:
            continue
        try:
            model, _ = load_model(run.checkpoint_path, recommender.data,
                                  expect={"model": spec.name, "data_fingerprint": recommender.data.fingerprint})
        except ArtifactError as error:
            log.warning("studio run %s not served: %s", run.id, error)
            recommender.train_info.setdefault("refused", []).append(f"run {run.id}: {error}")
            continue
        recommender.models[spec.name] = model
        recommender.train_info[f"{spec.name}_run"] = run.id
        if spec.name == VECTOR_SOURCE:
            recommender.data = recommender.data.with_item_vectors(model.item_vectors())
            for name, other in recommender.models.items():
                if isinstance(other, WeightedAverage):
                    recommender.models[name] = type(other)(other.config, recommender.data).fit(recommender.data)
    return recommender


def page_recommender() -> AnimeRecommender:
    """The bundle the pages serve: the quick seed-0 settings, studio runs applied (trains once).

    One in-process copy is shared by the Anime page and the explorer, and it is rebuilt
    when the Training studio changes which runs are served.
    """
    from recsys.train.runs import RunRegistry

    runs = RunRegistry()
    served = tuple(getattr(runs.active_run(spec.name), "id", None)
                   for spec in registry.by_domain("anime") if spec.kind == "neural")
    return _served_bundle(served)


_SERVED: dict[tuple, AnimeRecommender] = {}


def _served_bundle(served_run_ids: tuple) -> AnimeRecommender:
    if served_run_ids not in _SERVED:
        _SERVED.clear()  # one copy in memory
        _SERVED[served_run_ids] = apply_active_runs(get_recommender(default_settings(quick=True)))
    return _SERVED[served_run_ids]


#: personal methods that fit in seconds from the data alone (no training): served while the rest trains
FAST_METHODS = ("anime-itemknn", "anime-popular", "anime-popular-count")
#: fitted from the interactions alone (no trained tower's vectors): the CLI serves each without the bundle
STANDALONE_METHODS = (*FAST_METHODS, "anime-ease", "anime-two-tower-dlae")
_QUICK: dict[str, AnimeRecommender] = {}
_BUILD: dict[str, Any] = {}


def quick_recommender(settings: AnimeSettings | None = None, methods: tuple = FAST_METHODS) -> AnimeRecommender:
    """A bundle of ``methods`` only (default :data:`FAST_METHODS`: item-kNN and the popularity lists).

    Why: the full bundle trains neural towers and inverts EASE's 7 k x 7 k Gram matrix (about a
    minute on two cores); a first visit gets a personal list from item-kNN at once instead. The
    CLI also serves any of :data:`STANDALONE_METHODS` this way when no bundle is cached (on the
    full-size file the whole bundle takes the better part of an hour; EASE alone minutes).
    The cold-start list (:data:`COLD_START`) is always fitted too.
    """
    from recsys.anime.prep import load_split
    from recsys.anime.training import config_overrides, fit_bias

    settings = settings or default_settings(quick=True)
    names = tuple(dict.fromkeys((*methods, COLD_START)))
    key = (settings.key(), names)
    if key not in _QUICK:
        split, fingerprint = load_split(settings)
        data = AnimeData.from_split(split, fingerprint)
        overrides = config_overrides(settings)
        models = {name: registry.get(name, "anime").build(data, **overrides).fit(data) for name in names}
        _QUICK.clear()
        _QUICK[key] = AnimeRecommender(settings, data, models, fit_bias(split), {}, {"partial": True})
    return _QUICK[key]


def page_recommender_now() -> tuple[AnimeRecommender, bool]:
    """``(bundle, complete)`` for the page without blocking on training.

    The full bundle when it is in memory or cached on disk, or when the background build
    (:func:`start_bundle_build`) has finished; otherwise the quick item-kNN / popularity
    bundle with ``complete=False``. It never starts the build itself: the page starts it
    once its first list is on screen, so the first personal list does not share the two
    cores with the training. A failed build is re-raised here.
    """
    thread = _BUILD.get("thread")
    if "error" in _BUILD:
        error = _BUILD.pop("error")
        _BUILD.pop("thread", None)
        raise error
    if thread is None and (_SERVED or bundle_exists()):
        return page_recommender(), True
    if thread is not None and not thread.is_alive():
        _BUILD.pop("thread", None)
        return page_recommender(), True
    return quick_recommender(), False


def start_bundle_build() -> bool:
    """Start building the full page bundle in a background thread (once per process).

    Returns True while a build is running (started now or before), False when there is
    nothing to build (the bundle is in memory or cached).
    """
    import threading

    thread = _BUILD.get("thread")
    if thread is not None:
        return thread.is_alive()
    if _SERVED or bundle_exists():
        return False

    def build_in_background():
        try:
            page_recommender()
        except Exception as error:  # shown by the next page run
            log.exception("building the anime models failed")
            _BUILD["error"] = error

    thread = threading.Thread(target=build_in_background, name="anime-bundle", daemon=True)
    _BUILD["thread"] = thread
    thread.start()
    return True


def bundle_exists(settings: AnimeSettings | None = None) -> bool:
    return bundle_path(settings or default_settings(quick=True)).exists()


__all__ = ["AnimeRecommender", "COLD_START", "FAST_METHODS", "STANDALONE_METHODS", "UNSEEN_FALLBACK", "apply_active_runs", "bundle_exists",
           "bundle_path", "get_recommender", "load_bundle", "method_names", "page_recommender", "page_recommender_now",
           "start_bundle_build",
           "quick_recommender", "save_bundle", "split_fingerprint"]
