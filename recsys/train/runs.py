"""The run registry: every training run, from the CLI or the Training studio, lives in ``runs/``.

Layout of one run (``runs/<run_id>/``)::

    config.json     recipe name, TrainConfig, recipe options, created time
    status.json     queued | running | done | stopped | failed (+ error, pid, device, times)
    metrics.jsonl   one JSON record per epoch (train_loss, lr, validation metrics, seconds)
    log.txt         the worker's log
    checkpoint.safetensors  the trained weights as a recsys artifact (safetensors + JSON; written
                    atomically, only when a run ends well)
    STOP            present once someone asked the run to stop

Why files: a run is executed by a separate worker process (``python -m
recsys.train.worker RUN_ID``; ``python -m recsys runs execute RUN_ID`` does the same)
so it survives page reloads and can be watched from any browser tab or from the
shell. Every file is replaced atomically (write to a temp file, then ``os.replace``),
so a crash or stop never leaves a half-written checkpoint or status.
At most one run per device trains at a time: workers take an exclusive ``flock`` on
``runs/.device-<device>.lock`` and the others wait as ``queued``.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
import uuid
from dataclasses import asdict
from pathlib import Path
from typing import Any

from recsys.paths import PROJECT_ROOT, runs_dir
from recsys.artifacts import atomic_write_json
from recsys.train.loop import Callback, LogEpochs, StopSignal, TrainConfig, resolve_device
from recsys.train.recipes import RecipeContext, get_recipe

log = logging.getLogger(__name__)

FINAL_STATUSES = ("done", "stopped", "failed")


def _pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie child of this process is dead for our purposes
    with contextlib.suppress(OSError, ChildProcessError):
        finished, _ = os.waitpid(pid, os.WNOHANG)
        if finished == pid:
            return False
    return True


class Run:
    """One run folder; all reads tolerate a run that is being written by its worker."""

    def __init__(self, path: Path):
        self.path = path
        self.id = path.name

    # files
    config_path = property(lambda self: self.path / "config.json")
    status_path = property(lambda self: self.path / "status.json")
    metrics_path = property(lambda self: self.path / "metrics.jsonl")
    log_path = property(lambda self: self.path / "log.txt")
    checkpoint_path = property(lambda self: self.path / "checkpoint.safetensors")
    stop_path = property(lambda self: self.path / "STOP")

    @property
    def config(self) -> dict[str, Any]:
        return json.loads(self.config_path.read_text())

    @property
    def recipe(self) -> str:
        return self.config["recipe"]

    def status(self) -> dict[str, Any]:
        """The status record; a ``running`` run whose worker died is reported ``failed``."""
        try:
            status = json.loads(self.status_path.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return {"status": "failed", "error": "status file missing or unreadable"}
        if status["status"] in ("running", "queued") and status.get("pid") and not _pid_alive(status["pid"]):
            last = [line for line in self.log_tail(5).splitlines() if line.strip()]
            detail = f" (last log line: {last[-1].strip()})" if last else ""
            status = {**status, "status": "failed", "error": f"the worker process exited without reporting{detail}"}
        return status

    def set_status(self, status: str, **extra: Any) -> None:
        with self._status_lock():
            record = {**self._raw_status(), "status": status, "updated": time.time(), **extra}
            atomic_write_json(self.status_path, record)

    def update_status_if(self, expected: str, **extra: Any) -> bool:
        """Merge ``extra`` into the status only while it is still ``expected`` (atomic w.r.t. set_status).

        ``launch`` records the worker's pid this way: a fast worker may already have
        moved the run on to ``running``, and a plain write would move it back to ``queued``.
        """
        with self._status_lock():
            record = self._raw_status()
            if record.get("status") != expected:
                return False
            atomic_write_json(self.status_path, {**record, "updated": time.time(), **extra})
            return True

    @contextlib.contextmanager
    def _status_lock(self):
        """Serialise read-modify-write of status.json between the page and the worker."""
        with open(self.path / ".status.lock", "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def _raw_status(self) -> dict[str, Any]:
        try:
            return json.loads(self.status_path.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return {}

    def metrics(self) -> list[dict[str, float]]:
        if not self.metrics_path.exists():
            return []
        records = []
        for line in self.metrics_path.read_text().splitlines():
            with contextlib.suppress(json.JSONDecodeError):  # a line being appended right now
                records.append(json.loads(line))
        return records

    def append_metrics(self, record: dict[str, float]) -> None:
        with open(self.metrics_path, "a") as handle:
            handle.write(json.dumps(record) + "\n")
            handle.flush()

    def request_stop(self) -> None:
        """Ask the worker to stop; a queued run is stopped before it starts."""
        self.stop_path.touch()

    def stop_requested(self) -> bool:
        return self.stop_path.exists()

    def log_tail(self, lines: int = 30) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


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


class RunRegistry:
    """Create, list, launch, stop and delete runs under ``root`` (default ``runs/``)."""

    def __init__(self, root: Path | None = None):
        self.root = Path(root) if root else runs_dir()
        self.root.mkdir(parents=True, exist_ok=True)

    def create(self, recipe: str, train: TrainConfig, options: dict[str, Any] | None = None) -> Run:
        get_recipe(recipe)  # fail early on an unknown model
        run_id = time.strftime("%Y%m%d-%H%M%S") + f"-{recipe}-{uuid.uuid4().hex[:6]}"
        run = Run(self.root / run_id)
        run.path.mkdir(parents=True)
        atomic_write_json(
            run.config_path,
            {"recipe": recipe, "train": asdict(train), "options": options or {}, "created": time.time()},
        )
        run.set_status("queued", created=time.time())
        return run

    def get(self, run_id: str) -> Run:
        run = Run(self.root / run_id)
        if not run.config_path.exists():
            raise KeyError(f"no run {run_id!r} in {self.root}")
        return run

    def list(self) -> list[Run]:
        runs = [Run(p) for p in self.root.iterdir() if p.is_dir() and (p / "config.json").exists()]
        return sorted(runs, key=lambda run: run.id, reverse=True)

    def delete(self, run_id: str) -> None:
        run = self.get(run_id)
        if run.status()["status"] in ("running", "queued"):
            raise RuntimeError(f"run {run_id} is {run.status()['status']}: stop it before deleting it")
        shutil.rmtree(run.path)
        active = self._active()
        if run_id in active.values():
            atomic_write_json(self.root / "active.json", {k: v for k, v in active.items() if v != run_id})

    def launch(self, run: Run) -> int:
        """Start a detached worker process for ``run``; returns its pid.

        ``start_new_session`` detaches it from the Streamlit script, so a page reload
        or a rerun does not kill training.
        """
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "RECSYS_RUNS_DIR": str(self.root)}
        with open(run.log_path, "ab") as log_file:
            process = subprocess.Popen(
                [sys.executable, "-m", "recsys.train.worker", run.id],
                cwd=PROJECT_ROOT,
                env=env,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        run.update_status_if("queued", pid=process.pid)
        return process.pid

    # --- choosing a finished run's checkpoint as the model that pages serve ---
    def _active(self) -> dict[str, str]:
        path = self.root / "active.json"
        return json.loads(path.read_text()) if path.exists() else {}

    def set_active(self, run_id: str) -> None:
        run = self.get(run_id)
        if run.status()["status"] != "done" or not run.checkpoint_path.exists():
            raise RuntimeError(f"run {run_id} has no finished checkpoint to serve")
        atomic_write_json(self.root / "active.json", {**self._active(), run.recipe: run_id})

    def clear_active(self, recipe: str) -> None:
        atomic_write_json(self.root / "active.json", {k: v for k, v in self._active().items() if k != recipe})

    def active_run(self, recipe: str) -> Run | None:
        run_id = self._active().get(recipe)
        if run_id and (self.root / run_id / "checkpoint.safetensors").exists():
            return Run(self.root / run_id)
        return None


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


def execute(run: Run, registry: RunRegistry, extra_callbacks: list[Callback] | None = None) -> dict[str, Any]:
    """Run a queued run to its end in this process, recording status, metrics, log and checkpoint."""
    handler = logging.FileHandler(run.log_path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.getLogger().addHandler(handler)
    logging.getLogger().setLevel(logging.INFO)
    try:
        config = run.config
        recipe = get_recipe(config["recipe"])
        train = TrainConfig(**config["train"])
        device = str(resolve_device(train.device))
        run.set_status("queued", pid=os.getpid(), device=device)
        with device_lock(registry.root, device, run):
            if run.stop_requested():
                raise InterruptedError("stopped while queued")
            run.set_status("running", pid=os.getpid(), device=device, started=time.time())
            log.info("run %s: %s on %s", run.id, recipe.name, device)
            callbacks = [StopSignal(run.stop_requested), RecordMetrics(run), LogEpochs(), *(extra_callbacks or [])]
            context = RecipeContext(train, {**recipe.options, **config["options"]}, callbacks, run.checkpoint_path)
            summary = recipe.run(context)
        final = "stopped" if run.stop_requested() else "done"
        run.set_status(final, finished=time.time(), summary=summary)
        log.info("run %s %s: %s", run.id, final, summary)
        return summary
    except InterruptedError as error:
        run.set_status("stopped", finished=time.time(), error=str(error))
        return {}
    except Exception as error:  # recorded for the page; the traceback goes to the log
        log.error("run %s failed:\n%s", run.id, traceback.format_exc())
        run.set_status("failed", finished=time.time(), error=f"{type(error).__name__}: {error}")
        raise
    finally:
        logging.getLogger().removeHandler(handler)
        handler.close()
