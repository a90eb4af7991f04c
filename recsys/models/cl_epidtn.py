"""CL-EPIDTN: a contrastive-learning-enhanced personalized interaction dual tower network (GitHub issue 4).

Paper: Fang Yang, Binghui Wang, Pengliang Li, "Contrastive learning-enhanced personalized
interaction dual tower network for recommendation" (CL-EPIDTN), PLOS ONE, 2025,
doi:10.1371/journal.pone.0332894.

Why this model: a dual-tower retriever scores ``cos(user_tower(u), item_tower(i))``, so the
item side can be indexed once (faiss ``IndexFlatIP``) and serving is one matrix product. The
price is that the towers never see each other, and plain towers model a behaviour sequence
badly and learn poor vectors for rarely seen users and items. The paper adds three things to
the towers, each of which this module can switch off for the ablations:

1. **A multi-layer Transformer user tower** (``use_transformer``). The user's recent items
   (item-id embedding + item-feature embeddings, plus a learned position embedding) go through
   an L-layer causal ``nn.TransformerEncoder``. The user vector concatenates the encoding of
   the most recent item (real-time interest), the mean of the encodings over the real
   positions (global interest), the user-feature embeddings and the augmented vector ``a_u``,
   and an MLP maps that to ``d``. Off (the paper's *CL-DSSM* ablation): the sequence part is
   the mean of the item embeddings, a DSSM/YouTube-DNN style user tower.
2. **Personalized dual augmented vectors with an adaptive-mimic loss** (``use_augmented``),
   after the Dual Augmented Two-tower model (DAT, Yu et al. 2021). A small MLP maps the user's
   personalized features (user id, activity bucket) to ``a_u`` and another maps the item's
   (item id, category) to ``a_v``; each joins the other features at its own tower's input.
   The mimic loss pulls ``a_u`` towards the (stop-gradient) item-tower vector of the user's
   positive item and ``a_v`` towards the (stop-gradient) user-tower vector of a user who chose
   it, so each tower carries a summary of what the *other* tower thinks - the only channel
   between towers that still allows the item side to be precomputed. The stop-gradient means
   the mimic loss updates only the augmented-vector parameters (tested). Off (*CLTD*): no
   augmented vectors, no mimic loss.
3. **Three contrastive (InfoNCE) auxiliary tasks** (``use_contrastive``) for sparse users and
   long-tail items: (a) *user sequences*: two random-mask views of each user's behaviour
   sequence; negatives are the other users' views in the batch plus a random contiguous
   sub-sequence of the same user's history (a hard negative: same user, a different slice of
   interest); (b) *user attributes*: field masking then dropout on the user-feature embeddings,
   two views; (c) *items*: field masking then dropout on the item features, two views of the
   batch's items. Off (*EPIDTN*): only the main loss (and the mimic loss).

Matching is cosine (both towers are L2-normalised) and the main loss is an in-batch softmax
(InfoNCE with temperature ``temperature``) over the batch's distinct target items: each
(prefix, target) pair is scored against every distinct target of the batch, so its own
target appears once and is never also a negative; the logits are popularity-corrected by
default (``logq_correction``, below).
Total loss::

    main + lambda_cl * (seq_cl + attr_cl + item_cl) + mimic_weight * mimic

Choices made where the paper is silent (each is a knob or a comment below):

* *Sequence tokens* are the **sum** of the item-id embedding and the item's feature embeddings
  (fields + mean-pooled genres), so the Transformer width is ``d``; the item tower instead
  **concatenates** the same embeddings, because an MLP can weigh fields a sum cannot.
* *The encoder is causal* (each position attends to itself and earlier items only), as in
  SASRec. The paper does not say; a bidirectional encoder over a prefix would be equally
  leak-free, but causality makes the state at every position the user's state after that
  prefix, so one pass over a window of ``max_seq_len`` items trains up to ``max_seq_len``
  (prefix, next item) pairs (:class:`~recsys.data.sequential.TrainingWindows`) instead of one.
  At paper size on ml-100k (every prefix, one thread) an epoch takes ~2 min instead of ~21-26
  min with one pass per prefix: what makes the paper-sized model trainable on a CPU. The running mean at position
  ``j`` covers positions ``..j``. *Positions* are counted from the oldest item read (0 =
  oldest), so a prefix inside a window and the same history on its own get the same position
  ids (tested). Pre-LayerNorm layers (``norm_first``) with a final LayerNorm, GELU,
  feed-forward width ``ffn_mult * d``; a padded position attends to itself only, so no
  attention row is all-masked (which gives NaN) and real positions never read padding.
* *Activity bucket* = ``1 + floor(log2(len(sequence)))`` capped at ``n_activity_buckets - 1``
  (0: a user without history), computed from ``dataset.sequences`` as passed in - give the
  model the training sequences if test items must not be counted.
* *Item category* for ``a_v``: the item's first genre when a multi-valued field exists (for
  ml-100k the genre is a category, the release year is not), else its first categorical field,
  else none (``item_category`` chooses explicitly).
* *Mimic targets*: ``a`` has ``aug_dim`` (32) entries and tower vectors ``d`` (128), so the
  stop-gradient tower vector is mapped by a **fixed** random projection with orthonormal rows
  scaled by ``sqrt(d / aug_dim)`` (a Johnson-Lindenstrauss sketch: norms and dot products are
  kept on average). A learned projection would let the mimic loss shrink the projection and
  the augmented vectors to zero together, a trivial solution. The MSE sums over the ``aug_dim``
  entries and averages over the batch, as in DAT.
* *Sequence views* mask each real position with probability ``mask_ratio`` (replaced by a
  learned [mask] token, as CL4SRec's item mask). The contrasted vector is the sequence encoding
  (``[h_last, h_mean]``, L2-normalised, no projection head) rather than the whole user vector:
  the whole user vector contains the user-id embedding, which would make every view trivially
  tell users apart and would make the same-user hard negative identical in that part. The hard
  negative is cut from the history *in the batch row* (what the model reads), not from
  ``dataset.sequences``, so items after the target can never leak in; its length is uniform in
  ``1..max(len // 2, 1)`` at a uniform start, and users with fewer than two items get none.
  Each user of the batch appears once (first row kept), so no same-user false negatives exist
  in the sequence task.
* *Attribute views* are encoded by the real user tower with an **empty** behaviour sequence
  (the cold-start view of the user: attributes and ``a_u`` only), so the task trains the very
  path a low-activity user relies on. Masking removes whole slots (the user id, each field,
  ``a_u``) with probability ``mask_ratio``; dropout ``feature_dropout`` follows. *Item views*
  do the same through the item tower (slots: item id, each field, genres, ``a_v``). Both use
  each distinct user/item of the batch once. All three tasks are symmetric NT-Xent (each view
  is an anchor; the other views of other rows are negatives) at ``cl_temperature``.
* *Popularity*: an in-batch softmax samples negatives in proportion to popularity, so it
  over-punishes popular items (Yi et al. 2019, "Sampling-bias-corrected neural modeling").
  ``logq_correction`` subtracts ``log q(item)`` (item frequency in ``dataset.sequences``) from
  the logits, the standard fix. The paper does not mention it, but it is **on** by default:
  on ml-100k (leave-one-out, d=64, 2 layers, 3 short epochs) it moved validation HR@10 from
  0.052 to 0.143 (popularity: 0.074); set it False for the plain in-batch softmax.
* *Embedder, MLP, initialisation* are the shared ones of :mod:`recsys.models.layers`
  (feature code 0 embeds to zeros, ReLU between linear layers, every table N(0, 0.02) with
  a zero padding row), the same as DSSM's, YouTube DNN's and MIND's, so the CL-DSSM ablation
  and the DSSM baseline differ only in the paper's components. Until issue 9 this model
  used GELU in its tower MLPs and a learned embedding for feature code 0; the paper names
  neither. The Transformer layers keep GELU (the encoder's own choice, as SASRec's).
* *Cost knobs*: attention-probability dropout is separate (``attention_dropout``, default 0;
  the residual and feed-forward dropout stay at ``dropout``), and the sequence task runs on at
  most ``seq_cl_max_users`` random distinct users of the batch (128; ``None`` = all), because
  its three extra Transformer passes would otherwise cost three times the main task.

CPU training: the cost is dominated by Transformer passes: one per window for the main task
and three more for the sequence task (two views and the sub-sequence) on at most
``seq_cl_max_users`` windows of the batch. Batches count windows, so a batch of 64 windows
carries up to 64 x ``max_seq_len`` training pairs; larger batches (in pairs) than the paper's
help CPU training: per-step overhead (the token table, the item tower, the optimizer step over
every embedding row) is paid once per batch and the matrix products get more efficient.

Batch keys (see :mod:`recsys.data.sequential`): ``user``, ``item_seq`` (right-aligned, 0-padded),
``item_seq_len``; for training either ``item`` (one target per row) or ``next_items`` (a target
after each position, window training); :meth:`CLEPIDTN.predict` needs ``item``.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from recsys.data.sequential import FeatureTable, SequentialDataset
from recsys.models.base import Batch, NeuralRecommender, TwoTowerMixin
from recsys.models.layers import EMBEDDING_STD, FeatureEmbedding, embedding, mlp
from recsys.models.seq_features import item_log_frequency, logq_correct

log = logging.getLogger(__name__)

#: variant name -> (display name, flags it switches off)
VARIANTS: dict[str, tuple[str, dict[str, bool]]] = {
    "cl-epidtn": ("CL-EPIDTN", {}),
    "epidtn": ("EPIDTN", {"use_contrastive": False}),
    "cltd": ("CLTD", {"use_augmented": False}),
    "cl-dssm": ("CL-DSSM", {"use_transformer": False}),
}


@dataclass
class CLEPIDTNConfig:
    """Shapes and loss weights of CL-EPIDTN; ``variant`` picks the model or one of the paper's ablations."""

    embedding_dim: int = 128  # d: every embedding, the Transformer width and both tower outputs
    dropout: float = 0.3  # Transformer residual/feed-forward, sequence input and tower MLPs
    attention_dropout: float = 0.0  # on attention probabilities (paper silent; 0.3 costs ~25% CPU time)
    aug_dim: int = 32  # width of the augmented vectors a_u, a_v
    n_layers: int = 5  # Transformer layers L
    n_heads: int = 2
    ffn_mult: int = 2  # Transformer feed-forward width = ffn_mult * d (paper silent)
    max_seq_len: int = 50  # only the most recent max_seq_len items are read
    temperature: float = 0.1  # main in-batch InfoNCE
    cl_temperature: float = 0.2  # the three contrastive tasks
    lambda_cl: float = 1.0
    mimic_weight: float = 1.0
    mask_ratio: float = 0.2  # item mask in sequence views; slot mask in attribute/item views
    feature_dropout: float = 0.1  # dropout applied to attribute/item views after masking
    seq_cl_max_users: int | None = 128  # sequence task on at most this many users of a batch (None: all)
    logq_correction: bool = True  # subtract log(item frequency) from in-batch logits (Yi et al. 2019)
    n_activity_buckets: int = 12  # log2 buckets of sequence length (0 = no history)
    item_category: str = "auto"  # auto | genre | field: which item feature feeds a_v
    #: linear layers of the item tower's MLP: 2 (ours: input -> 2d -> d with ReLU) or 1 (the paper's eq. 11,
    #: "a layer of MLP": input -> d); see docs/results/cl-epidtn/fidelity.md
    item_tower_layers: int = 2
    #: main loss: "infonce" (in-batch softmax, the paper's eq. 25 for CL-EPIDTN), "bce" (the paper's eq. 14 for
    #: EPIDTN: binary cross-entropy, the row's target as 1 and the batch's other distinct items as 0) or "full"
    #: (ours, not the paper's: a softmax over every item, as SASRec's cross-entropy; nothing is sampled, so no
    #: log-q; the item tower runs on the whole catalogue every step, affordable for thousands of items)
    main_loss: str = "infonce"
    #: which model: ``cl-epidtn`` or one of the paper's ablations ``epidtn`` (no contrastive
    #: tasks), ``cltd`` (no augmented vectors), ``cl-dssm`` (no Transformer); the registry's
    #: entries set it through their options
    variant: str = "cl-epidtn"

    def __post_init__(self) -> None:
        self.variant = str(self.variant).lower()
        if self.variant not in VARIANTS:
            raise ValueError(f"unknown CL-EPIDTN variant {self.variant!r}; choose one of {', '.join(VARIANTS)}")

    def _uses(self, component: str) -> bool:
        return VARIANTS[self.variant][1].get(component, True)

    @property
    def use_contrastive(self) -> bool:
        return self._uses("use_contrastive")

    @property
    def use_augmented(self) -> bool:
        return self._uses("use_augmented")

    @property
    def use_transformer(self) -> bool:
        return self._uses("use_transformer")

    @property
    def variant_name(self) -> str:
        return self.variant

    def validate(self) -> None:
        if self.embedding_dim % self.n_heads:
            raise ValueError(f"embedding_dim ({self.embedding_dim}) must be divisible by n_heads ({self.n_heads})")
        if not 0.0 <= self.mask_ratio < 1.0:
            raise ValueError(f"mask_ratio must be in [0, 1), got {self.mask_ratio}")
        if self.temperature <= 0 or self.cl_temperature <= 0:
            raise ValueError("temperature and cl_temperature must be positive")
        if self.seq_cl_max_users is not None and self.seq_cl_max_users < 2:
            raise ValueError("seq_cl_max_users must be None or at least 2 (a contrastive task needs negatives)")
        if self.max_seq_len < 1 or self.n_layers < 1 or self.aug_dim < 1:
            raise ValueError("max_seq_len, n_layers and aug_dim must be at least 1")
        if self.item_tower_layers not in (1, 2):
            raise ValueError(f"item_tower_layers must be 1 or 2, got {self.item_tower_layers!r}")
        if self.main_loss not in ("infonce", "bce", "full"):
            raise ValueError(f"main_loss must be 'infonce', 'bce' or 'full', got {self.main_loss!r}")
        if self.item_category not in ("auto", "genre", "field"):
            raise ValueError(f"item_category must be auto, genre or field, got {self.item_category!r}")


def variant(name: str, **overrides) -> CLEPIDTNConfig:
    """The config of a named variant: ``cl-epidtn``, ``epidtn``, ``cltd`` or ``cl-dssm``."""
    return CLEPIDTNConfig(**{**overrides, "variant": name})


# ---------------------------------------------------------------------------------------
# losses


def info_nce(similarity: torch.Tensor, temperature: float, invalid: torch.Tensor | None = None) -> torch.Tensor:
    """InfoNCE over a ``[B, K]`` similarity matrix whose positives are on the diagonal (``K >= B``).

    ``loss = mean_i -log(exp(s_ii / t) / sum_k exp(s_ik / t))`` over the entries not marked in
    ``invalid`` (false negatives, the anchor itself); the positive is never masked.
    """
    logits = similarity / temperature
    if invalid is not None:
        logits = logits.masked_fill(invalid, float("-inf"))
    target = torch.arange(similarity.shape[0], device=similarity.device)
    return F.cross_entropy(logits, target)


def in_batch_bce(logits: torch.Tensor, positive: torch.Tensor) -> torch.Tensor:
    """The paper's eq. 14 on in-batch pairs: binary cross-entropy over every (row, item) logit.

    Row ``i``'s label is 1 at column ``positive[i]`` and 0 elsewhere; the mean runs over all
    ``B x K`` entries, so each pair, positive or negative, is one sample as in the equation.
    """
    labels = torch.zeros_like(logits)
    labels[torch.arange(logits.shape[0], device=logits.device), positive] = 1.0
    return F.binary_cross_entropy_with_logits(logits, labels)


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float, hard: torch.Tensor | None = None,
            hard_valid: torch.Tensor | None = None) -> torch.Tensor:
    """Symmetric two-view InfoNCE (SimCLR's NT-Xent) on L2-normalised views ``[B, D]``.

    For anchor ``z1_i`` the positive is ``z2_i`` and the negatives are ``z2_j`` and ``z1_j``
    for ``j != i`` (and the same with the views swapped); ``hard[i]`` adds one extra negative
    for row ``i`` only (its own hard negative) where ``hard_valid[i]``.
    """
    n = z1.shape[0]
    eye = torch.eye(n, dtype=torch.bool, device=z1.device)
    losses = []
    for a, b in ((z1, z2), (z2, z1)):
        sims = [a @ b.T, a @ a.T]
        invalid = [torch.zeros_like(eye), eye]
        if hard is not None:
            sims.append((a * hard).sum(-1, keepdim=True))
            invalid.append(~hard_valid.view(-1, 1) if hard_valid is not None else torch.zeros_like(eye[:, :1]))
        losses.append(info_nce(torch.cat(sims, 1), temperature, torch.cat(invalid, 1)))
    return (losses[0] + losses[1]) / 2


# ---------------------------------------------------------------------------------------
# building blocks


class AugmentedVector(nn.Module):
    """``a = MLP([emb(id), emb(bucket)])``: the personalized augmented vector of one tower.

    It owns its embeddings (not the towers' shared ones) so that the mimic loss, which is
    stop-gradient on the tower side, trains exactly these parameters and nothing else.
    """

    def __init__(self, n_ids: int, n_buckets: int, dim: int):
        super().__init__()
        self.id_embedding = embedding(n_ids, dim, padding_idx=None)
        self.bucket_embedding = embedding(max(n_buckets, 1), dim, padding_idx=None)
        self.mlp = mlp([2 * dim, 2 * dim, dim])

    def forward(self, ids: torch.Tensor, buckets: torch.Tensor) -> torch.Tensor:
        return self.mlp(torch.cat([self.id_embedding(ids), self.bucket_embedding(buckets)], -1))


def activity_buckets(dataset: SequentialDataset, n_buckets: int) -> torch.Tensor:
    """``[n_users + 1]`` log2 bucket of each user's sequence length (0: no history)."""
    out = torch.zeros(dataset.n_users + 1, dtype=torch.long)
    for user, seq in dataset.sequences.items():
        if not 0 < user <= dataset.n_users:
            raise ValueError(f"dataset.sequences has user id {user} outside 1..{dataset.n_users}")
        if seq:
            out[user] = min(1 + int(math.log2(len(seq))), n_buckets - 1)
    return out


def item_categories(table: FeatureTable, how: str) -> tuple[torch.Tensor, int]:
    """The category code of every item for ``a_v`` and the number of codes (see module doc)."""
    n = table.values.shape[0]
    has_multi = table.multi is not None and table.multi_cardinality > 0
    has_field = len(table.cardinalities) > 0
    if how == "genre" and not has_multi:
        raise ValueError("item_category='genre' needs a multi-valued item field (e.g. genres)")
    if how == "field" and not has_field:
        raise ValueError("item_category='field' needs at least one categorical item field")
    if has_multi and how in ("auto", "genre"):
        multi = table.multi.long()
        first = multi.gather(1, (multi != 0).long().argmax(1, keepdim=True)).squeeze(1)  # first non-pad genre
        return first, table.multi_cardinality
    if has_field:
        return table.values[:, 0].long(), table.cardinalities[0]
    return torch.zeros(n, dtype=torch.long), 1


# ---------------------------------------------------------------------------------------
# the model


class CLEPIDTN(TwoTowerMixin, NeuralRecommender):
    """CL-EPIDTN and its ablations (EPIDTN, CLTD, CL-DSSM) as one dual-tower model."""

    def __init__(self, config: CLEPIDTNConfig, dataset: SequentialDataset):
        config = config if config is not None else CLEPIDTNConfig()
        config.validate()
        super().__init__(config, dataset)
        self.display_name = VARIANTS[config.variant][0]
        self.n_users, self.n_items = dataset.n_users, dataset.n_items
        self.n_columns, self.padding_index = self.n_items + 1, 0  # column 0: the padding item
        d = config.embedding_dim
        if dataset.item_features.values.shape[0] != self.n_items + 1:
            raise ValueError(f"item feature table has {dataset.item_features.values.shape[0]} rows; "
                             f"expected n_items + 1 = {self.n_items + 1}")
        if dataset.user_features.values.shape[0] != self.n_users + 1:
            raise ValueError(f"user feature table has {dataset.user_features.values.shape[0]} rows; "
                             f"expected n_users + 1 = {self.n_users + 1}")

        # Embedding layer, shared by the towers: the item-id table serves both the behaviour
        # sequence (user tower) and the item tower.
        self.item_embedding = embedding(self.n_items + 1, d)
        self.user_embedding = embedding(self.n_users + 1, d)
        self.item_fields = FeatureEmbedding(dataset.item_features, d, "item")
        self.user_fields = FeatureEmbedding(dataset.user_features, d, "user")

        # Sequence encoder.
        self.position_embedding = embedding(config.max_seq_len, d, padding_idx=None)
        self.mask_token = nn.Parameter(torch.randn(d) * EMBEDDING_STD)  # replaces masked items in sequence views
        self.sequence_norm = nn.LayerNorm(d)
        self.sequence_dropout = nn.Dropout(config.dropout)
        if config.use_transformer:
            layer = nn.TransformerEncoderLayer(d, config.n_heads, dim_feedforward=config.ffn_mult * d,
                                               dropout=config.dropout, activation="gelu", batch_first=True,
                                               norm_first=True)
            self.encoder = nn.TransformerEncoder(layer, config.n_layers, norm=nn.LayerNorm(d),
                                                 enable_nested_tensor=False)
            for block in self.encoder.layers:  # attention-probability dropout has its own knob
                block.self_attn.dropout = config.attention_dropout
            seq_width = 2 * d  # [most recent item's encoding, mean over real positions]
        else:
            self.encoder = None
            seq_width = d  # mean-pooled item embeddings (CL-DSSM)

        # Personalized augmented vectors.
        aug = config.aug_dim if config.use_augmented else 0
        if config.use_augmented:
            self.register_buffer("user_activity", activity_buckets(dataset, config.n_activity_buckets),
                                 persistent=False)
            category, n_categories = item_categories(dataset.item_features, config.item_category)
            self.register_buffer("item_category", category, persistent=False)
            self.user_aug = AugmentedVector(self.n_users + 1, config.n_activity_buckets, config.aug_dim)
            self.item_aug = AugmentedVector(self.n_items + 1, n_categories, config.aug_dim)
            # fixed sketch d -> aug_dim with orthonormal rows, scaled to keep norms (see module doc)
            g = torch.Generator().manual_seed(0)
            q, _ = torch.linalg.qr(torch.randn(d, config.aug_dim, generator=g))
            self.register_buffer("mimic_projection", q * math.sqrt(d / config.aug_dim), persistent=False)

        if config.logq_correction:
            self.register_buffer("item_log_frequency", item_log_frequency(dataset.sequences, self.n_items),
                                 persistent=False)

        # Towers.
        self.n_user_slots = 1 + self.user_fields.n_slots  # user id + fields
        self.n_item_slots = 1 + self.item_fields.n_slots  # item id + fields (+ genres)
        self.user_mlp = mlp([seq_width + self.n_user_slots * d + aug, 2 * d, d], config.dropout)
        item_hidden = [2 * d] if config.item_tower_layers == 2 else []
        self.item_mlp = mlp([self.n_item_slots * d + aug, *item_hidden, d], config.dropout)
        self.last_loss_parts: dict[str, float] = {}
        log.debug("%s: %d parameters (%s)", self.display_name, sum(p.numel() for p in self.parameters()),
                  self.extra_repr())

    # -- embeddings ------------------------------------------------------------------------

    def _item_slots(self, items: torch.Tensor) -> list[torch.Tensor]:
        return [self.item_embedding(items), *self.item_fields.slots(items)]

    def _user_slots(self, users: torch.Tensor) -> list[torch.Tensor]:
        return [self.user_embedding(users), *self.user_fields.slots(users)]

    def _token_table(self) -> torch.Tensor:
        """``[n_items + 1, d]`` sequence token of every item: id embedding + feature embeddings."""
        items = torch.arange(self.n_items + 1, device=self.item_embedding.weight.device)
        table = torch.stack(self._item_slots(items), 0).sum(0)
        return table * (items != 0).unsqueeze(1)  # the padding token is exactly zero

    def _user_aug(self, users: torch.Tensor) -> torch.Tensor:
        return self.user_aug(users, self.user_activity[users])

    def _item_aug(self, items: torch.Tensor) -> torch.Tensor:
        return self.item_aug(items, self.item_category[items])

    # -- sequence encoder -------------------------------------------------------------------

    def _read_sequence(self, batch: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """The batch's history cut to ``max_seq_len`` and to its longest real history."""
        if "item_seq" not in batch:
            raise KeyError("CL-EPIDTN needs batch['item_seq'] (LongTensor[B, max_len], right-aligned, 0-padded)")
        seq = batch["item_seq"].long()
        if seq.dim() != 2:
            raise ValueError(f"batch['item_seq'] must be [B, max_len], got shape {tuple(seq.shape)}")
        lens = batch["item_seq_len"].long() if "item_seq_len" in batch else (seq != 0).sum(1)
        if seq.numel() and (seq.min() < 0 or seq.max() > self.n_items):
            raise ValueError(f"batch['item_seq'] has item ids outside 0..{self.n_items}")
        width = min(seq.shape[1], self.config.max_seq_len)
        lens = lens.clamp(0, width)
        t = max(int(lens.max()) if lens.numel() else 0, 1)
        return seq[:, seq.shape[1] - t:], lens

    def encode_sequence(self, seq: torch.Tensor, lens: torch.Tensor, table: torch.Tensor,
                        mask_ratio: float = 0.0, every_position: bool = False) -> torch.Tensor:
        """Encode right-aligned histories ``[B, T]`` with ``lens`` real items.

        The encoder is causal: position ``j`` reads inputs ``..j`` only, so the state at ``j`` is
        the user's state after that prefix. ``every_position=True`` returns all of them,
        ``[B, T, seq_width]`` (window training); otherwise ``[B, seq_width]`` after the whole history.
        Padding never reaches a real position: padded tokens are zero, no query reads a padded
        key (a padded query reads only itself, so no attention row is empty) and the running
        mean counts real positions only.
        """
        if not every_position:
            t_real = max(int(lens.max()) if lens.numel() else 0, 1)
            if seq.shape[1] > t_real:  # drop columns that are padding in every row (e.g. short sub-sequences)
                seq = seq[:, seq.shape[1] - t_real:]
        b, t = seq.shape
        lens = lens.clamp(max=t)
        cols = torch.arange(t, device=seq.device)
        first_real = (t - lens).unsqueeze(1)
        real = cols.unsqueeze(0) >= first_real  # [B, T]
        tokens = table[seq]
        if mask_ratio > 0:
            masked = (torch.rand(b, t, device=seq.device) < mask_ratio) & real
            tokens = torch.where(masked.unsqueeze(-1), self.mask_token.to(tokens.dtype), tokens)
        tokens = tokens * real.unsqueeze(-1)
        n_seen = real.cumsum(1).clamp(min=1).unsqueeze(-1)  # real positions up to and including j
        if self.encoder is None:  # CL-DSSM: the running mean of the item tokens
            tokens = self.sequence_dropout(self.sequence_norm(tokens)) * real.unsqueeze(-1)
            states = tokens.cumsum(1) / n_seen
        else:
            position = (cols.unsqueeze(0) - first_real).clamp(min=0)  # 0 = oldest item read
            h = self.sequence_dropout(self.sequence_norm(tokens + self.position_embedding(position)))
            causal = torch.tril(torch.ones(t, t, dtype=torch.bool, device=seq.device))
            allowed = (causal.unsqueeze(0) & real.unsqueeze(1)) | torch.eye(t, dtype=torch.bool, device=seq.device)
            blocked = (~allowed).repeat_interleave(self.config.n_heads, dim=0)  # [B * heads, T, T]
            h = self.encoder(h, mask=blocked)
            mean = (h * real.unsqueeze(-1)).cumsum(1) / n_seen
            states = torch.cat([h, mean], -1)  # [most recent item's encoding, mean over the prefix]
        return states if every_position else states[:, -1]

    # -- towers -----------------------------------------------------------------------------

    def _check_ids(self, ids: torch.Tensor, n: int, what: str) -> torch.Tensor:
        ids = ids.long()
        if ids.numel() and (ids.min() < 0 or ids.max() > n):
            raise ValueError(f"{what} ids must be in 0..{n}; got {int(ids.min())}..{int(ids.max())}")
        return ids

    def _user_vector(self, seq_repr: torch.Tensor, slots: list[torch.Tensor],
                     a_u: torch.Tensor | None) -> torch.Tensor:
        parts = [seq_repr, *slots] + ([a_u] if a_u is not None else [])
        return F.normalize(self.user_mlp(torch.cat(parts, -1)), dim=-1)

    def _item_vector(self, slots: list[torch.Tensor], a_v: torch.Tensor | None) -> torch.Tensor:
        parts = list(slots) + ([a_v] if a_v is not None else [])
        return F.normalize(self.item_mlp(torch.cat(parts, -1)), dim=-1)

    def _user_forward(self, batch: Batch, table: torch.Tensor | None = None):
        users = self._check_ids(batch["user"], self.n_users, "user")
        seq, lens = self._read_sequence(batch)
        table = self._token_table() if table is None else table
        a_u = self._user_aug(users) if self.config.use_augmented else None
        u = self._user_vector(self.encode_sequence(seq, lens, table), self._user_slots(users), a_u)
        return u, a_u, seq, lens

    def user_tower(self, batch: Batch) -> torch.Tensor:
        """``[B, d]`` L2-normalised user vectors from ``user``, ``item_seq``, ``item_seq_len``."""
        return self._user_forward(batch)[0]

    def item_tower(self, items: torch.Tensor | None = None) -> torch.Tensor:
        """``[n, d]`` L2-normalised item vectors; all items ``0..n_items`` when ``items`` is None.

        Row 0 of the full table is the padding item and is all zeros (score 0, never ranked:
        :meth:`full_sort_predict` sets its column to ``-inf``).
        """
        full = items is None
        if full:
            items = torch.arange(self.n_items + 1, device=self.item_embedding.weight.device)
        items = self._check_ids(items, self.n_items, "item")
        a_v = self._item_aug(items) if self.config.use_augmented else None
        v = self._item_vector(self._item_slots(items), a_v)
        if full:
            v = v * (items != 0).unsqueeze(1)
        return v

    def predict(self, batch: Batch) -> torch.Tensor:
        """``[B]`` cosine score of each row's ``item``."""
        return (self.user_tower(batch) * self.item_tower(batch["item"])).sum(-1)

    # -- training ---------------------------------------------------------------------------

    def _mask_slots(self, slots: list[torch.Tensor]) -> list[torch.Tensor]:
        """Drop whole slots with probability ``mask_ratio`` per row, then ``feature_dropout``."""
        n = slots[0].shape[0]
        keep = (torch.rand(n, len(slots), device=slots[0].device) >= self.config.mask_ratio).to(slots[0].dtype)
        return [F.dropout(s * keep[:, k:k + 1], self.config.feature_dropout, self.training)
                for k, s in enumerate(slots)]

    @staticmethod
    def _first_rows(ids: torch.Tensor) -> torch.Tensor:
        """Index of the first row of each distinct id in ``ids``."""
        unique, inverse = torch.unique(ids, return_inverse=True)
        rows = torch.arange(ids.shape[0], device=ids.device)
        first = torch.full((unique.shape[0],), ids.shape[0], device=ids.device, dtype=torch.long)
        return first.scatter_reduce(0, inverse, rows, reduce="amin")

    @staticmethod
    def random_subsequence(seq: torch.Tensor, lens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """A random contiguous slice of each right-aligned history, right-aligned again.

        Length uniform in ``1..max(len // 2, 1)``, start uniform; returns ``(sub_seq, sub_len)``.
        """
        b, t = seq.shape
        half = (lens // 2).clamp(min=1)
        sub_len = torch.minimum(1 + (torch.rand(b, device=seq.device) * half).long(), lens.clamp(min=1))
        offset = (torch.rand(b, device=seq.device) * (lens - sub_len + 1).clamp(min=1)).long()
        shift = (lens - offset - sub_len).clamp(min=0)  # how far the slice moves right to end at t-1
        cols = torch.arange(t, device=seq.device).unsqueeze(0)
        sub = seq.gather(1, (cols - shift.unsqueeze(1)).clamp(min=0))
        sub = sub * (cols >= t - sub_len.unsqueeze(1))
        return sub, sub_len

    def _targets(self, batch: Batch, seq: torch.Tensor, lens: torch.Tensor) -> torch.Tensor:
        """``[B, T]`` target after each input column of ``seq`` (0: none), from either batch kind.

        A window batch carries ``next_items`` (see :class:`~recsys.data.sequential.TrainingWindows`);
        a prefix batch carries one ``item`` per row, the target after its last input (for a row
        without history, after the empty sequence: the cold-start case).
        """
        t = seq.shape[1]
        if "next_items" in batch:
            targets = batch["next_items"].long()
            if targets.shape != batch["item_seq"].shape:
                raise ValueError(f"batch['next_items'] must have item_seq's shape {tuple(batch['item_seq'].shape)}, "
                                 f"got {tuple(targets.shape)}")
            dropped, targets = targets[:, : targets.shape[1] - t], targets[:, targets.shape[1] - t:]
            targets = self._check_ids(targets, self.n_items, "next_items")
            real = torch.arange(t, device=seq.device).unsqueeze(0) >= (t - lens).unsqueeze(1)
            if (dropped > 0).any() or ((targets > 0) & ~real).any():
                raise ValueError("batch['next_items'] has a target after a padding position")
            return targets
        if "item" not in batch:
            raise KeyError("training batches need batch['item'] (the target of each row) or batch['next_items']")
        targets = torch.zeros_like(seq)
        targets[:, -1] = self._check_ids(batch["item"], self.n_items, "item")
        return targets

    def loss_parts(self, batch: Batch) -> dict[str, torch.Tensor]:
        """Every loss term of the enabled components, unweighted (``calculate_loss`` weighs them).

        Every (prefix, target) pair of the batch is one example of the main task; its
        negatives are the batch's other distinct target items (an in-batch softmax whose
        columns are the distinct items, so a duplicate of the row's own target is never a
        negative).
        """
        cfg = self.config
        users = self._check_ids(batch["user"], self.n_users, "user")
        seq, lens = self._read_sequence(batch)
        targets = self._targets(batch, seq, lens)
        rows, cols = targets.nonzero(as_tuple=True)
        if rows.numel() == 0:
            raise ValueError("the batch has no training target")
        table = self._token_table()
        states = self.encode_sequence(seq, lens, table, every_position=True)
        a_u = self._user_aug(users) if cfg.use_augmented else None
        user_slots = self._user_slots(users)
        u = self._user_vector(states[rows, cols], [s[rows] for s in user_slots],
                              a_u[rows] if a_u is not None else None)
        items, positive = torch.unique(targets[rows, cols], return_inverse=True)
        a_v = self._item_aug(items) if cfg.use_augmented else None
        v = self._item_vector(self._item_slots(items), a_v)

        if cfg.main_loss == "full":  # every item is a negative: columns 1..n_items, the target's column is id - 1
            logits = u @ self.item_tower()[1:].T / cfg.temperature
            parts = {"main": F.cross_entropy(logits, targets[rows, cols] - 1)}
        else:
            logits = u @ v.T / cfg.temperature
            if cfg.logq_correction:  # logits - log q(item): popular items are not over-punished as negatives
                logits = logq_correct(logits, self.item_log_frequency, items)
            parts = {"main": in_batch_bce(logits, positive) if cfg.main_loss == "bce"
                     else F.cross_entropy(logits, positive)}

        if cfg.use_contrastive:
            first = self._first_rows(users)  # each user once
            seq_rows = first
            if cfg.seq_cl_max_users is not None and len(first) > cfg.seq_cl_max_users:
                # rows are in user-id order; a random subset keeps the task unbiased across ids
                keep = torch.randperm(len(first), device=first.device)[: cfg.seq_cl_max_users]
                seq_rows = first[keep]
            s_seq, s_len = seq[seq_rows], lens[seq_rows]
            z1 = F.normalize(self.encode_sequence(s_seq, s_len, table, cfg.mask_ratio), dim=-1)
            z2 = F.normalize(self.encode_sequence(s_seq, s_len, table, cfg.mask_ratio), dim=-1)
            sub, sub_len = self.random_subsequence(s_seq, s_len)
            hard = F.normalize(self.encode_sequence(sub, sub_len, table), dim=-1)
            parts["seq_cl"] = nt_xent(z1, z2, cfg.cl_temperature, hard, s_len >= 2)

            # Attribute views go through the user tower with an empty history (cold-start view).
            slots = [s[first] for s in user_slots] + ([a_u[first]] if a_u is not None else [])
            empty = torch.zeros(len(first), self.user_mlp[0].in_features - sum(s.shape[1] for s in slots),
                                device=u.device, dtype=u.dtype)
            views = [F.normalize(self.user_mlp(torch.cat([empty, *self._mask_slots(slots)], -1)), dim=-1)
                     for _ in range(2)]
            parts["attr_cl"] = nt_xent(views[0], views[1], cfg.cl_temperature)

            slots = self._item_slots(items) + ([a_v] if a_v is not None else [])  # each distinct item once
            views = [F.normalize(self.item_mlp(torch.cat(self._mask_slots(slots), -1)), dim=-1) for _ in range(2)]
            parts["item_cl"] = nt_xent(views[0], views[1], cfg.cl_temperature)

        if cfg.use_augmented:
            # Adaptive mimic: each augmented vector imitates the other tower's (frozen) view.
            p = self.mimic_projection
            parts["mimic"] = (((a_u[rows] - v[positive].detach() @ p) ** 2).sum(-1).mean()
                              + ((a_v[positive] - u.detach() @ p) ** 2).sum(-1).mean())
        return parts

    def calculate_loss(self, batch: Batch) -> torch.Tensor:
        """``main + lambda_cl * (seq + attr + item) + mimic_weight * mimic``; parts in ``last_loss_parts``."""
        parts = self.loss_parts(batch)
        weights = {"main": 1.0, "seq_cl": self.config.lambda_cl, "attr_cl": self.config.lambda_cl,
                   "item_cl": self.config.lambda_cl, "mimic": self.config.mimic_weight}
        loss = sum(weights[k] * v for k, v in parts.items())
        self.last_loss_parts = {k: float(v.detach()) for k, v in parts.items()}
        return loss

    def extra_repr(self) -> str:
        cfg = self.config
        layers = cfg.n_layers if cfg.use_transformer else 0
        return (f"variant={cfg.variant_name}, d={cfg.embedding_dim}, layers={layers}, "
                f"aug_dim={cfg.aug_dim if cfg.use_augmented else 0}, contrastive={cfg.use_contrastive}")
