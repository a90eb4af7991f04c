"""DCDT: a Dual-tower model with Cross-modal attention and Dynamic hard negatives for
Teaching-video recommendation.

Paper: Ye Jin, "Deep Learning-Based Dual-Tower Contrastive Recommendation System"
(Beijing University of Posts and Telecommunications; ``shared/papers/000_*.txt``), the
DCDT model: a dual-tower recommender of teaching videos that encodes the learner's
query, the video title and the video description with a frozen pre-trained text encoder
(OpenAI text-embedding-3-small there), fuses title and description by cross-modal
attention, scores by a fusion layer over the tower outputs and their dot products, and
trains with a contrastive loss (its eq. 7) on top-30 % hard negatives. Its data set has
46 videos (test split: 5), so its Tables 2 and 3, printed beside ours, are not
comparable numbers. Where the text allows more than one implementation the reading is
documented below.

Inputs (all frozen, L2-normalised text embeddings, ``E`` = embedder dimension)::

    q  query embedding      t  title embedding      d  description embedding

Towers (hidden size ``H``)::

    q' = Dropout(ReLU(A q + a))     query tower  (dropout only while training)
    t' = ReLU(B t + b)              title tower
    d' = ReLU(C d + c)              description tower

Cross-modal attention. The issue words it ``alpha = softmax(W_q q . (W_t t + W_d d))``
"read as attention over the two modalities"; our reading: the query attends over the
two modalities of the video, with a bilinear score per modality in a key space of
size ``K`` (scaled by ``sqrt(K)`` as in scaled dot-product attention)::

    s_t = <W_q q', W_t t'> / sqrt(K)       s_d = <W_q q', W_d d'> / sqrt(K)
    (alpha_t, alpha_d) = softmax(s_t, s_d)      (= sigmoid(s_t - s_d), 1 - that)
    v = alpha_t t' + alpha_d d'                 the query-conditioned video vector

Fusion. One linear layer over the concatenation of the three tower outputs and an
interaction layer of dot products::

    score = w . [q'; t'; d'; q'.t'; q'.d'; q'.v] + bias

Our addition (``cosine_skip=True``, the default): the interaction layer also gets the
frozen cosines ``q.t`` and ``q.d``, a skip connection around the towers. On a few
hundred training queries the towers alone overfit and rank below the zero-shot
cosine of the same embeddings; with the skip the model starts from the pre-trained
similarity and learns a correction. Table 3 reports DCDT without it (the paper's
fusion as written). Both cosines are still one matrix product per query.

Our residual (``residual=True``, the default; not in the paper). The score is::

    score = s * cos(q, x) + [the paper's fused score above]

with ``x`` the frozen embedding of the video's whole text ("title. description"), so
``cos(q, x)`` is exactly the zero-shot embedding-cosine baseline, ``s`` a learnable scale
(``residual_scale``, 20 at the start: a temperature that puts cosines on the scale of the
margin), and the fusion layer initialised to zero. The untrained model therefore *is* the
zero-shot ranking, and training can only learn a correction to it: a video prior, a
query-side shift for questions in languages the English catalogue does not share, the
title/description balance. Why: on a few hundred training queries the towers alone (even
with the cosine skip) ranked below their own frozen features on the test split (MRR@10
0.737-0.745 against 0.754 with MiniLM, issue 11); starting *at* the baseline and stopping
early on validation MRR@10 keeps what the pre-trained encoder knows. The paper's fusion,
attention, towers and losses are unchanged inside the bracket; Table 3 reports DCDT
without the residual. It stays pre-computable: ``s x`` is one more block of the item tower.

Initialisation (``tied_init=True``): the title and description towers and keys start
as copies of the query side, and the fusion as ``q'.v`` (plus the cosines), so the
untrained model already ranks by a similarity of the frozen embeddings
(:meth:`DCDT._tie_initial_weights`).

Why a *linear* fusion and not an MLP: it keeps serving pre-computable, which is the
whole point of a dual tower (the MLP-over-concatenation variant is the paper's
single-tower ablation, :mod:`recsys.models.single_tower`). Expanding the fusion::

    score = [w_q.q']                      query only
          + [w_t.t' + w_d.d' + bias]      video only  ("prior")
          + u1 q'.t' + u2 q'.d' + u3 (alpha_t q'.t' + alpha_d q'.d')
          [+ u4 q.t + u5 q.d]                 with cosine_skip

Everything in the second bracket, and ``t'``, ``d'``, ``W_t t'``, ``W_d d'``, depends
only on the video, so :meth:`DCDT.item_tower` computes them once per catalogue. For a
query, :meth:`DCDT.user_tower` gives ``q'``, ``W_q q'`` and ``w_q.q'``, and scoring the
whole catalogue is four ``[1, H or K] x [H or K, n]`` matrix products plus element-wise
work (:meth:`DCDT.score_towers`); :meth:`DCDT.joint_score` is the literal
concatenate-then-fuse computation, and tests check that both give the same scores.

Loss. ``loss="contrastive"`` is the paper's eq. 7, a pairwise contrastive loss on a
distance ``d`` between the query's and the video's representations::

    L = mean over pairs [ y d + (1 - y) max(m - d, 0)^2 ]

with ``y = 1`` for the ``(q, v+)`` pair and ``y = 0`` for each ``(q, v-_k)`` pair. The
paper's ``1/N`` stands in front of the first term only; we read it as the mean over
all ``B (1 + K)`` pairs of the batch (a sum would tie the step size to the batch size).
Eq. 7 writes the distance as ``||x1 - x2||_2`` but squares it in the hinge; following the
classic contrastive loss we take ``d`` as the *squared* Euclidean distance. Which
``x1, x2``: DCDT's score is a fusion of several interactions, not one dot product, so
there is no single pair of vectors whose distance ranks the catalogue. Our reading
treats the fused score ``s`` as a similarity of two unit vectors with cosine
``tanh(s)``, whose squared distance is ``d = ||x1 - x2||^2 = 2 - 2 tanh(s)`` (in
``[0, 4]``, monotone in ``s``); training and serving then rank by the same number
(:func:`score_distance`). Positives are pulled to ``d = 0``, negatives pushed beyond
``m`` (``margin``, 1.0 by default for this loss, i.e. cosine 0.5).

The other losses are kept as options and ablated (Table 3): ``loss="margin"`` is a
margin *ranking* hinge on the fused scores, ``mean max(0, m - s(q, v+) + s(q, v-_k))``
(every negative at least ``m`` below the positive: a different thing from eq. 7, which
never compares two scores); ``loss="infonce"`` the softmax cross-entropy of the
positive among ``[v+, v-_1..v-_K]`` with temperature ``tau``.

Orthogonal constraints (``orthogonality > 0``). The paper's abstract says the dual-path
encoder "uses orthogonal constraints to decouple" query and video processing without a
formula. Ours: the squared cosines between every row of the query projection ``A``
and every row of the title and description projections ``B``, ``C``,
``lambda * (mean cos(A_i, B_j)^2 + mean cos(A_i, C_j)^2)``, added to the loss
(:meth:`DCDT.orthogonality_penalty`). It pushes the query tower to read other
directions of the embedding space than the video towers; the ablation measures what
that does. It works against ``tied_init`` (copies start with cosine 1 on the diagonal).

Dynamic hard negatives: at the start of every epoch each training query is scored
against the catalogue by the *current* model; its negatives for the epoch are drawn
uniformly from the ``hard_fraction`` (30 %) highest-scoring videos that are not
relevant to it (:func:`mine_hard_negatives`, the sampling rule, lives here with the
model; the training callback that calls it every epoch,
:class:`recsys.videos.training.HardNegativeMiner`, lives with training, so this file
imports nothing from :mod:`recsys.train`). Re-mining follows the model: what was hard
in epoch 1 may be easy by epoch 10.

Model data: ``DCDT(config, items)`` with ``items`` a
:class:`recsys.videos.prep.VideoItems`; the catalogue's frozen title and description
embeddings are taken from it (non-persistent buffers: a checkpoint holds only the
learned weights). ``n_columns`` is the number of videos; there is no padding column.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import asdict, dataclass

import numpy as np

import torch
import torch.nn.functional as F
from torch import nn

from recsys.models.base import Batch, NeuralRecommender

__all__ = [
    "DCDT",
    "DCDTConfig",
    "QueryVideoScorer",
    "contrastive_loss",
    "mine_hard_negatives",
    "score_distance",
]


@dataclass
class DCDTConfig:
    """Shapes, loss and negative sampling of DCDT (optimisation lives in ``TrainConfig``)."""

    embed_dim: int | None = None  # frozen text-embedding size (384 MiniLM, 1536 OpenAI); None: the data's
    hidden_dim: int = 64  # tower output size H
    attn_dim: int = 32  # key size K of the cross-modal attention
    dropout: float = 0.1  # query tower only
    # contrastive (the paper's eq. 7) | margin (ranking hinge) | infonce. The default is the margin hinge,
    # chosen on the validation split (3 seeds, MRR@10 0.708 against 0.703 for eq. 7 with m = 1 and 0.688
    # with m = 2); eq. 7 is the paper's configuration, reported in Table 3 (docs/results/videos).
    loss: str = "margin"
    margin: float = 0.5  # m of the margin hinge and of eq. 7 (eq. 7 works on distances in [0, 4])
    temperature: float = 0.1  # InfoNCE only
    n_negatives: int = 4  # negatives per (query, positive) pair
    hard_fraction: float = 0.3  # negatives come from this top share of non-relevant videos
    dynamic_negatives: bool = True  # False: uniform random negatives (ablation)
    # start the three towers (and W_q, W_t, W_d) from the same weights. Kept by numbers: on the validation
    # split untied towers reach MRR@10 0.624 (seed 0) against 0.708; Table 3 has the test rows
    tied_init: bool = True
    cosine_skip: bool = True  # also feed the frozen cosines q.t and q.d to the fusion layer (our addition)
    # weight of the query/video projection orthogonality term (0: off; the abstract's "orthogonal
    # constraints"). Off by default: 0.1 lowered validation MRR@10 to 0.691 (3 seeds) from 0.708
    orthogonality: float = 0.0
    # our residual (see the module docstring): score = scale * cos(q, x) + the paper's fused score, with
    # x the frozen "title. description" embedding and the fusion starting at 0, so the untrained model
    # ranks exactly as the zero-shot cosine and training learns a correction
    # on by default: chosen on the validation split (MiniLM + USE features, seed 0: MRR@10 0.699 against 0.660
    # without it, zero-shot cosine 0.596); Table 3 has "without our residual" on the test split
    residual: bool = True
    residual_scale: float = 20.0  # initial value of the learnable scale of the zero-shot cosine
    # language-balanced draw of the training pairs (read by recsys.videos.training.train_model): a share s
    # in (0, 1) draws each epoch's pairs with replacement, English pairs with total probability s and the
    # other languages' pairs with 1 - s (uniform within each group); None takes every pair once per epoch.
    # 0.7 chosen on the validation split with the 2,380 translated training queries (English 16 % of the
    # pairs), 5 seeds, MRR@10: unbalanced English 0.786 / other 0.782, 0.5: 0.796 / 0.776, 0.7: 0.808 /
    # 0.771, 0.85: 0.811 / 0.762, without the translations 0.821 / 0.722 (docs/results/videos/README.md)
    english_share: float | None = 0.7

    def to_dict(self) -> dict:
        return asdict(self)


def score_distance(score: torch.Tensor) -> torch.Tensor:
    """Squared distance ``2 - 2 tanh(s)`` of two unit vectors whose cosine is ``tanh(s)`` (eq. 7's ``d``)."""
    return 2.0 - 2.0 * torch.tanh(score)


def contrastive_loss(pos: torch.Tensor, neg: torch.Tensor, kind: str = "margin", margin: float = 0.5,
                     temperature: float = 0.1) -> torch.Tensor:
    """Loss of positive scores ``pos [B]`` against negative scores ``neg [B, K]``.

    ``contrastive`` (the paper's eq. 7): with ``d = score_distance(s)``, the mean over
    the ``B (1 + K)`` pairs of ``d`` for positives and ``max(m - d, 0)^2`` for negatives;
    ``margin``: ``mean(max(0, m - pos + neg))`` over all ``B*K`` (positive, negative) pairs;
    ``infonce``: ``mean(-log softmax([pos, neg] / tau)[0])``.
    """
    if kind == "contrastive":
        d_pos, d_neg = score_distance(pos), score_distance(neg)
        total = d_pos.sum() + F.relu(margin - d_neg).pow(2).sum()
        return total / (d_pos.numel() + d_neg.numel())
    if kind == "margin":
        return F.relu(margin - pos.unsqueeze(1) + neg).mean()
    if kind == "infonce":
        logits = torch.cat([pos.unsqueeze(1), neg], dim=1) / temperature
        return F.cross_entropy(logits, torch.zeros(len(pos), dtype=torch.long, device=pos.device))
    raise ValueError(f"unknown loss {kind!r}; choose 'contrastive', 'margin' or 'infonce'")


def mine_hard_negatives(scores: torch.Tensor, relevant: torch.Tensor, fraction: float, n_negatives: int,
                        generator: torch.Generator | None = None) -> torch.Tensor:
    """Draw ``n_negatives`` per row from the top ``fraction`` of non-relevant columns by score.

    ``scores [P, n]`` are the current model's scores of every video for each training
    pair's query; ``relevant [P, n]`` (bool) marks the videos relevant to that query,
    which are never negatives. The pool of row ``i`` is its ``ceil(fraction * m_i)``
    best-scoring non-relevant videos (``m_i`` = number of non-relevant videos, at least
    one video in the pool); draws are uniform with replacement. Returns ``LongTensor [P, n_negatives]``.
    """
    if not 0 < fraction <= 1:
        raise ValueError(f"hard_fraction must be in (0, 1], got {fraction}")
    masked = scores.detach().float().masked_fill(relevant, float("-inf"))
    order = masked.argsort(dim=1, descending=True)  # non-relevant first, best first
    n_nonrel = (~relevant).sum(dim=1)
    if bool((n_nonrel == 0).any()):
        raise ValueError("a training query has every video relevant: no negative can be drawn")
    pool = torch.clamp(torch.ceil(fraction * n_nonrel.float()).long(), min=1)
    draws = torch.rand(len(scores), n_negatives, generator=generator, device="cpu").to(scores.device)
    picks = torch.minimum((draws * pool.unsqueeze(1)).long(), pool.unsqueeze(1) - 1)
    return order.gather(1, picks)


class QueryVideoScorer(NeuralRecommender):
    """What DCDT and the single tower share: catalogue buffers, pair scoring, the training step.

    The constructor resolves ``config.embed_dim`` against the data (``None`` takes the
    data's dimension; another value must equal it: weights map one embedding space) and
    attaches the catalogue's frozen title and description embeddings as non-persistent
    buffers, so checkpoints hold learned weights only. Subclasses build their layers
    after ``super().__init__`` and provide ``joint_score(query, title, description) -> [N]``;
    ``config`` carries ``loss``, ``margin`` and ``temperature``.
    """

    def __init__(self, config, data):
        if data is None:
            raise ValueError(f"{type(self).__name__} needs the video items (title/description embeddings)")
        dim = int(np.shape(data.title)[1])
        if config.embed_dim is None:
            config = dataclasses.replace(config, embed_dim=dim)
        elif config.embed_dim != dim:
            raise ValueError(f"{type(self).__name__} was configured for {config.embed_dim}-d embeddings, "
                             f"the data has {dim}-d")
        super().__init__(config, data)
        self.n_columns = int(np.shape(data.title)[0])
        self.padding_index = None
        self.register_buffer("title_emb", torch.as_tensor(np.asarray(data.title), dtype=torch.float32),
                             persistent=False)
        self.register_buffer("desc_emb", torch.as_tensor(np.asarray(data.desc), dtype=torch.float32),
                             persistent=False)

    @property
    def n_items(self) -> int:
        return self.n_columns

    def predict(self, batch: Batch) -> torch.Tensor:
        items = batch["item"]
        q = batch["query"]
        return self.joint_score(q, self.title_emb[items], self.desc_emb[items]) + self.base_score(q, items)

    def base_score(self, q: torch.Tensor, items: torch.Tensor) -> torch.Tensor | float:
        """A score added to ``joint_score`` for paired rows (DCDT's residual: the scaled zero-shot cosine); none here."""
        return 0.0

    def calculate_loss(self, batch: Batch) -> torch.Tensor:
        q, pos, neg = batch["query"], batch["item"], batch["neg"]
        B, K = neg.shape
        # one pass over [B positives; B*K negatives] (fewer, larger ops than two passes)
        items = torch.cat([pos, neg.reshape(-1)])
        queries = torch.cat([q, q.repeat_interleave(K, dim=0)])
        scores = self.joint_score(queries, self.title_emb[items], self.desc_emb[items]) + self.base_score(queries, items)
        s_pos, s_neg = scores[:B], scores[B:].view(B, K)
        c = self.config
        return contrastive_loss(s_pos, s_neg, c.loss, c.margin, c.temperature) + self.regulariser()

    def regulariser(self) -> torch.Tensor | float:
        """Extra loss terms of a subclass (DCDT: the orthogonality term); none here."""
        return 0.0


class DCDT(QueryVideoScorer):
    """Dual tower with cross-modal (title/description) attention; see the module docstring.

    ``DCDT(config, items)``: the catalogue comes from ``items`` (:class:`~recsys.videos.prep.VideoItems`
    or anything with ``title`` and ``desc`` arrays). Batch keys: ``"query"`` FloatTensor[B, E];
    ``"item"`` LongTensor[B] (positives / pairs to score); ``"neg"`` LongTensor[B, K] (training only).
    """

    def __init__(self, config: DCDTConfig, data):
        super().__init__(config, data)
        config = self.config
        E, H, K = config.embed_dim, config.hidden_dim, config.attn_dim
        self.query_net = nn.Sequential(nn.Linear(E, H), nn.ReLU(), nn.Dropout(config.dropout))
        self.title_net = nn.Sequential(nn.Linear(E, H), nn.ReLU())
        self.desc_net = nn.Sequential(nn.Linear(E, H), nn.ReLU())
        self.W_q = nn.Linear(H, K, bias=False)
        self.W_t = nn.Linear(H, K, bias=False)
        self.W_d = nn.Linear(H, K, bias=False)
        # [q'; t'; d'] (3H) + interactions [q'.t', q'.d', q'.v] (3) [+ q.t, q.d] -> score
        self.n_inter = 5 if config.cosine_skip else 3
        self.fusion = nn.Linear(3 * H + self.n_inter, 1)
        self._frozen_items: torch.Tensor | None = None
        if config.tied_init:
            self._tie_initial_weights()
        if config.residual:
            text = getattr(data, "text", None)
            if text is None:  # tiny test data: the normalised mean of title and description
                text = F.normalize(self.title_emb + self.desc_emb, dim=1)
            self.register_buffer("text_emb", torch.as_tensor(np.asarray(text), dtype=torch.float32), persistent=False)
            self.residual_scale = nn.Parameter(torch.tensor(float(config.residual_scale)))
            with torch.no_grad():  # the correction starts at 0: the untrained model is the zero-shot cosine
                self.fusion.weight.zero_()
                self.fusion.bias.zero_()

    def _tie_initial_weights(self) -> None:
        """Start title and description towers (and keys) as copies of the query side.

        Why: with independent random towers the initial score ignores the pre-trained
        similarity between query and video text, and on a few hundred training queries
        the model must relearn it from scratch. With the same initial map ``f`` on both
        sides, ``f(q).f(t)`` is a random-feature (arc-cosine) kernel of the frozen
        embeddings, monotone in their cosine, so training starts near the zero-shot
        cosine ranking and refines it. The copies are then trained independently.
        """
        with torch.no_grad():
            for net in (self.title_net, self.desc_net):
                net[0].weight.copy_(self.query_net[0].weight)
                net[0].bias.copy_(self.query_net[0].bias)
            self.W_t.weight.copy_(self.W_q.weight)
            self.W_d.weight.copy_(self.W_q.weight)
            # the fusion starts as score = q'.v (and the frozen cosines, when used): no video prior
            H = self.config.hidden_dim
            self.fusion.weight.zero_()
            self.fusion.bias.zero_()
            self.fusion.weight[0, 3 * H + 2:] = 1.0

    def orthogonality_penalty(self) -> torch.Tensor:
        """Mean squared cosine between query-projection rows and title / description-projection rows (summed)."""
        A = F.normalize(self.query_net[0].weight, dim=1)
        return sum((A @ F.normalize(net[0].weight, dim=1).T).pow(2).mean() for net in (self.title_net, self.desc_net))

    def base_score(self, q: torch.Tensor, items: torch.Tensor) -> torch.Tensor | float:
        """``scale * cos(q, x)`` of paired rows with the residual (``x``: the frozen text embedding), else 0."""
        if not self.config.residual:
            return 0.0
        return self.residual_scale * (q * self.text_emb[items]).sum(-1)

    def regulariser(self) -> torch.Tensor | float:
        weight = self.config.orthogonality
        return weight * self.orthogonality_penalty() if weight > 0 else 0.0

    # ----- the literal computation -----
    def _fusion_parts(self):
        H = self.config.hidden_dim
        w = self.fusion.weight[0]
        return w[:H], w[H:2 * H], w[2 * H:3 * H], w[3 * H:], self.fusion.bias[0]

    def _attention(self, kq, kt, kd):
        scale = math.sqrt(self.config.attn_dim)
        s = torch.stack([(kq * kt).sum(-1), (kq * kd).sum(-1)], dim=-1) / scale
        return torch.softmax(s, dim=-1)

    def joint_score(self, q: torch.Tensor, t: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
        """Score paired rows ``(q[i], t[i], d[i])`` by the formulas as written (concatenate, then fuse)."""
        qh, th, dh = self.query_net(q), self.title_net(t), self.desc_net(d)
        alpha = self._attention(self.W_q(qh), self.W_t(th), self.W_d(dh))
        v = alpha[..., :1] * th + alpha[..., 1:] * dh
        inter = [(qh * th).sum(-1), (qh * dh).sum(-1), (qh * v).sum(-1)]
        if self.config.cosine_skip:
            inter += [(q * t).sum(-1), (q * d).sum(-1)]
        return self.fusion(torch.cat([qh, th, dh, torch.stack(inter, dim=-1)], dim=-1)).squeeze(-1)

    # ----- the two towers (serving) -----
    def user_tower(self, batch: Batch) -> torch.Tensor:
        """Query side, packed ``[B, H + K + 1 (+ E)]``: ``q'``, ``W_q q'``, the query-only term ``w_q.q'`` (and ``q``)."""
        q = batch["query"]
        qh = self.query_net(q)
        w_q = self._fusion_parts()[0]
        parts = [qh, self.W_q(qh), (qh @ w_q).unsqueeze(1)]
        if self.config.cosine_skip or self.config.residual:
            parts.append(q)
        return torch.cat(parts, dim=1)

    def item_tower(self, items: torch.Tensor | None = None) -> torch.Tensor:
        """Video side, packed ``[n, 2H + 2K + 1]``: ``t'``, ``d'``, ``W_t t'``, ``W_d d'``, prior.

        Depends on no query, so serving computes it once (:meth:`freeze_items`). The
        prior is the video-only part of the fusion, ``w_t.t' + w_d.d' + bias``.
        """
        if self._frozen_items is not None and not self.training:
            packed = self._frozen_items
        else:
            th, dh = self.title_net(self.title_emb), self.desc_net(self.desc_emb)
            _, w_t, w_d, _, bias = self._fusion_parts()
            prior = th @ w_t + dh @ w_d + bias
            parts = [th, dh, self.W_t(th), self.W_d(dh), prior.unsqueeze(1)]
            if self.config.cosine_skip:
                parts += [self.title_emb, self.desc_emb]
            if self.config.residual:
                parts.append(self.residual_scale * self.text_emb)  # scaled once here, not per query
            packed = torch.cat(parts, dim=1)
        return packed if items is None else packed[items]

    def freeze_items(self) -> torch.Tensor:
        """Pre-compute and keep the item tower (serving); training mode or new weights drop it."""
        self.eval()
        with torch.no_grad():
            self._frozen_items = None
            self._frozen_items = self.item_tower()
        return self._frozen_items

    def train(self, mode: bool = True):
        if mode:
            self._frozen_items = None
        return super().train(mode)

    def load_state_dict(self, *args, **kwargs):
        self._frozen_items = None
        return super().load_state_dict(*args, **kwargs)

    def _split_user(self, user):
        H, K = self.config.hidden_dim, self.config.attn_dim
        return user[:, :H], user[:, H:H + K], user[:, H + K], user[:, H + K + 1:]

    def _split_item(self, item):
        """``t', d', W_t t', W_d d'``, prior, ``t``, ``d`` (cosine skip) and ``scale * x`` (residual); absent parts empty."""
        H, K, E = self.config.hidden_dim, self.config.attn_dim, self.config.embed_dim
        o = 2 * H + 2 * K + 1
        skip = E if self.config.cosine_skip else 0
        return (item[:, :H], item[:, H:2 * H], item[:, 2 * H:2 * H + K], item[:, 2 * H + K:2 * H + 2 * K],
                item[:, 2 * H + 2 * K], item[:, o:o + skip], item[:, o + skip:o + 2 * skip], item[:, o + 2 * skip:])

    def attention_from_towers(self, user: torch.Tensor, item: torch.Tensor) -> torch.Tensor:
        """``alpha_t`` (weight on the title) for every (query, video): ``[B, n]``; ``alpha_d = 1 - alpha_t``."""
        _, kq, _, _ = self._split_user(user)
        _, _, kt, kd, _, _, _, _ = self._split_item(item)
        # softmax over two logits == sigmoid of their difference
        return torch.sigmoid((kq @ kt.T - kq @ kd.T) / math.sqrt(self.config.attn_dim))

    def score_towers(self, user: torch.Tensor, item: torch.Tensor) -> torch.Tensor:
        """All (query, video) scores ``[B, n]`` from the packed towers: a few matrix products."""
        qh, kq, qprior, q = self._split_user(user)
        th, dh, kt, kd, prior, t, d, x = self._split_item(item)
        u = self._fusion_parts()[3]
        qt, qd = qh @ th.T, qh @ dh.T
        alpha_t = torch.sigmoid((kq @ (kt - kd).T) / math.sqrt(self.config.attn_dim))
        qv = qd + alpha_t * (qt - qd)  # alpha_t q'.t' + (1 - alpha_t) q'.d'
        score = qprior.unsqueeze(1) + prior.unsqueeze(0) + u[0] * qt + u[1] * qd + u[2] * qv
        if self.config.cosine_skip:
            score = score + u[3] * (q @ t.T) + u[4] * (q @ d.T)
        if self.config.residual:
            score = score + q @ x.T
        return score

    # ----- contract -----
    def full_sort_predict(self, batch: Batch) -> torch.Tensor:
        return self.score_towers(self.user_tower(batch), self.item_tower())

    def contributions(self, query_vec: torch.Tensor) -> torch.Tensor:
        """Each video's score for one query split by modality: ``[n_videos, 3]`` = (title, description, rest).

        From the expansion in the module docstring: the title part is ``u1 q'.t' + u3 alpha_t q'.t'``
        (``+ u4 q.t`` with the cosine skip), the description part ``u2 q'.d' + u3 alpha_d q'.d'``
        (``+ u5 q.d``), the rest the query-only term plus the video prior (plus, with the residual,
        the scaled zero-shot cosine ``s cos(q, x)``, which reads title and description together).
        The three sum to the score exactly, so a teacher sees what each field of the video contributed.
        """
        query_vec = torch.as_tensor(query_vec, dtype=torch.float32, device=self.fusion.weight.device).view(1, -1)
        with torch.no_grad():
            user, item = self.user_tower({"query": query_vec}), self.item_tower()
            qh, kq, qprior, q = self._split_user(user)
            th, dh, kt, kd, prior, t, d, x = self._split_item(item)
            u = self._fusion_parts()[3]
            qt, qd = (qh @ th.T)[0], (qh @ dh.T)[0]
            alpha_t = torch.sigmoid((kq @ (kt - kd).T)[0] / math.sqrt(self.config.attn_dim))
            title = u[0] * qt + u[2] * alpha_t * qt
            desc = u[1] * qd + u[2] * (1 - alpha_t) * qd
            if self.config.cosine_skip:
                title = title + u[3] * (q @ t.T)[0]
                desc = desc + u[4] * (q @ d.T)[0]
            rest = qprior + prior
            if self.config.residual:  # the zero-shot cosine reads the whole text: it is neither field alone
                rest = rest + (q @ x.T)[0]
        return torch.stack([title, desc, rest], dim=1)

    def explain(self, query_vec: torch.Tensor) -> torch.Tensor:
        """Attention on title vs description for one query: ``[n_videos, 2]`` = ``(alpha_t, alpha_d)``."""
        query_vec = torch.as_tensor(query_vec, dtype=torch.float32, device=self.fusion.weight.device).view(1, -1)
        with torch.no_grad():
            alpha_t = self.attention_from_towers(self.user_tower({"query": query_vec}), self.item_tower())[0]
        return torch.stack([alpha_t, 1 - alpha_t], dim=1)
