"""The one top-k with exclusions (recsys/retrieval/topk.py)."""

import numpy as np
import pytest

from recsys.retrieval.topk import top_k


def test_best_first_with_exclusions_and_missing_slots():
    scores = np.array([[0.1, 0.9, 0.5, 0.7],
                       [0.3, 0.2, 0.8, 0.4]])
    # row 0 without column 1: 0.7 (col 3), 0.5 (col 2), 0.1 (col 0)
    # row 1 without columns 0, 2, 3: only 0.2 (col 1) is left, the other slots are -1
    top, ids = top_k(scores, 3, exclude=[[1], [0, 2, 3]])
    assert ids.tolist() == [[3, 2, 0], [1, -1, -1]]
    np.testing.assert_allclose(top[0], [0.7, 0.5, 0.1])
    assert np.isneginf(top[1, 1:]).all()


def test_ties_at_the_cut_keep_the_lowest_columns():
    # five columns tie at 1.0 behind column 5 (2.0); k = 3 takes column 5, then columns 0 and 1
    scores = np.array([[1.0, 1.0, 1.0, 1.0, 1.0, 2.0, 0.0]])
    assert top_k(scores, 3)[1].tolist() == [[5, 0, 1]]
    # the same with the tied block at the end of the row
    scores = np.array([[0.0, 3.0, 1.0, 1.0, 1.0, 1.0]])
    assert top_k(scores, 2)[1].tolist() == [[1, 2]]


def test_matches_a_full_stable_sort_on_random_ties():
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 3, size=(50, 17)).astype(float)
    _, ids = top_k(scores, 6)
    expected = np.argsort(-scores, axis=1, kind="stable")[:, :6]  # O(n log n) reference
    assert (ids == expected).all()


@pytest.mark.parametrize("k", [0, -1, 2.5, True])
def test_k_must_be_a_positive_integer(k):
    with pytest.raises(ValueError):
        top_k(np.zeros((1, 3)), k)


def test_k_larger_than_the_catalogue_returns_every_column():
    top, ids = top_k(np.array([[0.2, 0.4]]), 10)
    assert ids.tolist() == [[1, 0]] and top.shape == (1, 2)
