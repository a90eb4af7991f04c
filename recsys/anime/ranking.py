"""Top-k for serving: the shared :func:`recsys.retrieval.topk.top_k` list, computed on a few candidates.

Why a second entry point: serving one user used to copy the whole score row to float64, mask the
watched items and select over all 7,390 anime; most of a cheap method's latency was that. Here
each row keeps only the columns that can still reach its top k, and the answer is identical
(``tests/test_anime_pipeline.py`` compares them with ties, ``-inf`` and exclusions).
"""

from __future__ import annotations

import numpy as np

from recsys.retrieval.topk import top_k


def candidate_top_k(scores: np.ndarray, k: int, watched: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """:func:`top_k` of each row with its ``watched`` columns excluded, looking only at candidates.

    A row's candidates are every column scoring at least its ``(k + len(watched))``-th best
    score: at most ``len(watched)`` of them are excluded, so the ``k`` best remaining columns
    are among them, and every column tied with the cut is a candidate, so ties are broken
    exactly as :func:`top_k` breaks them over the whole row (lower column first). The result
    equals ``top_k(scores, k, watched)`` (tested); the cost is one ``np.partition`` per row and
    a sort of the few candidates, instead of copying, masking and selecting in every full row.
    """
    scores = np.atleast_2d(scores)
    n_rows, n = scores.shape
    width = min(int(k), n)
    out_scores = np.full((n_rows, width), -np.inf)
    out_ids = np.full((n_rows, width), -1, np.int64)
    for r in range(n_rows):
        row, seen = scores[r], np.sort(np.asarray(watched[r], np.int64))
        fetch = int(k) + len(seen)
        if np.isnan(row).any():  # NaN scores: the whole row through top_k, exactly as it treats them
            top, ids = top_k(row[None, :], k, [seen])
            out_scores[r, : top.shape[1]], out_ids[r, : ids.shape[1]] = top[0], ids[0]
            continue
        candidates = np.arange(n) if fetch >= n else np.flatnonzero(row >= np.partition(row, n - fetch)[n - fetch])
        if len(seen):  # drop the watched candidates: a binary search in the sorted history
            at = np.minimum(np.searchsorted(seen, candidates), len(seen) - 1)
            candidates = candidates[seen[at] != candidates]
        values = row[candidates].astype(np.float64)
        best = np.lexsort((candidates, -values))[:width]  # score descending, then the lower column: top_k's order
        top = values[best]
        out_scores[r, : len(best)] = top
        out_ids[r, : len(best)] = np.where(np.isfinite(top), candidates[best], -1)
    return out_scores, out_ids
