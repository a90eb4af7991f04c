"""The evaluation protocol of the CL-EPIDTN reproduction (full ranking, no sampled negatives).

Protocol, in words (the same sentence is printed on every table and plot, see :data:`PROTOCOL`):

* **leave-one-out**: per user, in time order, the last interaction is the test item and
  the second-to-last the validation item; metrics HR@10, HR@50, NDCG@10;
* **ratio split**: per user, the last 20% of interactions are the test set (the item just
  before them is the validation item); metrics Recall@10, Recall@50;
* **full ranking**: every item is scored; the items of the user's input history (what the
  model saw for that user) are masked out, and so is the padding column 0. No sampled
  negatives — sampled metrics are known to mis-rank models (Krichene & Rendle, KDD 2020).

Why vectorised: ranking 1,682 items for 943 users is one ``topk`` on a matrix. The
vectorised hit/recall/ndcg below equal :mod:`recsys.eval.metrics` (tests check this on a toy).

Retrieval as deployed: :func:`faiss_topk` puts the item tower's vectors in a faiss
``IndexFlatIP`` and searches with the user tower; for a two-tower model its top-k equals
``full_sort_predict``'s (a test checks it).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch

from recsys.data.sequential import SequentialSplit, user_batches
from recsys.retrieval.topk import top_k

PROTOCOL = (
    "Per-user chronological leave-one-out (last interaction = test, second-to-last = validation); "
    "full ranking over all items the user has not interacted with (training history masked, no sampled negatives); "
    "HR@10, HR@50, NDCG@10. Recall@10/@50 on a second split where each user's last 20% of interactions are the test set."
)
PROTOCOL_NO_TIME = " Anime sample: no timestamps, so the order is unknown and file order (sorted by anime id) is used."

LOO_METRICS = ("hit@10", "hit@50", "ndcg@10")
RATIO_METRICS = ("recall@10", "recall@50")


def ranked_items(scores: torch.Tensor, histories: Sequence[Sequence[int]], k: int) -> torch.Tensor:
    """``[B, k]`` best item ids per row, padding column 0 and each row's history excluded.

    The one top-k with exclusions (:func:`recsys.retrieval.topk.top_k`): ties go to the lower
    item id, and a row with fewer than ``k`` rankable items gets ``-1`` (never a target).
    """
    scores = scores.detach().float().cpu().numpy()
    _, ids = top_k(scores, k, [[0, *h] for h in histories])
    return torch.from_numpy(ids).long()


def metrics_from_topk(topk: torch.Tensor, targets: Sequence[Sequence[int]], metrics: Sequence[str]) -> dict[str, np.ndarray]:
    """Per-row metric values from ranked item ids ``topk [B, K]`` (best first).

    hit@k = 1 if any target in the top k; recall@k = |top-k ∩ T| / |T|;
    ndcg@k = sum over hits of 1/log2(rank+1), divided by the ideal DCG of min(|T|, k) hits.
    """
    width = max((len(t) for t in targets), default=1)
    target = torch.zeros(len(targets), max(width, 1), dtype=torch.long)
    for row, items in enumerate(targets):
        target[row, : len(items)] = torch.tensor(list(items), dtype=torch.long)
    n_rel = torch.tensor([len(set(t)) for t in targets], dtype=torch.float)
    # rel[b, r] = 1 when the item at rank r+1 is one of row b's targets (0 never is: padding)
    rel = ((topk.unsqueeze(2) == target.unsqueeze(1)) & (target.unsqueeze(1) > 0)).any(2).float()
    discounts = 1.0 / torch.log2(torch.arange(2, rel.shape[1] + 2, dtype=torch.float))
    out = {}
    for name in metrics:
        base, _, k = name.partition("@")
        k = int(k)
        if k > rel.shape[1]:  # fewer items than k: the missing ranks hold nothing relevant
            rel = torch.cat([rel, torch.zeros(rel.shape[0], k - rel.shape[1])], dim=1)
            discounts = 1.0 / torch.log2(torch.arange(2, rel.shape[1] + 2, dtype=torch.float))
        hits = rel[:, :k]
        if base == "hit":
            value = hits.max(1).values
        elif base == "recall":
            value = hits.sum(1) / n_rel.clamp(min=1)
        elif base == "precision":
            value = hits.sum(1) / k
        elif base == "ndcg":
            dcg = (hits * discounts[:k]).sum(1)
            ideal = torch.stack([discounts[: int(min(n, k))].sum() for n in n_rel.tolist()])
            value = dcg / ideal.clamp(min=1e-12)
        elif base == "mrr":
            first = torch.where(hits.any(1), hits.argmax(1).float() + 1, torch.full_like(n_rel, math.inf))
            value = 1.0 / first
        else:
            raise ValueError(f"unsupported metric {name!r}; use hit, recall, precision, ndcg or mrr @K")
        out[name] = value.numpy()
    return out


def _topk_for_metrics(metrics: Sequence[str]) -> int:
    return max(int(m.partition("@")[2]) for m in metrics)


@torch.no_grad()
def evaluate_split(
    model,
    split: SequentialSplit,
    part: str = "test",
    metrics: Sequence[str] = LOO_METRICS,
    max_len: int = 50,
    batch_size: int = 512,
    mask_history: bool = True,
    per_user: bool = False,
) -> dict[str, float] | tuple[dict[str, float], dict[str, np.ndarray]]:
    """Mean metrics of ``model`` on ``split``'s ``part`` ('valid' or 'test') by full ranking.

    ``mask_history=False`` ranks the history items too (RecBole's behaviour for sequential
    models, used only for the peer check).
    """
    if hasattr(model, "eval"):
        model.eval()
    device = getattr(model, "device", torch.device("cpu"))
    k = _topk_for_metrics(metrics)
    collected: dict[str, list[np.ndarray]] = {m: [] for m in metrics}
    for batch, histories, targets in user_batches(split, part, max_len, batch_size):
        batch = {key: value.to(device) for key, value in batch.items()}
        scores = model.full_sort_predict(batch)
        topk = ranked_items(scores, histories if mask_history else [[] for _ in histories], k)
        for name, values in metrics_from_topk(topk, targets, metrics).items():
            collected[name].append(values)
    rows = {m: (np.concatenate(v) if v else np.array([])) for m, v in collected.items()}
    means = {m: float(v.mean()) if v.size else float("nan") for m, v in rows.items()}
    return (means, rows) if per_user else means


# ------------------------------------------------------------------ serving through faiss
def item_index(model):
    """A faiss ``IndexFlatIP`` over the item tower's vectors (padding row 0 left out).

    Faiss id ``j`` is item ``j + 1``. Built once per trained model, as in deployment.
    """
    import faiss

    vectors = model.item_tower().detach().float().cpu().numpy()[1:]
    index = faiss.IndexFlatIP(vectors.shape[1])
    index.add(np.ascontiguousarray(vectors, dtype=np.float32))
    return index


@torch.no_grad()
def faiss_topk(model, batch: dict[str, torch.Tensor], k: int, histories: Sequence[Sequence[int]] | None = None, index=None) -> torch.Tensor:
    """Top-``k`` item ids per user via faiss, history items filtered out by over-fetching.

    Multi-interest user towers (``[B, K, d]``, MIND) search each interest and keep each
    item's best score, which is the max-over-interests rule of ``full_sort_predict``.
    """
    index = index if index is not None else item_index(model)
    users = model.user_tower(batch).detach().float().cpu()
    if users.dim() == 2:
        users = users.unsqueeze(1)
    histories = histories or [[] for _ in range(users.shape[0])]
    out = []
    for row in range(users.shape[0]):
        seen = set(histories[row])
        fetch = min(index.ntotal, k + len(seen))
        scores, ids = index.search(np.ascontiguousarray(users[row].numpy(), dtype=np.float32), fetch)
        best: dict[int, float] = {}
        for s_row, i_row in zip(scores, ids, strict=True):
            for s, i in zip(s_row, i_row, strict=True):
                item = int(i) + 1
                if i >= 0 and item not in seen and s > best.get(item, -math.inf):
                    best[item] = float(s)
        ranked = sorted(best, key=lambda item: -best[item])[:k]
        out.append(ranked + [0] * (k - len(ranked)))
    return torch.tensor(out, dtype=torch.long)
