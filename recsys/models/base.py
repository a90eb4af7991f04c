"""The one model contract every recommender in the project honours.

Following RecBole, every model, neural or not, is built the same way and scores the same way:

* **construction**: ``Model(config, data)``: ``config`` is the model's ``@dataclass``;
  ``data`` is its domain's model data (:class:`recsys.videos.prep.VideoItems`,
  :class:`recsys.anime.prep.AnimeData`, :class:`recsys.data.sequential.SequentialDataset`),
  everything the model needs to size its tables or to fit. The registry
  (:mod:`recsys.registry`) builds every model this way.
* **fitting**: fitted models (``kind = "fitted"``: BM25, EASE, popularity, item-kNN,
  WALS, cluster retrieval...) implement :meth:`FittedRecommender.fit` ``(data) -> self``;
  neural models (``kind = "neural"``) implement ``calculate_loss(batch) -> Tensor`` and
  are trained by the one loop in :mod:`recsys.train.loop`.
* **scoring**: ``full_sort_predict(batch) -> Tensor[B, n_columns]`` scores every item
  for each row; ``predict(batch) -> Tensor[B]`` scores the pairs ``batch["item"]`` and
  equals the gathered ``full_sort_predict`` (the default does exactly that gather).
* **state**: ``state() -> dict[str, array]`` and ``load_state(arrays)`` are what an
  artifact stores (:mod:`recsys.checkpoint`); a neural model's state is its
  ``state_dict``. Nothing is pickled.

**Output width and padding, one convention.** Column ``j`` of ``full_sort_predict`` is
the item with index ``j`` in the domain's item index, and ``n_columns`` is the number of
columns. Domains whose item index reserves a padding id (sequential data: id 0 pads
sequences, items are 1..n) keep that column and score it ``-inf``, so it is never
recommended; ``padding_index`` says which column that is (``None`` elsewhere).
So ``n_columns`` is ``n_items`` for videos and anime and ``n_items + 1`` for sequential.

Following torch-rechub, dual-tower models also expose ``user_tower(batch)`` and
``item_tower(items=None)`` (:class:`TwoTowerMixin`): the item side depends on nothing
about the user, so it is computed once and put into a faiss index.

A *batch* is a plain ``dict`` of tensors (RecBole's ``Interaction`` without the class);
each domain documents its keys in its prep module.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

Batch = dict[str, Any]


class Recommender:
    """Scoring contract shared by neural and fitted models."""

    #: "neural" (gradient-trained) or "fitted" (closed form / counting)
    kind: str = "fitted"
    #: columns of :meth:`full_sort_predict` (set by the constructor)
    n_columns: int = 0
    #: the column reserved for padding (scored -inf), or None
    padding_index: int | None = None

    def __init__(self, config: Any, data: Any):
        self.config = config

    def __init_subclass__(cls, **kwargs: Any) -> None:
        # A two-tower model must get the mixin's full_sort_predict, whatever order its bases
        # are listed in; catching it at class creation beats a NotImplementedError in serving.
        super().__init_subclass__(**kwargs)
        mixin = globals().get("TwoTowerMixin")  # FittedRecommender below is created before the mixin exists
        if mixin is not None and issubclass(cls, mixin) and cls.full_sort_predict is Recommender.full_sort_predict:
            raise TypeError(f"{cls.__name__}: list TwoTowerMixin before the Recommender base")

    @property
    def trainable(self) -> bool:
        return self.kind == "neural"

    def predict(self, batch: Batch) -> torch.Tensor:
        """Score the (user/query, item) pairs of ``batch``; shape ``[B]``.

        The default gathers from :meth:`full_sort_predict`, which is correct for every
        model; models with a cheaper pairwise path override it (and must agree with it).
        """
        scores = self.full_sort_predict(batch)
        return scores.gather(1, torch.as_tensor(batch["item"]).view(-1, 1).to(scores.device)).squeeze(1)

    def full_sort_predict(self, batch: Batch) -> torch.Tensor:  # pragma: no cover - abstract
        """Scores of all items for each row of ``batch``; shape ``[B, n_columns]``."""
        raise NotImplementedError

    def calculate_loss(self, batch: Batch) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError(f"{type(self).__name__} is fitted in closed form, not by a loss")

    def state(self) -> dict[str, np.ndarray | torch.Tensor]:  # pragma: no cover - abstract
        """Arrays that, with the config, restore the fitted or trained model."""
        raise NotImplementedError

    def load_state(self, arrays: dict[str, Any]) -> None:  # pragma: no cover - abstract
        raise NotImplementedError


class FittedRecommender(Recommender):
    """A model fitted in closed form or by counting: ``Model(config, data).fit(data)``."""

    kind = "fitted"

    def fit(self, data: Any) -> "FittedRecommender":  # pragma: no cover - abstract
        raise NotImplementedError


class TwoTowerMixin:
    """Dual-tower serving: ``score(u, i) = <user_tower(u), item_tower(i)>``.

    A model that mixes this in (listed *before* its Recommender base) implements
    :meth:`user_tower` and :meth:`item_tower` and gets :meth:`full_sort_predict` as one
    matrix product against all item vectors, the computation a faiss ``IndexFlatIP``
    performs in serving. The padding column, if any, is scored ``-inf``.
    """

    def user_tower(self, batch: Batch) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def item_tower(self, items: torch.Tensor | None = None) -> torch.Tensor:  # pragma: no cover - abstract
        """Vectors of ``items`` (all ``n_columns`` columns when ``None``); shape ``[n, d]``."""
        raise NotImplementedError

    def full_sort_predict(self, batch: Batch) -> torch.Tensor:
        return mask_padding(self.user_tower(batch) @ self.item_tower().T, self.padding_index)


def mask_padding(scores: torch.Tensor, padding_index: int | None) -> torch.Tensor:
    """``scores`` with the padding column set to ``-inf`` (unchanged when there is none)."""
    if padding_index is None:
        return scores
    scores = scores.clone()
    scores[:, padding_index] = float("-inf")
    return scores


class NeuralRecommender(nn.Module, Recommender):
    """Base class of gradient-trained models: an ``nn.Module`` with the contract above."""

    kind = "neural"

    def __init__(self, config: Any, data: Any = None):
        nn.Module.__init__(self)
        Recommender.__init__(self, config, data)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def state(self) -> dict[str, torch.Tensor]:
        return {name: value.detach().cpu().contiguous() for name, value in self.state_dict().items()}

    def load_state(self, arrays: dict[str, Any]) -> None:
        tensors = {name: torch.as_tensor(np.asarray(value)) if not isinstance(value, torch.Tensor) else value
                   for name, value in arrays.items()}
        self.load_state_dict(tensors, strict=True)
