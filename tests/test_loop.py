"""The training loop: early stopping, best-weights restore, StopSignal, bad losses.

The model is one scalar weight ``w`` with loss ``(w - 3)^2`` per batch, so every
number the loop reports can be worked out by hand; the validation metric is
scripted per epoch so early stopping is exercised deterministically.
"""

from __future__ import annotations

import math

import pytest
import torch

from recsys.models.base import NeuralRecommender
from recsys.train.loop import Callback, StopSignal, TrainConfig, TrainingDiverged, fit


class Scalar(NeuralRecommender):
    def __init__(self, start: float = 0.0):
        super().__init__(None)
        self.w = torch.nn.Parameter(torch.tensor(start))

    def calculate_loss(self, batch):
        return ((self.w - batch["target"]) ** 2).mean()


def batches_of(n: int, target: float = 3.0):
    return lambda epoch: ({"target": torch.tensor([target])} for _ in range(n))


def scripted(values):
    """An evaluate() returning ``values[epoch-1]`` as "score" (and recording w at each epoch)."""
    seen = []

    def evaluate(model):
        seen.append(model.w.detach().item())
        return {"score": values[len(seen) - 1]}

    evaluate.seen = seen
    return evaluate


def config(**kw):
    base = dict(epochs=6, lr=0.1, optimizer="adam", scheduler="none", grad_clip=None, device="cpu")
    return TrainConfig(**{**base, **kw})


def test_one_adam_step_is_the_hand_computed_update():
    # loss (w-3)^2 at w=0 has gradient 2(w-3) = -6; Adam's first step moves by exactly lr
    # in the gradient's opposite direction (m/sqrt(v) = g/|g| = -1), so w = 0 + 0.1 = 0.1
    # and the recorded loss is the loss *before* the step: (0-3)^2 = 9.
    model = Scalar(0.0)
    result = fit(model, batches_of(1), config(epochs=1))
    assert model.w.detach().item() == pytest.approx(0.1, abs=1e-6)
    assert result.history[0]["train_loss"] == pytest.approx(9.0)
    assert result.stop_reason == "completed"


def test_early_stopping_after_patience_epochs_without_gain():
    # scores 0.1, 0.3, 0.2, 0.25, ...: best is epoch 2; epochs 3 and 4 bring no gain, so with
    # patience 2 the loop stops after epoch 4 (4 - 2 >= 2) and never evaluates epochs 5, 6.
    evaluate = scripted([0.1, 0.3, 0.2, 0.25, 0.9, 0.9])
    result = fit(Scalar(), batches_of(2), config(patience=2, monitor="score"), evaluate)
    assert [r["epoch"] for r in result.history] == [1, 2, 3, 4]
    assert result.best_epoch == 2 and result.best_value == pytest.approx(0.3)
    assert result.stop_reason.startswith("early-stopped")


def test_best_weights_are_restored_in_min_mode():
    # monitor "score" in min mode: lowest at epoch 3, so the model ends with the weight it had
    # when epoch 3 was evaluated, not the (further trained) weight of epoch 5.
    evaluate = scripted([5.0, 4.0, 1.0, 2.0, 3.0])
    model = Scalar()
    result = fit(model, batches_of(3), config(epochs=5, monitor="score", monitor_mode="min"), evaluate)
    assert result.best_epoch == 3
    assert model.w.detach().item() == pytest.approx(evaluate.seen[2])
    assert evaluate.seen[4] != pytest.approx(evaluate.seen[2])


def test_nan_metric_never_counts_as_an_improvement():
    evaluate = scripted([float("nan"), 0.5, float("nan")])
    result = fit(Scalar(), batches_of(1), config(epochs=3, monitor="score"), evaluate)
    assert result.best_epoch == 2


def test_stop_signal_stops_within_the_epoch():
    # 10 batches per epoch; the signal turns true once 3 batches have run, and it is checked
    # after every batch, so exactly 3 optimiser steps happen and epoch 1 is recorded once.
    calls = {"n": 0}

    class Count(Callback):
        def on_batch_end(self, state, loss):
            calls["n"] += 1

    result = fit(Scalar(), batches_of(10), config(epochs=5), None, [Count(), StopSignal(lambda: calls["n"] >= 3)])
    assert calls["n"] == 3
    assert result.stop_reason == "stopped by user"
    assert len(result.history) == 1


def test_stop_signal_set_before_training_runs_no_batch():
    model = Scalar(0.0)
    result = fit(model, batches_of(4), config(), None, [StopSignal(lambda: True)])
    assert result.history == [] and result.stop_reason == "stopped by user"
    assert model.w.detach().item() == 0.0


def test_callbacks_see_every_epoch_record():
    records = []

    class Keep(Callback):
        def on_epoch_end(self, state, record):
            records.append(record)

    fit(Scalar(), batches_of(2), config(epochs=3), None, [Keep()])
    assert [r["epoch"] for r in records] == [1, 2, 3]
    assert all({"train_loss", "lr", "seconds", "train_seconds"} <= set(r) for r in records)
    assert [r["examples"] for r in records] == [2, 2, 2]  # two batches of one row per epoch
    assert all(0 < r["train_seconds"] <= r["seconds"] for r in records)
    # the loss falls as w approaches 3
    assert records[0]["train_loss"] > records[-1]["train_loss"]


def test_non_finite_loss_stops_before_the_step_with_a_clear_error():
    class Exploding(Scalar):
        def calculate_loss(self, batch):
            return self.w * float("inf")

    model = Exploding(1.0)
    with pytest.raises(TrainingDiverged, match=r"^loss is not finite at epoch 1 \(step 1: inf\)$"):
        fit(model, batches_of(1), config(epochs=1))
    assert model.w.item() == 1.0  # no NaN step was taken


@pytest.mark.parametrize("bad, message", [
    ({"epochs": 0}, "epochs must be"), ({"batch_size": 0}, "batch_size must be"),
    ({"lr": 1e12}, "lr must be"), ({"lr": float("nan")}, "lr must be"), ({"lr": -0.1}, "lr must be"),
])
def test_settings_that_cannot_train_are_refused_before_training(bad, message):
    model = Scalar(0.0)
    with pytest.raises(ValueError, match=message):
        fit(model, batches_of(1), config(**bad))
    assert model.w.item() == 0.0


def test_unknown_optimizer_and_missing_cuda_are_clear_errors():
    with pytest.raises(ValueError, match="unknown optimizer"):
        fit(Scalar(), batches_of(1), config(optimizer="sgd-typo"))
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA was requested"):
            fit(Scalar(), batches_of(1), config(device="cuda"))


def test_same_seed_same_history():
    def noisy(epoch):
        for _ in range(3):
            yield {"target": torch.randn(4)}

    first = fit(Scalar(), noisy, config(epochs=2, seed=7))
    second = fit(Scalar(), noisy, config(epochs=2, seed=7))
    assert [r["train_loss"] for r in first.history] == [r["train_loss"] for r in second.history]
    assert not math.isnan(first.history[0]["train_loss"])
