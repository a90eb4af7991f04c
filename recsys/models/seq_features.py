"""Losses and the in-batch two-tower base shared by the sequential models.

The field embedder and the MLP live in :mod:`recsys.models.layers`; this module holds
what the in-batch-softmax models (DSSM, YouTube DNN, MIND, CL-EPIDTN) share on the loss
side: the logQ popularity correction and the in-batch softmax itself.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from recsys.data.sequential import SequentialDataset
from recsys.models.base import NeuralRecommender, TwoTowerMixin


def item_log_frequency(sequences: dict[int, list[int]], n_items: int) -> torch.Tensor:
    """``[n_items + 1]`` log sampling probability ``log q(item)`` of every item for the logQ correction.

    ``q`` is the item's frequency in ``sequences`` (add-one smoothed, so unseen items and the
    padding row get a finite value), the distribution with which an in-batch softmax draws its
    negatives. Pass the training sequences only.
    """
    every = [i for seq in sequences.values() for i in seq]
    counts = torch.bincount(torch.as_tensor(every, dtype=torch.long), minlength=n_items + 1).float()
    counts = 1.0 + counts[: n_items + 1]
    return (counts / counts.sum()).log()


def logq_correct(logits: torch.Tensor, log_q: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Subtract ``log q`` of each column's item from ``[B, B]`` in-batch logits (Yi et al., RecSys 2019).

    An in-batch softmax samples negatives in proportion to popularity and so over-punishes
    popular items; ``logit - log q(item)`` is the sampling-bias correction. ``log_q`` is
    :func:`item_log_frequency`; ``targets`` are the batch's items (the columns).
    """
    return logits - log_q[targets].unsqueeze(0)


def in_batch_softmax_loss(
    user_vecs: torch.Tensor, item_vecs: torch.Tensor, targets: torch.Tensor, temperature: float = 1.0,
    log_q: torch.Tensor | None = None,
) -> torch.Tensor:
    """Softmax over the batch's targets: row ``b``'s positive is item ``b``, the others are negatives.

    Why: it needs no negative sampler and the negatives follow item popularity, as served
    traffic does (Yi et al., RecSys 2019). The same item appearing twice in a batch is not
    a negative of itself: such duplicate columns are masked. With ``log_q`` (from
    :func:`item_log_frequency`) the logits are popularity-corrected by :func:`logq_correct`.
    """
    logits = user_vecs @ item_vecs.T / temperature
    if log_q is not None:
        logits = logq_correct(logits, log_q, targets)
    same = targets.view(-1, 1) == targets.view(1, -1)
    eye = torch.eye(len(targets), dtype=torch.bool, device=targets.device)
    logits = logits.masked_fill(same & ~eye, float("-inf"))
    labels = torch.arange(len(targets), device=targets.device)
    return F.cross_entropy(logits, labels)


@dataclass
class InBatchTowerConfig:
    """Settings of the in-batch-softmax two towers (DSSM and YouTube DNN subclass it)."""

    embedding_dim: int = 64
    feature_dim: int = 16
    hidden: tuple[int, ...] = (256, 128)
    dropout: float = 0.2
    temperature: float = 0.1
    max_seq_len: int = 50
    logq_correction: bool = True  # subtract log q(item) (training frequency) from in-batch logits (Yi et al. 2019)


class InBatchSoftmaxTwoTower(TwoTowerMixin, NeuralRecommender):
    """Two towers trained with in-batch softmax and served by one product against all items.

    Subclasses build ``user_tower`` and ``item_tower``; the loss, the log-Q table and
    full ranking (:class:`~recsys.models.base.TwoTowerMixin`: one product, padding column
    ``-inf``) are the same for all of them, so they differ only in their towers.
    """

    def __init__(self, config: InBatchTowerConfig, dataset: SequentialDataset):
        super().__init__(config, dataset)
        self.n_items = dataset.n_items
        self.n_columns, self.padding_index = dataset.n_items + 1, 0  # column 0: the padding item
        self.register_buffer("item_log_frequency", item_log_frequency(dataset.sequences, dataset.n_items)
                             if config.logq_correction else None, persistent=False)

    def calculate_loss(self, batch):
        return in_batch_softmax_loss(
            self.user_tower(batch), self.item_tower(batch["item"]), batch["item"], self.config.temperature, self.item_log_frequency
        )
