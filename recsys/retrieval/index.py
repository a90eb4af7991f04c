"""Inner-product retrieval over pre-computed item vectors with faiss.

``IndexFlatIP`` (exact, the default) scans every item vector: for the anime catalogue
(~11 k items x 32 dims) that is ~ 0.1 ms per query, so exact search is the right
default. Two approximate indexes are there for catalogues where a scan is too slow
(``kind="auto"`` picks one from :data:`ANN_FROM` items on; their recall and latency on a
1 M-item catalogue are in ``docs/scale.md``, from ``python -m recsys bench ann``):

* ``ivf``: ``IndexIVFFlat`` with inner product; k-means puts the items in ``nlist``
  lists and a query scans the ``nprobe`` lists whose centroids score highest.
* ``hnsw`` (Malkov & Yashunin, TPAMI 2018): a proximity graph searched greedily, with
  faiss' inner-product metric. The MIPS->L2 reduction (Bachrach et al., RecSys 2014: one
  extra coordinate ``sqrt(M^2 - |x|^2)`` gives every item the norm ``M``) served it here
  before and was measured against it: recall@10 0.78 vs 0.99 at ``efSearch`` 64 on 200 k
  synthetic items whose norms vary (the extra coordinate dominates the distances).

``search`` takes an ``exclude`` list per query (the items a user has watched) and
over-fetches so the caller still gets ``k`` results after exclusion.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np


#: catalogue size from which ``kind="auto"`` serves an approximate index instead of the exact scan
ANN_FROM = 100_000
#: what ``kind="auto"`` picks from :data:`ANN_FROM` items on (docs/scale.md: the best recall per millisecond)
ANN_KIND = "ivf"


def default_nlist(n_items: int) -> int:
    """IVF lists: about ``4 sqrt(n)`` (faiss' guidance), at most ``n / 39`` so k-means has 39 points per list."""
    return int(max(1, min(4 * round(np.sqrt(n_items)), n_items // 39)))


class ItemIndex:
    """faiss index of item vectors; ``search(queries, k, exclude)`` -> (scores, item indices)."""

    def __init__(self, item_vectors: np.ndarray, kind: str = "flat", hnsw_m: int = 32, ef_search: int = 128,
                 metric: str = "ip", nlist: int | None = None, nprobe: int = 32, seed: int = 0):
        """``kind``: ``flat`` (exact), ``ivf``, ``hnsw``, or ``auto`` (flat below :data:`ANN_FROM`
        items, else :data:`ANN_KIND`). ``metric``: ``"ip"`` (inner product, two towers) or
        ``"l2"`` (nearest by Euclidean distance: the anime paper's weighted-average
        retrieval, Sec. 5.2.1; flat only)."""
        import faiss

        vectors = np.ascontiguousarray(item_vectors, dtype=np.float32)
        if vectors.ndim != 2 or len(vectors) == 0:
            raise ValueError(f"item_vectors must be a non-empty 2-D array, got shape {vectors.shape}")
        if kind == "auto":
            kind = "flat" if len(vectors) < ANN_FROM or metric == "l2" else ANN_KIND
        self.kind, self.n_items, self.dim = kind, vectors.shape[0], vectors.shape[1]
        self.vectors, self.metric = vectors, metric
        if metric not in ("ip", "l2") or (metric == "l2" and kind != "flat"):
            raise ValueError(f"unsupported metric {metric!r} for kind {kind!r}; use 'ip', or 'l2' with 'flat'")
        if kind == "flat" and metric == "l2":
            self.index = faiss.IndexFlatL2(self.dim)
            self.index.add(vectors)
        elif kind == "flat":
            self.index = faiss.IndexFlatIP(self.dim)
            self.index.add(vectors)
        elif kind == "hnsw":
            self.index = faiss.IndexHNSWFlat(self.dim, hnsw_m, faiss.METRIC_INNER_PRODUCT)
            self.index.hnsw.efSearch = ef_search
            self.index.add(vectors)
        elif kind == "ivf":
            self.nlist = nlist or default_nlist(self.n_items)
            quantizer = faiss.IndexFlatIP(self.dim)
            self.index = faiss.IndexIVFFlat(quantizer, self.dim, self.nlist, faiss.METRIC_INNER_PRODUCT)
            self.index.cp.seed = seed
            self.index.train(vectors)
            self.index.add(vectors)
            self.index.nprobe = min(nprobe, self.nlist)
            self._quantizer = quantizer  # the IVF index does not own it: keep it alive
        else:
            raise ValueError(f"unknown index kind {kind!r}; use 'flat', 'ivf', 'hnsw' or 'auto'")

    def search(self, queries: np.ndarray, k: int, exclude: Sequence[Iterable[int]] | None = None):
        """Top-``k`` items per query, best first, skipping ``exclude[row]``; scores are inner
        products (``metric="ip"``) or negative squared distances (``"l2"``)."""
        queries = np.ascontiguousarray(np.atleast_2d(queries), dtype=np.float32)
        excluded = [set(map(int, e)) for e in exclude] if exclude is not None else [set()] * len(queries)
        fetch = min(self.n_items, k + max((len(e) for e in excluded), default=0))
        _, ids = self.index.search(queries, fetch)
        out_ids = np.full((len(queries), k), -1, dtype=np.int64)
        out_scores = np.full((len(queries), k), -np.inf, dtype=np.float32)
        for row in range(len(queries)):  # per query, not per rating: k + |watched| candidates
            kept = [i for i in ids[row] if i >= 0 and int(i) not in excluded[row]][:k]
            out_ids[row, : len(kept)] = kept
            if kept:
                if self.metric == "l2":
                    out_scores[row, : len(kept)] = -((self.vectors[kept] - queries[row]) ** 2).sum(1)
                else:
                    out_scores[row, : len(kept)] = self.vectors[kept] @ queries[row]
        return out_scores, out_ids

