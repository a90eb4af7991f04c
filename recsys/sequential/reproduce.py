"""``reproduce cl-epidtn``: every sequential model over several seeds, resumable, then the paper's tables.

:func:`plan` lists the (model, seed, split) jobs of a profile in the order they should run: per
dataset the main table (leave-one-out, seed by seed so that a partial run already has every model
at one seed), then the Recall split, then the sensitivity sweeps (paper Figures 9-11), then the
variants of ours (``settings.ours``); ml-100k before the anime sample. :func:`reproduce` runs the
jobs its state directory does not hold yet (:mod:`recsys.sequential.jobs`), re-runs with twice the
epochs any early-stopping job that ran out of budget (:func:`extend_budget_bound`), and then writes the
tables from whatever has finished (:mod:`recsys.sequential.export`); ``export_only`` writes them
without training, e.g. while a long run is still going in another process (the pages read the
tables through :mod:`recsys.reports.sequential`).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from recsys.paths import cache_dir
from recsys.sequential.experiments import (
    ReproduceSettings,
    budget,
    model_names,
    overrides_for,
    results_dir,
)
from recsys.sequential.export import export_dataset, write_readme
from recsys.sequential.jobs import Finished, Job, JobStore, run_pending
from recsys.sequential.prep import load_dataset
from recsys.sequential.training import window_trained
from recsys.train.loop import TrainConfig, cpu_threads

log = logging.getLogger(__name__)


def default_state_dir(profile: str) -> Path:
    """Where a profile's finished jobs are kept unless ``--state-dir`` says otherwise (git-ignored cache)."""
    return cache_dir("reproduce", profile)


def output_dir(settings: ReproduceSettings) -> Path:
    """The converged (and full) tables go to a sub-folder; the quick ones stay where they always were."""
    base = results_dir()
    return base if settings.profile == "quick" else base / settings.profile


def make_job(dataset: str, name: str, split: str, seed: int, settings: ReproduceSettings,
             overrides: dict | None = None, epochs: int | None = None, sweep: tuple[str, Any] | None = None,
             ours: str | None = None) -> Job:
    budget_epochs, recent, batch_size = budget(name, settings)
    config = TrainConfig(epochs=epochs or budget_epochs, lr=settings.lr, batch_size=batch_size, seed=seed,
                         patience=settings.patience, monitor="ndcg@10", device="auto")
    role = "sweep" if sweep else "ours" if ours else "main"
    return Job(dataset, name, split, seed, config.to_dict(), overrides or overrides_for(name, settings), recent,
               settings.anime_max_users, role=role, sweep=sweep, ours=ours)


def sweep_jobs(dataset: str, settings: ReproduceSettings) -> list[Job]:
    """CL-EPIDTN with one hyper-parameter varied at a time (the others at the profile's), on both splits.

    The point at the profile's own value is the main table's job (same settings, same key), so
    it is not trained twice.
    """
    jobs = []
    for seed in range(settings.sweep_seeds):  # seed by seed: a partial run has whole curves at fewer seeds
        for param, values in settings.sweep.items():
            for value in values:
                overrides = {**overrides_for("cl-epidtn", settings), param: value}
                if param == "embedding_dim":
                    heads = overrides.get("n_heads", 2)
                    overrides["embedding_dim"] = max(int(value) // heads * heads, heads)
                for split in ("loo", "ratio"):
                    jobs.append(make_job(dataset, "cl-epidtn", split, seed, settings, overrides, settings.sweep_epochs,
                                         sweep=(param, value)))
    return jobs


def ours_jobs(dataset: str, settings: ReproduceSettings) -> list[Job]:
    """The variants of ours (``settings.ours``), seed by seed, each on both splits."""
    base = overrides_for("cl-epidtn", settings)
    return [make_job(dataset, "cl-epidtn", split, seed, settings, {**base, **changes}, ours=name)
            for seed in range(settings.seeds) for name, changes in settings.ours.items() for split in ("loo", "ratio")]


def plan(settings: ReproduceSettings, datasets: Sequence[str], models: Sequence[str]) -> dict[str, list[Job]]:
    """Per dataset, its jobs in running order (see the module docstring)."""
    # within a seed the costly window-trained models first, so that parallel workers finish together
    slow = window_trained()
    ordered = sorted(models, key=lambda m: m not in slow)
    planned: dict[str, list[Job]] = {}
    for name in datasets:
        jobs = [make_job(name, m, "loo", seed, settings) for seed in range(settings.seeds) for m in ordered]
        jobs += [make_job(name, m, "ratio", seed, settings) for seed in range(settings.ratio_seeds or settings.seeds)
                 for m in ordered]
        if "cl-epidtn" in models:
            jobs += sweep_jobs(name, settings) + ours_jobs(name, settings)
        planned[name] = jobs
    return planned


def ran_out_of_budget(record: dict[str, Any]) -> bool:
    """A trained model that stopped because its epochs ran out, not because validation stopped improving."""
    return int(record.get("max_epochs") or 0) > 0 and not record.get("stopped_early")


def extend_budget_bound(jobs: Sequence[Job], store: JobStore, factor: int = 2) -> list[Job]:
    """``jobs`` with each finished early-stopping job that ran out of budget replaced by the same job with
    ``factor`` times the epochs (once: the longer job is not extended again).

    Why: a converged table must come from runs that stopped on their own. A run whose validation
    metric had not stalled for ``patience`` epochs when its budget ended is trained again from scratch
    with a larger budget (same seed; the learning-rate schedule spans the new budget, so it is a new
    run, not the old one continued) and reported in its place; its own maximum is what the
    convergence table shows.
    Profiles without early stopping (quick) are left alone: they stop at their budget by design.
    """
    out = []
    for job in jobs:
        record = store.get(job)
        if record is not None and job.train.get("patience") and ran_out_of_budget(record):
            job = dataclasses.replace(job, train={**job.train, "epochs": int(job.train["epochs"]) * factor})
        out.append(job)
    return out


def reproduce(
    datasets: Sequence[str] = ("ml-100k",),
    settings: ReproduceSettings | None = None,
    models: Sequence[str] | None = None,
    out_dir: Path | None = None,
    progress: bool = True,
    command: str | None = None,
    state_dir: Path | None = None,
    export_only: bool = False,
) -> dict[str, Any]:
    """Run the profile's unfinished jobs (unless ``export_only``), then write every table; returns the summaries."""
    settings = settings or ReproduceSettings()
    out_dir = Path(out_dir) if out_dir else output_dir(settings)
    out_dir.mkdir(parents=True, exist_ok=True)
    store = JobStore(Path(state_dir) if state_dir else default_state_dir(settings.profile))
    known = model_names()
    models = [m for m in (models or known) if m in known]
    command = command or f"python -m recsys reproduce cl-epidtn --profile {settings.profile}"
    planned = plan(settings, datasets, models)
    loaded: dict[str, Any] = {}

    def load(name: str):
        if name not in loaded:
            loaded[name] = load_dataset(name, settings.anime_max_users)
        return loaded[name]

    ran = 0
    with cpu_threads(settings.threads or None):
        if not export_only:
            ran = run_pending([job for jobs in planned.values() for job in jobs], store, load, settings.workers,
                              settings.threads, progress)
        extended = {name: extend_budget_bound(jobs, store) for name, jobs in planned.items()}
        longer = [new for name, jobs in planned.items() for old, new in zip(jobs, extended[name], strict=True)
                  if new is not old]
        planned = extended
        if longer and not export_only:
            log.info("%d run(s) ended at their epoch budget: re-running them with twice the epochs", len(longer))
            ran += run_pending(longer, store, load, settings.workers, settings.threads, progress)
    report: dict[str, Any] = {"datasets": {}, "ran": ran, "state_dir": str(store.root)}
    for name, jobs in planned.items():
        finished = Finished.collect(jobs, store)
        if finished.done == 0:
            log.info("%s: no finished job yet in %s", name, store.root)
            continue
        report["datasets"][name] = export_dataset(load(name), finished, settings, models, out_dir, command)
    write_readme(out_dir, settings, command)
    return report
