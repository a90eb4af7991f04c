"""Zero-shot embedding cosine: score = cos(query embedding, video text embedding).

Paper: dense retrieval with a frozen sentence encoder, N. Reimers and I. Gurevych,
"Sentence-BERT: Sentence Embeddings using Siamese BERT-Networks", EMNLP 2019 (the
all-MiniLM-L6-v2 encoder is from that family); the no-training baseline of the DCDT
teaching-video paper.

Why: it is what DCDT starts from. DCDT reuses the same frozen embeddings, so the gap
between the two measures what the learned towers, the attention and the hard
negatives add. It is a pure dual tower with identity towers: the item tower is the
video text embeddings, the user tower the query embedding.
"""

from __future__ import annotations

import numpy as np
import torch

from recsys.models.base import Batch, Recommender, TwoTowerMixin

__all__ = ["EmbeddingCosine"]


class EmbeddingCosine(TwoTowerMixin, Recommender):
    """Batch key ``"query"``: FloatTensor[B, E]; both sides are L2-normalised, so dot = cosine."""

    display_name = "Embedding cosine"

    def __init__(self):
        self.items: torch.Tensor | None = None

    @staticmethod
    def _normalise(x: torch.Tensor) -> torch.Tensor:
        return x / x.norm(dim=-1, keepdim=True).clamp_min(1e-12)

    def fit(self, item_emb: np.ndarray) -> "EmbeddingCosine":
        self.items = self._normalise(torch.as_tensor(np.asarray(item_emb), dtype=torch.float32))
        return self

    @property
    def n_items(self) -> int:
        return 0 if self.items is None else len(self.items)

    def user_tower(self, batch: Batch) -> torch.Tensor:
        return self._normalise(batch["query"].float())

    def item_tower(self, items: torch.Tensor | None = None) -> torch.Tensor:
        if self.items is None:
            raise RuntimeError("EmbeddingCosine is not fitted")
        return self.items if items is None else self.items[items]
