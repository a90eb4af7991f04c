"""EASE: Embarrassingly Shallow Autoencoders (Steck, WWW 2019).

An item-item linear model ``s_u = x_u B`` with ``diag(B) = 0`` fitted by ridge
regression in closed form::

    P = (X^T X + lambda I)^-1
    B = I - P diag(1 / diag(P))        (so B_ij = -P_ij / P_jj, B_jj = 0)

The zero diagonal stops the trivial solution ``B = I``. ``X`` is the binary watched
matrix (``-1`` rows count: watching is the signal). It is a strong top-N baseline that
often beats deep models on implicit data.

Cost: ``P`` is dense ``n x n``; 7,390 items is ~ 220 MB in float32 and one Cholesky
inverse. On the full Kaggle data (11 k items) the model keeps the ``max_items`` most
popular items among those with at least ``min_count`` interactions; the others get a
score of ``-inf`` (never recommended by EASE) - documented in the evaluation output.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch

from recsys.models.base import Batch, Recommender

log = logging.getLogger(__name__)


@dataclass
class EASEConfig:
    l2: float = 500.0  # lambda; Steck used 200-1000 on datasets of this size
    min_count: int = 1  # items with fewer training interactions are left out
    max_items: int = 10_000  # cap on the dense matrix (the most popular items are kept)


def ease_weights(gram: np.ndarray, l2: float) -> np.ndarray:
    """``B = I - P diag(1/diag(P))`` with ``P = (G + l2 I)^-1``; ``gram`` is ``X^T X``."""
    G = np.array(gram, dtype=np.float64 if gram.dtype == np.float64 else np.float32, copy=True)
    G[np.diag_indices_from(G)] += l2
    P = torch.cholesky_inverse(torch.linalg.cholesky(torch.from_numpy(G))).numpy()
    B = -P / np.diag(P)[None, :]
    B[np.diag_indices_from(B)] = 0.0
    return B


class EASE(Recommender):
    display_name = "EASE"

    def __init__(self, config: EASEConfig | None = None):
        self.config = config or EASEConfig()
        self.items: np.ndarray | None = None  # item indices the model covers
        self.B: np.ndarray | None = None
        self.n_items = 0
        self.train: sp.csr_matrix | None = None

    def fit(self, interactions: sp.csr_matrix) -> "EASE":
        X = sp.csr_matrix(interactions, dtype=np.float32)
        X.data[:] = 1.0
        self.train, self.n_items = X, X.shape[1]
        counts = np.asarray(X.sum(axis=0)).ravel()
        eligible = np.flatnonzero(counts >= self.config.min_count)
        if len(eligible) > self.config.max_items:
            eligible = eligible[np.argsort(-counts[eligible], kind="stable")[: self.config.max_items]]
            log.info("EASE: capped to the %d most popular items", self.config.max_items)
        self.items = np.sort(eligible)
        Xs = X[:, self.items]
        gram = (Xs.T @ Xs).toarray().astype(np.float32)
        # C order matters: scipy's sparse @ dense is ~50x slower on a Fortran-ordered matrix
        self.B = np.ascontiguousarray(ease_weights(gram, self.config.l2), dtype=np.float32)
        return self

    def score_histories(self, histories: sp.csr_matrix) -> np.ndarray:
        if not self.B.flags["C_CONTIGUOUS"]:  # bundles pickled before the fit made it C-ordered
            self.B = np.ascontiguousarray(self.B)
        H = sp.csr_matrix(histories, dtype=np.float32)[:, self.items]
        scores = np.full((histories.shape[0], self.n_items), -np.inf, dtype=np.float32)
        scores[:, self.items] = np.asarray(H @ self.B)
        return scores

    def full_sort_predict(self, batch: Batch) -> torch.Tensor:
        return torch.as_tensor(self.score_histories(self.train[batch["user"].cpu().numpy()]))
