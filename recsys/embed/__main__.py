"""``python -m recsys.embed``: inspect and benchmark the embedding backends.

    python -m recsys.embed info [--backend auto]          which backend serves, and why
    python -m recsys.embed bench [--n 230] [--backend local] [--threads N]
    python -m recsys.embed encode "some text" ["more text" ...]

``bench`` measures, in a throw-away cache folder: model load time, cold encode
throughput (texts/s) and the cached re-encode time.  Its texts are anime
titles + genres from ``anime/anime.csv`` when the data is present, otherwise
generated short sentences.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import tempfile
import time


def _bench_texts(n: int) -> tuple[list[str], str]:
    try:
        from recsys.paths import find_data_dir

        folder = find_data_dir("anime", ["anime.csv"], "see docs")
        texts = []
        with open(folder / "anime.csv", newline="", encoding="utf-8") as fh:
            for row in csv.DictReader(fh):
                texts.append(f"{row['name']}. Genres: {row['genre']}. Type: {row['type']}.")
                if len(texts) >= n:
                    break
        if len(texts) == n:
            return texts, f"first {n} anime (name, genres, type) from {folder / 'anime.csv'}"
    except Exception:  # noqa: BLE001 - any problem: use generated texts
        pass
    subjects = ["A shy student", "Two rival pilots", "A retired detective", "An android", "A young witch"]
    plots = ["joins the school band", "searches for a lost city", "solves a murder on a train",
             "learns to cook", "fights giant robots"]
    texts = [f"{subjects[i % 5]} {plots[(i // 5) % 5]} (story {i})." for i in range(n)]
    return texts, f"{n} generated one-sentence synopses"


def _bench(args: argparse.Namespace) -> int:
    from recsys import embed

    texts, source = _bench_texts(args.n)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="embed-bench-") as tmp:
        os.environ["RECSYS_CACHE_DIR"] = tmp  # cold cache, removed afterwards
        emb = embed.get_embedder(args.backend)
        report: dict = {"backend_requested": args.backend, "texts": source}
        if isinstance(getattr(emb, "active", emb), embed.LocalEmbedder):
            from recsys.embed.local import load_minilm

            t0 = time.perf_counter()
            load_minilm()
            report["model_load_s"] = round(time.perf_counter() - t0, 3)
        t0 = time.perf_counter()
        emb.encode(texts, progress=args.progress)
        cold = time.perf_counter() - t0
        t0 = time.perf_counter()
        emb.encode(texts)
        warm_lru = time.perf_counter() - t0
        # a new cache object = what a fresh process sees: disk (sqlite) hits, no model
        from recsys.embed.cache import EmbeddingCache, safe_model_dirname
        from recsys.paths import cache_dir

        disk_only = EmbeddingCache(emb.name, emb.dim, folder=cache_dir("embeddings", safe_model_dirname(emb.name)))
        fresh = type(getattr(emb, "active", emb))
        t0 = time.perf_counter()
        if fresh is embed.LocalEmbedder:
            fresh(cache=disk_only).encode(texts)
            disk = time.perf_counter() - t0
        else:
            disk = None
        import torch

        report.update({
            "served_by": emb.name, "dim": emb.dim, "n_texts": len(texts),
            "cold_encode_s": round(cold, 3), "texts_per_s": round(len(texts) / cold, 1),
            "cached_reencode_ms (memory LRU)": round(warm_lru * 1000, 2),
            "cached_reencode_ms (disk, fresh process)": None if disk is None else round(disk * 1000, 2),
            "torch_threads": torch.get_num_threads(),
            "fallback_reason": getattr(emb, "last_fallback_reason", None),
        })
    print(json.dumps(report, indent=2))
    return 0


def _info(args: argparse.Namespace) -> int:
    from recsys import embed

    emb = embed.get_embedder(args.backend)
    print(json.dumps({"name": emb.name, "dim": emb.dim, "describe": emb.describe(),
                      "fallback_reason": getattr(emb, "last_fallback_reason", None)}, indent=2))
    return 0


def _encode(args: argparse.Namespace) -> int:
    from recsys import embed

    emb = embed.get_embedder(args.backend)
    try:
        X = emb.encode(args.texts)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for text, row in zip(args.texts, X):
        print(json.dumps({"text": text, "model": emb.name, "head": [round(float(v), 4) for v in row[:8]]}))
    return 0


def main(argv: list[str] | None = None) -> int:
    import logging

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    parser = argparse.ArgumentParser(prog="python -m recsys.embed", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="verb", required=True)
    for verb, func in (("info", _info), ("bench", _bench), ("encode", _encode)):
        p = sub.add_parser(verb)
        p.add_argument("--backend", default="local" if verb == "bench" else "auto",
                       choices=["auto", "local", "openai"])
        p.set_defaults(func=func)
        if verb == "bench":
            p.add_argument("--n", type=int, default=230)
            p.add_argument("--progress", action="store_true")
            p.add_argument("--threads", type=int, default=0,
                           help="torch CPU threads (default: torch's choice); 1 is faster on a busy machine")
        if verb == "encode":
            p.add_argument("texts", nargs="+")
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())
