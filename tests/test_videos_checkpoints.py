"""Hostile checkpoint files (issue 10): refused with a message naming them, nothing executes, serving goes on.

Each case replaces a checkpoint (the active studio run's, or the shipped one) by a pickle
payload that would create a marker file if unpickled, random bytes, a truncated valid
checkpoint, or a valid checkpoint of another model.
"""

from __future__ import annotations

import dataclasses
import os
import pickle

import pytest
from test_videos_fixtures import FakeEmbedder, make_data

from recsys import registry
from recsys.artifacts import ArtifactError
from recsys.videos import prep, serving, training


class _Exploit:
    """Unpickling this creates ``path``: the proof that code ran."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (os.mkdir, (self.path,))


@pytest.fixture
def setup(tmp_path, monkeypatch):
    monkeypatch.setenv("RECSYS_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("RECSYS_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setattr(registry, "MODELS", registry.VIDEO_MODELS)  # this domain's recipes only
    monkeypatch.setattr(training, "QUICK_TRAIN", dataclasses.replace(training.QUICK_TRAIN, epochs=1, device="cpu"))
    items = prep.build_items(make_data(), FakeEmbedder())
    train = dataclasses.replace(training.QUICK_TRAIN, epochs=1)
    shipped = tmp_path / "shipped" / "dcdt-fake.safetensors"
    model, result = training.train_model("dcdt", items, train)
    training.save_checkpoint(shipped, "dcdt", model, items, train, result)
    other = tmp_path / "other.safetensors"
    tower, _ = training.train_model("single-tower", items, train)
    training.save_checkpoint(other, "single-tower", tower, items, train)
    monkeypatch.setattr(training, "SHIPPED_CHECKPOINTS", {"dcdt": shipped})
    return {"tmp": tmp_path, "items": items, "shipped": shipped, "other": other, "train": train}


def hostile_bytes(kind: str, setup) -> bytes:
    if kind == "pickle":
        return pickle.dumps({"state_dict": _Exploit(setup["tmp"] / "pwned")})
    if kind == "random":
        return os.urandom(4096)
    if kind == "truncated":
        data = setup["shipped"].read_bytes()
        return data[: len(data) // 2]
    return setup["other"].read_bytes()  # a valid checkpoint of another model


KINDS = ["pickle", "random", "truncated", "other-model"]


@pytest.mark.parametrize("kind", KINDS)
def test_load_checkpoint_refuses_hostile_files_naming_them(kind, setup):
    path = setup["tmp"] / "bad.safetensors"
    path.write_bytes(hostile_bytes(kind, setup))
    with pytest.raises(ArtifactError) as error:
        training.load_checkpoint(path, setup["items"], expected_model="dcdt")
    assert str(path) in str(error.value)
    assert not (setup["tmp"] / "pwned").exists()  # nothing was unpickled


@pytest.mark.parametrize("kind", KINDS)
def test_a_hostile_active_run_falls_back_to_the_shipped_checkpoint(kind, setup):
    from recsys.train.runs import RunRegistry

    runs = RunRegistry()
    run = runs.create("dcdt", setup["train"], {})
    run.checkpoint_path.write_bytes(hostile_bytes(kind, setup))
    run.set_status("done")
    runs.set_active(run.id)
    service = serving.VideoService(data=make_data(), embedder=FakeEmbedder())
    record = service.recommend("eigen spectrum", "dcdt", k=3)
    assert len(record["results"]) == 3
    source = service.model_source("dcdt")
    assert source.startswith("shipped checkpoint (dcdt-fake.safetensors)"), source
    assert f"studio run {run.id}: {run.checkpoint_path}" in source  # the refusal names the file
    assert not (setup["tmp"] / "pwned").exists()


@pytest.mark.parametrize("kind", KINDS)
def test_a_hostile_shipped_checkpoint_is_refused_and_serving_goes_on(kind, setup):
    setup["shipped"].write_bytes(hostile_bytes(kind, setup))
    service = serving.VideoService(data=make_data(), embedder=FakeEmbedder())
    assert len(service.recommend("eigen spectrum", "dcdt", k=3)["results"]) == 3
    source = service.model_source("dcdt")
    assert source.startswith("trained now") and str(setup["shipped"]) in source, source
    assert not (setup["tmp"] / "pwned").exists()


def test_old_pt_cache_files_are_never_read(setup):
    cached = training.cached_checkpoint_path("dcdt", setup["items"])
    assert cached.suffix == ".safetensors"
    cached.parent.mkdir(parents=True, exist_ok=True)
    cached.with_suffix(".pt").write_bytes(pickle.dumps(_Exploit(setup["tmp"] / "pwned")))
    setup["shipped"].unlink()
    service = serving.VideoService(data=make_data(), embedder=FakeEmbedder())
    assert service.model_source("dcdt").startswith("trained now")
    assert cached.exists() and not (setup["tmp"] / "pwned").exists()


def test_without_a_usable_checkpoint_and_no_training_the_error_names_the_refused_file(setup):
    setup["shipped"].write_bytes(b"not a checkpoint")
    bundle = serving.ModelBundle(setup["items"], train_if_missing=False)
    with pytest.raises(FileNotFoundError, match="refused shipped checkpoint") as error:
        bundle.model("dcdt")
    assert str(setup["shipped"]) in str(error.value)
