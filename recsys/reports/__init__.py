"""What the Results page shows for each paper, read from the committed tables in ``docs/results/``. UI-free.

Why a package of its own: a reviewer must get the same numbers on the page, in a test and in a notebook, and
the page itself stays UI only. Each paper is a :class:`Section` of one or more :class:`Report` (a data set, a
protocol or one of the paper's tables); a report holds our table, the paper's own figures, verdicts (Welch
t-tests with direction, Cohen's d and Holm correction from :mod:`recsys.eval.stats`), convergence evidence and
the command that regenerates it. A missing or malformed file becomes a sentence in ``Report.problems``, never
an exception, so one broken CSV cannot take the page down.

Numbers leave this package as display strings: 4 decimals, p-values below 1e-4 as "< 0.0001", and a dash
(never "None" or "nan") where there is nothing to show.
"""

from __future__ import annotations

import json
import math
import os
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from recsys.eval import stats
from recsys.eval.tables import format_mean_std, mean_std
from recsys.paths import PROJECT_ROOT

#: environment variable naming the results root (default ``docs/results``); tests point it at fixtures
REPORTS_ENV = "RECSYS_REPORTS_DIR"
DASH = "–"
DIGITS = 4


def results_root() -> Path:
    """``$RECSYS_REPORTS_DIR`` or the committed ``docs/results`` folder."""
    return Path(os.environ.get(REPORTS_ENV, PROJECT_ROOT / "docs" / "results"))


# ----------------------------------------------------------------------------------------- formatting
def missing(value: Any) -> bool:
    if value is None:
        return True
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def fmt(value: Any, digits: int = DIGITS) -> str:
    """A number for a table cell: whole numbers as integers, others rounded; a dash for None/NaN."""
    if missing(value):
        return DASH
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    if isinstance(value, (float, np.floating)):
        return str(int(value)) if float(value).is_integer() and abs(value) < 1e9 else f"{value:.{digits}f}"
    return str(value)


def fmt_p(p: Any) -> str:
    """A p-value: 4 decimals, "< 0.0001" below that (a 17-digit 2.1e-05 says nothing more)."""
    if missing(p):
        return DASH
    return "< 0.0001" if p < 1e-4 else f"{p:.4f}"


def cell(values: Sequence[float]) -> str:
    """Mean ± sample std of per-seed values (:mod:`recsys.eval.tables`), "(1 seed)" for one value."""
    mean, std = mean_std(values)
    return format_mean_std(mean, std, DIGITS)


def display(name: str) -> str:
    """The registry's display name of a model (the name itself when it is not registered)."""
    from recsys import registry

    try:
        return registry.get(str(name)).display_name
    except KeyError:
        return str(name)


# ----------------------------------------------------------------------------------------- reading
def read_csv(path: Path, required: Sequence[str], problems: list[str], optional_rows: bool = False) -> pd.DataFrame | None:
    """The CSV at ``path`` if it exists, parses and has ``required`` columns; else None and a problem line.

    ``optional_rows``: a header without rows is no problem (an experiment that was not run, or has no
    finished job yet); None is returned without a word.
    """
    if not path.exists():
        return None
    try:
        frame = pd.read_csv(path)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, OSError, ValueError) as error:
        problems.append(f"{path.name}: could not be read ({type(error).__name__}: {str(error)[:200]})")
        return None
    lacking = [c for c in required if c not in frame.columns]
    if lacking:
        problems.append(f"{path.name}: missing column(s) {', '.join(lacking)}")
        return None
    if frame.empty:
        if not optional_rows:
            problems.append(f"{path.name}: no rows")
        return None
    return frame


def read_json(path: Path, problems: list[str]) -> dict[str, Any] | None:
    """The JSON object at ``path`` if it exists and is an object; else None and a problem line."""
    if not path.exists():
        return None
    try:
        value = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        problems.append(f"{path.name}: not valid JSON ({str(error)[:200]})")
        return None
    if not isinstance(value, dict):
        problems.append(f"{path.name}: expected a JSON object, found {type(value).__name__}")
        return None
    return value


def numeric(frame: pd.DataFrame, columns: Sequence[str], problems: list[str], name: str) -> pd.DataFrame:
    """``columns`` coerced to finite numbers; text (or an infinity) where numbers belong is reported and blanked."""
    frame = frame.copy()
    for column in columns:
        if column not in frame:
            continue
        values = pd.to_numeric(frame[column], errors="coerce").replace([np.inf, -np.inf], np.nan)
        bad = int(values.isna().sum() - frame[column].isna().sum())
        if bad:
            problems.append(f"{name}: {bad} non-numeric value(s) in column {column} ignored")
        frame[column] = values
    return frame


# ----------------------------------------------------------------------------------------- verdicts
def compare_samples(values: Mapping[str, Sequence[float]], reference: str, metric: str) -> pd.DataFrame:
    """Every model against ``reference`` on per-seed values (:func:`recsys.eval.stats.comparison_table`)."""
    values = {name: [float(v) for v in vals if not missing(v)] for name, vals in values.items()}
    values = {name: vals for name, vals in values.items() if vals}
    if reference not in values:
        return pd.DataFrame(columns=list(stats.COLUMNS))
    with warnings.catch_warnings():  # a seed-independent model (most popular) makes scipy warn; t is still right
        warnings.simplefilter("ignore", RuntimeWarning)
        return stats.comparison_table(values, reference, metric)


def compare_summary(rows: Mapping[str, tuple[float, float, int]], reference: str, metric: str) -> pd.DataFrame:
    """The same table from ``{model: (mean, std, n)}`` when only means and stds were committed.

    Welch's t from the summary statistics (``scipy.stats.ttest_ind_from_stats``) equals the t of the raw
    seeds. A deterministic model (one value, no std: BM25, cosine) scores the same at every seed, so its
    variance is zero; Welch then reduces to a one-sample t-test of the trained model's seeds against that
    value with n - 1 degrees of freedom, which is what is computed. Cohen's d divides by the pooled std.
    """
    from scipy.stats import ttest_ind_from_stats

    if reference not in rows:
        return pd.DataFrame(columns=list(stats.COLUMNS))

    def spread(row):
        mean, std, n = row
        return (mean, 0.0, 2) if missing(std) or n < 2 else (mean, float(std), int(n))

    ref_mean, ref_std, ref_n = spread(rows[reference])
    out = []
    for model, row in rows.items():
        if model == reference or missing(row[0]):
            continue
        mean, std, n = spread(row)
        t = p = d = float("nan")
        if std > 0 or ref_std > 0:
            t, p = (float(x) for x in ttest_ind_from_stats(mean, std, n, ref_mean, ref_std, ref_n, equal_var=False))
            n_a, n_b = (n if std > 0 else 1), (ref_n if ref_std > 0 else 1)
            pooled = math.sqrt(((n_a - 1) * std**2 + (n_b - 1) * ref_std**2) / max(n_a + n_b - 2, 1))
            d = (mean - ref_mean) / pooled if pooled > 0 else float("nan")
        out.append({"metric": metric, "model": model, "reference": reference, "mean_model": mean,
                    "mean_reference": ref_mean, "diff": mean - ref_mean, "cohens_d": d, "t": t, "p": p,
                    "n_model": row[2], "n_reference": rows[reference][2]})
    table = pd.DataFrame(out, columns=[c for c in stats.COLUMNS if c not in ("p_holm", "verdict")])
    table["p_holm"] = stats.holm(table["p"].tolist())
    table["verdict"] = [stats.verdict(m, reference, d, p) for m, d, p in
                        zip(table["model"], table["diff"], table["p_holm"], strict=True)]
    return table[list(stats.COLUMNS)]


def from_ttests(frame: pd.DataFrame, name: Callable[[str], str] = display) -> pd.DataFrame | None:
    """A committed t-test file in :data:`recsys.eval.stats.COLUMNS`, with display names and verdicts in them;
    None when the file predates those columns (the caller then recomputes from the per-seed file)."""
    if not set(stats.COLUMNS) <= set(frame.columns):
        return None
    table = frame[list(stats.COLUMNS)].copy()
    for column in ("mean_model", "mean_reference", "diff", "cohens_d", "t", "p", "p_holm"):
        table[column] = pd.to_numeric(table[column], errors="coerce")
    table["model"] = [name(m) for m in table["model"]]
    table["reference"] = [name(r) for r in table["reference"]]
    table["verdict"] = [stats.verdict(m, r, d, p) for m, r, d, p in
                        zip(table["model"], table["reference"], table["diff"], table["p_holm"], strict=True)]
    return table


def verdict_view(table: pd.DataFrame, labels: Mapping[str, str]) -> pd.DataFrame:
    """A comparison table (:data:`~recsys.eval.stats.COLUMNS`) as display strings for the page."""
    return pd.DataFrame({
        "Comparison": [f"{m} vs {r}" for m, r in zip(table["model"], table["reference"], strict=True)],
        "Metric": [labels.get(m, m) for m in table["metric"]],
        "Means": [f"{fmt(a)} vs {fmt(b)}" for a, b in zip(table["mean_model"], table["mean_reference"], strict=True)],
        "Difference": [DASH if missing(d) else f"{d:+.4f}" for d in table["diff"]],
        "Cohen's d": [DASH if missing(d) else f"{d:.2f}" for d in table["cohens_d"]],
        "p (Welch)": [fmt_p(p) for p in table["p"]],
        "p (Holm)": [fmt_p(p) for p in table["p_holm"]],
        "Seeds": [f"{fmt(a)} vs {fmt(b)}" for a, b in zip(table["n_model"], table["n_reference"], strict=True)],
        "Verdict": [str(v) for v in table["verdict"]],
    })


def sentences(table: pd.DataFrame | None, labels: Mapping[str, str]) -> list[str]:
    """The leader, then one plain sentence per comparison, significant ones first (smallest Holm p first):
    "HR@10, SASRec vs CL-EPIDTN: SASRec better than CL-EPIDTN (Holm p = ...)"."""
    if table is None or table.empty:
        return []
    out = []
    for metric, part in table.groupby("metric", sort=False):
        means = {**dict(zip(part["model"], part["mean_model"], strict=True)),
                 **dict(zip(part["reference"], part["mean_reference"], strict=True))}
        means = {k: v for k, v in means.items() if not missing(v)}
        if means:
            best = max(means, key=means.get)
            out.append(f"{labels.get(metric, metric)}: highest mean is {best} ({fmt(means[best])}).")
    ranked = table.assign(_p=table["p_holm"].fillna(2.0)).sort_values("_p", kind="stable")
    return out + [f"{labels.get(m, m)}, {a} vs {b}: {v}"
                  for m, a, b, v in zip(ranked["metric"], ranked["model"], ranked["reference"], ranked["verdict"], strict=True)]


# ----------------------------------------------------------------------------------------- reports
@dataclass
class Table:
    """A table ready to show: display strings only, with what it is and where it comes from."""

    title: str
    frame: pd.DataFrame
    caption: str = ""


@dataclass
class Report:
    """One tab of a paper's section: a data set, a protocol or one of the paper's tables."""

    key: str
    name: str
    status: str = "missing"  # converged | quick | incomplete | done | missing
    status_text: str = ""
    protocol: str = ""
    ours: list[Table] = field(default_factory=list)
    paper: list[Table] = field(default_factory=list)
    metrics: dict[str, str] = field(default_factory=dict)  # metric key -> label, for the verdict pickers
    models: list[str] = field(default_factory=list)  # display names a verdict can take as reference
    default_metric: str = ""
    default_reference: str = ""
    verdicts: pd.DataFrame | None = None  # stats.COLUMNS with display names
    verdict_source: str = ""
    compare: Callable[[str, str], pd.DataFrame] | None = None  # (metric, reference) -> stats.COLUMNS
    convergence: pd.DataFrame | None = None
    convergence_text: str = ""
    curves: pd.DataFrame | None = None  # model (display), seed, split, epoch, train_loss, val_metric(_name)
    sweeps: pd.DataFrame | None = None
    extra: list[Table] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    commands: list[tuple[str, str]] = field(default_factory=list)  # (what it regenerates, command)
    problems: list[str] = field(default_factory=list)

    def headline(self) -> list[str]:
        return sentences(self.verdicts, self.metrics)


@dataclass
class Section:
    """One paper: its reports and the Markdown files (README, fidelity) behind them."""

    key: str  # the page anchor: /results#<key>
    title: str
    paper: str
    reports: list[Report]
    documents: list[tuple[str, Path]] = field(default_factory=list)


def documents(folder: Path, names: Sequence[tuple[str, str]]) -> list[tuple[str, Path]]:
    """``(title, path)`` of the Markdown files in ``folder`` that exist."""
    return [(title, folder / name) for name, title in names if (folder / name).is_file()]


def signature(root: Path | None = None) -> tuple:
    """(path, size, mtime) of every result file: a cache key that changes when any table is rewritten."""
    root = Path(root) if root else results_root()
    folders = [root]
    if REPORTS_ENV not in os.environ and os.environ.get("RECSYS_RESULTS_DIR"):
        folders.append(Path(os.environ["RECSYS_RESULTS_DIR"]))
    out = []
    for folder in folders:
        for path in sorted(folder.rglob("*")) if folder.is_dir() else []:
            try:
                info = path.stat()
            except OSError:
                continue
            out.append((str(path), info.st_size, info.st_mtime_ns))
    return tuple(out)


def sections(root: Path | None = None) -> list[Section]:
    """The three papers, in the order of the Home page."""
    from recsys.reports import anime, sequential, videos

    from recsys.sequential import RESULTS_ENV

    explicit = root is not None or REPORTS_ENV in os.environ
    root = Path(root) if root else results_root()
    # the reproduction's own override (``$RECSYS_RESULTS_DIR``) still moves the CL-EPIDTN folder
    cl_folder = root / "cl-epidtn" if explicit or RESULTS_ENV not in os.environ else Path(os.environ[RESULTS_ENV])
    return [videos.section(root / "videos"), anime.section(root / "anime"), sequential.section(cl_folder)]
