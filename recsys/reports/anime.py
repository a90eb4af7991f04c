"""The Two Towers paper (anime): Table 1 on unseen users, the same table on seen users, with verdicts.

Read from ``docs/results/anime/`` (``python -m recsys evaluate anime``): ``evaluation.csv`` (mean and
std per protocol and method) and ``evaluation_per_seed.csv`` (every seed), from which the verdicts are
computed (Welch over seeds, Holm across the methods of one protocol) unless ``ttests.csv`` already has
:data:`recsys.eval.stats.COLUMNS`. ``paper-settings/`` is the same evaluation with the paper's 35 epochs.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd

from recsys.eval.anime import METRICS, PAPER_TABLE1, SEEN_PROTOCOL, UNSEEN_PROTOCOL
from recsys.eval.tables import format_mean_std, mean_std
from recsys.reports import (
    Report,
    Section,
    Table,
    compare_samples,
    display,
    documents,
    fmt,
    from_ttests,
    numeric,
    read_csv,
)

COMMAND = "python -m recsys evaluate anime --seeds 3 --quick"
PAPER_COMMAND = "python -m recsys evaluate anime --seeds 1 --out docs/results/anime/paper-settings"
LABELS = {"precision@10": "P@10", "map@10": "MAP@10", "ndcg@10": "NDCG@10"}
PROTOCOLS = (  # protocol key, tab name, words
    ("unseen", "Table 1: unseen users", UNSEEN_PROTOCOL),
    ("seen", "Seen users", SEEN_PROTOCOL),
)
REFERENCE, METRIC = "anime-ease", "ndcg@10"  # the strongest simple baseline, the paper's ranking metric
#: prefix of a ``<prefix>_seconds`` column of training.csv -> (model, settings key of its epoch budget)
FITTED = {"mse": ("anime-two-tower", "mse_epochs"), "implicit": ("anime-two-tower-implicit", "implicit_epochs"),
          "ease": ("anime-ease", None), "elbow": ("K-means elbow (choosing k)", None)}


def settings(folder: Path) -> dict:
    """The settings JSON that ``evaluation.md`` prints for seed 0 ({} when absent or unreadable)."""
    try:
        match = re.search(r"Settings \(seed 0\): `(\{.*?\})`", (folder / "evaluation.md").read_text())
        return json.loads(match.group(1)) if match else {}
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return {}


def numbers(frame: pd.DataFrame | None, problems: list[str], name: str) -> pd.DataFrame | None:
    """Every column but protocol and method as numbers (text there is reported, not shown)."""
    if frame is None:
        return None
    frame = numeric(frame, [c for c in frame.columns if c not in ("protocol", "method")], problems, name)
    frame["protocol"], frame["method"] = frame["protocol"].astype(str), frame["method"].astype(str)
    return frame


def table(frame: pd.DataFrame, protocol: str) -> pd.DataFrame:
    part = frame[frame["protocol"] == protocol]
    out = pd.DataFrame({"Method": [display(m) for m in part["method"]]})
    for metric in METRICS:
        if f"{metric} mean" in part:
            std = part.get(f"{metric} std", pd.Series([float("nan")] * len(part), index=part.index))
            out[LABELS[metric]] = [format_mean_std(m, s, 4) for m, s in zip(part[f"{metric} mean"], std, strict=True)]
    if "seeds" in part:
        out["Seeds"] = [fmt(s) for s in part["seeds"]]
    return out


def paper_table() -> pd.DataFrame:
    return pd.DataFrame([{"Method": display(name), **{LABELS[m]: fmt(v) for m, v in zip(METRICS, values, strict=True)}}
                         for name, values in PAPER_TABLE1.items()])


def fitting(folder: Path, config: dict, problems: list[str]) -> tuple[pd.DataFrame | None, str]:
    frame = read_csv(folder / "training.csv", ["seed"], problems)
    text = ("Fixed budgets, no early stopping: the neural towers train for a set number of epochs, EASE, the "
            "denoising two-tower and item-kNN are closed form. The README explains the budget: with the paper's "
            "35 epochs the MSE two-tower overfits (higher test RMSE than at 10), see the paper-settings table.")
    if frame is None:
        return None, text
    rows = []
    for column in [c for c in frame.columns if c.endswith("_seconds")]:
        prefix = column.removesuffix("_seconds")
        model, budget = FITTED.get(prefix, (prefix, None))
        seconds = pd.to_numeric(frame[column], errors="coerce").dropna().tolist()
        rows.append({"Model": display(model),
                     "Training": f"{fmt(config.get(budget))} epochs (fixed)" if budget and budget in config else "closed form",
                     "Seconds per seed": format_mean_std(*mean_std(seconds), 1).replace(" (1 seed)", "")})
    return (pd.DataFrame(rows) if rows else None), text


def verdicts_from_file(folder: Path, protocol: str, problems: list[str]) -> pd.DataFrame | None:
    frame = read_csv(folder / "ttests.csv", [], [])
    if frame is None:
        return None
    if "protocol" in frame:
        frame = frame[frame["protocol"] == protocol]
    return from_ttests(frame) if not frame.empty else None


def section(folder: Path) -> Section:
    problems: list[str] = []
    config = settings(folder)
    summary = numbers(read_csv(folder / "evaluation.csv", ["protocol", "method"], problems), problems, "evaluation.csv")
    seeds = read_csv(folder / "evaluation_per_seed.csv", ["protocol", "method", "seed"], problems)
    if seeds is not None:
        seeds = numeric(seeds, list(METRICS), problems, "evaluation_per_seed.csv")
    fit_table, fit_text = fitting(folder, config, problems)
    paper_summary = numbers(read_csv(folder / "paper-settings" / "evaluation.csv", ["protocol", "method"], problems),
                            problems, "paper-settings/evaluation.csv")
    reports = []
    for key, name, words in PROTOCOLS:
        rep = Report(key=key, name=name, metrics=dict(LABELS), default_metric=METRIC,
                     default_reference=display(REFERENCE), problems=list(problems),
                     commands=[("evaluation.csv, evaluation_per_seed.csv, evaluation.md", COMMAND),
                               ("paper-settings/ (the paper's 35 epochs, 1 seed)", PAPER_COMMAND)])
        n_seeds = fmt(summary["seeds"].max()) if summary is not None and "seeds" in summary else "?"
        rep.protocol = (f"{words[0].upper()}{words[1:]}. Each of {n_seeds} seeds re-draws the split, the halves and "
                        "the initialisation; values are mean ± sample std over seeds. Budgets are the `--quick` "
                        f"settings: MSE two-tower {config.get('mse_epochs', '?')} epochs, implicit two-tower "
                        f"{config.get('implicit_epochs', '?')} epochs, K-means / GMM with k = "
                        f"{config.get('cluster_k', '?')}.")
        if summary is None or summary[summary["protocol"] == key].empty:
            rep.status_text = f"No {key}-user rows in evaluation.csv: run `{COMMAND}`."
            reports.append(rep)
            continue
        rep.status, rep.status_text = "done", f"{n_seeds} seeds, quick settings (fixed epoch budgets)"
        rep.ours = [Table("Ours (Kaggle anime sample, mean ± std over seeds)", table(summary, key))]
        if key == "unseen":
            rep.paper = [Table("The paper's Table 1", paper_table(),
                               "On the paper's own split of the full data; methods it does not report are absent.")]
        if paper_summary is not None and not paper_summary[paper_summary["protocol"] == key].empty:
            rep.extra = [Table("With the paper's 35 MSE epochs (paper-settings/, 1 seed)", table(paper_summary, key))]
        rep.models = [display(m) for m in summary.loc[summary["protocol"] == key, "method"]]
        part = seeds[seeds["protocol"] == key] if seeds is not None else None

        def compare(metric: str, reference: str, part=part) -> pd.DataFrame:
            if part is None or part.empty or metric not in part:
                return pd.DataFrame()
            values = {display(m): g[metric].tolist() for m, g in part.groupby("method", sort=False)}
            return compare_samples(values, reference, metric)

        rep.compare = compare
        committed = verdicts_from_file(folder, key, problems)
        if committed is not None:
            rep.verdicts, rep.verdict_source = committed, "ttests.csv (committed)"
        else:
            rep.verdicts = compare(METRIC, display(REFERENCE))
            rep.verdict_source = ("computed here from evaluation_per_seed.csv (the committed ttests.csv has no "
                                  "Holm column): Welch over seeds, Holm across the methods of this protocol")
        rep.convergence, rep.convergence_text = fit_table, fit_text
        reports.append(rep)
    rmse = read_csv(folder / "rmse.csv", ["predictor"], [])
    if rmse is not None and "test_rmse mean" in rmse and reports:
        reports[-1].extra.append(Table("Rating prediction: test RMSE (lower is better)", pd.DataFrame({
            "Predictor": rmse["predictor"].astype(str),
            "RMSE": [format_mean_std(m, s, 4) for m, s in zip(rmse["test_rmse mean"],
                                                               rmse.get("test_rmse std", [float("nan")] * len(rmse)),
                                                               strict=True)]})))
    return Section(
        key="two-towers", title="Two Towers: anime recommendations",
        paper="*Two Towers* (anime recommendations with a two-tower model, K-means / GMM retrieval and popularity), "
              "Table 1 and Figures 3-4.",
        reports=reports, documents=documents(folder, [("README.md", "Findings and how they were produced (README)"),
                                                      ("fidelity.md", "The paper against the code (fidelity.md)"),
                                                      ("evaluation.md", "Every table of the evaluation (evaluation.md)")]),
    )
