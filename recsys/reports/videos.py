"""The DCDT paper (linear-algebra videos): Tables 2 and 3, ours beside the paper's, with verdicts.

Read from ``docs/results/videos/`` (``python -m recsys evaluate videos``): ``table2_test.csv`` and
``table3_test.csv`` hold mean and sample std over seeds; deterministic baselines (BM25, collaborative
filtering, embedding cosine) have one value. When a per-seed file (``*per_seed*.csv`` with ``model``,
``seed`` and the metric columns) is present, the tests use the seeds themselves; otherwise they are computed
from the means and stds (:func:`recsys.reports.compare_summary`), which gives the same Welch t.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from recsys.eval.tables import format_mean_std
from recsys.eval.videos import METRIC_LABELS, METRICS, PAPER_TABLE2, PAPER_TABLE3
from recsys.reports import (
    DASH,
    Report,
    Section,
    Table,
    compare_samples,
    compare_summary,
    documents,
    fmt,
    missing,
    numeric,
    read_csv,
    read_json,
)

COMMAND = "python -m recsys evaluate videos --split test --seeds 5 --jobs 2"
TABLES = (  # file, tab name, our reference model, the paper's rows
    ("table2_test.csv", "Table 2: DCDT vs baselines", "DCDT", PAPER_TABLE2),
    ("table3_test.csv", "Table 3: ablation", "DCDT (dual tower)", PAPER_TABLE3),
)
PAPER_CAPTION = ("The paper states no cutoffs (its figures are placed under hit@1, R@5, F1@5 and MRR@10), its F1 is "
                 "the harmonic mean of its Accuracy and Recall, and it reports no precision or NDCG "
                 "(recsys.eval.videos.PAPER_TABLE2).")
DEFAULT_METRIC = "mrr@10"  # the paper's ranking metric (its Tables 2 and 3 report Accuracy, Recall, F1, MRR)


def protocol(info: dict | None) -> str:
    info = info or {}
    train = info.get("train") if isinstance(info.get("train"), dict) else {}
    seeds = info.get("seeds", "several")
    languages = info.get("queries_by_language")
    in_languages = f" in {len(languages)} languages" if isinstance(languages, dict) and languages else ""
    return (
        f"Every query of the held-out test split ({info.get('n_queries', '?')} questions{in_languages}) is "
        f"scored against the whole catalogue ({info.get('n_videos', '?')} real teaching videos), nothing sampled; "
        "the ranked list is compared with the query's labelled relevant videos. Accuracy = the first video is "
        "relevant, P@5 / R@5 / F1@5 over the top five, MRR@10 and NDCG@10 over the top ten. Trained models "
        f"(DCDT, the single tower and DCDT's ablations) run with {seeds} seeds (mean ± sample std); BM25, "
        "collaborative filtering and the zero-shot embedding cosine are deterministic (one value). "
        f"Embedder {info.get('embedder', '?')}; up to {train.get('epochs', '?')} epochs with early stopping "
        f"(patience {train.get('patience', '?')} on validation {train.get('monitor', '?')}). "
        "The paper's figures come from its own 46-video data set: context, not a target."
    )


def our_table(frame: pd.DataFrame) -> pd.DataFrame:
    out = pd.DataFrame({"Model": frame["model"].astype(str)})
    for metric in METRICS:
        if metric in frame:
            std = frame[f"{metric}_std"] if f"{metric}_std" in frame else [float("nan")] * len(frame)
            out[METRIC_LABELS[metric]] = [format_mean_std(m, s, 4) for m, s in zip(frame[metric], std, strict=True)]
    return out


def paper_table(rows: dict) -> pd.DataFrame:
    """The paper's rows under our column names; metrics it does not report are left out, not dashed."""
    reported = [m for m in METRICS if any(m in values for values in rows.values())]
    return pd.DataFrame([{"Model": model, **{METRIC_LABELS[m]: fmt(values.get(m), 3) for m in reported}}
                         for model, values in rows.items()])


def convergence(frame: pd.DataFrame, info: dict | None) -> tuple[pd.DataFrame | None, str]:
    trained = frame[frame["best_epoch_mean"].notna()] if "best_epoch_mean" in frame else frame.iloc[0:0]
    if trained.empty:
        return None, "This table's file records no best epochs."
    train = (info or {}).get("train") or {}
    limit = train.get("epochs")
    table = pd.DataFrame({
        "Model": trained["model"].astype(str),
        "Best epoch (mean over seeds)": [fmt(v, 1) for v in trained["best_epoch_mean"]],
        "Maximum epochs": fmt(limit) if limit else DASH,
        "Final training loss": [fmt(v) for v in trained.get("final_train_loss_mean", [None] * len(trained))],
        "Seconds per seed": [fmt(v, 1) for v in trained.get("train_seconds_mean", [None] * len(trained))],
    })
    worst = float(trained["best_epoch_mean"].max())
    below = (f"the latest mean best epoch ({fmt(worst, 1)}) is below the {fmt(limit)}-epoch maximum" if limit and worst < limit
             else "some runs may have reached the maximum epoch count")
    text = (f"Early stopping on validation {train.get('monitor', 'MRR@10')} with patience {train.get('patience', '?')}: "
            f"{below}. Per-epoch learning curves are not stored for these tables (train DCDT in the Training "
            "studio to watch one).")
    return table, text


def per_seed(folder: Path, problems: list[str]) -> pd.DataFrame | None:
    for path in sorted(folder.glob("*per_seed*.csv")):
        frame = read_csv(path, ["model", "seed"], problems)
        if frame is not None:
            return numeric(frame, METRICS, problems, path.name)
    return None


def report(folder: Path, file: str, name: str, reference: str, paper: dict, info: dict | None,
           seeds_frame: pd.DataFrame | None, problems: list[str]) -> Report:
    rep = Report(key=file.removesuffix(".csv"), name=name, metrics=dict(METRIC_LABELS),
                 default_metric=DEFAULT_METRIC, default_reference=reference, protocol=protocol(info),
                 commands=[(f"{file}, tables_test.md", COMMAND)], problems=list(problems))
    rep.paper = [Table("The paper (its own 46-video data, not ours)", paper_table(paper), PAPER_CAPTION)]
    frame = read_csv(folder / file, ["model", DEFAULT_METRIC], rep.problems)
    if frame is None:
        rep.status_text = f"No {file} in {folder}: run `{COMMAND}`."
        return rep
    frame = numeric(frame, [c for c in frame.columns if c != "model"], rep.problems, file)
    rep.status, rep.status_text = "done", f"{(info or {}).get('seeds', '?')} seeds, test split"
    rep.ours = [Table("Ours (test split, mean ± std over seeds)", our_table(frame),
                      "A single value is a deterministic model (same at every seed).")]
    rep.models = frame["model"].astype(str).tolist()
    seeds_default = (info or {}).get("seeds")
    seeds_default = seeds_default if isinstance(seeds_default, int) and seeds_default > 1 else 2

    def compare(metric: str, ref: str) -> pd.DataFrame:
        if seeds_frame is not None and metric in seeds_frame:
            shown = seeds_frame[seeds_frame["model"].astype(str).isin(rep.models)]
            if ref in set(shown["model"].astype(str)):
                return compare_samples({m: g[metric].tolist() for m, g in shown.groupby("model", sort=False)},
                                       ref, metric)
        std = frame.get(f"{metric}_std", pd.Series([float("nan")] * len(frame), index=frame.index))
        seeds = frame.get("seeds", pd.Series([float("nan")] * len(frame), index=frame.index))
        rows = {}
        for model, mean, s, n in zip(frame["model"].astype(str), frame[metric], std, seeds, strict=True):
            n = 1 if missing(s) else int(n) if not missing(n) else int(seeds_default)
            rows[model] = (mean, s, n)
        return compare_summary(rows, ref, metric)

    rep.compare = compare
    rep.verdicts = compare(DEFAULT_METRIC, reference)
    rep.verdict_source = ("Welch t-tests over the per-seed values" if seeds_frame is not None else
                          "Welch t-tests from the committed means and sample stds (no per-seed file); against a "
                          "deterministic model this is a one-sample t-test of the seeds against its value")
    rep.convergence, rep.convergence_text = convergence(frame, info)
    return rep


def section(folder: Path) -> Section:
    problems: list[str] = []
    info = read_json(folder / "info_test.json", problems)
    seeds_frame = per_seed(folder, problems)
    reports = [report(folder, file, name, ref, paper, info, seeds_frame, problems)
               for file, name, ref, paper in TABLES]
    return Section(
        key="dcdt", title="DCDT: linear-algebra video search",
        paper="Ye Jin, *Deep Learning-Based Dual-Tower Contrastive Recommendation System* (Tables 2 and 3).",
        reports=reports, documents=documents(folder, [("tables_test.md", "All test tables (tables_test.md)"),
                                                      ("README.md", "How these results were produced (README)"),
                                                      ("bench.md", "Latency (bench.md)")]),
    )
