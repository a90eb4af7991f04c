"""Data preparation of the sequential domain: datasets, splits, training views, fingerprints.

The model data is a :class:`~recsys.data.sequential.SequentialDataset` (ml-100k, or the
anime sample read as sequences). Models are always built on a *training view*: a copy of
the dataset whose ``sequences`` are a split's training part, so that nothing a model
computes from sequences at construction (CL-EPIDTN's activity buckets, the logQ table)
or fits on (WALS, most-popular) can see validation or test items.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json

import torch

from recsys.sequential import DATASETS, SPLITS
from recsys.data.sequential import (
    SequentialDataset,
    SequentialSplit,
    TrainingExamples,
    leave_one_out,
    ratio_split,
    training_examples,
)

#: the ratio split's test share (the last 20% of each user's interactions)
TEST_RATIO = 0.2


def load_dataset(name: str, anime_max_users: int | None = 1000) -> SequentialDataset:
    """ml-100k, or the first ``anime_max_users`` users of the anime sample as sequences."""
    if name == "ml-100k":
        from recsys.data.movielens import load_ml100k

        return load_ml100k()
    if name == "anime":
        from recsys.data.anime_sequences import load_anime_sequences

        return load_anime_sequences(max_users=anime_max_users)
    raise ValueError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")


def make_split(dataset: SequentialDataset, kind: str) -> SequentialSplit:
    """``loo`` (chronological leave-one-out) or ``ratio`` (each user's last 20% are the test set)."""
    if kind == "loo":
        return leave_one_out(dataset)
    if kind == "ratio":
        return ratio_split(dataset, TEST_RATIO)
    raise ValueError(f"unknown split {kind!r}; use loo or ratio")


def both_splits(dataset: SequentialDataset) -> dict[str, SequentialSplit]:
    return {kind: make_split(dataset, kind) for kind in SPLITS}


def train_view(dataset: SequentialDataset, split: SequentialSplit) -> SequentialDataset:
    """``dataset`` with only ``split.train`` as its sequences: what models are built and fitted on."""
    return dataclasses.replace(dataset, sequences=split.train)


def fingerprint(dataset: SequentialDataset, split: SequentialSplit) -> str:
    """A short hash of what a model trained on ``split`` saw: shapes and the training sequences.

    Stored in checkpoints and checked when loading, so a checkpoint is never silently
    applied to other data (another dataset, another anime subsample, another split), where
    its ids would mean other users and items.
    """
    document = {"dataset": dataset.name, "n_users": dataset.n_users, "n_items": dataset.n_items,
                "split": split.name, "train": sorted((int(u), list(map(int, s))) for u, s in split.train.items())}
    return hashlib.sha256(json.dumps(document, separators=(",", ":")).encode()).hexdigest()[:16]


def recent_only(sequences: dict[int, list[int]], max_len: int, recent: int | None) -> TrainingExamples:
    """Training examples; with ``recent`` only each user's ``recent`` latest prefixes (quick mode)."""
    if not recent:
        return training_examples(sequences, max_len)
    # the last `recent` targets of a sequence are its last `recent` prefixes
    cut = {u: s[-(recent + max_len):] for u, s in sequences.items()}
    examples = training_examples(cut, max_len)
    keep, start = [], 0
    for u in sorted(cut):
        n = max(len(cut[u]) - 1, 0)
        keep.extend(range(start + max(n - recent, 0), start + n))
        start += n
    index = torch.tensor(keep, dtype=torch.long)
    return TrainingExamples(examples.users[index], examples.item_seq[index], examples.item_seq_len[index], examples.items[index])
