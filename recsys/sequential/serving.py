"""Serving the sequential models: rebuild a trained run's model from its checkpoint.

A checkpoint is only ever turned into one of the registry's own classes
(:func:`recsys.checkpoint.load_model`), and only for the data it was trained on: the
dataset name, the split and the fingerprint of the training sequences must match, so a
checkpoint from other data, another model or a damaged file is refused with an
:class:`~recsys.artifacts.ArtifactError` naming the file.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from recsys.checkpoint import load_model
from recsys.data.sequential import SequentialDataset, SequentialSplit
from recsys.sequential.prep import fingerprint, load_dataset, make_split, train_view
from recsys.sequential.training import RECIPE_OPTIONS


def load_checkpoint(path: Path, dataset: SequentialDataset, split: SequentialSplit, name: str | None = None):
    """The model saved at ``path`` for ``dataset``/``split``, in eval mode (``name``: the model it must be)."""
    expect: dict[str, Any] = {"dataset": dataset.name, "split": split.name,
                              "data_fingerprint": fingerprint(dataset, split)}
    if name is not None:
        expect["model"] = name
    model, _ = load_model(Path(path), train_view(dataset, split), expect)
    return model


@dataclass
class LoadedRun:
    """A finished run's model with the data it was trained on."""

    model: Any
    dataset: SequentialDataset
    split: SequentialSplit
    options: dict[str, Any]


def run_options(run) -> dict[str, Any]:
    return {**RECIPE_OPTIONS, **run.config.get("options", {})}


def load_run(run) -> LoadedRun:
    """Rebuild ``run`` (a :class:`recsys.train.runs.Run` of a sequential recipe) from its checkpoint."""
    options = run_options(run)
    dataset = load_dataset(options.get("dataset", "ml-100k"), options.get("anime_max_users"))
    split = make_split(dataset, options.get("split", "loo"))
    return LoadedRun(load_checkpoint(run.checkpoint_path, dataset, split, run.recipe), dataset, split, options)
