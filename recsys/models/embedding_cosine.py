"""Zero-shot embedding cosine: score = cos(query embedding, video text embedding).

**Our baseline, not the DCDT paper's.** The DCDT paper compares against BM25 and
collaborative filtering (its Table 2); this zero-shot cosine is a baseline this project
adds (registry paper key ``"ours"``). It rests on dense retrieval with a frozen
sentence encoder, N. Reimers and I. Gurevych, "Sentence-BERT: Sentence Embeddings using
Siamese BERT-Networks", EMNLP 2019 (the all-MiniLM-L6-v2 encoder is from that family).

Why we add it: it is what DCDT starts from. DCDT reuses the same frozen embeddings, so
the gap between the two measures what the learned towers, the attention and the hard
negatives add. It is a pure dual tower with identity towers: the item tower is the
video text embeddings, the user tower the query embedding.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from recsys.models.base import Batch, FittedRecommender, TwoTowerMixin

__all__ = ["EmbeddingCosine", "EmbeddingCosineConfig"]


@dataclass
class EmbeddingCosineConfig:
    """No knobs: the model is the frozen embeddings (a dataclass so every model has a config)."""


class EmbeddingCosine(TwoTowerMixin, FittedRecommender):
    """``EmbeddingCosine(config, items).fit(items)`` over ``items.text`` (the "title. description" embeddings).

    Batch key ``"query"``: FloatTensor[B, E]; both sides are L2-normalised, so dot = cosine.
    ``n_columns`` is the number of videos, no padding. State: the normalised item vectors.
    """

    def __init__(self, config: EmbeddingCosineConfig, data):
        super().__init__(config, data)
        self.items: torch.Tensor | None = None
        self.n_columns = int(np.shape(data.text)[0]) if data is not None else 0
        self.padding_index = None

    @staticmethod
    def _normalise(x: torch.Tensor) -> torch.Tensor:
        return x / x.norm(dim=-1, keepdim=True).clamp_min(1e-12)

    def fit(self, data) -> "EmbeddingCosine":
        self.items = self._normalise(torch.as_tensor(np.asarray(data.text), dtype=torch.float32))
        self.n_columns = len(self.items)
        return self

    @property
    def n_items(self) -> int:
        return self.n_columns

    def user_tower(self, batch: Batch) -> torch.Tensor:
        return self._normalise(batch["query"].float())

    def item_tower(self, items: torch.Tensor | None = None) -> torch.Tensor:
        if self.items is None:
            raise RuntimeError("EmbeddingCosine is not fitted")
        return self.items if items is None else self.items[items]

    def state(self) -> dict[str, torch.Tensor]:
        return {"items": self.item_tower()}

    def load_state(self, arrays) -> None:
        items = torch.as_tensor(np.asarray(arrays["items"]), dtype=torch.float32)
        if items.shape[0] != self.n_columns:
            raise ValueError(f"the saved item vectors cover {items.shape[0]} videos, the data has {self.n_columns}")
        self.items = items
