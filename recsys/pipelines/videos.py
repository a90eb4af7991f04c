"""Linear-algebra video recommender: the glue between data, embeddings, models, CLI and the Ask page.

Flow::

    VideoData.load()                  catalog (assets/videos.csv) + labelled queries
      -> build_features(data, emb)    frozen embeddings: title, description, text, every query
      -> train_model("dcdt", ...)     recsys.train.loop.fit with dynamic hard negatives
      -> VideoService                 serving: query text -> top-k videos (+ why), any model
      -> evaluate_videos / bench      the paper's Tables 2 and 3, latency

Models (names used by the CLI, the page and the tables):

* ``dcdt``          :mod:`recsys.models.dcdt` (trained; shipped checkpoint for MiniLM)
* ``single-tower``  :mod:`recsys.models.single_tower` (trained; the ablation)
* ``bm25``          :mod:`recsys.models.bm25` over title + description
* ``cf``            :mod:`recsys.models.query_cf` (training queries vote)
* ``embedding``     :mod:`recsys.models.embedding_cosine` (zero-shot cosine)

Which DCDT serves (:func:`load_trained`): the studio run chosen as active for the
recipe (``RunRegistry().active_run("dcdt")``) if it matches the embedder and the
catalogue; else the checkpoint shipped in ``assets/checkpoints/`` (MiniLM); else one
cached under ``cache_dir("videos", "checkpoints")``; else it trains one with the quick
recipe (about a minute on a CPU; e.g. for the 1536-d OpenAI embedder) and caches it.
A checkpoint records the embedder name and a hash of the catalogue, so a checkpoint
trained on other vectors or another catalogue is never silently used.

This module never imports streamlit; ``app_pages/ask.py`` is UI only.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import logging
import shutil
import sys
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from recsys.eval import videos as video_eval
from recsys.paths import ASSETS_DIR, PROJECT_ROOT, cache_dir
from recsys.train.loop import Callback, TrainConfig, TrainResult, batch_indices, cpu_threads, fit, seed_everything
from recsys.train.recipes import Recipe, RecipeContext, register

log = logging.getLogger(__name__)

MODEL_NAMES = ("dcdt", "single-tower", "bm25", "cf", "embedding")
TRAINED = ("dcdt", "single-tower")
DISPLAY_NAMES = {
    "dcdt": "DCDT",
    "single-tower": "Single tower",
    "bm25": "BM25",
    "cf": "Collaborative filtering",
    "embedding": "Embedding cosine",
}
#: queries longer than this are cut (with a notice); MiniLM reads ~256 word pieces anyway
MAX_QUERY_CHARS = 2000
CHECKPOINT_DIR = ASSETS_DIR / "checkpoints"
SHIPPED_CHECKPOINTS = {"dcdt": CHECKPOINT_DIR / "dcdt-minilm.pt",
                       "single-tower": CHECKPOINT_DIR / "single-tower-minilm.pt"}
SHIPPED_EMBEDDER = "minilm-l6-v2"  # the embedder the shipped checkpoints were trained on
RESULTS_DIR = PROJECT_ROOT / "docs" / "results" / "videos"
CHECKPOINT_FORMAT = "recsys.videos.checkpoint/1"

#: the quick recipe (about a minute on a 2-core CPU) and the paper's settings
QUICK_TRAIN = TrainConfig(epochs=60, lr=1e-3, batch_size=16, weight_decay=0.01, scheduler="cosine",
                          seed=0, device="auto", patience=10, monitor="mrr@10")
FULL_TRAIN = dataclasses.replace(QUICK_TRAIN, epochs=200, patience=15)

EXAMPLE_QUERIES = [
    "what is an eigenvector, intuitively?",
    "how to fit a line to data with least squares",
    "Gram-Schmidt step by step",
    "visual explanation of the determinant as area",
    "singular value decomposition for image compression",
    "¿qué es una matriz inversa?",
]


# ---------------------------------------------------------------- data and features
def catalog_hash(catalog) -> str:
    """sha256 of the catalogue's ids, titles and descriptions (what the models read), 16 hex digits."""
    digest = hashlib.sha256()
    for row in catalog[["video_id", "title", "description"]].itertuples(index=False):
        digest.update("\t".join(row).encode("utf-8") + b"\n")
    return digest.hexdigest()[:16]


@dataclass
class VideoData:
    """The catalogue and the labelled queries (columns as in :mod:`recsys.data.videos`)."""

    catalog: Any  # DataFrame
    queries: Any  # DataFrame

    @classmethod
    def load(cls) -> "VideoData":
        from recsys.data.videos import load_catalog, load_queries

        return cls(load_catalog(), load_queries())

    @property
    def video_ids(self) -> list[str]:
        return list(self.catalog["video_id"])

    @property
    def hash(self) -> str:
        return catalog_hash(self.catalog)


@dataclass
class Features:
    """Frozen embeddings of everything the models read (one embedder)."""

    embedder_name: str
    title: np.ndarray  # [n_videos, E]
    desc: np.ndarray  # [n_videos, E]
    text: np.ndarray  # [n_videos, E] title + ". " + description
    query_emb: np.ndarray  # [n_queries, E] every labelled query, in data.queries order
    query_text: list[str]
    query_ids: list[str]
    query_split: np.ndarray  # [n_queries] of "train" | "validation" | "test"
    relevant: list[list[int]]  # per query: catalogue row indices of its relevant videos
    video_ids: list[str]
    catalog_hash: str

    @property
    def dim(self) -> int:
        return self.title.shape[1]

    @property
    def n_videos(self) -> int:
        return len(self.video_ids)

    def split(self, name: str) -> tuple[np.ndarray, list[list[int]], list[str], np.ndarray]:
        """(embeddings, relevant indices, texts, row indices) of one query split."""
        rows = np.flatnonzero(self.query_split == name)
        if len(rows) == 0:
            raise ValueError(f"no queries in split {name!r}")
        return self.query_emb[rows], [self.relevant[i] for i in rows], [self.query_text[i] for i in rows], rows


def build_features(data: VideoData, embedder, progress: bool = False) -> Features:
    """Embed titles, descriptions, texts and queries with ``embedder`` (disk-cached by the embedder).

    Raises :class:`RuntimeError` if the embedder switches backend while encoding (an
    OpenAI failure mid-way): mixing two embedding spaces would be meaningless; the
    caller retries, and then everything comes from the fallback.
    """
    name = embedder.name
    catalog, queries = data.catalog, data.queries
    title = embedder.encode(list(catalog["title"]), progress=progress)
    desc = embedder.encode(list(catalog["description"]), progress=progress)
    text = embedder.encode(list(catalog["text"]), progress=progress)
    query_emb = embedder.encode(list(queries["text"]), progress=progress)
    if embedder.name != name:
        raise RuntimeError(f"embedder switched from {name} to {embedder.name} while encoding")
    index = {vid: i for i, vid in enumerate(catalog["video_id"])}
    return Features(
        embedder_name=name, title=title, desc=desc, text=text, query_emb=query_emb,
        query_text=list(queries["text"]), query_ids=list(queries["query_id"]),
        query_split=np.asarray(queries["split"]), relevant=[[index[v] for v in rel] for rel in queries["relevant"]],
        video_ids=list(catalog["video_id"]), catalog_hash=catalog_hash(catalog),
    )


def build_features_retrying(data: VideoData, embedder, progress: bool = False) -> Features:
    try:
        return build_features(data, embedder, progress)
    except RuntimeError as error:
        if "switched" not in str(error):
            raise
        log.warning("%s; re-embedding everything with %s", error, embedder.name)
        return build_features(data, embedder, progress)


# ---------------------------------------------------------------- models
def make_model(name: str, dim: int, options: dict[str, Any] | None = None):
    """A fresh DCDT or single tower of input size ``dim``; ``options`` override config fields."""
    from recsys.models.dcdt import DCDT, DCDTConfig
    from recsys.models.single_tower import SingleTower, SingleTowerConfig

    kinds = {"dcdt": (DCDT, DCDTConfig), "single-tower": (SingleTower, SingleTowerConfig)}
    if name not in kinds:
        raise ValueError(f"unknown trainable video model {name!r}; choose one of {', '.join(kinds)}")
    cls, config_cls = kinds[name]
    known = {f.name for f in dataclasses.fields(config_cls)}
    chosen = {k: v for k, v in (options or {}).items() if k in known}
    config = config_cls(**{**chosen, "embed_dim": dim})
    return cls(config)


def relevance_mask(relevant: Sequence[Sequence[int]], n_items: int) -> torch.Tensor:
    mask = torch.zeros(len(relevant), n_items, dtype=torch.bool)
    for row, items in enumerate(relevant):
        mask[row, list(items)] = True
    return mask


def model_scores(model, query_emb: np.ndarray) -> np.ndarray:
    """Full-catalogue scores ``[B, n]`` of a trained model for query embeddings (no grad)."""
    with torch.inference_mode():
        q = torch.as_tensor(np.asarray(query_emb), dtype=torch.float32, device=model.device)
        return model.full_sort_predict({"query": q}).float().cpu().numpy()


def train_model(
    name: str,
    features: Features,
    train: TrainConfig,
    options: dict[str, Any] | None = None,
    callbacks: Sequence[Callback] = (),
    train_split: str = "train",
    valid_split: str = "validation",
):
    """Train DCDT or the single tower on (training query, relevant video) pairs.

    Negatives are re-mined each epoch by :class:`recsys.models.dcdt.HardNegativeMiner`;
    validation MRR@10 selects the best epoch and drives early stopping. Returns
    ``(model, TrainResult)`` with the model in eval mode on its training device.
    """
    from recsys.models.dcdt import HardNegativeMiner

    seed_everything(train.seed)  # the weights' initialisation depends on the seed too
    model = make_model(name, features.dim, options)
    model.set_items(torch.from_numpy(features.title), torch.from_numpy(features.desc))
    q_train, rel_train, _, _ = features.split(train_split)
    q_valid, rel_valid, _, _ = features.split(valid_split)
    pair_query = torch.tensor([i for i, rel in enumerate(rel_train) for _ in rel], dtype=torch.long)
    pair_item = torch.tensor([v for rel in rel_train for v in rel], dtype=torch.long)
    queries = torch.from_numpy(q_train)
    cfg = model.config
    miner = HardNegativeMiner(queries, pair_query, relevance_mask(rel_train, features.n_videos),
                              fraction=cfg.hard_fraction, n_negatives=cfg.n_negatives,
                              dynamic=cfg.dynamic_negatives, seed=train.seed)

    def batches(epoch: int) -> Iterable[dict[str, torch.Tensor]]:
        generator = torch.Generator().manual_seed(train.seed * 100_003 + epoch)
        for idx in batch_indices(len(pair_query), train.batch_size, generator):
            yield {"query": queries[pair_query[idx]], "item": pair_item[idx], "neg": miner.negatives[idx]}

    def evaluate(model) -> dict[str, float]:
        return video_eval.evaluate_scores(model_scores(model, q_valid), rel_valid)

    with cpu_threads(1 if str(train.device) in ("cpu", "auto") and not torch.cuda.is_available() else None):
        result = fit(model, batches, train, evaluate=evaluate, callbacks=[miner, *callbacks])
    return model, result


# ---------------------------------------------------------------- checkpoints
class CheckpointMismatch(ValueError):
    """A checkpoint made for another embedder or catalogue."""


def save_checkpoint(path: Path, name: str, model, features: Features, train: TrainConfig,
                    result: TrainResult | None = None, metrics: dict | None = None) -> Path:
    from recsys.train.runs import atomic_torch_save

    payload = {
        "format": CHECKPOINT_FORMAT,
        "model": name,
        "state_dict": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
        "config": model.config.to_dict(),
        "embedder": features.embedder_name,
        "embed_dim": features.dim,
        "catalog_hash": features.catalog_hash,
        "n_videos": features.n_videos,
        "train": dataclasses.asdict(train),
        "result": None if result is None else {
            "best_epoch": result.best_epoch, "best_value": result.best_value, "epochs_run": len(result.history),
            "stop_reason": result.stop_reason, "seconds": result.seconds, "device": result.device},
        "metrics": metrics or {},
        "created": time.time(),
    }
    atomic_torch_save(payload, Path(path))
    return Path(path)


def load_checkpoint(path: Path, features: Features, expected_model: str | None = None, strict_catalog: bool = False):
    """Rebuild the model of a checkpoint for ``features``; :class:`CheckpointMismatch` if it does not fit them.

    Another embedder (or dimension) is always a mismatch: the weights map one embedding
    space. Another catalogue version is not, unless ``strict_catalog``: the towers read
    only embeddings, never video ids, so weights learned on an earlier catalogue score
    new or edited videos too (the content model's answer to cold start); the payload's
    ``catalog_matches`` says which case it is.
    """
    payload = torch.load(Path(path), map_location="cpu", weights_only=True)
    if payload.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointMismatch(f"{path} is not a video-recommender checkpoint")
    if expected_model and payload["model"] != expected_model:
        raise CheckpointMismatch(f"{path} holds a {payload['model']} model, not {expected_model}")
    if payload["embedder"] != features.embedder_name or payload["embed_dim"] != features.dim:
        raise CheckpointMismatch(
            f"{path} was trained on {payload['embedder']} ({payload['embed_dim']}-d) embeddings, "
            f"not {features.embedder_name} ({features.dim}-d)")
    payload["catalog_matches"] = payload["catalog_hash"] == features.catalog_hash
    if not payload["catalog_matches"]:
        if strict_catalog:
            raise CheckpointMismatch(f"{path} was trained on another version of the video catalogue")
        log.info("%s was trained on another version of the catalogue (%s); its weights still apply",
                 path, payload["catalog_hash"])
    model = make_model(payload["model"], features.dim, payload["config"])
    model.load_state_dict(payload["state_dict"])
    model.set_items(torch.from_numpy(features.title), torch.from_numpy(features.desc))
    model.eval()
    return model, payload


def cached_checkpoint_path(name: str, features: Features) -> Path:
    from recsys.embed.cache import safe_model_dirname

    return cache_dir("videos", "checkpoints") / f"{name}-{safe_model_dirname(features.embedder_name)}-{features.catalog_hash}.pt"


def active_run_id(name: str) -> str | None:
    """The studio run chosen to serve ``name``, if any (an unreadable registry must not stop serving)."""
    try:
        from recsys.train.runs import RunRegistry

        run = RunRegistry().active_run(name)
    except Exception as error:
        log.warning("could not read the run registry: %s", error)
        return None
    return run.id if run is not None else None


def load_trained(name: str, features: Features, train_if_missing: bool = True,
                 callbacks: Sequence[Callback] = ()) -> tuple[Any, str]:
    """The model that serves ``name`` and where it came from (see the module docstring for the order)."""
    candidates: list[tuple[str, Path]] = []
    run_id = active_run_id(name)
    if run_id is not None:
        from recsys.train.runs import RunRegistry

        candidates.append((f"studio run {run_id}", RunRegistry().get(run_id).checkpoint_path))
    if name in SHIPPED_CHECKPOINTS:
        candidates.append(("shipped checkpoint", SHIPPED_CHECKPOINTS[name]))
    candidates.append(("cached checkpoint", cached_checkpoint_path(name, features)))
    for source, path in candidates:
        if not path.exists():
            continue
        try:
            model, payload = load_checkpoint(path, features, expected_model=name)
            note = "" if payload["catalog_matches"] else ", trained on an earlier catalogue version"
            return model, f"{source} ({path.name}{note})"
        except CheckpointMismatch as error:
            log.info("skipping %s: %s", source, error)
        except Exception as error:  # a corrupt file: say so and go on
            log.warning("could not load %s %s: %s", source, path, error)
    if not train_if_missing:
        raise FileNotFoundError(f"no {name} checkpoint for {features.embedder_name}; train one with "
                                f"`python -m recsys train {name}`")
    log.warning("no %s checkpoint for %s: training one with the quick recipe", name, features.embedder_name)
    train = dataclasses.replace(QUICK_TRAIN, device="cpu")
    model, result = train_model(name, features, train, callbacks=callbacks)
    path = cached_checkpoint_path(name, features)
    save_checkpoint(path, name, model, features, train, result)
    model.cpu().eval()
    return model, f"trained now ({result.seconds:.0f} s), cached as {path.name}"


# ---------------------------------------------------------------- serving
def prepare_query(text: Any) -> tuple[str, list[str]]:
    """Validate a user query: ``(text to use, notices)``; :class:`ValueError` if there is nothing to search for."""
    if not isinstance(text, str):
        raise ValueError(f"the query must be text, got {type(text).__name__}")
    cleaned = " ".join(text.split())
    if not cleaned:
        raise ValueError("the query is empty: type what you want to learn")
    notices = []
    if len(cleaned) > MAX_QUERY_CHARS:
        notices.append(f"The query was {len(cleaned):,} characters long; only the first "
                       f"{MAX_QUERY_CHARS:,} were used.")
        cleaned = cleaned[:MAX_QUERY_CHARS].rstrip()
    return cleaned, notices


@dataclass
class ModelBundle:
    """Features of one embedder and the fitted models over them (built lazily, model by model)."""

    features: Features
    data: VideoData
    train_if_missing: bool = True
    models: dict[str, Any] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)
    served_runs: dict[str, str | None] = field(default_factory=dict)  # studio run each trained model came from

    def model(self, name: str):
        """The fitted model; a trained one is reloaded when the studio serves another run."""
        if name not in MODEL_NAMES:
            raise ValueError(f"unknown model {name!r}; choose one of {', '.join(MODEL_NAMES)}")
        served = active_run_id(name) if name in TRAINED else None
        if name not in self.models or self.served_runs.get(name) != served:
            self.models[name], self.sources[name] = self._build(name)
            self.served_runs[name] = served
        return self.models[name]

    def _build(self, name: str):
        f = self.features
        if name in TRAINED:
            model, source = load_trained(name, f, self.train_if_missing)
            model.cpu().eval()
            if hasattr(model, "freeze_items"):
                model.freeze_items()
            return model, source
        q_train, rel_train, _, _ = f.split("train")
        if name == "bm25":
            from recsys.models.bm25 import BM25

            return BM25().fit(list(self.data.catalog["text"])), "fitted on title + description"
        if name == "cf":
            from recsys.models.query_cf import QueryCF

            return QueryCF(k=10).fit(q_train, rel_train, f.n_videos), f"{len(q_train)} training queries"
        from recsys.models.embedding_cosine import EmbeddingCosine

        return EmbeddingCosine().fit(f.text), "zero-shot"

    def scores(self, name: str, query_emb: np.ndarray, texts: Sequence[str]) -> np.ndarray:
        model = self.model(name)
        if name == "bm25":
            return model.score_texts(texts)
        if name == "cf":
            return model.score_vectors(query_emb)
        if name == "embedding":
            return (np.asarray(query_emb, dtype=np.float32) @ model.items.numpy().T)
        return model_scores(model, query_emb)


def _topk(scores: np.ndarray, k: int) -> np.ndarray:
    k = min(k, scores.shape[-1])
    part = np.argpartition(-scores, k - 1)[:k]
    return part[np.argsort(-scores[part], kind="stable")]


class VideoService:
    """Query text -> recommendations with explanations, for the CLI and the Ask page.

    ``embedder`` defaults to ``get_embedder(backend, api_key)``. Features and models are
    built on first use per embedder name, so an OpenAI failure that falls back to the
    local model is followed by local features and the shipped checkpoint.
    """

    def __init__(self, data: VideoData | None = None, embedder=None, backend: str = "auto",
                 api_key: str | None = None, train_if_missing: bool = True, serving_threads: int | None = 1):
        if serving_threads is not None and torch.get_num_threads() != serving_threads:
            # One query is a few [1, 64] x [64, n] products: far below where intra-op
            # threads pay. With 2 threads on a busy 2-core machine we measured DCDT's
            # scoring at a 0.3 ms median but 155-210 ms p99 (threads spinning for a core);
            # with 1 thread 0.33 ms median. torch's thread count is per process, so this
            # applies to the whole app process (MiniLM then encodes a query in ~10-20 ms).
            log.info("torch CPU threads %d -> %d for serving", torch.get_num_threads(), serving_threads)
            torch.set_num_threads(serving_threads)
        if embedder is None:
            from recsys.embed import get_embedder

            embedder = get_embedder(backend, api_key=api_key)
        self.embedder = embedder
        self.data = data if data is not None else VideoData.load()
        self.train_if_missing = train_if_missing
        self._bundles: dict[str, ModelBundle] = {}
        self._rows = self.data.catalog.to_dict("records")
        # one page process serves many sessions: build features and models once
        self._lock = threading.RLock()

    # --- state for the UI
    @property
    def backend_description(self) -> str:
        describe = getattr(self.embedder, "describe", None)
        return describe() if callable(describe) else self.embedder.name

    @property
    def fallback_reason(self) -> str | None:
        return getattr(self.embedder, "last_fallback_reason", None)

    def bundle(self, progress: bool = False) -> ModelBundle:
        with self._lock:
            return self._bundle(progress)

    def _bundle(self, progress: bool) -> ModelBundle:
        for _ in range(3):
            name = self.embedder.name
            if name in self._bundles:
                return self._bundles[name]
            features = build_features_retrying(self.data, self.embedder, progress)
            if features.embedder_name == self.embedder.name:
                self._bundles[name] = bundle = ModelBundle(features, self.data, self.train_if_missing)
                return bundle
        raise RuntimeError("the embedding backend kept changing while the catalogue was being embedded")

    def model_source(self, name: str) -> str:
        bundle = self.bundle()
        bundle.model(name)
        return bundle.sources[name]

    def embed_query(self, text: str) -> np.ndarray:
        vec = self.embedder.encode([text])
        return vec

    # --- recommendations
    def recommend_many(self, query: Any, models: Sequence[str] = ("dcdt",), k: int = 10,
                       explain: bool = False) -> dict[str, Any]:
        """Recommendations of several models for one query, the query embedded once.

        Returns ``{"query", "notices", "backend", "fallback_reason", "embed_ms",
        "results": {model: record}, "neighbours"?}`` where each record is what
        :meth:`recommend` returns. Bad input raises :class:`ValueError` (message for the user).
        """
        text, notices = prepare_query(query)
        for name in models:
            if name not in MODEL_NAMES:
                raise ValueError(f"unknown model {name!r}; choose one of {', '.join(MODEL_NAMES)}")
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        bundle = self.bundle()
        start = time.perf_counter()
        vec = self.embed_query(text)
        if self.embedder.name != bundle.features.embedder_name:  # fell back while embedding the query
            bundle = self.bundle()
            start = time.perf_counter()
            vec = self.embed_query(text)
        embed_ms = (time.perf_counter() - start) * 1000
        out = {"query": text, "notices": notices, "backend": self.backend_description,
               "fallback_reason": self.fallback_reason, "embed_ms": embed_ms, "results": {}}
        for name in models:
            with self._lock:
                bundle.model(name)  # load outside the timed part
            start = time.perf_counter()
            scores = bundle.scores(name, vec, [text])[0]
            top = _topk(scores, k)
            score_ms = (time.perf_counter() - start) * 1000
            results = [self._result(int(i), float(scores[i])) for i in top]
            if explain and name == "dcdt":
                alpha = bundle.model("dcdt").explain(torch.from_numpy(vec[0])).numpy()
                for record, i in zip(results, top):
                    record["attention"] = {"title": float(alpha[i, 0]), "description": float(alpha[i, 1])}
            out["results"][name] = {"query": text, "model": name, "results": results,
                                    "latency_ms": embed_ms + score_ms, "score_ms": score_ms,
                                    "source": bundle.sources.get(name, "")}
        if explain:
            out["neighbours"] = self.neighbours(vec[0])
        return out

    def recommend(self, query: Any, model: str = "dcdt", k: int = 10) -> dict[str, Any]:
        """One query, one model: ``{"query","model","results":[...],"latency_ms"}`` (the JSONL record)."""
        many = self.recommend_many(query, [model], k)
        record = dict(many["results"][model])
        record.pop("source", None)
        record.pop("score_ms", None)
        return record

    def _result(self, index: int, score: float) -> dict[str, Any]:
        row = self._rows[index]
        return {"video_id": row["video_id"], "title": row["title"], "series": row["series"],
                "level": row["level"], "topics": list(row["topics"]), "score": round(score, 6)}

    def neighbours(self, query_vec: np.ndarray, n: int = 3) -> list[dict[str, Any]]:
        """The ``n`` training queries closest to ``query_vec`` (cosine), with the videos they were labelled with."""
        f = self.bundle().features
        q_train, rel_train, texts, _ = f.split("train")
        sims = q_train @ np.asarray(query_vec, dtype=np.float32).reshape(-1)
        best = np.argsort(-sims, kind="stable")[:n]
        return [{"text": texts[i], "similarity": float(sims[i]),
                 "relevant": [f.video_ids[v] for v in rel_train[i]]} for i in best]


def make_service(backend: str = "auto", api_key: str | None = None) -> VideoService:
    """The service the Ask page caches (tests replace this factory with one over fixtures)."""
    return VideoService(backend=backend, api_key=api_key)


# ---------------------------------------------------------------- evaluation
TABLE2_MODELS = ["dcdt", "single-tower", "bm25", "cf", "embedding"]
#: Table 3 (ablation): (row label, model, config overrides)
ABLATIONS = [
    ("DCDT (dual tower)", "dcdt", {}),
    ("Single tower", "single-tower", {}),
    ("DCDT, paper's fusion only (no cosine skip)", "dcdt", {"cosine_skip": False}),
    ("DCDT, random negatives", "dcdt", {"dynamic_negatives": False}),
    ("DCDT, InfoNCE loss", "dcdt", {"loss": "infonce"}),
]


def _train_and_score(job: tuple) -> dict[str, Any]:
    """One (variant, seed) of the evaluation: train, score the split, return metrics (runs in a worker process)."""
    features, label, name, options, train, split = job
    q_eval, rel_eval, _, _ = features.split(split)
    model, result = train_model(name, features, train, options)
    return {"label": label, "seed": train.seed, "metrics": video_eval.evaluate_scores(model_scores(model, q_eval), rel_eval),
            "seconds": result.seconds, "best_epoch": result.best_epoch or 0, "device": result.device}


def evaluate_videos(features: Features, data: VideoData, split: str = "test", seeds: int = 5,
                    train: TrainConfig = FULL_TRAIN, ablations: bool = False, progress: bool = False,
                    results_dir: Path | None = RESULTS_DIR, jobs: int = 1) -> dict[str, Any]:
    """Tables 2 and 3 on ``split``: trained models over ``seeds`` seeds (mean ± std), baselines once.

    Table 3 is DCDT vs the single tower; ``ablations=True`` adds DCDT without the cosine
    skip, with random negatives and with InfoNCE. ``jobs > 1`` trains that many
    (variant, seed) runs at once in worker processes (one torch thread each).
    """
    from tqdm.auto import tqdm

    q_eval, rel_eval, texts, _ = features.split(split)
    bundle = ModelBundle(features, data, train_if_missing=False)
    table2: dict[str, dict] = {}
    extra: dict[str, dict] = {}
    for name in ("bm25", "cf", "embedding"):
        table2[DISPLAY_NAMES[name]] = video_eval.evaluate_scores(bundle.scores(name, q_eval, texts), rel_eval)
    if ablations == "only":  # the DCDT variants alone (DCDT and the single tower are in the main run)
        variants = ABLATIONS[2:]
    else:
        variants = ABLATIONS if ablations else ABLATIONS[:2]
    per_variant: dict[str, list[dict]] = {label: [] for label, _, _ in variants}
    timings: dict[str, list[float]] = {label: [] for label, _, _ in variants}
    epochs: dict[str, list[int]] = {label: [] for label, _, _ in variants}
    # the single tower is the slowest: start it first so parallel workers finish together
    todo = sorted(((features, label, name, options, dataclasses.replace(train, seed=seed), split)
                   for seed in range(seeds) for label, name, options in variants),
                  key=lambda job: (job[2] != "single-tower", job[4].seed))
    bar = tqdm(total=len(todo), desc=f"train+evaluate ({seeds} seeds, {jobs} at a time)", disable=not progress,
               unit="run")
    if jobs > 1:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
            outcomes = []
            for outcome in pool.map(_train_and_score, todo):
                outcomes.append(outcome)
                bar.update(1)
    else:
        outcomes = []
        for job in todo:
            bar.set_postfix_str(f"{job[1]}, seed {job[4].seed}")
            outcomes.append(_train_and_score(job))
            bar.update(1)
    bar.close()
    device = outcomes[-1]["device"]
    for outcome in sorted(outcomes, key=lambda o: o["seed"]):
        per_variant[outcome["label"]].append(outcome["metrics"])
        timings[outcome["label"]].append(outcome["seconds"])
        epochs[outcome["label"]].append(outcome["best_epoch"])
    aggregated = {label: video_eval.aggregate(runs) for label, runs in per_variant.items()}
    for label, runs in aggregated.items():
        extra[label] = {"train_seconds_mean": f"{np.mean(timings[label]):.2f}",
                        "best_epoch_mean": f"{np.mean(epochs[label]):.1f}", "seeds": seeds}
    main_rows = {"DCDT": [label for label, name, options in variants if name == "dcdt" and not options],
                 "Single tower": [label for label, name, _ in variants if name == "single-tower"]}
    table2 = {**{row: aggregated[labels[0]] for row, labels in main_rows.items() if labels}, **table2}
    table3 = {label: aggregated[label] for label, _, _ in variants}
    info = {"split": split, "n_queries": len(q_eval), "n_videos": features.n_videos, "seeds": seeds,
            "embedder": features.embedder_name, "train": dataclasses.asdict(train), "device": device}
    text = render_tables(table2, table3, extra, info)
    if results_dir is not None:
        results_dir.mkdir(parents=True, exist_ok=True)
        video_eval.write_csv(results_dir / f"table2_{split}.csv", table2, extra)
        video_eval.write_csv(results_dir / f"table3_{split}.csv", table3, extra)
        (results_dir / f"tables_{split}.md").write_text(text + "\n")
        (results_dir / f"info_{split}.json").write_text(json.dumps(info, indent=2) + "\n")
    return {"table2": table2, "table3": table3, "extra": extra, "info": info, "text": text}


def render_tables(table2, table3, extra, info) -> str:
    head = (f"Split: {info['split']} ({info['n_queries']} queries, {info['n_videos']} videos), "
            f"embedder {info['embedder']}, trained models: mean ± std over {info['seeds']} seeds "
            f"(AdamW lr {info['train']['lr']}, batch {info['train']['batch_size']}, up to {info['train']['epochs']} "
            f"epochs, patience {info['train']['patience']} on validation MRR@10; {info['device']}).")
    timing = "\n".join(f"- {label}: {values['train_seconds_mean']} s per seed, best epoch {values['best_epoch_mean']} (mean)"
                       for label, values in extra.items())
    return "\n\n".join([
        head,
        video_eval.format_table("Table 2: DCDT vs baselines", table2, video_eval.PAPER_TABLE2),
        video_eval.format_table("Table 3: ablation (dual tower vs single tower, negatives, loss)", table3,
                                video_eval.PAPER_TABLE3),
        "Training time:\n" + timing,
    ])


# ---------------------------------------------------------------- benchmark
def _percentiles(values: Sequence[float]) -> dict[str, float]:
    arr = np.asarray(values, dtype=np.float64)
    return {"p50_ms": float(np.percentile(arr, 50)), "p99_ms": float(np.percentile(arr, 99)),
            "mean_ms": float(arr.mean())}


def uncached_embedder(embedder):
    """An embedder computing every query afresh (for honest end-to-end timings), when one can be made."""
    from recsys.embed import LocalEmbedder

    active = getattr(embedder, "active", embedder)
    if isinstance(active, LocalEmbedder):
        return LocalEmbedder(cache=False, model_dir=active.model_dir), True
    return embedder, False


def bench_videos(service: VideoService, models: Sequence[str] = MODEL_NAMES, k: int = 10, split: str = "test",
                 repeats: int = 1, progress: bool = False, threads: int | None = 1) -> dict[str, Any]:
    """p50/p99 latency of one query: end to end (embed + score + top-k) and scoring + top-k alone, warm.

    ``threads``: torch CPU threads while timing (1 by default: one query is far too
    small to gain from intra-op parallelism, and a shared machine punishes spinning threads).
    """
    with cpu_threads(threads):
        return _bench(service, models, k, split, repeats, progress)


def _bench(service, models, k, split, repeats, progress) -> dict[str, Any]:
    from tqdm.auto import tqdm

    bundle = service.bundle(progress=progress)
    _, _, texts, _ = bundle.features.split(split)
    fresh, uncached = uncached_embedder(service.embedder)
    for name in models:
        bundle.model(name)
    fresh.encode([texts[0]])  # warm: load the model
    rows = {}
    for name in tqdm(models, desc="bench", disable=not progress):
        vec0 = fresh.encode([texts[0]])
        for _ in range(5):  # warm-up
            _topk(bundle.scores(name, vec0, [texts[0]])[0], k)
        total, scoring = [], []
        for _ in range(repeats):
            for text in texts:
                t0 = time.perf_counter()
                vec = fresh.encode([text])
                t1 = time.perf_counter()
                _topk(bundle.scores(name, vec, [text])[0], k)
                t2 = time.perf_counter()
                total.append((t2 - t0) * 1000)
                scoring.append((t2 - t1) * 1000)
        rows[name] = {"end_to_end": _percentiles(total), "scoring": _percentiles(scoring), "n": len(total)}
    return {"models": rows, "n_queries": len(texts), "n_videos": bundle.features.n_videos,
            "embedder": bundle.features.embedder_name, "embedding_cache": "off" if uncached else "on",
            "torch_threads": torch.get_num_threads(), "paper_claim_ms": video_eval.PAPER_LATENCY_MS}


def render_bench(report: dict[str, Any]) -> str:
    claim = report["paper_claim_ms"]
    lines = [f"Latency of one query over {report['n_queries']} test queries, {report['n_videos']} videos, "
             f"embedder {report['embedder']} (embedding cache {report['embedding_cache']}), "
             f"{report['torch_threads']} torch threads, warm.",
             "",
             "| Model | end-to-end p50 (ms) | end-to-end p99 (ms) | scoring+top-k p50 (ms) | scoring+top-k p99 (ms) "
             f"| end to end < {claim:g} ms (paper's claim): p50 / p99 |",
             "|---|---|---|---|---|---|"]
    for name, row in report["models"].items():
        e, s = row["end_to_end"], row["scoring"]
        ok = f"{'yes' if e['p50_ms'] < claim else 'no'} / {'yes' if e['p99_ms'] < claim else 'no'}"
        lines.append(f"| {DISPLAY_NAMES.get(name, name)} | {e['p50_ms']:.2f} | {e['p99_ms']:.2f} | "
                     f"{s['p50_ms']:.3f} | {s['p99_ms']:.3f} | {ok} |")
    return "\n".join(lines)


# ---------------------------------------------------------------- recipes (CLI `train`, Training studio)
def _run_recipe(name: str) -> Callable[[RecipeContext], dict[str, Any]]:
    def run(ctx: RecipeContext) -> dict[str, Any]:
        from recsys.embed import get_embedder

        options = dict(ctx.options)
        data = VideoData.load()
        embedder = get_embedder(options.get("backend", "local"))
        features = build_features_retrying(data, embedder, progress=True)
        model, result = train_model(name, features, ctx.train, options, ctx.callbacks)
        q_test, rel_test, _, _ = features.split("test")
        metrics = {f"test_{k}": v for k, v in video_eval.evaluate_scores(model_scores(model, q_test), rel_test).items()}
        metrics[f"valid_{ctx.train.monitor}"] = result.best_value
        summary = {"model": name, "embedder": features.embedder_name, "best_epoch": result.best_epoch,
                   "epochs_run": len(result.history), "stop_reason": result.stop_reason,
                   "seconds": round(result.seconds, 2), "device": result.device, **metrics}
        if ctx.checkpoint_path is not None:
            save_checkpoint(ctx.checkpoint_path, name, model, features, ctx.train, result, metrics)
            if options.get("export"):
                if features.embedder_name != SHIPPED_EMBEDDER:
                    raise ValueError(f"export=true ships a checkpoint for {SHIPPED_EMBEDDER} only, "
                                     f"this run used {features.embedder_name}")
                target = SHIPPED_CHECKPOINTS[name]
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(ctx.checkpoint_path, target)
                summary["exported"] = str(target.relative_to(PROJECT_ROOT))
        return summary

    return run


_OPTIONS_DOC = {"backend": "local", "export": False, "loss": "margin", "n_negatives": 4, "hard_fraction": 0.3,
                "dynamic_negatives": True}
register(Recipe(
    name="dcdt", domain="videos",
    summary="DCDT dual tower (cross-modal attention, dynamic hard negatives) for linear-algebra videos",
    defaults=QUICK_TRAIN, full=FULL_TRAIN, run=_run_recipe("dcdt"),
    options={**_OPTIONS_DOC, "hidden_dim": 64, "attn_dim": 32, "margin": 0.5, "cosine_skip": True},
))
register(Recipe(
    name="single-tower", domain="videos",
    summary="Single-tower MLP over [query; title; description] (DCDT's ablation)",
    defaults=QUICK_TRAIN, full=FULL_TRAIN, run=_run_recipe("single-tower"),
    options={**_OPTIONS_DOC, "hidden_dim": 128, "margin": 0.5},
))


# ---------------------------------------------------------------- CLI
def _service_from_args(args) -> VideoService:
    return make_service(backend=args.backend)


def _cli_evaluate(args) -> int:
    from recsys.embed import get_embedder

    data = VideoData.load()
    embedder = get_embedder(args.backend)
    features = build_features_retrying(data, embedder, progress=True)
    train = dataclasses.replace(QUICK_TRAIN if args.quick else FULL_TRAIN, device=args.device)
    ablations = "only" if args.ablations_only else args.ablations
    report = evaluate_videos(features, data, args.split, args.seeds, train, ablations=ablations,
                             progress=True, results_dir=Path(args.out) if args.out else RESULTS_DIR, jobs=args.jobs)
    print(report["text"])
    print(f"\nCSV written under {args.out or RESULTS_DIR}", file=sys.stderr)
    return 0


def _read_queries(args) -> list[str]:
    if args.query is not None:
        return [args.query]
    path = Path(args.queries_file)
    if not path.is_file():
        raise FileNotFoundError(f"queries file {path} not found")
    return path.read_text(encoding="utf-8").splitlines()


def _cli_recommend(args) -> int:
    queries = _read_queries(args)
    service = _service_from_args(args)
    service.bundle(progress=True)  # embeds the catalogue on the first run (cached afterwards)
    failures = 0
    for query in queries:
        try:
            record = service.recommend(query, args.model, args.k)
        except (ValueError, RuntimeError) as error:  # bad input, or the embedding backend failed
            failures += 1
            record = {"query": query if isinstance(query, str) else "", "model": args.model, "error": str(error)}
        if args.format == "jsonl":
            print(json.dumps(record, ensure_ascii=False), flush=True)
        else:
            print(f"# {record['query'][:80]}  [{args.model}]")
            if "error" in record:
                print(f"  error: {record['error']}")
            for rank, r in enumerate(record.get("results", []), start=1):
                print(f"  {rank:2d}. {r['score']:8.4f}  {r['video_id']:<16} {r['title']}")
    if service.fallback_reason:
        print(f"warning: embeddings fell back to the local model: {service.fallback_reason}", file=sys.stderr)
    return 1 if queries and failures == len(queries) else 0


def _cli_bench(args) -> int:
    service = _service_from_args(args)
    models = args.models.split(",") if args.models else list(MODEL_NAMES)
    report = bench_videos(service, models, args.k, args.split, args.repeats, progress=True, threads=args.threads)
    text = render_bench(report)
    print(text)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text + "\n")
        Path(args.out).with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    return 0


def register_cli(verbs: dict[str, argparse._SubParsersAction]) -> None:
    backend_help = "embedding backend: local (MiniLM, default), openai, auto"
    ev = verbs["evaluate"].add_parser("videos", help="Tables 2 and 3 of the DCDT paper on our video data")
    ev.add_argument("--split", default="test", choices=["train", "validation", "test"])
    ev.add_argument("--seeds", type=int, default=5, help="seeds per trained model (mean ± std)")
    ev.add_argument("--backend", default="local", help=backend_help)
    ev.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda")
    ev.add_argument("--quick", action="store_true", help="quick training settings instead of the paper's")
    ev.add_argument("--ablations", action="store_true",
                    help="Table 3 also with DCDT without cosine skip, with random negatives, with InfoNCE")
    ev.add_argument("--ablations-only", action="store_true",
                    help="the DCDT ablation variants without the (slow) single tower; use with --out")
    ev.add_argument("--jobs", type=int, default=1, help="train this many runs at once (worker processes)")
    ev.add_argument("--out", help=f"folder for the CSV/Markdown tables (default {RESULTS_DIR.relative_to(PROJECT_ROOT)})")
    ev.set_defaults(func=_cli_evaluate)

    rec = verbs["recommend"].add_parser("videos", help="recommend linear-algebra videos for queries")
    source = rec.add_mutually_exclusive_group(required=True)
    source.add_argument("--query", help="one query")
    source.add_argument("--queries-file", help="a text file with one query per line")
    rec.add_argument("--model", default="dcdt", choices=MODEL_NAMES)
    rec.add_argument("--k", type=int, default=10)
    rec.add_argument("--format", default="jsonl", choices=["jsonl", "table"])
    rec.add_argument("--backend", default="local", help=backend_help)
    rec.set_defaults(func=_cli_recommend)

    bench = verbs["bench"].add_parser("videos", help="latency per model: end to end and scoring alone")
    bench.add_argument("--models", help=f"comma-separated subset of {','.join(MODEL_NAMES)}")
    bench.add_argument("--k", type=int, default=10)
    bench.add_argument("--split", default="test")
    bench.add_argument("--repeats", type=int, default=3, help="passes over the queries")
    bench.add_argument("--backend", default="local", help=backend_help)
    bench.add_argument("--threads", type=int, default=1, help="torch CPU threads while timing (default 1)")
    bench.add_argument("--out", help="also write the table (Markdown) and a .json next to it")
    bench.set_defaults(func=_cli_bench)
