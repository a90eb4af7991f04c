"""``python -m recsys evaluate|recommend|bench videos``: the video domain's verbs.

Numeric arguments use :mod:`recsys.cliargs` (``--k`` 1..10000, seeds/repeats/jobs/threads
positive), so a bad value is an argparse error before anything loads. ``recommend``
prints one JSON object per query; a query longer than
:data:`recsys.videos.serving.MAX_QUERY_CHARS` is cut, and the record says so
(``"truncated": true, "original_chars": N``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

from recsys.cliargs import k_value, positive_int

BACKEND_HELP = "embedding backend: local (MiniLM + USE multilingual, default), minilm (English only), openai, auto"


def _service(args):
    from recsys.videos import serving

    return serving.make_service(backend=args.backend)


def _evaluate(args) -> int:
    from recsys.embed import get_embedder
    from recsys.videos.experiments import RESULTS_DIR, evaluate_videos
    from recsys.videos.prep import VideoData, build_items_retrying
    from recsys.videos.training import FULL_TRAIN, QUICK_TRAIN

    items = build_items_retrying(VideoData.load(), get_embedder(args.backend), progress=True, glossary=args.glossary)
    train = dataclasses.replace(QUICK_TRAIN if args.quick else FULL_TRAIN, device=args.device)
    ablations = "only" if args.ablations_only else args.ablations
    out = Path(args.out) if args.out else RESULTS_DIR
    report = evaluate_videos(items, args.split, args.seeds, train, ablations=ablations, progress=True,
                             results_dir=out, jobs=args.jobs)
    print(report["text"])
    print(f"\nCSV written under {out}", file=sys.stderr)
    return 0


def _read_queries(args) -> list[str]:
    if args.query is not None:
        return [args.query]
    path = Path(args.queries_file)
    if not path.is_file():
        raise FileNotFoundError(f"queries file {path} not found")
    return path.read_text(encoding="utf-8").splitlines()


def _recommend(args) -> int:
    queries = _read_queries(args)
    service = _service(args)
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
            cut = f"  (cut from {record['original_chars']:,} characters)" if record.get("truncated") else ""
            print(f"# {record['query'][:80]}  [{args.model}]{cut}")
            if "error" in record:
                print(f"  error: {record['error']}")
            for rank, r in enumerate(record.get("results", []), start=1):
                print(f"  {rank:2d}. {r['score']:8.4f}  {r['video_id']:<16} {r['title']}")
    if service.fallback_reason:
        print(f"warning: embeddings fell back to the local model: {service.fallback_reason}", file=sys.stderr)
    return 1 if queries and failures == len(queries) else 0


def _bench(args) -> int:
    from recsys.videos.bench import bench_videos, render_bench

    models = args.models.split(",") if args.models else None
    report = bench_videos(_service(args), models, args.k, args.split, args.repeats, progress=True,
                          threads=args.threads)
    text = render_bench(report)
    print(text)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text + "\n")
        Path(args.out).with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    return 0


def register_cli(verbs: dict[str, argparse._SubParsersAction]) -> None:
    from recsys import registry

    names = registry.names(domain="videos")
    ev = verbs["evaluate"].add_parser("videos", help="Tables 2 and 3 of the DCDT paper on our video data")
    ev.add_argument("--split", default="test", choices=["train", "validation", "test"])
    ev.add_argument("--seeds", type=positive_int, default=5, help="seeds per trained model (mean ± std)")
    ev.add_argument("--backend", default="local", help=BACKEND_HELP)
    ev.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda")
    ev.add_argument("--quick", action="store_true", help="quick training settings instead of the paper's")
    ev.add_argument("--no-ablations", dest="ablations", action="store_false",
                    help="Table 3 with DCDT and the single tower only (by default it also has DCDT without our "
                         "residual, with eq. 7, with the orthogonality term, with random negatives, with the "
                         "paper's fusion only, with InfoNCE, untied)")
    ev.add_argument("--ablations-only", action="store_true",
                    help="the DCDT ablation variants without the (slow) single tower; use with --out")
    ev.add_argument("--jobs", type=positive_int, default=1, help="train this many runs at once (worker processes)")
    ev.add_argument("--no-glossary", dest="glossary", action="store_false",
                    help="queries as typed, without the glossary's English glosses (the ablation)")
    ev.add_argument("--out", help="folder for the CSV/Markdown tables (default docs/results/videos)")
    ev.set_defaults(func=_evaluate)

    rec = verbs["recommend"].add_parser("videos", help="recommend linear-algebra videos for queries")
    source = rec.add_mutually_exclusive_group(required=True)
    source.add_argument("--query", help="one query")
    source.add_argument("--queries-file", help="a text file with one query per line")
    rec.add_argument("--model", default="dcdt", choices=names)
    rec.add_argument("--k", type=k_value, default=10)
    rec.add_argument("--format", default="jsonl", choices=["jsonl", "table"])
    rec.add_argument("--backend", default="local", help=BACKEND_HELP)
    rec.set_defaults(func=_recommend)

    bench = verbs["bench"].add_parser("videos", help="latency per model: end to end and scoring alone")
    bench.add_argument("--models", help=f"comma-separated subset of {','.join(names)}")
    bench.add_argument("--k", type=k_value, default=10)
    bench.add_argument("--split", default="test", choices=["train", "validation", "test"])
    bench.add_argument("--repeats", type=positive_int, default=3, help="passes over the queries")
    bench.add_argument("--backend", default="local", help=BACKEND_HELP)
    bench.add_argument("--threads", type=positive_int, default=1, help="torch CPU threads while timing (default 1)")
    bench.add_argument("--out", help="also write the table (Markdown) and a .json next to it")
    bench.set_defaults(func=_bench)

