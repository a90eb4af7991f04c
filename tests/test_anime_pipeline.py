"""The anime pipeline end to end on a made-up dataset (fast), and on the real sample (slow)."""

from __future__ import annotations

import json
import time

import numpy as np
import pandas as pd
import pytest

from recsys.data.anime import split_anime, synthetic_anime
from recsys.pipelines import anime as pipeline

TINY = dict(mse_epochs=3, mse_batch=256, implicit_epochs=2, implicit_batch=128, elbow_grid=(2, 3, 4, 6, 8),
            knn_neighbours=10, ease_l2=10.0, n_unseen=10)


@pytest.fixture(scope="module")
def tiny():
    catalogue, ratings = synthetic_anime(n_users=80, n_items=40, seed=0)
    split = split_anime(catalogue, ratings, n_unseen=10, seed=0)
    return pipeline.build(split, pipeline.AnimeSettings(**TINY))


@pytest.mark.parametrize("method", list(pipeline.METHODS))
def test_every_method_excludes_watched_items(tiny, method):
    histories = tiny.seen_histories(np.arange(5))
    scores, ids, fallbacks = tiny.rank(method, histories, k=5)
    assert ids.shape == (5, 5)
    for row, watched in enumerate(histories.watched()):
        assert not set(ids[row]) & set(watched.tolist())
        finite = scores[row][ids[row] >= 0]
        assert np.all(np.diff(finite) <= 1e-9) or method in ("kmeans", "gmm")  # best first (clusters: by cluster)
    assert fallbacks == [None] * 5


def test_model_method_on_unseen_user_falls_back_to_weighted(tiny):
    histories, skipped = tiny.histories_from_ids([10, 20, 999_999], [9, 7, 5])
    assert skipped == 1  # 999999 is not an anime of the dataset
    _, ids, fallbacks = tiny.rank("model", histories, k=5)
    _, weighted_ids, _ = tiny.rank("weighted", histories, k=5)
    assert "weighted average" in fallbacks[0] and ids.tolist() == weighted_ids.tolist()


def test_empty_history_falls_back_to_popularity(tiny):
    histories, skipped = tiny.histories_from_ids([123456], [8])
    assert skipped == 1
    _, ids, fallbacks = tiny.rank("ease", histories, k=3)
    top_wr = np.argsort(-tiny.popular_wr.scores, kind="stable")[:3]
    assert ids[0].tolist() == top_wr.tolist() and "popularity" in fallbacks[0]


def test_recommend_rows_for_dataset_and_history_users(tiny, tmp_path):
    seen_id = int(tiny.split.user_ids[0])
    (row,) = pipeline.recommend_rows(tiny, "kmeans", k=4, user_id=seen_id)
    assert row["user_id"] == seen_id and len(row["results"]) == 4 and row["fallback"] is None
    assert set(row["results"][0]) == {"anime_id", "name", "genre", "score"}
    json.dumps(row)  # JSON-serialisable
    unseen_id = int(tiny.split.unseen["user_id"].iloc[0])
    (row,) = pipeline.recommend_rows(tiny, "model", k=4, user_id=unseen_id)
    assert row["fallback"] and len(row["results"]) == 4
    with pytest.raises(KeyError, match="not in the anime dataset"):
        pipeline.recommend_rows(tiny, "weighted", user_id=987654)
    history_file = tmp_path / "history.csv"
    history_file.write_text("user_id,anime_id,rating\n1,10,9\n1,20,-1\n1,99999,5\n2,77777,3\n")
    rows = pipeline.recommend_rows(tiny, "implicit", k=3, history=pipeline.read_history_file(history_file))
    assert [r["user_id"] for r in rows] == [1, 2]
    assert rows[0]["skipped_unknown"] == 1 and rows[0]["fallback"] is None
    assert {10, 20}.isdisjoint(r["anime_id"] for r in rows[0]["results"])
    assert rows[1]["skipped_unknown"] == 1 and "popularity" in rows[1]["fallback"]


def test_bad_history_file_is_reported(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("user_id,anime_id,rating\n1,10,nine\n")
    with pytest.raises(ValueError, match="line 2"):
        pipeline.read_history_file(bad)
    with pytest.raises(FileNotFoundError):
        pipeline.read_history_file(tmp_path / "missing.csv")


def test_evaluate_bundle_and_save_load(tiny, tmp_path):
    records = pipeline.evaluate_bundle(tiny, protocol_seed=0, seen_users=20)
    frame = pd.DataFrame(records)
    assert set(frame["protocol"]) == {"unseen", "seen"}
    assert set(frame.loc[frame["protocol"] == "unseen", "method"]) == set(pipeline.METHODS) - {"model"}
    assert frame[["precision@10", "map@10", "ndcg@10"]].stack().between(0, 1).all()
    path = tmp_path / "bundle.pkl"
    tiny.save(path)
    loaded = pipeline.AnimeRecommender.load(path)
    histories = tiny.seen_histories(np.arange(3))
    assert loaded.rank("implicit", histories, 5)[1].tolist() == tiny.rank("implicit", histories, 5)[1].tolist()
    assert pipeline.bench(loaded, methods=["weighted", "ease"], n_users=3)["p99_ms"].notna().all()


def test_elbow_chosen_from_grid(tiny):
    assert tiny.elbow["best_k"] in TINY["elbow_grid"] and len(tiny.elbow["inertia"]) == len(TINY["elbow_grid"])
    assert len(tiny.kmeans.centers) == tiny.elbow["best_k"]


@pytest.mark.slow
def test_real_sample_end_to_end(tmp_path, monkeypatch):
    """The real Kaggle sample through the split, every model (tiny epochs) and both protocols."""
    from recsys.data.anime import load_anime
    from recsys.paths import DataNotFoundError

    try:
        catalogue, ratings = load_anime()
    except DataNotFoundError as error:
        pytest.skip(f"anime data not available: {error}")
    started = time.perf_counter()
    full_split = split_anime(catalogue, ratings, seed=0)  # the paper's split on the whole sample
    assert full_split.summary()["unseen_users"] == 500 and full_split.n_items > 5000
    # models on the first 800 users only, to keep the test well under a minute
    subset = ratings[ratings["user_id"].isin(np.sort(ratings["user_id"].unique())[:800])]
    split = split_anime(catalogue, subset, n_unseen=80, seed=0)
    settings = pipeline.AnimeSettings(mse_epochs=2, implicit_epochs=1, elbow_grid=(10, 40), n_unseen=80,
                                      ease_max_items=1000, knn_neighbours=50)
    recommender = pipeline.build(split, settings)
    records = pipeline.evaluate_bundle(recommender, 0, seen_users=200)
    frame = pd.DataFrame(records).set_index(["protocol", "method"])
    assert frame.loc[("unseen", "popular-count"), "precision@10"] > 0.05  # popular anime do get watched
    rmse = {row["predictor"]: row["test_rmse"] for row in pipeline.rmse_rows(recommender)}
    assert rmse["user + item bias"] < rmse["global mean"]
    assert frame.loc[("unseen", "ease"), "precision@10"] > frame.loc[("unseen", "weighted"), "precision@10"]
    assert time.perf_counter() - started < 300  # about 40 s on an idle 2-core machine


def test_cli_recommend_jsonl_and_errors(tiny, monkeypatch, capsys, tmp_path):
    from recsys.cli import main

    monkeypatch.setattr(pipeline, "_cli_recommender", lambda args: tiny)
    user_id = int(tiny.split.user_ids[1])
    assert main(["recommend", "anime", "--method", "ease", "--user-id", str(user_id), "--k", "3"]) == 0
    line = json.loads(capsys.readouterr().out.strip())
    assert line["user_id"] == user_id and line["method"] == "ease" and len(line["results"]) == 3
    assert {"fallback", "latency_ms", "skipped_unknown"} <= set(line)
    assert main(["recommend", "anime", "--user-id", "999999"]) == 2
    assert "not in the anime dataset" in capsys.readouterr().err
    assert main(["recommend", "anime"]) == 2  # neither --user-id nor --history-file
    history = tmp_path / "h.csv"
    history.write_text("user_id,anime_id,rating\n5,10,8\n6,20,7\n")
    assert main(["recommend", "anime", "--history-file", str(history), "--method", "gmm"]) == 0
    assert [json.loads(x)["user_id"] for x in capsys.readouterr().out.splitlines()] == [5, 6]


def test_cost_study_and_rmse_rows(tiny):
    cost = pipeline.cost_study(tiny, ks=(2, 4), n_users=10)
    assert cost["clusters"].tolist() == [2, 4]
    assert (cost["ms_full_scan"] > 0).all() and (cost["ms_nearest_cluster"] > 0).all()
    # fewer items per cluster as k grows; the all-anime RMSE does not depend on k
    assert cost["mean_cluster_size"].iloc[0] > cost["mean_cluster_size"].iloc[1]
    assert cost["rmse_all_anime"].nunique() == 1
    rows = pipeline.rmse_rows(tiny)
    assert [r["predictor"].split(" (")[0] for r in rows] == ["global mean", "user + item bias", "two-tower MSE"]
    assert all(r["test_rmse"] > 0 for r in rows)


def test_popularity_diagnosis(tiny):
    table = pipeline.popularity_diagnosis(tiny, methods=["popular-count", "weighted"])
    assert table["list"].tolist()[1:] == ["popular-count", "weighted"]
    assert table["share_in_top500"].between(0, 1).all()  # 40 items: every item is in the top 500


def test_active_studio_run_is_served(tiny, tmp_path, monkeypatch):
    import copy

    import torch

    from recsys.train.loop import TrainConfig
    from recsys.train.runs import RunRegistry, atomic_torch_save

    monkeypatch.setenv("RECSYS_RUNS_DIR", str(tmp_path / "runs"))
    registry = RunRegistry()
    run = registry.create("anime-two-tower", TrainConfig(epochs=1))
    state = {k: torch.zeros_like(v) for k, v in tiny.mse.state_dict().items()}
    state["item_embedding.weight"][:, 0] = 1.0
    atomic_torch_save({"state_dict": state, "seed": tiny.settings.seed, "n_items": tiny.split.n_items},
                      run.checkpoint_path)
    run.set_status("done")
    registry.set_active(run.id)
    served = pipeline.apply_active_runs(copy.deepcopy(tiny))
    assert served.train_info["mse_run"] == run.id
    assert np.all(served.mse.item_vectors()[:, 0] == 1.0)
    # a checkpoint of another split is ignored
    atomic_torch_save({"state_dict": state, "seed": 99, "n_items": tiny.split.n_items}, run.checkpoint_path)
    assert "mse_run" not in pipeline.apply_active_runs(copy.deepcopy(tiny)).train_info
