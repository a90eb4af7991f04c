"""Shared structures for sequential recommendation data (ml-100k, and the anime sample as sequences).

Ids are 1-based for users and items; 0 is padding everywhere, so embedding tables
have ``n + 1`` rows and row 0 is never a real entity.

A training or evaluation **batch** for the sequential models (CL-EPIDTN and its
baselines) is a dict with these keys::

    "user"          LongTensor[B]           user ids
    "item_seq"      LongTensor[B, max_len]  the history before the target, right-aligned:
                                            most recent item last, 0-padding on the left
    "item_seq_len"  LongTensor[B]           number of real items in item_seq
    "item"          LongTensor[B]           the target (next) item; absent at inference

Models receive the :class:`FeatureTable` of users and of items when constructed and
look features up by id, so batches stay small. ``full_sort_predict`` returns
``[B, n_items + 1]`` scores with column 0 (padding) at ``-inf``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass
class FeatureTable:
    """Categorical features of users or items; row ``i`` describes entity ``i`` (row 0: padding).

    ``values[:, f]`` holds codes of field ``names[f]`` in ``0..cardinalities[f]-1`` (0 = unknown).
    ``multi`` is an optional multi-valued field (e.g. genres), 0-padded to a fixed width,
    with codes in ``0..multi_cardinality-1``.
    """

    names: list[str]
    values: torch.Tensor  # LongTensor [n + 1, n_fields]
    cardinalities: list[int]
    multi_name: str | None = None
    multi: torch.Tensor | None = None  # LongTensor [n + 1, width]
    multi_cardinality: int = 0


@dataclass
class SequentialDataset:
    name: str
    n_users: int
    n_items: int
    user_features: FeatureTable
    item_features: FeatureTable
    sequences: dict[int, list[int]]  # user id -> item ids, oldest first
    has_timestamps: bool  # False: order within a sequence is unknown (anime sample)
    item_names: list[str] = field(default_factory=list)  # index = item id; [0] = "<pad>"


# --------------------------------------------------------------------------------------
# Splits, training examples and batch iterators (added for the CL-EPIDTN reproduction).
# Everything below is additive: the batch keys and the two dataclasses above are unchanged.
# --------------------------------------------------------------------------------------

import math  # noqa: E402
from collections.abc import Iterator  # noqa: E402


@dataclass
class SequentialSplit:
    """One per-user split of a :class:`SequentialDataset`.

    ``train[u]`` is what the model may learn from. ``valid[u]`` / ``test[u]`` are the
    held-out targets; the *input sequence* at validation time is ``train[u]`` and at test
    time ``train[u] + valid[u]`` (everything that happened before the test items), and the
    full ranking masks exactly that input history. Users too short to split keep all their
    items in ``train`` and have no entry in ``valid``/``test``.
    """

    name: str  # "loo" (leave-one-out) | "ratio" (last 20% test)
    train: dict[int, list[int]]
    valid: dict[int, list[int]]
    test: dict[int, list[int]]

    def history(self, user: int, part: str) -> list[int]:
        """The input sequence for ``part`` ('valid' or 'test')."""
        if part == "valid":
            return self.train.get(user, [])
        if part == "test":
            return self.train.get(user, []) + self.valid.get(user, [])
        raise ValueError(f"part must be 'valid' or 'test', got {part!r}")


def leave_one_out(dataset: SequentialDataset) -> SequentialSplit:
    """Chronological leave-one-out: last item = test, second-to-last = validation.

    RecBole's ``{split: {LS: valid_and_test}, order: TO}``. A user needs at least 3 items
    (one to learn from); shorter sequences go to ``train`` whole.
    """
    train, valid, test = {}, {}, {}
    for user, seq in dataset.sequences.items():
        if len(seq) >= 3:
            train[user], valid[user], test[user] = list(seq[:-2]), [seq[-2]], [seq[-1]]
        else:
            train[user] = list(seq)
    return SequentialSplit("loo", train, valid, test)


def ratio_split(dataset: SequentialDataset, test_ratio: float = 0.2) -> SequentialSplit:
    """Each user's last ``test_ratio`` of interactions (at least one) form the test set.

    The last item before the test block is the validation target (used for early stopping
    only), so ``train + valid`` is exactly the first ``1 - test_ratio`` of the sequence.
    """
    if not 0 < test_ratio < 1:
        raise ValueError(f"test_ratio must be in (0, 1), got {test_ratio}")
    train, valid, test = {}, {}, {}
    for user, seq in dataset.sequences.items():
        n_test = max(1, math.ceil(len(seq) * test_ratio))
        if len(seq) - n_test >= 2:
            head = seq[: len(seq) - n_test]
            train[user], valid[user], test[user] = list(head[:-1]), [head[-1]], list(seq[len(seq) - n_test :])
        else:
            train[user] = list(seq)
    return SequentialSplit("ratio", train, valid, test)


def pad_left(seq: list[int], max_len: int) -> tuple[list[int], int]:
    """The last ``max_len`` items, right-aligned with 0-padding on the left, and the real length."""
    tail = list(seq[-max_len:]) if max_len > 0 else []
    return [0] * (max_len - len(tail)) + tail, len(tail)


class ShuffledBatches:
    """``batches()`` for a row store with ``__len__`` and ``batch(index)``."""

    def batches(self, batch_size: int, seed: int = 0, epoch: int = 0, shuffle: bool = True) -> Iterator[dict]:
        """One epoch of batches of ``batch_size`` rows, shuffled reproducibly by ``(seed, epoch)``."""
        generator = torch.Generator().manual_seed(seed * 100_003 + epoch)
        order = torch.randperm(len(self), generator=generator) if shuffle else torch.arange(len(self))
        for index in order.split(batch_size):
            yield self.batch(index)


@dataclass
class TrainingExamples(ShuffledBatches):
    """(history → next item) pairs from every prefix of every training sequence.

    RecBole's sequential data augmentation: a training sequence ``[a, b, c, d]`` yields
    ``[a]→b, [a, b]→c, [a, b, c]→d``. No negatives are stored: every model here scores
    the target against all items (SASRec's CE) or against the other targets of the batch
    (in-batch softmax), so the data is negative-free.
    """

    users: torch.Tensor  # [N]
    item_seq: torch.Tensor  # [N, max_len]
    item_seq_len: torch.Tensor  # [N]
    items: torch.Tensor  # [N]

    def __len__(self) -> int:
        return int(self.items.numel())

    def batch(self, index: torch.Tensor) -> dict[str, torch.Tensor]:
        return {
            "user": self.users[index],
            "item_seq": self.item_seq[index],
            "item_seq_len": self.item_seq_len[index],
            "item": self.items[index],
        }


def training_examples(sequences: dict[int, list[int]], max_len: int, min_history: int = 1) -> TrainingExamples:
    """Every (prefix, next item) pair of ``sequences``; prefixes are cut to the last ``max_len`` items."""
    users, seqs, lens, items = [], [], [], []
    for user in sorted(sequences):
        seq = sequences[user]
        for t in range(min_history, len(seq)):
            padded, length = pad_left(seq[:t], max_len)
            users.append(user)
            seqs.append(padded)
            lens.append(length)
            items.append(seq[t])
    if not items:
        raise ValueError("no training examples: every sequence is shorter than min_history + 1")
    return TrainingExamples(
        torch.tensor(users, dtype=torch.long),
        torch.tensor(seqs, dtype=torch.long).view(len(items), max_len),
        torch.tensor(lens, dtype=torch.long),
        torch.tensor(items, dtype=torch.long),
    )


@dataclass
class TrainingWindows(ShuffledBatches):
    """Every (prefix, next item) pair again, but packed as windows for sequence-parallel training.

    A causal sequence model (each position sees only earlier items) computes the user state
    after *every* prefix of a window in one pass, so a window of ``max_len`` inputs carries up
    to ``max_len`` training targets for the price of one forward pass: ``next_items[w, j]`` is
    the item that followed input ``item_seq[w, j]`` (0: no target at that position). This is
    SASRec's training scheme; it is what makes the paper-sized CL-EPIDTN affordable on a CPU.

    Long sequences are cut into windows of ``max_len`` inputs that overlap by half, walking
    back from the end; each target is trained exactly once, in the window where it has the
    most history (at least ``max_len - max_len // 2`` items, except in a sequence's first
    window). So the set of (history, target) pairs is :func:`training_examples`', with the
    history truncated to ``max_len - max_len // 2 .. max_len`` items instead of ``max_len``.
    """

    users: torch.Tensor  # [W]
    item_seq: torch.Tensor  # [W, max_len] inputs, right-aligned, 0-padded on the left
    item_seq_len: torch.Tensor  # [W]
    next_items: torch.Tensor  # [W, max_len] target after each input (0: none)

    def __len__(self) -> int:
        return int(self.users.numel())

    @property
    def n_targets(self) -> int:
        return int((self.next_items > 0).sum())

    def batch(self, index: torch.Tensor) -> dict[str, torch.Tensor]:
        return {
            "user": self.users[index],
            "item_seq": self.item_seq[index],
            "item_seq_len": self.item_seq_len[index],
            "next_items": self.next_items[index],
        }


def training_windows(sequences: dict[int, list[int]], max_len: int) -> TrainingWindows:
    """The windows of :class:`TrainingWindows` for every training sequence (see its docstring)."""
    if max_len < 2:
        raise ValueError(f"max_len must be at least 2 for window training, got {max_len}")
    stride = max_len // 2
    users, seqs, lens, targets = [], [], [], []
    for user in sorted(sequences):
        inputs, following = sequences[user][:-1], sequences[user][1:]
        end = len(inputs)
        while end > 0:
            start = max(end - max_len, 0)
            first_trained = start if start == 0 else end - stride  # earlier targets go to the next window
            padded, length = pad_left(inputs[start:end], max_len)
            wanted = [item if start + j >= first_trained else 0 for j, item in enumerate(following[start:end])]
            users.append(user)
            seqs.append(padded)
            lens.append(length)
            targets.append([0] * (max_len - length) + wanted)
            if start == 0:
                break
            end -= stride
    if not users:
        raise ValueError("no training windows: every sequence has fewer than two items")
    return TrainingWindows(
        torch.tensor(users, dtype=torch.long),
        torch.tensor(seqs, dtype=torch.long).view(len(users), max_len),
        torch.tensor(lens, dtype=torch.long),
        torch.tensor(targets, dtype=torch.long).view(len(users), max_len),
    )


def user_batches(
    split: SequentialSplit, part: str, max_len: int, batch_size: int = 512
) -> Iterator[tuple[dict[str, torch.Tensor], list[list[int]], list[list[int]]]]:
    """Evaluation batches over the users who have ``part`` targets.

    Yields ``(batch, histories, targets)``: ``batch`` has ``user``, ``item_seq``,
    ``item_seq_len`` (the input sequence, cut to ``max_len``); ``histories`` are the full
    input sequences (for masking); ``targets`` the held-out items.
    """
    held_out = split.valid if part == "valid" else split.test
    users = sorted(held_out)
    for start in range(0, len(users), batch_size):
        chunk = users[start : start + batch_size]
        histories = [split.history(u, part) for u in chunk]
        padded = [pad_left(h, max_len) for h in histories]
        batch = {
            "user": torch.tensor(chunk, dtype=torch.long),
            "item_seq": torch.tensor([p for p, _ in padded], dtype=torch.long).view(len(chunk), max_len),
            "item_seq_len": torch.tensor([n for _, n in padded], dtype=torch.long),
        }
        yield batch, histories, [held_out[u] for u in chunk]


def id_maps(raw_ids) -> dict:
    """Raw id → 1-based contiguous id, in sorted order (numeric ids sort numerically)."""
    unique = sorted(set(raw_ids), key=lambda x: (0, int(x), "") if str(x).isdigit() else (1, 0, str(x)))
    return {raw: index for index, raw in enumerate(unique, start=1)}


def bucketize(values, edges) -> list[int]:
    """Codes 1..len(edges)+1 for numeric ``values`` split at ``edges``; None/NaN → 0 (unknown)."""
    import bisect

    codes = []
    for value in values:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            codes.append(0)
        else:
            codes.append(bisect.bisect_right(edges, value) + 1)
    return codes
