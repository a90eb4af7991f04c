"""recsys.artifacts and recsys.checkpoint: round trips and every way a file can be wrong.

The checkpoint tests register a tiny test model (``Tiny``: one weight vector of
``n_items`` scores) in place of the real registry, so they need no domain code.
"""

from __future__ import annotations

import os
import pickle
from dataclasses import dataclass

import numpy as np
import pytest
import torch

from recsys import registry
from recsys.artifacts import (
    ArtifactError, load_arrays, read_artifact, read_json, read_meta, save_arrays, write_artifact,
)
from recsys.checkpoint import load_model, read_checkpoint, save_model
from recsys.models.base import NeuralRecommender


@dataclass
class TinyConfig:
    scale: float = 1.0
    sizes: tuple = (2, 3)


class Tiny(NeuralRecommender):
    def __init__(self, config, data):
        super().__init__(config, data)
        self.n_columns = int(data)
        self.w = torch.nn.Parameter(torch.zeros(self.n_columns))

    def full_sort_predict(self, batch):
        return self.config.scale * self.w.expand(len(batch["user"]), -1)


TINY = registry.ModelSpec("tiny", "Tiny", "videos", "neural", "ours", "test",
                          "tests.test_artifacts:TinyConfig", "tests.test_artifacts:Tiny")


@pytest.fixture
def tiny_registry(monkeypatch):
    monkeypatch.setattr(registry, "MODELS", (*registry.MODELS, TINY))


class Evil:
    marker = None

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def payload(marker) -> bytes:
    Evil.marker = marker
    return pickle.dumps(Evil())


# --- artifacts -------------------------------------------------------------------------------------
def test_artifact_round_trip_keeps_arrays_dtypes_and_meta(tmp_path):
    path = tmp_path / "a.safetensors"
    write_artifact(path, {"w": np.arange(6, dtype=np.float32).reshape(2, 3), "ids": torch.tensor([7, 8])},
                   {"model": "x", "data_fingerprint": "abc", "n": np.int64(3)}, "test/1")
    artifact = read_artifact(path, "test/1", expect={"model": "x"})
    assert artifact.arrays["w"].tolist() == [[0, 1, 2], [3, 4, 5]] and artifact.arrays["w"].dtype == np.float32
    assert artifact.arrays["ids"].tolist() == [7, 8] and artifact.arrays["ids"].dtype == np.int64
    assert artifact.meta == {"format": "test/1", "model": "x", "data_fingerprint": "abc", "n": 3}
    assert read_meta(path, "test/1")["n"] == 3
    assert artifact.tensors()["ids"].tolist() == [7, 8]


def test_object_arrays_are_refused_at_write_time(tmp_path):
    with pytest.raises(TypeError, match="pickle"):
        write_artifact(tmp_path / "a.safetensors", {"x": np.array([{"a": 1}], dtype=object)}, {}, "test/1")


@pytest.mark.parametrize("kind", ["pickle", "random", "truncated", "empty", "json", "wrong format", "plain safetensors"])
def test_bad_artifacts_are_refused_naming_the_file(tmp_path, kind):
    from safetensors.numpy import save

    path = tmp_path / "model.safetensors"
    marker = tmp_path / "pwned"
    write_artifact(path, {"w": np.ones(100, np.float32)}, {"model": "x"}, "test/1")
    good = path.read_bytes()
    data = {
        "pickle": payload(marker), "random": os.urandom(2048), "truncated": good[: len(good) - 40],
        "empty": b"", "json": b'{"format": "test/1"}', "wrong format": None,
        "plain safetensors": save({"w": np.ones(3, np.float32)}),
    }[kind]
    if data is None:
        write_artifact(path, {"w": np.ones(3, np.float32)}, {"model": "x"}, "other/1")
    else:
        path.write_bytes(data)
    with pytest.raises(ArtifactError, match="model.safetensors"):
        read_artifact(path, "test/1")
    assert not marker.exists()


def test_expect_mismatch_and_missing_file(tmp_path):
    path = tmp_path / "a.safetensors"
    write_artifact(path, {"w": np.ones(2)}, {"model": "x", "data_fingerprint": "old"}, "test/1")
    with pytest.raises(ArtifactError, match="data_fingerprint='old', expected 'new'"):
        read_artifact(path, "test/1", expect={"data_fingerprint": "new"})
    with pytest.raises(ArtifactError, match="missing"):
        read_artifact(tmp_path / "none.safetensors", "test/1")


def test_arrays_round_trip_and_pickled_npz_is_refused(tmp_path):
    path = tmp_path / "cache.npz"
    save_arrays(path, a=np.arange(3), b=np.array("text"))
    arrays = load_arrays(path)
    assert arrays["a"].tolist() == [0, 1, 2] and str(arrays["b"]) == "text"
    marker = tmp_path / "pwned"
    Evil.marker = marker
    np.savez(path, evil=np.array([Evil()], dtype=object))  # an object array: needs pickle to load
    with pytest.raises(ArtifactError, match="cache.npz"):
        load_arrays(path)
    path.write_bytes(payload(marker))
    with pytest.raises(ArtifactError, match="cache.npz"):
        load_arrays(path)
    assert not marker.exists()


def test_read_json_names_the_file(tmp_path):
    path = tmp_path / "x.json"
    path.write_bytes(b"\xff\xfe{")
    with pytest.raises(ArtifactError, match="x.json is damaged"):
        read_json(path)


# --- checkpoints -----------------------------------------------------------------------------------
def test_checkpoint_round_trip_gives_identical_scores(tmp_path, tiny_registry):
    model = TINY.build(4, TinyConfig(scale=2.0, sizes=(5, 6)))
    with torch.no_grad():
        model.w.copy_(torch.tensor([0.5, -1.0, 2.0, 0.0]))
    path = save_model(tmp_path / "ck.safetensors", "tiny", model, {"data_fingerprint": "fp"})
    loaded, meta = load_model(path, 4, expect={"model": "tiny", "data_fingerprint": "fp"})
    batch = {"user": torch.tensor([0, 1])}
    # scale 2 * w = [1, -2, 4, 0] for each of the two users
    assert loaded.full_sort_predict(batch).tolist() == [[1.0, -2.0, 4.0, 0.0]] * 2
    assert (loaded.config.scale, loaded.config.sizes) == (2.0, (5, 6))  # the tuple came back a tuple
    assert meta["data_fingerprint"] == "fp" and not loaded.training


def test_checkpoint_of_another_model_or_shape_is_refused(tmp_path, tiny_registry):
    path = save_model(tmp_path / "ck.safetensors", "tiny", TINY.build(4), {})
    with pytest.raises(ArtifactError, match="model='tiny', expected 'dcdt'"):
        load_model(path, 4, expect={"model": "dcdt"})
    with pytest.raises(ArtifactError, match="does not fit"):
        load_model(path, 5)  # data with 5 items: weights of shape 4 do not fit
    write_artifact(path, {"w": np.zeros(4)}, {"model": "no-such-model", "config": {}}, "recsys.checkpoint/1")
    with pytest.raises(ArtifactError, match="unknown model"):
        load_model(path, 4)


@pytest.mark.parametrize("kind", ["pickle", "random", "truncated"])
def test_hostile_checkpoint_bytes_are_refused(tmp_path, tiny_registry, kind):
    path = save_model(tmp_path / "ck.safetensors", "tiny", TINY.build(4), {})
    marker = tmp_path / "pwned"
    good = path.read_bytes()
    path.write_bytes({"pickle": payload(marker), "random": os.urandom(512), "truncated": good[:30]}[kind])
    with pytest.raises(ArtifactError, match="ck.safetensors"):
        read_checkpoint(path)
    with pytest.raises(ArtifactError, match="ck.safetensors"):
        load_model(path, 4)
    assert not marker.exists()
