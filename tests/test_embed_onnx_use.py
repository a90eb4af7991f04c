"""USE multilingual v3's query side on ONNX Runtime (recsys/embed/onnx_use.py) against the wheel's numpy port."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from recsys.embed import onnx_use
from recsys.embed.local import ModelIntegrityError
from recsys.embed.onnx_use import OnnxUse, window_index


def test_window_index_points_outside_the_sentence_at_the_zero_row():
    # T = 3 pieces: row t holds t-2 .. t+2; -2, -1 and 3, 4 fall outside, so they point at row 3 (zeros)
    assert window_index(3).tolist() == [[3, 3, 0, 1, 2], [3, 0, 1, 2, 3], [0, 1, 2, 3, 3]]
    assert window_index(1).tolist() == [[1, 1, 0, 1, 1]]


def test_the_graph_gives_the_numpy_ports_vectors(prepared):
    from recsys.embed.usem import UseEmbedder

    texts = ["特征值是什么", "¿Qué es el rango de una matriz?", "Wie berechnet man eine Determinante?",
             "x", "Gram-Schmidt " * 2000]  # the last one is cut at 4,000 characters by both
    graph = OnnxUse().encode(texts)
    port = UseEmbedder(cache=False).encode(texts)
    assert graph.shape == (5, 512)
    np.testing.assert_allclose(np.linalg.norm(graph, axis=1), 1.0, atol=1e-5)
    assert np.abs(graph - port).max() < 1e-5
    with pytest.raises(ValueError):
        OnnxUse().encode(["  "])


def test_the_graph_is_refused_when_it_does_not_match_its_manifest(tmp_path, prepared):
    built = prepared / "encoders" / OnnxUse.file
    with pytest.raises(FileNotFoundError, match="recsys prepare"):
        OnnxUse(tmp_path / "u.onnx")
    (tmp_path / "u.onnx").symlink_to(built)
    manifest = json.loads(built.with_suffix(".json").read_text())
    for change, message in (({"sha256": "0" * 64}, "integrity"), ({"source_sha256": "1" * 64}, "other weights"),
                            ({"recipe": onnx_use.USE_GRAPH_RECIPE - 1}, "older recipe.*recsys prepare")):
        (tmp_path / "u.json").write_text(json.dumps({**manifest, **change}))
        with pytest.raises(ModelIntegrityError, match=message):
            OnnxUse(tmp_path / "u.onnx")


def test_build_writes_nothing_when_the_graph_differs_from_the_port(tmp_path, monkeypatch):
    from onnx import numpy_helper

    honest = onnx_use.use_graph

    def off_by_a_little(backend):  # the last product's weights 1 % too large: close, but not the port
        model = honest(backend)
        d3 = next(w for w in model.graph.initializer if w.name == "d3")
        d3.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(d3) * np.float32(1.01), "d3"))
        return model

    monkeypatch.setattr(onnx_use, "use_graph", off_by_a_little)
    with pytest.raises(ModelIntegrityError, match="differs from the numpy port"):
        onnx_use.build(tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_prepare_keeps_a_good_graph_and_rebuilds_a_truncated_one(tmp_path, prepared):
    for suffix in (".onnx", ".json"):
        shutil.copy2((prepared / "encoders" / OnnxUse.file).with_suffix(suffix), tmp_path)
    graph = tmp_path / OnnxUse.file
    kept = graph.stat().st_mtime_ns
    assert onnx_use.ensure_built(tmp_path) == (graph, False) and graph.stat().st_mtime_ns == kept
    expected = json.loads(graph.with_suffix(".json").read_text())["sha256"]
    graph.write_bytes(graph.read_bytes()[:1000])
    assert onnx_use.ensure_built(tmp_path) == (graph, True)
    assert json.loads(graph.with_suffix(".json").read_text())["sha256"] == expected  # the same bytes again
    OnnxUse(graph)  # and it loads
