"""Ranking metrics against values worked out by hand."""

import math

import numpy as np
import pytest

from recsys.eval.metrics import (
    evaluate_rankings,
    f1_at_k,
    hit_at_k,
    map_at_k,
    mrr_at_k,
    ndcg_at_k,
    parse_metric,
    per_row,
    precision_at_k,
    recall_at_k,
    topk_from_scores,
)

# ranked list a b c d e, relevant {b, d, z}: hits at ranks 2 and 4, z is never retrieved
RANKED = ["a", "b", "c", "d", "e"]
RELEVANT = {"b", "d", "z"}


def test_hit_and_accuracy():
    assert hit_at_k(RANKED, RELEVANT, 1) == 0.0  # a is not relevant
    assert hit_at_k(RANKED, RELEVANT, 2) == 1.0


def test_precision_recall_f1():
    # top-5 holds 2 relevant: P = 2/5, R = 2/3, F1 = 2PR/(P+R) = (2*0.4*0.6667)/(1.0667) = 0.5
    assert precision_at_k(RANKED, RELEVANT, 5) == pytest.approx(0.4)
    assert recall_at_k(RANKED, RELEVANT, 5) == pytest.approx(2 / 3)
    assert f1_at_k(RANKED, RELEVANT, 5) == pytest.approx(0.5)
    assert f1_at_k(RANKED, {"q"}, 5) == 0.0


def test_mrr():
    assert mrr_at_k(RANKED, RELEVANT, 10) == pytest.approx(0.5)  # first hit at rank 2
    assert mrr_at_k(RANKED, RELEVANT, 1) == 0.0


def test_ndcg():
    # DCG = 1/log2(3) + 1/log2(5) = 0.63093 + 0.43068 = 1.06161
    # IDCG (3 relevant, k=5) = 1 + 1/log2(3) + 1/2 = 2.13093  ->  NDCG = 0.49819
    expected = (1 / math.log2(3) + 1 / math.log2(5)) / (1 + 1 / math.log2(3) + 0.5)
    assert ndcg_at_k(RANKED, RELEVANT, 5) == pytest.approx(expected)
    assert ndcg_at_k(RANKED, RELEVANT, 5) == pytest.approx(0.49819, abs=1e-5)
    assert ndcg_at_k(["b"], {"b"}, 10) == 1.0


def test_map():
    # precisions at the hits: 1/2 (rank 2) and 2/4 (rank 4); divided by min(|R|, k) = 3 -> 1/3
    assert map_at_k(RANKED, RELEVANT, 5) == pytest.approx(1 / 3)


def test_evaluate_rankings_means_and_skips_empty():
    result = evaluate_rankings([RANKED, ["b"], ["x"]], [RELEVANT, {"b"}, set()], ["mrr@10", "accuracy"])
    # third row has no relevant item and is skipped; mean MRR = (0.5 + 1) / 2
    assert result["mrr@10"] == pytest.approx(0.75)
    assert result["accuracy"] == pytest.approx(0.5)
    assert list(per_row([RANKED, ["b"]], [RELEVANT, {"b"}], "mrr@10")) == [0.5, 1.0]


def test_parse_metric_rejects_unknown():
    assert parse_metric("ndcg@10") == ("ndcg", 10)
    with pytest.raises(ValueError, match="unknown metric"):
        parse_metric("auc")


def test_topk_from_scores_excludes_and_orders():
    scores = np.array([[0.1, 0.9, 0.5, 0.7], [1.0, 0.0, 0.2, 0.3]])
    # row 0 without column 1: 0.7 (3) > 0.5 (2); row 1: 1.0 (0) > 0.3 (3)
    assert topk_from_scores(scores, 2, exclude=[[1], []]).tolist() == [[3, 2], [0, 3]]
