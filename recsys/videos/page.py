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


#: what each model's score is, so nobody compares a BM25 score of 20 with a cosine of 0.7
SCORE_KINDS = {"bm25": "BM25 score", "embedding": "cosine", "cf": "vote of similar queries",
               "dcdt": "DCDT score", "single-tower": "single-tower score"}


def score_kind(name: str) -> str:
    return SCORE_KINDS.get(name, "score")


def why_line(item: dict) -> str:
    """One line saying why a result is there: DCDT's score by modality, and the training queries labelled with it."""
    parts = []
    why = item.get("why")
    if why:
        parts.append(f"why: title {why['title']:+.2f}, description {why['description']:+.2f}, "
                     f"video prior {why['rest']:+.2f} (sum = score)")
    pulled = item.get("pulled_by") or []
    if pulled:
        parts.append("answers similar training questions: " + " | ".join(f"\u201c{t}\u201d" for t in pulled))
    return " · ".join(parts)


def results_dir() -> Path:
    """``recsys.videos.experiments.RESULTS_DIR`` without importing that module when it is not loaded yet.

    Why: the experiments import the training code and torch (~6 s on a busy 2-core machine), and the
    Ask page reads this on its first run; a process that loaded the module (a test pointing the
    tables elsewhere, the CLI) gets its value.
    """
    import sys

    experiments = sys.modules.get("recsys.videos.experiments")
    if experiments is not None:
        return experiments.RESULTS_DIR
    from recsys.paths import PROJECT_ROOT

    return PROJECT_ROOT / "docs" / "results" / "videos"  # = experiments.RESULTS_DIR


def result_tables() -> dict[str, pd.DataFrame]:
    """The committed evaluation tables that exist: ``{"Table 2...": frame, "Table 3...": frame}``."""
    folder = results_dir()
    tables = {}
    for title, name in [("Test split (Table 2: DCDT vs baselines; trained models: mean over seeds)", "table2_test.csv"),
                        ("Table 3: ablation", "table3_test.csv")]:
        if (folder / name).exists():
            tables[title] = pd.read_csv(folder / name)
    return tables


def display_table(frame: pd.DataFrame) -> pd.DataFrame:
    """A results CSV for people: metric display names, "mean ± std" cells, no raw std columns, a dash for none."""
    from recsys.eval.tables import format_cell
    from recsys.eval.videos import METRIC_LABELS, METRICS

    out = pd.DataFrame({"Model": frame["model"].astype(str)})
    for metric in METRICS:
        if metric not in frame:
            continue
        stds = frame.get(f"{metric}_std", pd.Series([None] * len(frame)))
        out[METRIC_LABELS[metric]] = [
            format_cell(None if pd.isna(m) else (float(m) if pd.isna(s) else (float(m), float(s))))
            for m, s in zip(frame[metric], stds)]
    if "seeds" in frame:
        out["Seeds"] = ["–" if pd.isna(v) else str(int(v)) for v in frame["seeds"]]
    return out


def display_tables() -> dict[str, pd.DataFrame]:
    """:func:`result_tables` formatted by :func:`display_table`."""
    return {title: display_table(frame) for title, frame in result_tables().items()}


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
