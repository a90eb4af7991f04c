"""``python -m recsys evaluate|recommend|bench anime``: argument parsing and output only.

``--method`` accepts every anime registry name and its short alias (``weighted``,
``kmeans``...); ``--k`` and the other numbers are validated by :mod:`recsys.cliargs`
before anything is loaded. A ``--user-id`` is compared as a Python integer, so an id
above 2^31 is "not in the dataset", never another user.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd

from recsys import registry
from recsys.anime.serving import AnimeRecommender, dataset_history
from recsys.cliargs import k_value, non_negative_int, positive_int

log = logging.getLogger(__name__)


def method_choices() -> list[str]:
    """Every anime registry name and alias."""
    return [key for spec in registry.by_domain("anime") for key in (spec.name, *spec.aliases)]


def read_history_file(path: Path) -> pd.DataFrame:
    """A CSV of ``user_id,anime_id,rating`` (one or many users), checked by the dataset's strict loader.

    The loader reads ids as int64 and refuses, with the line number, any id outside
    1..2^31-1 (such as 4294967316, which an int32 cast would have turned into anime 20),
    any rating outside -1..10 and any malformed or cut line.
    """
    from recsys.data.anime import AnimeDataError, load_ratings

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"history file {path} does not exist")
    try:
        frame = load_ratings(path)
    except AnimeDataError as error:
        raise ValueError(f"bad history file: {error}") from None
    return frame.drop_duplicates(["user_id", "anime_id"], keep="last").reset_index(drop=True)


def recommend_rows(recommender: AnimeRecommender, method: str, k: int = 10, user_id: int | None = None,
                   history: pd.DataFrame | None = None) -> list[dict[str, Any]]:
    """The CLI's output records (one per user): results, fallback, skipped unknown ids, latency."""
    jobs = []
    if user_id is not None:
        hist, _, _ = dataset_history(recommender, user_id)
        jobs.append((int(user_id), hist, 0))
    if history is not None:
        for uid, rows in history.groupby("user_id", sort=False):
            hist, skipped = recommender.histories_from_ids(rows["anime_id"].to_numpy(), rows["rating"].to_numpy(),
                                                           int(uid))
            jobs.append((int(uid), hist, skipped))
    name = registry.get(method, "anime").name
    out = []
    for uid, hist, skipped in jobs:
        started = time.perf_counter()
        scores, ids, fallbacks = recommender.rank(name, hist, k)
        latency = 1000 * (time.perf_counter() - started)
        out.append({"user_id": uid, "method": method, "results": recommender.results(scores, ids, 0),
                    "fallback": fallbacks[0], "skipped_unknown": skipped, "latency_ms": round(latency, 3)})
    return out


def cli_recommender(args) -> AnimeRecommender:
    """The cached bundle for the command's settings (trained once, with a progress bar)."""
    from tqdm.auto import tqdm

    from recsys.anime.prep import default_settings
    from recsys.anime.serving import (STANDALONE_METHODS, apply_active_runs, bundle_path, get_recommender,
                                      quick_recommender)

    settings = default_settings(quick=not getattr(args, "full", False), seed=getattr(args, "seed", None) or 0)
    if bundle_path(settings).exists():
        return apply_active_runs(get_recommender(settings))
    method = getattr(args, "method", None)
    name = registry.get(method, "anime").name if method is not None else None
    if name in STANDALONE_METHODS:
        # item-kNN, EASE, the DLAE two-tower and the popularity lists need no trained tower: fit that one
        # method (and the cold-start list) instead of the whole bundle
        print(f"anime: no cached models; fitting {name} only", file=sys.stderr)
        return quick_recommender(settings, methods=(name,))
    print("anime: no cached models for these settings; training once (cached afterwards)", file=sys.stderr)
    bar = tqdm(total=len(registry.by_domain("anime")) + 1, desc="anime models", unit="stage")
    recommender = get_recommender(settings, progress=lambda i, n, label: (bar.set_description(label), bar.update(1)))
    bar.close()
    return apply_active_runs(recommender)


def _cmd_recommend(args) -> int:
    if (args.user_id is None) == (args.history_file is None):
        raise ValueError("give exactly one of --user-id N or --history-file FILE")
    history = read_history_file(args.history_file) if args.history_file else None
    recommender = cli_recommender(args)
    for row in recommend_rows(recommender, args.method, args.k, args.user_id, history):
        if args.format == "jsonl":
            print(json.dumps(row, ensure_ascii=False))
        else:
            print(f"user {row['user_id']} ({row['method']}; fallback: {row['fallback']}; "
                  f"skipped unknown: {row['skipped_unknown']}; {row['latency_ms']:.1f} ms)")
            for rank, item in enumerate(row["results"], 1):
                print(f"  {rank:2d}. {item['name']} [{item['genre']}] score={item['score']}")
    return 0


def _cmd_evaluate(args) -> int:
    from recsys.anime.experiments import run_evaluation

    run_evaluation(seeds=args.seeds, quick=args.quick, out_dir=args.out)
    return 0


def _cmd_bench(args) -> int:
    from recsys.anime.experiments import DOCS_DIR, bench

    import os

    table = bench(cli_recommender(args), n_users=args.users, block=args.block)
    load = os.getloadavg()[0]
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print(f"load average (1 min) at the end: {load:.2f} on {os.cpu_count()} CPUs")
    table["load_1min"] = round(load, 2)
    DOCS_DIR.mkdir(parents=True, exist_ok=True)
    table.to_csv(DOCS_DIR / ("latency.csv" if args.block == 1 else f"latency_block{args.block}.csv"), index=False)
    return 0


def register_cli(verbs) -> None:
    """Adds ``anime`` to the ``evaluate``, ``recommend`` and ``bench`` verbs."""
    evaluate = verbs["evaluate"].add_parser("anime", help="all anime methods on the paper's protocol, multi-seed")
    evaluate.add_argument("--seeds", type=positive_int, default=3)
    evaluate.add_argument("--quick", action="store_true", help="fewer epochs (a few minutes per seed)")
    evaluate.add_argument("--out", type=Path, default=None, help="output folder (default docs/results/anime)")
    evaluate.set_defaults(func=_cmd_evaluate)

    recommend = verbs["recommend"].add_parser("anime", help="anime recommendations as JSON lines")
    recommend.add_argument("--method", choices=method_choices(), default="weighted",
                           help="a registry name or its alias (see `python -m recsys models`)")
    recommend.add_argument("--k", type=k_value, default=10, help="how many recommendations (1..10000)")
    recommend.add_argument("--user-id", type=int, help="a dataset user_id")
    recommend.add_argument("--history-file", type=Path, help="CSV user_id,anime_id,rating; one output line per user")
    recommend.add_argument("--format", choices=["jsonl", "text"], default="jsonl")
    recommend.add_argument("--seed", type=non_negative_int, default=0, help="which split/model seed to serve")
    recommend.add_argument("--full", action="store_true", help="serve the paper's 35-epoch models")
    recommend.set_defaults(func=_cmd_recommend)

    bench_parser = verbs["bench"].add_parser("anime", help="p50/p99 latency per method")
    bench_parser.add_argument("--users", type=positive_int, default=200)
    bench_parser.add_argument("--block", type=positive_int, default=1,
                              help="users each method serves in a row before the next takes its turn: 1 (default) "
                                   "is the Anime page asking every method for one user; e.g. 25 is a server of "
                                   "one method, its tables warm in the CPU caches")
    bench_parser.add_argument("--seed", type=non_negative_int, default=0)
    bench_parser.add_argument("--full", action="store_true")
    bench_parser.set_defaults(func=_cmd_bench)
