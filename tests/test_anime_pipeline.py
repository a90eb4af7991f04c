"""The anime domain end to end on a made-up dataset (fast), and on the real sample (slow).

Serving through the registry and the model contract, the bundle artifact and hostile
files, studio checkpoints, ids that would wrap in int32, ``--k`` validation, and
seeded retraining giving identical scores.
"""

from __future__ import annotations

import json
import pickle
import time

import numpy as np
import pandas as pd
import pytest

from recsys import registry
from recsys.anime import cli as anime_cli
from recsys.anime import serving
from recsys.anime.cost import cost_study, popularity_diagnosis
from recsys.anime.experiments import bench, evaluate_bundle
from recsys.anime.prep import AnimeSettings
from recsys.anime.training import build, rmse_rows
from recsys.artifacts import ArtifactError
from recsys.data.anime import split_anime, synthetic_anime

TINY = dict(mse_epochs=3, mse_batch=256, implicit_epochs=2, implicit_batch=128, elbow_grid=(2, 3, 4, 6, 8),
            knn_neighbours=10, ease_l2=10.0, n_unseen=10)
METHODS = serving.method_names()
WRAPS_TO_20 = 4294967316  # = 2**32 + 20: int32 would make it anime / user 20


def tiny_split(seed: int = 0):
    catalogue, ratings = synthetic_anime(n_users=80, n_items=40, seed=0)
    return split_anime(catalogue, ratings, n_unseen=10, seed=seed)


@pytest.fixture(scope="module")
def tiny():
    return build(tiny_split(), AnimeSettings(**TINY), fingerprint="tiny-seed0")


def test_every_registered_anime_model_is_served():
    assert METHODS == [s.name for s in registry.by_domain("anime")] and len(METHODS) == 11


@pytest.mark.parametrize("method", METHODS)
def test_every_method_excludes_watched_items(tiny, method):
    histories = tiny.seen_histories(np.arange(5))
    scores, ids, fallbacks = tiny.rank(method, histories, k=5)
    assert ids.shape == (5, 5) and (ids >= 0).all()
    for row, watched in enumerate(histories.watched()):
        assert not set(ids[row]) & set(watched.tolist())
        assert np.all(np.diff(scores[row]) <= 1e-9)  # best first (clusters too: one score band per cluster)
    assert fallbacks == [None] * 5


def test_rank_is_full_sort_predict_then_top_k(tiny):
    """Serving adds nothing to the contract: the same ids as top_k over full_sort_predict."""
    from recsys.retrieval.topk import top_k

    histories = tiny.seen_histories(np.arange(4))
    for name in METHODS:
        expected = top_k(serving.scores_of(tiny.models[name], histories.batch()), 6, histories.watched())[1]
        assert tiny.rank(name, histories, 6)[1].tolist() == expected.tolist(), name


def test_candidate_top_k_is_top_k_with_ties_excluded_and_minus_inf():
    from recsys.retrieval.topk import top_k

    # row 0: scores (3, 5, 5, 1, 5, 0), watched {1}, k = 2: fetch k + 1 = 3 -> cut = 3rd best = 5, candidates
    # {1, 2, 4}; without 1 the best are the tied 5s at columns 2, 4 (lower column first), as top_k over the row
    scores = np.array([[3, 5, 5, 1, 5, 0], [-np.inf, -np.inf, 2, -np.inf, 1, -np.inf]], np.float32)
    watched = [np.array([1]), np.array([2, 4])]
    top, ids = serving.candidate_top_k(scores, 2, watched)
    assert ids.tolist() == [[2, 4], [-1, -1]]  # row 1: only -inf left after excluding 2 and 4 -> padding ids
    assert top[0].tolist() == [5.0, 5.0]
    rng = np.random.default_rng(0)
    for trial in range(50):  # rounded scores: many ties; random exclusions and -inf columns
        many = np.round(rng.normal(size=(3, 40)), 1).astype(np.float32)
        many[rng.random(many.shape) < 0.1] = -np.inf
        exclude = [rng.choice(40, size=rng.integers(0, 12), replace=False) for _ in range(3)]
        for k in (1, 5, 39, 60):
            expected = top_k(many, k, exclude)
            got = serving.candidate_top_k(many, k, exclude)
            assert got[1].tolist() == expected[1].tolist() and np.array_equal(got[0], expected[0]), (trial, k)


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
    top_wr = np.argsort(-tiny.model("popular").scores, kind="stable")[:3]
    assert ids[0].tolist() == top_wr.tolist() and "popularity" in fallbacks[0]


def test_ids_above_2_31_are_unknown_never_wrapped(tiny):
    assert 20 in set(tiny.split.item_ids.tolist())  # the id it would wrap to exists
    histories, skipped = tiny.histories_from_ids([WRAPS_TO_20, 2**70], [9, 9])
    assert skipped == 2 and histories.matrix.nnz == 0
    with pytest.raises(KeyError, match="not in the anime dataset"):
        anime_cli.recommend_rows(tiny, "weighted", user_id=WRAPS_TO_20)


def test_recommend_rows_for_dataset_and_history_users(tiny, tmp_path):
    seen_id = int(tiny.split.user_ids[0])
    (row,) = anime_cli.recommend_rows(tiny, "kmeans", k=4, user_id=seen_id)
    assert row["user_id"] == seen_id and len(row["results"]) == 4 and row["fallback"] is None
    assert set(row["results"][0]) == {"anime_id", "name", "genre", "score"}
    json.dumps(row)  # JSON-serialisable
    unseen_id = int(tiny.split.unseen["user_id"].iloc[0])
    (row,) = anime_cli.recommend_rows(tiny, "model", k=4, user_id=unseen_id)
    assert row["fallback"] and len(row["results"]) == 4
    with pytest.raises(KeyError, match="not in the anime dataset"):
        anime_cli.recommend_rows(tiny, "weighted", user_id=987654)
    history_file = tmp_path / "history.csv"
    history_file.write_text("user_id,anime_id,rating\n1,10,9\n1,20,-1\n1,99999,5\n2,77777,3\n")
    rows = anime_cli.recommend_rows(tiny, "implicit", k=3, history=anime_cli.read_history_file(history_file))
    assert [r["user_id"] for r in rows] == [1, 2]
    assert rows[0]["skipped_unknown"] == 1 and rows[0]["fallback"] is None
    assert {10, 20}.isdisjoint(r["anime_id"] for r in rows[0]["results"])
    assert rows[1]["skipped_unknown"] == 1 and "popularity" in rows[1]["fallback"]


def test_bad_history_file_is_reported(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("user_id,anime_id,rating\n1,10,nine\n")
    with pytest.raises(ValueError, match="line 2"):
        anime_cli.read_history_file(bad)
    with pytest.raises(FileNotFoundError):
        anime_cli.read_history_file(tmp_path / "missing.csv")


def test_evaluate_bundle_and_bench(tiny):
    records = evaluate_bundle(tiny, protocol_seed=0, seen_users=20)
    frame = pd.DataFrame(records)
    assert set(frame["protocol"]) == {"unseen", "seen"}
    assert set(frame.loc[frame["protocol"] == "unseen", "method"]) == set(METHODS) - {"anime-two-tower"}
    assert set(frame.loc[frame["protocol"] == "seen", "method"]) == set(METHODS)
    assert frame[["precision@10", "map@10", "ndcg@10"]].stack().between(0, 1).all()
    table = bench(tiny, methods=["weighted", "ease", "model"], n_users=3)
    assert table["p99_ms"].notna().all() and table["users"].tolist() == [3, 3, 3]
    # the ratio column divides by EASE's p50: 1 on EASE's own row
    assert table.set_index("method").loc["anime-ease", "p50_vs_anime-ease"] == pytest.approx(1.0)


def test_bench_blocks_let_each_method_serve_several_users_in_a_row(tiny, monkeypatch):
    calls = []
    rank = tiny.rank
    monkeypatch.setattr(tiny, "rank", lambda method, histories, k: calls.append(method) or rank(method, histories, k))
    table = bench(tiny, methods=["weighted", "ease", "model"], n_users=5, block=2)
    w, e, m = "anime-weighted", "anime-ease", "anime-two-tower"
    # 3 warm-up calls, then turns of 2 users, the method order rotated each turn; the last turn has 1 user
    assert calls[3:] == [w, w, e, e, m, m] + [e, e, m, m, w, w] + [m, w, e]
    assert table["users"].tolist() == [5, 5, 5] and set(table["block"]) == {2}


# --- the bundle artifact -------------------------------------------------------------------------
def test_bundle_round_trip_gives_identical_scores(tiny, tmp_path):
    path = serving.save_bundle(tiny, tmp_path / "bundle.safetensors")
    loaded = serving.load_bundle(path, tiny.data, tiny.settings)
    histories = tiny.seen_histories(np.arange(4))
    for name in METHODS:
        np.testing.assert_array_equal(serving.scores_of(loaded.models[name], histories.batch()),
                                      serving.scores_of(tiny.models[name], histories.batch()), err_msg=name)
    assert loaded.elbow["best_k"] == tiny.elbow["best_k"]
    with pytest.raises(ArtifactError, match="settings_key"):  # other settings: a stale bundle
        serving.load_bundle(path, tiny.data, AnimeSettings(**{**TINY, "mse_epochs": 4}))


class _Boom:
    def __reduce__(self):
        return (exec, ("raise SystemExit('pickle payload executed')",))


def _hostile_files(tmp_path, valid_other):
    valid = valid_other.read_bytes()
    return {
        "pickle": pickle.dumps(_Boom()),
        "random": np.random.default_rng(0).bytes(4096),
        "truncated": valid[: len(valid) // 2],
        "other-model": valid,
    }


@pytest.fixture(scope="module")
def other_checkpoint(tiny, tmp_path_factory):
    """A valid artifact of another model (the implicit tower's checkpoint)."""
    from recsys.checkpoint import save_model

    path = tmp_path_factory.mktemp("other") / "checkpoint.safetensors"
    return save_model(path, "anime-two-tower-implicit", tiny.models["anime-two-tower-implicit"],
                      {"data_fingerprint": tiny.data.fingerprint})


@pytest.mark.parametrize("kind", ["pickle", "random", "truncated", "other-model"])
def test_hostile_bundle_is_refused_by_name_and_rebuilt(tiny, tmp_path, monkeypatch, other_checkpoint, kind):
    path = tmp_path / "bundle.safetensors"
    path.write_bytes(_hostile_files(tmp_path, other_checkpoint)[kind])
    with pytest.raises(ArtifactError, match="bundle.safetensors"):
        serving.load_bundle(path, tiny.data, tiny.settings)
    # get_recommender refuses it and rebuilds (build is stubbed: the tiny bundle)
    monkeypatch.setattr(serving, "bundle_path", lambda settings: path)
    monkeypatch.setattr("recsys.anime.prep.load_split", lambda settings: (tiny.split, tiny.data.fingerprint))
    monkeypatch.setattr("recsys.anime.training.build", lambda *args, **kwargs: tiny)
    assert serving.get_recommender(tiny.settings) is tiny
    assert serving.load_bundle(path, tiny.data, tiny.settings).elbow == tiny.elbow  # the rebuilt file loads


def _activate(tmp_path, monkeypatch, name, payload: bytes):
    from recsys.train.loop import TrainConfig
    from recsys.train.runs import RunRegistry

    monkeypatch.setenv("RECSYS_RUNS_DIR", str(tmp_path / "runs"))
    # the run registry checks the recipe name against every domain's recipes; only the anime one matters here
    monkeypatch.setattr("recsys.train.runs.get_recipe", lambda name: None, raising=False)
    runs = RunRegistry()
    run = runs.create(name, TrainConfig(epochs=1))
    run.checkpoint_path.write_bytes(payload)
    run.set_status("done")
    runs.set_active(run.id)
    return run


def test_active_studio_run_is_served_and_refits_the_retrieval_methods(tiny, tmp_path, monkeypatch):
    import copy

    import torch

    from recsys.checkpoint import save_model

    mse = copy.deepcopy(tiny.models["anime-two-tower"])
    with torch.no_grad():
        mse.item_embedding.weight.zero_()
        mse.item_embedding.weight[:, 0] = 1.0
    path = save_model(tmp_path / "c.safetensors", "anime-two-tower", mse, {"data_fingerprint": tiny.data.fingerprint})
    run = _activate(tmp_path, monkeypatch, "anime-two-tower", path.read_bytes())
    served = serving.apply_active_runs(copy.deepcopy(tiny))
    assert served.train_info["anime-two-tower_run"] == run.id
    assert np.all(served.models["anime-two-tower"].item_vectors()[:, 0] == 1.0)
    assert np.all(served.models["anime-weighted"].item_vectors[:, 0] == 1.0)  # refitted on the new vectors
    # a checkpoint of another split is refused, with the file named
    save_model(run.checkpoint_path, "anime-two-tower", mse, {"data_fingerprint": "another-split"})
    refused = serving.apply_active_runs(copy.deepcopy(tiny))
    assert "anime-two-tower_run" not in refused.train_info
    assert "checkpoint.safetensors" in refused.train_info["refused"][0]


@pytest.mark.parametrize("kind", ["pickle", "random", "truncated", "other-model"])
def test_hostile_studio_checkpoint_is_refused_and_the_default_served(tiny, tmp_path, monkeypatch,
                                                                    other_checkpoint, kind):
    import copy

    _activate(tmp_path, monkeypatch, "anime-two-tower", _hostile_files(tmp_path, other_checkpoint)[kind])
    served = serving.apply_active_runs(copy.deepcopy(tiny))
    assert "anime-two-tower_run" not in served.train_info
    (message,) = served.train_info["refused"]
    assert "checkpoint.safetensors" in message
    histories = tiny.seen_histories(np.arange(3))
    assert served.rank("model", histories, 5)[1].tolist() == tiny.rank("model", histories, 5)[1].tolist()


# --- determinism ---------------------------------------------------------------------------------
def test_retraining_with_the_same_seed_gives_identical_scores(tiny):
    """Issue 10: the bundle's scores moved between retrains (unseeded initial weights)."""
    again = build(tiny_split(), AnimeSettings(**TINY), fingerprint="tiny-seed0")
    histories = tiny.seen_histories(np.arange(6))
    for name in METHODS:
        np.testing.assert_array_equal(serving.scores_of(again.models[name], histories.batch()),
                                      serving.scores_of(tiny.models[name], histories.batch()), err_msg=name)


def test_elbow_chosen_from_grid(tiny):
    assert tiny.elbow["best_k"] in TINY["elbow_grid"] and len(tiny.elbow["inertia"]) == len(TINY["elbow_grid"])
    assert len(tiny.model("kmeans").index.centers) == tiny.elbow["best_k"]
    assert len(tiny.model("gmm").index.centers) == tiny.elbow["best_k"]


# --- the CLI ---------------------------------------------------------------------------------------
def test_cli_recommend_jsonl_and_errors(tiny, monkeypatch, capsys, tmp_path):
    from recsys.cli import main

    monkeypatch.setattr(anime_cli, "cli_recommender", lambda args: tiny)
    user_id = int(tiny.split.user_ids[1])
    assert main(["recommend", "anime", "--method", "ease", "--user-id", str(user_id), "--k", "3"]) == 0
    line = json.loads(capsys.readouterr().out.strip())
    assert line["user_id"] == user_id and line["method"] == "ease" and len(line["results"]) == 3
    assert {"fallback", "latency_ms", "skipped_unknown"} <= set(line)
    assert main(["recommend", "anime", "--user-id", "999999"]) == 2
    assert "not in the anime dataset" in capsys.readouterr().err
    assert main(["recommend", "anime", "--user-id", str(WRAPS_TO_20)]) == 2  # not user 20
    assert "not in the anime dataset" in capsys.readouterr().err
    assert main(["recommend", "anime"]) == 2  # neither --user-id nor --history-file
    history = tmp_path / "h.csv"
    history.write_text("user_id,anime_id,rating\n5,10,8\n6,20,7\n")
    assert main(["recommend", "anime", "--history-file", str(history), "--method", "gmm"]) == 0
    assert [json.loads(x)["user_id"] for x in capsys.readouterr().out.splitlines()] == [5, 6]
    assert main(["recommend", "anime", "--method", "anime-two-tower-implicit", "--user-id", str(user_id)]) == 0


@pytest.mark.parametrize("method", anime_cli.method_choices())
@pytest.mark.parametrize("k", ["-1", "0", "10001", "1e9", "three"])
def test_cli_rejects_bad_k_for_every_method(method, k, monkeypatch, capsys):
    from recsys.cli import main

    monkeypatch.setattr(anime_cli, "cli_recommender", lambda args: pytest.fail("--k must be checked first"))
    with pytest.raises(SystemExit) as exit_info:
        main(["recommend", "anime", "--method", method, "--k", k, "--user-id", "1"])
    assert exit_info.value.code == 2 and "argument --k" in capsys.readouterr().err


def test_cost_study_and_rmse_rows(tiny):
    cost = cost_study(tiny, ks=(2, 4), n_users=10)
    assert cost["clusters"].tolist() == [2, 4]
    assert (cost["ms_full_scan"] > 0).all() and (cost["ms_nearest_cluster"] > 0).all()
    # fewer items per cluster as k grows; the all-anime RMSE does not depend on k
    assert cost["mean_cluster_size"].iloc[0] > cost["mean_cluster_size"].iloc[1]
    assert cost["rmse_all_anime"].nunique() == 1
    rows = rmse_rows(tiny)
    assert [r["predictor"].split(" (")[0] for r in rows] == ["global mean", "user + item bias", "two-tower MSE"]
    assert all(r["test_rmse"] > 0 for r in rows)


def test_popularity_diagnosis(tiny):
    table = popularity_diagnosis(tiny, methods=["popular-count", "weighted"])
    assert table["list"].tolist()[1:] == ["popular-count", "weighted"]
    assert table["share_in_top500"].between(0, 1).all()  # 40 items: every item is in the top 500
    assert "anime-two-tower" not in popularity_diagnosis(tiny)["list"].tolist()  # it cannot serve unseen users


@pytest.mark.slow
def test_real_sample_end_to_end():
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
    settings = AnimeSettings(mse_epochs=2, implicit_epochs=1, elbow_grid=(10, 40), n_unseen=80,
                             ease_max_items=1000, knn_neighbours=50)
    recommender = build(split, settings)
    frame = pd.DataFrame(evaluate_bundle(recommender, 0, seen_users=200)).set_index(["protocol", "method"])
    assert frame.loc[("unseen", "anime-popular-count"), "precision@10"] > 0.05  # popular anime do get watched
    rmse = {row["predictor"]: row["test_rmse"] for row in rmse_rows(recommender)}
    assert rmse["user + item bias"] < rmse["global mean"]
    assert frame.loc[("unseen", "anime-ease"), "precision@10"] > frame.loc[("unseen", "anime-weighted"), "precision@10"]
    assert time.perf_counter() - started < 300  # about 40 s on an idle 2-core machine


def test_old_pickle_bundle_is_never_read_and_is_replaced(tiny, tmp_path, monkeypatch):
    old = tmp_path / "bundle-abc-123.pkl"
    old.write_bytes(pickle.dumps(_Boom()))  # would raise SystemExit if anything unpickled it
    path = tmp_path / "bundle-abc-123.safetensors"
    monkeypatch.setattr(serving, "bundle_path", lambda settings: path)
    monkeypatch.setattr("recsys.anime.prep.load_split", lambda settings: (tiny.split, tiny.data.fingerprint))
    monkeypatch.setattr("recsys.anime.training.build", lambda *args, **kwargs: tiny)
    assert serving.get_recommender(tiny.settings) is tiny  # no new-format bundle yet: built
    assert path.exists() and not old.exists()  # the pickle is gone, the artifact written
    assert serving.get_recommender(tiny.settings).elbow == tiny.elbow  # and the artifact is what loads next


@pytest.mark.parametrize("name", ["anime-two-tower", "anime-two-tower-implicit"])
def test_studio_recipe_trains_and_saves_a_checkpoint_serving_loads(tiny, tmp_path, monkeypatch, name):
    import dataclasses

    from recsys.anime.training import recipe
    from recsys.checkpoint import load_model
    from recsys.train.recipes import RecipeContext

    monkeypatch.setattr("recsys.anime.prep.load_split", lambda settings: (tiny.split, tiny.data.fingerprint))
    spec = registry.get(name)
    made = recipe(spec)
    assert made.name == name and made.domain == "anime" and made.full.epochs >= made.defaults.epochs
    train = dataclasses.replace(made.defaults, epochs=1, batch_size=128)
    summary = made.run(RecipeContext(train, {}, [], tmp_path / "checkpoint.safetensors"))
    assert summary["seconds"] > 0
    model, meta = load_model(tmp_path / "checkpoint.safetensors", tiny.data,
                             expect={"model": name, "data_fingerprint": tiny.data.fingerprint})
    assert meta["seed"] == 0 and model.n_columns == tiny.data.n_items


def test_history_file_ids_above_2_31_are_refused_with_their_line(tiny, tmp_path):
    history_file = tmp_path / "history.csv"
    history_file.write_text(f"user_id,anime_id,rating\n1,{WRAPS_TO_20},9\n1,10,8\n")
    with pytest.raises(ValueError, match="line 2") as error:
        anime_cli.read_history_file(history_file)
    assert str(WRAPS_TO_20) in str(error.value)  # named as typed, never as anime 20
    good = tmp_path / "good.csv"
    good.write_text("user_id,anime_id,rating\n1,10,8\n1,30,-1\n")
    frame = anime_cli.read_history_file(good)
    assert frame["anime_id"].tolist() == [10, 30] and frame["anime_id"].dtype == np.int64


def test_welch_ttest_against_ease():
    from recsys.anime.experiments import ttests

    from recsys.eval.stats import COLUMNS

    raw = pd.DataFrame({"protocol": "unseen", "method": ["anime-ease"] * 3 + ["anime-two-tower-dlae"] * 3
                        + ["anime-itemknn"] * 3, "seed": [0, 1, 2] * 3,
                        "ndcg@10": [0.4, 0.5, 0.6, 0.5, 0.6, 0.7, 0.1, 0.2, 0.3]})
    table = ttests(raw)
    assert list(table.columns) == ["protocol", *COLUMNS]
    row = table.set_index("model").loc["anime-two-tower-dlae"]
    # difference 0.1; both variances 0.01 -> t = 0.1 / sqrt(0.01 / 3 + 0.01 / 3) = 1.2247, Welch df = 4,
    # p = 0.2879; Cohen's d = 0.1 / 0.1 = 1
    assert row["reference"] == "anime-ease" and row["diff"] == pytest.approx(0.1)
    assert row["t"] == pytest.approx(1.2247, abs=1e-4) and row["p"] == pytest.approx(0.2879, abs=1e-4)
    assert row["cohens_d"] == pytest.approx(1.0)
    # item-kNN: diff -0.3, t = -3.674, p = 0.0213 (df 4); Holm over 2 comparisons: 0.0213 * 2 = 0.0427 and
    # max(0.2879 * 1, 0.0427) = 0.2879
    knn = table.set_index("model").loc["anime-itemknn"]
    assert knn["p"] == pytest.approx(0.0213, abs=1e-4) and knn["p_holm"] == pytest.approx(0.0427, abs=1e-4)
    assert row["p_holm"] == pytest.approx(0.2879, abs=1e-4)
    assert knn["verdict"].startswith("anime-ease better than anime-itemknn")


def test_cli_serves_fast_methods_without_training_the_bundle(tiny, monkeypatch, tmp_path):
    import argparse

    monkeypatch.setattr(serving, "bundle_path", lambda settings: tmp_path / "missing.safetensors")
    asked = []
    monkeypatch.setattr(serving, "quick_recommender", lambda settings, methods: asked.append(methods) or tiny)
    monkeypatch.setattr(serving, "get_recommender", lambda *a, **k: pytest.fail("must not train the whole bundle"))
    assert anime_cli.cli_recommender(argparse.Namespace(method="itemknn")) is tiny
    assert anime_cli.cli_recommender(argparse.Namespace(method="popular")) is tiny
    assert anime_cli.cli_recommender(argparse.Namespace(method="ease")) is tiny
    assert anime_cli.cli_recommender(argparse.Namespace(method="dlae")) is tiny
    assert asked == [("anime-itemknn",), ("anime-popular",), ("anime-ease",), ("anime-two-tower-dlae",)]
    with pytest.raises(pytest.fail.Exception):  # the weighted average needs the MSE tower: the whole bundle
        anime_cli.cli_recommender(argparse.Namespace(method="weighted"))


def test_quick_recommender_fits_the_asked_method_and_the_cold_start_list(monkeypatch):
    monkeypatch.setattr(serving, "_QUICK", {})
    monkeypatch.setattr("recsys.anime.prep.load_split", lambda settings: (tiny_split(), "tiny-seed0"))
    quick = serving.quick_recommender(AnimeSettings(**TINY), methods=("anime-ease",))
    assert set(quick.models) == {"anime-ease", serving.COLD_START}
    histories = quick.seen_histories(np.arange(3))
    assert (quick.rank("ease", histories, 3)[1] >= 0).all()


def test_page_serves_the_quick_bundle_while_the_full_one_builds_in_a_thread(monkeypatch):
    import threading

    release = threading.Event()

    def full():
        release.wait(10)
        return "full"

    monkeypatch.setattr(serving, "_BUILD", {})
    monkeypatch.setattr(serving, "_SERVED", {})
    monkeypatch.setattr(serving, "bundle_exists", lambda settings=None: False)
    monkeypatch.setattr(serving, "quick_recommender", lambda settings=None: "quick")
    monkeypatch.setattr(serving, "page_recommender", full)
    assert serving.page_recommender_now() == ("quick", False)  # the quick bundle at once, no build started
    assert "thread" not in serving._BUILD
    assert serving.start_bundle_build() is True  # the page starts it after its first list
    assert serving.page_recommender_now() == ("quick", False)  # building: still the quick bundle
    thread = serving._BUILD["thread"]
    assert serving.start_bundle_build() is True and serving._BUILD["thread"] is thread  # no second thread
    release.set()
    thread.join(10)
    assert serving.page_recommender_now() == ("full", True)
