"""Page helpers of the video domain (Ask page, explorer sources). UI-free: no streamlit."""

from __future__ import annotations

import numpy as np
import pandas as pd

from recsys.viz.sources import Source, SourceData, SourceUnavailable, finished_runs, run_registry


def _first_of_list(value):
    if isinstance(value, (list, tuple, np.ndarray)):
        return value[0] if len(value) else None
    return value


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
        active = run_registry().active_run("dcdt")
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




def embedding_sources() -> list[Source]:
    return [
        Source("catalog-text", "Video catalogue: text embeddings",
               "MiniLM embeddings of each video's title and description.", load_catalog_text),
        Source("dcdt-videos", "Video catalogue: DCDT video tower",
               "The trained DCDT video tower's output for each video (active dcdt run).", load_dcdt_videos),
    ]
