"""Baselines of the video recommender: BM25, query CF, embedding cosine."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from recsys.models.bm25 import BM25, BM25Config, stem, tokenize
from recsys.models.embedding_cosine import EmbeddingCosine, EmbeddingCosineConfig
from recsys.models.query_cf import QueryCF, QueryCFConfig
from recsys.videos.prep import VideoItems


def items_with_texts(texts):
    n = len(texts)
    return VideoItems(title=np.eye(n, 2), desc=np.eye(n, 2), video_text=texts)


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
    data = items_with_texts(docs)
    model = BM25(BM25Config(), data).fit(data)
    scores = model.score_texts(["gram schmidt", "eigenvector", "zzz unknown"])
    assert scores.shape == (3, 4)
    assert int(np.argmax(scores[0])) == 1  # only doc 1 contains "gram" and "schmidt"
    assert int(np.argmax(scores[1])) == 0  # "eigenvector" matches "eigenvectors" after stemming
    assert np.all(scores[2] == 0)  # no shared term: every score is 0
    # the contract path gives the same scores
    assert torch.allclose(model.full_sort_predict({"query_text": ["gram schmidt"]})[0], torch.from_numpy(scores[0]))
    # state: the token counts; loading re-fits on the same texts and refuses other ones
    # doc 0: eigenvalue eigenvector characteristic polynomial (4; "and", "the" are stop words)
    # doc 1: gram schmidt process build orthonormal basis (6); doc 2: least square fitt line normal equation (6)
    # doc 3: orthogonal projection onto subspace (4)
    assert model.state()["doc_len"].tolist() == [4, 6, 6, 4]
    other = items_with_texts(docs[:3] + ["orthogonal"])
    with pytest.raises(ValueError, match="other video texts"):
        BM25(BM25Config(), other).load_state(model.state())


def test_bm25_requires_fit():
    data = items_with_texts(["x"])
    with pytest.raises(RuntimeError, match="not fitted"):
        BM25(BM25Config(), data).score_texts(["x"])


def test_cf_votes_are_similarity_weighted():
    # training queries (unit vectors) and their relevant videos (3 videos)
    q = np.array([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]], dtype=np.float32)
    relevant = [[0], [0, 1], [2]]
    data = VideoItems(title=np.eye(3, 2), desc=np.eye(3, 2), query_emb=q, relevant=relevant,
                      query_split=np.array(["train"] * 3))
    model = QueryCF(QueryCFConfig(k=2), data).fit(data)
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
        QueryCFConfig(k=0)


def test_embedding_cosine_is_the_dot_of_unit_vectors():
    items = np.array([[3.0, 4.0], [1.0, 0.0]], dtype=np.float32)  # normalised to [0.6, 0.8], [1, 0]
    data = VideoItems(title=items, desc=items, text=items)
    model = EmbeddingCosine(EmbeddingCosineConfig(), data).fit(data)
    scores = model.full_sort_predict({"query": torch.tensor([[0.0, 2.0]])})
    # query -> [0, 1]: cosines 0.8 and 0.0
    assert scores[0].tolist() == pytest.approx([0.8, 0.0])
    assert model.item_tower().shape == (2, 2)
