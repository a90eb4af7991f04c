"""Per-seed runs into the reproduction's tables: mean ± std per model and Welch t-tests.

Means and sample standard deviations come from :mod:`recsys.eval.tables` (the one
implementation every experiment uses); display names from the registry.
"""

from __future__ import annotations

import math

import pandas as pd

from recsys import registry
from recsys.eval.sequential import LOO_METRICS, RATIO_METRICS
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


def summarise(runs: pd.DataFrame) -> pd.DataFrame:
    """Mean and std over seeds per model (``<metric>_mean``, ``<metric>_std``, ``<metric>_n``)."""
    rows = []
    for model, group in runs.groupby("model", sort=False):
        row = {"model": model, "display": display_name(model)}
        for metric in ALL_METRICS:
            values = group[metric].dropna().tolist() if metric in group else []
            row[f"{metric}_mean"], row[f"{metric}_std"] = mean_std(values)  # std NaN: one seed
            row[f"{metric}_n"] = len(values)
        row["train_seconds"] = float(group["seconds"].mean())
        rows.append(row)
    return pd.DataFrame(rows)


def pretty_table(summary: pd.DataFrame) -> pd.DataFrame:
    """The summary as display strings: ``mean ± std`` per metric, training seconds."""
    out = pd.DataFrame({"Model": summary["display"]})
    for metric in ALL_METRICS:
        out[METRIC_LABELS[metric]] = [format_mean_std(m, s, digits=4)
                                      for m, s in zip(summary[f"{metric}_mean"], summary[f"{metric}_std"], strict=True)]
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
            "baseline": display_name(model), "model": model,
            f"{reference} mean": float(ref.mean()) if len(ref) else float("nan"),
            "baseline mean": float(other.mean()) if len(other) else float("nan"),
            "t": float(stat), "p": float(p), "n_seeds": f"{len(ref)} vs {len(other)}",
            "significant (p<0.05)": "yes" if p < 0.05 else ("no" if not math.isnan(p) else "n/a"),
        })
    return pd.DataFrame(rows)
