"""The explorer source of a sequential run: item-tower vectors from a verified checkpoint, or a clear refusal."""

from __future__ import annotations

import dataclasses
import pickle

import numpy as np
import pytest
import torch

from recsys import registry
from recsys.sequential import page, serving
from recsys.sequential.prep import make_split
from recsys.sequential.training import TrainedModel, save_checkpoint
from recsys.train.loop import TrainConfig
from recsys.train.runs import RunRegistry
from recsys.viz.sources import SourceUnavailable
from tests.sequential_toy import toy_dataset


@pytest.fixture
def toy_run(tmp_path, monkeypatch):
    """A finished ``dssm`` run on the toy data (served in place of ml-100k), and the model it saved."""
    monkeypatch.setenv("RECSYS_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setattr("recsys.train.runs.get_recipe", lambda name: None)
    monkeypatch.setattr(serving, "load_dataset", lambda name, max_users=None: toy_dataset(length=8))
    run = RunRegistry(tmp_path / "runs").create("dssm", TrainConfig(), {"dataset": "ml-100k", "max_seq_len": 5})
    data = toy_dataset(length=8)
    split = make_split(data, "loo")
    torch.manual_seed(0)
    model = registry.get("dssm").build(dataclasses.replace(data, sequences=split.train), max_seq_len=5).eval()
    save_checkpoint(run.checkpoint_path, TrainedModel("dssm", model, 0.0, 0, None), data, split, {"dataset": "ml-100k"})
    run.set_status("done")
    return run, model


def test_a_runs_item_tower_becomes_an_explorer_source(toy_run):
    run, model = toy_run
    source = page.load_sequential_run(run.id)
    with torch.no_grad():
        expected = model.item_tower().numpy()[1:]  # row 0 is the padding item
    np.testing.assert_allclose(source.vectors, expected, rtol=1e-6)
    # toy items 1..10 with field "c" = 1 + i % 4
    assert source.meta["label"].tolist()[:2] == ["item 1", "item 2"] and source.meta["c"].tolist()[:4] == [2, 3, 4, 1]


def test_a_tampered_checkpoint_is_refused_not_run(toy_run, tmp_path):
    run, _ = toy_run
    marker = tmp_path / "ran"

    class Exploit:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    run.checkpoint_path.write_bytes(pickle.dumps(Exploit()))
    with pytest.raises(SourceUnavailable, match="checkpoint.safetensors"):
        page.load_sequential_run(run.id)
    assert not marker.exists()
