"""Training of the sequential models: one function trains or fits any registry entry, and
each neural entry gets its studio recipe from :func:`recipe`.

Training data: the causal models (SASRec and the CL-EPIDTN family, :func:`window_trained`)
train on every prefix, packed in windows of ``max_seq_len`` inputs (a batch counts
windows); the other neural models get one row per prefix, optionally only each user's
latest few. Validation NDCG@10 selects the best epoch. Checkpoints are
:mod:`recsys.checkpoint` artifacts carrying the dataset, split, options and a fingerprint
of the training data (:func:`recsys.sequential.prep.fingerprint`).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from recsys import registry
from recsys.checkpoint import save_model
from recsys.data.sequential import SequentialDataset, SequentialSplit, training_windows
from recsys.eval.sequential import LOO_METRICS, RATIO_METRICS, evaluate_split
from recsys.sequential.prep import fingerprint, load_dataset, make_split, recent_only, train_view
from recsys.train.loop import Callback, TrainConfig, fit
from recsys.train.recipes import Recipe, RecipeContext

log = logging.getLogger(__name__)

DOMAIN = "sequential"
WINDOW_BATCH_SIZE = 64  # default batch of the window-trained models, in windows (each up to max_seq_len prefixes)
PREFIX_BATCH_SIZE = 256  # default batch of the other neural models, in (prefix, target) rows
#: options of every sequential recipe (the rest of a run's options override the model config)
RECIPE_OPTIONS = {"dataset": "ml-100k", "split": "loo", "max_seq_len": 50, "recent_examples": 10, "anime_max_users": 1000}


def variants() -> tuple[str, ...]:
    """The CL-EPIDTN family: the registry entries that pick a CL-EPIDTN variant (model, then ablations)."""
    return tuple(spec.name for spec in registry.by_domain(DOMAIN) if "variant" in spec.options)


def window_trained() -> tuple[str, ...]:
    """Models with a causal user tower, trained on windows of every prefix."""
    return (*variants(), "sasrec")


def default_batch_size(name: str) -> int:
    return WINDOW_BATCH_SIZE if name in window_trained() else PREFIX_BATCH_SIZE


@dataclass
class TrainedModel:
    name: str
    model: Any
    seconds: float
    epochs: int
    best_epoch: int | None
    history: list[dict[str, float]] = field(default_factory=list)
    stop_reason: str | None = None  # the loop's: "completed", "early-stopped (...)", ...
    device: str = "cpu"  # where it trained, as the loop describes it: "cpu (1 threads)", "cuda (NVIDIA H200)"


def train_model(
    name: str,
    dataset: SequentialDataset,
    split: SequentialSplit,
    train: TrainConfig,
    overrides: dict[str, Any] | None = None,
    recent_examples: int | None = None,
    callbacks: Sequence[Callback] = (),
    windows: bool | None = None,
    mask_history: bool = True,
) -> TrainedModel:
    """Build registry entry ``name`` on the training view of ``split`` and train or fit it.

    ``overrides`` are config fields (unknown ones are ignored). The window-trained models
    always see every prefix; the other neural models get one row per prefix, only each
    user's ``recent_examples`` latest when given. ``windows=False`` gives a causal model
    one row per prefix too (the RecBole peer check trains SASRec as RecBole does).
    ``mask_history=False`` lets validation rank the user's history items too, as RecBole
    does for sequential models, so the peer check picks its best epoch as RecBole does.
    """
    spec = registry.get(name, DOMAIN)
    overrides = dict(overrides or {})
    max_len = int(overrides.setdefault("max_seq_len", 50))
    view = train_view(dataset, split)
    torch.manual_seed(train.seed)
    np.random.seed(train.seed)
    if spec.kind == "fitted":
        overrides.setdefault("seed", train.seed)  # WALS's initial factors; ignored by most-popular
        model = spec.build(view, **overrides)
        started = time.perf_counter()
        model.fit(view)
        return TrainedModel(name, model, time.perf_counter() - started, 0, None)
    model = spec.build(view, **overrides)
    if windows is None:
        windows = name in window_trained()
    if windows:  # causal towers train on windows: every prefix of a window in one pass
        examples = training_windows(split.train, max_len)
        log.info("%s on %s/%s: %d windows holding %d training targets", name, dataset.name, split.name,
                 len(examples), examples.n_targets)
    else:
        examples = recent_only(split.train, max_len, recent_examples)
        log.info("%s on %s/%s: %d training examples", name, dataset.name, split.name, len(examples))

    def evaluate(m):
        return evaluate_split(m, split, "valid", ("hit@10", "ndcg@10"), max_len=max_len, mask_history=mask_history)

    train = dataclasses.replace(train, monitor=train.monitor or "ndcg@10")
    result = fit(model, lambda epoch: examples.batches(train.batch_size, train.seed, epoch), train, evaluate, callbacks)
    return TrainedModel(name, model, result.seconds, len(result.history), result.best_epoch, result.history,
                        result.stop_reason, result.device)


def test_metrics(trained: TrainedModel, split: SequentialSplit, max_len: int) -> dict[str, float]:
    """The split's test metrics: HR@10/HR@50/NDCG@10 on leave-one-out, Recall@10/@50 on the ratio split."""
    metrics = LOO_METRICS if split.name == "loo" else RATIO_METRICS
    return evaluate_split(trained.model, split, "test", metrics, max_len=max_len)


def save_checkpoint(path: Path, trained: TrainedModel, dataset: SequentialDataset, split: SequentialSplit,
                    options: dict[str, Any]) -> Path:
    """Write ``trained`` as a checkpoint artifact that :func:`recsys.sequential.serving.load_checkpoint` verifies."""
    meta = {"dataset": dataset.name, "split": split.name, "options": dict(options),
            "data_fingerprint": fingerprint(dataset, split)}
    return save_model(Path(path), trained.name, trained.model, meta)


def _recipe_run(name: str):
    def run(context: RecipeContext) -> dict[str, Any]:
        options = {**RECIPE_OPTIONS, **context.options}
        dataset = load_dataset(options["dataset"], options.get("anime_max_users"))
        split = make_split(dataset, options["split"])
        overrides = {k: v for k, v in options.items() if k not in RECIPE_OPTIONS}
        overrides["max_seq_len"] = int(options["max_seq_len"])
        trained = train_model(name, dataset, split, context.train, overrides, options.get("recent_examples") or None,
                              context.callbacks)
        metrics = test_metrics(trained, split, int(options["max_seq_len"]))
        if context.checkpoint_path is not None:
            save_checkpoint(context.checkpoint_path, trained, dataset, split, options)
        return {"dataset": dataset.name, "split": split.name, **{f"test_{k}": v for k, v in metrics.items()},
                "best_epoch": trained.best_epoch, "seconds": round(trained.seconds, 1)}

    return run


def recipe(spec: registry.ModelSpec) -> Recipe:
    """The studio recipe of a neural sequential entry (the recipe name is the registry name)."""
    if spec.domain != DOMAIN or spec.kind != "neural":
        raise ValueError(f"{spec.name} is not a neural sequential model")
    batch = default_batch_size(spec.name)
    return Recipe(
        name=spec.name,
        domain=DOMAIN,
        summary=f"{spec.display_name} ({spec.cite}) on ml-100k/anime, leave-one-out full ranking",
        defaults=TrainConfig(epochs=2, lr=1e-3, batch_size=batch, monitor="ndcg@10"),
        full=TrainConfig(epochs=30, lr=1e-3, batch_size=batch, patience=5, monitor="ndcg@10"),
        run=_recipe_run(spec.name),
        options=dict(RECIPE_OPTIONS),
    )
