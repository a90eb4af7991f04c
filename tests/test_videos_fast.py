"""The torch-free serving path (recsys/videos/pack.py, fastserve.py, recsys/embed/onnx_*.py) against the torch one."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from test_videos_fixtures import tiny_items

from recsys.embed import onnx_query
from recsys.embed.local import ModelIntegrityError
from recsys.models.dcdt import DCDT, DCDTConfig
from recsys.models.single_tower import SingleTower, SingleTowerConfig
from recsys.videos import fastserve, pack as packs
from recsys.videos.prep import full_scores

ROOT = Path(__file__).resolve().parent.parent


def test_cf_scorer_arithmetic():
    # 2 training queries, 3 videos; query q = [1, 0]. sims: q.[1,0] = 1, q.[0.6,0.8] = 0.6;
    # k = 2 neighbours vote: video 0 gets 1 (query 0), video 2 gets 0.6 (query 1), video 1 nothing.
    arrays = {"cf/queries": np.array([[1.0, 0.0], [0.6, 0.8]], np.float32),
              "cf/votes": np.array([[1, 0, 0], [0, 0, 1]], np.float32), "cf/k": np.asarray(2)}
    scores = packs.CFScorer(arrays, "cf/").scores(np.array([[1.0, 0.0]], np.float32), ["q"])
    assert scores.tolist() == [pytest.approx([1.0, 0.0, 0.6])]


def test_cosine_scorer_normalises_the_query():
    # the query [3, 4] has norm 5 -> [0.6, 0.8]; items [1, 0] and [0, 1] score 0.6 and 0.8
    arrays = {"embedding/items": np.eye(2, dtype=np.float32)}
    scores = packs.CosineScorer(arrays, "embedding/").scores(np.array([[3.0, 4.0]], np.float32), ["q"])
    assert scores.tolist() == [pytest.approx([0.6, 0.8])]


@pytest.mark.parametrize("cosine_skip", [True, False])
def test_dcdt_scorer_equals_full_sort_predict(cosine_skip):
    torch.manual_seed(0)
    items = tiny_items(n_videos=6, dim=5)
    model = DCDT(DCDTConfig(hidden_dim=8, attn_dim=4, cosine_skip=cosine_skip, tied_init=False), items).eval()
    with torch.no_grad():  # a non-zero fusion, so every term of the score counts
        model.fusion.weight.normal_()
        model.fusion.bias.fill_(0.3)
    scorer = packs.DCDTScorer({f"dcdt/{k}": v for k, v in packs.model_arrays("dcdt", model).items()}, "dcdt/")
    q = items.query_emb[:5]
    assert np.abs(scorer.scores(q, [""] * 5) - full_scores(model, q)).max() < 1e-5
    parts = scorer.contributions(q[0])
    expected = model.contributions(torch.from_numpy(q[0])).numpy()
    assert np.abs(parts - expected).max() < 1e-5
    assert np.allclose(parts.sum(1), full_scores(model, q[:1])[0], atol=1e-5)  # the three parts sum to the score


def test_single_tower_scorer_equals_full_sort_predict():
    torch.manual_seed(1)
    items = tiny_items(n_videos=6, dim=5)
    model = SingleTower(SingleTowerConfig(hidden_dim=8), items).eval()
    scorer = packs.SingleTowerScorer({f"s/{k}": v for k, v in packs.model_arrays("single-tower", model).items()}, "s/")
    q = items.query_emb[:4]
    assert np.abs(scorer.scores(q, [""] * 4) - full_scores(model, q)).max() < 1e-5


def test_pack_round_trip_and_refusals(tmp_path):
    arrays = {"meta/version": np.asarray(packs.PACK_VERSION), "meta/key": np.asarray("abc"),
              "meta/space": np.asarray("s"), "meta/models": np.asarray(["embedding"]),
              "meta/sources": np.asarray(["fitted"]), "embedding/items": np.eye(2, dtype=np.float32)}
    packs.save_pack(tmp_path / "p.npz", arrays)
    loaded = packs.load_pack(tmp_path / "p.npz")
    assert loaded.key == "abc" and loaded.models == ["embedding"]
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="not a readable serving pack"):
        packs.load_pack(tmp_path / "bad.npz")
    np.savez(tmp_path / "obj.npz", **{"meta/version": np.array([object()], dtype=object)})
    with pytest.raises(ValueError):  # allow_pickle=False: an object array is refused, never unpickled
        packs.load_pack(tmp_path / "obj.npz")


class _Unit:
    def __init__(self, name, space, row):
        self.name, self.space, self.dim, self.row = name, space, len(row), np.asarray(row, np.float32)

    def encode(self, texts, progress=False):
        return np.tile(self.row, (len(texts), 1))


def test_concatenation_of_two_encoders(monkeypatch):
    # [1, 0] and [0.6, 0.8] side by side = [1, 0, 0.6, 0.8], norm sqrt(2) -> divided by sqrt(2): a unit row
    concat = onnx_query.ConcatQueryEncoder([_Unit("a", "A", [1, 0]), _Unit("b", "B", [0.6, 0.8])])
    row = concat.encode(["x"])[0]
    assert concat.space == "A+B" and concat.dim == 4
    assert row.tolist() == pytest.approx([0.70711, 0.0, 0.42426, 0.56569], abs=1e-5)
    assert np.linalg.norm(row) == pytest.approx(1.0)
    monkeypatch.setitem(onnx_query.SPACE_DEFAULTS, "A", ("enc-a",))
    monkeypatch.setitem(onnx_query.SPACE_DEFAULTS, "B", ("enc-b",))
    monkeypatch.delenv("RECSYS_QUERY_ENCODER", raising=False)
    assert onnx_query.encoder_for_space("A+B") == "enc-a+enc-b"
    with pytest.raises(KeyError):
        onnx_query.encoder_for_space("C")


def test_prepare_builds_the_pack_of_the_shipped_checkpoints(prepared):
    """After ``prepare`` the pack of the committed checkpoints and data files is there: nothing is built on a query."""
    from recsys.embed import get_embedder

    space = get_embedder("local").name  # the local default's space: the one the Ask page serves
    checkpoints = {name: fastserve.shipped_checkpoint(name, space) for name in packs.NEURAL}
    assert checkpoints["dcdt"] is not None and checkpoints["single-tower"] is not None
    pack, origin = fastserve.locate_pack(space, build_if_missing=False, checkpoints=checkpoints)
    assert pack.key == packs.pack_key(space, fastserve.pack_sources(), checkpoints)
    assert origin == f"serving pack {pack.key}.npz" and set(packs.NEURAL) <= set(pack.models)


def test_without_prepare_the_query_side_is_served_in_numpy(tmp_path, monkeypatch, prepared):
    # an empty cache: the ONNX graphs are not built, so MiniLM and USE fall back to numpy (same vectors,
    # slower); each graph is chosen once it and its manifest are there, MiniLM's int8 one first
    from recsys.embed.onnx_minilm import OnnxMiniLM, OnnxMiniLMInt8
    from recsys.embed.onnx_use import OnnxUse

    monkeypatch.delenv("RECSYS_QUERY_ENCODER", raising=False)
    monkeypatch.setenv("RECSYS_CACHE_DIR", str(tmp_path))
    space = "minilm-l6-v2+use-multilingual-v3"
    assert onnx_query.encoder_for_space(space) == "minilm-numpy+use-multilingual-numpy"
    (tmp_path / "encoders").mkdir(exist_ok=True)
    expected = ("minilm-onnx+use-multilingual-numpy", "minilm-int8-onnx+use-multilingual-numpy",
                "minilm-int8-onnx+use-onnx")
    for graph, served in zip((OnnxMiniLM, OnnxMiniLMInt8, OnnxUse), expected):
        for suffix in (".onnx", ".json"):
            (tmp_path / "encoders" / Path(graph.file).with_suffix(suffix)).symlink_to(
                prepared / "encoders" / Path(graph.file).with_suffix(suffix))
        assert onnx_query.encoder_for_space(space) == served


def test_a_graph_of_an_older_recipe_is_not_served_and_prepare_rebuilds_it(tmp_path, monkeypatch, prepared):
    from recsys.embed import onnx_build
    from recsys.embed.onnx_minilm import GRAPH_RECIPE, OnnxMiniLMInt8, read_manifest

    monkeypatch.setenv("RECSYS_CACHE_DIR", str(tmp_path))
    (tmp_path / "encoders").mkdir()
    graph = tmp_path / "encoders" / OnnxMiniLMInt8.file
    graph.symlink_to(prepared / "encoders" / OnnxMiniLMInt8.file)
    manifest = json.loads((prepared / "encoders" / OnnxMiniLMInt8.file).with_suffix(".json").read_text())
    assert manifest["recipe"] == GRAPH_RECIPE and OnnxMiniLMInt8.available() is False  # no manifest yet
    graph.with_suffix(".json").write_text(json.dumps(manifest))
    assert OnnxMiniLMInt8.available() is True and onnx_build.is_current(graph)
    graph.with_suffix(".json").write_text(json.dumps({**manifest, "recipe": GRAPH_RECIPE - 1}))  # an older prepare's
    assert OnnxMiniLMInt8.available() is False and not onnx_build.is_current(graph)
    with pytest.raises(ModelIntegrityError, match="older recipe.*recsys prepare"):
        read_manifest(graph)


def test_first_layer_nodes_are_the_products_before_the_second_attention():
    from types import SimpleNamespace

    from recsys.embed.onnx_build import first_layer_nodes

    def graph(*ops):
        return SimpleNamespace(graph=SimpleNamespace(node=[SimpleNamespace(op_type=op, name=f"{op}_{i}")
                                                           for i, op in enumerate(ops)]))

    # layer 1 = Attention, MatMul (output), SkipLayerNorm, MatMul (FFN in), BiasGelu, MatMul (FFN out), ...
    layers = ["Attention", "MatMul", "SkipLayerNormalization", "MatMul", "BiasGelu", "MatMul", "SkipLayerNormalization"]
    assert first_layer_nodes(graph("Cast", *layers, *layers)) == ["Attention_1", "MatMul_2", "MatMul_4", "MatMul_6"]
    with pytest.raises(ValueError, match="fusion"):
        first_layer_nodes(graph("MatMul", "Softmax", "MatMul"))  # not fused: layers cannot be told apart


def test_onnx_encoder_refuses_a_file_that_does_not_match_its_manifest(tmp_path, prepared):
    from recsys.embed.onnx_minilm import OnnxMiniLMInt8

    built = prepared / "encoders" / OnnxMiniLMInt8.file
    with pytest.raises(FileNotFoundError, match="recsys prepare"):
        OnnxMiniLMInt8(tmp_path / "m.onnx")  # not built yet: says how to build it
    (tmp_path / "m.onnx").symlink_to(built)
    manifest = json.loads(built.with_suffix(".json").read_text())
    (tmp_path / "m.json").write_text(json.dumps({**manifest, "sha256": "0" * 64}))
    with pytest.raises(ModelIntegrityError, match="integrity"):
        OnnxMiniLMInt8(tmp_path / "m.onnx")
    (tmp_path / "m.json").write_text(json.dumps({**manifest, "source_sha256": "1" * 64}))
    with pytest.raises(ModelIntegrityError, match="other weights"):
        OnnxMiniLMInt8(tmp_path / "m.onnx")


@pytest.mark.slow
def test_prepare_rebuilds_a_damaged_graph_and_keeps_a_good_one(tmp_path, prepared):
    import shutil

    from recsys.embed import onnx_build

    for path in (prepared / "encoders").glob("minilm-l6-v2-*"):
        shutil.copy2(path, tmp_path / path.name)
    good = {p.name: p.stat().st_mtime_ns for p in tmp_path.iterdir()}
    assert onnx_build.ensure_built(tmp_path)[1] is False  # both current: nothing built
    assert {p.name: p.stat().st_mtime_ns for p in tmp_path.iterdir()} == good
    int8 = tmp_path / "minilm-l6-v2-int8.onnx"
    expected = json.loads(int8.with_suffix(".json").read_text())["sha256"]
    int8.write_bytes(int8.read_bytes()[:1000])  # a truncated graph
    assert onnx_build.ensure_built(tmp_path)[1] is True
    assert json.loads(int8.with_suffix(".json").read_text())["sha256"] == expected  # the export is deterministic
    assert onnx_build.is_current(int8)


@pytest.mark.slow
def test_onnx_encoders_match_the_torch_encoder(prepared):
    from recsys.embed.local import load_minilm
    from recsys.embed.onnx_minilm import OnnxMiniLM, OnnxMiniLMInt8

    texts = ["特征值是什么", "what is an eigenvector, intuitively?", "Gram-Schmidt " * 100]  # the last one is cut
    reference = load_minilm().encode(texts)
    fp32 = OnnxMiniLM().encode(texts)
    assert np.abs(fp32 - reference).max() < 1e-3  # fp16-stored weights, fp32 compute
    cosine = (OnnxMiniLMInt8().encode(texts) * reference).sum(1)
    assert cosine.min() > 0.985  # layers 2-6 in int8 (validation queries: mean 0.995, min 0.990)
    assert np.linalg.norm(fp32, axis=1) == pytest.approx([1.0] * 3, abs=1e-5)


@pytest.mark.slow
def test_the_int8_graph_keeps_exactly_the_first_layer_in_fp32(prepared):
    import onnx

    from recsys.embed.onnx_minilm import OnnxMiniLMInt8

    ops = [node.op_type for node in onnx.load(str(prepared / "encoders" / OnnxMiniLMInt8.file)).graph.node]
    # 6 layers of (Attention + 3 MatMul): layer 1's 4 products in fp32, the other 5 layers' 20 quantised
    assert (ops.count("Attention"), ops.count("MatMul")) == (1, 3)
    assert (ops.count("QAttention"), ops.count("MatMulInteger")) == (5, 15)


@pytest.mark.slow
def test_shipped_pack_scores_equal_the_torch_models_on_real_queries(prepared):
    from recsys.embed import get_embedder
    from recsys.videos.serving import VideoService

    service = VideoService(embedder=get_embedder("local"), train_if_missing=False)
    bundle = service.bundle()
    pack, _ = fastserve.locate_pack(service.embedder.name, build_if_missing=False)
    q, _, texts, _ = bundle.items.split("validation")
    for name in pack.models:
        diff = np.abs(pack.scorer(name).scores(q, texts) - full_scores(bundle.model(name), q, texts)).max()
        assert diff < 1e-4, name


FRESH_QUERY = """
import json, sys, time
from recsys.embed import usem
from recsys.videos import serving
service = serving.make_service("local")
deadline = time.time() + 60
while not usem._MODELS and time.time() < deadline:  # no question asked yet: the warm-up thread loads USE
    time.sleep(0.05)
warmed = bool(usem._MODELS)
answer = service.recommend_many("特征值是什么", service.pack.models, k=3, explain=True)
print(json.dumps({"type": type(service).__name__, "heavy": [m for m in ("torch", "sentence_transformers",
                  "transformers", "onnx") if m in sys.modules], "dcdt": answer["results"]["dcdt"]["results"][0],
                  "warmed": warmed, "encoder": service.embedder.name}))
"""


@pytest.mark.slow
def test_serving_a_query_imports_no_torch(tmp_path, prepared):
    # a fresh cache after the install's `prepare`: only what it built (the ONNX encoders, the serving pack)
    for name in ("encoders", "videos"):
        (tmp_path / "cache").mkdir(exist_ok=True)
        (tmp_path / "cache" / name).symlink_to(prepared / name, target_is_directory=True)
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "RECSYS_CACHE_DIR": str(tmp_path / "cache"),
           "RECSYS_RUNS_DIR": str(tmp_path / "runs"), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", FRESH_QUERY], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["type"] == "FastVideoService"  # every model of the shipped pack answered, none imported torch
    assert out["heavy"] == []  # "torch" not in sys.modules after a query (nor "onnx": it only builds the graphs)
    assert out["encoder"] == "minilm-int8-onnx+use-onnx"  # both halves on the graphs `prepare` built
    assert set(out["dcdt"]["why"]) == {"title", "description", "rest"}
    assert out["warmed"]  # the encoders were loaded in the background before the first question


def test_bench_table_reads_ratios():
    from recsys.videos import bench

    def pct(p50, p99):
        return {"p50_ms": p50, "p99_ms": p99, "mean_ms": p50}

    # torch 10 / 20 ms, fast 1.5 / 6 ms -> ratios 0.15 and 0.30; targets: p50 1.5 <= 2 yes, p99 6 <= 5 no
    report = {"models": {"dcdt": {"torch/end_to_end": pct(10.0, 20.0), "torch/scoring": pct(0.5, 1.0),
                                  "fast/end_to_end": pct(1.5, 6.0), "fast/scoring": pct(0.2, 0.4), "n": 3}},
              "n_queries": 3, "split": "test", "n_videos": 5, "embedder": "e", "embedding_cache": "off", "torch_threads": 1,
              "paper_claim_ms": 10.0, "load_average": [1.0, 1.0, 1.0], "load_average_after": [2.0, 2.0, 2.0],
              "cpus": 2, "fast_encoder": "enc", "encoders": {"torch fp32": pct(8.0, 16.0), "minilm-onnx": pct(2.0, 4.0)},
              "quality": {"split": "validation", "n_queries": 3, "served": "minilm-onnx", "encoders": {
                  "torch fp32": {"cosine_mean": 1.0, "cosine_min": 1.0, "models": {"dcdt": {"mrr@10": 0.5}}},
                  "minilm-onnx": {"cosine_mean": 0.99, "cosine_min": 0.98, "models": {"dcdt": {"mrr@10": 0.49}}}}}}
    text = bench.render_bench(report)
    assert "| DCDT | 10.00 | 20.00 | 1.50 | 6.00 | 0.15 | 0.30 | 0.200 | yes / no |" in text
    assert "| minilm-onnx | 2.00 | 4.00 | 0.25 | 0.25 |" in text
    assert "| minilm-onnx | 0.99000 / 0.98000 | 0.4900 (-0.0100) |" in text
    assert "load average (1, 5, 15 min) 1.00, 1.00, 1.00 before" in text


def test_fast_service_follows_the_run_the_studio_serves(tmp_path, monkeypatch):
    import threading

    monkeypatch.setenv("RECSYS_RUNS_DIR", str(tmp_path / "runs"))
    (tmp_path / "runs").mkdir()
    current = {"dcdt": Path("shipped.safetensors")}
    built = []
    monkeypatch.setattr(fastserve, "serving_checkpoints", lambda space: dict(current))
    monkeypatch.setattr(fastserve, "locate_pack",
                        lambda space, build, checkpoints: (built.append(checkpoints) or f"pack-{len(built)}", "origin"))
    service = object.__new__(fastserve.FastVideoService)  # the state refresh() reads, without loading anything
    service.space, service._checkpoints, service._active_seen = "s", dict(current), False
    service._lock, service.train_if_missing, service.pack = threading.RLock(), True, "pack-0"
    service.refresh()
    assert built == [] and service.pack == "pack-0"  # no active.json: nothing read, nothing rebuilt
    (tmp_path / "runs" / "active.json").write_text("{}")
    service.refresh()
    assert built == []  # the same checkpoints serve
    current["dcdt"] = Path("run.safetensors")  # the studio serves a run now
    service.refresh()
    assert built == [{"dcdt": Path("run.safetensors")}] and service.pack == "pack-1"


def test_openai_backends_are_served_by_the_torch_service(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-a-real-key")
    assert fastserve.make_fast_service("openai") is None
    assert fastserve.make_fast_service("auto") is None  # a key is set: auto means OpenAI
    monkeypatch.setenv("RECSYS_QUERY_ENCODER", "minilm-int8-onnx")
    assert onnx_query.encoder_for_space("anything") == "minilm-int8-onnx"  # the override names the encoder


def test_a_broken_fast_path_falls_back_to_torch_and_says_why(monkeypatch):
    from recsys.videos import serving

    def broken(backend, api_key):
        raise ModelIntegrityError("minilm-l6-v2-fp16w.onnx failed its integrity check")

    monkeypatch.setattr(fastserve, "make_fast_service", broken)
    service = serving.make_service("local")
    assert type(service) is serving.VideoService
    assert "integrity check" in service.serving_note and service.serving_note.startswith("Serving with torch")


class _EncA(_Unit):
    def __init__(self):
        super().__init__("enc-a", "A", [1, 0])


class _EncB(_Unit):
    def __init__(self):
        super().__init__("enc-b", "B", [0, 1])


@pytest.mark.timeout(30)
def test_a_plus_name_builds_its_parts_through_the_registry(monkeypatch):
    # a "+" name resolves each part by name, under the registry's (re-entrant) lock
    monkeypatch.setitem(onnx_query.QUERY_ENCODERS, "enc-a", "test_videos_fast:_EncA")
    monkeypatch.setitem(onnx_query.QUERY_ENCODERS, "enc-b", "test_videos_fast:_EncB")
    monkeypatch.setattr(onnx_query, "_INSTANCES", {})
    encoder = onnx_query.query_encoder("enc-a+enc-b")
    assert encoder.space == "A+B" and encoder is onnx_query.query_encoder("enc-a+enc-b")
    # [1, 0] and [0, 1] side by side / sqrt(2) = [0.7071, 0, 0, 0.7071]
    assert encoder.encode(["x"])[0].tolist() == pytest.approx([0.70711, 0.0, 0.0, 0.70711], abs=1e-5)


def test_bench_times_a_concatenation_with_every_part_uncached():
    from recsys.embed import LocalEmbedder
    from recsys.videos.bench import uncached_embedder

    class Pair:  # the shape of a concatenating embedder: parts, rebuilt from them
        def __init__(self, *parts):
            self.parts = parts

    fresh, ok = uncached_embedder(Pair(LocalEmbedder(), LocalEmbedder()))
    assert ok and isinstance(fresh, Pair) and all(p._cache_opt is False for p in fresh.parts)


def test_prepare_command_says_what_it_did(prepared, capsys):
    from recsys.cli import main

    assert main(["prepare"]) == 0  # already built by the fixture: nothing is built again
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("ONNX query encoders already built in ") and lines[0].endswith(" s)")
    assert lines[1].startswith("serving pack of minilm-l6-v2+use-multilingual-v3: already built, serving pack ")


class _EncA8(_Unit):
    def __init__(self):
        super().__init__("enc-a8", "A", [1, 0])


def test_bench_compares_every_built_encoder_of_the_served_space(monkeypatch):
    # space A+B, A served by enc-a8 or enc-a, B by enc-b; enc-a8+enc-b is served; enc-a+enc-b is built too, so
    # the bench times and scores both; an encoder that is not built is left out
    from types import SimpleNamespace

    from recsys.videos.bench import fast_encoders

    monkeypatch.setitem(onnx_query.QUERY_ENCODERS, "enc-a8", "test_videos_fast:_EncA8")
    monkeypatch.setitem(onnx_query.QUERY_ENCODERS, "enc-a", "test_videos_fast:_EncA")
    monkeypatch.setitem(onnx_query.QUERY_ENCODERS, "enc-b", "test_videos_fast:_EncB")
    monkeypatch.setitem(onnx_query.SPACE_DEFAULTS, "A", ("enc-a8", "enc-a"))
    monkeypatch.setitem(onnx_query.SPACE_DEFAULTS, "B", ("enc-b",))
    monkeypatch.setattr(onnx_query, "_INSTANCES", {})
    served = onnx_query.query_encoder("enc-a8+enc-b")
    fast = SimpleNamespace(space="A+B", embedder=served)
    assert list(fast_encoders(fast)) == ["enc-a8+enc-b", "enc-a+enc-b"]
    assert fast_encoders(fast)["enc-a8+enc-b"] is served
    monkeypatch.setattr(_EncA, "available", staticmethod(lambda: False), raising=False)  # enc-a's files missing
    assert list(fast_encoders(fast)) == ["enc-a8+enc-b"]
    assert list(fast_encoders(SimpleNamespace(space="C", embedder=served))) == ["enc-a8+enc-b"]  # no defaults for C
