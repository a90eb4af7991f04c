"""Sequential-recommendation glue: CL-EPIDTN, its ablations and baselines on ml-100k and the anime sample.

Used by the CLI (``train``, ``evaluate ml-100k``, ``reproduce cl-epidtn``) and by the
Ablations page. Pieces:

* data: :mod:`recsys.data.movielens`, :mod:`recsys.data.anime_sequences`; splits and
  batches: :mod:`recsys.data.sequential`;
* protocol: :mod:`recsys.eval.sequential` (full ranking, history masked; see ``PROTOCOL``);
* models: CL-EPIDTN (:mod:`recsys.models.cl_epidtn`) and its three ablations, SASRec, MIND,
  DSSM, YouTube DNN, WALS, most-popular — all built as ``Model(config, dataset)``.

:func:`reproduce` trains every model over several seeds, then writes under
``docs/results/cl-epidtn/`` (or ``$RECSYS_RESULTS_DIR``): per-seed runs, mean ± std tables,
Welch t-tests on HR@10 of CL-EPIDTN against each other model (the paper's Table 5), the
ablation table and the sensitivity sweeps over L, M and lambda (Figures 9-11).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import math
import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from recsys.data.sequential import (
    SequentialDataset,
    SequentialSplit,
    TrainingExamples,
    leave_one_out,
    ratio_split,
    training_examples,
    training_windows,
)
from recsys.eval.sequential import LOO_METRICS, PROTOCOL, PROTOCOL_NO_TIME, RATIO_METRICS, evaluate_split
from recsys.paths import PROJECT_ROOT
from recsys.train.loop import Callback, TrainConfig, cpu_threads, fit
from recsys.train.recipes import Recipe, RecipeContext, register

log = logging.getLogger(__name__)

RESULTS_ENV = "RECSYS_RESULTS_DIR"
DATASETS = ("ml-100k", "anime")
VARIANTS = ("cl-epidtn", "epidtn", "cltd", "cl-dssm")  # the model and its three ablations
WINDOW_TRAINED = (*VARIANTS, "sasrec")  # causal user towers: trained on windows of every prefix
WINDOW_BATCH_SIZE = 64  # their default batch, in windows (each holds up to max_seq_len prefixes)
PAPER = {  # the paper's own numbers (Table 3/4), different data: for reference only
    "Amazon Books": {"hit@10": 0.0351, "recall@50": 0.1123},
    "Tmall": {"hit@10": 0.0901, "recall@50": 0.1599},
}
ABLATION_TEXT = {
    "cl-epidtn": "full model",
    "epidtn": "no contrastive tasks",
    "cltd": "no augmented vectors (no mimic loss)",
    "cl-dssm": "no Transformer (mean-pooled history)",
}


def results_dir() -> Path:
    """Where reproduction tables go: ``$RECSYS_RESULTS_DIR`` or ``docs/results/cl-epidtn``."""
    return Path(os.environ.get(RESULTS_ENV, PROJECT_ROOT / "docs" / "results" / "cl-epidtn"))


# ----------------------------------------------------------------------------- models
@dataclass
class ModelSpec:
    name: str
    display: str
    kind: str  # "neural" (trained by fit) | "fitted" (closed form / counting)
    paper: str
    build: Callable[[SequentialDataset, dict[str, Any]], Any]


def _cl_epidtn(variant: str):
    def build(dataset, overrides):
        from recsys.models.cl_epidtn import CLEPIDTN, CLEPIDTNConfig

        return CLEPIDTN(CLEPIDTNConfig.variant(variant, **overrides), dataset)

    return build


def _simple(module: str, cls: str, config_cls: str):
    def build(dataset, overrides):
        import importlib

        mod = importlib.import_module(module)
        config_type = getattr(mod, config_cls)
        known = {f.name for f in dataclasses.fields(config_type)}
        return getattr(mod, cls)(config_type(**{k: v for k, v in overrides.items() if k in known}), dataset)

    return build


MODELS: dict[str, ModelSpec] = {
    "cl-epidtn": ModelSpec("cl-epidtn", "CL-EPIDTN", "neural", "Yang, Wang & Li, PLOS ONE 2025", _cl_epidtn("cl-epidtn")),
    "epidtn": ModelSpec("epidtn", "EPIDTN (no CL)", "neural", "ablation", _cl_epidtn("epidtn")),
    "cltd": ModelSpec("cltd", "CLTD (no aug. vectors)", "neural", "ablation", _cl_epidtn("cltd")),
    "cl-dssm": ModelSpec("cl-dssm", "CL-DSSM (no Transformer)", "neural", "ablation", _cl_epidtn("cl-dssm")),
    "sasrec": ModelSpec("sasrec", "SASRec", "neural", "Kang & McAuley, ICDM 2018",
                        _simple("recsys.models.sasrec", "SASRec", "SASRecConfig")),
    "mind": ModelSpec("mind", "MIND", "neural", "Li et al., CIKM 2019", _simple("recsys.models.mind", "MIND", "MINDConfig")),
    "dssm": ModelSpec("dssm", "DSSM", "neural", "Huang et al., CIKM 2013", _simple("recsys.models.dssm", "DSSM", "DSSMConfig")),
    "youtube-dnn": ModelSpec("youtube-dnn", "YouTube DNN", "neural", "Covington et al., RecSys 2016",
                             _simple("recsys.models.youtube_dnn", "YouTubeDNN", "YouTubeDNNConfig")),
    "wals": ModelSpec("wals", "WALS", "fitted", "Hu, Koren & Volinsky, ICDM 2008",
                      _simple("recsys.models.wals", "WALS", "WALSConfig")),
    "most-popular": ModelSpec("most-popular", "Most popular", "fitted", "popularity baseline",
                              _simple("recsys.models.most_popular", "MostPopular", "MostPopularConfig")),
}




def load_dataset(name: str, anime_max_users: int | None = 1000) -> SequentialDataset:
    if name == "ml-100k":
        from recsys.data.movielens import load_ml100k

        return load_ml100k()
    if name == "anime":
        from recsys.data.anime_sequences import load_anime_sequences

        return load_anime_sequences(max_users=anime_max_users)
    raise ValueError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")


def make_split(dataset: SequentialDataset, kind: str) -> SequentialSplit:
    if kind == "loo":
        return leave_one_out(dataset)
    if kind == "ratio":
        return ratio_split(dataset, 0.2)
    raise ValueError(f"unknown split {kind!r}; use loo or ratio")


def recent_only(sequences: dict[int, list[int]], max_len: int, recent: int | None) -> TrainingExamples:
    """Training examples; with ``recent`` only each user's ``recent`` latest prefixes (quick mode)."""
    if not recent:
        return training_examples(sequences, max_len)
    # the last `recent` targets of a sequence are its last `recent` prefixes
    cut = {u: s[-(recent + max_len):] for u, s in sequences.items()}
    examples = training_examples(cut, max_len)
    keep, start = [], 0
    for u in sorted(cut):
        n = max(len(cut[u]) - 1, 0)
        keep.extend(range(start + max(n - recent, 0), start + n))
        start += n
    index = torch.tensor(keep, dtype=torch.long)
    return TrainingExamples(examples.users[index], examples.item_seq[index], examples.item_seq_len[index], examples.items[index])


@dataclass
class TrainedModel:
    name: str
    model: Any
    seconds: float
    epochs: int
    best_epoch: int | None
    history: list[dict[str, float]] = field(default_factory=list)


def train_model(
    name: str,
    dataset: SequentialDataset,
    split: SequentialSplit,
    train: TrainConfig,
    overrides: dict[str, Any] | None = None,
    recent_examples: int | None = None,
    callbacks: Sequence[Callback] = (),
    windows: bool | None = None,
) -> TrainedModel:
    """Build ``name`` on the training part of ``split`` and train/fit it.

    The model is built on a copy of ``dataset`` whose sequences are ``split.train`` so
    that nothing it computes from sequences at construction (CL-EPIDTN's activity buckets)
    can see validation or test items. Validation NDCG@10 selects the best epoch.

    Training data: the causal models (SASRec and the CL-EPIDTN family, ``WINDOW_TRAINED``)
    always train on every prefix, packed in windows of ``max_seq_len`` inputs
    (``train.batch_size`` counts windows); the other neural models get one row per prefix,
    only each user's ``recent_examples`` latest when given. ``windows=False`` gives a causal
    model one row per prefix too (the RecBole peer check trains SASRec as RecBole does).
    """
    if name not in MODELS:
        raise KeyError(f"unknown model {name!r}; choose one of {', '.join(MODELS)}")
    spec = MODELS[name]
    overrides = dict(overrides or {})
    max_len = int(overrides.setdefault("max_seq_len", 50))
    train_view = dataclasses.replace(dataset, sequences=split.train)
    torch.manual_seed(train.seed)
    np.random.seed(train.seed)
    if spec.kind == "fitted":
        if name == "wals":
            overrides.setdefault("seed", train.seed)
        model = spec.build(train_view, overrides)
        started = time.perf_counter()
        model.fit(split.train)
        return TrainedModel(name, model, time.perf_counter() - started, 0, None)
    model = spec.build(train_view, overrides)
    if windows is None:
        windows = name in WINDOW_TRAINED
    if windows:  # causal towers train on windows: every prefix of a window in one pass
        examples = training_windows(split.train, max_len)
        log.info("%s on %s/%s: %d windows holding %d training targets", name, dataset.name, split.name,
                 len(examples), examples.n_targets)
    else:
        examples = recent_only(split.train, max_len, recent_examples)
        log.info("%s on %s/%s: %d training examples", name, dataset.name, split.name, len(examples))

    def evaluate(m):
        return evaluate_split(m, split, "valid", ("hit@10", "ndcg@10"), max_len=max_len)

    train = dataclasses.replace(train, monitor=train.monitor or "ndcg@10")
    result = fit(model, lambda epoch: examples.batches(train.batch_size, train.seed, epoch), train, evaluate, callbacks)
    return TrainedModel(name, model, result.seconds, len(result.history), result.best_epoch, result.history)


def test_metrics(trained: TrainedModel, split: SequentialSplit, max_len: int) -> dict[str, float]:
    metrics = LOO_METRICS if split.name == "loo" else RATIO_METRICS
    return evaluate_split(trained.model, split, "test", metrics, max_len=max_len)


# ----------------------------------------------------------------------------- settings
@dataclass
class ReproduceSettings:
    seeds: int = 5
    epochs: int = 30
    patience: int | None = 5
    batch_size: int = 256
    lr: float = 1e-3
    max_seq_len: int = 50
    recent_examples: int | None = None  # None: every prefix of every training sequence
    ratio_seeds: int | None = None  # seeds for the Recall (ratio) split; None: all
    anime_max_users: int | None = 5000
    cl_overrides: dict[str, Any] = field(default_factory=dict)  # e.g. smaller CL-EPIDTN in quick mode
    cl_epochs: int | None = None  # CL-EPIDTN family's epoch budget; None: ``epochs``
    window_batch_size: int = WINDOW_BATCH_SIZE  # SASRec and the CL-EPIDTN family: windows per batch
    threads: int | None = None  # torch CPU threads per training process; None: torch's default
    workers: int = 1  # training processes running (model, seed, split) jobs side by side
    sweep: dict[str, list] = field(default_factory=lambda: {
        "n_layers": [1, 2, 3, 4, 5, 6], "embedding_dim": [32, 64, 128, 256], "lambda_cl": [0.0, 0.01, 0.1, 0.5, 1.0, 2.0]})
    sweep_seeds: int = 1
    sweep_epochs: int | None = None
    quick: bool = False


# Quick: the baselines are cheap (one ml-100k epoch of 10 prefixes/user: SASRec ~5 s, DSSM/YouTube DNN/MIND ~1 s
# on one thread). The CL-EPIDTN family trains on every prefix in causal windows; at 64-d/2 layers with the sequence
# task on 16 windows per batch an ml-100k epoch takes ~25-45 s (CL-EPIDTN, one thread; the sequence task's three
# extra passes on all 64 windows would cost ~1.5x more). One thread is faster than two on the 2-core dev machine.
QUICK = ReproduceSettings(
    seeds=2, epochs=4, patience=None, batch_size=128, lr=3e-3, max_seq_len=20, recent_examples=10, ratio_seeds=1,
    anime_max_users=300, cl_overrides={"embedding_dim": 64, "n_layers": 2, "seq_cl_max_users": 16}, cl_epochs=2,
    threads=1, workers=2,
    sweep={"n_layers": [1, 3], "embedding_dim": [32, 64], "lambda_cl": [0.1, 1.0]}, sweep_seeds=1, sweep_epochs=1, quick=True,
)


def _budget(name: str, settings: ReproduceSettings) -> tuple[int, int | None, int]:
    """(epochs, recent_examples, batch_size) of model ``name``.

    The window-trained models see every prefix (see ``train_model``), so ``recent_examples``
    does not apply to them and their batches count windows; the CL-EPIDTN family may also
    have its own epoch budget.
    """
    if name in VARIANTS:
        return settings.cl_epochs or settings.epochs, None, settings.window_batch_size
    if name in WINDOW_TRAINED:
        return settings.epochs, None, settings.window_batch_size
    return settings.epochs, settings.recent_examples, settings.batch_size


def _examples_text(recent: int | None) -> str:
    return "all prefixes of every training sequence" if not recent else f"each user's {recent} most recent prefixes"


def describe_settings(s: ReproduceSettings) -> str:
    cl = ", ".join(f"{k}={v}" for k, v in s.cl_overrides.items()) or "paper defaults (M=128, L=5, lambda=1)"
    cl_epochs = _budget(VARIANTS[0], s)[0]
    return (
        f"{'QUICK' if s.quick else 'FULL'}: {s.seeds} seeds, up to {s.epochs} epochs"
        f"{f' (patience {s.patience})' if s.patience else ''}, batch {s.batch_size}, lr {s.lr}, max_seq_len {s.max_seq_len}, "
        f"SASRec and the CL-EPIDTN family train on every prefix (causal windows, {s.window_batch_size} windows of up to "
        f"{s.max_seq_len} prefixes per batch), DSSM, YouTube DNN and MIND on {_examples_text(s.recent_examples)}; "
        f"Recall split on {s.ratio_seeds or s.seeds} seed(s); CL-EPIDTN family: {cl}, up to {cl_epochs} epochs; "
        f"sweeps {s.sweep} on {s.sweep_seeds} seed(s), {s.sweep_epochs or cl_epochs} epoch(s); "
        f"{s.workers} training process(es){f' of {s.threads} CPU thread(s)' if s.threads else ''}; "
        f"anime: first {s.anime_max_users} users of the sample."
    )


# ----------------------------------------------------------------------------- tables
def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def markdown_table(frame: pd.DataFrame) -> str:
    """A GitHub Markdown table (no tabulate dependency)."""
    columns = [str(c) for c in frame.columns]
    lines = ["| " + " | ".join(columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    for _, row in frame.iterrows():
        cells = []
        for value in row:
            cells.append(f"{value:.4f}" if isinstance(value, float) and not math.isnan(value) else ("–" if isinstance(value, float) else str(value)))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


ALL_METRICS = [*LOO_METRICS, *RATIO_METRICS]
METRIC_LABELS = {"hit@10": "HR@10", "hit@50": "HR@50", "ndcg@10": "NDCG@10", "recall@10": "Recall@10", "recall@50": "Recall@50"}


def summarise(runs: pd.DataFrame) -> pd.DataFrame:
    """Mean and std over seeds per model (``<metric>_mean``, ``<metric>_std``, ``<metric>_n``)."""
    rows = []
    for model, group in runs.groupby("model", sort=False):
        row = {"model": model, "display": MODELS[model].display if model in MODELS else model}
        for metric in ALL_METRICS:
            values = group[metric].dropna() if metric in group else pd.Series(dtype=float)
            row[f"{metric}_mean"] = float(values.mean()) if len(values) else float("nan")
            row[f"{metric}_std"] = float(values.std(ddof=1)) if len(values) > 1 else float("nan")  # NaN: one seed
            row[f"{metric}_n"] = int(len(values))
        row["train_seconds"] = float(group["seconds"].mean())
        rows.append(row)
    return pd.DataFrame(rows)


def pretty_table(summary: pd.DataFrame) -> pd.DataFrame:
    out = pd.DataFrame({"Model": summary["display"]})
    for metric in ALL_METRICS:
        out[METRIC_LABELS[metric]] = [
            "–" if math.isnan(m) else (f"{m:.4f} (1 seed)" if math.isnan(s) else f"{m:.4f} ± {s:.4f}")
            for m, s in zip(summary[f"{metric}_mean"], summary[f"{metric}_std"], strict=True)
        ]
    out["train s"] = [f"{s:.0f}" for s in summary["train_seconds"]]
    return out


def ttests(runs: pd.DataFrame, reference: str = "cl-epidtn", metric: str = "hit@10") -> pd.DataFrame:
    """Welch two-sample t-tests (``scipy.stats.ttest_ind(equal_var=False)``) over seeds, as the paper's Table 5."""
    from scipy.stats import ttest_ind

    rows = []
    ref = runs.loc[runs["model"] == reference, metric].dropna().to_numpy()
    for model, group in runs.groupby("model", sort=False):
        if model == reference:
            continue
        other = group[metric].dropna().to_numpy()
        if len(ref) >= 2 and len(other) >= 2:
            stat, p = ttest_ind(ref, other, equal_var=False)
        else:
            stat, p = float("nan"), float("nan")
        rows.append({
            "baseline": MODELS[model].display if model in MODELS else model, "model": model,
            f"{reference} mean": float(ref.mean()) if len(ref) else float("nan"),
            "baseline mean": float(other.mean()) if len(other) else float("nan"),
            "t": float(stat), "p": float(p), "n_seeds": f"{len(ref)} vs {len(other)}",
            "significant (p<0.05)": "yes" if p < 0.05 else ("no" if not math.isnan(p) else "n/a"),
        })
    return pd.DataFrame(rows)


def _plot_sweep(frame: pd.DataFrame, param: str, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.5, 3.2))
    grouped = frame.groupby("value")[["hit@10", "ndcg@10"]].agg(["mean", "std"]).sort_index()
    xs = grouped.index.to_numpy(dtype=float)
    for metric in ("hit@10", "ndcg@10"):
        ax.errorbar(xs, grouped[(metric, "mean")], yerr=grouped[(metric, "std")].fillna(0), marker="o", capsize=3, label=METRIC_LABELS[metric])
    ax.set_xlabel(param)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


SWEEP_LABELS = {"n_layers": "Transformer layers L (Fig. 9)", "embedding_dim": "embedding size M (Fig. 10)", "lambda_cl": "lambda (Fig. 11)"}


# ----------------------------------------------------------------------------- reproduce
def reproduce(
    datasets: Sequence[str] = ("ml-100k",),
    settings: ReproduceSettings | None = None,
    models: Sequence[str] | None = None,
    out_dir: Path | None = None,
    progress: bool = True,
    command: str | None = None,
) -> dict[str, Any]:
    """Train every model over the seeds on each dataset and write the tables; returns file paths and summaries."""
    settings = settings or ReproduceSettings()
    out_dir = Path(out_dir) if out_dir else results_dir()
    out_dir.mkdir(parents=True, exist_ok=True)
    models = [m for m in (models or list(MODELS)) if m in MODELS]
    with cpu_threads(settings.threads or None):
        return _reproduce(datasets, settings, models, out_dir, progress, command)


def _reproduce(datasets, settings: ReproduceSettings, models: list[str], out_dir: Path, progress: bool, command: str | None) -> dict[str, Any]:
    started = time.perf_counter()
    report: dict[str, Any] = {"datasets": {}}
    for dataset_name in datasets:
        t0 = time.perf_counter()
        dataset = load_dataset(dataset_name, settings.anime_max_users)
        report["datasets"][dataset_name] = _reproduce_dataset(dataset, settings, models, out_dir, progress)
        report["datasets"][dataset_name]["seconds"] = seconds = time.perf_counter() - t0
        meta_path = out_dir / f"{dataset_name}_meta.json"
        meta = json.loads(meta_path.read_text())
        meta.update(command=command or "python -m recsys reproduce cl-epidtn", wall_seconds=round(seconds, 1), git_commit=_git_commit())
        meta_path.write_text(json.dumps(meta, indent=2))
    wall = time.perf_counter() - started
    write_readme(out_dir, settings, command or "python -m recsys reproduce cl-epidtn", wall, list(datasets))
    report["seconds"] = wall
    return report


def _train_config(settings: ReproduceSettings, seed: int, epochs: int, batch_size: int) -> TrainConfig:
    return TrainConfig(
        epochs=epochs, lr=settings.lr, batch_size=batch_size, seed=seed,
        patience=settings.patience, monitor="ndcg@10", device="auto",
    )


def _overrides(name: str, settings: ReproduceSettings) -> dict[str, Any]:
    overrides = {"max_seq_len": settings.max_seq_len}
    if name in VARIANTS:
        overrides.update(settings.cl_overrides)
    return overrides


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


_WORKER: dict[str, Any] = {}  # a worker process's dataset and splits, set once by _start_worker


def _both_splits(dataset: SequentialDataset) -> dict[str, SequentialSplit]:
    return {kind: make_split(dataset, kind) for kind in ("loo", "ratio")}


def _start_worker(dataset: SequentialDataset, threads: int | None) -> None:
    if threads:
        torch.set_num_threads(threads)
    _WORKER.update(dataset=dataset, splits=_both_splits(dataset))


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
        splits = _both_splits(dataset)
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


def _job(name: str, split: str, seed: int, settings: ReproduceSettings, overrides: dict | None = None,
         epochs: int | None = None) -> TrainingJob:
    budget_epochs, recent, batch_size = _budget(name, settings)
    return TrainingJob(name, split, seed, _train_config(settings, seed, epochs or budget_epochs, batch_size),
                       overrides or _overrides(name, settings), recent)


def _reproduce_dataset(dataset: SequentialDataset, settings: ReproduceSettings, models: list[str], out_dir: Path, progress: bool) -> dict:
    ratio_seeds = settings.ratio_seeds or settings.seeds
    # the costly window-trained models first, so that parallel workers finish together
    ordered = sorted(models, key=lambda m: m not in WINDOW_TRAINED)
    jobs = [_job(m, "loo", seed, settings) for seed in range(settings.seeds) for m in ordered]
    jobs += [_job(m, "ratio", seed, settings) for seed in range(ratio_seeds) for m in ordered]
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
    ablation = summary[summary["model"].isin(VARIANTS)].copy()
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
        md += ["## Welch t-tests on HR@10, CL-EPIDTN vs each model (paper Table 5)", "", markdown_table(tests.drop(columns=["model"])), ""]
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
                overrides = {**_overrides("cl-epidtn", settings), param: value}
                if param == "embedding_dim":
                    heads = overrides.get("n_heads", 2)
                    overrides["embedding_dim"] = max(int(value) // heads * heads, heads)
                jobs.append(_job("cl-epidtn", "loo", seed, settings, overrides, settings.sweep_epochs))
                rows.append({"param": param, "value": value, "seed": seed})
    results = run_jobs(dataset, jobs, settings.workers, settings.threads, f"{dataset.name} sweeps", progress)
    for row, result in zip(rows, results, strict=True):
        row.update(result["metrics"], seconds=result["seconds"])
    frame = pd.DataFrame(rows)
    if frame.empty:
        return frame
    frame.to_csv(out_dir / f"{dataset.name}_sweeps.csv", index=False)
    for param in frame["param"].unique():
        _plot_sweep(frame[frame["param"] == param], param, out_dir / f"{dataset.name}_sweep_{param}.png",
                    f"{dataset.name}: {SWEEP_LABELS.get(param, param)}")
    return frame


def write_readme(out_dir: Path, settings: ReproduceSettings, command: str, wall: float, datasets: list[str]) -> None:
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


# ----------------------------------------------------------------------------- recipes
RECIPE_OPTIONS = {"dataset": "ml-100k", "split": "loo", "max_seq_len": 50, "recent_examples": 10, "anime_max_users": 1000}


def save_checkpoint(path: Path, trained: TrainedModel, dataset: str, options: dict[str, Any]) -> None:
    from recsys.train.runs import atomic_torch_save

    atomic_torch_save(
        {"model": trained.name, "config": dataclasses.asdict(trained.model.config), "dataset": dataset,
         "options": options, "state_dict": trained.model.state_dict()},
        path,
    )


def load_checkpoint(path: Path, dataset: SequentialDataset, split: SequentialSplit):
    """Rebuild a model saved by a recipe run (on the same dataset and split)."""
    payload = torch.load(path, map_location="cpu", weights_only=False)
    spec = MODELS[payload["model"]]
    config = dict(payload["config"])
    for key in ("use_contrastive", "use_augmented", "use_transformer"):
        config.pop(key, None)  # the variant name sets these
    model = spec.build(dataclasses.replace(dataset, sequences=split.train), config)
    model.load_state_dict(payload["state_dict"])
    model.eval()
    return model


def _recipe_run(name: str):
    def run(context: RecipeContext) -> dict[str, Any]:
        options = {**RECIPE_OPTIONS, **context.options}
        dataset = load_dataset(options["dataset"], options.get("anime_max_users"))
        split = make_split(dataset, options["split"])
        overrides = {k: v for k, v in options.items() if k not in RECIPE_OPTIONS}
        overrides["max_seq_len"] = int(options["max_seq_len"])
        trained = train_model(name, dataset, split, context.train, overrides, options.get("recent_examples") or None, context.callbacks)
        metrics = test_metrics(trained, split, int(options["max_seq_len"]))
        if context.checkpoint_path is not None:
            save_checkpoint(context.checkpoint_path, trained, dataset.name, options)
        return {"dataset": dataset.name, "split": split.name, **{f"test_{k}": v for k, v in metrics.items()},
                "best_epoch": trained.best_epoch, "seconds": round(trained.seconds, 1)}

    return run


def _register_recipes() -> None:
    for name, spec in MODELS.items():
        if spec.kind != "neural":
            continue
        batch = WINDOW_BATCH_SIZE if name in WINDOW_TRAINED else 256
        register(Recipe(
            name=name,
            domain="sequential",
            summary=f"{spec.display} ({spec.paper}) on ml-100k/anime, leave-one-out full ranking",
            defaults=TrainConfig(epochs=2, lr=1e-3, batch_size=batch, monitor="ndcg@10"),
            full=TrainConfig(epochs=30, lr=1e-3, batch_size=batch, patience=5, monitor="ndcg@10"),
            run=_recipe_run(name),
            options=dict(RECIPE_OPTIONS),
        ))


_register_recipes()


# ----------------------------------------------------------------------------- CLI
def evaluate_ml100k(models: Sequence[str], epochs: int, seed: int = 0, recent_examples: int | None = 10, max_seq_len: int = 50) -> pd.DataFrame:
    """One seed of each model on ml-100k (leave-one-out + ratio split); uses an active run's checkpoint when there is one."""
    from recsys.train.runs import RunRegistry

    dataset = load_dataset("ml-100k")
    loo, ratio = make_split(dataset, "loo"), make_split(dataset, "ratio")
    registry = RunRegistry()
    rows = []
    for name in models:
        row = {"Model": MODELS[name].display}
        run = registry.active_run(name)
        if run is not None and run.config.get("options", {}).get("dataset", "ml-100k") == "ml-100k" and run.config.get("options", {}).get("split", "loo") == "loo":
            model = load_checkpoint(run.checkpoint_path, dataset, loo)
            max_len = int(run.config["options"].get("max_seq_len", max_seq_len))
            row.update(evaluate_split(model, loo, "test", LOO_METRICS, max_len=max_len))
            row["source"] = f"run {run.id}"
        else:
            config = TrainConfig(epochs=epochs, seed=seed, monitor="ndcg@10",
                                 batch_size=WINDOW_BATCH_SIZE if name in WINDOW_TRAINED else 256)
            overrides = {"max_seq_len": max_seq_len}
            trained = train_model(name, dataset, loo, config, overrides, recent_examples)
            row.update(test_metrics(trained, loo, max_seq_len))
            trained_r = train_model(name, dataset, ratio, config, overrides, recent_examples)
            row.update(test_metrics(trained_r, ratio, max_seq_len))
            row["source"] = "fitted now" if MODELS[name].kind == "fitted" else f"trained now ({epochs} epochs, seed {seed})"
        rows.append(row)
    return pd.DataFrame(rows)


def _cmd_evaluate(args) -> int:
    models = args.models.split(",") if args.models else list(MODELS)
    unknown = [m for m in models if m not in MODELS]
    if unknown:
        raise ValueError(f"unknown model(s) {unknown}; choose from {', '.join(MODELS)}")
    table = evaluate_ml100k(models, args.epochs, args.seed, args.recent_examples or None, args.max_seq_len)
    print(f"Protocol: {PROTOCOL}")
    print(markdown_table(table.rename(columns=METRIC_LABELS)))
    return 0


def _cmd_reproduce(args) -> int:
    settings = dataclasses.replace(QUICK) if args.quick else ReproduceSettings()
    if args.seeds:
        settings.seeds = args.seeds
    if args.epochs:
        settings.epochs, settings.cl_epochs = args.epochs, None
    if args.workers:
        settings.workers = args.workers
    datasets = list(DATASETS) if args.dataset == "all" else [args.dataset]
    models = args.models.split(",") if args.models else None
    command = "python -m recsys " + " ".join(sys.argv[1:]) if sys.argv and sys.argv[0].endswith(("recsys", "__main__.py")) else None
    report = reproduce(datasets, settings, models, Path(args.out) if args.out else None, progress=True,
                       command=command or f"python -m recsys reproduce cl-epidtn{' --quick' if args.quick else ''} --dataset {args.dataset}")
    out = Path(args.out) if args.out else results_dir()
    for name, entry in report["datasets"].items():
        print(f"\n## {name} ({entry['seconds']:.0f} s)")
        print(markdown_table(pretty_table(entry["summary"])))
    print(f"\nwrote {out} in {report['seconds']:.0f} s")
    return 0


def register_cli(verbs: dict) -> None:
    evaluate = verbs["evaluate"].add_parser("ml-100k", help="HR@10/HR@50/NDCG@10 and Recall@10/@50 of the sequential models on ml-100k")
    evaluate.add_argument("--models", help=f"comma-separated, default all of: {', '.join(MODELS)}")
    evaluate.add_argument("--epochs", type=int, default=2)
    evaluate.add_argument("--seed", type=int, default=0)
    evaluate.add_argument("--recent-examples", type=int, default=10, help="training prefixes per user (0 = all)")
    evaluate.add_argument("--max-seq-len", type=int, default=50)
    evaluate.set_defaults(func=_cmd_evaluate)

    reproduce_parser = verbs["reproduce"].add_parser("cl-epidtn", help="multi-seed tables, t-tests, ablations and sweeps of CL-EPIDTN")
    reproduce_parser.add_argument("--quick", action="store_true", help="a <10 minute version (fewer epochs/seeds/data, smaller sweeps)")
    reproduce_parser.add_argument("--dataset", choices=[*DATASETS, "all"], default="ml-100k")
    reproduce_parser.add_argument("--seeds", type=int, help="number of seeds (default 5; 2 with --quick)")
    reproduce_parser.add_argument("--epochs", type=int, help="override the epoch budget")
    reproduce_parser.add_argument("--workers", type=int, help="training processes side by side (default 1; 2 with --quick)")
    reproduce_parser.add_argument("--models", help=f"comma-separated subset of: {', '.join(MODELS)}")
    reproduce_parser.add_argument("--out", help=f"output folder (default ${RESULTS_ENV} or docs/results/cl-epidtn)")
    reproduce_parser.set_defaults(func=_cmd_reproduce)
