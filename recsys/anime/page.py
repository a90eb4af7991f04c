"""Page helpers of the anime domain (Anime page, explorer sources). UI-free: no streamlit."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd

from recsys.eval.anime import Histories
from recsys.viz.sources import Source, SourceData, SourceUnavailable


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


#: the methods the page shows side by side by default (registry names), the rest are one click away:
#: the ones that personalise best first (the denoising two-tower, EASE, item-kNN), then the paper's
DEFAULT_PAGE_METHODS = ("anime-two-tower-dlae", "anime-ease", "anime-itemknn", "anime-weighted")


def page_methods() -> dict[str, str]:
    """``{registry name: display name}`` of every anime model, the page's method picker."""
    from recsys import registry

    return {spec.name: spec.display_name for spec in registry.by_domain("anime")}


def dataset_user(recommender, user_id: int) -> tuple[Histories, pd.DataFrame, str]:
    """A dataset user's known history (all rows), a display table, and "seen" / "unseen"."""
    from recsys.anime.serving import dataset_history

    histories, rows, kind = dataset_history(recommender, user_id)
    return histories, history_table(recommender, rows["item"], rows["rating"]), kind


def history_table(recommender, items, ratings) -> pd.DataFrame:
    meta = recommender.split.items.iloc[np.asarray(items, dtype=np.int64)]
    table = pd.DataFrame({"anime_id": meta["anime_id"].to_numpy(), "name": meta["name"].astype(str).to_numpy(),
                          "rating": np.asarray(ratings, dtype=np.float64),
                          "genre": meta["genre"].astype(object).where(meta["genre"].notna(), None).to_numpy()})
    table["rating"] = table["rating"].map(lambda r: "watched" if r <= 0 else f"{r:g}")
    return table.sort_values("rating", key=lambda s: s.map(lambda r: -1 if r == "watched" else float(r)),
                             ascending=False).reset_index(drop=True)


def recommend_table(recommender, method: str, histories: Histories, k: int = 10):
    """``(DataFrame[name, genre, score, anime_id], fallback reason or None, latency ms)`` for one user."""
    started = time.perf_counter()
    scores, ids, fallbacks = recommender.rank(method, histories, k)
    latency = 1000 * (time.perf_counter() - started)
    return pd.DataFrame(recommender.results(scores, ids, 0), columns=["name", "genre", "score", "anime_id"]), \
        fallbacks[0], latency


def anime_names(recommender, anime_ids) -> dict[int, str]:
    """``{anime_id: name}`` for the given dataset ids (unknown ids left out)."""
    items = recommender.split.items
    known = items[items["anime_id"].isin([int(a) for a in anime_ids])]
    return dict(zip(known["anime_id"].astype(int), known["name"].astype(str), strict=True))


def search_anime(recommender, query: str, limit: int = 50) -> pd.DataFrame:
    """Anime whose name contains ``query`` (case-insensitive), most watched first."""
    items = recommender.split.items.assign(watched=recommender.data.popularity)
    if query:
        items = items[items["name"].str.contains(query, case=False, regex=False, na=False)]
    return items.sort_values("watched", ascending=False).head(limit)[["anime_id", "name", "genre", "watched"]]


def served_note(recommender) -> str:
    """Which checkpoints the page serves (the cached bundle, or a studio run), and refused runs."""
    from recsys import registry

    parts = []
    for spec in registry.by_domain("anime"):
        if spec.kind == "neural":
            run = recommender.train_info.get(f"{spec.name}_run")
            parts.append(f"{spec.display_name}: " + (f"studio run {run}" if run else "the cached bundle"))
    return "; ".join(parts)


def load_anime_tower(name: str) -> SourceData:
    """Item vectors of the served anime two-tower model ``name`` (a neural anime registry entry).

    Uses the bundle the Anime page serves (``page_recommender()``, studio runs applied);
    it is only loaded when already trained, because training it takes minutes.
    """
    from recsys.anime import serving

    if not serving.bundle_exists():
        raise SourceUnavailable("The anime models are not trained yet: open the Anime page once (it trains them, "
                                "a few minutes) or run `python -m recsys evaluate anime`.")
    recommender = serving.page_recommender()
    vectors = np.asarray(recommender.models[name].item_vectors(), dtype=np.float32)
    columns = [c for c in ("anime_id", "name", "genre", "type", "members") if c in recommender.split.items]
    meta = anime_meta(recommender.split.items[columns].reset_index(drop=True))
    user_ids = np.asarray(recommender.split.user_ids)

    def users() -> list[int]:
        rng = np.random.default_rng(0)
        return sorted(int(u) for u in rng.choice(user_ids, size=min(200, len(user_ids)), replace=False))

    def user_items(user_id: int) -> pd.DataFrame:
        _, table, _ = dataset_user(recommender, int(user_id))
        history = pd.DataFrame({"anime_id": table["anime_id"].to_numpy(),
                                "rating": pd.to_numeric(table["rating"], errors="coerce").fillna(-1).to_numpy()})
        return rows_for_history(meta, history)

    from recsys import registry

    label = registry.get(name, "anime").display_name
    served = recommender.train_info.get(f"{name}_run")
    return SourceData(vectors, meta, user_ids=users, user_items=user_items,
                      note=f"{len(vectors):,} anime, item tower of the served {label} model"
                           + (f" (studio run {served})" if served else ""))


def embedding_sources() -> list[Source]:
    """One explorer source per neural anime model (their item towers)."""
    from recsys import registry

    # explorer keys and labels kept from before the registry (saved explorer state and the browser tests use them)
    known = {"anime-two-tower": ("anime-two-tower", "Anime items: two-tower (ratings)"),
             "anime-two-tower-implicit": ("anime-implicit", "Anime items: implicit two-tower")}
    sources = []
    for spec in registry.by_domain("anime"):
        if spec.kind == "neural":
            key, label = known.get(spec.name, (spec.name, f"Anime items: {spec.display_name}"))
            sources.append(Source(key, label, f"Item-tower vectors of the served {spec.display_name} model.",
                                  lambda name=spec.name: load_anime_tower(name)))
    return sources
