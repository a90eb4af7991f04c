"""YouTube DNN candidate generation.

Paper: Covington, Adams & Sargin, "Deep Neural Networks for YouTube Recommendations",
RecSys 2016 (Section 3).

User vector = MLP([mean of the watch-history item embeddings, user-feature embeddings]);
item vectors are the softmax's output embeddings, so serving is a nearest-neighbour
search (two towers; the item tower is a table). The paper trains with sampled softmax;
here the negatives are the other targets of the batch (in-batch softmax), which samples
them by popularity, the same distribution the paper's importance weighting corrects to;
``logq_correction`` (on by default, as CL-EPIDTN) subtracts ``log q(item)`` from the logits
to undo that bias (Yi et al., RecSys 2019).

Embedder, ReLU MLP and initialisation are those of :mod:`recsys.models.layers` (shared with DSSM,
MIND and CL-EPIDTN); the history and output tables used to start at N(0, 0.05), now
N(0, 0.02) like every other table.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from recsys.data.sequential import SequentialDataset
from recsys.models.layers import FeatureEmbedding, embedding, masked_mean, mlp
from recsys.models.seq_features import InBatchSoftmaxTwoTower, InBatchTowerConfig


@dataclass
class YouTubeDNNConfig(InBatchTowerConfig):
    """The shared in-batch two-tower settings (embedding 64, features 16, MLP 256-128, temperature 0.1)."""


class YouTubeDNN(InBatchSoftmaxTwoTower):
    display_name = "YouTube DNN"

    def __init__(self, config: YouTubeDNNConfig, dataset: SequentialDataset):
        super().__init__(config, dataset)
        d = config.embedding_dim
        self.history_embedding = embedding(dataset.n_items + 1, d)
        self.user_features = FeatureEmbedding(dataset.user_features, config.feature_dim, "user")
        self.tower = mlp([d + self.user_features.output_dim, *config.hidden, d], dropout=config.dropout)
        self.output_embedding = embedding(dataset.n_items + 1, d)

    def user_tower(self, batch):
        seq = batch["item_seq"]
        history = masked_mean(self.history_embedding(seq), seq > 0)
        return self.tower(torch.cat([history, self.user_features(batch["user"])], dim=-1))

    def item_tower(self, items=None):
        return self.output_embedding.weight if items is None else self.output_embedding(items)
