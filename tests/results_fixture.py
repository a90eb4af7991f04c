"""Tiny hand-made result files for the Results page and :mod:`recsys.reports` (not real results).

``write_results(root)`` writes a ``docs/results``-shaped tree:

* ``videos/``: Table 2 only (DCDT over 3 seeds, BM25 deterministic); Table 3 is absent.
* ``anime/``: unseen users only, EASE and K-means over 3 seeds.
* ``cl-epidtn/``: quick ml-100k files (HR@10 0.9999, so a test can see they are *not* shown) and a complete
  converged ml-100k run (CL-EPIDTN HR@10 0.10/0.12/0.14, SASRec 0.15/0.16/0.17), plus an incomplete converged
  anime run (2 of 10 jobs done).
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from recsys.eval.stats import comparison_table

CL_HITS = {"cl-epidtn": [0.10, 0.12, 0.14], "sasrec": [0.15, 0.16, 0.17]}


def write_videos(folder: Path) -> None:
    folder.mkdir(parents=True)
    # DCDT MRR@10 over seeds 0.70, 0.74, 0.78: mean 0.74, sample std 0.04; BM25 0.68 (deterministic)
    pd.DataFrame([
        {"model": "DCDT", "accuracy": 0.6, "accuracy_std": 0.05, "mrr@10": 0.74, "mrr@10_std": 0.04,
         "ndcg@10": 0.7, "ndcg@10_std": 0.01, "best_epoch_mean": 12.0, "final_train_loss_mean": 0.01234567,
         "seeds": 3, "train_seconds_mean": 5.0},
        {"model": "BM25", "accuracy": 0.5, "mrr@10": 0.68, "ndcg@10": 0.6},
    ]).to_csv(folder / "table2_test.csv", index=False)
    (folder / "info_test.json").write_text(json.dumps(
        {"split": "test", "n_queries": 4, "n_videos": 6, "seeds": 3, "embedder": "toy",
         "train": {"epochs": 50, "patience": 5, "monitor": "mrr@10"}}))


def write_anime(folder: Path) -> None:
    folder.mkdir(parents=True)
    seeds = {"anime-ease": [0.60, 0.61, 0.62], "anime-kmeans": [0.10, 0.11, 0.12]}
    rows = [{"protocol": "unseen", "method": m, "seed": s, "users": 5, "precision@10": v / 2, "map@10": v / 3,
             "ndcg@10": v} for m, vals in seeds.items() for s, v in enumerate(vals)]
    per_seed = pd.DataFrame(rows)
    per_seed.to_csv(folder / "evaluation_per_seed.csv", index=False)
    summary = per_seed.groupby(["protocol", "method"], sort=False)[["precision@10", "map@10", "ndcg@10"]].agg(["mean", "std"])
    summary.columns = [f"{m} {s}" for m, s in summary.columns]
    summary["seeds"] = 3
    summary.reset_index().to_csv(folder / "evaluation.csv", index=False)


def write_quick(folder: Path) -> None:
    rows = [{"dataset": "ml-100k", "model": m, "seed": s, "seconds": 1.0, "hit@10": 0.9999, "hit@50": 0.9999,
             "ndcg@10": 0.5, "epochs": 2, "best_epoch": 2.0, "recall@10": 0.3, "recall@50": 0.4}
            for m in CL_HITS for s in (0, 1)]
    pd.DataFrame(rows).to_csv(folder / "ml-100k_runs.csv", index=False)
    (folder / "ml-100k_meta.json").write_text(json.dumps({"quick": True, "command": "reproduce --quick"}))


def write_converged(folder: Path) -> None:
    folder.mkdir(parents=True)
    runs = []
    for model, hits in CL_HITS.items():
        for seed, hit in enumerate(hits):
            runs.append({"model": model, "seed": seed, "split": "loo", "hit@10": hit, "hit@50": 2 * hit,
                         "ndcg@10": hit / 2, "best_epoch": 7 + seed, "max_epochs": 30, "stopped_early": True,
                         "cpu_seconds": 100.0})
            runs.append({"model": model, "seed": seed, "split": "ratio", "recall@10": hit, "recall@50": 3 * hit,
                         "best_epoch": 8, "max_epochs": 30, "stopped_early": True, "cpu_seconds": 50.0})
    pd.DataFrame(runs).to_csv(folder / "ml-100k_runs.csv", index=False)
    curves = [{"model": m, "seed": s, "split": "loo", "epoch": e, "train_loss": 1.0 / e, "val_metric": 0.05 * e,
               "val_metric_name": "hit@10"} for m in CL_HITS for s in range(3) for e in (1, 2, 3)]
    pd.DataFrame(curves).to_csv(folder / "ml-100k_curves.csv", index=False)
    comparison_table(CL_HITS, "cl-epidtn", "hit@10").to_csv(folder / "ml-100k_ttests.csv", index=False)
    # a variant of ours at HR@10 0.18, 0.19, 0.20 against SASRec's 0.15, 0.16, 0.17: +0.03 ahead
    ours = {"ours: full-softmax": [0.18, 0.19, 0.20], "sasrec": CL_HITS["sasrec"]}
    pd.DataFrame([{"model": "ours: full-softmax", "seed": s, "split": "loo", "hit@10": h, "best_epoch": 6,
                   "max_epochs": 30, "stopped_early": True, "cpu_seconds": 90.0, "device": "cpu"}
                  for s, h in enumerate(ours["ours: full-softmax"])]).to_csv(folder / "ml-100k_ours.csv", index=False)
    comparison_table(ours, "sasrec", "hit@10").to_csv(folder / "ml-100k_ours_ttests.csv", index=False)
    sweeps = [{"param": "n_layers", "value": float(v), "seed": s, "hit@10": 0.1 * v + 0.01 * s, "recall@50": 0.3}
              for v in (1, 2, 3) for s in range(3)]
    pd.DataFrame(sweeps).to_csv(folder / "ml-100k_sweeps.csv", index=False)
    (folder / "ml-100k_meta.json").write_text(json.dumps({
        "profile": "converged", "command": "python -m recsys reproduce cl-epidtn --profile converged",
        "settings": {"seeds": 3, "epochs": 40}, "settings_text": "CONVERGED: 3 seeds, up to 40 epochs", "jobs_done": 12, "jobs_total": 12, "complete": True, "cpu_seconds_total": 7200.0,
        "git_commit": "abc", "date_utc": "2026-11-26T00:00:00+00:00", "deviations": ["embedding 64, not 128"]}))
    pd.DataFrame([{"model": "cl-epidtn", "seed": 0, "split": "loo", "hit@10": 0.2, "best_epoch": 5, "max_epochs": 30,
                   "stopped_early": True, "cpu_seconds": 10.0}]).to_csv(folder / "anime_runs.csv", index=False)
    (folder / "anime_meta.json").write_text(json.dumps({
        "profile": "converged", "command": "python -m recsys reproduce cl-epidtn --dataset anime", "jobs_done": 2,
        "jobs_total": 10, "complete": False}))
    # a run without sweeps or variants of ours (--no-sweeps) writes their files with a header and no rows
    (folder / "anime_sweeps.csv").write_text("param,value,seed,hit@10,ndcg@10,recall@50\n")
    (folder / "anime_ours.csv").write_text("model,seed,split,hit@10\n")


def write_results(root: Path) -> Path:
    write_videos(root / "videos")
    write_anime(root / "anime")
    (root / "cl-epidtn").mkdir(parents=True)
    write_quick(root / "cl-epidtn")
    write_converged(root / "cl-epidtn" / "converged")
    return root
