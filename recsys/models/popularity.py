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
import scipy.sparse as sp
import torch

from recsys.models.base import Batch, Recommender


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
    kind: str = "count"  # count | wr
    quantile: float = 0.9  # WR: m = this quantile of the vote counts


class Popularity(Recommender):
    """A fixed score per item: interaction count, or the weighted rating."""

    display_name = "Most popular"

    def __init__(self, config: PopularityConfig | None = None):
        self.config = config or PopularityConfig()
        self.scores: np.ndarray | None = None
        self.display_name = "Most popular (count)" if self.config.kind == "count" else "Popular (weighted rating)"

    def fit(self, interactions: sp.csr_matrix, mean_rating=None, votes=None) -> "Popularity":
        """``interactions``: users x items (1 = watched). WR needs per-item ``mean_rating`` and ``votes``."""
        counts = np.asarray(interactions.sum(axis=0)).ravel().astype(np.float64)
        if self.config.kind == "count":
            self.scores = counts
        elif self.config.kind == "wr":
            if mean_rating is None:
                raise ValueError("weighted rating needs mean_rating per item")
            self.scores = weighted_rating(mean_rating, counts if votes is None else votes,
                                          quantile=self.config.quantile)
        else:
            raise ValueError(f"unknown popularity kind {self.config.kind!r}; use 'count' or 'wr'")
        return self

    def score_histories(self, histories: sp.csr_matrix) -> np.ndarray:
        return np.broadcast_to(self.scores, (histories.shape[0], len(self.scores))).copy()

    def full_sort_predict(self, batch: Batch) -> torch.Tensor:
        return torch.as_tensor(self.scores, dtype=torch.float32).expand(len(batch["user"]), -1)
