"""The rating two-tower model of the "Two Towers" anime recommender paper (GitHub issue 3).

Paper: the anime recommender built on the Kaggle "Anime Recommendations Database"
whose model is a two-tower network: a user tower and an item tower, each a
32-factor embedding, joined by the element-wise product summed over factors,
passed through a ReLU and fitted to explicit ratings by mean squared error
(NAdam, lr 0.01, batch 10,000, 35 epochs). Its Table 1 reports the unseen-user
methods built on these item vectors (weighted average, K-means, GMM).

Why this shape: a rating is ``relu(<p_u, q_i>)``, so the item vectors alone carry
everything the model knows about an anime; that is what lets the paper serve users
it never trained on (average the vectors of what they rated, weighted by the
ratings) and cluster the catalogue. The ReLU only clips negative predictions to 0;
ranking by ``<p_u, q_i>`` gives the same order for positive scores.

What it is *not*: MSE on explicit ratings learns how much a user will like an
anime *given* they watch it, not which anime they will watch, so its top-k is
dominated by niche, highly rated titles. :mod:`recsys.models.implicit_two_tower`
is the retrieval counterpart trained on what people watch.

Batch keys (:mod:`recsys.anime.prep`): ``user`` (LongTensor[B], seen-user index),
``item`` (LongTensor[B], item index), ``rating`` (FloatTensor[B], 1..10; training only).
The model has a vector for trained users only: ``known_users_only`` tells serving to
answer rows with ``user = -1`` (users it never saw) with the weighted average instead.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from recsys.models.base import Batch, NeuralRecommender, TwoTowerMixin


@dataclass
class TwoTowerConfig:
    factors: int = 32  # the paper's embedding size
    init_std: float = 0.05  # spread of our N(mean, std) initial factors - see __init__
    # "shifted-normal" (ours, the default) or "paper": the paper's Sec. 4.5, JAX random.randint in [1, 20]
    # (uniform integers; initial predictions of 32 * E[x]^2 ~ 3,500 on a 1-10 scale, so MSE starts huge)
    init: str = "shifted-normal"


class TwoTowerRating(TwoTowerMixin, NeuralRecommender):
    """``rating(u, i) = relu(sum_f p_u[f] * q_i[f])`` trained by MSE (the paper's model)."""

    display_name = "Two-tower (paper, MSE)"
    #: a per-user table: users outside the training data have no vector (serving falls back)
    known_users_only = True

    def __init__(self, config: TwoTowerConfig, data):
        """``data``: anything with ``n_users`` and ``n_items`` (:class:`recsys.anime.prep.AnimeData`)."""
        super().__init__(config, data)
        self.n_users, self.n_items = int(data.n_users), int(data.n_items)
        self.n_columns = self.n_items
        self.user_embedding = nn.Embedding(self.n_users, config.factors)
        self.item_embedding = nn.Embedding(self.n_items, config.factors)
        # Centre the factors slightly above zero so the initial dot products are positive:
        # with zero-centred factors half the predictions start under the ReLU, where the
        # gradient is zero, and those (user, item) pairs learn nothing until others move them.
        mean = (7.5 / config.factors) ** 0.5 / 1.5  # initial prediction ~ a third of a typical rating
        if config.init not in ("shifted-normal", "paper"):
            raise ValueError(f"unknown init {config.init!r}; use 'shifted-normal' or 'paper'")
        for table in (self.user_embedding, self.item_embedding):
            if config.init == "paper":  # uniform integers 1..20 (randint's upper bound is exclusive: 21)
                with torch.no_grad():
                    table.weight.copy_(torch.randint(1, 21, table.weight.shape).float())
            else:
                nn.init.normal_(table.weight, mean=mean, std=config.init_std)

    # towers -------------------------------------------------------------------------------
    def user_tower(self, batch: Batch) -> torch.Tensor:
        users = torch.as_tensor(batch["user"], dtype=torch.long, device=self.user_embedding.weight.device)
        if len(users) and (int(users.min()) < 0 or int(users.max()) >= self.n_users):
            raise ValueError(f"user indices must be in 0..{self.n_users - 1}: this model knows trained users only")
        return self.user_embedding(users)

    def item_tower(self, items: torch.Tensor | None = None) -> torch.Tensor:
        return self.item_embedding.weight if items is None else self.item_embedding(items)

    # contract -------------------------------------------------------------------------------
    def predict(self, batch: Batch) -> torch.Tensor:
        items = torch.as_tensor(batch["item"], dtype=torch.long, device=self.item_embedding.weight.device)
        return torch.relu((self.user_tower(batch) * self.item_tower(items)).sum(-1))

    def full_sort_predict(self, batch: Batch) -> torch.Tensor:
        return torch.relu(self.user_tower(batch) @ self.item_tower().T)

    def calculate_loss(self, batch: Batch) -> torch.Tensor:
        return torch.mean((self.predict(batch) - batch["rating"]) ** 2)

    # helpers ----------------------------------------------------------------------------------
    def item_vectors(self) -> np.ndarray:
        return self.item_embedding.weight.detach().cpu().numpy().astype(np.float32)

    def user_vectors(self) -> np.ndarray:
        return self.user_embedding.weight.detach().cpu().numpy().astype(np.float32)


def rating_batches(users: np.ndarray, items: np.ndarray, ratings: np.ndarray, batch_size: int, seed: int = 0):
    """``batches(epoch)`` for :func:`recsys.train.loop.fit`: a fresh seeded shuffle per epoch."""
    users_t = torch.tensor(np.asarray(users), dtype=torch.long)
    items_t = torch.tensor(np.asarray(items), dtype=torch.long)
    ratings_t = torch.tensor(np.asarray(ratings), dtype=torch.float32)

    def batches(epoch: int):
        generator = torch.Generator().manual_seed(seed * 1000 + epoch)
        for index in torch.randperm(len(users_t), generator=generator).split(batch_size):
            yield {"user": users_t[index], "item": items_t[index], "rating": ratings_t[index]}

    return batches


# ---------------------------------------------------------------------------------------------
# rating baselines the paper's RMSE is compared with
# ---------------------------------------------------------------------------------------------
def rmse(predicted: np.ndarray, actual: np.ndarray) -> float:
    predicted, actual = np.asarray(predicted, np.float64), np.asarray(actual, np.float64)
    return float(np.sqrt(np.mean((predicted - actual) ** 2))) if len(actual) else float("nan")


@dataclass
class BiasBaseline:
    """``r(u, i) = mu + b_u + b_i`` fitted by a few rounds of regularised alternating means.

    The classic baseline predictor (Koren, "Factor in the neighbors", 2008): any rating
    model worth its parameters must beat it, and the global mean ``mu`` alone.
    """

    mu: float
    user_bias: np.ndarray
    item_bias: np.ndarray

    @classmethod
    def fit(cls, users, items, ratings, n_users: int, n_items: int, reg: float = 5.0, rounds: int = 5):
        users, items = np.asarray(users), np.asarray(items)
        ratings = np.asarray(ratings, np.float64)
        mu = float(ratings.mean())
        bu, bi = np.zeros(n_users), np.zeros(n_items)
        for _ in range(rounds):
            residual = ratings - mu - bu[users]
            bi = np.bincount(items, residual, n_items) / (np.bincount(items, minlength=n_items) + reg)
            residual = ratings - mu - bi[items]
            bu = np.bincount(users, residual, n_users) / (np.bincount(users, minlength=n_users) + reg)
        return cls(mu, bu, bi)

    def predict(self, users, items) -> np.ndarray:
        return np.clip(self.mu + self.user_bias[np.asarray(users)] + self.item_bias[np.asarray(items)], 1, 10)
