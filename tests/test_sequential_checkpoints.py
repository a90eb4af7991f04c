"""Sequential checkpoints are safetensors artifacts: damaged, foreign or mismatching files are refused."""

from __future__ import annotations

import dataclasses
import pickle

import numpy as np
import pytest
import torch

from recsys.artifacts import ArtifactError
from recsys.sequential.prep import make_split
from recsys.sequential.serving import load_checkpoint
from recsys.sequential.training import TrainedModel, save_checkpoint
from recsys import registry
from tests.sequential_toy import toy_dataset


def saved(tmp_path, name="dssm", data=None, split_kind="loo"):
    """An untrained ``name`` on the toy data's training view, saved as a run would save it."""
    data = data or toy_dataset(length=8)
    split = make_split(data, split_kind)
    torch.manual_seed(0)
    model = registry.get(name).build(dataclasses.replace(data, sequences=split.train), max_seq_len=5)
    if registry.get(name).kind == "fitted":
        model.fit(dataclasses.replace(data, sequences=split.train))
    path = save_checkpoint(tmp_path / f"{name}.safetensors", TrainedModel(name, model, 0.0, 0, None), data, split,
                           {"dataset": "toy", "split": split_kind, "max_seq_len": 5})
    return path, model, data, split


def scores(model, data):
    batch = {"user": torch.tensor([1, 2]), "item_seq": torch.tensor([[0, 1, 2, 3, 4], [0, 0, 0, 5, 6]]),
             "item_seq_len": torch.tensor([4, 2])}
    if hasattr(model, "eval"):
        model.eval()
    with torch.no_grad():
        return model.full_sort_predict(batch).numpy()


@pytest.mark.parametrize("name", ["dssm", "cl-dssm", "wals", "most-popular"])
def test_a_checkpoint_round_trips_with_its_metadata(tmp_path, name):
    path, model, data, split = saved(tmp_path, name)
    loaded = load_checkpoint(path, data, split, name)
    assert type(loaded) is type(model) and loaded.config == model.config
    np.testing.assert_array_equal(scores(loaded, data), scores(model, data))


def test_pickle_payload_is_refused_without_running_it(tmp_path):
    marker = tmp_path / "ran"

    class Exploit:  # unpickling this would create the marker file
        def __reduce__(self):
            return (open, (str(marker), "w"))

    path = tmp_path / "checkpoint.safetensors"
    path.write_bytes(pickle.dumps({"state_dict": Exploit()}))
    data = toy_dataset(length=8)
    with pytest.raises(ArtifactError, match="checkpoint.safetensors"):
        load_checkpoint(path, data, make_split(data, "loo"))
    assert not marker.exists()


def test_random_bytes_and_truncated_files_are_refused(tmp_path):
    path, _, data, split = saved(tmp_path)
    good = path.read_bytes()
    path.write_bytes(good[: len(good) // 2])  # truncated mid-tensor
    with pytest.raises(ArtifactError, match="dssm.safetensors"):
        load_checkpoint(path, data, split)
    path.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(ArtifactError, match="dssm.safetensors"):
        load_checkpoint(path, data, split)


def test_another_models_checkpoint_is_refused(tmp_path):
    path, _, data, split = saved(tmp_path, "youtube-dnn")
    with pytest.raises(ArtifactError, match="model='youtube-dnn', expected 'dssm'"):
        load_checkpoint(path, data, split, "dssm")


def test_a_checkpoint_of_other_data_is_refused(tmp_path):
    path, _, data, _ = saved(tmp_path)
    # the same dataset's other split, and a dataset with different sequences
    with pytest.raises(ArtifactError, match="split='loo', expected 'ratio'"):
        load_checkpoint(path, data, make_split(data, "ratio"))
    other = toy_dataset(length=9)
    with pytest.raises(ArtifactError, match="data_fingerprint"):
        load_checkpoint(path, other, make_split(other, "loo"))
