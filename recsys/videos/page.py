"""Page helpers of the video domain (Ask page, explorer sources). UI-free: no streamlit.

The Ask page (``app_pages/ask.py``) reads everything it shows from here: the model
picker (:func:`model_choices`, from the registry), example queries, metric
definitions and the committed result tables, and the service factory
(:func:`recsys.videos.serving.make_service`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from recsys.viz.sources import Source, SourceData, SourceUnavailable

EXAMPLE_QUERIES = [
    "what is an eigenvector, intuitively?",
    "how to fit a line to data with least squares",
    "Gram-Schmidt step by step",
    "visual explanation of the determinant as area",
    "singular value decomposition for image compression",
    "¿qué es una matriz inversa?",
]
#: models the comparison view starts with
DEFAULT_COMPARE = ("dcdt", "bm25", "embedding")


def model_choices() -> dict[str, str]:
    """``{name: display name}`` of every video model, in registry order (the page's picker)."""
    from recsys import registry

    return {spec.name: spec.display_name for spec in registry.by_domain("videos")}


def results_dir() -> Path:
    from recsys.videos.experiments import RESULTS_DIR

    return RESULTS_DIR


def result_tables() -> dict[str, pd.DataFrame]:
    """The committed evaluation tables that exist: ``{"Table 2...": frame, "Table 3...": frame}``."""
    folder = results_dir()
    tables = {}
    for title, name in [("Test split (Table 2: DCDT vs baselines; trained models: mean over seeds)", "table2_test.csv"),
                        ("Table 3: ablation", "table3_test.csv")]:
        if (folder / name).exists():
            tables[title] = pd.read_csv(folder / name)
    return tables


# ---------------------------------------------------------------- explorer sources
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


def load_catalog_text() -> SourceData:
    """Catalogue videos embedded by the local MiniLM embedder from ``title. description``."""
    from recsys.data.videos import load_catalog
    from recsys.embed import get_embedder

    catalog = load_catalog()
    embedder = get_embedder("local")
    vectors = embedder.encode(catalog["text"].tolist())
    return SourceData(
        vectors=vectors, meta=catalog_meta(catalog),
        encode_query=lambda queries: embedder.encode(list(queries)),
        note=f"{len(catalog)} videos, {getattr(embedder, 'name', 'local')} text embeddings of title + description",
    )


def load_dcdt_videos(run_id: str | None = None) -> SourceData:
    """The DCDT item tower (packed ``t', d', W_t t', W_d d'``, prior, ...) of the served model or of ``run_id``.

    The packed item vector is what serving scores against the query tower; the query
    tower's packing differs, so queries are not placed in this space (no query overlay).
    A run's checkpoint is read through :func:`recsys.videos.training.load_checkpoint`
    (safetensors, refused with a message naming it when damaged).
    """
    import torch

    from recsys.artifacts import ArtifactError
    from recsys.videos import serving, training

    service = serving.VideoService(backend="local", train_if_missing=False)
    bundle = service.bundle()
    if run_id is None:
        try:
            model = bundle.model("dcdt")
        except FileNotFoundError as error:
            raise SourceUnavailable(f"No DCDT checkpoint yet: {error}") from None
        origin = service.model_source("dcdt")
    else:
        from recsys.train.runs import RunRegistry

        try:
            model, _ = training.load_checkpoint(RunRegistry().get(run_id).checkpoint_path, bundle.items, "dcdt")
        except (ArtifactError, KeyError, FileNotFoundError) as error:
            raise SourceUnavailable(f"run {run_id} cannot be shown: {error}") from None
        origin = f"run {run_id}"
    with torch.no_grad():
        vectors = model.eval().item_tower().detach().cpu().numpy()
    return SourceData(vectors, catalog_meta(service.data.catalog),
                      note=f"DCDT video-tower outputs ({origin}), {vectors.shape[1]}-d packed")


def embedding_sources() -> list[Source]:
    return [
        Source("catalog-text", "Video catalogue: text embeddings",
               "MiniLM embeddings of each video's title and description.", load_catalog_text),
        Source("dcdt-videos", "Video catalogue: DCDT video tower",
               "The trained DCDT video tower's output for each video (active dcdt run).", load_dcdt_videos),
    ]
