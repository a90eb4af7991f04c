"""The anime evaluation protocols (the two-tower paper's, stated in every output).

**Unseen users** (the paper's Table 1): each of the ``n_unseen`` held-out users' rows
is shuffled with the seed and cut in half. The first ``floor(n/2)`` rows build the
user (ratings weight the average; ``-1`` rows are watched, not rated); the remaining
rows are the relevant set the top-10 should hit. Every item of the first half
(including ``-1`` rows) is excluded from that user's recommendations. Metrics are
precision@10, MAP@10 and NDCG@10 (:mod:`recsys.eval.metrics`) averaged over users.

**Seen users**: users in training; the top-10 over all items minus their train rows is
scored against their test rows (the 10 % per-user hold-out), every watched test row
being relevant.

Both protocols hand over a :class:`Histories`: a users x items CSR matrix whose values
are the ratings (``-1`` kept as ``-1``: stored, non-zero, so ``binary()`` sees it).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp

from recsys.eval.metrics import evaluate_rankings, per_row

METRICS = ("precision@10", "map@10", "ndcg@10")
PAPER_TABLE1 = {  # precision@10, MAP@10, NDCG@10 on unseen users, as printed in the paper (by registry name)
    "anime-kmeans": (0.0254, 0.0560, 0.0911),
    "anime-weighted": (0.0148, 0.0803, 0.0920),
}
UNSEEN_PROTOCOL = (
    "unseen users: each held-out user's rows shuffled (seeded) and halved; first floor(n/2) rows "
    "build the user (ratings weight, -1 = watched), the rest are the relevant set; all first-half "
    "items are excluded from the top-10; precision/MAP/NDCG@10 averaged over users"
)
SEEN_PROTOCOL = (
    "seen users: trained users' 10% per-user test rows are the relevant set; all train rows are "
    "excluded; ranking over all items; precision/MAP/NDCG@10 averaged over users with test rows"
)


@dataclass
class Histories:
    """Ratings of a batch of users as CSR (values: 1..10, or -1 = watched not rated)."""

    matrix: sp.csr_matrix
    user_ids: np.ndarray  # dataset user_id per row
    users: np.ndarray | None = None  # seen-user indices per row (None for unseen users)

    def __len__(self) -> int:
        return self.matrix.shape[0]

    def batch(self, rows: np.ndarray | None = None) -> dict:
        """The models' batch (keys documented in :mod:`recsys.anime.prep`): ``user`` (-1 for
        users outside the training data) and ``history``; ``rows`` selects a subset."""
        import torch

        rows = np.arange(len(self)) if rows is None else np.asarray(rows)
        users = np.full(len(self), -1, np.int64) if self.users is None else np.asarray(self.users, np.int64)
        return {"user": torch.as_tensor(users[rows]), "history": self.matrix[rows]}

    def watched(self) -> list[np.ndarray]:
        m = self.matrix
        return [m.indices[m.indptr[r]: m.indptr[r + 1]] for r in range(m.shape[0])]


def histories_from_frame(frame: pd.DataFrame, row_key: str, n_items: int, row_ids=None) -> tuple[sp.csr_matrix, np.ndarray]:
    """CSR of ratings with one row per distinct ``row_key`` (sorted, or ``row_ids`` in that order)."""
    keys = np.sort(frame[row_key].unique()) if row_ids is None else np.asarray(row_ids)
    row_of = pd.Series(np.arange(len(keys)), index=keys)
    rows = row_of.reindex(frame[row_key].to_numpy()).to_numpy()
    ok = ~np.isnan(rows)
    matrix = sp.csr_matrix(
        (frame["rating"].to_numpy(np.float32)[ok], (rows[ok].astype(np.int64), frame["item"].to_numpy()[ok])),
        shape=(len(keys), n_items),
    )
    return matrix, keys


def unseen_protocol(unseen: pd.DataFrame, n_items: int, seed: int = 0) -> tuple[Histories, list[np.ndarray]]:
    """The paper's unseen-user split: ``(first-half histories, second-half relevant items)``."""
    rng = np.random.default_rng(seed)
    shuffled = unseen.iloc[rng.permutation(len(unseen))].reset_index(drop=True)
    position = shuffled.groupby("user_id", sort=False).cumcount().to_numpy()
    size = shuffled["user_id"].map(shuffled["user_id"].value_counts()).to_numpy()
    build = position < size // 2
    user_ids = np.sort(shuffled["user_id"].unique())
    matrix, _ = histories_from_frame(shuffled[build], "user_id", n_items, user_ids)
    targets = _targets(shuffled[~build], "user_id", user_ids)
    return Histories(matrix, user_ids), targets


def seen_protocol(train: pd.DataFrame, test: pd.DataFrame, n_users: int, n_items: int,
                  user_ids: np.ndarray, max_users: int | None = None, seed: int = 0):
    """Seen users with test rows: ``(train histories, test items)``; optionally a seeded sample."""
    users = np.sort(test["user"].unique())
    if max_users and len(users) > max_users:
        users = np.sort(np.random.default_rng(seed).choice(users, max_users, replace=False))
    matrix, _ = histories_from_frame(train, "user", n_items, users)
    targets = _targets(test, "user", users)
    return Histories(matrix, np.asarray(user_ids)[users], users), targets


def _targets(frame: pd.DataFrame, key: str, order: np.ndarray) -> list[np.ndarray]:
    groups = frame.groupby(key)["item"].apply(np.asarray)
    return [groups.get(k, np.empty(0, np.int64)) for k in order]


def score_rankings(ranked: np.ndarray, targets: list[np.ndarray], metrics=METRICS) -> dict[str, float]:
    """Mean metrics of ranked item lists (``-1`` = empty slot) against relevant sets."""
    lists = [[int(i) for i in row if i >= 0] for row in ranked]
    return evaluate_rankings(lists, [set(map(int, t)) for t in targets], list(metrics))


def score_per_user(ranked: np.ndarray, targets: list[np.ndarray], metric: str) -> np.ndarray:
    lists = [[int(i) for i in row if i >= 0] for row in ranked]
    return per_row(lists, [set(map(int, t)) for t in targets], metric)


def mean_std_table(records: list[dict], group: list[str], metrics=METRICS) -> pd.DataFrame:
    """Mean and std over seeds of each metric, one row per ``group`` key (:func:`recsys.eval.tables.mean_std`)."""
    from recsys.eval.tables import mean_std

    frame = pd.DataFrame(records)
    rows = []
    for key, part in frame.groupby(group, sort=False):
        row = dict(zip(group, key if isinstance(key, tuple) else (key,), strict=True))
        for metric in metrics:
            row[f"{metric} mean"], row[f"{metric} std"] = mean_std(part[metric])
        row["seeds"] = len(part)
        rows.append(row)
    return pd.DataFrame(rows)
