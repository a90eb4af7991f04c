"""``python -m recsys bench training``: training throughput on 1 and N processes, as a ratio.

Each (model, processes) pair trains the model's quick recipe for ``--epochs`` epochs
through the run registry, exactly as ``python -m recsys train MODEL --nproc N`` does
(a separate registry under the cache, so the studio's list stays clean). Throughput is
examples per second of the training loop alone (``examples`` / ``train_seconds`` of the
epoch records, every rank's rows counted once; validation and start-up excluded), and the
ratio to one process in the same command is what to compare across machines. Wall time
(from launch to the end, including torchrun and every rank importing torch and building
its data) and the largest and summed peak resident memory of the processes are reported
too. The pairs alternate (1, N, 1, N, ...) over ``--repeats`` so a noisy neighbour hurts
both alike.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

import pandas as pd

from recsys.paths import PROJECT_ROOT, cache_dir

log = logging.getLogger(__name__)

OUT_DIR = PROJECT_ROOT / "docs" / "results" / "scale"


def measure(model: str, nproc: int, epochs: int, options: dict[str, Any], registry,
            threads: int | None = None) -> dict[str, Any]:
    """Train ``model`` once on ``nproc`` processes; its throughput, wall time and peak memory.

    ``threads`` sets torch's intra-op threads of a one-process run (which trains in this
    process); ranks always get one thread each (``OMP_NUM_THREADS=1``).
    """
    from recsys.train.loop import cpu_threads
    from recsys.train.recipes import get_recipe
    from recsys.train.worker import execute

    recipe = get_recipe(model)
    config = recipe.config(epochs=epochs, patience=None)
    run = registry.create(model, config, options, nproc=nproc)
    started = time.perf_counter()
    with cpu_threads(threads if nproc == 1 else None):
        summary = execute(run, registry, progress=True)
    wall = time.perf_counter() - started
    records = run.metrics()
    examples = sum(r.get("examples", 0) for r in records)
    seconds = sum(r.get("train_seconds", 0.0) for r in records)
    return {
        "model": model, "processes": nproc, "threads_per_process": 1 if nproc > 1 else threads or "recipe default",
        "epochs": len(records), "examples_per_epoch": records[0].get("examples"),
        "batch_size": config.batch_size, "examples_per_s": round(examples / seconds, 1) if seconds else float("nan"),
        "train_seconds_per_epoch": round(seconds / max(len(records), 1), 2), "wall_seconds": round(wall, 1),
        "peak_rss_mb": summary.get("peak_rss_mb"), "peak_rss_mb_total": summary.get("peak_rss_mb_total",
                                                                                      summary.get("peak_rss_mb")),
        "run_id": run.id,
    }


def bench(models: list[str], processes: list[int], epochs: int, repeats: int, options: dict[str, Any],
          runs_root: Path | None = None, threads: int | None = None) -> pd.DataFrame:
    """Every (model, processes) pair ``repeats`` times, alternating; the medians, with the ratio to the first."""
    from recsys.train.runs import RunRegistry

    registry = RunRegistry(runs_root or cache_dir("bench-runs"))
    rows = []
    for model in models:
        for repeat in range(repeats):
            for nproc in processes:
                row = measure(model, nproc, epochs, options, registry, threads)
                log.info("%s x%d (repeat %d): %s examples/s", model, nproc, repeat + 1, row["examples_per_s"])
                rows.append(row)
    raw = pd.DataFrame(rows)
    table = (raw.groupby(["model", "processes", "threads_per_process"], sort=False)
             .agg(examples_per_epoch=("examples_per_epoch", "first"), batch_size=("batch_size", "first"),
                  examples_per_s=("examples_per_s", "median"), train_seconds_per_epoch=("train_seconds_per_epoch",
                                                                                       "median"),
                  wall_seconds=("wall_seconds", "median"), peak_rss_mb=("peak_rss_mb", "max"),
                  peak_rss_mb_total=("peak_rss_mb_total", "max"), repeats=("run_id", "count"))
             .reset_index())
    base = table.groupby("model")["examples_per_s"].transform("first")
    table["speedup_vs_first"] = (table["examples_per_s"] / base).round(2)
    return table.round({"examples_per_s": 0, "train_seconds_per_epoch": 2, "wall_seconds": 1})


def run_cli(args) -> int:
    options = dict(args.option or [])
    table = bench(args.models, args.nproc, args.epochs, args.repeats, options, threads=args.threads)
    print(table.to_string(index=False))
    load = os.getloadavg()[0]
    print(f"load average (1 min) at the end: {load:.2f} on {os.cpu_count()} CPUs")
    if args.write:
        OUT_DIR.mkdir(parents=True, exist_ok=True)
        path = OUT_DIR / f"{Path(args.out).name}.csv"
        table.assign(load_1min=round(load, 2), cpus=os.cpu_count()).to_csv(path, index=False)
        print(f"wrote {path}")
    return 0


def register_cli(bench_verbs) -> None:
    """Adds ``training`` to the ``bench`` verb."""
    from recsys.cliargs import key_value, positive_int

    parser = bench_verbs.add_parser("training", help="training throughput on 1 and N processes (torchrun + DDP)")
    parser.add_argument("--models", nargs="+", default=["anime-two-tower-implicit", "sasrec"])
    parser.add_argument("--nproc", nargs="+", type=positive_int, default=[1, 2], help="process counts, first = baseline")
    parser.add_argument("--epochs", type=positive_int, default=2)
    parser.add_argument("--repeats", type=positive_int, default=1)
    parser.add_argument("--option", action="append", type=key_value, metavar="KEY=VALUE", help="recipe option")
    parser.add_argument("--threads", type=positive_int, help="torch threads of the 1-process runs (default: as "
                        "the recipe sets them; the anime recipes pin 1 unless RECSYS_ANIME_THREADS says otherwise)")
    parser.add_argument("--out", default="throughput", help="file name under docs/results/scale with --write")
    parser.add_argument("--write", action="store_true", help=f"write {OUT_DIR.relative_to(PROJECT_ROOT)}/OUT.csv")
    parser.set_defaults(func=run_cli)
