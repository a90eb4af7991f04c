"""MIND: multi-interest network with dynamic routing.

Paper: Li, Liu, Wu, Xu, Zhao, Huang, Kang, Chen, Li & Lee, "Multi-Interest Network
with Dynamic Routing for Recommendation at Tmall", CIKM 2019.

* **Multi-interest extractor (B2I dynamic routing)**: the history items are low-level
  capsules; ``K`` interest capsules are built by routing with a shared bilinear map
  ``S`` (Eq. 7-9); routing logits start from fixed random values (the paper's choice,
  which breaks the symmetry a zero start would leave between identical capsules) and
  are refined for ``routing_iterations`` rounds; the number of interests adapts to the
  history length, ``K'_u = max(1, min(K, log2 |I_u|))`` (Eq. 10).
* each capsule is concatenated with the user's feature embeddings and passed through
  an MLP (the paper's H layers) to give one interest vector;
* **label-aware attention** (training only, Eq. 11): the user vector for a target item is
  ``V_u softmax(pow(V_u^T e_i, p))``; with ``p = 1`` (the default, as in DeepMatch) this is
  a plain softmax attention; large ``p`` approaches hard max;
* **serving**: an item's score is the maximum over the interests (each interest retrieves
  its own neighbours and the results are merged), as in the paper's Section 3.5.
* **loss**: in-batch softmax with the logQ popularity correction on by default
  (``logq_correction``, as CL-EPIDTN; the paper uses sampled softmax).

Embedder, ReLU MLP and initialisation are those of :mod:`recsys.models.layers` (the item table used
to start at N(0, 0.05), now N(0, 0.02) like every other table).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from recsys.data.sequential import SequentialDataset
from recsys.models.base import NeuralRecommender, TwoTowerMixin, mask_padding
from recsys.models.layers import FeatureEmbedding, embedding, mlp
from recsys.models.seq_features import in_batch_softmax_loss, item_log_frequency


@dataclass
class MINDConfig:
    embedding_dim: int = 64
    feature_dim: int = 16
    n_interests: int = 4
    routing_iterations: int = 3
    pow_p: float = 1.0
    hidden: int = 128
    dropout: float = 0.2
    temperature: float = 0.1
    max_seq_len: int = 50
    logq_correction: bool = True  # subtract log q(item) (training frequency) from in-batch logits (Yi et al. 2019)


def squash(x: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Capsule non-linearity: keeps the direction, maps the norm into [0, 1)."""
    norm2 = (x * x).sum(dim, keepdim=True)
    return norm2 / (1 + norm2) * x / torch.sqrt(norm2 + 1e-9)


class CapsuleRouting(nn.Module):
    """B2I dynamic routing: ``[B, L, d]`` behaviour capsules → ``[B, K, d]`` interest capsules."""

    def __init__(self, dim: int, n_interests: int, max_len: int, iterations: int):
        super().__init__()
        self.bilinear = nn.Linear(dim, dim, bias=False)  # S, shared by all interest capsules
        self.n_interests, self.iterations = n_interests, iterations
        generator = torch.Generator().manual_seed(0)
        self.register_buffer("initial_logits", torch.randn(n_interests, max_len, generator=generator))

    def forward(self, behaviours: torch.Tensor, mask: torch.Tensor, n_active: torch.Tensor) -> torch.Tensor:
        batch, length, _ = behaviours.shape
        mapped = self.bilinear(behaviours)  # S e_i: [B, L, d]
        mapped_fixed = mapped.detach()  # routing coefficients are not back-propagated through
        logits = self.initial_logits[:, -length:].unsqueeze(0).expand(batch, -1, -1)  # [B, K, L]
        interest_mask = torch.arange(self.n_interests, device=mask.device).view(1, -1) < n_active.view(-1, 1)
        for iteration in range(self.iterations):
            masked = logits.masked_fill(~interest_mask.unsqueeze(2), -1e9)
            weights = torch.softmax(masked, dim=1) * mask.unsqueeze(1)  # each behaviour splits over interests
            source = mapped if iteration == self.iterations - 1 else mapped_fixed
            capsules = squash(weights @ source)  # [B, K, d]
            if iteration < self.iterations - 1:
                logits = logits + capsules @ mapped_fixed.transpose(1, 2)
        return capsules, interest_mask


class MIND(TwoTowerMixin, NeuralRecommender):
    display_name = "MIND"

    def __init__(self, config: MINDConfig, dataset: SequentialDataset):
        super().__init__(config, dataset)
        d = config.embedding_dim
        self.n_items = dataset.n_items
        self.n_columns, self.padding_index = dataset.n_items + 1, 0  # column 0: the padding item
        self.register_buffer("item_log_frequency", item_log_frequency(dataset.sequences, dataset.n_items)
                             if config.logq_correction else None, persistent=False)
        self.item_embedding = embedding(dataset.n_items + 1, d)
        self.user_features = FeatureEmbedding(dataset.user_features, config.feature_dim, "user")
        self.routing = CapsuleRouting(d, config.n_interests, config.max_seq_len, config.routing_iterations)
        self.interest_mlp = mlp([d + self.user_features.output_dim, config.hidden, d], dropout=config.dropout)

    def interests(self, batch):
        """Interest vectors ``[B, K, d]`` and which of them are active for each user."""
        seq = batch["item_seq"]
        mask = (seq > 0).float()
        length = batch.get("item_seq_len", mask.sum(1).long())
        n_active = torch.clamp(torch.floor(torch.log2(length.float().clamp(min=1))), 1, self.config.n_interests).long()
        capsules, interest_mask = self.routing(self.item_embedding(seq), mask, n_active)
        features = self.user_features(batch["user"]).unsqueeze(1).expand(-1, capsules.shape[1], -1)
        return self.interest_mlp(torch.cat([capsules, features], -1)), interest_mask

    def user_tower(self, batch):
        """All ``K`` interest vectors ``[B, K, d]``; inactive ones are zero (they never win the max
        unless every score is negative, which the -inf masking in ``full_sort_predict`` avoids)."""
        vectors, interest_mask = self.interests(batch)
        return vectors * interest_mask.unsqueeze(-1)

    def item_tower(self, items=None):
        return self.item_embedding.weight if items is None else self.item_embedding(items)

    def calculate_loss(self, batch):
        vectors, interest_mask = self.interests(batch)
        target = self.item_tower(batch["item"])  # [B, d]
        attention = (vectors @ target.unsqueeze(2)).squeeze(2)  # [B, K]
        attention = torch.pow(attention, self.config.pow_p) if self.config.pow_p != 1 else attention
        attention = torch.softmax(attention.masked_fill(~interest_mask, -math.inf), dim=1)
        user = (attention.unsqueeze(2) * vectors).sum(1)
        return in_batch_softmax_loss(user, target, batch["item"], self.config.temperature, self.item_log_frequency)

    def full_sort_predict(self, batch):
        vectors, interest_mask = self.interests(batch)
        scores = torch.einsum("bkd,nd->bkn", vectors, self.item_tower())
        scores = scores.masked_fill(~interest_mask.unsqueeze(2), -math.inf)
        return mask_padding(scores.max(1).values, self.padding_index)
