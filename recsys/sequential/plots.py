"""The sensitivity plots of the reproduction (the paper's Figures 9-11), written as PNG files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from recsys.sequential.stats import METRIC_LABELS

SWEEP_LABELS = {"n_layers": "Transformer layers L (Fig. 9)", "embedding_dim": "embedding size M (Fig. 10)",
                "lambda_cl": "lambda (Fig. 11)"}
#: what the paper's figures plot: HR and Recall (panels a and b)
SWEEP_METRICS = ("hit@10", "recall@50")


def sweep_points(frame: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Per value of the swept parameter: mean, sample std and count over seeds of ``metric``."""
    return frame.dropna(subset=[metric]).groupby("value")[metric].agg(["mean", "std", "count"]).sort_index()


def plot_sweep(frame: pd.DataFrame, param: str, path: Path, title: str) -> dict[str, list[str]]:
    """HR@10 and Recall@50 (mean ± sample std over seeds, one panel each) against the values of ``param``.

    The ticks are exactly the values tried, so an integer parameter (layers, embedding size) never
    gets fractional ticks; the embedding size is on a log2 axis because its values double; a
    fractional parameter (lambda: 0, 0.1, 0.5, 1, 2) is spaced evenly by rank, or 0 and 0.1 collide.
    Returns the tick labels of each panel (by metric).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = [m for m in SWEEP_METRICS if m in frame and frame[m].notna().any()]
    fig, axes = plt.subplots(1, max(len(metrics), 1), figsize=(4.2 * max(len(metrics), 1), 3.2), squeeze=False)
    values = np.sort(frame["value"].astype(float).unique())
    integer = bool(np.all(values == np.round(values)))
    ticks: dict[str, list[str]] = {}
    for ax, metric in zip(axes[0], metrics, strict=False):
        points = sweep_points(frame, metric)
        xs = points.index.to_numpy(dtype=float)
        positions = xs if integer else np.searchsorted(values, xs)
        ax.errorbar(positions, points["mean"], yerr=points["std"].fillna(0), marker="o", capsize=4)
        if param == "embedding_dim":
            ax.set_xscale("log", base=2)
        ax.set_xticks(values if integer else np.arange(len(values)))
        ticks[metric] = [f"{v:.0f}" if integer else f"{v:g}" for v in values]
        ax.set_xticklabels(ticks[metric])
        ax.minorticks_off()
        seeds = int(points["count"].min()) if len(points) else 0
        ax.set_xlabel(param)
        ax.set_ylabel(f"{METRIC_LABELS[metric]} (mean ± std, {seeds}+ seeds)")
        ax.grid(alpha=0.3)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return ticks
