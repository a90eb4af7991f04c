"""The denoising linear two-tower (low-rank DLAE): closed form, towers, serving."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from recsys.anime.prep import AnimeData
from recsys.models.dlae_two_tower import DLAETwoTower, DLAETwoTowerConfig, low_rank_dlae
from recsys.retrieval.index import ItemIndex

# 3 users x 2 items: X = [[1, 1], [1, 0], [0, 1]] -> G = X^T X = [[2, 1], [1, 2]]
X = sp.csr_matrix(np.array([[1, 1], [1, 0], [0, 1]], np.float32))


def test_full_rank_equals_the_dlae_closed_form():
    # dropout 0.5 -> penalty p / (1 - p) * diag(G) = (2, 2), ridge 0: M = [[4, 1], [1, 4]],
    # M^-1 = [[4, -1], [-1, 4]] / 15, B = M^-1 G = [[7, 2], [2, 7]] / 15
    W, V = low_rank_dlae(X, rank=2, dropout=0.5, ridge=0.0)
    np.testing.assert_allclose(W @ V.T, np.array([[7, 2], [2, 7]]) / 15, atol=1e-5)


def test_rank_one_is_the_best_rank_one_fit():
    # the loss ||X - X B||^2 + ||Lambda^1/2 B||^2 at rank 1 sits between the rank-2 optimum and B = 0
    def loss(B):
        penalty = np.array([2.0, 2.0])
        return ((X.toarray() - X.toarray() @ B) ** 2).sum() + (penalty[:, None] * B**2).sum()

    W1, V1 = low_rank_dlae(X, rank=1, dropout=0.5, ridge=0.0)
    W2, V2 = low_rank_dlae(X, rank=2, dropout=0.5, ridge=0.0)
    assert loss(W2 @ V2.T) <= loss(W1 @ V1.T) + 1e-6 < loss(np.zeros((2, 2)))
    assert np.linalg.matrix_rank(W1 @ V1.T, tol=1e-6) == 1
    # G and M share the eigenvectors e = [1, 1] / sqrt2 (G: 3, M: 5) and [1, -1] / sqrt2 (G: 1, M: 3); the top
    # singular pair of M^-1/2 G is e with 3 / sqrt5, so B1 = M^-1/2 (3 / sqrt5) e e^T = 3/5 e e^T = 0.3 everywhere.
    # Check by hand with B = c 11^T: loss = 2 (1 - 2c)^2 + 2 ((1 - c)^2 + c^2) + 8 c^2, minimum at 40 c = 12.
    np.testing.assert_allclose(W1 @ V1.T, np.full((2, 2), 0.3), atol=1e-5)
    with pytest.raises(ValueError, match="dropout"):
        low_rank_dlae(X, rank=1, dropout=1.0, ridge=0.0)


def test_model_scores_are_the_towers_inner_product_and_faiss_agrees():
    data = AnimeData(3, 2, X)
    model = DLAETwoTower(DLAETwoTowerConfig(rank=2, dropout=0.5, ridge=0.0), data).fit(data)
    # a new user who watched item 0 (rated 9: the towers read watched / not watched): scores (7, 2) / 15,
    # up to the float16 rounding of the stored towers (relative 2^-11 per entry: |error| < 1e-3 here)
    history = {"user": torch.tensor([-1]), "history": sp.csr_matrix(np.array([[9.0, 0.0]], np.float32))}
    scores = model.full_sort_predict(history).numpy()
    assert scores.dtype == np.float32
    np.testing.assert_allclose(scores, [[7 / 15, 2 / 15]], atol=1e-3)
    # the user tower is the sum of the watched items' W rows: one row and a batch of two agree
    both = {"user": torch.tensor([-1, -1]), "history": sp.csr_matrix(np.array([[9.0, 0.0], [1.0, 1.0]], np.float32))}
    np.testing.assert_allclose(model.user_tower(both).numpy(), [model.W[0], model.W[0] + model.W[1]], atol=1e-6)
    np.testing.assert_array_equal(model.user_tower(history).numpy(), model.W[[0]])
    # the stored state is float16 and a loaded model scores exactly as the fitted one
    state = model.state()
    assert state["W"].dtype == state["V"].dtype == np.float16
    loaded = DLAETwoTower(DLAETwoTowerConfig(rank=2), data)
    loaded.load_state(state)
    np.testing.assert_array_equal(loaded.full_sort_predict(history).numpy(), scores)
    user = model.user_tower(history).numpy()
    scores, ids = ItemIndex(model.item_vectors()).search(user, k=1, exclude=[[0]])
    assert ids.tolist() == [[1]]
    np.testing.assert_allclose(scores, [[2 / 15]], atol=1e-3)
    with pytest.raises(ValueError, match="do not fit"):
        model.load_state({"W": np.zeros((3, 2)), "V": np.zeros((3, 2))})
