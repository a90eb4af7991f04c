"""``reproduce cl-epidtn``: every sequential model over several seeds, then the paper's tables.

:func:`reproduce` trains each registry entry of the domain (or a chosen subset) on both
splits and writes under ``docs/results/cl-epidtn/`` (or ``$RECSYS_RESULTS_DIR``): per-seed
runs, mean ± std tables, Welch t-tests on HR@10 of CL-EPIDTN against each other model (the
paper's Table 5), the ablation table and the sensitivity sweeps over L, M and lambda
(Figures 9-11). :func:`load_results` reads them back for the Ablations page.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from recsys.data.sequential import SequentialDataset, SequentialSplit
from recsys.eval.sequential import PROTOCOL, PROTOCOL_NO_TIME
from recsys.eval.tables import frame_to_markdown
from recsys.paths import PROJECT_ROOT
from recsys.sequential.experiments import (
    ABLATION_TEXT,
    ReproduceSettings,
    budget,
    describe_settings,
    model_names,
    overrides_for,
    results_dir,
)
from recsys.sequential.plots import SWEEP_LABELS, plot_sweep
from recsys.sequential.prep import DATASETS, both_splits, load_dataset
from recsys.sequential.stats import ALL_METRICS, pretty_table, summarise, ttests
from recsys.sequential.training import test_metrics, train_model, variants, window_trained
from recsys.train.loop import TrainConfig, cpu_threads

log = logging.getLogger(__name__)


def markdown_table(frame: pd.DataFrame) -> str:
    return frame_to_markdown(frame, digits=4)


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


# ----------------------------------------------------------------------------- jobs
@dataclass
class TrainingJob:
    """One model trained on one split with one seed, then tested: the unit of a reproduction."""

    name: str
    split: str  # loo | ratio
    seed: int
    config: TrainConfig
    overrides: dict[str, Any]
    recent_examples: int | None

    def run(self, dataset: SequentialDataset, splits: dict[str, SequentialSplit]) -> dict[str, Any]:
        split = splits[self.split]
        trained = train_model(self.name, dataset, split, self.config, self.overrides, self.recent_examples)
        return {"metrics": test_metrics(trained, split, int(self.overrides["max_seq_len"])), "seconds": trained.seconds,
                "epochs": trained.epochs, "best_epoch": trained.best_epoch}


def make_job(name: str, split: str, seed: int, settings: ReproduceSettings, overrides: dict | None = None,
             epochs: int | None = None) -> TrainingJob:
    budget_epochs, recent, batch_size = budget(name, settings)
    config = TrainConfig(epochs=epochs or budget_epochs, lr=settings.lr, batch_size=batch_size, seed=seed,
                         patience=settings.patience, monitor="ndcg@10", device="auto")
    return TrainingJob(name, split, seed, config, overrides or overrides_for(name, settings), recent)


_WORKER: dict[str, Any] = {}  # a worker process's dataset and splits, set once by _start_worker


def _start_worker(dataset: SequentialDataset, threads: int | None) -> None:
    if threads:
        torch.set_num_threads(threads)
    _WORKER.update(dataset=dataset, splits=both_splits(dataset))


def _run_in_worker(job: TrainingJob) -> dict[str, Any]:
    return job.run(_WORKER["dataset"], _WORKER["splits"])


def run_jobs(dataset: SequentialDataset, jobs: list[TrainingJob], workers: int, threads: int | None,
             desc: str, progress: bool = True) -> list[dict[str, Any]]:
    """Run ``jobs`` (results in job order), in ``workers`` processes of ``threads`` torch threads each.

    Why processes: the models are small, so one torch thread per job is faster than two
    (see ``cpu_threads``), and a 2-core machine then runs two jobs at once for ~2x the
    throughput. Jobs are independent and seeded, so results do not depend on ``workers``.
    """
    from concurrent.futures import ProcessPoolExecutor, as_completed
    from multiprocessing import get_context

    from tqdm.auto import tqdm

    bar = tqdm(total=len(jobs), desc=desc, disable=not progress, unit="model")
    results: list[dict[str, Any] | None] = [None] * len(jobs)
    if workers <= 1:
        splits = both_splits(dataset)
        for index, job in enumerate(jobs):
            bar.set_postfix_str(f"{job.name} seed {job.seed} {job.split}")
            results[index] = job.run(dataset, splits)
            bar.update(1)
    else:
        # spawn, not fork: a forked child inherits torch's thread pool state, which can deadlock
        with ProcessPoolExecutor(workers, mp_context=get_context("spawn"), initializer=_start_worker,
                                 initargs=(dataset, threads)) as pool:
            futures = {pool.submit(_run_in_worker, job): index for index, job in enumerate(jobs)}
            for future in as_completed(futures):
                results[futures[future]] = future.result()
                job = jobs[futures[future]]
                bar.set_postfix_str(f"{job.name} seed {job.seed} {job.split} done")
                bar.update(1)
    bar.close()
    return results


# ----------------------------------------------------------------------------- reproduce
def reproduce(
    datasets: Sequence[str] = ("ml-100k",),
    settings: ReproduceSettings | None = None,
    models: Sequence[str] | None = None,
    out_dir: Path | None = None,
    progress: bool = True,
    command: str | None = None,
) -> dict[str, Any]:
    """Train every model over the seeds on each dataset and write the tables; returns the summaries."""
    settings = settings or ReproduceSettings()
    out_dir = Path(out_dir) if out_dir else results_dir()
    out_dir.mkdir(parents=True, exist_ok=True)
    known = model_names()
    models = [m for m in (models or known) if m in known]
    command = command or "python -m recsys reproduce cl-epidtn"
    with cpu_threads(settings.threads or None):
        started = time.perf_counter()
        report: dict[str, Any] = {"datasets": {}}
        for dataset_name in datasets:
            t0 = time.perf_counter()
            dataset = load_dataset(dataset_name, settings.anime_max_users)
            report["datasets"][dataset_name] = entry = reproduce_dataset(dataset, settings, models, out_dir, progress)
            entry["seconds"] = seconds = time.perf_counter() - t0
            meta_path = out_dir / f"{dataset_name}_meta.json"
            meta = json.loads(meta_path.read_text())
            meta.update(command=command, wall_seconds=round(seconds, 1), git_commit=_git_commit())
            meta_path.write_text(json.dumps(meta, indent=2))
        report["seconds"] = time.perf_counter() - started
        write_readme(out_dir, settings, command, report["seconds"])
    return report


def reproduce_dataset(dataset: SequentialDataset, settings: ReproduceSettings, models: list[str], out_dir: Path,
                      progress: bool) -> dict:
    ratio_seeds = settings.ratio_seeds or settings.seeds
    # the costly window-trained models first, so that parallel workers finish together
    slow = window_trained()
    ordered = sorted(models, key=lambda m: m not in slow)
    jobs = [make_job(m, "loo", seed, settings) for seed in range(settings.seeds) for m in ordered]
    jobs += [make_job(m, "ratio", seed, settings) for seed in range(ratio_seeds) for m in ordered]
    results = run_jobs(dataset, jobs, settings.workers, settings.threads, dataset.name, progress)
    records: dict[tuple[int, str], dict[str, Any]] = {}
    for job, result in zip(jobs, results, strict=True):
        record = records.setdefault((job.seed, job.name), {"dataset": dataset.name, "model": job.name, "seed": job.seed,
                                                           "seconds": 0.0})
        record.update(result["metrics"])
        record["seconds"] += result["seconds"]
        if job.split == "loo":
            record["epochs"], record["best_epoch"] = result["epochs"], result["best_epoch"]
        log.info("%s %s seed %d %s: %s", dataset.name, job.name, job.seed, job.split, result["metrics"])
    records = dict(sorted(records.items(), key=lambda kv: (kv[0][0], models.index(kv[0][1]))))
    runs = pd.DataFrame(list(records.values()))
    for metric in ALL_METRICS:
        if metric not in runs:
            runs[metric] = float("nan")
    prefix = out_dir / dataset.name
    runs.to_csv(f"{prefix}_runs.csv", index=False)
    summary = summarise(runs)
    summary.to_csv(f"{prefix}_summary.csv", index=False)
    protocol = PROTOCOL + ("" if dataset.has_timestamps else PROTOCOL_NO_TIME)
    tests = ttests(runs) if "cl-epidtn" in models else pd.DataFrame()
    tests.to_csv(f"{prefix}_ttests.csv", index=False)
    ablation = summary[summary["model"].isin(variants())].copy()
    if not ablation.empty:
        ablation["removed"] = ablation["model"].map(ABLATION_TEXT)
    ablation.to_csv(f"{prefix}_ablation.csv", index=False)

    sweeps = run_sweeps(dataset, settings, out_dir, progress) if "cl-epidtn" in models else pd.DataFrame()
    meta = {
        "dataset": dataset.name, "n_users": dataset.n_users, "n_items": dataset.n_items,
        "n_interactions": int(sum(len(s) for s in dataset.sequences.values())),
        "has_timestamps": dataset.has_timestamps, "protocol": protocol, "settings": describe_settings(settings),
        "quick": settings.quick, "models": models, "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }
    (out_dir / f"{dataset.name}_meta.json").write_text(json.dumps(meta, indent=2))
    md = [f"# CL-EPIDTN reproduction: {dataset.name}", "", f"**Protocol.** {protocol}", "", f"**Settings.** {meta['settings']}", "",
          f"{meta['n_users']} users, {meta['n_items']} items, {meta['n_interactions']} interactions.", "",
          "## Main table (mean ± std over seeds)", "", markdown_table(pretty_table(summary)), ""]
    if not tests.empty:
        md += ["## Welch t-tests on HR@10, CL-EPIDTN vs each model (paper Table 5)", "",
               markdown_table(tests.drop(columns=["model"])), ""]
    if not ablation.empty:
        md += ["## Ablation", "", markdown_table(pretty_table(ablation).assign(removed=list(ablation["removed"]))), ""]
    if not sweeps.empty:
        md += ["## Sensitivity (CL-EPIDTN, leave-one-out validation-selected, test HR@10/NDCG@10)", ""]
        for param in sweeps["param"].unique():
            md += [f"![{param}]({dataset.name}_sweep_{param}.png)", ""]
        table = sweeps.groupby(["param", "value"])[["hit@10", "ndcg@10"]].mean().reset_index()
        md += [markdown_table(table), ""]
    md += ["Paper (different data, reference only): HR@10 0.0351 / Recall@50 0.1123 on Amazon Books; 0.0901 / 0.1599 on Tmall.", ""]
    (out_dir / f"{dataset.name}.md").write_text("\n".join(md))
    return {"summary": summary, "ttests": tests, "sweeps": sweeps}


def run_sweeps(dataset, settings: ReproduceSettings, out_dir: Path, progress: bool = True) -> pd.DataFrame:
    """CL-EPIDTN with one hyper-parameter varied at a time (others at the run's settings), leave-one-out."""
    jobs, rows = [], []
    for param, values in settings.sweep.items():
        for value in values:
            for seed in range(settings.sweep_seeds):
                overrides = {**overrides_for("cl-epidtn", settings), param: value}
                if param == "embedding_dim":
                    heads = overrides.get("n_heads", 2)
                    overrides["embedding_dim"] = max(int(value) // heads * heads, heads)
                jobs.append(make_job("cl-epidtn", "loo", seed, settings, overrides, settings.sweep_epochs))
                rows.append({"param": param, "value": value, "seed": seed})
    results = run_jobs(dataset, jobs, settings.workers, settings.threads, f"{dataset.name} sweeps", progress)
    for row, result in zip(rows, results, strict=True):
        row.update(result["metrics"], seconds=result["seconds"])
    frame = pd.DataFrame(rows)
    if frame.empty:
        return frame
    frame.to_csv(out_dir / f"{dataset.name}_sweeps.csv", index=False)
    for param in frame["param"].unique():
        plot_sweep(frame[frame["param"] == param], param, out_dir / f"{dataset.name}_sweep_{param}.png",
                   f"{dataset.name}: {SWEEP_LABELS.get(param, param)}")
    return frame


def write_readme(out_dir: Path, settings: ReproduceSettings, command: str, wall: float) -> None:
    lines = [
        "# CL-EPIDTN reproduction results", "",
        "Written by `python -m recsys reproduce cl-epidtn`; the Ablations page reads these files.", "",
        f"- command: `{command}`",
        f"- git commit: {_git_commit() or 'absent (no commit yet)'}",
        f"- date (UTC): {dt.datetime.now(dt.timezone.utc).isoformat(timespec='seconds')}",
        f"- wall time: {wall:.0f} s on {torch.get_num_threads()} CPU thread(s) of {os.cpu_count()} cores "
        f"(1-minute load average at the end: {os.getloadavg()[0]:.1f}), python {sys.version.split()[0]}, torch {torch.__version__}",
        f"- settings: {describe_settings(settings)}", "",
        f"**Protocol.** {PROTOCOL}{PROTOCOL_NO_TIME}", "",
        "Per dataset: `<dataset>.md` (all tables), `<dataset>_runs.csv` (one row per model and seed), "
        "`<dataset>_summary.csv` (mean/std), `<dataset>_ttests.csv` (Welch t-tests on HR@10, paper Table 5), "
        "`<dataset>_ablation.csv`, `<dataset>_sweeps.csv` + `<dataset>_sweep_<param>.png` (paper Figures 9-11).", "",
        "The paper's numbers (HR@10 0.0351 / Recall@50 0.1123 on Amazon Books, 0.0901 / 0.1599 on Tmall) are on "
        "other data and are shown for reference only.", "",
    ]
    lines += ["## Runs", ""]
    for name in DATASETS:  # every dataset with results, whichever invocation wrote it
        meta_path = out_dir / f"{name}_meta.json"
        if (out_dir / f"{name}.md").exists() and meta_path.exists():
            meta = json.loads(meta_path.read_text())
            lines += [f"- [{name}]({name}.md): `{meta.get('command', '?')}`, {meta.get('wall_seconds', '?')} s, "
                      f"{meta.get('date', '?')}, commit {meta.get('git_commit') or 'absent'}"]
    extra = out_dir / "recbole_sasrec.md"
    if extra.exists():
        lines += ["- [RecBole SASRec peer check](recbole_sasrec.md)"]
    (out_dir / "README.md").write_text("\n".join(lines) + "\n")


def load_results(out_dir: Path | None = None) -> dict[str, dict[str, Any]]:
    """What the page shows: per dataset the summary, runs, t-tests, sweeps and meta that exist."""
    out_dir = Path(out_dir) if out_dir else results_dir()
    found: dict[str, dict[str, Any]] = {}
    for name in DATASETS:
        summary = out_dir / f"{name}_summary.csv"
        if not summary.exists():
            continue
        entry: dict[str, Any] = {"summary": pd.read_csv(summary)}
        for key in ("runs", "ttests", "sweeps", "ablation"):
            path = out_dir / f"{name}_{key}.csv"
            if path.exists() and path.stat().st_size > 1:
                try:
                    entry[key] = pd.read_csv(path)
                except pd.errors.EmptyDataError:
                    pass
        meta = out_dir / f"{name}_meta.json"
        entry["meta"] = json.loads(meta.read_text()) if meta.exists() else {}
        entry["plots"] = sorted(str(p) for p in out_dir.glob(f"{name}_sweep_*.png"))
        found[name] = entry
    return found
