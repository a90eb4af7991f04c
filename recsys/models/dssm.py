"""DSSM: the deep structured semantic model as a two-tower recommender.

Paper: Huang, He, Gao, Deng, Acero & Heck, "Learning Deep Structured Semantic Models
for Web Search using Clickthrough Data", CIKM 2013 — query and document MLP towers
scored by cosine similarity with a softmax over one positive and several negatives.

Here the query is the user (user-feature embeddings + the bag of history items, mean
pooled) and the document is the item (its id embedding + its features). Cosine over L2
normalised vectors divided by a temperature, softmax over the batch (in-batch negatives),
with the logQ popularity correction on by default (``logq_correction``, as CL-EPIDTN).

Building blocks: the field embedder, the MLP (ReLU) and the initialisation (N(0, 0.02),
padding rows zero) are :mod:`recsys.models.layers`, the same as CL-EPIDTN's, so DSSM and
the paper's CL-DSSM ablation differ only in the paper's components (augmented vectors,
contrastive tasks, CL-DSSM's user-id slot and summed item tokens) and their widths. Before
issue 9 DSSM used ReLU, PyTorch's N(0, 1) embedding start and the padding index on feature
codes, CL-DSSM GELU, N(0, 0.02) and a learned "unknown" code.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from recsys.data.sequential import SequentialDataset
from recsys.models.layers import FeatureEmbedding, embedding, masked_mean, mlp
from recsys.models.seq_features import InBatchSoftmaxTwoTower, InBatchTowerConfig


@dataclass
class DSSMConfig(InBatchTowerConfig):
    """The shared in-batch two-tower settings (embedding 64, features 16, MLP 256-128, temperature 0.1)."""


class DSSM(InBatchSoftmaxTwoTower):
    display_name = "DSSM"

    def __init__(self, config: DSSMConfig, dataset: SequentialDataset):
        super().__init__(config, dataset)
        d = config.embedding_dim
        self.history_embedding = embedding(dataset.n_items + 1, d)
        self.item_embedding = embedding(dataset.n_items + 1, d)
        self.user_features = FeatureEmbedding(dataset.user_features, config.feature_dim, "user")
        self.item_features = FeatureEmbedding(dataset.item_features, config.feature_dim, "item")
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
