"""Per-seed runs into the reproduction's tables: mean ± std per model and Welch t-tests (Holm-corrected).

Means and sample standard deviations come from :mod:`recsys.eval.tables` (the one
implementation every experiment uses); display names from the registry.
"""

from __future__ import annotations

import pandas as pd

from recsys import registry
from recsys.eval.sequential import LOO_METRICS, RATIO_METRICS
from recsys.eval.stats import COLUMNS, comparison_table
from recsys.eval.tables import format_mean_std, mean_std

ALL_METRICS = [*LOO_METRICS, *RATIO_METRICS]
METRIC_LABELS = {"hit@10": "HR@10", "hit@50": "HR@50", "ndcg@10": "NDCG@10", "recall@10": "Recall@10",
                 "recall@50": "Recall@50"}


def display_name(name: str) -> str:
    """The registry's display name of ``name`` (the name itself for anything unregistered)."""
    try:
        return registry.get(name, "sequential").display_name
    except KeyError:
        return name


def epoch_budgets(max_epochs: pd.Series) -> str:
    """The epoch budget of one model's runs: one number when they share it, else each run's ("80, 40, 40"
    where one run was re-run with a larger budget, ``reproduce.extend_budget_bound``)."""
    values = [str(int(v)) for v in max_epochs.dropna()]
    return values[0] if len(set(values)) == 1 else ", ".join(values)


def summarise(runs: pd.DataFrame) -> pd.DataFrame:
    """Mean and std over seeds per model (``<metric>_mean``, ``<metric>_std``, ``<metric>_n``).

    ``runs`` has one row per (model, seed, split) job (each metric filled on its own split, NaN on
    the other) or, in the older quick files, one row per (model, seed); CPU seconds (``cpu_seconds``,
    or the older ``seconds``) are averaged per job.
    """
    seconds = "cpu_seconds" if "cpu_seconds" in runs else "seconds"
    rows = []
    for model, group in runs.groupby("model", sort=False):
        row = {"model": model, "display": display_name(model)}
        for metric in ALL_METRICS:
            values = group[metric].dropna().tolist() if metric in group else []
            row[f"{metric}_mean"], row[f"{metric}_std"] = mean_std(values)  # std NaN: one seed
            row[f"{metric}_n"] = len(values)
        row["train_seconds"] = float(group[seconds].mean()) if seconds in group else float("nan")
        rows.append(row)
    return pd.DataFrame(rows)


def pretty_table(summary: pd.DataFrame) -> pd.DataFrame:
    """The summary as display strings: ``mean ± std`` per metric, training seconds."""
    out = pd.DataFrame({"Model": summary["display"]})
    for metric in ALL_METRICS:
        out[METRIC_LABELS[metric]] = [format_mean_std(m, s, digits=4)
                                      for m, s in zip(summary[f"{metric}_mean"], summary[f"{metric}_std"], strict=True)]
    out["CPU s / job"] = [f"{s:.0f}" for s in summary["train_seconds"]]
    return out


#: the paper's two headline metrics (Tables 4-5), each tested on the split that measures it
TEST_METRICS = {"hit@10": "loo", "recall@50": "ratio"}


def ttests(runs: pd.DataFrame, reference: str = "cl-epidtn", metrics: dict[str, str] | None = None) -> pd.DataFrame:
    """Welch t-tests over seeds of ``reference`` against every other model, per metric (paper Table 5).

    One :func:`recsys.eval.stats.comparison_table` per metric (HR@10 on the leave-one-out rows,
    Recall@50 on the ratio rows): direction, Cohen's d, and Holm's correction across the rows of that
    metric's table. Columns are exactly ``recsys.eval.stats.COLUMNS``; empty when the reference has
    no result.
    """
    tables = []
    for metric, split in (metrics or TEST_METRICS).items():
        rows = runs[runs["split"] == split] if "split" in runs else runs
        if metric not in rows:
            continue
        values = {model: group[metric].dropna().tolist() for model, group in rows.groupby("model", sort=False)}
        values = {model: vals for model, vals in values.items() if vals}
        if values.get(reference) and len(values) > 1:
            tables.append(comparison_table(values, reference, metric))
    return pd.concat(tables, ignore_index=True) if tables else pd.DataFrame(columns=list(COLUMNS))
