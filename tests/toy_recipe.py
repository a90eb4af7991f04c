"""A tiny test-only recipe: a linear regression on seeded random data (not part of the package).

Tests and the browser tests register it through ``RECSYS_EXTRA_RECIPES=tests.toy_recipe``
so the detached worker process (``python -m recsys.train.worker``) finds it too.

The checkpoint is a plain :mod:`recsys.artifacts` file (format ``FORMAT``): the toy model
is not in the model registry, so it does not go through :mod:`recsys.checkpoint`.

Options: ``sleep`` seconds per batch (to make a run last long enough to be stopped),
``fail_at_epoch`` (raise inside training, to test the failed status), ``diverge``
(multiply the loss by infinity, to test the "loss is not finite" status); in a run on
several processes, ``fail_on_rank`` and ``kill_on_rank`` (SIGKILL, no last word) make
that rank alone fail at ``fail_at_epoch`` (default 2). One epoch is
8 batches of 32 rows, so with the default ``sleep=0.025`` an epoch takes about 0.2 s.
"""

from __future__ import annotations

import os
import signal
import time

import torch

from recsys.artifacts import read_artifact, write_artifact
from recsys.models.base import NeuralRecommender
from recsys.train import distributed
from recsys.train.loop import TrainConfig, batch_indices, fit
from recsys.train.recipes import Recipe, RecipeContext

N_ROWS, N_FEATURES = 256, 4
FORMAT = "recsys.test.toy-linear/1"


class ToyLinear(NeuralRecommender):
    display_name = "toy linear"

    def __init__(self, config=None, data=None):
        super().__init__(config, data)
        self.linear = torch.nn.Linear(N_FEATURES, 1)
        self.diverge = False

    def calculate_loss(self, batch):
        loss = torch.nn.functional.mse_loss(self.linear(batch["x"]).squeeze(1), batch["y"])
        return loss * float("inf") if self.diverge else loss

    def full_sort_predict(self, batch):
        return self.linear(batch["x"])


def toy_data(seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(N_ROWS, N_FEATURES, generator=generator)
    y = x @ torch.tensor([1.0, -2.0, 0.5, 3.0]) + 0.1 * torch.randn(N_ROWS, generator=generator)
    return x, y


def run_toy(context: RecipeContext) -> dict:
    x, y = toy_data(context.train.seed)
    model = ToyLinear()
    model.diverge = bool(context.options.get("diverge", False))
    sleep = float(context.options.get("sleep", 0.025))
    fail_at = context.options.get("fail_at_epoch")
    rank = distributed.world()[0]
    fail_rank, kill_rank = context.options.get("fail_on_rank"), context.options.get("kill_on_rank")
    if fail_rank is not None or kill_rank is not None:
        fail_at = 2 if fail_at is None else fail_at
    generator = torch.Generator().manual_seed(context.train.seed)

    def batches(epoch):
        if fail_at is not None and epoch >= int(fail_at):
            if kill_rank is not None and rank == kill_rank:
                os.kill(os.getpid(), signal.SIGKILL)
            if (fail_rank is None and kill_rank is None) or rank == fail_rank:
                raise RuntimeError(f"toy failure at epoch {epoch}")
        for index in batch_indices(N_ROWS, 32, generator):
            time.sleep(sleep)
            yield {"x": x[index], "y": y[index]}

    def evaluate(m):
        return {"val_mse": float(torch.nn.functional.mse_loss(m.linear(x).squeeze(1), y))}

    result = fit(model, batches, context.train, evaluate, context.callbacks)
    if context.checkpoint_path is not None:
        write_artifact(context.checkpoint_path, model.state(), {"model": "toy-linear"}, FORMAT)
    return {"val_mse": result.best_value, "epochs": len(result.history), "stop_reason": result.stop_reason}


def load_toy(path) -> ToyLinear:
    """The toy model saved at ``path`` (verified artifact, never unpickled)."""
    model = ToyLinear()
    model.load_state(read_artifact(path, FORMAT, expect={"model": "toy-linear"}).arrays)
    return model


TOY = Recipe(
    name="toy-linear",
    domain="test",
    summary="test-only linear regression on random data (~0.2 s per epoch)",
    defaults=TrainConfig(epochs=5, lr=0.05, batch_size=32, device="cpu", monitor="val_mse", monitor_mode="min"),
    run=run_toy,
    options={"sleep": 0.025},
)


def recipes() -> list[Recipe]:
    return [TOY]
