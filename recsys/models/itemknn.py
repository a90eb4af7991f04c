"""Item-based k-nearest-neighbours over the implicit user-item matrix.

Sarwar et al., "Item-based collaborative filtering recommendation algorithms" (WWW 2001),
in the top-N form of Deshpande & Karypis, "Item-based top-N recommendation algorithms"
(TOIS 2004): the similarity of two anime is the cosine of their columns of the binary
watched matrix ``X`` (users x items); each item keeps its ``k`` most similar neighbours;
a user's score for item ``j`` is the sum of the similarities between ``j`` and the items
they watched, ``s = x_u S``.

Why blocked: ``X^T X`` on the full dataset (11 k items) is ~ 120 M entries, so the
similarities are computed one block of columns at a time, pruned to the top ``k`` and
stored sparse; memory stays at ``n_items * block`` floats. The computation lives in
:mod:`recsys.retrieval.cosine` (torch-free, computed once per distinct matrix).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch

from recsys.anime.prep import batch_histories, binary
from recsys.models.base import Batch, FittedRecommender
from recsys.retrieval.cosine import BLOCK, SHRINK, cosine_topk


@dataclass
class ItemKNNConfig:
    neighbours: int = 100
    shrink: float = SHRINK  # cosine shrinkage (Koren 2008): sim * n / (n + shrink); 0 = plain cosine
    block: int = BLOCK


class ItemKNN(FittedRecommender):
    """``scores = x_u S`` with ``S`` the pruned item-item cosine matrix.

    Batch keys: ``user`` (rows of ``data.interactions``) or ``history`` (a ``[B, n_items]``
    CSR, for users outside the data). State: ``S`` as CSR arrays (``data``, ``indices``,
    ``indptr``): ``n_items * neighbours`` entries at most.
    """

    display_name = "Item-kNN (cosine)"

    def __init__(self, config: ItemKNNConfig | None, data):
        super().__init__(config or ItemKNNConfig(), data)
        self.n_items = self.n_columns = int(data.n_items)
        self.train: sp.csr_matrix | None = getattr(data, "interactions", None)
        self.similarity: sp.csr_matrix | None = None

    def fit(self, data) -> "ItemKNN":
        self.train = binary(data.interactions)
        self.similarity = cosine_topk(self.train, self.config.neighbours, self.config.shrink, self.config.block)
        return self

    def score_rows(self, histories: sp.csr_matrix) -> np.ndarray:
        """``x_u S`` for each row of a (users x items) matrix (any stored value = watched)."""
        return np.asarray((binary(histories) @ self.similarity).todense())

    def full_sort_predict(self, batch: Batch) -> torch.Tensor:
        return torch.as_tensor(self.score_rows(batch_histories(batch, self.train)))

    def state(self) -> dict[str, np.ndarray]:
        S = self.similarity
        return {"data": S.data.astype(np.float32), "indices": S.indices.astype(np.int64),
                "indptr": S.indptr.astype(np.int64)}

    def load_state(self, arrays) -> None:
        n = self.n_items
        indptr, indices = np.asarray(arrays["indptr"], np.int64), np.asarray(arrays["indices"], np.int64)
        data = np.asarray(arrays["data"], np.float32)
        if len(indptr) != n + 1 or indptr[-1] != len(indices) or len(data) != len(indices) \
                or (len(indices) and (indices.min() < 0 or indices.max() >= n)):
            raise ValueError(f"item-kNN state does not fit {n} items")
        self.similarity = sp.csr_matrix((data, indices, indptr), shape=(n, n))
