"""The faiss item index: exact by default, IVF and HNSW for large catalogues, and the ANN benchmark's helpers."""

from __future__ import annotations

import numpy as np
import pytest

from recsys.retrieval import index as index_module
from recsys.retrieval.ann_bench import recall_at_k, synthetic_catalog
from recsys.retrieval.index import ItemIndex, default_nlist


def test_ivf_probing_every_list_is_the_exact_search():
    items, queries = synthetic_catalog(3000, 8, 20, clusters=30)
    exact_scores, exact_ids = ItemIndex(items).search(queries, 10)
    ivf = ItemIndex(items, kind="ivf", nlist=16, nprobe=16)  # 16 of 16 lists: nothing skipped
    scores, ids = ivf.search(queries, 10)
    np.testing.assert_array_equal(ids, exact_ids)
    np.testing.assert_allclose(scores, exact_scores, rtol=1e-5)
    ivf.index.nprobe = 1  # one list of 16: fewer candidates, so some of the true top 10 can be missed
    assert 0.2 < recall_at_k(ivf.search(queries, 10)[1], exact_ids) <= 1.0


def test_ivf_excludes_watched_items_like_the_exact_index():
    items, queries = synthetic_catalog(2000, 8, 5, clusters=10)
    watched = [list(ItemIndex(items).search(q[None], 3)[1][0]) for q in queries]  # each query's own top 3
    _, exact_ids = ItemIndex(items).search(queries, 5, exclude=watched)
    _, ivf_ids = ItemIndex(items, kind="ivf", nlist=8, nprobe=8).search(queries, 5, exclude=watched)
    np.testing.assert_array_equal(ivf_ids, exact_ids)
    assert not any(set(row) & set(w) for row, w in zip(ivf_ids.tolist(), watched))


def test_default_nlist_follows_four_root_n_with_39_points_per_list():
    # 1 M items: 4 * sqrt(1e6) = 4000 lists (25,641 allowed by 39 points per list)
    assert default_nlist(1_000_000) == 4000
    # 2,000 items: 4 * sqrt(2000) = 4 * 45 = 180, but 2000 // 39 = 51 lists at most
    assert default_nlist(2000) == 51 and default_nlist(10) == 1


def test_auto_keeps_the_exact_index_for_small_catalogues(monkeypatch):
    items, _ = synthetic_catalog(500, 4, 1, clusters=5)
    assert ItemIndex(items, kind="auto").kind == "flat"
    monkeypatch.setattr(index_module, "ANN_FROM", 400)
    assert ItemIndex(items, kind="auto").kind == index_module.ANN_KIND
    assert ItemIndex(items, kind="auto", metric="l2").kind == "flat"  # the approximate ones serve inner product


def test_recall_counts_the_shared_share_of_each_row():
    # row 0 shares 2 of 2, row 1 shares 1 of 2 -> (1 + 0.5) / 2
    assert recall_at_k(np.array([[1, 2], [3, 4]]), np.array([[2, 1], [3, 5]])) == pytest.approx(0.75)


def test_the_synthetic_catalogue_is_seeded_clustered_and_log_normal_in_norm():
    items, queries = synthetic_catalog(5000, 16, 10, clusters=20, seed=3)
    again, _ = synthetic_catalog(5000, 16, 10, clusters=20, seed=3)
    np.testing.assert_array_equal(items, again)
    norms = np.linalg.norm(items, axis=1)
    assert items.dtype == np.float32 and queries.shape == (10, 16)
    assert 0.95 < np.median(norms) < 1.05 and norms.std() > 0.2  # lognormal(0, 0.3): median 1, spread ~0.3
