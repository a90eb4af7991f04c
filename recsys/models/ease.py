"""EASE: Embarrassingly Shallow Autoencoders (Steck, WWW 2019).

An item-item linear model ``s_u = x_u B`` with ``diag(B) = 0`` fitted by ridge
regression in closed form::

    P = (X^T X + lambda I)^-1
    B = I - P diag(1 / diag(P))        (so B_ij = -P_ij / P_jj, B_jj = 0)

The zero diagonal stops the trivial solution ``B = I``. ``X`` is the binary watched
matrix (``-1`` rows count: watching is the signal). It is a strong top-N baseline that
often beats deep models on implicit data.

Cost: ``P`` is dense ``n x n``; 7,390 items is ~ 220 MB in float32 and one Cholesky
inverse (a minute or more on a 2-core CPU, too slow to refit when a cached bundle
loads). What serving needs is stored compactly: ``P`` is symmetric, so only its upper triangle,
and as float16 after scaling it to ``C = D^-1/2 P D^-1/2`` (``D = diag(P)``, kept in float32):
``C`` has a unit diagonal and off-diagonal entries in [-1, 1], where float16 keeps about three
significant digits, while ``P``'s own entries (1e-6..1e-3) would fall into float16's subnormal
range. ``B_ij = -P_ij / P_jj = -C_ij sqrt(P_ii / P_jj)``. 2 bytes per entry instead of 4 (55 MB
instead of 109 MB for the 7,390 anime of the sample); the fit rounds through the same float16
values, so a loaded model scores exactly as the fitted one. On the full Kaggle data (11 k items) the model keeps the ``max_items`` most
popular items among those with at least ``min_count`` interactions; the others get a
score of ``-inf`` (never recommended by EASE) - documented in the evaluation output.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch

from recsys.anime.prep import batch_histories, binary
from recsys.models.base import Batch, FittedRecommender

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


def upper_triangle(P: np.ndarray) -> np.ndarray:
    """Rows ``P[i, i:]`` concatenated: the ``n (n + 1) / 2`` entries a symmetric matrix needs."""
    return np.concatenate([P[i, i:] for i in range(len(P))]) if len(P) else np.zeros(0, P.dtype)


def compact_upper(P: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(diag(P) float32, upper triangle of C = D^-1/2 P D^-1/2 as float16)``: what the state stores."""
    d = np.diag(P).astype(np.float64)
    if np.any(d <= 0):
        raise ValueError("P must be positive definite (a positive diagonal)")
    scale = 1.0 / np.sqrt(d)
    C = (P * scale[:, None]) * scale[None, :]
    return d.astype(np.float32), upper_triangle(C).astype(np.float16)


def weights_from_upper(upper: np.ndarray, n: int, diagonal: np.ndarray | None = None) -> np.ndarray:
    """``B = -P / diag(P)`` (columns), ``diag(B) = 0``, with ``P`` the symmetric matrix of ``upper``.

    With ``diagonal`` given, ``upper`` is the scaled ``C`` of :func:`compact_upper` and
    ``B_ij = -C_ij sqrt(d_i / d_j)``. Built in place in one ``n x n`` float32 array: a
    row-by-row copy, no index arrays.
    """
    upper = np.asarray(upper)
    if upper.shape != (n * (n + 1) // 2,):
        raise ValueError(f"EASE state holds {upper.shape} values, {n * (n + 1) // 2} expected for {n} items")
    P = np.empty((n, n), np.float32)
    start = 0
    for i in range(n):
        row = upper[start: start + n - i]
        P[i, i:] = row
        P[i:, i] = row
        start += n - i
    if diagonal is None:
        diagonal = np.diag(P).copy()
        P /= -diagonal[None, :]
    else:
        diagonal = np.asarray(diagonal, np.float64)
        if diagonal.shape != (n,) or np.any(~(diagonal > 0)):
            raise ValueError(f"EASE state's diagonal must hold {n} positive values")
        root = np.sqrt(diagonal)
        P *= (root[:, None] / -root[None, :]).astype(np.float32)
    P[np.diag_indices_from(P)] = 0.0
    return P


class EASE(FittedRecommender):
    """``scores = x_u B`` over the covered items; uncovered items score ``-inf``.

    ``Model(config, data)``, ``fit(data)`` on ``data.interactions`` (users x items, any
    non-zero = watched). Batch keys: ``user`` (rows of ``data.interactions``) or
    ``history`` (a ``[B, n_items]`` CSR of watched items, for users outside the data).
    State: ``items`` (covered item indices), ``P_diag`` (float32) and ``C_upper``, the upper
    triangle of the scaled ``P`` in float16 (see the module docstring), the only large array
    (``n_covered^2`` bytes: ~55 MB for the sample, instead of ~218 MB for ``B`` in float32).
    """

    display_name = "EASE"

    def __init__(self, config: EASEConfig | None, data):
        super().__init__(config or EASEConfig(), data)
        self.n_items = self.n_columns = int(data.n_items)
        self.train: sp.csr_matrix | None = getattr(data, "interactions", None)
        self.items: np.ndarray | None = None  # item indices the model covers
        self.B: np.ndarray | None = None
        self._upper: np.ndarray | None = None
        self._diag: np.ndarray | None = None

    def fit(self, data) -> "EASE":
        X = sp.csr_matrix(data.interactions, dtype=np.float32)
        X.data[:] = 1.0
        self.train = X
        counts = np.asarray(X.sum(axis=0)).ravel()
        eligible = np.flatnonzero(counts >= self.config.min_count)
        if len(eligible) > self.config.max_items:
            eligible = eligible[np.argsort(-counts[eligible], kind="stable")[: self.config.max_items]]
            log.info("EASE: capped to the %d most popular items", self.config.max_items)
        self.items = np.sort(eligible)
        Xs = X[:, self.items]
        G = (Xs.T @ Xs).toarray().astype(np.float32)
        G[np.diag_indices_from(G)] += self.config.l2
        P = torch.cholesky_inverse(torch.linalg.cholesky(torch.from_numpy(G))).numpy()
        self._set_upper(*compact_upper(P))
        return self

    def _set_upper(self, diagonal: np.ndarray, upper: np.ndarray) -> None:
        self._diag, self._upper = np.asarray(diagonal, np.float32), np.asarray(upper, np.float16)
        # C order matters: scipy's sparse @ dense is ~50x slower on a Fortran-ordered matrix
        self.B = np.ascontiguousarray(weights_from_upper(self._upper, len(self.items), self._diag))

    def score_rows(self, histories: sp.csr_matrix) -> np.ndarray:
        """``x_u B`` for each row of a (users x items) matrix (any stored value = watched)."""
        H = binary(histories)[:, self.items]
        scores = np.full((histories.shape[0], self.n_items), -np.inf, dtype=np.float32)
        scores[:, self.items] = np.asarray(H @ self.B)
        return scores

    def full_sort_predict(self, batch: Batch) -> torch.Tensor:
        return torch.as_tensor(self.score_rows(batch_histories(batch, self.train)))

    def state(self) -> dict[str, np.ndarray]:
        return {"items": np.asarray(self.items, np.int64), "P_diag": self._diag, "C_upper": self._upper}

    def load_state(self, arrays) -> None:
        items = np.asarray(arrays["items"], np.int64)
        if len(items) and (items.min() < 0 or items.max() >= self.n_items or np.any(np.diff(items) <= 0)):
            raise ValueError(f"EASE state covers items outside 0..{self.n_items - 1} or unsorted")
        self.items = items
        self._set_upper(arrays["P_diag"], arrays["C_upper"])
