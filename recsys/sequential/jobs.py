"""Resumable reproduction jobs: one (model, seed, split) training run, stored as soon as it finishes.

Why: a converged reproduction takes hours of CPU on the dev machine, longer than a sitting, and
machines get interrupted. Each job's result goes to its own JSON file in a state directory the
moment it is done, named by a hash of *every* setting that can change its numbers (dataset and its
size, model, split, seed, optimiser settings, model overrides, training examples, and
:data:`CODE_VERSION`). A re-run plans the same jobs, finds their files and skips them; a changed
setting gives a new hash, so that job runs again instead of silently reusing a stale number. A
sweep point that equals the main table's setting is the same job, trained once.

The files hold the test metrics, the validation curve (one row per epoch), the best epoch, the
epoch budget, whether early stopping ended the run, the device it trained on, and the CPU seconds
of the process (``time.process_time``: all of its threads, training and evaluation; on CUDA the
host's share only, so those jobs are also timed by their wall seconds). They are plain JSON, no pickle.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import logging
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from recsys import registry
from recsys.artifacts import ArtifactError, atomic_write_json, read_json
from recsys.data.sequential import SequentialDataset, SequentialSplit
from recsys.paths import PROJECT_ROOT
from recsys.sequential.prep import both_splits
from recsys.sequential.training import test_metrics, train_model
from recsys.train.loop import TrainConfig

log = logging.getLogger(__name__)

#: bump when a change to the models or the protocol makes stored results stale (it is part of every key)
CODE_VERSION = 1


def git_commit() -> str | None:
    """The checkout's HEAD commit, or None outside a git checkout."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


@dataclass(frozen=True)
class Job:
    """One model trained on one split of one dataset with one seed, then tested."""

    dataset: str
    model: str
    split: str  # loo | ratio
    seed: int
    train: dict[str, Any]  # TrainConfig fields
    overrides: dict[str, Any]  # model config fields
    recent_examples: int | None = None
    anime_max_users: int | None = None
    role: str = "main"  # main | sweep | ours: where the result is reported (not part of the key)
    sweep: tuple[str, Any] | None = None  # (param, value) of a sweep point (not part of the key)
    ours: str | None = None  # the name of a variant of ours (experiments.OURS; not part of the key)

    def settings(self) -> dict[str, Any]:
        """Everything that decides this job's numbers: hashed into :attr:`key`.

        Model and optimiser settings enter as the fields that differ from their dataclass defaults,
        so restating a default (a sweep point at the profile's own value) is the same job, and adding
        a new option with a default keeps every stored result; a change of a *default's* meaning
        must bump :data:`CODE_VERSION`.
        """
        spec = registry.get(self.model, "sequential")
        config = _non_default(spec.make_config(**self.overrides))
        # a fitted model uses no optimiser: only its seed counts, so a new learning rate does not re-fit it
        train = _non_default(TrainConfig(**self.train)) if spec.kind == "neural" else {}
        return {"dataset": self.dataset, "anime_max_users": self.anime_max_users if self.dataset == "anime" else None,
                "model": self.model, "split": self.split, "seed": self.seed, "train": train, "config": config,
                "max_seq_len": int(self.overrides.get("max_seq_len", 50)), "recent_examples": self.recent_examples,
                "code_version": CODE_VERSION}

    @property
    def key(self) -> str:
        text = json.dumps(self.settings(), sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:20]

    @property
    def label(self) -> str:
        point = f" {self.sweep[0]}={self.sweep[1]}" if self.sweep else (f" ours:{self.ours}" if self.ours else "")
        return f"{self.dataset} {self.model} seed {self.seed} {self.split}{point}"

    @property
    def neural(self) -> bool:
        return registry.get(self.model, "sequential").kind == "neural"


def _non_default(config: Any) -> dict[str, Any]:
    """The fields of dataclass ``config`` whose value differs from the field's default, JSON-ready."""
    defaults = type(config)()
    changed = {f.name: getattr(config, f.name) for f in dataclasses.fields(config)
               if getattr(config, f.name) != getattr(defaults, f.name)}
    return json.loads(json.dumps(changed, default=str))


def execute(job: Job, dataset: SequentialDataset, split: SequentialSplit) -> dict[str, Any]:
    """Train and test ``job``; the record stored for it (see the module docstring)."""
    config = TrainConfig(**job.train)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    trained = train_model(job.model, dataset, split, config, dict(job.overrides), job.recent_examples)
    metrics = test_metrics(trained, split, int(job.overrides.get("max_seq_len", 50)))
    neural = job.neural
    history = [{"epoch": int(r["epoch"]), "train_loss": float(r["train_loss"]),
                **{f"val_{k}": float(v) for k, v in r.items() if "@" in k}} for r in trained.history]
    return {
        "key": job.key, "settings": job.settings(), "metrics": metrics,
        "best_epoch": trained.best_epoch, "epochs_run": trained.epochs,
        "max_epochs": config.epochs if neural else 0,
        "stopped_early": bool(neural and trained.epochs < config.epochs),
        "stop_reason": trained.stop_reason, "monitor": config.monitor,
        "cpu_seconds": round(time.process_time() - cpu0, 3), "wall_seconds": round(time.perf_counter() - wall0, 2),
        "torch_threads": torch.get_num_threads(), "device": trained.device, "history": history,
        "finished_utc": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }


class JobStore:
    """One JSON file per finished job under ``root/jobs/<key>.json`` (written atomically)."""

    def __init__(self, root: Path):
        self.root = Path(root)
        (self.root / "jobs").mkdir(parents=True, exist_ok=True)

    def path(self, job: Job) -> Path:
        return self.root / "jobs" / f"{job.key}.json"

    def get(self, job: Job) -> dict[str, Any] | None:
        """The stored record of ``job``; None when missing, damaged or stored for other settings."""
        path = self.path(job)
        if not path.exists():
            return None
        try:
            record = read_json(path, "job result")
        except ArtifactError as error:
            log.warning("re-running %s: %s", job.label, error)
            return None
        if not isinstance(record, dict) or record.get("settings") != json.loads(json.dumps(job.settings(), default=str)):
            log.warning("re-running %s: %s holds other settings", job.label, path)
            return None
        return record

    def put(self, job: Job, record: dict[str, Any]) -> None:
        atomic_write_json(self.path(job), {**record, "git_commit": _COMMIT.setdefault("sha", git_commit())})


_COMMIT: dict[str, str | None] = {}
_WORKER: dict[str, Any] = {}  # a worker process's datasets and splits, set once by _start_worker


def _start_worker(data: dict[str, tuple[SequentialDataset, dict]], threads: int | None) -> None:
    if threads:
        torch.set_num_threads(threads)
    _WORKER.update(data)


def _run_in_worker(job: Job) -> dict[str, Any]:
    dataset, splits = _WORKER[job.dataset]
    return execute(job, dataset, splits[job.split])


def unique(jobs: Sequence[Job]) -> list[Job]:
    """``jobs`` without repeated keys (first kept): a sweep point equal to a main job is one job."""
    seen: set[str] = set()
    return [j for j in jobs if not (j.key in seen or seen.add(j.key))]


def run_pending(jobs: Sequence[Job], store: JobStore, load: Callable[[str], SequentialDataset], workers: int = 1,
                threads: int | None = None, progress: bool = True, on_done: Callable[[Job, dict], None] | None = None,
                ) -> int:
    """Run the jobs that ``store`` does not hold yet, in order; returns how many finished.

    A job that raises is logged and skipped (nothing stored, so a re-run retries it); the
    other jobs still run.

    A tqdm bar counts every planned job (finished ones as already done) and shows the ETA.
    With ``workers`` > 1 the jobs run in that many spawned processes (spawn, not fork: a forked
    child inherits torch's thread pool state, which can deadlock); each result is stored as it
    arrives either way.
    """
    from tqdm.auto import tqdm

    planned = unique(jobs)
    pending = [job for job in planned if store.get(job) is None]
    bar = tqdm(total=len(planned), initial=len(planned) - len(pending), desc="reproduce", unit="job",
               disable=not progress, dynamic_ncols=True)
    data: dict[str, tuple[SequentialDataset, dict]] = {}
    for name in dict.fromkeys(job.dataset for job in pending):
        dataset = load(name)
        data[name] = (dataset, both_splits(dataset))

    def finish(job: Job, record: dict) -> None:
        store.put(job, record)
        log.info("%s: %s (best epoch %s of %s, %.0f CPU s)", job.label, record["metrics"], record["best_epoch"],
                 record["max_epochs"], record["cpu_seconds"])
        bar.set_postfix_str(f"{job.label} done")
        bar.update(1)
        if on_done is not None:
            on_done(job, record)

    failed: list[str] = []

    def fail(job: Job, error: Exception) -> None:  # e.g. a diverged run: the others still run; a re-run retries it
        log.error("%s failed and is not stored: %s", job.label, error)
        failed.append(job.label)
        bar.update(1)

    if workers <= 1:
        for job in pending:
            bar.set_postfix_str(job.label)
            dataset, splits = data[job.dataset]
            try:
                record = execute(job, dataset, splits[job.split])
            except Exception as error:  # noqa: BLE001 - any failure of one job; Ctrl-C still stops the run
                fail(job, error)
                continue
            finish(job, record)
    elif pending:
        from concurrent.futures import ProcessPoolExecutor, as_completed
        from multiprocessing import get_context

        with ProcessPoolExecutor(workers, mp_context=get_context("spawn"), initializer=_start_worker,
                                 initargs=(data, threads)) as pool:
            futures = {pool.submit(_run_in_worker, job): job for job in pending}
            for future in as_completed(futures):
                try:
                    record = future.result()
                except Exception as error:  # noqa: BLE001
                    fail(futures[future], error)
                    continue
                finish(futures[future], record)
    bar.close()
    if failed:
        log.warning("%d job(s) failed (re-run to retry): %s", len(failed), "; ".join(failed))
    return len(pending) - len(failed)


@dataclass
class Finished:
    """The planned jobs of one dataset with their stored records (None: not finished yet)."""

    jobs: list[Job]
    records: list[dict[str, Any] | None] = field(default_factory=list)

    @classmethod
    def collect(cls, jobs: Sequence[Job], store: JobStore) -> "Finished":
        return cls(list(jobs), [store.get(job) for job in jobs])

    @property
    def done(self) -> int:
        return self.count()[0]

    @property
    def total(self) -> int:
        return self.count()[1]

    def count(self, roles: tuple[str, ...] | None = None) -> tuple[int, int]:
        """(finished, planned) distinct jobs, of ``roles`` only when given."""
        pairs = [(j, r) for j, r in zip(self.jobs, self.records, strict=True) if roles is None or j.role in roles]
        return len({j.key for j, r in pairs if r is not None}), len({j.key for j, _ in pairs})

    def by_device(self) -> dict[str, dict[str, float]]:
        """Per device (``cpu``, or the GPU as the loop names it): finished jobs, CPU seconds, wall seconds.

        On CUDA ``cpu_seconds`` is the host's share only, so a GPU's time is its jobs' wall seconds.
        """
        records = {j.key: r for j, r in zip(self.jobs, self.records, strict=True) if r is not None}
        out: dict[str, dict[str, float]] = {}
        for record in records.values():
            entry = out.setdefault(device_name(record), {"jobs": 0, "cpu_seconds": 0.0, "wall_seconds": 0.0})
            entry["jobs"] += 1
            entry["cpu_seconds"] += float(record["cpu_seconds"])
            entry["wall_seconds"] += float(record.get("wall_seconds") or 0.0)
        return {name: {k: round(v, 3) for k, v in entry.items()} for name, entry in out.items()}

    def of(self, role: str) -> list[tuple[Job, dict[str, Any]]]:
        return [(j, r) for j, r in zip(self.jobs, self.records, strict=True) if r is not None and j.role == role]


def device_name(record: dict[str, Any]) -> str:
    """``cpu`` or the GPU a job record trained on (records from before the field existed: ``cpu``)."""
    device = str(record.get("device") or "cpu")
    return "cpu" if device.startswith("cpu") else device


def replace_train(job: Job, **changes: Any) -> Job:
    """``job`` with some TrainConfig fields changed (a new key)."""
    return dataclasses.replace(job, train={**job.train, **changes})
