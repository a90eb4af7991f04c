"""A tiny hand-made SequentialDataset shared by the sequential tests (not real data)."""

from __future__ import annotations

import torch

from recsys.data.sequential import FeatureTable, SequentialDataset


def toy_dataset(n_users: int = 12, n_items: int = 10, length: int = 6) -> SequentialDataset:
    """User u watches items (u + t) % n_items + 1 for t = 0..length-1: a deterministic 'next item' pattern."""
    sequences = {u: [((u + t) % n_items) + 1 for t in range(length)] for u in range(1, n_users + 1)}
    user_values = torch.tensor([[0, 0]] + [[1 + u % 3, 1 + u % 2] for u in range(1, n_users + 1)])
    item_values = torch.tensor([[0]] + [[1 + i % 4] for i in range(1, n_items + 1)])
    genres = torch.tensor([[0, 0]] + [[1 + i % 3, (1 + i % 2) if i % 2 else 0] for i in range(1, n_items + 1)])
    return SequentialDataset(
        name="toy",
        n_users=n_users,
        n_items=n_items,
        user_features=FeatureTable(["a", "b"], user_values, [4, 3]),
        item_features=FeatureTable(["c"], item_values, [5], multi_name="g", multi=genres, multi_cardinality=4),
        sequences=sequences,
        has_timestamps=True,
        item_names=["<pad>"] + [f"item {i}" for i in range(1, n_items + 1)],
    )
