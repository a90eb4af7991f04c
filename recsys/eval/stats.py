"""Significance tests over seeds, written once for every results table.

Each comparison says *which side is better*, by how much (mean difference and Cohen's d), and how sure we
are after correcting for the number of comparisons in the same table (Holm-Bonferroni, which controls the
family-wise error rate without assuming independence and is never less powerful than plain Bonferroni).
Welch's t-test is used because seeds of different models have different spreads; with fewer than two values
on a side, or no spread on both sides, no test is reported (NaN) rather than a meaningless t.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

ALPHA = 0.05

#: Columns of every comparison table (``comparison_table``); the Results page reads these names.
COLUMNS = ("metric", "model", "reference", "mean_model", "mean_reference", "diff", "cohens_d", "t", "p",
           "p_holm", "n_model", "n_reference", "verdict")


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm-adjusted p-values, in the input order; NaN stays NaN and is not counted as a comparison.

    Sorted ascending, the i-th smallest of m p-values is multiplied by (m - i), made monotone by a running
    maximum and capped at 1. Example: [0.01, 0.04, 0.03] -> sorted 0.01, 0.03, 0.04 -> 0.03, 0.06, 0.04
    -> running max 0.03, 0.06, 0.06 -> in input order [0.03, 0.06, 0.06].
    """
    values = [float(p) for p in pvalues]
    finite = [i for i, p in enumerate(values) if not math.isnan(p)]
    order = sorted(finite, key=lambda i: values[i])
    adjusted = [float("nan")] * len(values)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(order) - rank) * values[i]))
        adjusted[i] = running
    return adjusted


def cohens_d(a: Sequence[float], b: Sequence[float]) -> float:
    """(mean a - mean b) / pooled sample standard deviation; NaN when it cannot be estimated."""
    a, b = np.asarray(a, float), np.asarray(b, float)
    if len(a) < 2 or len(b) < 2:
        return float("nan")
    pooled = math.sqrt(((len(a) - 1) * a.var(ddof=1) + (len(b) - 1) * b.var(ddof=1)) / (len(a) + len(b) - 2))
    return float((a.mean() - b.mean()) / pooled) if pooled > 0 else float("nan")


def welch(a: Sequence[float], b: Sequence[float]) -> tuple[float, float]:
    """Welch's t and two-sided p for a vs b; (NaN, NaN) with < 2 values a side or no spread at all."""
    from scipy.stats import ttest_ind

    a, b = np.asarray(a, float), np.asarray(b, float)
    if len(a) < 2 or len(b) < 2 or (a.std() == 0 and b.std() == 0):
        return float("nan"), float("nan")
    result = ttest_ind(a, b, equal_var=False)
    return float(result.statistic), float(result.pvalue)


def verdict(model: str, reference: str, diff: float, p_holm: float, alpha: float = ALPHA) -> str:
    """One plain sentence: who is ahead, and whether the corrected test supports it."""
    if math.isnan(p_holm):
        return "no test (fewer than 2 seeds a side, or no spread)"
    ahead, behind = (model, reference) if diff > 0 else (reference, model)
    if p_holm < alpha:
        return f"{ahead} better than {behind} (Holm p = {p_holm:.3g})"
    return f"no significant difference ({ahead} ahead by {abs(diff):.4f}, Holm p = {p_holm:.3g})"


def comparison_table(values: Mapping[str, Sequence[float]], reference: str, metric: str,
                     alpha: float = ALPHA) -> pd.DataFrame:
    """Every model against ``reference`` on one metric, Holm-corrected across the rows of this table.

    ``values`` maps a model name to its per-seed values. ``diff`` = mean(model) - mean(reference), so a
    positive diff means the model is ahead (for metrics where higher is better).
    """
    ref = list(values[reference])
    rows = []
    for model, vals in values.items():
        if model == reference:
            continue
        t, p = welch(vals, ref)
        rows.append({"metric": metric, "model": model, "reference": reference,
                     "mean_model": float(np.mean(vals)) if len(vals) else float("nan"),
                     "mean_reference": float(np.mean(ref)) if ref else float("nan"),
                     "cohens_d": cohens_d(vals, ref), "t": t, "p": p,
                     "n_model": len(vals), "n_reference": len(ref)})
    table = pd.DataFrame(rows, columns=[c for c in COLUMNS if c not in ("diff", "p_holm", "verdict")])
    table["diff"] = table["mean_model"] - table["mean_reference"]
    table["p_holm"] = holm(table["p"].tolist())
    table["verdict"] = [verdict(m, reference, d, p, alpha)
                        for m, d, p in zip(table["model"], table["diff"], table["p_holm"], strict=True)]
    return table[list(COLUMNS)]
