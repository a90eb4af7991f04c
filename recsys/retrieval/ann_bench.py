"""``python -m recsys bench ann``: approximate indexes against the exact scan on a large synthetic catalogue.

The catalogue stands in for a two-tower item table far larger than any here (1 M items by
default; never data): item vectors are drawn around ``clusters`` centres (real item
embeddings cluster by genre and audience; uniform noise would be the worst case for
every ANN index), with norms spread log-normally (a two-tower's popular items have
larger norms), and queries are drawn around the same centres. What is measured, per
index setting, on one thread (``faiss.omp_set_num_threads(1)``; a server answers one
query per thread):

* recall@10: the share of the exact index's top 10 found in the approximate top 10;
* latency of ``ItemIndex.search(query, k=10)``, one query at a time: p50 and p99, and
  the ratio of the p50 to the exact scan's in the same run;
* build time (two threads) and the index's size in memory (faiss' own serialisation).
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd

from recsys.eval import metrics
from recsys.paths import PROJECT_ROOT
from recsys.retrieval.index import ItemIndex

log = logging.getLogger(__name__)

OUT_DIR = PROJECT_ROOT / "docs" / "results" / "scale"


def synthetic_catalog(n_items: int, dim: int, n_queries: int, clusters: int = 1000, seed: int = 0):
    """``(items [n_items, dim], queries [n_queries, dim])`` float32, clustered (see the module docstring)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(clusters, dim)).astype(np.float32)
    items = centres[rng.integers(0, clusters, n_items)] + rng.normal(scale=0.7, size=(n_items, dim)).astype(np.float32)
    items *= rng.lognormal(0.0, 0.3, size=(n_items, 1)).astype(np.float32) / np.linalg.norm(items, axis=1,
                                                                                                   keepdims=True)
    queries = centres[rng.integers(0, clusters, n_queries)] + rng.normal(scale=0.7, size=(n_queries, dim))
    return np.ascontiguousarray(items, np.float32), np.ascontiguousarray(queries, np.float32)


def _latencies(index: ItemIndex, queries: np.ndarray, k: int, label: str) -> tuple[np.ndarray, np.ndarray]:
    from tqdm.auto import tqdm

    ids, times = np.empty((len(queries), k), np.int64), np.empty(len(queries))
    for row, query in enumerate(tqdm(queries, desc=label, unit="query", leave=False)):
        started = time.perf_counter()
        _, found = index.search(query[None], k)
        times[row] = time.perf_counter() - started
        ids[row] = found[0]
    return ids, times * 1000


def recall_at_k(found: np.ndarray, truth: np.ndarray) -> float:
    """Mean over rows of :func:`recsys.eval.metrics.recall_at_k`: the share of ``truth``'s row found in ``found``'s."""
    return float(np.mean([metrics.recall_at_k(list(f), t, len(f)) for f, t in zip(found, truth)]))


def _size_mb(index) -> float:
    import faiss

    return round(faiss.serialize_index(index).nbytes / 2**20, 1)


def bench(n_items: int = 1_000_000, dim: int = 64, n_queries: int = 1000, k: int = 10,
          nprobes=(8, 16, 32, 64, 128), ef_searches=(32, 64, 128, 256), hnsw_m: int = 32, seed: int = 0) -> pd.DataFrame:
    """Flat, IVF at each ``nprobe`` and HNSW at each ``efSearch`` on one synthetic catalogue."""
    import faiss

    from tqdm.auto import tqdm

    items, queries = synthetic_catalog(n_items, dim, n_queries, seed=seed)
    rows = []
    stages = tqdm(total=3, desc="indexes", unit="index")

    def build(kind: str, **options) -> tuple[ItemIndex, float]:
        faiss.omp_set_num_threads(2)
        stages.set_description(f"building {kind} (faiss shows no progress; minutes at 1 M items)")
        started = time.perf_counter()
        index = ItemIndex(items, kind=kind, hnsw_m=hnsw_m, seed=seed, **options)
        seconds = time.perf_counter() - started
        faiss.omp_set_num_threads(1)
        log.info("built %s in %.1f s", kind, seconds)
        stages.update(1)
        return index, seconds

    exact, exact_build = build("flat")
    truth, times = _latencies(exact, queries, k, "flat")
    base_p50 = float(np.median(times))
    rows.append({"index": "flat (exact)", "setting": "", "recall@10": 1.0, "p50_ms": base_p50,
                 "p99_ms": float(np.percentile(times, 99)), "build_s": exact_build, "size_mb": _size_mb(exact.index)})
    del exact
    ivf, ivf_build = build("ivf")
    for nprobe in nprobes:
        ivf.index.nprobe = nprobe
        found, times = _latencies(ivf, queries, k, f"ivf nprobe {nprobe}")
        rows.append({"index": f"ivf (nlist {ivf.nlist})", "setting": f"nprobe {nprobe}",
                     "recall@10": recall_at_k(found, truth), "p50_ms": float(np.median(times)),
                     "p99_ms": float(np.percentile(times, 99)), "build_s": ivf_build, "size_mb": _size_mb(ivf.index)})
    del ivf
    hnsw, hnsw_build = build("hnsw")
    for ef in ef_searches:
        hnsw.index.hnsw.efSearch = ef
        found, times = _latencies(hnsw, queries, k, f"hnsw efSearch {ef}")
        rows.append({"index": f"hnsw (M {hnsw_m})", "setting": f"efSearch {ef}", "recall@10": recall_at_k(found, truth),
                     "p50_ms": float(np.median(times)), "p99_ms": float(np.percentile(times, 99)),
                     "build_s": hnsw_build, "size_mb": _size_mb(hnsw.index)})
    stages.close()
    table = pd.DataFrame(rows)
    table["p50_vs_exact"] = (table["p50_ms"] / base_p50).round(3)
    return table.round({"recall@10": 4, "p50_ms": 3, "p99_ms": 3, "build_s": 1})


def run_cli(args) -> int:
    table = bench(args.items, args.dim, args.queries, seed=args.seed)
    print(table.to_string(index=False))
    load = os.getloadavg()[0]
    print(f"{args.items:,} items x {args.dim} dims, {args.queries} queries; load average (1 min) at the end: "
          f"{load:.2f} on {os.cpu_count()} CPUs")
    if args.write:
        OUT_DIR.mkdir(parents=True, exist_ok=True)
        path = OUT_DIR / "ann.csv"
        table.assign(items=args.items, dim=args.dim, queries=args.queries, load_1min=round(load, 2)).to_csv(
            path, index=False)
        print(f"wrote {path}")
    return 0


def register_cli(bench_verbs) -> None:
    """Adds ``ann`` to the ``bench`` verb."""
    from recsys.cliargs import non_negative_int, positive_int

    parser = bench_verbs.add_parser("ann", help="IVF / HNSW recall@10 and latency against the exact index")
    parser.add_argument("--items", type=positive_int, default=1_000_000)
    parser.add_argument("--dim", type=positive_int, default=64)
    parser.add_argument("--queries", type=positive_int, default=1000)
    parser.add_argument("--seed", type=non_negative_int, default=0)
    parser.add_argument("--write", action="store_true", help=f"write {Path(OUT_DIR).relative_to(PROJECT_ROOT)}/ann.csv")
    parser.set_defaults(func=run_cli)
