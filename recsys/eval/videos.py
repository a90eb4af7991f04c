"""Evaluation protocol of the linear-algebra video recommender (the DCDT paper's Tables 2 and 3).

Protocol: every query of the evaluated split is scored against the whole catalogue
(full ranking, nothing sampled); the ranked list is compared with the query's set of
relevant videos. Metrics (definitions in :mod:`recsys.eval.metrics`):

* Accuracy     = hit@1: the top video is relevant;
* Precision@5  = relevant among the top 5, divided by 5;
* Recall@5     = relevant among the top 5, divided by the number of relevant videos;
* F1@5         = harmonic mean of Precision@5 and Recall@5 (per query, then averaged);
* MRR@10       = 1 / rank of the first relevant video in the top 10 (0 if none);
* NDCG@10      = DCG@10 / ideal DCG@10 with binary gains.

Trained models are run with several seeds; tables show mean ± standard deviation
over seeds (sample std, ``ddof=1``; :func:`recsys.eval.tables.aggregate`). Deterministic
baselines have one value. Top-k is :func:`recsys.retrieval.topk.top_k`; the Markdown
cells are :func:`recsys.eval.tables.markdown_table`'s.
"""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from recsys.eval.metrics import evaluate_rankings
from recsys.eval.tables import markdown_table
from recsys.retrieval.topk import top_k

__all__ = [
    "METRICS",
    "METRIC_LABELS",
    "METRIC_DEFINITIONS",
    "PAPER_TABLE2",
    "PAPER_TABLE3",
    "PAPER_NOTE",
    "PAPER_LATENCY_MS",
    "evaluate_scores",
    "format_table",
    "write_csv",
]

METRICS = ["accuracy", "precision@5", "recall@5", "f1@5", "mrr@10", "ndcg@10"]
METRIC_LABELS = {
    "accuracy": "Accuracy", "precision@5": "P@5", "recall@5": "R@5",
    "f1@5": "F1@5", "mrr@10": "MRR@10", "ndcg@10": "NDCG@10",
}
METRIC_DEFINITIONS = {
    "accuracy": "Top-1 hit: the first recommended video is relevant.",
    "precision@5": "Share of the top 5 videos that are relevant.",
    "recall@5": "Share of the relevant videos that appear in the top 5.",
    "f1@5": "Harmonic mean of precision@5 and recall@5 (per query, then averaged).",
    "mrr@10": "1 / rank of the first relevant video within the top 10 (0 if none).",
    "ndcg@10": "Discounted cumulative gain of the top 10 (gain 1/log2(rank+1) per relevant video), "
               "divided by that of a perfect ranking.",
}

#: The DCDT paper's own figures (Table 2: DCDT vs baselines; Table 3: ablation) on its
#: data set. We could not consult the paper's tables while writing this, so nothing is
#: transcribed: the tables print PAPER_NOTE instead of inventing numbers. Fill these in
#: as {model: {metric: value}} with the paper at hand.
PAPER_TABLE2: dict[str, dict[str, float]] | None = None
PAPER_TABLE3: dict[str, dict[str, float]] | None = None
PAPER_NOTE = "paper figures not transcribed"
#: the paper's serving claim: a recommendation in under 10 ms
PAPER_LATENCY_MS = 10.0


def evaluate_scores(scores: np.ndarray, relevant: Sequence[Sequence[int]], k: int = 10,
                    metrics: Sequence[str] = METRICS) -> dict[str, float]:
    """Mean metrics of a score matrix ``[n_queries, n_videos]`` against relevant column indices."""
    scores = np.asarray(scores, dtype=np.float64)
    if scores.shape[0] != len(relevant):
        raise ValueError(f"{scores.shape[0]} score rows for {len(relevant)} queries")
    _, ranked = top_k(scores, k)
    return evaluate_rankings([[i for i in row if i >= 0] for row in ranked], [set(r) for r in relevant], list(metrics))


def format_table(title: str, rows: Mapping[str, Mapping[str, object]], paper: Mapping | None = None,
                 metrics: Sequence[str] = METRICS) -> str:
    """A Markdown table, one row per model; the paper's rows (or :data:`PAPER_NOTE`) follow."""
    header = ["Model", *(METRIC_LABELS.get(m, m) for m in metrics)]
    body = [[model, *(values.get(m) for m in metrics)] for model, values in rows.items()]
    body += [[f"{model} (paper)", *(values.get(m) for m in metrics)] for model, values in (paper or {}).items()]
    lines = [f"### {title}", "", markdown_table(header, body)]
    lines.append("")
    lines.append("Paper's figures: " + ("shown as '(paper)' rows, on the paper's own data" if paper else PAPER_NOTE) + ".")
    return "\n".join(lines)


def write_csv(path: Path, rows: Mapping[str, Mapping[str, object]], extra: Mapping[str, Mapping[str, object]] | None = None,
              metrics: Sequence[str] = METRICS) -> Path:
    """One row per model: mean and std per metric (std empty for deterministic models or one seed), plus ``extra`` columns."""
    path.parent.mkdir(parents=True, exist_ok=True)
    extra = extra or {}
    extra_cols = sorted({key for values in extra.values() for key in values})
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["model", *[c for m in metrics for c in (m, f"{m}_std")], *extra_cols])
        for model, values in rows.items():
            cells = []
            for m in metrics:
                value = values.get(m)
                if isinstance(value, tuple):
                    cells += [f"{value[0]:.6f}", "" if np.isnan(value[1]) else f"{value[1]:.6f}"]
                elif value is None:
                    cells += ["", ""]
                else:
                    cells += [f"{value:.6f}", ""]
            writer.writerow([model, *cells, *[extra.get(model, {}).get(c, "") for c in extra_cols]])
    return path
