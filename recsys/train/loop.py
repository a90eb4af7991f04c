"""The one training loop, readable top to bottom (in the spirit of nanoGPT).

Every gradient-trained model in the project trains through :func:`fit`::

    for epoch in 1..epochs:
        callbacks.on_epoch_begin        # e.g. DCDT re-mines its hard negatives here
        for batch in batches(epoch):    # the caller decides what a batch is
            loss = model.calculate_loss(batch); backward; clip; step
        scheduler.step()
        metrics = evaluate(model)       # validation metrics, optional
        callbacks.on_epoch_end          # early stopping, streaming, progress, cancel

and returns the best weights seen (by ``config.monitor``) loaded into the model.
Anything a page or the CLI needs to watch or control (loss streaming, a Stop
button, early stopping) is a :class:`Callback`, so the loop itself stays small.

Under ``torchrun`` the same loop trains data-parallel: each process keeps its slice of
every batch, DDP averages the gradients, rank 0 evaluates and the others receive its
record (see :mod:`recsys.train.distributed`); with one process none of that runs.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import math
import os
import random
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

from recsys.models.base import Batch, NeuralRecommender
from recsys.train import distributed

log = logging.getLogger(__name__)


@dataclass
class TrainConfig:
    """Optimisation settings shared by all models (model shapes live in each model's config)."""

    epochs: int = 20
    lr: float = 1e-3
    batch_size: int = 256
    weight_decay: float = 0.0
    optimizer: str = "adamw"  # adamw | adam | nadam
    scheduler: str = "cosine"  # cosine | none
    grad_clip: float | None = 5.0
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    patience: int | None = None  # epochs without improvement before stopping; None = never
    monitor: str | None = None  # validation metric to select the best epoch, e.g. "mrr@10"
    monitor_mode: str = "max"  # max | min

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def validate(self) -> "TrainConfig":
        """Raise :class:`ValueError` naming the first bad setting; returns ``self``.

        Why up front: a batch size of 0 otherwise surfaces as a cryptic ``split`` error
        deep in a recipe, zero epochs as a run recorded "done" with nothing trained, and
        an absurd learning rate as a diverged run minutes later. The CLI's argument types
        and the studio's widgets bound the same values; this covers every other way a
        config arrives (a ``config.json``, a script).
        """
        problems = []
        if not isinstance(self.epochs, int) or self.epochs < 1:
            problems.append(f"epochs must be a whole number of at least 1, got {self.epochs!r}")
        if not isinstance(self.batch_size, int) or self.batch_size < 1:
            problems.append(f"batch_size must be a whole number of at least 1, got {self.batch_size!r}")
        if not _finite(self.lr) or not 0 < self.lr <= MAX_LR:
            problems.append(f"lr must be a finite number in (0, {MAX_LR:g}], got {self.lr!r}")
        if not _finite(self.weight_decay) or self.weight_decay < 0:
            problems.append(f"weight_decay must be 0 or more, got {self.weight_decay!r}")
        if self.grad_clip is not None and (not _finite(self.grad_clip) or self.grad_clip <= 0):
            problems.append(f"grad_clip must be above 0 or None, got {self.grad_clip!r}")
        if not isinstance(self.seed, int) or self.seed < 0:
            problems.append(f"seed must be a whole number of 0 or more, got {self.seed!r}")
        if self.patience is not None and (not isinstance(self.patience, int) or self.patience < 1):
            problems.append(f"patience must be at least 1 or None, got {self.patience!r}")
        if self.monitor_mode not in ("max", "min"):
            problems.append(f"monitor_mode must be 'max' or 'min', got {self.monitor_mode!r}")
        if problems:
            raise ValueError("; ".join(problems))
        return self


#: the largest learning rate accepted anywhere (CLI, studio, config files): larger ones only diverge
MAX_LR = 10.0


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the message is what the run's status shows."""


@dataclass
class TrainState:
    """What the loop knows; callbacks read it and may set ``stop_reason`` to end training."""

    config: TrainConfig
    device: torch.device
    epoch: int = 0
    step: int = 0
    history: list[dict[str, float]] = field(default_factory=list)
    best_epoch: int | None = None
    best_value: float | None = None
    stop_reason: str | None = None


@dataclass
class TrainResult:
    history: list[dict[str, float]]
    best_epoch: int | None
    best_value: float | None
    stop_reason: str  # "completed", "early-stopped", "stopped by user", ...
    seconds: float
    device: str


class Callback:
    """Hooks into :func:`fit`; all methods are optional."""

    def on_train_begin(self, state: TrainState, model: NeuralRecommender) -> None: ...

    def on_epoch_begin(self, state: TrainState, model: NeuralRecommender) -> None: ...

    def on_batch_end(self, state: TrainState, loss: float) -> None: ...

    def on_epoch_end(self, state: TrainState, record: dict[str, float]) -> None: ...

    def on_train_end(self, state: TrainState, result: TrainResult) -> None: ...


class EarlyStopping(Callback):
    """Stop when ``state.config.monitor`` has not improved for ``patience`` epochs."""

    def __init__(self, patience: int):
        self.patience = patience

    def on_epoch_end(self, state, record):
        if state.best_epoch is not None and state.epoch - state.best_epoch >= self.patience:
            state.stop_reason = f"early-stopped (no {state.config.monitor} gain for {self.patience} epochs)"


class StopSignal(Callback):
    """Cancellation: stop at the next batch once ``should_stop()`` is true.

    The run registry passes a check for a ``STOP`` file; a thread can pass an Event's
    ``is_set``. Checking per batch makes a Stop button feel immediate.
    """

    def __init__(self, should_stop: Callable[[], bool]):
        self.should_stop = should_stop

    def _check(self, state: TrainState) -> None:
        if self.should_stop():
            state.stop_reason = "stopped by user"

    def on_epoch_begin(self, state, model):
        self._check(state)

    def on_batch_end(self, state, loss):
        self._check(state)


class ProgressBar(Callback):
    """A tqdm bar over epochs showing the last loss and monitored metric (CLI use)."""

    def __init__(self, desc: str = "train"):
        self.desc = desc
        self.bar = None

    def on_train_begin(self, state, model):
        from tqdm.auto import tqdm

        self.bar = tqdm(total=state.config.epochs, desc=self.desc, unit="epoch")

    def on_epoch_end(self, state, record):
        shown = {k: f"{v:.4f}" for k, v in record.items() if k in ("train_loss", state.config.monitor)}
        self.bar.set_postfix(shown)
        self.bar.update(1)

    def on_train_end(self, state, result):
        self.bar.close()


class LogEpochs(Callback):
    """One log line per epoch (the run registry's log file collects these)."""

    def on_epoch_end(self, state, record):
        log.info("epoch %d %s", state.epoch, " ".join(f"{k}={v:.5g}" for k, v in record.items() if k != "epoch"))


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch so a run with the same seed repeats on the same device."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    os.environ.setdefault("PYTHONHASHSEED", str(seed))


@contextlib.contextmanager
def cpu_threads(n: int | None):
    """Run a block with ``n`` torch CPU threads, then restore (``n=None``: leave torch's setting).

    Why: the project's models are small (batches of products of a few thousand entries),
    far below where intra-op parallelism pays; on a loaded 2-core machine a second
    OpenMP thread spins at barriers, and one thread measured 4-30x faster per step.
    """
    if n is None:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` picks CUDA when present, else the CPU; asking for CUDA without one is an error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError("CUDA was requested but torch.cuda.is_available() is False on this machine")
    return torch.device(name)


def device_description(device: torch.device) -> str:
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return f"cpu ({torch.get_num_threads()} threads)"


def to_device(batch: Batch, device: torch.device) -> Batch:
    return {k: (v.to(device, non_blocking=True) if torch.is_tensor(v) else v) for k, v in batch.items()}


def make_optimizer(model: torch.nn.Module, config: TrainConfig) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    kinds = {"adamw": torch.optim.AdamW, "adam": torch.optim.Adam, "nadam": torch.optim.NAdam}
    if config.optimizer not in kinds:
        raise ValueError(f"unknown optimizer {config.optimizer!r}; choose one of {sorted(kinds)}")
    return kinds[config.optimizer](params, lr=config.lr, weight_decay=config.weight_decay)


def _improved(value: float, best: float | None, mode: str) -> bool:
    if value is None or math.isnan(value):
        return False
    return best is None or (value > best if mode == "max" else value < best)


def fit(
    model: NeuralRecommender,
    batches: Callable[[int], Iterable[Batch]],
    config: TrainConfig,
    evaluate: Callable[[NeuralRecommender], dict[str, float]] | None = None,
    callbacks: Sequence[Callback] = (),
) -> TrainResult:
    """Train ``model`` in place and return its history; the best epoch's weights are kept.

    ``batches(epoch)`` yields the batches of one epoch (a fresh shuffle each call);
    ``evaluate(model)`` returns validation metrics, with ``config.monitor`` among them
    when early stopping or best-epoch selection is wanted.
    """
    config.validate()
    seed_everything(config.seed)
    device = distributed.local_device(resolve_device(config.device))
    rank, world_size = distributed.world()
    model.to(device)
    callbacks = list(callbacks)
    if config.patience is not None and config.monitor and evaluate is not None:
        callbacks.append(EarlyStopping(config.patience))
    optimizer = make_optimizer(model, config)
    scheduler = (
        torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(config.epochs, 1))
        if config.scheduler == "cosine"
        else None
    )
    # several processes: the loss runs through DDP; each rank's dropout differs, its batches do not
    # (every recipe draws them from its own seeded generator)
    parallel = distributed.data_parallel(model, device) if world_size > 1 else None
    if parallel is not None:
        torch.manual_seed(config.seed * 1_000 + rank)
    state = TrainState(config=config, device=device)
    best_weights = None
    started = time.perf_counter()
    for cb in callbacks:
        cb.on_train_begin(state, model)

    for epoch in range(1, config.epochs + 1):
        state.epoch = epoch
        for cb in callbacks:
            cb.on_epoch_begin(state, model)
        if _stop_agreed(state, parallel):
            break
        model.train()
        epoch_start, loss_sum, n_batches, n_examples = time.perf_counter(), 0.0, 0, 0
        for batch in batches(epoch):
            rows = distributed.batch_rows(batch)  # the global batch's rows, counted once
            n_examples += rows
            if parallel is None:
                loss = model.calculate_loss(to_device(batch, device))
                value = loss.item()
            else:  # this rank's rows of the global batch (a rank whose loss is not finite fails the run)
                if rows < world_size:
                    continue  # too few rows to give every rank one (every rank skips it alike)
                loss = parallel(to_device(distributed.shard(batch, rank, world_size), device))
                value = loss.item()
            if not math.isfinite(value):  # checked before the step: never write NaN into the weights
                raise TrainingDiverged(f"loss is not finite at epoch {epoch} (step {state.step + 1}: {value})")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if config.grad_clip:
                torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            optimizer.step()
            state.step += 1
            loss_sum += value
            n_batches += 1
            for cb in callbacks:
                cb.on_batch_end(state, value)
            # ranks agree on stopping every STOP_EVERY steps: each agreement is a collective (~0.7 ms on gloo)
            if (parallel is None or n_batches % distributed.STOP_EVERY == 0) and _stop_agreed(state, parallel):
                break
        if n_batches == 0 and _stop_agreed(state, parallel):  # stopped before this epoch's first step
            break
        if scheduler is not None:
            scheduler.step()

        if parallel is not None:  # the loss of the global batch: the mean of the ranks' (equal-sized) shards
            loss_sum = distributed.mean_over_ranks(loss_sum, device)
        # train_seconds and examples (all ranks together) give the throughput; seconds adds evaluation
        record = {"epoch": epoch, "train_loss": loss_sum / max(n_batches, 1), "lr": optimizer.param_groups[0]["lr"],
                  "train_seconds": time.perf_counter() - epoch_start, "examples": n_examples}
        if evaluate is not None:
            metrics = None
            if rank == 0:
                model.eval()
                with torch.no_grad():
                    metrics = evaluate(model)
            record.update(distributed.broadcast(metrics) if parallel is not None else metrics)
        record["seconds"] = time.perf_counter() - epoch_start
        state.history.append(record)

        value = record.get(config.monitor) if config.monitor else -record["train_loss"]
        mode = config.monitor_mode if config.monitor else "max"
        if _improved(value, state.best_value, mode):
            state.best_epoch, state.best_value = epoch, value
            best_weights = copy.deepcopy(model.state_dict())
        for cb in callbacks:
            cb.on_epoch_end(state, record)
        if _stop_agreed(state, parallel):
            break

    if best_weights is not None and config.monitor:
        model.load_state_dict(best_weights)
    model.eval()
    result = TrainResult(
        history=state.history,
        best_epoch=state.best_epoch,
        best_value=state.best_value,
        stop_reason=state.stop_reason or "completed",
        seconds=time.perf_counter() - started,
        device=device_description(device) + (f" x {world_size} processes" if world_size > 1 else ""),
    )
    for cb in callbacks:
        cb.on_train_end(state, result)
    return result


def _stop_agreed(state: TrainState, parallel: torch.nn.Module | None) -> bool:
    """Whether to leave the loop now; with several processes, true on all ranks once one wants to."""
    if parallel is not None and distributed.any_rank(state.stop_reason is not None, state.device):
        state.stop_reason = state.stop_reason or "stopped (another training process stopped)"
    return state.stop_reason is not None


def batch_indices(n: int, batch_size: int, generator: torch.Generator | None = None, shuffle: bool = True):
    """Index tensors of size ``batch_size`` covering ``range(n)`` once, shuffled by ``generator``."""
    order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
    return order.split(batch_size)
