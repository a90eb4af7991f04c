"""Top-k with exclusions: the one implementation every evaluator and server uses.

``argpartition`` finds the k best columns per row in O(n), then only those k are sorted,
so a full catalogue costs one pass. Excluded columns (already-watched items, the query's
own training pairs) are masked to ``-inf`` before the selection; a row with fewer than k
finite scores gets id ``-1`` in the missing slots, so callers never recommend an
excluded or padding item by accident.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np


def top_k(scores: np.ndarray, k: int, exclude: Sequence[Iterable[int]] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(top_scores, ids)``, both ``[B, min(k, n)]``, best first; ``ids`` is -1 where the score is not finite.

    ``exclude[row]`` lists column indices masked out of that row. Ties keep the lower
    column first (stable sort), so results are deterministic.
    """
    if isinstance(k, bool) or int(k) != k or k < 1:
        raise ValueError(f"k must be a positive integer, got {k!r}")
    scores = np.array(scores, dtype=np.float64, copy=True, ndmin=2)
    if exclude is not None:
        if len(exclude) != scores.shape[0]:
            raise ValueError(f"{len(exclude)} exclusion lists for {scores.shape[0]} rows")
        lists = [np.asarray(list(cols), dtype=np.int64) for cols in exclude]
        rows = np.repeat(np.arange(len(lists)), [len(c) for c in lists])
        if len(rows):
            scores[rows, np.concatenate(lists)] = -np.inf
    k = min(int(k), scores.shape[1])
    if k == 0:
        return np.zeros((scores.shape[0], 0)), np.zeros((scores.shape[0], 0), dtype=np.int64)
    # The k-th best score per row is the threshold: everything above it is in, and among the
    # scores equal to it the lowest columns fill the remaining places, so ties at the cut are
    # broken the same way as ties inside the list (argpartition alone picks tied columns arbitrarily).
    threshold = -np.partition(-scores, k - 1, axis=1)[:, k - 1:k]
    above = scores > threshold
    at = scores == threshold
    room = k - above.sum(axis=1, keepdims=True)
    chosen = above | (at & (np.cumsum(at, axis=1) <= room))
    part = np.nonzero(chosen)[1].reshape(scores.shape[0], k)  # ascending columns within each row
    order = np.argsort(-np.take_along_axis(scores, part, axis=1), axis=1, kind="stable")
    ids = np.take_along_axis(part, order, axis=1)
    top = np.take_along_axis(scores, ids, axis=1)
    return top, np.where(np.isfinite(top), ids, -1)
