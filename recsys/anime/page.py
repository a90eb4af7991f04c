"""Page helpers of the anime domain (Anime page, explorer sources). UI-free: no streamlit."""

from __future__ import annotations

import numpy as np
import pandas as pd

from recsys.viz.sources import Source, SourceData, SourceUnavailable, finished_runs


def _first_genre(value):
    if value is None or (isinstance(value, float) and np.isnan(value)) or value is pd.NA:
        return None
    return str(value).split(",")[0].strip() or None


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




def embedding_sources() -> list[Source]:
    return [
        Source("anime-two-tower", "Anime items: two-tower (ratings)",
               "Item-tower vectors of the served two-tower rating model (the paper's MSE model).",
               lambda: load_anime_tower("mse")),
        Source("anime-implicit", "Anime items: implicit two-tower",
               "Item-tower vectors of the served implicit-feedback two-tower model.",
               lambda: load_anime_tower("implicit")),
    ]
