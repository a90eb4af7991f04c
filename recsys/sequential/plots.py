"""The sensitivity plots of the reproduction (the paper's Figures 9-11), written as PNG files."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from recsys.sequential.stats import METRIC_LABELS

SWEEP_LABELS = {"n_layers": "Transformer layers L (Fig. 9)", "embedding_dim": "embedding size M (Fig. 10)",
                "lambda_cl": "lambda (Fig. 11)"}


def plot_sweep(frame: pd.DataFrame, param: str, path: Path, title: str) -> None:
    """HR@10 and NDCG@10 (mean ± std over seeds) against the values of ``param``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.5, 3.2))
    grouped = frame.groupby("value")[["hit@10", "ndcg@10"]].agg(["mean", "std"]).sort_index()
    xs = grouped.index.to_numpy(dtype=float)
    for metric in ("hit@10", "ndcg@10"):
        ax.errorbar(xs, grouped[(metric, "mean")], yerr=grouped[(metric, "std")].fillna(0), marker="o", capsize=3,
                    label=METRIC_LABELS[metric])
    ax.set_xlabel(param)
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
