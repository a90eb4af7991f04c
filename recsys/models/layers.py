"""The field embedder and the MLP every sequential model builds its towers from.

One implementation of each, so that models differ only in what their papers say they
differ in (issue 9: DSSM and its CL-DSSM ablation used to differ in the padding index,
ReLU vs GELU and the initialisation as well). The choices, made once here:

* **code 0 is "unknown" and embeds to zeros** (``padding_idx=0``): row 0 of every feature
  table is the padding entity, and an unknown value should add nothing rather than a
  learned "unknown" direction shared by unrelated entities.
* **ReLU** between linear layers: the one paper among ours that names its tower
  activation (YouTube DNN, Covington et al. 2016) uses ReLU; CL-EPIDTN and DSSM as used
  here do not say. The Transformer blocks keep their own GELU (part of the encoder).
* **embeddings start at N(0, 0.02)** with the padding row at zero (BERT's and RecBole's
  choice): small initial vectors keep the first cosine scores near zero for every model.
  Linear layers keep PyTorch's default initialisation.
"""

from __future__ import annotations

import torch
from torch import nn

from recsys.data.sequential import FeatureTable

#: standard deviation of every embedding table's initial values
EMBEDDING_STD = 0.02


def init_embedding(table: nn.Embedding | nn.EmbeddingBag, std: float = EMBEDDING_STD) -> None:
    """N(0, std) weights with the padding row (if any) at exactly zero."""
    nn.init.normal_(table.weight, std=std)
    if table.padding_idx is not None:
        with torch.no_grad():
            table.weight[table.padding_idx].zero_()


def embedding(n: int, dim: int, padding_idx: int | None = 0) -> nn.Embedding:
    """An ``n x dim`` table initialised by :func:`init_embedding` (row 0 padding by default)."""
    table = nn.Embedding(n, dim, padding_idx=padding_idx)
    init_embedding(table)
    return table


def mlp(sizes: list[int], dropout: float = 0.0) -> nn.Sequential:
    """``Linear -> ReLU -> Dropout`` between the given widths; the last layer is linear."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:], strict=True)):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(nn.ReLU())
            if dropout:
                layers.append(nn.Dropout(dropout))
    return nn.Sequential(*layers)


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``x [..., L, d]`` over positions where ``mask [..., L]`` is true (0 if none)."""
    weights = mask.unsqueeze(-1).to(x.dtype)
    return (x * weights).sum(-2) / weights.sum(-2).clamp(min=1.0)


class FeatureEmbedding(nn.Module):
    """One ``dim``-wide embedding per categorical field of a :class:`FeatureTable`, plus a
    mean-pooled bag for its multi-valued field (genres).

    The table is held as (non-persistent) buffers, so batches carry ids only.
    :meth:`slots` gives the per-field vectors (CL-EPIDTN masks whole slots in its
    contrastive views); calling the module concatenates them (``output_dim`` wide, 0 when
    the table has no fields). Codes outside a field's cardinality are refused at
    construction, so a bad table fails loudly instead of indexing out of range later.
    """

    def __init__(self, table: FeatureTable, dim: int, kind: str = "feature"):
        super().__init__()
        values = table.values.long()
        if values.dim() != 2 or values.shape[1] != len(table.cardinalities):
            raise ValueError(f"{kind} feature table: values must be [n + 1, {len(table.cardinalities)}], "
                             f"got {tuple(values.shape)}")
        for f, (name, card) in enumerate(zip(table.names, table.cardinalities, strict=True)):
            if values.shape[0] and (values[:, f].min() < 0 or values[:, f].max() >= card):
                raise ValueError(f"{kind} field {name!r} has codes outside 0..{card - 1}")
        self.register_buffer("values", values, persistent=False)
        self.fields = nn.ModuleList(embedding(card, dim) for card in table.cardinalities)
        self.has_multi = table.multi is not None and table.multi_cardinality > 0
        if self.has_multi:
            multi = table.multi.long()
            if multi.min() < 0 or multi.max() >= table.multi_cardinality:
                raise ValueError(f"{kind} multi field {table.multi_name!r} has codes outside "
                                 f"0..{table.multi_cardinality - 1}")
            self.register_buffer("multi", multi, persistent=False)
            self.bag = nn.EmbeddingBag(table.multi_cardinality, dim, mode="mean", padding_idx=0)
            init_embedding(self.bag)
        self.dim = dim

    @property
    def n_slots(self) -> int:
        return len(self.fields) + int(self.has_multi)

    @property
    def output_dim(self) -> int:
        return self.dim * self.n_slots

    def slots(self, ids: torch.Tensor) -> list[torch.Tensor]:
        """``n_slots`` tensors ``[*ids.shape, dim]``; an all-padding genre bag gives zeros."""
        flat = ids.reshape(-1)
        codes = self.values[flat]
        out = [emb(codes[:, f]) for f, emb in enumerate(self.fields)]
        if self.has_multi:
            out.append(self.bag(self.multi[flat]))
        return [slot.reshape(*ids.shape, self.dim) for slot in out]

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        parts = self.slots(ids)
        if not parts:
            return torch.zeros(*ids.shape, 0, device=ids.device)
        return torch.cat(parts, dim=-1)
