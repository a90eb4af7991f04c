"""Popularity recommenders: most-watched and the IMDb/Bayesian weighted rating.

* **Most popular** (the standard non-personalised baseline, e.g. Cremonesi et al.,
  "Performance of recommender algorithms on top-N recommendation tasks", RecSys 2010):
  score = number of training interactions (watched, rated or not). On hit-rate
  protocols it is hard to beat, because what is popular is what gets watched next.
* **Weighted rating** (the IMDb Top-250 formula, used by the two-tower anime paper for
  cold start)::

      WR = v / (v + m) * R + m / (v + m) * C

  ``R`` an anime's mean rating, ``v`` its number of votes (members, or rating count),
  ``C`` the mean of ``R`` over the catalogue and ``m`` the ``quantile`` of ``v``: an anime
  with few votes is pulled towards ``C``, so a 10/10 from three fans does not top the list.

Both score every item identically for every user; the watched items of a user are
masked by the caller, as for all models.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from recsys.anime.prep import binary
from recsys.models.base import Batch, FittedRecommender


def weighted_rating(R, v, m: float | None = None, C: float | None = None, quantile: float = 0.9) -> np.ndarray:
    """IMDb weighted rating; ``m`` defaults to the ``quantile`` of ``v``, ``C`` to the mean of ``R``.

    Missing ``R`` (NaN) gets ``C``; missing ``v`` counts as 0 votes.
    """
    R = np.asarray(R, np.float64)
    v = np.nan_to_num(np.asarray(v, np.float64), nan=0.0)
    C = float(np.nanmean(R)) if C is None else float(C)
    m = float(np.quantile(v, quantile)) if m is None else float(m)
    R = np.where(np.isnan(R), C, R)
    total = v + m
    with np.errstate(invalid="ignore", divide="ignore"):
        wr = np.where(total > 0, v / total * R + m / total * C, C)
    return wr


@dataclass
class PopularityConfig:
    by: str = "wr"  # wr (weighted rating, the paper's cold start) | count (interactions)
    quantile: float = 0.9  # WR: m = this quantile of the vote counts


class Popularity(FittedRecommender):
    """A fixed score per item: interaction count, or the weighted rating.

    ``fit(data)`` reads ``data.interactions`` (users x items, any value = watched) and,
    for the weighted rating, ``data.item_mean_rating`` (R) and ``data.item_votes`` (v;
    the interaction count where missing). Every row of a batch gets the same scores;
    the batch only sets how many rows (``user`` or ``history``). State: ``scores``.
    """

    def __init__(self, config: PopularityConfig | None, data):
        super().__init__(config or PopularityConfig(), data)
        if self.config.by not in ("count", "wr"):
            raise ValueError(f"unknown popularity kind {self.config.by!r}; use 'count' or 'wr'")
        self.n_items = self.n_columns = int(data.n_items)
        self.scores: np.ndarray | None = None
        self.display_name = "Most popular (count)" if self.config.by == "count" else "Popular (weighted rating)"

    def fit(self, data) -> "Popularity":
        counts = np.asarray(binary(data.interactions).sum(axis=0)).ravel().astype(np.float64)
        if self.config.by == "count":
            self.scores = counts
        else:
            mean_rating = getattr(data, "item_mean_rating", None)
            if mean_rating is None:
                raise ValueError("weighted rating needs mean_rating per item")
            votes = getattr(data, "item_votes", None)
            self.scores = weighted_rating(mean_rating, counts if votes is None else votes,
                                          quantile=self.config.quantile)
        return self

    def full_sort_predict(self, batch: Batch) -> torch.Tensor:
        rows = batch["history"].shape[0] if batch.get("history") is not None else len(batch["user"])
        return torch.as_tensor(self.scores, dtype=torch.float64).expand(rows, -1)

    def state(self) -> dict[str, np.ndarray]:
        return {"scores": np.asarray(self.scores, np.float64)}

    def load_state(self, arrays) -> None:
        scores = np.asarray(arrays["scores"], np.float64)
        if scores.shape != (self.n_items,):
            raise ValueError(f"popularity scores of shape {scores.shape} do not fit {self.n_items} items")
        self.scores = scores
