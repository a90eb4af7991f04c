"""Baselines of the video recommender: BM25, query CF, embedding cosine."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from recsys.models.bm25 import BM25, stem, tokenize
from recsys.models.embedding_cosine import EmbeddingCosine
from recsys.models.query_cf import QueryCF


def test_tokenize_lowercases_stems_and_splits_cjk():
    assert tokenize("Eigenvalues and EIGENVECTORS of Matrices") == ["eigenvalue", "eigenvector", "matrice"]
    assert stem("diagonalizing") == "diagonalize" and stem("classes") == "class" and stem("span") == "span"
    # each CJK character is a token; accents survive; punctuation and stop words go
    assert tokenize("特征值 ¿qué es?") == ["特", "征", "值", "qué", "es"]
    assert tokenize("   ") == []


def test_bm25_ranks_the_exact_term_document_first():
    docs = [
        "Eigenvalues and eigenvectors: the characteristic polynomial",
        "The Gram-Schmidt process builds an orthonormal basis",
        "Least squares fitting of a line with the normal equations",
        "Orthogonal projections onto a subspace",
    ]
    model = BM25().fit(docs)
    scores = model.score_texts(["gram schmidt", "eigenvector", "zzz unknown"])
    assert scores.shape == (3, 4)
    assert int(np.argmax(scores[0])) == 1  # only doc 1 contains "gram" and "schmidt"
    assert int(np.argmax(scores[1])) == 0  # "eigenvector" matches "eigenvectors" after stemming
    assert np.all(scores[2] == 0)  # no shared term: every score is 0
    # the contract path gives the same scores
    assert torch.allclose(model.full_sort_predict({"query_text": ["gram schmidt"]})[0], torch.from_numpy(scores[0]))


def test_bm25_requires_fit():
    with pytest.raises(RuntimeError, match="not fitted"):
        BM25().score_texts(["x"])


def test_cf_votes_are_similarity_weighted():
    # training queries (unit vectors) and their relevant videos (3 videos)
    q = np.array([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]], dtype=np.float32)
    relevant = [[0], [0, 1], [2]]
    model = QueryCF(k=2).fit(q, relevant, n_items=3)
    # query [1, 0]: similarities [1.0, 0.6, 0.0] -> the 2 nearest are q0 (1.0) and q1 (0.6)
    # video 0: 1.0 (q0) + 0.6 (q1) = 1.6; video 1: 0.6 (q1); video 2: q2 is not a neighbour -> 0
    scores = model.score_vectors(np.array([[1.0, 0.0]], dtype=np.float32))
    assert scores[0].tolist() == pytest.approx([1.6, 0.6, 0.0])
    # query [0, 1], k = 2: similarities [0, 0.8, 1.0] -> q2 (1.0) and q1 (0.8)
    # video 0: 0.8; video 1: 0.8; video 2: 1.0
    assert model.score_vectors(np.array([[0.0, 1.0]]))[0].tolist() == pytest.approx([0.8, 0.8, 1.0])
    # a query opposite to every training query: negative similarities do not vote
    assert model.score_vectors(np.array([[-1.0, 0.0]]))[0].tolist() == [0.0, 0.0, 0.0]
    idx, sims = model.neighbours(np.array([1.0, 0.0]))
    assert idx[0].tolist() == [0, 1] and sims[0].tolist() == pytest.approx([1.0, 0.6])
    with pytest.raises(ValueError):
        QueryCF(k=0)


def test_embedding_cosine_is_the_dot_of_unit_vectors():
    items = np.array([[3.0, 4.0], [1.0, 0.0]], dtype=np.float32)  # normalised to [0.6, 0.8], [1, 0]
    model = EmbeddingCosine().fit(items)
    scores = model.full_sort_predict({"query": torch.tensor([[0.0, 2.0]])})
    # query -> [0, 1]: cosines 0.8 and 0.0
    assert scores[0].tolist() == pytest.approx([0.8, 0.0])
    assert model.item_tower().shape == (2, 2)
