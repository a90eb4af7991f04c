"""Most-popular: rank items by their number of training interactions.

The floor every personalised model must clear; under full ranking with history masking
it is a strong baseline on MovieLens (Ji et al., "A Re-visit of the Popularity Baseline
in Recommender Systems", SIGIR 2020).

``fit(data)`` counts ``data.sequences`` of the :class:`~recsys.data.sequential.SequentialDataset`
(give it a copy holding the training part only), as WALS does.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from recsys.data.sequential import SequentialDataset
from recsys.models.base import FittedRecommender, mask_padding


@dataclass
class MostPopularConfig:
    pass


class MostPopular(FittedRecommender):
    display_name = "Most popular"

    def __init__(self, config: MostPopularConfig | None, dataset: SequentialDataset):
        super().__init__(config or MostPopularConfig(), dataset)
        self.n_items = dataset.n_items
        self.n_columns, self.padding_index = dataset.n_items + 1, 0  # column 0: the padding item
        self.counts = torch.zeros(dataset.n_items + 1)

    def fit(self, data: SequentialDataset) -> MostPopular:
        """Count each item's interactions in ``data.sequences``."""
        counts = torch.zeros(self.n_items + 1)
        for seq in data.sequences.values():
            counts.index_add_(0, torch.tensor(seq, dtype=torch.long), torch.ones(len(seq)))
        self.counts = counts
        return self

    def full_sort_predict(self, batch):
        return mask_padding(self.counts.unsqueeze(0).repeat(len(batch["user"]), 1), self.padding_index)

    def state(self) -> dict[str, torch.Tensor]:
        return {"counts": self.counts}

    def load_state(self, arrays) -> None:
        counts = torch.as_tensor(np.asarray(arrays["counts"]), dtype=torch.float32)
        if counts.shape != self.counts.shape:
            raise ValueError(f"counts has shape {tuple(counts.shape)}, expected {tuple(self.counts.shape)}")
        self.counts = counts
