"""SASRec: self-attentive sequential recommendation.

Paper: Kang & McAuley, "Self-Attentive Sequential Recommendation", ICDM 2018.

Implementation follows RecBole's ``SASRec`` (the peer check compares against it):
item + learned position embeddings → LayerNorm → dropout → ``n_layers`` post-LN
Transformer blocks (multi-head causal self-attention, GELU feed-forward) → the output
at the last position is the user's state; scores are its dot product with the shared
item embedding table, and the loss is cross-entropy over all items (RecBole's default
``loss_type='CE'``). It trains on one prefix per row (RecBole's data augmentation, used in the
peer check) or on windows, every position's next item at once (Kang & McAuley's own scheme;
the same (prefix, target) pairs, see :class:`~recsys.data.sequential.TrainingWindows`), which
the reproduction uses. Sequences are right-aligned here (most recent item last), so the
state is read at the last position; position ids count from the oldest item read, as
RecBole's; padded keys are masked with -10000 like RecBole, which keeps fully-padded rows finite.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from recsys.data.sequential import SequentialDataset
from recsys.models.base import NeuralRecommender, mask_padding


@dataclass
class SASRecConfig:
    hidden_size: int = 64
    n_layers: int = 2
    n_heads: int = 2
    inner_size: int = 256
    hidden_dropout: float = 0.5
    attn_dropout: float = 0.5
    layer_norm_eps: float = 1e-12
    initializer_range: float = 0.02
    max_seq_len: int = 50


class TransformerBlock(nn.Module):
    """Post-LN block: x = LN(x + Drop(MHA(x))); x = LN(x + Drop(FFN(x)))."""

    def __init__(self, hidden: int, heads: int, inner: int, hidden_dropout: float, attn_dropout: float, eps: float):
        super().__init__()
        if hidden % heads:
            raise ValueError(f"hidden_size {hidden} is not divisible by n_heads {heads}")
        self.heads = heads
        self.qkv = nn.Linear(hidden, 3 * hidden)
        self.out = nn.Linear(hidden, hidden)
        self.attn_dropout = nn.Dropout(attn_dropout)
        self.drop1, self.drop2 = nn.Dropout(hidden_dropout), nn.Dropout(hidden_dropout)
        self.norm1, self.norm2 = nn.LayerNorm(hidden, eps=eps), nn.LayerNorm(hidden, eps=eps)
        self.ffn = nn.Sequential(nn.Linear(hidden, inner), nn.GELU(), nn.Linear(inner, hidden))

    def forward(self, x: torch.Tensor, additive_mask: torch.Tensor) -> torch.Tensor:
        b, n, h = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.heads, h // self.heads).permute(2, 0, 3, 1, 4)
        scores = q @ k.transpose(-1, -2) / (h // self.heads) ** 0.5 + additive_mask
        context = (self.attn_dropout(torch.softmax(scores, -1)) @ v).transpose(1, 2).reshape(b, n, h)
        x = self.norm1(x + self.drop1(self.out(context)))
        return self.norm2(x + self.drop2(self.ffn(x)))


def causal_mask(item_seq: torch.Tensor) -> torch.Tensor:
    """Additive mask ``[B, 1, L, L]``: 0 where query i may attend key j (j <= i, j not padding), else -10000."""
    n = item_seq.shape[1]
    allowed = torch.tril(torch.ones(n, n, dtype=torch.bool, device=item_seq.device)).unsqueeze(0)
    allowed = allowed & (item_seq > 0).unsqueeze(1)
    return (~allowed).unsqueeze(1).float() * -10000.0


class SASRec(NeuralRecommender):
    display_name = "SASRec"

    def __init__(self, config: SASRecConfig, dataset: SequentialDataset):
        super().__init__(config, dataset)
        self.n_items = dataset.n_items
        self.n_columns, self.padding_index = dataset.n_items + 1, 0  # column 0: the padding item
        self.item_embedding = nn.Embedding(dataset.n_items + 1, config.hidden_size, padding_idx=0)
        self.position_embedding = nn.Embedding(config.max_seq_len, config.hidden_size)
        self.norm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.hidden_dropout)
        self.blocks = nn.ModuleList(
            TransformerBlock(config.hidden_size, config.n_heads, config.inner_size, config.hidden_dropout,
                             config.attn_dropout, config.layer_norm_eps)
            for _ in range(config.n_layers)
        )
        self.apply(self._init_weights)

    def _init_weights(self, module):  # RecBole's initialisation
        if isinstance(module, (nn.Linear, nn.Embedding)):
            module.weight.data.normal_(0.0, self.config.initializer_range)
        elif isinstance(module, nn.LayerNorm):
            module.bias.data.zero_()
            module.weight.data.fill_(1.0)
        if isinstance(module, nn.Linear) and module.bias is not None:
            module.bias.data.zero_()

    def sequence_output(self, item_seq: torch.Tensor) -> torch.Tensor:
        """Hidden states at every position ``[B, L, d]`` (position t sees items 0..t only)."""
        n = item_seq.shape[1]
        if n > self.config.max_seq_len:
            raise ValueError(f"sequence length {n} exceeds max_seq_len {self.config.max_seq_len}")
        # RecBole's position ids: 0 = the oldest item read, so a prefix inside a window and the same
        # history on its own get the same ids (window training is then exactly per-prefix training)
        first_real = n - (item_seq > 0).sum(1, keepdim=True)
        positions = (torch.arange(n, device=item_seq.device).unsqueeze(0) - first_real).clamp(min=0)
        x = self.dropout(self.norm(self.item_embedding(item_seq) + self.position_embedding(positions)))
        mask = causal_mask(item_seq)
        for block in self.blocks:
            x = block(x, mask)
        return x

    def user_tower(self, batch):
        return self.sequence_output(batch["item_seq"])[:, -1]

    def item_tower(self, items=None):
        return self.item_embedding.weight if items is None else self.item_embedding(items)

    def calculate_loss(self, batch):
        """Cross-entropy over all items, for one target per row (``item``, RecBole's data) or for a
        target after every position (``next_items``, windows: the original SASRec's training)."""
        if "next_items" not in batch:
            logits = self.user_tower(batch) @ self.item_tower().T
            return F.cross_entropy(logits, batch["item"])
        targets = batch["next_items"]
        states = self.sequence_output(batch["item_seq"])[targets > 0]  # causal: the state after each prefix
        return F.cross_entropy(states @ self.item_tower().T, targets[targets > 0])

    def full_sort_predict(self, batch):
        return mask_padding(self.user_tower(batch) @ self.item_tower().T, self.padding_index)
