"""DSSM: the deep structured semantic model as a two-tower recommender.

Paper: Huang, He, Gao, Deng, Acero & Heck, "Learning Deep Structured Semantic Models
for Web Search using Clickthrough Data", CIKM 2013 — query and document MLP towers
scored by cosine similarity with a softmax over one positive and several negatives.

Here the query is the user (user-feature embeddings + the bag of history items, mean
pooled) and the document is the item (its id embedding + its features). Cosine over L2
normalised vectors divided by a temperature, softmax over the batch (in-batch negatives),
with the logQ popularity correction on by default (``logq_correction``, as CL-EPIDTN).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from recsys.data.sequential import SequentialDataset
from recsys.models.seq_features import FeatureEmbedding, InBatchSoftmaxTwoTower, InBatchTowerConfig, masked_mean, mlp


@dataclass
class DSSMConfig(InBatchTowerConfig):
    """The shared in-batch two-tower settings (embedding 64, features 16, MLP 256-128, temperature 0.1)."""


class DSSM(InBatchSoftmaxTwoTower):
    display_name = "DSSM"

    def __init__(self, config: DSSMConfig, dataset: SequentialDataset):
        super().__init__(config, dataset)
        d = config.embedding_dim
        self.history_embedding = nn.Embedding(dataset.n_items + 1, d, padding_idx=0)
        self.item_embedding = nn.Embedding(dataset.n_items + 1, d, padding_idx=0)
        self.user_features = FeatureEmbedding(dataset.user_features, config.feature_dim)
        self.item_features = FeatureEmbedding(dataset.item_features, config.feature_dim)
        self.user_mlp = mlp([d + self.user_features.output_dim, *config.hidden, d], dropout=config.dropout)
        self.item_mlp = mlp([d + self.item_features.output_dim, *config.hidden, d], dropout=config.dropout)
        self.register_buffer("all_items", torch.arange(dataset.n_items + 1), persistent=False)

    def user_tower(self, batch):
        seq = batch["item_seq"]
        bag = masked_mean(self.history_embedding(seq), seq > 0)
        return F.normalize(self.user_mlp(torch.cat([bag, self.user_features(batch["user"])], -1)), dim=-1)

    def item_tower(self, items=None):
        items = self.all_items if items is None else items
        return F.normalize(self.item_mlp(torch.cat([self.item_embedding(items), self.item_features(items)], -1)), dim=-1)
