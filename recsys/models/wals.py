"""WALS: weighted alternating least squares for implicit feedback.

Paper: Hu, Koren & Volinsky, "Collaborative Filtering for Implicit Feedback Datasets",
ICDM 2008 (the confidence-weighted objective); "WALS" is the name TensorFlow's
``WALSMatrixFactorization`` gave the same solver, which is how the CL-EPIDTN paper cites it.

Fitted in closed form with ``implicit.cpu.als.AlternatingLeastSquares`` on the training
sequences (order ignored: a user is a bag of items). The user factor is the one learned
from the training part; at test time the validation item is not folded in.

``fit(data)`` takes the :class:`~recsys.data.sequential.SequentialDataset` the model was
built on, as every fitted sequential model does (most-popular too): training code passes
a copy whose ``sequences`` are the split's training part, so the same object sizes the
tables and is what the model learns from, and nothing held out can leak in.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy.sparse import csr_matrix

from recsys.data.sequential import SequentialDataset
from recsys.models.base import FittedRecommender, TwoTowerMixin


@dataclass
class WALSConfig:
    factors: int = 64
    regularization: float = 0.05
    alpha: float = 10.0  # confidence c = 1 + alpha for an observed interaction
    iterations: int = 15
    seed: int = 0
    num_threads: int = 1


class WALS(TwoTowerMixin, FittedRecommender):
    display_name = "WALS"

    def __init__(self, config: WALSConfig | None, dataset: SequentialDataset):
        super().__init__(config or WALSConfig(), dataset)
        self.n_users, self.n_items = dataset.n_users, dataset.n_items
        self.n_columns, self.padding_index = dataset.n_items + 1, 0  # column 0: the padding item
        self.user_factors = torch.zeros(self.n_users + 1, self.config.factors)
        self.item_factors = torch.zeros(self.n_items + 1, self.config.factors)

    def fit(self, data: SequentialDataset) -> WALS:
        """Factorise ``data.sequences`` (user -> items) into user and item factors."""
        from implicit.cpu.als import AlternatingLeastSquares

        sequences = data.sequences

        rows = [u for u, seq in sequences.items() for _ in set(seq)]
        cols = [i for seq in sequences.values() for i in sorted(set(seq))]
        matrix = csr_matrix(
            (np.full(len(rows), self.config.alpha, dtype=np.float32), (rows, cols)),
            shape=(self.n_users + 1, self.n_items + 1),
        )
        model = AlternatingLeastSquares(
            factors=self.config.factors,
            regularization=self.config.regularization,
            alpha=1.0,  # confidences are already alpha-scaled in the matrix
            iterations=self.config.iterations,
            random_state=self.config.seed,
            num_threads=self.config.num_threads,
            calculate_training_loss=False,
        )
        try:  # implicit asks for a single-threaded BLAS (its own threads do the work)
            from threadpoolctl import threadpool_limits
        except ImportError:  # pragma: no cover
            model.fit(matrix, show_progress=False)
        else:
            with threadpool_limits(1, "blas"):
                model.fit(matrix, show_progress=False)
        self.user_factors = torch.from_numpy(np.asarray(model.user_factors)).float()
        self.item_factors = torch.from_numpy(np.asarray(model.item_factors)).float()
        return self

    def user_tower(self, batch):
        return self.user_factors[batch["user"].cpu()]

    def item_tower(self, items=None):
        return self.item_factors if items is None else self.item_factors[items]

    def state(self) -> dict[str, torch.Tensor]:
        return {"user_factors": self.user_factors, "item_factors": self.item_factors}

    def load_state(self, arrays) -> None:
        self.user_factors = _shaped(arrays, "user_factors", self.user_factors.shape)
        self.item_factors = _shaped(arrays, "item_factors", self.item_factors.shape)


def _shaped(arrays, name: str, shape: torch.Size) -> torch.Tensor:
    """``arrays[name]`` as a float tensor of ``shape``; :class:`ValueError` for any other shape."""
    value = torch.as_tensor(np.asarray(arrays[name]), dtype=torch.float32)
    if value.shape != shape:
        raise ValueError(f"{name} has shape {tuple(value.shape)}, expected {tuple(shape)}")
    return value
