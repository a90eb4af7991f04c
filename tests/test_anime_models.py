"""Anime models and the evaluation protocol on hand-made toys with worked arithmetic."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import torch

from recsys.anime.prep import AnimeData
from recsys.eval.anime import score_rankings, unseen_protocol
from recsys.models.anime_retrieval import (ClusterRetrieval, ClusterRetrievalConfig, WeightedAverage,
                                           WeightedAverageConfig, weighted_average_vectors)
from recsys.models.ease import EASE, EASEConfig, ease_weights
from recsys.models.implicit_two_tower import ImplicitTwoTower, ImplicitTwoTowerConfig, in_batch_log_q
from recsys.models.itemknn import ItemKNN, ItemKNNConfig
from recsys.retrieval.cosine import cosine_topk
from recsys.models.popularity import Popularity, PopularityConfig, weighted_rating
from recsys.models.two_tower import BiasBaseline, TwoTowerConfig, TwoTowerRating, rmse
from recsys.retrieval.clusters import ClusterIndex, elbow_point, fit_clusters, gmm_posteriors
from recsys.retrieval.index import ItemIndex

# users x items, binary: columns c0 = (1,0,1), c1 = (1,1,1), c2 = (0,1,1)
X = sp.csr_matrix(np.array([[1, 1, 0], [0, 1, 1], [1, 1, 1]], dtype=np.float32))
DATA = AnimeData(3, 3, X)


def history(rows) -> dict:
    """A batch of users outside the training data, given by their ratings."""
    return {"user": torch.full((len(rows),), -1), "history": sp.csr_matrix(np.asarray(rows, np.float32))}


def test_ease_closed_form_on_3x3():
    # G = X^T X = [[2,2,1],[2,3,2],[1,2,2]]; G + I = [[3,2,1],[2,4,2],[1,2,3]], det 16,
    # P = (G + I)^-1 = [[.5,-.25,0],[-.25,.5,-.25],[0,-.25,.5]];  B_ij = -P_ij / P_jj, B_jj = 0
    # -> B = [[0,.5,0],[.5,0,.5],[0,.5,0]]
    B = ease_weights((X.T @ X).toarray(), l2=1.0)
    np.testing.assert_allclose(B, [[0, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0]], atol=1e-6)
    model = EASE(EASEConfig(l2=1.0), DATA).fit(DATA)
    # a user who watched item 0 only (rated 7: any rating counts as watched): x B = row 0 of B = [0, .5, 0]
    np.testing.assert_allclose(model.full_sort_predict(history([[7.0, 0, 0]])), [[0, 0.5, 0]], atol=1e-6)
    # training user 0 watched items 0 and 1: rows 0 + 1 of B = [.5, .5, .5]
    np.testing.assert_allclose(model.full_sort_predict({"user": torch.tensor([0])}), [[0.5, 0.5, 0.5]], atol=1e-6)


def test_ease_item_cap_scores_other_items_minus_inf():
    model = EASE(EASEConfig(l2=1.0, max_items=2), DATA).fit(DATA)
    # counts are (2, 3, 2): item 1 and the first of the tied items (0) are kept
    assert model.items.tolist() == [0, 1]
    assert model.full_sort_predict(history([[1.0, 0, 0]]))[0, 2] == -np.inf


def test_itemknn_cosine():
    # co-occurrences (0,1)=2, (0,2)=1, (1,2)=2; norms sqrt(2), sqrt(3), sqrt(2)
    # cos(0,1) = 2/sqrt(6) = 0.8165, cos(0,2) = 1/2, cos(1,2) = 0.8165; diagonal 0
    S = cosine_topk(X, k=2).toarray()
    c = 2 / math.sqrt(6)
    np.testing.assert_allclose(S, [[0, c, 0.5], [c, 0, c], [0.5, c, 0]], atol=1e-6)
    # k = 1 keeps only the best neighbour of each column: column 0 keeps row 1 (0.8165 > 0.5)
    S1 = cosine_topk(X, k=1, block=2).toarray()
    assert S1[1, 0] == pytest.approx(c) and S1[2, 0] == 0
    model = ItemKNN(ItemKNNConfig(neighbours=2), DATA).fit(DATA)
    np.testing.assert_allclose(model.full_sort_predict(history([[-1.0, 0, 0]])), [[0, c, 0.5]], atol=1e-6)


def test_weighted_rating_formula():
    # m = 100, C = 8: WR0 = 10/110*9 + 100/110*8 = 890/110 = 8.0909
    #                 WR1 = 1000/1100*7 + 100/1100*8 = 7800/1100 = 7.0909
    wr = weighted_rating([9.0, 7.0], [10, 1000], m=100, C=8.0)
    np.testing.assert_allclose(wr, [890 / 110, 7800 / 1100])
    # defaults: C = mean(R) = 8, m = 0.5-quantile of (10, 1000) = 505
    default = weighted_rating([9.0, 7.0], [10, 1000], quantile=0.5)
    np.testing.assert_allclose(default, [(10 * 9 + 505 * 8) / 515, (1000 * 7 + 505 * 8) / 1505])
    # a missing mean rating is the prior C
    assert weighted_rating([np.nan, 6.0], [5, 5], m=1, C=7.0)[0] == pytest.approx(7.0)


def test_popularity_count_and_wr():
    model = Popularity(PopularityConfig("count"), DATA).fit(DATA)
    assert model.scores.tolist() == [2, 3, 2]
    assert model.full_sort_predict(history([[1, 0, 0], [0, 0, 0]])).tolist() == [[2, 3, 2], [2, 3, 2]]
    with pytest.raises(ValueError, match="unknown popularity kind"):
        Popularity(PopularityConfig("nope"), DATA)
    # WR with R = (9, 7, 8), v = (10, 1000, 100), quantile .5 -> m = 100, C = 8:
    # WR0 = (10*9 + 100*8) / 110 = 8.0909; WR1 = (1000*7 + 100*8) / 1100 = 7.0909; WR2 = 8
    data = AnimeData(3, 3, X, item_mean_rating=np.array([9.0, 7.0, 8.0]), item_votes=np.array([10, 1000, 100]))
    wr = Popularity(PopularityConfig("wr", quantile=0.5), data).fit(data)
    np.testing.assert_allclose(wr.scores, [890 / 110, 7800 / 1100, 8.0])


def test_weighted_average_vectors():
    items = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    ratings = sp.csr_matrix(np.array([[8.0, 2.0, 0.0], [0, 0, 0], [0, 0, 0]]))
    watched = sp.csr_matrix(np.array([[1.0, 1.0, 1.0], [0, 1.0, 1.0], [0, 0, 0]]))
    vectors, empty = weighted_average_vectors(ratings, watched, items)
    # row 0: (8*[1,0] + 2*[0,1]) / 10 = [0.8, 0.2] (the unrated item 2 has no weight)
    # row 1: no rating -> plain mean of items 1 and 2 = [0.5, 1.0]; row 2: nothing -> zeros, flagged
    np.testing.assert_allclose(vectors, [[0.8, 0.2], [0.5, 1.0], [0.0, 0.0]], atol=1e-6)
    assert empty.tolist() == [False, False, True]


def test_faiss_index_excludes_watched_and_hnsw_agrees():
    items = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.5, 0.5]], np.float32)
    index = ItemIndex(items)
    # query [1, 0]: inner products 1.0, 0.9, 0.0, 0.5; item 0 excluded -> 1, 3
    scores, ids = index.search(np.array([[1.0, 0.0]]), k=2, exclude=[[0]])
    assert ids.tolist() == [[1, 3]]
    np.testing.assert_allclose(scores, [[0.9, 0.5]], atol=1e-6)
    _, hnsw_ids = ItemIndex(items, kind="hnsw").search(np.array([[1.0, 0.0]]), k=2, exclude=[[0]])
    assert hnsw_ids.tolist() == [[1, 3]]


def test_elbow_rule_on_synthetic_curve():
    # scaled x = 0, .2, .4, .6, .8, 1; scaled y = (v - 4) / 96 = 1, .375, .0625, .042, .021, 0
    # distance to the chord x + y = 1 is proportional to |x + y - 1| = 0, .425, .5375, .358, .179, 0
    ks, values = [1, 2, 3, 4, 5, 6], [100, 40, 10, 8, 6, 4]
    assert elbow_point(ks, values) == 2


def test_weighted_average_model_ranks_by_distance_and_inner_product_variant():
    data = AnimeData(3, 3, X).with_item_vectors(np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]]))
    ip = WeightedAverage(WeightedAverageConfig(metric="ip"), data).fit(data)
    # ratings (8, 2, watched): user vector [0.8, 0.2]; inner products = [0.8, 0.2, 1.0]
    np.testing.assert_allclose(ip.full_sort_predict(history([[8, 2, -1]])), [[0.8, 0.2, 1.0]], atol=1e-6)
    l2 = WeightedAverage(None, data).fit(data)  # the paper's default: nearest by Euclidean distance
    # -|u - q|^2: item 0 (.2^2 + .2^2 = .08), item 1 (.8^2 + .8^2 = 1.28), item 2 (.2^2 + .8^2 = .68)
    np.testing.assert_allclose(l2.full_sort_predict(history([[8, 2, -1]])), [[-0.08, -1.28, -0.68]], atol=1e-6)
    # the long vector [1, 1] wins by inner product but is second by distance
    with pytest.raises(ValueError, match="item vectors"):
        WeightedAverage(None, DATA).fit(DATA)
    with pytest.raises(ValueError, match="metric"):
        WeightedAverage(WeightedAverageConfig(metric="cosine"), data)


def test_faiss_l2_index_matches_the_weighted_average_model():
    items = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]], np.float32)
    # query [0.8, 0.2]: squared distances .08, 1.28, .68 -> items 0, 2, 1
    scores, ids = ItemIndex(items, metric="l2").search(np.array([[0.8, 0.2]]), k=3)
    assert ids.tolist() == [[0, 2, 1]]
    np.testing.assert_allclose(scores, [[-0.08, -0.68, -1.28]], atol=1e-6)
    with pytest.raises(ValueError, match="metric"):
        ItemIndex(items, kind="hnsw", metric="l2")


def test_cluster_retrieval_model_orders_nearest_cluster_by_popularity_then_the_next():
    # items 0, 1 near (0, 0); items 2, 3, 4 near (10, 10); popularity = watch counts of 5 users
    vectors = np.array([[0, 0], [0, 1], [10, 10], [10, 11], [10, 9]], np.float32)
    watched = sp.csr_matrix(np.array([[1, 1, 1, 1, 1], [1, 0, 0, 1, 1], [1, 0, 1, 1, 1], [0, 0, 0, 1, 0],
                                      [1, 0, 0, 0, 0]], np.float32))
    data = AnimeData(5, 5, watched).with_item_vectors(vectors)  # popularity (4, 1, 2, 4, 3)
    for algorithm in ("kmeans", "gmm"):
        model = ClusterRetrieval(ClusterRetrievalConfig(algorithm, n_clusters=2), data).fit(data)
        scores = model.full_sort_predict(history([[0, 0, 0, 9, 0]])).numpy()  # the user vector is item 3's
        # nearest cluster {2, 3, 4} keeps its popularity (2, 4, 3); the other cluster is one band
        # lower: span = ptp(popularity) + 1 = 4, so items 0, 1 score 4 - 4 = 0 and 1 - 4 = -3
        np.testing.assert_allclose(scores, [[0, -3, 2, 4, 3]], err_msg=algorithm)


def test_gmm_posteriors_match_sklearn():
    from sklearn.mixture import GaussianMixture

    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(0, 1, (30, 3)), rng.normal(5, 0.5, (30, 3))])
    fitted = fit_clusters(x, 2, "gmm", seed=0)
    reference = GaussianMixture(2, covariance_type="diag", random_state=0, reg_covar=1e-4).fit(x.astype(np.float32))
    np.testing.assert_allclose(gmm_posteriors(x[:5], fitted.weights, fitted.centers, fitted.covariances),
                               reference.predict_proba(x[:5]), atol=1e-6)


def test_cluster_index_recommends_popular_unwatched_of_nearest_cluster():
    vectors = np.array([[0, 0], [0, 1], [10, 10], [10, 11], [10, 9]], np.float32)
    popularity = np.array([5, 1, 3, 9, 7], np.float64)
    index = ClusterIndex.fit(vectors, 2, popularity, "kmeans")
    # the query is near the (10, 10) cluster {2, 3, 4}; 3 is watched -> 4 (pop 7), then 2 (pop 3),
    # then the other cluster fills the list by popularity: 0 (5), one band lower: 5 - (ptp 8 + 1) = -4
    scores, ids = index.recommend(np.array([[9.0, 10.0]]), k=3, exclude=[[3]])
    assert ids.tolist() == [[4, 2, 0]] and scores.tolist() == [[7, 3, -4]]


def test_two_tower_relu_and_mse():
    model = TwoTowerRating(TwoTowerConfig(factors=2), AnimeData(2, 2, sp.csr_matrix((2, 2))))
    with torch.no_grad():
        model.user_embedding.weight.copy_(torch.tensor([[1.0, 2.0], [-1.0, 0.0]]))
        model.item_embedding.weight.copy_(torch.tensor([[3.0, 1.0], [1.0, 1.0]]))
    batch = {"user": torch.tensor([0, 1]), "item": torch.tensor([0, 0]), "rating": torch.tensor([6.0, 1.0])}
    # user 0 . item 0 = 3 + 2 = 5; user 1 . item 0 = -3 -> relu 0; MSE = ((5-6)^2 + (0-1)^2) / 2 = 1
    assert model.predict(batch).tolist() == [5.0, 0.0]
    assert model.calculate_loss(batch).item() == pytest.approx(1.0)
    assert model.full_sort_predict({"user": torch.tensor([0])}).tolist() == [[5.0, 3.0]]
    with pytest.raises(ValueError, match="trained users only"):
        model.full_sort_predict({"user": torch.tensor([-1])})  # serving answers these rows another way


def test_two_tower_paper_initialisation_is_uniform_integers_1_to_20():
    torch.manual_seed(0)
    model = TwoTowerRating(TwoTowerConfig(factors=4, init="paper"), AnimeData(50, 60, sp.csr_matrix((50, 60))))
    weights = torch.cat([model.user_embedding.weight.flatten(), model.item_embedding.weight.flatten()])
    assert torch.equal(weights, weights.round()) and weights.min() >= 1 and weights.max() <= 20
    assert len(weights.unique()) == 20  # 440 draws cover all 20 values
    with pytest.raises(ValueError, match="init"):
        TwoTowerRating(TwoTowerConfig(init="keras"), AnimeData(2, 2, sp.csr_matrix((2, 2))))


def test_bias_baseline_and_rmse():
    # one user, two items rated 8 and 6, no regularisation: mu = 7, b_i = (+1, -1), b_u = 0
    baseline = BiasBaseline.fit([0, 0], [0, 1], [8.0, 6.0], 1, 2, reg=0.0, rounds=3)
    np.testing.assert_allclose(baseline.predict([0, 0], [0, 1]), [8.0, 6.0])
    assert rmse([1.0, 3.0], [2.0, 5.0]) == pytest.approx(math.sqrt((1 + 4) / 2))


def test_implicit_two_tower_leaves_target_out_of_history():
    model = ImplicitTwoTower(ImplicitTwoTowerConfig(factors=2), DATA)
    with torch.no_grad():
        model.context_embedding.weight.copy_(torch.tensor([[1.0, 0.0], [0.0, 1.0], [2.0, 2.0]]))
    # user 2 watched all three items: mean = ([1,0] + [0,1] + [2,2]) / 3 = [1, 1]; leaving out
    # item 2 gives ([1,0] + [0,1]) / 2 = [.5, .5]; the last coordinate is the bias input 1
    full = model.encode_histories(X, np.array([2]))
    left_out = model.encode_histories(X, np.array([2]), leave_out=torch.tensor([2]))
    np.testing.assert_allclose(full.detach().numpy(), [[1, 1, 1]], atol=1e-6)
    np.testing.assert_allclose(left_out.detach().numpy(), [[0.5, 0.5, 1]], atol=1e-6)
    # a history batch is read instead of the training rows: items 0 and 2 -> mean [1.5, 1], bias input 1
    model.eval()
    np.testing.assert_allclose(model.user_tower(history([[9, 0, -1]])).detach().numpy(), [[1.5, 1, 1]], atol=1e-6)
    model.train()
    loss = model.calculate_loss({"user": torch.tensor([0, 1, 2]), "item": torch.tensor([0, 2, 1])})
    assert torch.isfinite(loss) and loss.item() > 0
    # log Q with +1 smoothing: counts (2,3,2)+1 = (3,4,3) over 10
    np.testing.assert_allclose(in_batch_log_q(np.array([0, 0, 1, 1, 1, 2, 2]), 3), np.log([0.3, 0.4, 0.3]),
                               rtol=1e-6)


def test_unseen_protocol_halves_and_metrics():
    unseen = pd.DataFrame({"user_id": [7] * 4 + [8] * 3, "item": [0, 1, 2, 3, 4, 5, 6],
                           "rating": [9, -1, 5, 6, 7, 8, 9]})
    histories, targets = unseen_protocol(unseen, n_items=7, seed=1)
    watched = histories.watched()
    # user 7: 4 rows -> 2 build, 2 target; user 8: 3 rows -> floor(3/2) = 1 build, 2 target
    assert [len(w) for w in watched] == [2, 1] and [len(t) for t in targets] == [2, 2]
    assert set(watched[0]) | set(targets[0]) == {0, 1, 2, 3} and not set(watched[0]) & set(targets[0])
    # a ranking [5, 3] against {3}: precision@10 = 1/10; AP@10 = (1/2) / min(1, 10) = .5;
    # NDCG@10 = (1/log2(3)) / 1 = .6309
    metrics = score_rankings(np.array([[5, 3, -1]]), [np.array([3])])
    assert metrics["precision@10"] == pytest.approx(0.1)
    assert metrics["map@10"] == pytest.approx(0.5)
    assert metrics["ndcg@10"] == pytest.approx(1 / math.log2(3))


def test_ease_state_is_the_upper_triangle_and_rebuilds_b_exactly():
    from recsys.models.ease import compact_upper, upper_triangle, weights_from_upper

    # P = [[.5,-.25,0],[-.25,.5,-.25],[0,-.25,.5]] (see the 3x3 test): upper rows (.5,-.25,0), (.5,-.25), (.5)
    P = np.array([[0.5, -0.25, 0], [-0.25, 0.5, -0.25], [0, -0.25, 0.5]], np.float32)
    np.testing.assert_array_equal(upper_triangle(P), [0.5, -0.25, 0, 0.5, -0.25, 0.5])
    np.testing.assert_allclose(weights_from_upper(upper_triangle(P), 3), [[0, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0]])
    # compact form: d = diag(P) = (.5, .5, .5), C = P / sqrt(d_i d_j) = 2 P -> upper (1, -.5, 0, 1, -.5, 1),
    # exact in float16; B_ij = -C_ij sqrt(d_i / d_j) = -C_ij gives the same B as above
    diagonal, upper = compact_upper(P)
    assert diagonal.dtype == np.float32 and upper.dtype == np.float16
    np.testing.assert_array_equal(diagonal, [0.5, 0.5, 0.5])
    np.testing.assert_array_equal(upper, [1, -0.5, 0, 1, -0.5, 1])
    np.testing.assert_allclose(weights_from_upper(upper, 3, diagonal), [[0, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0]])
    # unequal diagonal: P = [[2, 1], [1, 8]] -> d = (2, 8), C_01 = 1 / sqrt(16) = .25;
    # B_01 = -P_01 / P_11 = -1/8 = -C_01 sqrt(2 / 8) = -.25 * .5, B_10 = -1/2 = -.25 * sqrt(8 / 2)
    d2, c2 = compact_upper(np.array([[2.0, 1.0], [1.0, 8.0]]))
    np.testing.assert_allclose(weights_from_upper(c2, 2, d2), [[0, -0.125], [-0.5, 0]])
    model = EASE(EASEConfig(l2=1.0), DATA).fit(DATA)
    state = model.state()
    assert set(state) == {"items", "P_diag", "C_upper"} and state["C_upper"].shape == (6,)  # 3 * 4 / 2
    assert state["C_upper"].dtype == np.float16
    loaded = EASE(EASEConfig(l2=1.0), DATA)
    loaded.load_state(state)
    np.testing.assert_array_equal(loaded.B, model.B)
    with pytest.raises(ValueError, match="expected for 3 items"):
        loaded.load_state({"items": np.arange(3), "P_diag": np.ones(3), "C_upper": np.zeros(5)})
    with pytest.raises(ValueError, match="positive"):
        loaded.load_state({"items": np.arange(3), "P_diag": np.array([1.0, 0.0, 1.0]), "C_upper": np.zeros(6)})


def test_cosine_topk_is_computed_once_per_distinct_matrix(monkeypatch):
    """The page's warm-up thread, its quick bundle and its full bundle fit item-kNN on one matrix."""
    import threading

    from recsys.retrieval import cosine

    calls = []
    compute = cosine._cosine_topk
    gate = threading.Event()

    def counted(*args):
        calls.append(args[1:])
        gate.wait(5)  # hold the first computation until the second caller is waiting on it
        return compute(*args)

    monkeypatch.setattr(cosine, "_memo", type(cosine._memo)())
    monkeypatch.setattr(cosine, "_cosine_topk", counted)
    results = []
    threads = [threading.Thread(target=lambda: results.append(cosine.cosine_topk(X, k=2))) for _ in range(2)]
    for thread in threads:
        thread.start()
    gate.set()
    for thread in threads:
        thread.join(10)
    assert len(calls) == 1 and results[0] is results[1]  # one computation, both callers served by it
    # another k, or another matrix with the same shape, is computed afresh
    assert cosine.cosine_topk(X, k=1).nnz < results[0].nnz and len(calls) == 2
    assert cosine.cosine_topk(X, k=2) is results[0] and len(calls) == 2  # both remembered (MEMO_SIZE = 2)
    # row 0 now also watched item 2: cos(0, 2) goes from 1/2 to 2/sqrt(2 * 3) = 0.8165
    other = sp.csr_matrix(np.array([[1, 1, 1], [0, 1, 1], [1, 1, 1]], dtype=np.float32))
    assert cosine.cosine_topk(other, k=2).toarray()[0, 2] == pytest.approx(2 / math.sqrt(6)) and len(calls) == 3
    assert cosine.cosine_topk(X, k=2) is results[0]  # the most recently used two stay
    assert cosine.cosine_topk(X, k=1) is not None and len(calls) == 4  # the least recently used one was dropped
