"""Splits, batches and the full-ranking protocol on hand-made toys with the arithmetic worked out."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from recsys.data.sequential import (
    SequentialSplit, leave_one_out, pad_left, ratio_split, training_examples, user_batches,
)
from recsys.eval.metrics import hit_at_k, ndcg_at_k, recall_at_k
from recsys.eval.sequential import evaluate_split, faiss_topk, metrics_from_topk, ranked_items
from tests.sequential_toy import toy_dataset


def test_leave_one_out_of_a_five_item_sequence():
    data = toy_dataset()
    data.sequences = {1: [3, 1, 4, 5, 9], 2: [2, 6]}
    split = leave_one_out(data)
    # [3, 1, 4, 5, 9]: test = last (9), validation = second-to-last (5), train = the first three
    assert split.train[1] == [3, 1, 4] and split.valid[1] == [5] and split.test[1] == [9]
    # the test input sequence is everything before the test item
    assert split.history(1, "test") == [3, 1, 4, 5]
    assert split.history(1, "valid") == [3, 1, 4]
    # a 2-item user cannot be split: all of it is training data, no held-out items
    assert split.train[2] == [2, 6] and 2 not in split.valid and 2 not in split.test


def test_ratio_split_holds_out_the_last_fifth():
    data = toy_dataset()
    data.sequences = {1: list(range(1, 11))}  # 10 items: ceil(0.2 * 10) = 2 test items
    split = ratio_split(data)
    assert split.test[1] == [9, 10] and split.valid[1] == [8] and split.train[1] == list(range(1, 8))
    data.sequences = {1: [1, 2, 3, 4, 5, 6]}  # ceil(1.2) = 2 test items
    assert ratio_split(data).test[1] == [5, 6]


def test_training_examples_are_every_prefix_right_aligned():
    examples = training_examples({7: [1, 2, 3, 4]}, max_len=2)
    # [1]->2, [1,2]->3, [1,2,3]->4 cut to the last 2 items: [2,3]->4
    assert examples.items.tolist() == [2, 3, 4]
    assert examples.item_seq.tolist() == [[0, 1], [1, 2], [2, 3]]
    assert examples.item_seq_len.tolist() == [1, 2, 2]
    assert examples.users.tolist() == [7, 7, 7]
    assert pad_left([5, 6, 7], 5) == ([0, 0, 5, 6, 7], 3)
    batches = list(examples.batches(2, seed=0, epoch=0))
    assert sorted(torch.cat([b["item"] for b in batches]).tolist()) == [2, 3, 4]


def test_ranking_hides_history_and_padding():
    scores = torch.tensor([[9.0, 1.0, 5.0, 3.0, 4.0], [0.0, 2.0, 2.0, 7.0, 1.0]])
    ranked = ranked_items(scores, [[2, 4], []], k=4)
    # row 0: padding 0 and history 2, 4 excluded -> 3 (3.0), 1 (1.0), then nothing left (-1)
    # row 1: 3 (7.0), then the tie 1/2 (2.0) in id order, then 4 (1.0)
    assert ranked.tolist() == [[3, 1, -1, -1], [3, 1, 2, 4]]
    assert scores[0, 0] == 9.0  # the input is not modified


def test_vectorised_metrics_equal_the_reference_implementation():
    topk = torch.tensor([[5, 3, 8, 1], [2, 7, 4, 6], [9, 1, 2, 3]])
    targets = [[8], [6, 2], [4]]
    got = metrics_from_topk(topk, targets, ["hit@1", "hit@3", "ndcg@3", "ndcg@4", "recall@2", "recall@4", "mrr@4"])
    # row 0: target 8 at rank 3 -> hit@3 = 1, ndcg@3 = 1/log2(4) = 0.5
    assert got["hit@3"][0] == 1 and got["ndcg@3"][0] == pytest.approx(0.5)
    # row 1: targets {6, 2} at ranks 4 and 1 -> recall@2 = 1/2, ndcg@4 = (1 + 1/log2(5)) / (1 + 1/log2(3))
    assert got["recall@2"][1] == pytest.approx(0.5)
    assert got["ndcg@4"][1] == pytest.approx((1 + 1 / math.log2(5)) / (1 + 1 / math.log2(3)))
    # row 2: no hit
    assert got["hit@3"][2] == 0 and got["ndcg@4"][2] == 0
    for row, (ranked, target) in enumerate(zip(topk.tolist(), targets, strict=True)):
        assert got["hit@1"][row] == hit_at_k(ranked, target, 1)
        assert got["ndcg@3"][row] == pytest.approx(ndcg_at_k(ranked, target, 3))
        assert got["recall@4"][row] == pytest.approx(recall_at_k(ranked, target, 4))


class FixedScores:
    """A 'model' whose scores are a fixed row per user, to check the evaluator by hand."""

    def __init__(self, table):
        self.table = torch.tensor(table, dtype=torch.float)

    def full_sort_predict(self, batch):
        return self.table[batch["user"]]


def test_evaluate_split_masks_history_and_averages_hr_ndcg():
    data = toy_dataset(n_users=2, n_items=5)
    data.sequences = {1: [1, 2, 3, 4], 2: [5, 4, 3, 2]}
    split = leave_one_out(data)  # user 1: test 4, history [1,2,3]; user 2: test 2, history [5,4,3]
    model = FixedScores([
        [0, 0, 0, 0, 0, 0],
        [0, 10, 9, 8, 1, 2],  # history 1,2,3 masked -> ranking [5, 4]: target 4 at rank 2
        [0, 1, 5, 9, 9, 9],  # history 5,4,3 masked -> ranking [2, 1]: target 2 at rank 1
    ])
    means = evaluate_split(model, split, "test", ["hit@1", "hit@2", "ndcg@2"], max_len=3)
    # hit@1 = (0 + 1) / 2; hit@2 = 1; ndcg@2 = (1/log2(3) + 1) / 2
    assert means["hit@1"] == pytest.approx(0.5)
    assert means["hit@2"] == pytest.approx(1.0)
    assert means["ndcg@2"] == pytest.approx((1 / math.log2(3) + 1) / 2)
    # without masking, user 1's target 4 falls behind items 1, 2, 3 and 5
    unmasked = evaluate_split(model, split, "test", ["hit@2"], max_len=3, mask_history=False)
    assert unmasked["hit@2"] == pytest.approx(0.0)  # user 2: items 3,4,5 (score 9) beat item 2 too


def test_user_batches_carry_full_history_but_cut_input():
    split = SequentialSplit("loo", {1: [1, 2, 3, 4]}, {1: [5]}, {1: [6]})
    batch, histories, targets = next(user_batches(split, "test", max_len=3))
    assert batch["item_seq"].tolist() == [[3, 4, 5]] and batch["item_seq_len"].tolist() == [3]
    assert histories == [[1, 2, 3, 4, 5]] and targets == [[6]]


def test_faiss_topk_equals_full_sort_predict_for_a_two_tower_model():
    from recsys.models.dssm import DSSM, DSSMConfig

    torch.manual_seed(0)
    data = toy_dataset(n_users=6, n_items=40, length=8)
    model = DSSM(DSSMConfig(embedding_dim=8, feature_dim=4, hidden=(16,), max_seq_len=5), data).eval()
    split = leave_one_out(data)
    batch, histories, _ = next(user_batches(split, "test", max_len=5))
    with torch.no_grad():
        dense = model.full_sort_predict(batch)
    expected = ranked_items(dense, histories, 10)
    got = faiss_topk(model, batch, 10, histories)
    assert torch.equal(got, expected)
    assert not any(set(row.tolist()) & set(h) for row, h in zip(got, histories, strict=True))
    masked = dense.clone()
    for row, h in enumerate(histories):
        masked[row, h] = -math.inf
    np.testing.assert_array_equal(got.numpy()[:, 0], masked.argmax(1).numpy())
