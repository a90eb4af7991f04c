"""The video evaluation protocol: metrics over score matrices, seed aggregation, tables and CSV."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from recsys.eval import videos as ev
from recsys.eval.tables import aggregate


def test_evaluate_scores_by_hand():
    # 2 queries, 6 videos. Query 0: relevant {1}; its ranking is 1, 0, 2, ... -> hit@1 = 1, MRR = 1
    # query 1: relevant {4, 5}; ranking 0, 4, 5, 1, 2, 3 -> first hit at rank 2: MRR 0.5, hit@1 = 0
    scores = np.array([[5, 6, 4, 3, 2, 1], [6, 1, 0, -1, 5, 4]], dtype=float)
    out = ev.evaluate_scores(scores, [[1], [4, 5]])
    assert out["accuracy"] == pytest.approx(0.5)  # (1 + 0) / 2
    assert out["mrr@10"] == pytest.approx(0.75)  # (1 + 0.5) / 2
    # P@5: q0 1/5, q1 2/5 -> 0.3; R@5: q0 1/1, q1 2/2 -> 1.0; F1@5 per query: q0 2*.2*1/1.2 = 1/3, q1 2*.4/1.4 = 4/7
    assert out["precision@5"] == pytest.approx(0.3)
    assert out["recall@5"] == pytest.approx(1.0)
    assert out["f1@5"] == pytest.approx((1 / 3 + 4 / 7) / 2)
    # NDCG@10: q0 = 1; q1 DCG = 1/log2(3) + 1/log2(4) = 0.63093 + 0.5, IDCG = 1 + 0.63093 -> 0.69342
    assert out["ndcg@10"] == pytest.approx((1 + 1.13093 / 1.63093) / 2, abs=1e-5)
    with pytest.raises(ValueError):
        ev.evaluate_scores(scores, [[1]])


def test_paper_f1_is_the_harmonic_mean_of_its_accuracy_and_recall():
    # the paper's F1 is not ours: 2 * 0.821 * 0.784 / (0.821 + 0.784) = 0.80207 (printed 80.2), likewise every row
    for table in (ev.PAPER_TABLE2, ev.PAPER_TABLE3):
        for row in table.values():
            hm = 2 * row["accuracy"] * row["recall@5"] / (row["accuracy"] + row["recall@5"])
            assert hm == pytest.approx(row["f1@5"], abs=6e-4)
    assert ev.PAPER_TABLE3["Single tower"]["mrr@10"] == 0.532


def test_aggregate_and_tables(tmp_path):
    runs = [{"mrr@10": 0.5, "accuracy": 0.2}, {"mrr@10": 0.7, "accuracy": 0.4}]
    agg = aggregate(runs)
    # mean 0.6; sample std sqrt(((0.1)^2 + (0.1)^2) / 1) = 0.14142
    assert agg["mrr@10"] == pytest.approx((0.6, 0.141421), abs=1e-6)
    rows = {"DCDT": agg, "BM25": {"mrr@10": 0.55, "accuracy": 0.3}}
    text = ev.format_table("Table 2", rows, None)
    assert "0.600 ± 0.141" in text and "| BM25 |" in text and "(paper)" not in text
    # the paper's rows: DCDT 82.1 / 78.4 / 80.2 / 0.641 under Accuracy, R@5, F1@5, MRR@10; no P@5 or NDCG (dash)
    text = ev.format_table("Table 2", rows, ev.PAPER_TABLE2)
    assert "| DCDT (paper) | 0.821 | – | 0.784 | 0.802 | 0.641 | – |" in text and ev.PAPER_NOTE in text
    assert "| BM25 (paper) | 0.689 | – | 0.632 | 0.659 | 0.487 | – |" in text
    path = ev.write_csv(tmp_path / "t.csv", rows, {"DCDT": {"seeds": 2}})
    table = list(csv.DictReader(open(path)))
    assert table[0]["model"] == "DCDT" and float(table[0]["mrr@10_std"]) == pytest.approx(0.141421, abs=1e-6)
    assert table[1]["mrr@10_std"] == "" and table[0]["seeds"] == "2"
    # one seed has no spread: "(1 seed)" in the table, an empty std in the CSV, never a misleading ± 0
    one = {"DCDT": aggregate(runs[:1])}
    assert "0.500 (1 seed)" in ev.format_table("Table 2", one)
    assert list(csv.DictReader(open(ev.write_csv(tmp_path / "one.csv", one))))[0]["mrr@10_std"] == ""


def test_excluded_and_non_finite_scores_are_never_ranked():
    # video 1 scores -inf (e.g. masked): the ranking is 0, 2 and then nothing, so MRR for relevant {1} is 0
    scores = np.array([[0.5, -np.inf, 0.2]])
    assert ev.evaluate_scores(scores, [[1]])["mrr@10"] == 0.0
    assert ev.evaluate_scores(scores, [[2]])["mrr@10"] == pytest.approx(0.5)  # second place


def test_metrics_by_query_language():
    from recsys.videos.prep import query_language

    # the language comes from the ISO code the loader checked, never guessed from the script
    assert [query_language(c) for c in ("zh", "fr", "en", "ja")] == ["Chinese", "French", "English", "Japanese"]
    with pytest.raises(KeyError):
        query_language("xx")
    # 3 queries, 3 videos; rows 0 and 2 English, row 1 Chinese
    scores = np.array([[0.9, 0.1, 0.0], [0.9, 0.1, 0.0], [0.1, 0.9, 0.0]])
    relevant = [[0], [1], [2]]
    # English: q0 hit at rank 1 (RR 1), q2 relevant video 2 at rank 3 (RR 1/3) -> accuracy 0.5, MRR (1 + 1/3) / 2
    # Chinese: q1 relevant video 1 at rank 2 -> accuracy 0, MRR 0.5
    out = ev.evaluate_by_group(scores, relevant, ["English", "Chinese", "English"])
    assert out["English"] == pytest.approx({"accuracy": 0.5, "mrr@10": 2 / 3})
    assert out["Chinese"] == pytest.approx({"accuracy": 0.0, "mrr@10": 0.5})
    text = ev.format_language_table({"DCDT": out}, {"Chinese": 1, "English": 2})
    assert "| Model | Chinese Accuracy (n=1) | Chinese MRR@10 (n=1) | English Accuracy (n=2) |" in text
    assert "| DCDT | 0.000 | 0.500 | 0.500 | 0.667 |" in text
