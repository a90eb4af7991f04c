"""The reproduction's files, written from whatever jobs have finished (the page reads them).

Per dataset (``<name>`` = ml-100k or anime), in the profile's output folder:

* ``<name>_runs.csv``: one row per finished (model, seed, split) job of the main table: test
  metrics (HR@10/HR@50/NDCG@10 on leave-one-out, Recall@10/@50 on the ratio split), ``best_epoch``,
  ``max_epochs``, ``stopped_early``, ``cpu_seconds``;
* ``<name>_curves.csv``: the validation curve of each of those jobs, one row per epoch;
* ``<name>_ttests.csv``: CL-EPIDTN against every other model on HR@10 and Recall@50, Welch over
  seeds, Holm within each metric (columns ``recsys.eval.stats.COLUMNS``);
* ``<name>_sweeps.csv`` and ``<name>_sweep_<param>.png``: the sensitivity sweeps;
* ``<name>_ours.csv``, ``<name>_ours_ttests.csv``: the variants of ours (runs, and each against SASRec);
* ``<name>_summary.csv``, ``<name>_ablation.csv``: mean/std per model, the ablation rows;
* ``<name>_meta.json`` (profile, command, settings, jobs done of total, complete, CPU seconds,
  commit, date, deviations from the paper) and ``<name>.md`` (every table in Markdown).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from recsys.artifacts import atomic_write_json
from recsys.data.sequential import SequentialDataset
from recsys.eval.sequential import PROTOCOL, PROTOCOL_NO_TIME
from recsys.eval.stats import COLUMNS as TTEST_COLUMNS
from recsys.eval.tables import frame_to_markdown
from recsys.sequential.experiments import (
    ABLATION_TEXT,
    OURS_BESIDE,
    OURS_PREFIX,
    OURS_TEXT,
    PAPER,
    ReproduceSettings,
    describe_settings,
    deviations,
)
from recsys.sequential.jobs import Finished, device_name, git_commit
from recsys.sequential.plots import SWEEP_LABELS, plot_sweep
from recsys.sequential.prep import DATASETS
from recsys.sequential.stats import (ALL_METRICS, METRIC_LABELS, display_name, epoch_budgets, pretty_table,
                                     summarise, ttests)
from recsys.sequential.training import variants

RUN_COLUMNS = ["model", "seed", "split", *ALL_METRICS, "best_epoch", "epochs_run", "max_epochs", "stopped_early",
               "cpu_seconds", "device"]
CURVE_COLUMNS = ["model", "seed", "split", "epoch", "train_loss", "val_metric", "val_metric_name"]
SWEEP_COLUMNS = ["param", "value", "seed", "hit@10", "recall@50", "ndcg@10", "best_epoch", "max_epochs", "device"]


def markdown_table(frame: pd.DataFrame) -> str:
    return frame_to_markdown(frame, digits=4)


def runs_frame(finished: Finished, models: list[str]) -> pd.DataFrame:
    rows = []
    for job, record in finished.of("main"):
        rows.append({"model": job.model, "seed": job.seed, "split": job.split, **record["metrics"],
                     "best_epoch": record["best_epoch"], "epochs_run": record["epochs_run"],
                     "max_epochs": record["max_epochs"], "stopped_early": bool(record["stopped_early"]),
                     "cpu_seconds": record["cpu_seconds"], "device": device_name(record)})
    frame = pd.DataFrame(rows, columns=RUN_COLUMNS)
    order = {m: i for i, m in enumerate(models)}
    frame = frame.sort_values(["split", "seed", "model"], key=lambda c: c.map(order) if c.name == "model" else c)
    return frame.astype({"best_epoch": "Int64"}).reset_index(drop=True)


def curves_frame(finished: Finished) -> pd.DataFrame:
    rows = []
    for job, record in finished.of("main"):
        name = record.get("monitor") or "ndcg@10"
        for point in record["history"]:
            rows.append({"model": job.model, "seed": job.seed, "split": job.split, "epoch": point["epoch"],
                         "train_loss": point["train_loss"], "val_metric": point.get(f"val_{name}"),
                         "val_metric_name": name})
    return pd.DataFrame(rows, columns=CURVE_COLUMNS)


def sweeps_frame(finished: Finished) -> pd.DataFrame:
    """One row per (param, value, seed): HR@10 (and NDCG@10) from its loo job, Recall@50 from its ratio job."""
    points: dict[tuple, dict[str, Any]] = {}
    for job, record in finished.of("sweep"):
        param, value = job.sweep
        row = points.setdefault((param, value, job.seed), {"param": param, "value": value, "seed": job.seed})
        devices = {*row.get("device", "").split(" + "), device_name(record)} - {""}
        row["device"] = " + ".join(sorted(devices))  # the loo and ratio jobs of a point may differ
        wanted = ("hit@10", "ndcg@10") if job.split == "loo" else ("recall@50",)
        row.update({m: record["metrics"][m] for m in wanted})
        if job.split == "loo":
            row.update(best_epoch=record["best_epoch"], max_epochs=record["max_epochs"])
    return pd.DataFrame(list(points.values()), columns=SWEEP_COLUMNS)


def ours_frame(finished: Finished) -> pd.DataFrame:
    """One row per finished job of a variant of ours, in the runs' columns; ``model`` = ``ours: <name>``."""
    rows = [{"model": f"{OURS_PREFIX}{job.ours}", "seed": job.seed, "split": job.split, **record["metrics"],
             "best_epoch": record["best_epoch"], "epochs_run": record["epochs_run"], "max_epochs": record["max_epochs"],
             "stopped_early": bool(record["stopped_early"]), "cpu_seconds": record["cpu_seconds"],
             "device": device_name(record)} for job, record in finished.of("ours")]
    return pd.DataFrame(rows, columns=RUN_COLUMNS).astype({"best_epoch": "Int64"})


def ours_against_sasrec(runs: pd.DataFrame, ours: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The variants beside the paper's CL-EPIDTN and SASRec (summary), each tested against SASRec.

    ``diff`` = variant − SASRec (positive: ours ahead); Holm across the rows of each metric.
    """
    both = pd.concat([runs[runs["model"].isin(OURS_BESIDE)], ours], ignore_index=True)
    return summarise(both), ttests(both, reference="sasrec")


def convergence_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Per model and split: the best epochs over seeds against the budget, and how many stopped early."""
    neural = runs[runs["max_epochs"] > 0]
    rows = []
    for (model, split), group in neural.groupby(["model", "split"], sort=False):
        rows.append({"model": display_name(model), "split": split,
                     "best epochs (per seed)": ", ".join(str(int(e)) for e in group["best_epoch"]),
                     "max epochs": epoch_budgets(group["max_epochs"]),
                     "stopped early": f"{int(group['stopped_early'].sum())} of {len(group)}",
                     "CPU s (mean)": round(float(group["cpu_seconds"].mean()))})
    return pd.DataFrame(rows)


def export_dataset(dataset: SequentialDataset, finished: Finished, settings: ReproduceSettings, models: list[str],
                   out_dir: Path, command: str) -> dict[str, Any]:
    """Write every file of ``dataset`` from the finished jobs; returns the summary, t-tests and sweeps."""
    prefix = out_dir / dataset.name
    runs = runs_frame(finished, models)
    runs.to_csv(f"{prefix}_runs.csv", index=False)
    curves_frame(finished).to_csv(f"{prefix}_curves.csv", index=False)
    summary = summarise(runs) if not runs.empty else pd.DataFrame()
    summary.to_csv(f"{prefix}_summary.csv", index=False)
    tests = ttests(runs)
    tests.to_csv(f"{prefix}_ttests.csv", index=False)
    ablation = summary[summary["model"].isin(variants())].copy() if not summary.empty else pd.DataFrame()
    if not ablation.empty:
        ablation["removed"] = ablation["model"].map(ABLATION_TEXT)
    ablation.to_csv(f"{prefix}_ablation.csv", index=False)
    sweeps = sweeps_frame(finished)
    sweeps.to_csv(f"{prefix}_sweeps.csv", index=False)
    for old in out_dir.glob(f"{dataset.name}_sweep_*.png"):
        old.unlink()
    for param in sweeps["param"].unique():
        if sweeps.loc[sweeps["param"] == param, "value"].nunique() < 2:
            continue  # a partial run: one point (the main table's job) is not a curve yet
        plot_sweep(sweeps[sweeps["param"] == param], param, out_dir / f"{dataset.name}_sweep_{param}.png",
                   f"{dataset.name}: {SWEEP_LABELS.get(param, param)}")

    ours = ours_frame(finished)
    ours.to_csv(f"{prefix}_ours.csv", index=False)
    ours_summary, ours_tests = (ours_against_sasrec(runs, ours) if not ours.empty
                                else (pd.DataFrame(), pd.DataFrame(columns=TTEST_COLUMNS)))  # a header, not a blank file
    ours_tests.to_csv(f"{prefix}_ours_ttests.csv", index=False)

    protocol = PROTOCOL + ("" if dataset.has_timestamps else PROTOCOL_NO_TIME)
    commits = sorted({r.get("git_commit") or "?" for role in ("main", "sweep", "ours") for _, r in finished.of(role)})
    devices = finished.by_device()
    (paper_done, paper_total), (ours_done, ours_total) = finished.count(("main", "sweep")), finished.count(("ours",))
    meta = {
        "profile": settings.profile, "command": command, "settings": settings.to_dict(),
        # the paper's tables (main, sweeps) decide "complete"; the variants of ours are counted apart
        "jobs_done": paper_done, "jobs_total": paper_total, "complete": paper_done == paper_total,
        "ours_done": ours_done, "ours_total": ours_total,
        # CPU time of the jobs trained on the CPU; jobs trained on a GPU are counted by wall time in by_device
        "cpu_seconds_total": devices.get("cpu", {}).get("cpu_seconds", 0.0), "by_device": devices,
        "git_commit": git_commit(), "job_commits": commits,
        "date_utc": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "deviations": deviations(settings),
        "dataset": dataset.name, "n_users": dataset.n_users, "n_items": dataset.n_items,
        "n_interactions": int(sum(len(s) for s in dataset.sequences.values())), "has_timestamps": dataset.has_timestamps,
        "protocol": protocol, "settings_text": describe_settings(settings, dataset.name), "quick": settings.quick, "models": models,
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }
    atomic_write_json(out_dir / f"{dataset.name}_meta.json", meta)
    (out_dir / f"{dataset.name}.md").write_text(dataset_markdown(meta, summary, runs, tests, ablation, sweeps)
                                                  + ours_markdown(ours_summary, ours_tests, settings))
    return {"summary": summary, "ttests": tests, "sweeps": sweeps, "meta": meta}


def compute_text(meta: dict) -> str:
    """Where the finished jobs trained and for how long: CPU-hours of the CPU jobs, wall hours per GPU."""
    parts = []
    for device, entry in (meta.get("by_device") or {"cpu": {"cpu_seconds": meta.get("cpu_seconds_total", 0)}}).items():
        if device == "cpu":
            parts.append(f"{entry['cpu_seconds'] / 3600:.2f} CPU-hours on the CPU"
                         + (f" ({entry['jobs']} jobs)" if "jobs" in entry else ""))
        else:
            parts.append(f"{entry['jobs']} jobs on {device}, {entry['wall_seconds'] / 3600:.2f} wall-hours "
                         "(several jobs at a time on the one GPU)")
    return "Compute of the finished jobs: " + "; ".join(parts) + "."


def dataset_markdown(meta: dict, summary: pd.DataFrame, runs: pd.DataFrame, tests: pd.DataFrame,
                     ablation: pd.DataFrame, sweeps: pd.DataFrame) -> str:
    name = meta["dataset"]
    status = ("complete" if meta["complete"] else
              f"**INCOMPLETE**: {meta['jobs_done']} of {meta['jobs_total']} jobs finished; re-run the command to resume")
    if meta.get("ours_total"):
        status += f" (variants of ours: {meta['ours_done']} of {meta['ours_total']} jobs)"
    md = [f"# CL-EPIDTN reproduction: {name} ({meta['profile']} profile)", "",
          f"Status: {status}. {compute_text(meta)}", "",
          f"Command: `{meta['command']}` (commit {meta['git_commit'] or 'absent'}, {meta['date_utc']}).", "",
          f"**Protocol.** {meta['protocol']}", "", f"**Settings.** {meta['settings_text']}", "",
          f"{meta['n_users']} users, {meta['n_items']} items, {meta['n_interactions']} interactions.", "",
          "**Deviations from the paper.**", "", *[f"- {d}" for d in meta["deviations"]], ""]
    if not summary.empty:
        md += ["## Main table (test, mean ± std over seeds)", "", markdown_table(pretty_table(summary)), "",
               "## Convergence (best validation epoch against the budget)", "", markdown_table(convergence_table(runs)), ""]
    if not tests.empty:
        shown = tests.assign(metric=tests["metric"].map(METRIC_LABELS), model=tests["model"].map(display_name))
        md += ["## Welch t-tests over seeds: each model against CL-EPIDTN (Holm within each metric)", "",
               "`diff` = model − CL-EPIDTN; positive means the model is ahead.", "",
               markdown_table(shown[["metric", "model", "mean_model", "mean_reference", "diff", "cohens_d", "p",
                                     "p_holm", "n_model", "n_reference", "verdict"]]), ""]
    if not ablation.empty:
        md += ["## Ablation", "", markdown_table(pretty_table(ablation).assign(removed=list(ablation["removed"]))), ""]
    if not sweeps.empty:
        md += ["## Sensitivity (CL-EPIDTN; test HR@10 on leave-one-out, Recall@50 on the ratio split)", ""]
        for param in sweeps["param"].unique():
            if sweeps.loc[sweeps["param"] == param, "value"].nunique() > 1:
                md += [f"![{param}]({name}_sweep_{param}.png)", ""]
        table = sweeps.groupby(["param", "value"])[["hit@10", "recall@50"]].agg(["mean", "std", "count"]).reset_index()
        table.columns = [" ".join(c).strip() if isinstance(c, tuple) else c for c in table.columns]
        table["value"] = [f"{v:g}" for v in table["value"]]  # 32, 0.1: not 32.0000
        md += [markdown_table(table), ""]
        devices = sweeps["device"].fillna("cpu").value_counts()
        if len(devices) > 1 or devices.index[0] != "cpu":
            md += ["Trained on: " + "; ".join(f"{device}: {n} of {len(sweeps)} (point, seed) pairs"
                                             for device, n in devices.items())
                   + " (the point at the main table's setting is the main table's CPU job; "
                   "CUDA against CPU on the same jobs: cuda_vs_cpu.md).", ""]
    paper = "; ".join(f"{k}: HR@10 {v['hit@10']} / Recall@50 {v['recall@50']}" for k, v in PAPER.items())
    md += [f"Paper (its abstract; other data, reference only): {paper}.", ""]
    return "\n".join(md)


def ours_markdown(summary: pd.DataFrame, tests: pd.DataFrame, settings: ReproduceSettings) -> str:
    """The variants of ours against SASRec: what each changes, the table, the t-tests (empty: none finished)."""
    if summary.empty:
        return ""
    md = ["## Variants of ours (not the paper's model) against SASRec", "",
          "Why the paper's model loses to SASRec on HR@10, one component at a time (the ablation and the sweeps "
          "above cover the contrastive tasks, the augmented vectors, the Transformer, L, M and lambda):", "",
          *[f"- `{OURS_PREFIX}{name}`: {OURS_TEXT.get(name, name)}; overrides {changes}"
            for name, changes in settings.ours.items()], "",
          markdown_table(pretty_table(summary)), ""]
    if not tests.empty:
        shown = tests.assign(metric=tests["metric"].map(METRIC_LABELS), model=tests["model"].map(display_name))
        md += ["`diff` = variant − SASRec; positive means ours is ahead (Welch over seeds, Holm within each metric).",
               "", markdown_table(shown[["metric", "model", "mean_model", "mean_reference", "diff", "cohens_d", "p",
                                         "p_holm", "n_model", "n_reference", "verdict"]]), ""]
    return "\n".join(md)


def write_readme(out_dir: Path, settings: ReproduceSettings, command: str) -> None:
    lines = [
        f"# CL-EPIDTN reproduction results ({settings.profile} profile)", "",
        f"Last written by `{command}`; each data set below names the command and settings that made it (the "
        "data sets may differ). The pages read these files. Re-running a command resumes: finished "
        "(model, seed, split) jobs are kept in its state directory and skipped.", "",
        f"- machine: {os.cpu_count()} cores, 1-minute load average at export {os.getloadavg()[0]:.1f} (shared), "
        f"python {sys.version.split()[0]}, torch {torch.__version__}", "",
        f"**Protocol.** {PROTOCOL}{PROTOCOL_NO_TIME}", "",
        "Per dataset: `<dataset>.md` (all tables), `<dataset>_runs.csv` (one row per model, seed and split), "
        "`<dataset>_curves.csv` (validation curves), `<dataset>_ttests.csv` (Welch, Holm), `<dataset>_summary.csv`, "
        "`<dataset>_ablation.csv`, `<dataset>_sweeps.csv` + `<dataset>_sweep_<param>.png` (paper Figures 9-11), "
        "`<dataset>_meta.json`.", "",
        "## Datasets", "",
    ]
    for name in DATASETS:
        meta_path = out_dir / f"{name}_meta.json"
        if (out_dir / f"{name}.md").exists() and meta_path.exists():
            meta = json.loads(meta_path.read_text())
            done = f"{meta.get('jobs_done', '?')} of {meta.get('jobs_total', '?')} jobs"
            if meta.get("ours_total"):
                done += f"; variants of ours {meta['ours_done']} of {meta['ours_total']}"
            lines += [f"- [{name}]({name}.md): {'complete' if meta.get('complete') else 'INCOMPLETE'} ({done}), "
                      f"{compute_text(meta)} `{meta.get('command', '?')}`, "
                      f"{meta.get('date_utc', meta.get('date', '?'))}",
                      f"  - settings: {meta.get('settings_text') or '?'}"]
    if (out_dir / "recbole_sasrec.md").exists():
        lines += ["- [RecBole SASRec peer check](recbole_sasrec.md)"]
    if (out_dir / "cuda_vs_cpu.md").exists():
        lines += ["- [CUDA vs CPU on the same jobs](cuda_vs_cpu.md) (`benchmarks/cuda_check.py`)"]
    (out_dir / "README.md").write_text("\n".join(lines) + "\n")
