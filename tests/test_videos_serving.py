"""The video domain on the hand-made fixture: items, training, checkpoints, serving, CLI, eval, bench."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from test_videos_fixtures import FakeEmbedder, make_data

from recsys.videos import bench, experiments, prep, serving, training
from recsys.videos.cli import register_cli


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    """Caches, runs and results in tmp; quick training made tiny; nothing shipped is used."""
    monkeypatch.setenv("RECSYS_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("RECSYS_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setattr(training, "QUICK_TRAIN", dataclasses.replace(training.QUICK_TRAIN, epochs=4, device="cpu"))
    monkeypatch.setattr(training, "SHIPPED_CHECKPOINTS", {})
    # run registry recipes from this domain only (another domain mid-change must not fail these tests)
    from recsys import registry

    monkeypatch.setattr(registry, "MODELS", registry.VIDEO_MODELS)
    return tmp_path


@pytest.fixture
def service(isolated):
    return serving.VideoService(data=make_data(), embedder=FakeEmbedder())


def test_items_align_with_the_catalogue():
    data = make_data()
    f = prep.build_items(data, FakeEmbedder())
    assert f.title.shape == f.desc.shape == f.text.shape == (24, 32)
    assert f.query_emb.shape == (80, 32) and f.embedder_name == "fake-hash-32"
    q, rel, texts, rows = f.split("test")
    assert len(q) == len(rel) == len(texts) == 16
    # relevant indices point at the right video ids
    first = rows[0]
    assert [f.video_ids[i] for i in f.relevant[first]] == data.queries["relevant"][first]
    assert f.catalog_hash == prep.catalog_hash(data.catalog) and len(f.catalog_hash) == 16
    assert f.video_text[0] == data.catalog["text"][0]  # BM25 reads the same "title. description"
    with pytest.raises(ValueError, match="no queries in split"):
        f.split("nope")


def test_prepare_query():
    short = serving.prepare_query("  eigen   values \n")
    assert (short.text, short.notices, short.truncated) == ("eigen values", [], False)
    long = serving.prepare_query("x" * 10_000)
    assert len(long.text) == serving.MAX_QUERY_CHARS and "10,000 characters" in long.notices[0]
    assert long.truncated and long.original_chars == 10_000
    for bad in ["", "   \n\t", None]:
        with pytest.raises(ValueError):
            serving.prepare_query(bad)


def test_checkpoint_roundtrip_and_mismatch(isolated):
    from recsys.checkpoint import read_checkpoint

    data = make_data()
    f = prep.build_items(data, FakeEmbedder())
    train = dataclasses.replace(training.QUICK_TRAIN, epochs=2)
    model, result = training.train_model("dcdt", f, train)
    path = training.save_checkpoint(isolated / "c.safetensors", "dcdt", model, f, train, result)
    loaded, meta = training.load_checkpoint(path, f, expected_model="dcdt")
    q = f.split("test")[0]
    assert np.allclose(prep.full_scores(loaded, q), prep.full_scores(model.cpu(), q), atol=1e-5)
    assert meta["embedder"] == "fake-hash-32" and meta["data_fingerprint"] == f.catalog_hash
    assert meta["embed_dim"] == 32 and meta["train"]["epochs"] == 2 and meta["result"]["epochs_run"] == 2
    # embeddings are not stored: only learned weights
    assert not any(k.endswith("_emb") for k in read_checkpoint(path).arrays)
    other = prep.build_items(data, FakeEmbedder(dim=16))
    with pytest.raises(training.CheckpointMismatch, match="16-d"):
        training.load_checkpoint(path, other)
    changed = make_data()
    changed.catalog.loc[0, "title"] = "something else"
    changed_features = prep.build_items(changed, FakeEmbedder())
    with pytest.raises(training.CheckpointMismatch, match="catalogue"):
        training.load_checkpoint(path, changed_features, strict_catalog=True)
    # not strict (serving): the weights read only embeddings, so they still apply, flagged
    _, meta = training.load_checkpoint(path, changed_features)
    assert meta["catalog_matches"] is False
    with pytest.raises(training.CheckpointMismatch, match="holds a dcdt"):
        training.load_checkpoint(path, f, expected_model="single-tower")


def test_service_trains_once_caches_and_recommends(service, isolated):
    record = service.recommend("eigen spectrum stretch", "dcdt", k=3)
    assert set(record) == {"query", "model", "results", "latency_ms", "truncated"} and record["truncated"] is False
    assert record["model"] == "dcdt" and len(record["results"]) == 3 and record["latency_ms"] > 0
    first = record["results"][0]
    assert set(first) >= {"video_id", "title", "series", "topics", "score", "level"}
    scores = [r["score"] for r in record["results"]]
    assert scores == sorted(scores, reverse=True)
    assert "trained now" in service.model_source("dcdt")
    cached = list((isolated / "cache" / "videos" / "checkpoints").glob("dcdt-*"))
    assert [p.suffix for p in cached] == [".safetensors"]
    # a new service finds the cached checkpoint instead of training again
    again = serving.VideoService(data=make_data(), embedder=FakeEmbedder())
    assert again.recommend("eigen spectrum stretch", "dcdt", k=3)["results"] == record["results"]
    assert again.model_source("dcdt").startswith("cached checkpoint")


def test_service_compares_models_and_explains(service):
    names = serving.model_names()
    assert names == ["dcdt", "single-tower", "bm25", "cf", "embedding"]  # from the registry
    out = service.recommend_many("singular decomposition compress", names, k=5, explain=True)
    assert set(out["results"]) == set(names)
    for name, record in out["results"].items():
        # BM25 drops the videos that share no word with the query (score 0) and says how many
        assert len(record["results"]) + record["hidden_no_match"] == 5
        assert name == "bm25" or record["hidden_no_match"] == 0
    assert all(r["score"] > 0 for r in out["results"]["bm25"]["results"])
    # BM25 and embedding cosine put an svd video first for an svd query
    assert out["results"]["bm25"]["results"][0]["video_id"].startswith("svd")
    assert out["results"]["embedding"]["results"][0]["video_id"].startswith("svd")
    assert "why" not in out["results"]["bm25"]["results"][0]  # only DCDT splits its score by modality
    for r in out["results"]["dcdt"]["results"]:
        assert r["why"]["title"] + r["why"]["description"] + r["why"]["rest"] == pytest.approx(r["score"], abs=1e-4)
    assert len(out["neighbours"]) == 3 and out["neighbours"][0]["similarity"] >= out["neighbours"][1]["similarity"]
    assert out["backend"].startswith("fake hashing") and out["fallback_reason"] is None


@pytest.mark.parametrize("query", ["", "    ", "\n\t"])
def test_service_rejects_empty_queries(service, query):
    with pytest.raises(ValueError, match="empty"):
        service.recommend(query, "bm25")


def test_service_handles_long_emoji_and_markup(service):
    out = service.recommend_many("eigen " * 2000, ["bm25", "embedding"], k=3)
    assert len(out["query"]) <= serving.MAX_QUERY_CHARS and out["notices"]
    assert out["truncated"] is True and out["original_chars"] == 12_000
    weird = service.recommend("<script>alert(1)</script> eigen 🤔 **spectrum**", "embedding", k=3)
    assert len(weird["results"]) == 3
    with pytest.raises(ValueError, match="unknown model"):
        service.recommend("eigen", "nope")


def test_active_studio_run_is_served(service, isolated):
    from recsys.train.runs import RunRegistry

    f = service.bundle().items
    before = service.model_source("dcdt")  # loaded and cached before any run is served
    assert not before.startswith("studio run")
    train = dataclasses.replace(training.QUICK_TRAIN, epochs=1)
    registry = RunRegistry()
    run = registry.create("dcdt", train, {})
    model, result = training.train_model("dcdt", f, train)
    training.save_checkpoint(run.checkpoint_path, "dcdt", model, f, train, result)
    run.set_status("done")
    registry.set_active(run.id)
    assert service.model_source("dcdt").startswith(f"studio run {run.id}")  # picked up without a restart
    registry.clear_active("dcdt")
    assert not service.model_source("dcdt").startswith("studio run")  # back to the checkpoint it had


def main(argv):
    """``python -m recsys`` restricted to this domain's verbs (other domains may be mid-change)."""
    import argparse

    parser = argparse.ArgumentParser()
    verbs = parser.add_subparsers(dest="verb", required=True)
    register_cli({v: verbs.add_parser(v).add_subparsers(dest="domain", required=True)
                           for v in ("evaluate", "recommend", "bench", "reproduce")})
    args = parser.parse_args(argv)
    return args.func(args)


def test_cli_recommend_jsonl(service, monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(serving, "make_service", lambda backend="auto", api_key=None: service)
    assert main(["recommend", "videos", "--model", "bm25", "--k", "2", "--query", "gram schmidt"]) == 0
    record = json.loads(capsys.readouterr().out.strip())
    assert record["model"] == "bm25" and len(record["results"]) == 2
    assert record["results"][0]["video_id"].startswith("qr")
    # a file with a good and an empty line: one error object, exit 0; only empty lines: exit 1
    queries = tmp_path / "q.txt"
    queries.write_text("least squares\n   \n")
    assert main(["recommend", "videos", "--model", "embedding", "--queries-file", str(queries)]) == 0
    lines = [json.loads(x) for x in capsys.readouterr().out.strip().splitlines()]
    assert len(lines) == 2 and "results" in lines[0] and "empty" in lines[1]["error"]
    assert main(["recommend", "videos", "--model", "cf", "--query", "  "]) == 1
    assert "error" in json.loads(capsys.readouterr().out)


def test_cli_recommend_says_when_the_query_was_cut(service, monkeypatch, capsys):
    """Issue 10: a query over MAX_QUERY_CHARS is cut, and the JSON output says so."""
    monkeypatch.setattr(serving, "make_service", lambda backend="auto", api_key=None: service)
    query = "least squares " * 500  # 7,000 characters -> cut to 2,000
    assert main(["recommend", "videos", "--model", "bm25", "--k", "1", "--query", query]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["truncated"] is True and record["original_chars"] == 7_000
    assert len(record["query"]) <= serving.MAX_QUERY_CHARS
    assert main(["recommend", "videos", "--model", "bm25", "--k", "1", "--query", "least squares"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["truncated"] is False and "original_chars" not in record


@pytest.mark.parametrize("argv", [["--k", "0"], ["--k", "-1"], ["--k", "10001"], ["--k", "two"], ["--model", "nope"]])
def test_cli_rejects_bad_arguments_before_loading(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["recommend", "videos", "--query", "eigen", *argv])
    assert exit_info.value.code == 2


@pytest.mark.parametrize("argv", [["--seeds", "0"], ["--jobs", "-2"]])
def test_cli_evaluate_rejects_bad_counts(argv):
    with pytest.raises(SystemExit) as exit_info:
        main(["evaluate", "videos", *argv])
    assert exit_info.value.code == 2


def test_evaluate_videos_writes_tables(isolated):
    f = prep.build_items(make_data(), FakeEmbedder())
    train = dataclasses.replace(training.QUICK_TRAIN, epochs=2, patience=None)
    report = experiments.evaluate_videos(f, "test", seeds=2, train=train, ablations=False,
                                         results_dir=isolated / "results")
    assert set(report["table2"]) == {"DCDT", "Single tower", "BM25", "Collaborative filtering", "Embedding cosine"}
    mean, std = report["table2"]["DCDT"]["mrr@10"]
    assert 0 <= mean <= 1 and std >= 0
    assert (isolated / "results" / "table2_test.csv").exists() and (isolated / "results" / "table3_test.csv").exists()
    assert "Table 3" in report["text"] and "| DCDT (paper) | 0.821 |" in report["text"]
    assert "| Single tower (paper) | 0.735 |" in report["text"]


def test_bench_reports_percentiles(service):
    report = bench.bench_videos(service, ["dcdt", "embedding", "bm25"], k=5)
    for row in report["models"].values():
        assert row["n"] == 16
        assert 0 < row["torch/scoring"]["p50_ms"] <= row["torch/scoring"]["p99_ms"]
        assert row["torch/end_to_end"]["p50_ms"] >= row["torch/scoring"]["p50_ms"]
    assert "| DCDT |" in bench.render_bench(report)


def test_recipes_come_from_the_registry():
    from recsys import registry

    recipes = {name: training.recipe(registry.get(name)) for name in registry.names("videos", "neural")}
    assert set(recipes) == {"dcdt", "single-tower"}
    assert recipes["dcdt"].domain == "videos" and recipes["single-tower"].full.epochs == 200
    assert recipes["dcdt"].defaults.batch_size == 16 and recipes["dcdt"].defaults.monitor == "mrr@10"
    # the options are the model's config fields (the embedding size always comes from the embedder)
    assert recipes["dcdt"].options["hard_fraction"] == 0.3 and "embed_dim" not in recipes["dcdt"].options


def test_results_link_the_series_page_and_carry_a_one_line_summary():
    from recsys.data.videos import SERIES_PAGES, load_catalog

    # every series of the shipped catalogue has its official page (the catalogue has no per-video URL)
    assert set(load_catalog()["series"]) == set(SERIES_PAGES)
    assert serving.series_link("Khan Academy: Linear Algebra") == "https://www.khanacademy.org/math/linear-algebra"
    assert serving.series_link("Series 0") is None
    assert serving.first_sentence("Row picture. Column picture.") == "Row picture."
    assert serving.first_sentence("x" * 200, limit=10) == "x" * 9 + "…"


def test_a_chinese_query_reaches_bm25_through_the_glossary(service):
    # "奇异值分解" (singular value decomposition) shares no word with the English catalogue; the shipped
    # glossary appends its English term, which BM25 then finds in the svd videos' text
    out = service.recommend_many("奇异值分解", ["bm25"], k=5)
    assert out["query"] == "奇异值分解" and out["read_as"] == "奇异值分解 (singular value decomposition)"
    bm25 = out["results"]["bm25"]["results"]
    assert bm25 and bm25[0]["video_id"].startswith("svd") and bm25[0]["score"] > 0
    record = service.recommend("奇异值分解", "bm25", k=5)  # the CLI's record says what the models read
    assert record["read_as"] == out["read_as"] and record["query"] == "奇异值分解"
    assert "read_as" not in service.recommend("singular decomposition", "bm25", k=5)  # nothing glossed


def test_evaluation_queries_are_read_with_the_glossary_training_queries_as_typed():
    data = make_data()
    first_train = data.queries.index[data.queries["split"] == "train"][0]
    first_test = data.queries.index[data.queries["split"] == "test"][0]
    data.queries.loc[[first_train, first_test], "text"] = "奇异值分解"
    train_row, test_row = (data.queries.index.get_loc(i) for i in (first_train, first_test))
    glossed = prep.build_items(data, FakeEmbedder())
    typed = prep.build_items(data, FakeEmbedder(), glossary=False)
    assert glossed.query_text[test_row] == "奇异值分解 (singular value decomposition)"
    assert glossed.query_text[train_row] == "奇异值分解"  # the models learn from what people typed
    assert typed.query_text[test_row] == "奇异值分解"
    assert not np.allclose(glossed.query_emb[test_row], typed.query_emb[test_row])  # scored as glossed
    others = [i for i in range(len(typed.query_text)) if i != test_row]
    assert [glossed.query_text[i] for i in others] == [typed.query_text[i] for i in others]


def test_validation_and_test_queries_are_read_as_served_train_queries_as_typed():
    from recsys.embed.combined import ConcatEmbedder, join_unit_rows
    from recsys.embed.glossary import expand_query

    data = make_data()
    splits = list(data.queries["split"])
    val, train_row = splits.index("validation"), splits.index("train")
    typed = list(data.queries["text"])
    typed[val] = typed[train_row] = "特征值是什么"
    data.queries["text"] = typed
    english, multilingual = FakeEmbedder(name="english"), FakeEmbedder(name="multilingual")
    multilingual.reads_glosses = False
    f = prep.build_items(data, ConcatEmbedder(english, multilingual))
    glossed = expand_query("特征值是什么")
    assert (f.query_text[val], f.query_typed[val]) == (glossed, "特征值是什么")  # BM25 reads the glosses
    # the English part reads the glosses, the multilingual one the query as typed
    expected = join_unit_rows([english.encode([glossed]), multilingual.encode(["特征值是什么"])])
    np.testing.assert_allclose(f.query_emb[val], expected[0], atol=1e-6)
    # a training query is read as typed by both parts
    as_typed = join_unit_rows([english.encode(["特征值是什么"]), multilingual.encode(["特征值是什么"])])
    np.testing.assert_allclose(f.query_emb[train_row], as_typed[0], atol=1e-6)
    assert f.query_text[train_row] == "特征值是什么"
    assert not np.allclose(expected, as_typed)  # the two readings differ, so the checks above can fail
