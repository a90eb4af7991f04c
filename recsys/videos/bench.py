"""Latency of one query per video model (``bench videos``): end to end and scoring + top-k alone.

The paper claims a recommendation in under 10 ms; we time, warm, embedding the query
(MiniLM with its cache off when possible, so every query is really encoded), then
``full_sort_predict`` + :func:`recsys.retrieval.topk.top_k` over the whole catalogue.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from recsys.eval import videos as video_eval
from recsys.retrieval.topk import top_k
from recsys.train.loop import cpu_threads
from recsys.videos.serving import VideoService, display_name, model_names


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


def bench_videos(service: VideoService, models: Sequence[str] | None = None, k: int = 10, split: str = "test",
                 repeats: int = 1, progress: bool = False, threads: int | None = 1) -> dict[str, Any]:
    """p50/p99 latency of one query: end to end (embed + score + top-k) and scoring + top-k alone, warm.

    ``threads``: torch CPU threads while timing (1 by default: one query is far too
    small to gain from intra-op parallelism, and a shared machine punishes spinning threads).
    """
    with cpu_threads(threads):
        return _bench(service, list(models or model_names()), k, split, repeats, progress)


def _bench(service, models, k, split, repeats, progress) -> dict[str, Any]:
    from tqdm.auto import tqdm

    bundle = service.bundle(progress=progress)
    _, _, texts, _ = bundle.items.split(split)
    fresh, uncached = uncached_embedder(service.embedder)
    for name in models:
        bundle.model(name)
    fresh.encode([texts[0]])  # warm: load the model
    rows = {}
    for name in tqdm(models, desc="bench", disable=not progress):
        vec0 = fresh.encode([texts[0]])
        for _ in range(5):  # warm-up
            top_k(bundle.scores(name, vec0, [texts[0]]), k)
        total, scoring = [], []
        for _ in range(repeats):
            for text in texts:
                t0 = time.perf_counter()
                vec = fresh.encode([text])
                t1 = time.perf_counter()
                top_k(bundle.scores(name, vec, [text]), k)
                t2 = time.perf_counter()
                total.append((t2 - t0) * 1000)
                scoring.append((t2 - t1) * 1000)
        rows[name] = {"end_to_end": _percentiles(total), "scoring": _percentiles(scoring), "n": len(total)}
    return {"models": rows, "n_queries": len(texts), "n_videos": bundle.items.n_videos,
            "embedder": bundle.items.embedder_name, "embedding_cache": "off" if uncached else "on",
            "torch_threads": torch.get_num_threads(), "paper_claim_ms": video_eval.PAPER_LATENCY_MS,
            "encoders": _bench_encoders(fresh, texts, repeats) if uncached else {}}


def _bench_encoders(torch_embedder, texts, repeats) -> dict[str, Any]:
    """One query encoded by the torch MiniLM and by the numpy port of the same weights, interleaved.

    Interleaving query by query exposes both to the same load on a shared machine; the
    ratio (numpy / torch) is the number to read.
    """
    from recsys.embed.numpy_bert import NumpyMiniLM

    port = NumpyMiniLM(torch_embedder.model_dir)
    port.encode([texts[0]])
    times: dict[str, list[float]] = {"torch": [], "numpy": []}
    for _ in range(repeats):
        for text in texts:
            for name, encode in (("torch", torch_embedder.encode), ("numpy", port.encode)):
                t0 = time.perf_counter()
                encode([text])
                times[name].append((time.perf_counter() - t0) * 1000)
    return {name: _percentiles(values) for name, values in times.items()}


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
        lines.append(f"| {display_name(name)} | {e['p50_ms']:.2f} | {e['p99_ms']:.2f} | "
                     f"{s['p50_ms']:.3f} | {s['p99_ms']:.3f} | {ok} |")
    encoders = report.get("encoders") or {}
    if encoders:
        base = encoders["torch"]
        lines += ["", "Query encoder alone (MiniLM, same weights, interleaved query by query; ratio = numpy / torch):", "",
                  "| Encoder | p50 (ms) | p99 (ms) | p50 ratio | p99 ratio |", "|---|---|---|---|---|"]
        for name, row in encoders.items():
            lines.append(f"| {name} | {row['p50_ms']:.2f} | {row['p99_ms']:.2f} | "
                         f"{row['p50_ms'] / base['p50_ms']:.2f} | {row['p99_ms'] / base['p99_ms']:.2f} |")
    return "\n".join(lines)
