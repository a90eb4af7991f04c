"""Data preparation of the video domain: catalogue + labelled queries -> :class:`VideoItems`.

:class:`VideoItems` is the *model data* of every video model (``Model(config, items)``,
see :mod:`recsys.models.base`): the frozen text embeddings of each video's title,
description and ``title. description`` text, the video texts themselves (BM25 reads
words, not vectors), and every labelled query with its embedding, split and relevant
videos (query CF votes with the training queries; training and evaluation read the
other splits). It is built once per embedder (:func:`build_items`) and carries a
fingerprint of the catalogue (:func:`catalog_hash`) that checkpoints record.

**Batches** (what ``full_sort_predict`` / ``predict`` / ``calculate_loss`` read) are
plain dicts made by :func:`query_batch`:

* ``"query"``: ``FloatTensor[B, E]``, the L2-normalised query embeddings (every
  embedding-based model);
* ``"query_text"``: ``list[str]`` of ``B`` query strings, *not a tensor*; only BM25,
  the lexical model, reads it;
* ``"item"``: ``LongTensor[B]``, catalogue row indices of the pairs to score
  (``predict``) or of the positives (training);
* ``"neg"``: ``LongTensor[B, K]``, negatives per positive (training only).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from recsys.embed.glossary import embed_query, expand_query

log = logging.getLogger(__name__)

#: the batch key holding the raw query strings (a list, the one non-tensor key)
QUERY_TEXT = "query_text"


def catalog_hash(catalog) -> str:
    """sha256 of the catalogue's ids, titles and descriptions (what the models read), 16 hex digits."""
    digest = hashlib.sha256()
    for row in catalog[["video_id", "title", "description"]].itertuples(index=False):
        digest.update("\t".join(row).encode("utf-8") + b"\n")
    return digest.hexdigest()[:16]


@dataclass
class VideoData:
    """The catalogue and the labelled queries, as text (columns as in :mod:`recsys.data.videos`)."""

    catalog: Any  # DataFrame
    queries: Any  # DataFrame

    @classmethod
    def load(cls) -> "VideoData":
        from recsys.data.videos import load_catalog, load_queries

        return cls(load_catalog(), load_queries())


def _unit_rows(x: np.ndarray) -> np.ndarray:
    return (x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)).astype(np.float32)


@dataclass
class VideoItems:
    """Everything a video model is sized or fitted on (one embedder; rows = catalogue order).

    Only ``title`` and ``desc`` are required, so tests can build tiny instances from
    random arrays; the other fields default to empty (``text`` to the normalised mean of
    title and description, ``video_text`` to empty strings).
    """

    title: np.ndarray  # [n_videos, E] title embeddings
    desc: np.ndarray  # [n_videos, E] description embeddings
    text: np.ndarray | None = None  # [n_videos, E] embeddings of "title. description"
    video_text: list[str] = field(default_factory=list)  # "title. description" per video (BM25)
    query_emb: np.ndarray | None = None  # [n_queries, E] every labelled query
    query_text: list[str] = field(default_factory=list)  # as BM25 reads it: validation/test glossed
    query_typed: list[str] = field(default_factory=list)  # as typed (default: ``query_text``)
    query_ids: list[str] = field(default_factory=list)
    query_split: np.ndarray | None = None  # [n_queries] "train" | "validation" | "test"
    relevant: list[list[int]] = field(default_factory=list)  # per query: relevant catalogue rows
    video_ids: list[str] = field(default_factory=list)
    embedder_name: str = ""
    catalog_hash: str = ""
    query_language: list[str] = field(default_factory=list)  # per query: its language's name

    def __post_init__(self):
        self.title = np.asarray(self.title, dtype=np.float32)
        self.desc = np.asarray(self.desc, dtype=np.float32)
        if self.title.ndim != 2 or self.title.shape != self.desc.shape:
            raise ValueError(f"title {self.title.shape} and description {self.desc.shape} embeddings "
                             "must both be [n_videos, E]")
        n, dim = self.title.shape
        self.text = _unit_rows(self.title + self.desc) if self.text is None else np.asarray(self.text, np.float32)
        self.video_text = list(self.video_text) or [""] * n
        self.video_ids = list(self.video_ids) or [f"video-{i}" for i in range(n)]
        if self.query_emb is None:
            self.query_emb = np.zeros((0, dim), dtype=np.float32)
        n_queries = len(self.query_emb)
        self.query_split = np.asarray(self.query_split if self.query_split is not None else [""] * n_queries)
        self.query_text = list(self.query_text) or [""] * n_queries
        self.query_typed = list(self.query_typed) or list(self.query_text)
        self.query_ids = list(self.query_ids) or [f"query-{j}" for j in range(n_queries)]
        self.query_language = list(self.query_language) or ["English"] * n_queries
        if len(self.video_text) != n or self.text.shape != (n, dim):
            raise ValueError("video texts and text embeddings must have one row per video")

    @property
    def dim(self) -> int:
        return self.title.shape[1]

    @property
    def n_videos(self) -> int:
        return self.title.shape[0]

    def split(self, name: str) -> tuple[np.ndarray, list[list[int]], list[str], np.ndarray]:
        """(embeddings, relevant indices, texts, row indices) of one query split."""
        rows = np.flatnonzero(self.query_split == name)
        if len(rows) == 0:
            raise ValueError(f"no queries in split {name!r}")
        return self.query_emb[rows], [self.relevant[i] for i in rows], [self.query_text[i] for i in rows], rows


def query_language(code: str) -> str:
    """Display name of a query's language from its ISO code in ``queries.csv`` (``"zh"`` -> ``"Chinese"``).

    The per-language results table groups queries by this name. The code is checked by the
    loader (:func:`recsys.data.videos.load_queries`), so an unknown one here is a bug.
    """
    from recsys.data.videos import LANGUAGES

    return LANGUAGES[code]


def build_items(data: VideoData, embedder, progress: bool = False, glossary: bool = True) -> VideoItems:
    """Embed titles, descriptions, texts and queries with ``embedder`` (disk-cached by the embedder).

    Validation and test queries are read as served: through :func:`recsys.embed.glossary.embed_query`
    (the English encoder reads the glossary's English glosses appended, USE the query as typed;
    ``glossary=False`` for the ablation without it); BM25 reads the glossed text (``query_text``;
    ``query_typed`` keeps what was typed). Training queries stay as typed: the
    models learn from what people wrote, and the glosses are a query-time rewrite. Measured (seed 0,
    test MRR@10): trained on glossed queries DCDT lost English (0.846 -> 0.792) for +0.011 on the
    other languages, against the model trained as typed reading glossed queries
    (``docs/results/videos/README.md``).

    Raises :class:`RuntimeError` if the embedder switches backend while encoding (an
    OpenAI failure mid-way): mixing two embedding spaces would be meaningless; the
    caller retries, and then everything comes from the fallback.
    """
    name = embedder.name
    catalog, queries = data.catalog, data.queries
    title = embedder.encode(list(catalog["title"]), progress=progress)
    desc = embedder.encode(list(catalog["description"]), progress=progress)
    text = embedder.encode(list(catalog["text"]), progress=progress)
    typed = list(queries["text"])
    glossed = np.flatnonzero((np.asarray(queries["split"]) != "train") & glossary)
    query_text = list(typed)
    query_emb = embedder.encode(typed, progress=progress)
    if len(glossed):  # read as served: each encoder its own reading of the query (embed_query)
        query_emb[glossed] = embed_query(embedder, [typed[i] for i in glossed])
        for i in glossed:
            query_text[i] = expand_query(typed[i])
    if embedder.name != name:
        raise RuntimeError(f"embedder switched from {name} to {embedder.name} while encoding")
    index = {vid: i for i, vid in enumerate(catalog["video_id"])}
    return VideoItems(
        title=title, desc=desc, text=text, video_text=list(catalog["text"]), query_emb=query_emb,
        query_text=query_text, query_typed=typed, query_ids=list(queries["query_id"]),
        query_split=np.asarray(queries["split"]), relevant=[[index[v] for v in rel] for rel in queries["relevant"]],
        video_ids=list(catalog["video_id"]), embedder_name=name, catalog_hash=catalog_hash(catalog),
        query_language=[query_language(code) for code in queries["language"]],
    )


def build_items_retrying(data: VideoData, embedder, progress: bool = False, glossary: bool = True) -> VideoItems:
    """:func:`build_items`, once more if the backend fell back mid-way (then all from the fallback)."""
    try:
        return build_items(data, embedder, progress, glossary)
    except RuntimeError as error:
        if "switched" not in str(error):
            raise
        log.warning("%s; re-embedding everything with %s", error, embedder.name)
        return build_items(data, embedder, progress, glossary)


def relevance_mask(relevant: Sequence[Sequence[int]], n_items: int) -> torch.Tensor:
    """Bool ``[len(relevant), n_items]``: True where the video is relevant to the query."""
    mask = torch.zeros(len(relevant), n_items, dtype=torch.bool)
    for row, items in enumerate(relevant):
        mask[row, list(items)] = True
    return mask


def query_batch(query_emb: np.ndarray, texts: Sequence[str] | None = None, device: Any = "cpu") -> dict[str, Any]:
    """The scoring batch of ``B`` queries: ``{"query": FloatTensor[B, E], "query_text": list[str]}``."""
    query = torch.as_tensor(np.asarray(query_emb), dtype=torch.float32, device=device).reshape(-1, np.shape(query_emb)[-1])
    texts = list(texts) if texts is not None else [""] * len(query)
    if len(texts) != len(query):
        raise ValueError(f"{len(texts)} query texts for {len(query)} query embeddings")
    return {"query": query, QUERY_TEXT: texts}


def full_scores(model, query_emb: np.ndarray, texts: Sequence[str] | None = None) -> np.ndarray:
    """``model.full_sort_predict`` of the queries as numpy ``[B, n_videos]`` (no grad, model's device)."""
    device = getattr(model, "device", "cpu")
    with torch.inference_mode():
        return model.full_sort_predict(query_batch(query_emb, texts, device)).float().cpu().numpy()
