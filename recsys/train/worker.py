"""The detached run worker: ``python -m recsys.train.worker RUN_ID`` executes one queued run.

:meth:`recsys.train.runs.RunRegistry.launch` starts this module rather than the full
CLI so a worker needs nothing but the run registry and the recipes: building the
CLI parser imports every pipeline's command-line glue, and one half-written
pipeline must not be able to stop training runs of the others from starting.
The registry root comes from ``$RECSYS_RUNS_DIR`` (``launch`` sets it).

:func:`execute` (also used in-process by ``python -m recsys train`` and the tests) runs
one *queued* run to its end: it claims the run, waits for the device's lock, streams
metrics (:class:`RecordMetrics`), and records the final status and checkpoint.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import logging
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from recsys.artifacts import atomic_write_json
from recsys.train.loop import Callback, LogEpochs, StopSignal, TrainConfig, TrainingDiverged, resolve_device
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


def execute(run: Run, registry: RunRegistry, extra_callbacks: list[Callback] | None = None) -> dict[str, Any]:
    """Run a queued run to its end in this process, recording status, metrics, log and checkpoint.

    Raises :class:`RuntimeError` without touching the run if it is not queued (see
    :func:`claim`). A failure is recorded as ``failed`` with a one-line error (a diverged
    loss: "loss is not finite at epoch N"), the traceback goes to the run's log only, and
    the exception is re-raised for the caller's exit status.
    """
    claim(run)
    with _run_log(run):
        try:
            config = run.config
            recipe = get_recipe(config["recipe"])
            train = TrainConfig(**config["train"]).validate()
            device = str(resolve_device(train.device))
            run.set_status("queued", pid=os.getpid(), device=device)
            with device_lock(registry.root, device, run):
                if run.stop_requested():
                    raise InterruptedError("stopped while queued")
                run.set_status("running", pid=os.getpid(), device=device, started=time.time())
                log.info("run %s: %s on %s", run.id, recipe.name, device)
                callbacks = [StopSignal(run.stop_requested), RecordMetrics(run), LogEpochs(), *(extra_callbacks or [])]
                context = RecipeContext(train, {**recipe.options, **config.get("options", {})}, callbacks,
                                        run.checkpoint_path)
                summary = recipe.run(context)
            final = "stopped" if run.stop_requested() else "done"
            run.set_status(final, finished=time.time(), summary=summary)
            log.info("run %s %s: %s", run.id, final, summary)
            return summary
        except InterruptedError as error:
            run.set_status("stopped", finished=time.time(), error=str(error))
            return {}
        except Exception as error:  # recorded for the page; the traceback goes to the run's log only
            message = str(error) if isinstance(error, TrainingDiverged) else f"{type(error).__name__}: {error}"
            log.info("run %s failed:\n%s", run.id, traceback.format_exc())
            run.set_status("failed", finished=time.time(), error=message)
            raise


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m recsys.train.worker", description=__doc__.split("\n\n")[0])
    parser.add_argument("run_id")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    registry = RunRegistry()
    try:
        run = registry.get(args.run_id)
    except KeyError as error:
        print(f"error: {error.args[0]}", file=sys.stderr)
        return 2
    try:
        execute(run, registry)
    except Exception as error:  # already recorded in status.json and the log by execute
        print(f"error: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
