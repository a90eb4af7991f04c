"""Anime experiments: every registered method on the paper's two protocols over seeds, and latency.

``python -m recsys evaluate anime`` (:func:`run_evaluation`) writes the tables and plots
to ``docs/results/anime`` (or ``--out``); ``bench anime`` (:func:`bench`) the latency per
method. Both iterate ``registry.by_domain("anime")`` through
:meth:`~recsys.anime.serving.AnimeRecommender.rank`; mean ± std and the Markdown tables
come from :mod:`recsys.eval.tables`.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from recsys import registry
from recsys.anime.prep import default_settings
from recsys.anime.serving import AnimeRecommender, get_recommender
from recsys.eval.anime import Histories
from recsys.eval.tables import format_mean_std, frame_to_markdown, markdown_table

log = logging.getLogger(__name__)

DOCS_DIR = Path(__file__).resolve().parents[2] / "docs" / "results" / "anime"
#: what every method is tested against (the strongest baseline on both protocols)
TTEST_BASELINE = "anime-ease"


def serves_unseen(recommender: AnimeRecommender, name: str) -> bool:
    """False for models with a per-user table (their unseen rows would be another method's)."""
    return not getattr(recommender.models[name], "known_users_only", False)


def evaluate_bundle(recommender: AnimeRecommender, protocol_seed: int, k: int = 10,
                    seen_users: int | None = 2000, methods=None) -> list[dict[str, Any]]:
    """Metrics of every method on both protocols for one fitted bundle (one seed)."""
    from recsys.eval.anime import score_rankings, seen_protocol, unseen_protocol

    split = recommender.split
    records = []
    unseen_hist, unseen_targets = unseen_protocol(split.unseen, split.n_items, protocol_seed)
    seen_hist, seen_targets = seen_protocol(split.train, split.test, split.n_users, split.n_items, split.user_ids,
                                            max_users=seen_users, seed=protocol_seed)
    names = [registry.get(m, "anime").name for m in methods or [s.name for s in registry.by_domain("anime")]]
    for protocol, histories, targets in (("unseen", unseen_hist, unseen_targets), ("seen", seen_hist, seen_targets)):
        for method in names:
            if protocol == "unseen" and not serves_unseen(recommender, method):
                continue  # served by the weighted average; reported under its own name
            started = time.perf_counter()
            _, ids, _ = recommender.rank(method, histories, k)
            seconds = time.perf_counter() - started
            metrics = score_rankings(ids, targets)
            records.append({"protocol": protocol, "method": method, "seed": recommender.settings.seed,
                            "users": len(histories), **metrics, "ms_per_user": 1000 * seconds / len(histories)})
    return records


def bench(recommender: AnimeRecommender, methods=None, n_users: int = 200, k: int = 10,
          reference: str = TTEST_BASELINE, block: int = 1) -> pd.DataFrame:
    """p50/p99 latency of one recommendation per method (unseen-protocol users, one at a time).

    The methods take turns every ``block`` users (round robin, the order rotated every turn), so
    a burst of load on a shared machine hits every method alike and the ratio to ``reference``
    (``p50_vs_<reference>``) compares them under the same conditions. ``block`` says which
    server is measured: 1 (default) is the Anime page, which asks every method for the same user,
    so each method finds the CPU caches full of the others' tables (the DLAE item table is 15 MB,
    EASE's 52 MB, against a 32 MB L3 here); a large block (e.g. 25) is a process serving one method,
    whose table stays cached between requests.
    """
    from recsys.eval.anime import unseen_protocol

    histories, _ = unseen_protocol(recommender.split.unseen, recommender.split.n_items, 0)
    users = list(range(min(n_users, len(histories))))
    seen_users = recommender.split.test["user"].unique()[: len(users)]
    names = [registry.get(m, "anime").name for m in methods or [s.name for s in registry.by_domain("anime")]]
    queries = {}
    for method in names:
        per_user = not serves_unseen(recommender, method)
        queries[method] = [recommender.seen_histories(seen_users[row: row + 1]) if per_user else
                           Histories(histories.matrix[row: row + 1], histories.user_ids[row: row + 1])
                           for row in users]
        recommender.rank(method, queries[method][0], k)  # warm-up
    times: dict[str, list[float]] = {method: [] for method in names}
    for turn, start in enumerate(range(0, len(users), block)):
        for i in range(len(names)):
            method = names[(turn + i) % len(names)]
            for row in users[start: start + block]:
                started = time.perf_counter()
                recommender.rank(method, queries[method][row], k)
                times[method].append(1000 * (time.perf_counter() - started))
    table = pd.DataFrame([{"method": m, "p50_ms": float(np.percentile(t, 50)), "p99_ms": float(np.percentile(t, 99)),
                           "users": len(t), "block": block} for m, t in times.items()])
    if reference in times:
        table[f"p50_vs_{reference}"] = table["p50_ms"] / float(np.percentile(times[reference], 50))
    return table


def training_row(recommender: AnimeRecommender) -> dict[str, Any]:
    seconds = recommender.train_info.get("seconds", {})
    return {"seed": recommender.settings.seed, "elbow_k": recommender.elbow.get("best_k"),
            "mse_seconds": seconds.get("anime-two-tower"), "implicit_seconds": seconds.get("anime-two-tower-implicit"),
            "ease_seconds": seconds.get("anime-ease"), "dlae_seconds": seconds.get("anime-two-tower-dlae"),
            "elbow_seconds": seconds.get("elbow"),
            "device": recommender.train_info.get("device")}


def ttests(raw: pd.DataFrame, baseline: str = TTEST_BASELINE, metric: str = "ndcg@10") -> pd.DataFrame:
    """Every method's per-seed ``metric`` against ``baseline``, per protocol (:mod:`recsys.eval.stats`).

    One value per seed and method (each seed re-draws the split, the halves and the
    initialisation), so the test asks whether the difference survives those re-draws:
    Welch's t (unequal variances), Cohen's d, and Holm's correction over the methods of one
    protocol (the family of comparisons a reader scans together). The columns are
    ``protocol`` then :data:`recsys.eval.stats.COLUMNS`, the ones the Results page reads.
    """
    from recsys.eval.stats import COLUMNS, comparison_table

    tables = []
    for protocol, part in raw.groupby("protocol", sort=False):
        values = {method: group.sort_values("seed")[metric].to_numpy()
                  for method, group in part.groupby("method", sort=False)}
        if baseline in values and len(values) > 1:
            tables.append(comparison_table(values, baseline, metric).assign(protocol=protocol))
    if not tables:
        return pd.DataFrame(columns=["protocol", *COLUMNS])
    return pd.concat(tables, ignore_index=True)[["protocol", *COLUMNS]]


def run_evaluation(seeds: int = 3, quick: bool = False, out_dir: Path | None = None, echo=print,
                   seen_users: int | None = 2000) -> dict[str, pd.DataFrame]:
    """Every method on both protocols over ``seeds`` seeds; tables and plots written to ``out_dir``."""
    from tqdm.auto import tqdm

    from recsys.anime.cost import cost_study, plot_lines, popularity_diagnosis
    from recsys.anime.training import rmse_rows
    from recsys.eval.anime import mean_std_table

    out_dir = Path(out_dir or DOCS_DIR)
    out_dir.mkdir(parents=True, exist_ok=True)
    records, rmse_records, infos, first = [], [], [], None
    for seed in tqdm(range(seeds), desc="seeds", unit="seed"):
        settings = default_settings(quick=quick, seed=seed)
        bar = tqdm(total=len(registry.by_domain("anime")) + 1, desc=f"seed {seed}: fit", leave=False)
        recommender = get_recommender(settings, progress=lambda i, n, label: (bar.set_description(label), bar.update(1)))
        bar.close()
        records += evaluate_bundle(recommender, protocol_seed=seed, seen_users=seen_users)
        rmse_records += rmse_rows(recommender)
        infos.append(training_row(recommender))
        first = first or recommender
    raw = pd.DataFrame(records)
    summary = mean_std_table(records, ["protocol", "method"])
    rmse_table = mean_std_table(rmse_records, ["predictor"], metrics=("test_rmse",))
    cost = cost_study(first, ks=sorted({10, 25, 50, 100, 150, 200, 300, int(first.elbow["best_k"])}))
    diagnosis = popularity_diagnosis(first)
    diagnosis.to_csv(out_dir / "diagnosis.csv", index=False)
    raw.to_csv(out_dir / "evaluation_per_seed.csv", index=False)
    tests = ttests(raw)
    tests.to_csv(out_dir / "ttests.csv", index=False)
    summary.to_csv(out_dir / "evaluation.csv", index=False)
    rmse_table.to_csv(out_dir / "rmse.csv", index=False)
    cost.to_csv(out_dir / "cost_study.csv", index=False)
    pd.DataFrame(infos).to_csv(out_dir / "training.csv", index=False)
    elbow = first.elbow
    if elbow["k"]:
        pd.DataFrame({"k": elbow["k"], "inertia": elbow["inertia"]}).to_csv(out_dir / "elbow.csv", index=False)
        plot_lines(out_dir / "elbow.png", elbow["k"], {"K-means inertia": elbow["inertia"]}, "k (clusters)",
                   "within-cluster sum of squares", "Elbow over two-tower item vectors", mark_x=elbow["best_k"])
    plot_lines(out_dir / "cost_time.png", cost["clusters"],
               {"nearest cluster": cost["ms_nearest_cluster"], "full scan": cost["ms_full_scan"]},
               "k (clusters)", "ms per recommendation", "Time per recommendation (paper Fig. 3)")
    plot_lines(out_dir / "cost_rmse.png", cost["clusters"],
               {"nearest cluster": cost["rmse_nearest_cluster"], "all anime": cost["rmse_all_anime"]},
               "k (clusters)", "RMSE on test ratings", "Rating error in the nearest cluster (paper Fig. 4)")
    text = report(first, seeds, quick, seen_users, summary, rmse_table, cost, diagnosis, pd.DataFrame(infos), tests)
    (out_dir / "evaluation.md").write_text(text)
    echo(text)
    return {"raw": raw, "summary": summary, "rmse": rmse_table, "cost": cost, "diagnosis": diagnosis}


def report(first: AnimeRecommender, seeds: int, quick: bool, seen_users, summary: pd.DataFrame,
           rmse_table: pd.DataFrame, cost: pd.DataFrame, diagnosis: pd.DataFrame, infos: pd.DataFrame,
           tests: pd.DataFrame | None = None) -> str:
    """``evaluation.md``: protocols, one table per protocol, RMSE, elbow, cost study, diagnosis, timings."""
    from recsys.eval.anime import METRICS, PAPER_TABLE1, SEEN_PROTOCOL, UNSEEN_PROTOCOL

    elbow = first.elbow
    lines = [f"# Anime recommender evaluation ({seeds} seed(s), {'quick' if quick else 'paper'} settings)", ""]
    lines += [f"Data: {first.split.summary()}", "",
              f"Settings (seed 0): `{json.dumps(first.settings.as_dict())}`", "",
              "Protocols:", f"- {UNSEEN_PROTOCOL}.", f"- {SEEN_PROTOCOL} (a seeded sample of {seen_users} users).",
              "- each seed re-draws the split (which 500 users are unseen, the 90/10 rows), the halves, and the "
              "model initialisation; values are mean ± std over seeds.", ""]
    for protocol in ("unseen", "seen"):
        rows = []
        for _, row in summary[summary["protocol"] == protocol].iterrows():
            spec = registry.get(row["method"], "anime")
            paper = PAPER_TABLE1.get(spec.name) if protocol == "unseen" else None
            rows.append([f"{spec.name}: {spec.display_name}",
                         *[format_mean_std(row[f"{m} mean"], row[f"{m} std"], 4) for m in METRICS],
                         " / ".join(f"{v:.4f}" for v in paper) if paper else ""])
        lines += [f"## {protocol.capitalize()} users", "",
                  markdown_table(["method", *METRICS, "paper Table 1"], rows), ""]
    if tests is not None and len(tests):
        lines += [f"## NDCG@10 against {TTEST_BASELINE}: Welch's t-test over seeds, Holm-corrected per protocol", "",
                  "`diff` = method mean - EASE mean; `cohens_d` with the pooled standard deviation; `p_holm` "
                  "corrects `p` for the number of methods compared within the protocol (recsys.eval.stats).", "",
                  frame_to_markdown(tests.drop(columns=["metric", "reference"]), 4), ""]
    lines += ["## Rating prediction (test RMSE, explicit ratings only)", "",
              markdown_table(["predictor", "RMSE"],
                             [[r["predictor"], format_mean_std(r["test_rmse mean"], r["test_rmse std"], 4)]
                              for _, r in rmse_table.iterrows()]), ""]
    lines += [f"## Elbow (seed 0): k = {elbow['best_k']} (max distance to the chord over {elbow['k']})", "",
              "![elbow](elbow.png)", "", "## Cost vs accuracy (seed 0; paper Figures 3-4)", "",
              "Time per top-10 for one user (weighted-average vector; nearest centroid + scan of its members vs "
              "scan of all anime), and the MSE model's RMSE on seen users' test ratings of anime inside their "
              "nearest cluster vs all test ratings.", "", frame_to_markdown(cost, 4), "",
              "![time](cost_time.png) ![rmse](cost_rmse.png)", "",
              "## Why the rating two-tower loses (seed 0, unseen users)", "",
              "Popularity of what each method recommends vs what the users actually watched next:", "",
              frame_to_markdown(diagnosis, 3), "", "## Fitting time per seed (this machine)", "",
              frame_to_markdown(infos, 1), ""]
    return "\n".join(lines)
