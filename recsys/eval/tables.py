"""Mean ± std over seeds and Markdown tables: the one implementation every experiment uses.

Experiments report each metric as the mean over seeds with the sample standard deviation
(``ddof=1``); a single seed has no spread, which is shown as "(1 seed)" rather than a
misleading ``± 0``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np


def mean_std(values: Iterable[float]) -> tuple[float, float]:
    """``(mean, sample std)``; std is NaN for fewer than two values, both NaN for none."""
    array = np.asarray([v for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))],
                       dtype=np.float64)
    if array.size == 0:
        return float("nan"), float("nan")
    return float(array.mean()), float(array.std(ddof=1)) if array.size > 1 else float("nan")


def aggregate(runs: Sequence[Mapping[str, float]]) -> dict[str, tuple[float, float]]:
    """``{metric: (mean, std)}`` over runs (one mapping per seed)."""
    return {name: mean_std(run[name] for run in runs) for name in runs[0]} if runs else {}


def format_mean_std(mean: float, std: float, digits: int = 3) -> str:
    if mean is None or math.isnan(mean):
        return "–"
    if std is None or math.isnan(std):
        return f"{mean:.{digits}f} (1 seed)"
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def format_cell(value: Any, digits: int = 3) -> str:
    """A table cell: ``(mean, std)`` tuples as mean ± std, floats rounded, None/NaN as a dash."""
    if value is None:
        return "–"
    if isinstance(value, tuple) and len(value) == 2:
        return format_mean_std(value[0], value[1], digits)
    if isinstance(value, (float, np.floating)):
        return "–" if math.isnan(value) else f"{value:.{digits}f}"
    return str(value)


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[Any]], digits: int = 3) -> str:
    """A GitHub Markdown table; cells go through :func:`format_cell`."""
    lines = ["| " + " | ".join(map(str, header)) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(format_cell(cell, digits) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def frame_to_markdown(frame, digits: int = 4) -> str:
    """A pandas DataFrame as a Markdown table (no tabulate dependency)."""
    return markdown_table([str(c) for c in frame.columns], frame.itertuples(index=False, name=None), digits)
