"""Ranking metrics over a ranked list and a set of relevant items.

Definitions (``ranked`` is the model's list, best first; ``R`` the relevant set;
``rel_i`` is 1 when the item at 1-based rank ``i`` is relevant):

* hit@k (HR@k; top-1 *accuracy* is hit@1): 1 if any of the top k is relevant.
* precision@k = |top-k ∩ R| / k
* recall@k = |top-k ∩ R| / |R|
* f1@k = harmonic mean of precision@k and recall@k (0 when both are 0).
* mrr@k = 1 / rank of the first relevant item within the top k, else 0.
* ndcg@k = DCG@k / IDCG@k with DCG@k = sum_i rel_i / log2(i + 1) and IDCG the DCG
  of a perfect ranking of min(|R|, k) relevant items.
* map@k (average precision at k) = sum_i precision@i * rel_i / min(|R|, k).

Every function returns a float for one ranked list; :func:`evaluate_rankings` averages
over many lists and is what the evaluators call.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable, Sequence

import numpy as np


def _hits(ranked: Sequence[Hashable], relevant: set, k: int) -> list[int]:
    return [1 if item in relevant else 0 for item in list(ranked)[:k]]


def hit_at_k(ranked, relevant, k):
    return float(any(_hits(ranked, set(relevant), k)))


def precision_at_k(ranked, relevant, k):
    return sum(_hits(ranked, set(relevant), k)) / k


def recall_at_k(ranked, relevant, k):
    relevant = set(relevant)
    return sum(_hits(ranked, relevant, k)) / len(relevant) if relevant else 0.0


def f1_at_k(ranked, relevant, k):
    p, r = precision_at_k(ranked, relevant, k), recall_at_k(ranked, relevant, k)
    return 2 * p * r / (p + r) if p + r else 0.0


def mrr_at_k(ranked, relevant, k):
    for rank, hit in enumerate(_hits(ranked, set(relevant), k), start=1):
        if hit:
            return 1.0 / rank
    return 0.0


def ndcg_at_k(ranked, relevant, k):
    relevant = set(relevant)
    dcg = sum(hit / math.log2(rank + 1) for rank, hit in enumerate(_hits(ranked, relevant, k), start=1))
    ideal = sum(1 / math.log2(rank + 1) for rank in range(1, min(len(relevant), k) + 1))
    return dcg / ideal if ideal else 0.0


def map_at_k(ranked, relevant, k):
    relevant = set(relevant)
    hits, total = 0, 0.0
    for rank, hit in enumerate(_hits(ranked, relevant, k), start=1):
        if hit:
            hits += 1
            total += hits / rank
    denominator = min(len(relevant), k)
    return total / denominator if denominator else 0.0


METRICS = {
    "hit": hit_at_k,
    "precision": precision_at_k,
    "recall": recall_at_k,
    "f1": f1_at_k,
    "mrr": mrr_at_k,
    "ndcg": ndcg_at_k,
    "map": map_at_k,
}


def parse_metric(name: str) -> tuple[str, int]:
    """``"ndcg@10"`` -> ``("ndcg", 10)``; ``"accuracy"`` is an alias of ``hit@1``."""
    if name == "accuracy":
        return "hit", 1
    base, _, k = name.partition("@")
    if base not in METRICS or not k.isdigit():
        raise ValueError(f"unknown metric {name!r}; use one of {sorted(METRICS)} as NAME@K, or 'accuracy'")
    return base, int(k)


def evaluate_rankings(
    rankings: Iterable[Sequence[Hashable]], relevants: Iterable[Iterable[Hashable]], metrics: Sequence[str]
) -> dict[str, float]:
    """Mean of each metric over paired (ranked list, relevant set); rows with no relevant item are skipped."""
    parsed = [(name, *parse_metric(name)) for name in metrics]
    sums = {name: 0.0 for name in metrics}
    count = 0
    for ranked, relevant in zip(rankings, relevants, strict=True):
        relevant = set(relevant)
        if not relevant:
            continue
        count += 1
        for name, base, k in parsed:
            sums[name] += METRICS[base](ranked, relevant, k)
    return {name: (total / count if count else float("nan")) for name, total in sums.items()}


def per_row(rankings, relevants, metric: str) -> np.ndarray:
    """One value per row, for standard deviations and significance tests."""
    base, k = parse_metric(metric)
    return np.array([METRICS[base](r, set(rel), k) for r, rel in zip(rankings, relevants, strict=True) if rel])


def topk_from_scores(scores: np.ndarray, k: int, exclude: Sequence[Iterable[int]] | None = None) -> np.ndarray:
    """Ids of the k best columns per row (the ids of :func:`recsys.retrieval.topk.top_k`, the one implementation)."""
    from recsys.retrieval.topk import top_k

    return top_k(scores, k, exclude)[1]
