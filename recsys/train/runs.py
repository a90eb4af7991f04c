"""The run registry: every training run, from the CLI or the Training studio, lives in ``runs/``.

Layout of one run (``runs/<run_id>/``)::

    config.json     recipe name, TrainConfig, recipe options, created time
    status.json     queued | running | done | stopped | failed (+ error, pid, device, times)
    metrics.jsonl   one JSON record per epoch (train_loss, lr, validation metrics, seconds)
    log.txt         the worker's log
    checkpoint.safetensors  the trained weights as a recsys artifact (safetensors + JSON; written
                    atomically, only when a run ends well)
    STOP            present once someone asked the run to stop

Nothing in ``runs/`` is trusted: anyone who can write there can plant files. Run ids
must match :data:`RUN_ID_PATTERN` (what :meth:`RunRegistry.create` makes) and name a
real folder directly inside the registry root, never a symlink, so ``runs delete
/some/dir`` or ``../../x`` is "no such run" instead of an ``rmtree`` outside ``runs/``.
A run whose ``config.json`` or ``status.json`` cannot be read (bad JSON, missing keys)
is *damaged*: :meth:`Run.status` reports ``{"status": "damaged", "error": reason}`` and
listing, pages and the other runs keep working. Checkpoints are artifacts
(:mod:`recsys.artifacts`), never unpickled.

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
import re
import shutil
import subprocess
import sys
import time
import uuid
from dataclasses import asdict
from pathlib import Path
from typing import Any

from recsys.artifacts import ArtifactError, atomic_write_json, read_json
from recsys.paths import PROJECT_ROOT, runs_dir
from recsys.train.loop import TrainConfig
from recsys.train.recipes import get_recipe

log = logging.getLogger(__name__)

FINAL_STATUSES = ("done", "stopped", "failed", "damaged")
STATUSES = ("queued", "running", *FINAL_STATUSES)
#: what :meth:`RunRegistry.create` makes: ``YYYYmmdd-HHMMSS-<model>-<6 hex>``
RUN_ID_PATTERN = re.compile(r"\d{8}-\d{6}-[a-z0-9][a-z0-9_.-]{0,80}-[0-9a-f]{6}")


class RunDamaged(ValueError):
    """A run folder whose ``config.json`` is unreadable or incomplete; the message says why."""


def valid_run_id(run_id: object) -> bool:
    """True for a string shaped like the ids :meth:`RunRegistry.create` makes (no paths, no ``..``)."""
    return isinstance(run_id, str) and RUN_ID_PATTERN.fullmatch(run_id) is not None


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
        """``config.json``; :class:`RunDamaged` if it is not JSON or lacks the recipe or settings."""
        try:
            config = read_json(self.config_path, "run config")
        except ArtifactError as error:
            raise RunDamaged(str(error)) from None
        if not isinstance(config, dict):
            raise RunDamaged(f"run config {self.config_path} is not a JSON object")
        missing = [key for key in ("recipe", "train") if key not in config]
        if missing:
            raise RunDamaged(f"run config {self.config_path} lacks {', '.join(missing)}")
        if not isinstance(config["recipe"], str) or not isinstance(config["train"], dict):
            raise RunDamaged(f"run config {self.config_path} has a malformed recipe or train entry")
        if not isinstance(config.get("options", {}), dict):
            raise RunDamaged(f"run config {self.config_path} has malformed options")
        return config

    def damage(self) -> str | None:
        """Why this run is damaged, or ``None`` when its config and status files are sound.

        A run folder holding a symbolic link is damaged too: the worker appends to
        ``log.txt`` and ``metrics.jsonl``, and a planted link would make it write elsewhere.
        """
        try:
            links = sorted(p.name for p in self.path.iterdir() if p.is_symlink())
        except OSError as error:
            return f"run folder {self.path} cannot be read ({error})"
        if links:
            return f"run folder {self.path} holds symbolic link(s): {', '.join(links)}"
        try:
            self.config
        except RunDamaged as error:
            return str(error)
        try:
            record = read_json(self.status_path, "run status")
        except ArtifactError as error:
            return str(error)
        if not isinstance(record, dict) or record.get("status") not in STATUSES:
            return f"run status {self.status_path} has no valid \"status\" entry"
        return None

    @property
    def recipe(self) -> str:
        """The model name, or ``""`` for a damaged run (so lists and pages keep working)."""
        try:
            return self.config["recipe"]
        except RunDamaged:
            return ""

    def status(self) -> dict[str, Any]:
        """The status record; a ``running`` run whose worker died is reported ``failed``.

        A damaged run (see :meth:`damage`) is ``{"status": "damaged", "error": reason}``;
        the result always has a ``"status"`` key.
        """
        reason = self.damage()
        if reason is not None:
            return {"status": "damaged", "error": reason}
        status = self._raw_status()
        pid = status.get("pid")
        if status["status"] in ("running", "queued") and isinstance(pid, int) and not _pid_alive(pid):
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
            record = json.loads(self.status_path.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            return {}
        return record if isinstance(record, dict) else {}

    def metrics(self) -> list[dict[str, float]]:
        if not self.metrics_path.exists():
            return []
        records = []
        for line in self.metrics_path.read_text(errors="replace").splitlines():
            with contextlib.suppress(json.JSONDecodeError):  # a line being appended right now
                record = json.loads(line)
                if isinstance(record, dict):
                    records.append(record)
        return records

    def append_metrics(self, record: dict[str, float]) -> None:
        with open(self.metrics_path, "a") as handle:
            handle.write(json.dumps(record) + "\n")
            handle.flush()

    def request_stop(self) -> None:
        """Ask the worker to stop; a queued run is stopped before it starts (never follows a planted link)."""
        fd = os.open(self.stop_path, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW, 0o644)
        os.close(fd)

    def stop_requested(self) -> bool:
        return self.stop_path.exists()

    def log_tail(self, lines: int = 30) -> str:
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


class RunRegistry:
    """Create, list, launch, stop and delete runs under ``root`` (default ``runs/``)."""

    def __init__(self, root: Path | None = None):
        self.root = Path(root) if root else runs_dir()
        self.root.mkdir(parents=True, exist_ok=True)

    def create(self, recipe: str, train: TrainConfig, options: dict[str, Any] | None = None, nproc: int = 1) -> Run:
        """A queued run of ``recipe``; ``nproc > 1`` trains it on that many processes (torchrun + DDP)."""
        get_recipe(recipe)  # fail early on an unknown model
        train.validate()  # and on settings that cannot train (batch size 0, lr 1e12, ...)
        if not isinstance(nproc, int) or isinstance(nproc, bool) or nproc < 1:
            raise ValueError(f"nproc must be a whole number of at least 1, got {nproc!r}")
        run_id = time.strftime("%Y%m%d-%H%M%S") + f"-{recipe}-{uuid.uuid4().hex[:6]}"
        run = Run(self.root / run_id)
        run.path.mkdir(parents=True)
        atomic_write_json(
            run.config_path,
            {"recipe": recipe, "train": asdict(train), "options": options or {}, "nproc": nproc, "created": time.time()},
        )
        run.set_status("queued", created=time.time())
        return run

    def _is_run_folder(self, path: Path) -> bool:
        """A real (non-symlink) folder named like a run id, directly in the root, with a config."""
        return (
            valid_run_id(path.name)
            and not path.is_symlink()
            and path.is_dir()
            and path.resolve().parent == self.root.resolve()
            and (path / "config.json").is_file()
            and not (path / "config.json").is_symlink()
        )

    def get(self, run_id: str) -> Run:
        """The run called ``run_id``; :class:`KeyError` "no such run" for anything else (paths, ``..``, links)."""
        if not valid_run_id(run_id) or not self._is_run_folder(self.root / run_id):
            raise KeyError(f"no such run {str(run_id)[:200]!r} in {self.root}")
        return Run(self.root / run_id)

    def list(self) -> list[Run]:
        runs = [Run(p) for p in self.root.iterdir() if self._is_run_folder(p)]
        return sorted(runs, key=lambda run: run.id, reverse=True)

    def delete(self, run_id: str) -> None:
        run = self.get(run_id)
        state = run.status()["status"]
        if state in ("running", "queued"):
            raise RuntimeError(f"run {run_id} is {state}: stop it before deleting it")
        shutil.rmtree(run.path)  # run.path is a real folder inside the root (checked by get)
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
        """``active.json`` (model -> run id); a damaged file counts as "nothing served" and is logged."""
        path = self.root / "active.json"
        if not path.exists():
            return {}
        try:
            record = read_json(path, "served-runs file")
        except ArtifactError as error:
            log.warning("%s; serving the shipped models", error)
            return {}
        if not isinstance(record, dict):
            log.warning("served-runs file %s is not a JSON object; serving the shipped models", path)
            return {}
        return {k: v for k, v in record.items() if isinstance(k, str) and valid_run_id(v)}

    def active_problem(self) -> str | None:
        """Why ``active.json`` was ignored, for pages to show; ``None`` when it is fine or absent."""
        path = self.root / "active.json"
        if not path.exists():
            return None
        try:
            record = read_json(path, "served-runs file")
        except ArtifactError as error:
            return str(error)
        return None if isinstance(record, dict) else f"served-runs file {path} is not a JSON object"

    def set_active(self, run_id: str) -> None:
        run = self.get(run_id)
        if run.status()["status"] != "done" or not run.checkpoint_path.exists():
            raise RuntimeError(f"run {run_id} has no finished checkpoint to serve")
        atomic_write_json(self.root / "active.json", {**self._active(), run.recipe: run_id})

    def clear_active(self, recipe: str) -> None:
        atomic_write_json(self.root / "active.json", {k: v for k, v in self._active().items() if k != recipe})

    def active_run(self, recipe: str) -> Run | None:
        run_id = self._active().get(recipe)
        if not run_id:
            return None
        try:
            run = self.get(run_id)
        except KeyError:
            return None
        return run if run.checkpoint_path.is_file() else None
