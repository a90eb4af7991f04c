"""The detached run worker: ``python -m recsys.train.worker RUN_ID`` executes one queued run.

:meth:`recsys.train.runs.RunRegistry.launch` starts this module rather than the full
CLI so a worker needs nothing but the run registry and the recipes: building the
CLI parser imports every pipeline's command-line glue, and one half-written
pipeline must not be able to stop training runs of the others from starting.
The registry root comes from ``$RECSYS_RUNS_DIR`` (``launch`` sets it).

:func:`execute` (also used in-process by ``python -m recsys train`` and the tests) runs
one *queued* run to its end: it claims the run, waits for the device's lock, streams
metrics (:class:`RecordMetrics`), and records the final status and checkpoint.

A run created with ``nproc > 1`` trains data-parallel: :func:`execute` claims it and holds
the device lock as above, then starts ``nproc`` ranks through torchrun (``python -m
recsys.train.worker RUN_ID --rank``, see :mod:`recsys.train.distributed`) and waits.
Rank 0 streams metrics and writes the checkpoint and final status; every rank honours
Stop; when the run does not finish, the launcher records it failed, naming the rank that
failed for a reason of its own, or else the rank killed without a word.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import logging
import os
import re
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import torch

from recsys.artifacts import atomic_write_json, read_json
from recsys.memory import peak_memory_mb
from recsys.train import distributed
from recsys.train.loop import (Callback, LogEpochs, ProgressBar, StopSignal, TrainConfig, TrainingDiverged,
                               resolve_device)
from recsys.train.recipes import RecipeContext, get_recipe
from recsys.train.runs import Run, RunRegistry, _pid_alive

log = logging.getLogger(__name__)


class RecordMetrics(Callback):
    """Streams each epoch's record into ``metrics.jsonl`` so pages can draw live curves.

    Within an epoch it also records the step and the last batch loss in the status every
    ``every`` seconds, so a page shows progress even when one epoch takes minutes.
    """

    def __init__(self, run: Run, every: float = 2.0):
        self.run = run
        self.every = every
        self._last = time.monotonic()

    def on_batch_end(self, state, loss):
        now = time.monotonic()
        if now - self._last >= self.every:
            self._last = now
            self.run.set_status("running", step=state.step, batch_loss=loss)

    def on_epoch_end(self, state, record):
        self.run.append_metrics(record)
        self.run.set_status("running", epoch=state.epoch, epochs=state.config.epochs, step=state.step)


@contextlib.contextmanager
def device_lock(root: Path, device: str, run: Run):
    """Hold the device's lock; while waiting, stay ``queued`` and honour a stop request."""
    if device == "cuda":  # "cuda" and "cuda:0" are the same GPU: one lock
        device = "cuda:0"
    path = root / f".device-{device.replace(':', '_')}.lock"
    with open(path, "w") as handle:
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if run.stop_requested():
                    raise InterruptedError("stopped while queued") from None
                time.sleep(0.5)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def claim(run: Run) -> None:
    """Mark ``run`` as taken by this process; :class:`RuntimeError` unless it is queued and unclaimed.

    Why: executing a finished run would retrain it, overwrite its checkpoint and append a
    second copy of its epochs to ``metrics.jsonl``; two workers on one queued run would
    interleave. Only a queued run whose recorded worker (if any) is this process or dead
    can be executed.
    """
    reason = run.damage()
    if reason is not None:
        raise RuntimeError(f"run {run.id} is damaged: {reason}")
    with run._status_lock():
        record = run._raw_status()
        pid = record.get("pid")
        if record.get("status") != "queued":
            raise RuntimeError(f"run {run.id} is {record.get('status')}: only a queued run can be executed")
        if isinstance(pid, int) and pid != os.getpid() and _pid_alive(pid):
            raise RuntimeError(f"run {run.id} is already taken by worker {pid}")
        atomic_write_json(run.status_path, {**record, "pid": os.getpid(), "updated": time.time()})


@contextlib.contextmanager
def _run_log(run: Run):
    """Send INFO logs to the run's ``log.txt`` without making the console more talkative.

    The root logger must pass INFO records for the file, so console handlers that had no
    level of their own get the root's previous level for the duration: ``train`` without
    ``-v`` prints a progress bar and the final line, not every epoch.
    """
    root = logging.getLogger()
    handler = logging.FileHandler(run.log_path)
    handler.setLevel(logging.INFO)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    before = root.level
    quiet = [h for h in root.handlers if h.level == logging.NOTSET]
    for h in quiet:
        h.setLevel(before)
    root.addHandler(handler)
    root.setLevel(min(before, logging.INFO) if before else logging.INFO)
    try:
        yield
    finally:
        root.removeHandler(handler)
        handler.close()
        root.setLevel(before)
        for h in quiet:
            h.setLevel(logging.NOTSET)


class RanksFailed(RuntimeError):
    """A data-parallel run ended badly; the message is what its status shows."""


def _one_line(error: Exception) -> str:
    return str(error) if isinstance(error, (TrainingDiverged, RanksFailed)) else f"{type(error).__name__}: {error}"


def run_processes(config: dict[str, Any]) -> int:
    """A run's number of training processes (``nproc`` in its config, 1 when absent)."""
    nproc = config.get("nproc", 1)
    if not isinstance(nproc, int) or isinstance(nproc, bool) or not 1 <= nproc <= MAX_PROCESSES:
        raise ValueError(f"nproc must be a whole number from 1 to {MAX_PROCESSES}, got {nproc!r}")
    return nproc


#: the most training processes one run may start on this machine
MAX_PROCESSES = 64


def execute(run: Run, registry: RunRegistry, extra_callbacks: list[Callback] | None = None,
            progress: bool = False) -> dict[str, Any]:
    """Run a queued run to its end, recording status, metrics, log and checkpoint.

    One process trains in this one; ``nproc > 1`` starts the ranks (see the module
    docstring), with a progress bar on rank 0 when ``progress``. Raises
    :class:`RuntimeError` without touching the run if it is not queued (see :func:`claim`).
    A failure is recorded as ``failed`` with a one-line error (a diverged loss: "loss is
    not finite at epoch N"), the traceback goes to the run's log only, and the exception
    is re-raised for the caller's exit status.
    """
    claim(run)
    with _run_log(run):
        try:
            config = run.config
            recipe = get_recipe(config["recipe"])
            train = TrainConfig(**config["train"]).validate()
            nproc = run_processes(config)
            device = str(resolve_device(train.device))
            if device.startswith("cuda") and nproc > torch.cuda.device_count():
                raise ValueError(f"{nproc} processes on CUDA need {nproc} GPUs (one each); "
                                 f"this machine has {torch.cuda.device_count()}")
            run.set_status("queued", pid=os.getpid(), device=device)
            with device_lock(registry.root, device, run):
                if run.stop_requested():
                    raise InterruptedError("stopped while queued")
                run.set_status("running", pid=os.getpid(), device=device, started=time.time(), nproc=nproc)
                log.info("run %s: %s on %s (%d process%s)", run.id, recipe.name, device, nproc,
                         "" if nproc == 1 else "es")
                if nproc > 1:
                    return _launch_ranks(run, registry, nproc, progress)
                context = _context(run, config, recipe, train, writer=True, progress=progress, extra=extra_callbacks)
                summary = {**recipe.run(context), "peak_rss_mb": round(peak_memory_mb(), 1)}
            return _finish(run, summary)
        except InterruptedError as error:
            run.set_status("stopped", finished=time.time(), error=str(error))
            return {}
        except Exception as error:  # recorded for the page; the traceback goes to the run's log only
            log.info("run %s failed:\n%s", run.id, traceback.format_exc())
            run.set_status("failed", finished=time.time(), error=_one_line(error))
            raise


def _context(run: Run, config: dict[str, Any], recipe, train: TrainConfig, writer: bool, progress: bool,
             extra: list[Callback] | None = None) -> RecipeContext:
    """What a recipe gets: every process honours Stop; only the writer streams, logs and saves."""
    callbacks: list[Callback] = [StopSignal(run.stop_requested)]
    if writer:
        callbacks += [RecordMetrics(run), LogEpochs(), *([ProgressBar(recipe.name)] if progress else []), *(extra or [])]
    return RecipeContext(train, {**recipe.options, **config.get("options", {})}, callbacks,
                         run.checkpoint_path if writer else None)


def _finish(run: Run, summary: dict[str, Any]) -> dict[str, Any]:
    final = "stopped" if run.stop_requested() else "done"
    run.set_status(final, finished=time.time(), summary=summary)
    log.info("run %s %s: %s", run.id, final, summary)
    return summary


def _launch_ranks(run: Run, registry: RunRegistry, nproc: int, progress: bool) -> dict[str, Any]:
    """Start the ranks through torchrun, wait, and name the failed rank when the run did not finish."""
    args = [run.id, "--rank"] + (["--progress"] if progress else [])
    code = distributed.launch_ranks(nproc, "recsys.train.worker", *args, env={"RECSYS_RUNS_DIR": str(registry.root)})
    record = run._raw_status()
    if record.get("status") in ("done", "stopped"):  # rank 0 finished and recorded the outcome
        return record.get("summary") or {}
    raise RanksFailed(_rank_failure(run, nproc, code))


#: what a rank raises when another rank vanished under a collective (gloo / NCCL transport errors)
PEER_LOST = re.compile(r"gloo|nccl|connection (reset|closed|refused)|broken pipe", re.IGNORECASE)


def _rank_error_path(run: Run, rank: int) -> Path:
    return run.path / f"rank-{rank}.error.json"


def _rank_failure(run: Run, nproc: int, code: int) -> str:
    """The cause of a failed data-parallel run, in one line.

    A rank's own error comes first; an error that only says a peer vanished (the other
    ranks' view of a killed rank) is not a cause, so then the ranks that left no error
    at all are named: they were killed (out of memory, a signal) before they could write.
    """
    errors = {}
    for rank in range(nproc):
        with contextlib.suppress(Exception):
            errors[rank] = read_json(_rank_error_path(run, rank), "rank error")["error"]
    causes = [f"training process {r} of {nproc}: {e}" for r, e in errors.items() if not PEER_LOST.search(str(e))]
    if causes:
        return causes[0]
    silent = [str(r) for r in range(nproc) if r not in errors]
    if len(silent) == 1:
        return f"training process {silent[0]} of {nproc} was killed or exited without reporting (torchrun exit status {code})"
    # torchrun ends the others once one dies, sometimes before they could write: its summary in the log names the first
    return (f"training processes {', '.join(silent) or 'all'} of {nproc} ended without reporting: one was killed or "
            f"exited and torchrun stopped the others (torchrun exit status {code}; its summary in the log names the first)")


def execute_rank(run: Run, progress: bool = False) -> dict[str, Any]:
    """One rank of a data-parallel run (started by :func:`_launch_ranks` through torchrun).

    Every rank trains; rank 0 alone streams metrics, saves the checkpoint and records the
    outcome. A rank that fails writes its one-line error to ``rank-R.error.json`` for the
    launcher, which records the run's status.
    """
    config = run.config
    recipe = get_recipe(config["recipe"])
    train = TrainConfig(**config["train"]).validate()
    with distributed.process_group(train.device):
        rank, world_size = distributed.world()
        writer = rank == 0
        try:
            with _run_log(run) if writer else contextlib.nullcontext():
                summary = recipe.run(_context(run, config, recipe, train, writer=writer, progress=progress))
                peaks = distributed.gather(round(peak_memory_mb(), 1))  # a collective: every rank takes part
                if not writer:
                    return summary
                return _finish(run, {**summary, "processes": world_size, "peak_rss_mb": max(peaks),
                                     "peak_rss_mb_total": round(sum(peaks), 1)})
        except Exception as error:
            log.error("rank %d of run %s failed:\n%s", rank, run.id, traceback.format_exc())
            atomic_write_json(_rank_error_path(run, rank), {"rank": rank, "error": _one_line(error)})
            raise


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m recsys.train.worker", description=__doc__.split("\n\n")[0])
    parser.add_argument("run_id")
    parser.add_argument("--rank", action="store_true", help="be one rank of a data-parallel run (torchrun starts these)")
    parser.add_argument("--progress", action="store_true", help="show a progress bar (rank 0)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    registry = RunRegistry()
    try:
        run = registry.get(args.run_id)
    except KeyError as error:
        print(f"error: {error.args[0]}", file=sys.stderr)
        return 2
    if args.rank and not distributed.launched_by_torchrun():
        print("error: --rank is for the processes torchrun starts; use `python -m recsys train MODEL --nproc N`",
              file=sys.stderr)
        return 2
    try:
        if args.rank:
            execute_rank(run, args.progress)
        else:
            execute(run, registry, progress=args.progress)
    except Exception as error:  # already recorded in status.json and the log by execute
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
