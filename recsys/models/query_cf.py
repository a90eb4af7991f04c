"""Query-based collaborative filtering: similar past queries vote for their relevant videos.

Paper: user-based neighbourhood CF (J. Herlocker, J. Konstan, A. Borchers, J. Riedl,
"An Algorithmic Framework for Performing Collaborative Filtering", SIGIR 1999) with
queries in the role of users, as the collaborative-filtering baseline of the DCDT
teaching-video paper.

Each training query is a "user" whose interactions are its relevant videos. A new
query's neighbours are the ``k`` training queries with the highest cosine similarity
of their (L2-normalised) embeddings, and::

    score(v) = sum_{j in kNN(q), sim(q, j) > 0} sim(q, j) * [v relevant to j]

Why: it captures what people asking similar things found useful, without reading
the videos at all; it cannot recommend a video no training query was answered with
(the cold-start weakness that content models do not have).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from recsys.models.base import Batch, FittedRecommender

__all__ = ["QueryCF", "QueryCFConfig"]


@dataclass
class QueryCFConfig:
    k: int = 10  # neighbours (training queries) that vote

    def __post_init__(self):
        if self.k < 1:
            raise ValueError(f"k must be at least 1, got {self.k}")


class QueryCF(FittedRecommender):
    """kNN voting over the training queries: ``QueryCF(config, items).fit(items)``.

    ``fit`` reads the queries of split ``"train"`` of the items (their L2-normalised
    embeddings and relevant videos). Batch key: ``"query"`` (FloatTensor[B, E],
    L2-normalised). ``n_columns`` is the number of videos, no padding. State: the
    training query embeddings and the 0/1 vote matrix.
    """

    def __init__(self, config: QueryCFConfig, data):
        super().__init__(config, data)
        self.queries: np.ndarray | None = None
        self.votes: np.ndarray | None = None  # [n_train_queries, n_items] 0/1
        self.n_columns = int(np.shape(data.title)[0]) if data is not None else 0
        self.padding_index = None

    def fit(self, data) -> "QueryCF":
        query_emb, relevant, _, _ = data.split("train")
        self.queries = np.asarray(query_emb, dtype=np.float32)
        self.votes = np.zeros((len(self.queries), self.n_columns), dtype=np.float32)
        for row, items in enumerate(relevant):
            self.votes[row, list(items)] = 1.0
        return self

    @property
    def n_items(self) -> int:
        return self.n_columns

    def neighbours(self, query_emb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Indices ``[B, k']`` and similarities ``[B, k']`` of the nearest training queries, best first."""
        if self.queries is None:
            raise RuntimeError("QueryCF is not fitted")
        sims = np.asarray(query_emb, dtype=np.float32).reshape(-1, self.queries.shape[1]) @ self.queries.T
        k = min(self.config.k, sims.shape[1])
        idx = np.argsort(-sims, axis=1, kind="stable")[:, :k]
        return idx, np.take_along_axis(sims, idx, axis=1)

    def score_vectors(self, query_emb: np.ndarray) -> np.ndarray:
        idx, sims = self.neighbours(query_emb)
        weights = np.clip(sims, 0.0, None)  # dissimilar queries do not vote
        # scores[b] = sum_j weights[b, j] * votes[idx[b, j]]
        return np.einsum("bk,bkn->bn", weights, self.votes[idx]).astype(np.float32)

    def full_sort_predict(self, batch: Batch) -> torch.Tensor:
        return torch.from_numpy(self.score_vectors(batch["query"].detach().cpu().numpy()))

    def state(self) -> dict[str, np.ndarray]:
        if self.queries is None:
            raise RuntimeError("QueryCF is not fitted: nothing to save")
        return {"queries": self.queries, "votes": self.votes}

    def load_state(self, arrays) -> None:
        votes = np.asarray(arrays["votes"], dtype=np.float32)
        if votes.shape[1] != self.n_columns:
            raise ValueError(f"the saved votes cover {votes.shape[1]} videos, the data has {self.n_columns}")
        self.queries, self.votes = np.asarray(arrays["queries"], dtype=np.float32), votes
