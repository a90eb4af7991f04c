"""The CL-EPIDTN paper: baselines, ablations, significance, convergence and sensitivity, per data set.

Two kinds of files, written by ``python -m recsys reproduce cl-epidtn``:

* ``converged/<dataset>_{runs,curves,ttests,sweeps}.csv`` + ``_meta.json``: the converged profile (early
  stopping, several seeds). Its meta says whether it is ``complete`` and how many jobs are done, because
  the run is resumable and may be committed part-way.
* ``<dataset>_runs.csv`` etc. directly in the folder: the ``--quick`` smoke test (2 seeds, a few epochs).

A reviewer must never mistake the second for the first, so a data set with a converged meta file shows only
the converged files (even when they cannot be read: the problem is said, the quick numbers are not slipped in
instead), and quick results carry the status ``quick`` ("quick (not converged)" on the page).
"""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import plotly.graph_objects as go

from recsys import registry
from recsys.reports import (
    DASH,
    Report,
    Section,
    Table,
    cell,
    compare_samples,
    display,
    documents,
    fmt,
    from_ttests,
    missing,
    numeric,
    read_csv,
    read_json,
    verdict_view,
)
from recsys.sequential.experiments import ABLATION_TEXT, OURS_BESIDE, OURS_PREFIX, OURS_TEXT, PAPER
from recsys.sequential.plots import SWEEP_LABELS
from recsys.sequential.stats import METRIC_LABELS, epoch_budgets

METRICS = ("hit@10", "hit@50", "ndcg@10", "recall@10", "recall@50")
REFERENCE, METRIC = "cl-epidtn", "hit@10"
SWEEP_METRICS = ("hit@10", "recall@50")  # what the paper's Figures 9-11 plot
QUICK_COMMAND = "python -m recsys reproduce cl-epidtn --quick --dataset {dataset}"


def datasets(folder: Path) -> list[str]:
    """Data sets with a quick meta file or any converged file (meta or runs), ml-100k first."""
    names = {p.name.removesuffix("_meta.json") for p in folder.glob("*_meta.json")}
    names |= {p.name.rsplit("_", 1)[0] for pattern in ("*_meta.json", "*_runs.csv")
              for p in (folder / "converged").glob(pattern)}
    return sorted(names, key=lambda n: (n != "ml-100k", n))


def order(models) -> list[str]:
    known = registry.names("sequential")
    return sorted(dict.fromkeys(models), key=lambda m: (known.index(m) if m in known else len(known), str(m)))


def normalise_runs(runs: pd.DataFrame, problems: list[str], name: str) -> pd.DataFrame:
    """Quick and converged runs in one shape: ``split``, ``max_epochs`` and ``seconds`` always present."""
    runs = numeric(runs, [*METRICS, "best_epoch", "max_epochs", "epochs", "cpu_seconds", "seconds"], problems, name)
    runs["model"] = runs["model"].astype(str)
    if "split" not in runs:
        runs["split"] = "loo"  # quick files: every metric of a seed on one row
    if "max_epochs" not in runs:
        runs["max_epochs"] = runs["epochs"] if "epochs" in runs else float("nan")
    runs["seconds"] = runs["cpu_seconds"] if "cpu_seconds" in runs else runs.get("seconds", float("nan"))
    if "best_epoch" not in runs:
        runs["best_epoch"] = float("nan")
    return runs


def main_table(runs: pd.DataFrame) -> pd.DataFrame:
    present = [m for m in METRICS if m in runs and runs[m].notna().any()]
    rows = []
    for model in order(runs["model"]):
        group = runs[runs["model"] == model]
        rows.append({"Model": display(model), **{METRIC_LABELS[m]: cell(group[m].dropna()) for m in present},
                     "Seeds": str(group["seed"].nunique())})
    return pd.DataFrame(rows)


def ablation_table(runs: pd.DataFrame) -> pd.DataFrame | None:
    present = [m for m in ("hit@10", "recall@50") if m in runs and runs[m].notna().any()]
    rows = [{"Model": display(m), "Removed": ABLATION_TEXT[m],
             **{METRIC_LABELS[x]: cell(runs.loc[runs["model"] == m, x].dropna()) for x in present}}
            for m in ABLATION_TEXT if m in set(runs["model"])]
    return pd.DataFrame(rows) if rows else None


def ours_tables(base: Path, dataset: str, runs: pd.DataFrame, problems: list[str]) -> list[Table]:
    """The variants of ours beside the paper's CL-EPIDTN and SASRec, and each against SASRec (when committed)."""
    path = base / f"{dataset}_ours.csv"
    ours = read_csv(path, ["model", "seed"], problems, optional_rows=True)
    if ours is None:
        return []
    beside = pd.concat([runs[runs["model"].isin(OURS_BESIDE)],
                        normalise_runs(ours, problems, path.name)], ignore_index=True)
    what = "; ".join(f"{OURS_PREFIX}{name}: {text}" for name, text in OURS_TEXT.items())
    tables = [Table("Variants of ours (not the paper's model) beside CL-EPIDTN and SASRec", main_table(beside),
                    f"Why CL-EPIDTN loses to SASRec, one component at a time. {what}.")]
    tests = read_csv(base / f"{dataset}_ours_ttests.csv", [], problems, optional_rows=True)
    compared = from_ttests(tests) if tests is not None else None
    if compared is not None:
        tables.append(Table("Each variant against SASRec (Welch over seeds, Holm within each metric)",
                            verdict_view(compared, METRIC_LABELS), "Difference = variant − SASRec: positive means "
                                                                    "ours is ahead."))
    return tables


def convergence(runs: pd.DataFrame, seconds_label: str) -> tuple[pd.DataFrame, str]:
    """Best epoch against the maximum per model and split; the sentence says how many runs stopped early."""
    rows, trained, at_max = [], 0, 0
    for model in order(runs["model"]):
        for split, group in runs[runs["model"] == model].groupby("split", sort=False):
            best, limit = group["best_epoch"].dropna(), group["max_epochs"].dropna()
            row = {"Model": display(model), "Split": str(split), "Runs": str(len(group))}
            if best.empty:
                row.update({"Best epoch": "fitted (no epochs)", "Maximum epochs": DASH, "Best = last epoch": DASH})
            else:
                last = int((group["best_epoch"] >= group["max_epochs"]).sum())
                trained += len(best)
                at_max += last
                spread = f" ({fmt(best.min())}-{fmt(best.max())})" if best.min() != best.max() else ""
                row.update({"Best epoch": f"{fmt(best.mean(), 1)}{spread}",
                            "Maximum epochs": epoch_budgets(limit) if not limit.empty else DASH,
                            "Best = last epoch": f"{last} of {len(best)}"})
            row[seconds_label] = fmt(group["seconds"].mean(), 1)
            rows.append(row)
    if not trained:
        text = "No trained run records a best epoch."
    elif at_max:
        text = (f"{at_max} of {trained} trained runs picked their last epoch as the best: they were still improving "
                "when their budget ran out, so these numbers are not converged.")
    else:
        text = f"All {trained} trained runs found their best epoch before the maximum (early stopping on validation)."
    return pd.DataFrame(rows), text


def curve_histories(curves: pd.DataFrame, model: str, split: str | None = None) -> tuple[dict[str, list[dict]], str]:
    """``{"seed s": epoch records}`` of one model (display name) and the validation metric's name."""
    part = curves[curves["model"] == model]
    if split is not None and "split" in part:
        part = part[part["split"] == split]
    names = part["val_metric_name"].dropna() if "val_metric_name" in part else pd.Series(dtype=str)
    name = METRIC_LABELS.get(str(names.iloc[0]), str(names.iloc[0])) if len(names) else "metric"
    histories = {}
    for seed, group in part.sort_values("epoch").groupby("seed", sort=True):
        histories[f"seed {fmt(seed)}"] = [
            {"epoch": int(r.epoch), "train_loss": float(r.train_loss),
             **({} if missing(getattr(r, "val_metric", None)) else {f"validation {name}": float(r.val_metric)})}
            for r in group.itertuples() if not missing(r.epoch) and not missing(r.train_loss)]
    return histories, f"validation {name}"


def sweep_figure(sweeps: pd.DataFrame, param: str, height: int = 300) -> go.Figure:
    """Mean ± std over seeds of HR@10 and Recall@50 (the paper's Figures 9-11) against one setting.

    The values sit on a categorical axis, so layer counts read 1, 2, 3 (never 1.5) and λ's uneven grid is
    evenly spaced.
    """
    part = sweeps[sweeps["param"] == param]
    shown = [m for m in SWEEP_METRICS if m in part and part[m].notna().any()] or \
            [m for m in METRICS if m in part and part[m].notna().any()]
    grouped = part.groupby("value")[shown].agg(["mean", "std", "count"]).sort_index()
    ticks = [fmt(v, 3) for v in grouped.index]
    fig = go.Figure()
    for metric in shown:
        fig.add_trace(go.Scatter(x=ticks, y=grouped[(metric, "mean")], mode="lines+markers",
                                 name=METRIC_LABELS.get(metric, metric), error_y={"type": "data", "array": grouped[(metric, "std")].fillna(0).tolist()}))
    seeds = int(part["seed"].nunique()) if "seed" in part else 0
    fig.update_xaxes(type="category", title_text=SWEEP_LABELS.get(param, param))
    fig.update_layout(height=height, margin={"l": 10, "r": 10, "t": 40, "b": 10}, template="plotly_white",
                      title=f"{SWEEP_LABELS.get(param, param)}: {seeds} seed{'s' if seeds != 1 else ''}, bars ±1 std",
                      legend={"orientation": "h", "y": -0.3})
    return fig


def meta_notes(meta: dict, quick: bool) -> list[str]:
    notes = []
    settings = meta.get("settings_text") or meta.get("settings")  # the sentence; older files only had the dict
    if settings:
        notes.append(f"Settings: {settings}")
    cpu = meta.get("cpu_seconds_total")
    by_device = meta.get("by_device") if isinstance(meta.get("by_device"), dict) else {}
    if isinstance(cpu, (int, float)) and not math.isnan(cpu):
        notes.append(f"Total CPU time: {cpu / 3600:.1f} CPU-hours ({cpu:,.0f} s)"
                     + (" of the jobs trained on the CPU." if by_device else "."))
    elif isinstance(meta.get("wall_seconds"), (int, float)):
        notes.append(f"Wall time: {meta['wall_seconds']:,.0f} s.")
    for device, entry in by_device.items():
        if device != "cpu" and isinstance(entry, dict) and isinstance(entry.get("wall_seconds"), (int, float)):
            notes.append(f"{entry.get('jobs', '?')} jobs trained on {device}: {entry['wall_seconds'] / 3600:.2f} "
                         "wall-hours, several jobs at a time on the one GPU.")
    stamp = [f"{k.replace('_', ' ')} {meta[k]}" for k in ("date_utc", "date", "git_commit") if meta.get(k)]
    if stamp:
        notes.append("Written: " + ", ".join(stamp) + ".")
    deviations = meta.get("deviations")
    if isinstance(deviations, str) and deviations:
        deviations = [deviations]
    if isinstance(deviations, list):
        notes += [f"Deviation from the paper: {d}" for d in deviations if d]
    if quick:
        notes.append("Quick results: 2 seeds and a few epochs, a smoke test of the pipeline; no conclusion should "
                     "be drawn from them. The converged profile replaces them once its files are committed.")
    return notes


def dataset_report(folder: Path, dataset: str) -> Report:
    rep = Report(key=dataset, name=dataset, metrics=dict(METRIC_LABELS), default_metric=METRIC,
                 default_reference=display(REFERENCE))
    converged = folder / "converged"
    quick = not any((converged / f"{dataset}_{name}").exists() for name in ("meta.json", "runs.csv"))
    base = folder if quick else converged
    meta = read_json(base / f"{dataset}_meta.json", rep.problems)
    if meta is None and not quick and not (base / f"{dataset}_meta.json").exists():
        rep.problems.append(f"{dataset}_meta.json is missing next to the converged runs: progress unknown")
        meta = {"complete": False}
    if meta is None:
        rep.status_text = (f"The converged results of {dataset} exist but their meta file cannot be read; the quick "
                           "results are not shown in their place." if not quick else f"No results for {dataset}.")
        return rep
    if quick:
        rep.status, rep.status_text = "quick", "quick (not converged)"
    elif meta.get("complete") is True:
        jobs = f"{meta['jobs_done']} of {meta['jobs_total']} jobs" if meta.get("jobs_total") else "all jobs"
        profile = f", profile {meta['profile']}" if meta.get("profile") not in (None, "", "converged") else ""
        rep.status, rep.status_text = "converged", f"converged ({jobs} done{profile})"
    else:
        done, total = meta.get("jobs_done", "?"), meta.get("jobs_total", "?")
        progress = f"{done} of {total} jobs done" if "jobs_total" in meta else "progress unknown"
        rep.status, rep.status_text = "incomplete", f"incomplete: {progress}"
    if not quick and meta.get("ours_total"):  # extra experiments of ours: their progress, not the tables' status
        rep.status_text += f"; variants of ours: {meta.get('ours_done', '?')} of {meta['ours_total']} jobs done"
    rep.protocol = str(meta.get("protocol") or "Per-user chronological leave-one-out (last interaction = test, "
                       "second-to-last = validation), full ranking over every item the user has not interacted with; "
                       "HR@10, HR@50, NDCG@10. Recall@10/@50 on a second split where each user's last 20% is the test set.")
    rep.protocol += " Means ± sample std over seeds; Welch t-tests over seeds, Holm-corrected within each table."
    rep.notes = meta_notes(meta, quick)
    rep.commands = [(f"every {dataset} table here", str(meta.get("command") or QUICK_COMMAND.format(dataset=dataset)))]
    paper = pd.DataFrame([{"Data set": k, "HR@10": fmt(v.get("hit@10")), "Recall@50": fmt(v.get("recall@50"))}
                          for k, v in PAPER.items()])
    rep.paper = [Table("The paper (other data)", paper, "Amazon Books and Tmall in the paper: for reference only, "
                                                         "not comparable with these data sets.")]
    runs = read_csv(base / f"{dataset}_runs.csv", ["model", "seed"], rep.problems)
    if runs is None:
        return rep
    runs = normalise_runs(runs, rep.problems, f"{dataset}_runs.csv")
    rep.ours = [Table(f"Ours: {dataset} (mean ± std over seeds)", main_table(runs))]
    ablation = ablation_table(runs)
    if ablation is not None:
        rep.extra = [Table("Ablation: CL-EPIDTN without one component", ablation)]
    rep.extra = [*rep.extra, *ours_tables(base, dataset, runs, rep.problems)]
    rep.models = [display(m) for m in order(runs["model"])]

    def compare(metric: str, reference: str) -> pd.DataFrame:
        if metric not in runs:
            return pd.DataFrame()
        rows = runs[runs[metric].notna()]
        values = {display(m): rows.loc[rows["model"] == m, metric].tolist() for m in order(rows["model"])}
        return compare_samples(values, reference, metric)

    rep.compare = compare
    tests = read_csv(base / f"{dataset}_ttests.csv", [], rep.problems)
    committed = from_ttests(tests) if tests is not None else None
    if committed is not None:
        rep.verdicts, rep.verdict_source = committed, f"{dataset}_ttests.csv (committed)"
    else:
        rep.verdicts = compare(METRIC, display(REFERENCE))
        rep.verdict_source = (f"computed here from {dataset}_runs.csv (the committed t-tests have no direction or Holm "
                              "column): Welch over seeds, Holm across the rows")
    seconds = "CPU s per run" if "cpu_seconds" in runs else "training s per run"
    rep.convergence, rep.convergence_text = convergence(runs, seconds)
    curves = read_csv(base / f"{dataset}_curves.csv", ["model", "seed", "epoch", "train_loss"], rep.problems)
    if curves is not None:
        curves = numeric(curves, ["epoch", "train_loss", "val_metric"], rep.problems, f"{dataset}_curves.csv")
        curves["model"] = [display(m) for m in curves["model"].astype(str)]
        rep.curves = curves
    sweeps = read_csv(base / f"{dataset}_sweeps.csv", ["param", "value", "seed"], rep.problems, optional_rows=True)
    if sweeps is not None:
        rep.sweeps = numeric(sweeps, ["value", *METRICS], rep.problems, f"{dataset}_sweeps.csv")
    return rep


def section(folder: Path) -> Section:
    reports = [dataset_report(folder, name) for name in datasets(folder)]
    docs = documents(folder, [("fidelity.md", "The paper against the code (fidelity.md)"),
                              ("README.md", "How these results were produced (README)"),
                              ("recbole_sasrec.md", "Peer check: RecBole's SASRec against ours")])
    docs += documents(folder / "converged", [("README.md", "The converged profile (converged/README.md)"),
                                             ("cuda_vs_cpu.md", "The same jobs on CUDA and on the CPU (cuda_vs_cpu.md)")])
    return Section(
        key="cl-epidtn", title="CL-EPIDTN: sequential recommendation",
        paper="Yang, Wang & Li, *Contrastive learning-enhanced personalized interaction dual tower network*, "
              "PLOS ONE 2025 (baselines, ablations, significance tests, Figures 9-11).",
        reports=reports, documents=docs,
    )
