"""Implicit two-tower: the paper's towers trained on *what people watch*, for retrieval.

Why this model exists. The paper's two-tower (:mod:`recsys.models.two_tower`) fits
explicit ratings by MSE. That objective only sees (user, anime) pairs the user chose
to watch, and asks "how much will they like it"; it never learns *which* anime a
user picks, so ranking by predicted rating surfaces niche titles with high average
scores, and on the paper's own hit-based protocol it loses to a most-popular list.
The fix stays inside the two-tower family and changes the training signal:

* **positives** are every watched pair, including the ``-1`` (watched, not rated)
  rows the MSE model has to discard;
* **loss** is the in-batch sampled softmax of Yi et al., "Sampling-Bias-Corrected
  Neural Modeling for Large Corpus Item Recommendations" (RecSys 2019): the other
  items in the batch are the negatives and each logit is corrected by ``-log Q(i)``,
  ``Q`` the item's in-batch sampling probability, so that popular items, which are
  over-represented as negatives, are not pushed down for being popular;
* **user tower** is the mean of the user's watched items' context embeddings
  (YouTube DNN, Covington et al., RecSys 2016) instead of a per-user table, with
  the target left out of its own history during training. Unseen users are then
  served by exactly the tower the model was trained with: the paper's
  "weighted average of item vectors" becomes the model's user tower rather than a
  heuristic applied to vectors trained for something else;
* the **item tower** is a 32-factor embedding plus a bias, written as one vector so
  that a faiss inner-product index serves it: ``score = <[u, 1], [q_i, b_i]>``.

Batch keys (:mod:`recsys.anime.prep`): ``user`` (LongTensor[B], the row of the training
history matrix the user tower reads), ``item`` (LongTensor[B], the positive) and, when
scoring users who are not rows of that matrix (unseen or new users), ``history``: a
``[B, n_items]`` scipy CSR of what each row watched, which the user tower reads instead.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from torch import nn

from recsys.models.base import Batch, NeuralRecommender, TwoTowerMixin


@dataclass
class ImplicitTwoTowerConfig:
    factors: int = 32
    temperature: float = 0.2  # softmax temperature on the logits
    logq_correction: bool = True
    history_sample: int = 32  # training: the user tower averages this many history items (sampled)


class ImplicitTwoTower(TwoTowerMixin, NeuralRecommender):
    """User tower: mean of history context vectors; item tower: ``[q_i, b_i]``; in-batch softmax."""

    display_name = "Two-tower (implicit, sampled softmax)"

    def __init__(self, config: ImplicitTwoTowerConfig, data):
        """``data`` (:class:`recsys.anime.prep.AnimeData`): ``n_items``, ``interactions`` (the
        users x items training histories the user tower reads) and ``train_items`` (every
        training positive, for the log-Q correction); the last two may be ``None``."""
        super().__init__(config, data)
        n, d = int(data.n_items), config.factors
        self.n_items = self.n_columns = n
        history = getattr(data, "interactions", None)
        positives = getattr(data, "train_items", None)
        item_log_q = None if positives is None else in_batch_log_q(positives, n)
        self.context_embedding = nn.EmbeddingBag(n, d, mode="sum")
        self.item_embedding = nn.Embedding(n, d)
        self.item_bias = nn.Embedding(n, 1)
        for table in (self.context_embedding, self.item_embedding):
            nn.init.normal_(table.weight, std=0.1)
        nn.init.zeros_(self.item_bias.weight)
        log_q = np.zeros(n, np.float32) if item_log_q is None else np.asarray(item_log_q, np.float32)
        self.register_buffer("item_log_q", torch.tensor(log_q))
        self.history = history  # users x items CSR of training histories (not a parameter)

    # --- user tower ---------------------------------------------------------------------------
    def _bags(self, histories: sp.csr_matrix, rows: np.ndarray):
        """EmbeddingBag inputs (flat item ids, offsets) for ``rows`` of a CSR matrix, vectorised."""
        starts, ends = histories.indptr[rows], histories.indptr[rows + 1]
        lengths = ends - starts
        offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]]).astype(np.int64)
        flat = np.repeat(starts - offsets, lengths) + np.arange(lengths.sum())
        return (torch.as_tensor(histories.indices[flat], dtype=torch.long),
                torch.as_tensor(offsets, dtype=torch.long), torch.as_tensor(lengths, dtype=torch.float32))

    def encode_histories(self, histories: sp.csr_matrix, rows: np.ndarray | None = None,
                         leave_out: torch.Tensor | None = None) -> torch.Tensor:
        """User vectors ``[mean context vector, 1]`` for rows of a (users x items) CSR matrix.

        ``leave_out[b]`` (an item of row b's history) is removed from row b's mean: during
        training the target must not be part of the history that predicts it.
        """
        rows = np.arange(histories.shape[0]) if rows is None else np.asarray(rows)
        flat, offsets, lengths = self._bags(histories, rows)
        device = self.item_embedding.weight.device
        sums = self.context_embedding(flat.to(device), offsets.to(device))
        lengths = lengths.to(device)
        if leave_out is not None:
            sums = sums - self.context_embedding.weight[leave_out]
            lengths = lengths - 1
        mean = sums / lengths.clamp(min=1).unsqueeze(1)
        return torch.cat([mean, torch.ones_like(mean[:, :1])], dim=1)

    def sampled_user_tower(self, users: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Training-time user tower: the mean over ``history_sample`` items drawn (with
        replacement) from each user's history, the target masked out.

        An unbiased estimate of the leave-one-out mean at a fixed cost per row: heavy users
        (2,000 anime) would otherwise make every batch gather hundreds of thousands of rows.
        """
        cache = getattr(self, "_csr_cache", None)
        if cache is None or cache[0] is not self.history:
            cache = (self.history, torch.as_tensor(self.history.indptr, dtype=torch.long),
                     torch.as_tensor(self.history.indices, dtype=torch.long))
            self._csr_cache = cache
        _, indptr, indices = cache
        users = users.cpu()
        starts, lengths = indptr[users], indptr[users + 1] - indptr[users]
        draws = (torch.rand(len(users), self.config.history_sample) * lengths.unsqueeze(1)).long()
        items = indices[starts.unsqueeze(1) + draws.clamp(max=(lengths - 1).clamp(min=0).unsqueeze(1))]
        device = self.item_embedding.weight.device
        items, targets = items.to(device), targets.to(device)
        keep = ((items != targets.unsqueeze(1)) & (lengths.to(device) > 0).unsqueeze(1)).float()
        vectors = self.context_embedding.weight[items]  # [B, S, d]
        mean = (vectors * keep.unsqueeze(2)).sum(1) / keep.sum(1, keepdim=True).clamp(min=1)
        return torch.cat([mean, torch.ones_like(mean[:, :1])], dim=1)

    def user_tower(self, batch: Batch) -> torch.Tensor:
        if batch.get("history") is not None:  # users given by what they watched (unseen, new)
            return self.encode_histories(sp.csr_matrix(batch["history"]))
        if self.history is None:
            raise RuntimeError("ImplicitTwoTower has no history matrix; pass the batch's 'history'")
        if self.training and "item" in batch:
            return self.sampled_user_tower(batch["user"], batch["item"])
        return self.encode_histories(self.history, torch.as_tensor(batch["user"]).cpu().numpy())

    # --- item tower -----------------------------------------------------------------------------
    def item_tower(self, items: torch.Tensor | None = None) -> torch.Tensor:
        if items is None:
            return torch.cat([self.item_embedding.weight, self.item_bias.weight], dim=1)
        return torch.cat([self.item_embedding(items), self.item_bias(items)], dim=1)

    # --- contract ---------------------------------------------------------------------------------
    def calculate_loss(self, batch: Batch) -> torch.Tensor:
        users = self.user_tower(batch)  # [B, d+1], target left out of the history
        items = self.item_tower(batch["item"])  # [B, d+1]
        logits = users @ items.T / self.config.temperature
        if self.config.logq_correction:
            logits = logits - self.item_log_q[batch["item"]].unsqueeze(0)
        # the same item twice in a batch is a positive for both rows, not a negative
        same = batch["item"].unsqueeze(0) == batch["item"].unsqueeze(1)
        logits = logits.masked_fill(same & ~torch.eye(len(same), dtype=torch.bool, device=same.device), -1e9)
        return F.cross_entropy(logits, torch.arange(len(logits), device=logits.device))

    def item_vectors(self) -> np.ndarray:
        return self.item_tower().detach().cpu().numpy().astype(np.float32)


def pair_batches(users: np.ndarray, items: np.ndarray, batch_size: int, seed: int = 0):
    """``batches(epoch)`` over (user row, watched item) pairs, reshuffled every epoch."""
    users_t = torch.tensor(np.asarray(users), dtype=torch.long)
    items_t = torch.tensor(np.asarray(items), dtype=torch.long)

    def batches(epoch: int):
        generator = torch.Generator().manual_seed(seed * 1000 + epoch)
        for index in torch.randperm(len(users_t), generator=generator).split(batch_size):
            if len(index) > 1:
                yield {"user": users_t[index], "item": items_t[index]}

    return batches


def in_batch_log_q(items: np.ndarray, n_items: int) -> np.ndarray:
    """``log Q(i)``: the log frequency of item ``i`` among training positives (+1 smoothing).

    With uniformly shuffled batches an item's chance of being an in-batch negative is
    proportional to its frequency, which is what Yi et al. correct for.
    """
    counts = np.bincount(np.asarray(items), minlength=n_items).astype(np.float64) + 1.0
    return np.log(counts / counts.sum()).astype(np.float32)
