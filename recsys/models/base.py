"""The one model contract every recommender in the project honours.

Following RecBole, a model exposes:

* ``calculate_loss(batch) -> Tensor``: the scalar training loss for one batch;
* ``predict(batch) -> Tensor[B]``: a score for each (user/query, item) pair in the batch;
* ``full_sort_predict(batch) -> Tensor[B, n_items]``: scores of every item for each
  user/query in the batch, which is what full-ranking evaluation and retrieval need.

Following torch-rechub, dual-tower models also expose ``user_tower(batch)`` and
``item_tower(items=None)``: the item side depends on nothing about the user, so it
can be computed once and put into a faiss index, and serving is a cheap scoring.

A *batch* is a plain ``dict[str, Tensor]`` (RecBole's ``Interaction`` without the
class): each domain documents its keys in its data module. Keeping the batch a dict
lets one training loop (:mod:`recsys.train.loop`) and one evaluator drive every model.

Models that are fitted in closed form or by counting (BM25, EASE, popularity,
item-kNN, WALS) subclass :class:`Recommender` only and are fitted with ``fit``; their
``calculate_loss`` is not defined, and :attr:`Recommender.trainable` says so.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

Batch = dict[str, torch.Tensor]


class Recommender:
    """Scoring contract shared by neural and non-neural models."""

    #: whether the model is trained by gradient descent through ``calculate_loss``
    trainable: bool = False
    #: human-readable name used by tables, the CLI and the pages
    display_name: str = ""

    def predict(self, batch: Batch) -> torch.Tensor:
        """Score the (user/query, item) pairs of ``batch``; shape ``[B]``.

        The default gathers from :meth:`full_sort_predict`, which is correct for every
        model; models with a cheaper pairwise path override it.
        """
        scores = self.full_sort_predict(batch)
        return scores.gather(1, batch["item"].view(-1, 1)).squeeze(1)

    def full_sort_predict(self, batch: Batch) -> torch.Tensor:  # pragma: no cover - abstract
        """Scores of all items for each row of ``batch``; shape ``[B, n_items]``."""
        raise NotImplementedError

    def calculate_loss(self, batch: Batch) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError(f"{type(self).__name__} is fitted in closed form, not by a loss")


class TwoTowerMixin:
    """Dual-tower serving: ``score(u, i) = <user_tower(u), item_tower(i)>``.

    A model that mixes this in implements :meth:`user_tower` and :meth:`item_tower`
    and gets :meth:`full_sort_predict` as one matrix product against all item vectors,
    the computation that a faiss ``IndexFlatIP`` performs in serving.
    """

    def user_tower(self, batch: Batch) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def item_tower(self, items: torch.Tensor | None = None) -> torch.Tensor:  # pragma: no cover - abstract
        """Vectors of ``items`` (all items when ``None``); shape ``[n, d]``."""
        raise NotImplementedError

    def full_sort_predict(self, batch: Batch) -> torch.Tensor:
        return self.user_tower(batch) @ self.item_tower().T


class NeuralRecommender(nn.Module, Recommender):
    """Base class of gradient-trained models: an ``nn.Module`` with the contract above."""

    trainable = True

    def __init__(self, config: Any = None):
        nn.Module.__init__(self)
        self.config = config

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device
