"""Serving of the video domain: query text -> top-k videos (and why), for the CLI and the Ask page.

Every model is built from its registry entry (``registry.by_domain("videos")``) and
scored through the one contract, ``full_sort_predict`` on a :func:`~recsys.videos.prep.query_batch`;
top-k is :func:`recsys.retrieval.topk.top_k`. Display names come from the registry.

Which trained model serves (:func:`load_trained`), first that loads wins:

1. the studio run chosen as active for the model (``RunRegistry().active_run(name)``);
2. the checkpoint shipped in ``assets/checkpoints/`` (MiniLM);
3. one cached under ``cache_dir("videos", "checkpoints")``;
4. else it trains one with the quick recipe (about a minute on a CPU; e.g. for the
   1536-d OpenAI embedder) and caches it.

A checkpoint of another embedder is skipped (:class:`~recsys.videos.training.CheckpointMismatch`);
a damaged or foreign file (a pickle, random bytes, a truncated file, another model's
checkpoint) is refused with a message naming it, and serving goes on with the next
source; the refusal is part of the model's *source* line, which the page shows.
This module never imports streamlit; ``app_pages/ask.py`` is UI only. Importing it
does not import torch either: :func:`make_service` gives the local embedder's queries to
the torch-free :class:`recsys.videos.fastserve.FastVideoService` (numpy / ONNX Runtime
over a pre-computed serving pack), and :class:`VideoService` (torch) serves the other
backends, builds the packs and is what tests of the models use.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from recsys import registry
from recsys.embed.glossary import embed_query, expand_query
from recsys.retrieval.topk import top_k

log = logging.getLogger(__name__)

#: queries longer than this are cut (with a notice); MiniLM reads ~256 word pieces anyway
MAX_QUERY_CHARS = 2000
#: models whose score is a keyword match: a score of 0 means no query word occurs, so those rows are dropped
KEYWORD_MODELS = frozenset({"bm25"})


def first_sentence(text: str, limit: int = 160) -> str:
    """The first sentence of a description (cut at ``limit`` characters with an ellipsis)."""
    text = " ".join(str(text).split())
    end = text.find(". ")
    sentence = text if end < 0 else text[:end + 1]
    return sentence if len(sentence) <= limit else sentence[:limit - 1].rstrip() + "…"


def series_link(series: str) -> str | None:
    """The official page of a video's series (no per-video URL is in the catalogue), or None."""
    from recsys.data.videos import SERIES_PAGES

    return SERIES_PAGES.get(series)


def model_names() -> list[str]:
    """The video models, in registry order."""
    return registry.names(domain="videos")


def display_name(name: str) -> str:
    return registry.get(name, domain="videos").display_name


def check_model(name: str) -> registry.ModelSpec:
    """The registry entry of a video model; :class:`ValueError` naming the choices otherwise."""
    try:
        return registry.get(name, domain="videos")
    except KeyError:
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(model_names())}") from None


@dataclass
class PreparedQuery:
    """A validated query: the text used, notices for the user, and whether it was cut."""

    text: str
    notices: list[str]
    original_chars: int  # length of the text as given
    truncated: bool


def prepare_query(text: Any) -> PreparedQuery:
    """Validate a user query (whitespace collapsed, cut at :data:`MAX_QUERY_CHARS`); :class:`ValueError` if empty."""
    if not isinstance(text, str):
        raise ValueError(f"the query must be text, got {type(text).__name__}")
    cleaned = " ".join(text.split())
    if not cleaned:
        raise ValueError("the query is empty: type what you want to learn")
    notices, truncated = [], len(cleaned) > MAX_QUERY_CHARS
    if truncated:
        notices.append(f"The query was {len(cleaned):,} characters long; only the first "
                       f"{MAX_QUERY_CHARS:,} were used.")
        cleaned = cleaned[:MAX_QUERY_CHARS].rstrip()
    return PreparedQuery(cleaned, notices, len(text), truncated)


def active_run_id(name: str) -> str | None:
    """The studio run chosen to serve ``name``, if any (an unreadable registry must not stop serving)."""
    try:
        from recsys.train.runs import RunRegistry

        run = RunRegistry().active_run(name)
    except Exception as error:
        log.warning("could not read the run registry: %s", error)
        return None
    return run.id if run is not None else None


def checkpoint_candidates(name: str, items: VideoItems) -> list[tuple[str, Path]]:
    """``(source, path)`` in serving order: active studio run, shipped, cached."""
    from recsys.videos import training

    candidates: list[tuple[str, Path]] = []
    run_id = active_run_id(name)
    if run_id is not None:
        from recsys.train.runs import RunRegistry

        candidates.append((f"studio run {run_id}", RunRegistry().get(run_id).checkpoint_path))
    if name in training.SHIPPED_CHECKPOINTS:
        candidates.append(("shipped checkpoint", training.SHIPPED_CHECKPOINTS[name]))
    candidates.append(("cached checkpoint", training.cached_checkpoint_path(name, items)))
    return candidates


def load_trained(name: str, items: VideoItems, train_if_missing: bool = True,
                 callbacks: Sequence = ()) -> tuple[Any, str]:
    """The model that serves ``name`` and where it came from (see the module docstring for the order)."""
    from recsys.artifacts import ArtifactError
    from recsys.videos import training

    refused = []
    for source, path in checkpoint_candidates(name, items):
        if not path.exists():
            continue
        try:
            model, meta = training.load_checkpoint(path, items, expected_model=name)
        except training.CheckpointMismatch as error:  # readable, made for another model/embedder
            log.info("skipping %s: %s", source, error)
            refused.append(f"skipped {source}: {error}")
            continue
        except ArtifactError as error:  # damaged or foreign: say so and go on with the next source
            log.warning("refusing %s: %s", source, error)
            refused.append(f"refused {source}: {error}")
            continue
        note = "" if meta["catalog_matches"] else ", trained on an earlier catalogue version"
        return model, "; ".join([f"{source} ({path.name}{note})", *refused])
    if not train_if_missing:
        raise FileNotFoundError("; ".join([f"no usable {name} checkpoint for {items.embedder_name}; train one "
                                           f"with `python -m recsys train {name}`", *refused]))
    log.warning("no %s checkpoint for %s: training one with the quick recipe", name, items.embedder_name)
    train = dataclasses.replace(training.QUICK_TRAIN, device="cpu")
    model, result = training.train_model(name, items, train, callbacks=callbacks)
    path = training.cached_checkpoint_path(name, items)
    training.save_checkpoint(path, name, model, items, train, result)
    model.cpu().eval()
    return model, "; ".join([f"trained now ({result.seconds:.0f} s), cached as {path.name}", *refused])


@dataclass
class ModelBundle:
    """The items of one embedder and the models over them (built lazily, model by model)."""

    items: VideoItems
    train_if_missing: bool = True
    models: dict[str, Any] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)
    served_runs: dict[str, str | None] = field(default_factory=dict)  # studio run each trained model came from

    def model(self, name: str):
        """The ready model; a trained one is reloaded when the studio serves another run."""
        spec = check_model(name)
        served = active_run_id(spec.name) if spec.kind == "neural" else None
        if spec.name not in self.models or self.served_runs.get(spec.name) != served:
            self.models[spec.name], self.sources[spec.name] = self._build(spec)
            self.served_runs[spec.name] = served
        return self.models[spec.name]

    def _build(self, spec: registry.ModelSpec):
        if spec.kind == "neural":
            model, source = load_trained(spec.name, self.items, self.train_if_missing)
            model.cpu().eval()
            if hasattr(model, "freeze_items"):  # DCDT: pre-compute the item tower once
                model.freeze_items()
            return model, source
        return spec.build(self.items).fit(self.items), f"fitted on {self.items.n_videos} videos"

    def scores(self, name: str, query_emb: np.ndarray, texts: Sequence[str]) -> np.ndarray:
        """``full_sort_predict`` of model ``name`` for the queries: ``[B, n_videos]``."""
        from recsys.videos.prep import full_scores

        return full_scores(self.model(name), query_emb, texts)


class VideoService:
    """Query text -> recommendations with explanations, for the CLI and the Ask page.

    ``embedder`` defaults to ``get_embedder(backend, api_key)``. Items and models are
    built on first use per embedder name, so an OpenAI failure that falls back to the
    local model is followed by local items and the shipped checkpoint.
    """

    #: why this service serves with torch although the fast path was asked for (set by :func:`make_service`)
    serving_note: str | None = None

    def __init__(self, data: VideoData | None = None, embedder=None, backend: str = "auto",
                 api_key: str | None = None, train_if_missing: bool = True, serving_threads: int | None = 1):
        import torch

        from recsys.videos.prep import VideoData

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
        start = time.perf_counter()
        self.data = data if data is not None else VideoData.load()
        self.train_if_missing = train_if_missing
        self._bundles: dict[str, ModelBundle] = {}
        self._rows = self.data.catalog.to_dict("records")
        self._index = {row["video_id"]: i for i, row in enumerate(self._rows)}
        # one page process serves many sessions: build items and models once
        self._lock = threading.RLock()
        self.answered = 0  # queries answered: the page labels the first one (it may include loading)
        self.created_at, self.load_seconds = time.time(), time.perf_counter() - start

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
            for _ in range(3):
                name = self.embedder.name
                if name in self._bundles:
                    return self._bundles[name]
                from recsys.videos.prep import build_items_retrying

                items = build_items_retrying(self.data, self.embedder, progress)
                if items.embedder_name == self.embedder.name:
                    self._bundles[name] = bundle = ModelBundle(items, self.train_if_missing)
                    return bundle
        raise RuntimeError("the embedding backend kept changing while the catalogue was being embedded")

    def model_source(self, name: str) -> str:
        bundle = self.bundle()
        with self._lock:
            bundle.model(name)
        return bundle.sources[check_model(name).name]

    # --- recommendations
    def recommend_many(self, query: Any, models: Sequence[str] = ("dcdt",), k: int = 10,
                       explain: bool = False) -> dict[str, Any]:
        """Recommendations of several models for one query, the query embedded once.

        Returns ``{"query", "read_as", "notices", "truncated", "original_chars", "backend",
        "fallback_reason", "embed_ms", "results": {model: record}, "neighbours"?}`` where
        ``read_as`` is the query with its glossary glosses (what BM25 and the English encoder
        read; the multilingual one reads the query as typed) and
        each record is what :meth:`recommend` returns plus ``score_ms`` and ``source``.
        Bad input raises :class:`ValueError` (message for the user).
        """
        prepared = prepare_query(query)
        names = [check_model(name).name for name in models]
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise ValueError(f"k must be a positive integer, got {k!r}")
        self.answered += 1
        start = time.perf_counter()
        text = expand_query(prepared.text)  # what BM25 and the English encoder read: the glossary's glosses appended
        expand_ms = (time.perf_counter() - start) * 1000
        vec, embed_ms = self._encode(prepared.text)
        embed_ms += expand_ms
        out = {"query": prepared.text, "read_as": text, "notices": prepared.notices, "truncated": prepared.truncated,
               "original_chars": prepared.original_chars, "backend": self.backend_description,
               "fallback_reason": self.fallback_reason, "embed_ms": embed_ms, "results": {}}
        for name in names:
            self._ready(name)  # load outside the timed part
            start = time.perf_counter()
            scores, ids = top_k(self._scores(name, vec, text), k)
            score_ms = (time.perf_counter() - start) * 1000
            results = [self._result(int(i), float(s)) for s, i in zip(scores[0], ids[0]) if i >= 0]
            hidden = 0
            if name in KEYWORD_MODELS:  # a keyword score of 0: no query word in the video's text
                hidden = sum(r["score"] <= 0 for r in results)
                results = [r for r in results if r["score"] > 0]
            parts = self._contributions(name, vec[0]) if explain else None
            if parts is not None:  # DCDT: the score split by modality
                for record in results:
                    row = parts[self._index[record["video_id"]]]
                    record["why"] = {"title": float(row[0]), "description": float(row[1]), "rest": float(row[2])}
            out["results"][name] = {"query": prepared.text, "model": name, "results": results,
                                    "latency_ms": embed_ms + score_ms, "score_ms": score_ms,
                                    "source": self._source(name), "hidden_no_match": hidden}
        if explain:
            near = self.neighbours(vec[0], n=30)
            out["neighbours"] = near[:3]
            for record in out["results"].values():  # the close training queries labelled with each result
                for result in record["results"]:
                    result["pulled_by"] = [n["text"] for n in near if result["video_id"] in n["relevant"]][:2]
        return out

    # --- what a serving path provides (FastVideoService overrides these)
    def _encode(self, text: str) -> tuple[np.ndarray, float]:
        """The typed query's embedding ``[1, E]`` (:func:`embed_query`: glosses for the encoder that reads
        them) and the milliseconds it took (items built first, untimed)."""
        bundle = self.bundle()
        start = time.perf_counter()
        vec = embed_query(self.embedder, [text])
        if self.embedder.name != bundle.items.embedder_name:  # fell back while embedding the query
            self.bundle()
            start = time.perf_counter()
            vec = embed_query(self.embedder, [text])
        return vec, (time.perf_counter() - start) * 1000

    def _ready(self, name: str) -> None:
        with self._lock:
            self.bundle().model(name)

    def _scores(self, name: str, vec: np.ndarray, text: str) -> np.ndarray:
        return self.bundle().scores(name, vec, [text])

    def _contributions(self, name: str, vec: np.ndarray) -> np.ndarray | None:
        model = self.bundle().model(name)
        if not hasattr(model, "contributions"):
            return None
        import torch

        return model.contributions(torch.from_numpy(vec)).cpu().numpy()

    def _source(self, name: str) -> str:
        return self.bundle().sources.get(name, "")

    def recommend(self, query: Any, model: str = "dcdt", k: int = 10) -> dict[str, Any]:
        """One query, one model: the JSONL record ``{"query", "model", "results", "latency_ms", "truncated"
        [, "read_as", "original_chars"]}``; ``read_as`` is there when the glossary added English glosses,
        ``original_chars`` when the query was cut."""
        many = self.recommend_many(query, [model], k)
        record = dict(many["results"][check_model(model).name])
        record.pop("source", None)
        record.pop("score_ms", None)
        if not record.get("hidden_no_match"):  # present only when BM25 dropped videos without a keyword match
            record.pop("hidden_no_match", None)
        record["truncated"] = many["truncated"]
        if many["read_as"] != many["query"]:  # glossed: say what the models read
            record["read_as"] = many["read_as"]
        if many["truncated"]:
            record["original_chars"] = many["original_chars"]
        return record

    def _result(self, index: int, score: float) -> dict[str, Any]:
        row = self._rows[index]
        return {"video_id": row["video_id"], "title": row["title"], "series": row["series"],
                "level": row["level"], "topics": list(row["topics"]), "score": round(score, 6),
                "summary": first_sentence(row.get("description", "")), "link": series_link(row["series"])}

    def neighbours(self, query_vec: np.ndarray, n: int = 3) -> list[dict[str, Any]]:
        """The ``n`` training queries closest to ``query_vec`` (cosine), with the videos they were labelled with."""
        emb, relevant, texts = self._train_queries()
        sims = emb @ np.asarray(query_vec, dtype=np.float32).reshape(-1)
        _, best = top_k(sims[None, :], n)
        return [{"text": texts[i], "similarity": float(sims[i]), "relevant": relevant[i]} for i in best[0] if i >= 0]

    def _train_queries(self) -> tuple[np.ndarray, list[list[str]], list[str]]:
        """Training queries: embeddings, relevant video ids, texts."""
        items = self.bundle().items
        q_train, rel_train, texts, _ = items.split("train")
        return q_train, [[items.video_ids[v] for v in rel] for rel in rel_train], texts


def make_service(backend: str = "auto", api_key: str | None = None, fast: bool = True):
    """The service the Ask page and the CLI use (tests replace this factory): :func:`~recsys.videos.fastserve.make_service`."""
    from recsys.videos import fastserve

    return fastserve.make_service(backend, api_key, fast)
