"""Most-popular: rank items by their number of training interactions.

The floor every personalised model must clear; under full ranking with history masking
it is a strong baseline on MovieLens (Ji et al., "A Re-visit of the Popularity Baseline
in Recommender Systems", SIGIR 2020).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from recsys.data.sequential import SequentialDataset
from recsys.models.base import Recommender


@dataclass
class MostPopularConfig:
    pass


class MostPopular(Recommender):
    display_name = "Most popular"

    def __init__(self, config: MostPopularConfig | None, dataset: SequentialDataset):
        self.config = config or MostPopularConfig()
        self.n_items = dataset.n_items
        self.counts = torch.zeros(dataset.n_items + 1)

    def fit(self, sequences: dict[int, list[int]]) -> MostPopular:
        counts = torch.zeros(self.n_items + 1)
        for seq in sequences.values():
            counts.index_add_(0, torch.tensor(seq, dtype=torch.long), torch.ones(len(seq)))
        self.counts = counts
        return self

    def full_sort_predict(self, batch):
        scores = self.counts.unsqueeze(0).repeat(len(batch["user"]), 1)
        scores[:, 0] = float("-inf")
        return scores
