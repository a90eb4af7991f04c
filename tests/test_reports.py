"""recsys.reports: what the Results page shows, on the hand-made files of tests/results_fixture.py."""

from __future__ import annotations

import json
import math
import shutil

import pandas as pd
import pytest

from recsys import reports
from recsys.paths import PROJECT_ROOT
from recsys.eval import stats
from recsys.reports import anime, sequential, videos
from tests.results_fixture import CL_HITS, write_results


@pytest.fixture
def root(tmp_path):
    return write_results(tmp_path / "results")


def test_numbers_are_rounded_and_missing_ones_are_dashes():
    assert reports.fmt(0.123456789) == "0.1235"
    assert reports.fmt(3.0) == "3" and reports.fmt(7) == "7"
    assert reports.fmt(None) == "–" and reports.fmt(float("nan")) == "–"
    assert reports.fmt_p(2.1e-05) == "< 0.0001" and reports.fmt_p(0.03456) == "0.0346"
    assert reports.cell([0.10, 0.12, 0.14]) == "0.1200 ± 0.0200"  # sample std of 0.10, 0.12, 0.14 is 0.02
    assert reports.cell([0.5]) == "0.5000 (1 seed)"


def test_summary_welch_against_a_deterministic_model_is_a_one_sample_test():
    # DCDT seeds mean 0.74, sample std 0.04, n 3; BM25 0.68 at every seed (no spread).
    # t = (0.68 - 0.74) / (0.04 / sqrt 3) = -2.598 with n - 1 = 2 degrees of freedom; for 2 df the
    # two-sided p is 1 - |t| / sqrt(t^2 + 2) = 1 - 2.598 / 2.958 = 0.1217. Cohen's d = -0.06 / 0.04 = -1.5.
    table = reports.compare_summary({"DCDT": (0.74, 0.04, 3), "BM25": (0.68, float("nan"), 1)}, "DCDT", "mrr@10")
    row = table.iloc[0]
    assert list(table.columns) == list(stats.COLUMNS)
    assert row["t"] == pytest.approx(-2.5981, abs=1e-4)
    assert row["p"] == pytest.approx(0.12168, abs=1e-4) and row["p_holm"] == row["p"]
    assert row["cohens_d"] == pytest.approx(-1.5)
    assert row["verdict"] == "no significant difference (DCDT ahead by 0.0600, Holm p = 0.122)"


def test_summary_welch_equals_welch_on_the_seeds():
    raw = stats.comparison_table(CL_HITS, "cl-epidtn", "hit@10").iloc[0]
    # CL-EPIDTN 0.10, 0.12, 0.14 -> mean 0.12, std 0.02; SASRec 0.15, 0.16, 0.17 -> mean 0.16, std 0.01
    summary = reports.compare_summary({"cl-epidtn": (0.12, 0.02, 3), "sasrec": (0.16, 0.01, 3)},
                                      "cl-epidtn", "hit@10").iloc[0]
    for column in ("diff", "t", "p", "cohens_d"):
        assert summary[column] == pytest.approx(raw[column], rel=1e-9)


def test_committed_ttests_get_display_names_and_files_without_holm_are_recomputed():
    table = reports.from_ttests(stats.comparison_table(CL_HITS, "cl-epidtn", "hit@10"))
    assert table.loc[0, "model"] == "SASRec" and table.loc[0, "reference"] == "CL-EPIDTN"
    assert "SASRec ahead by 0.0400" in table.loc[0, "verdict"]
    old = pd.DataFrame([{"baseline": "SASRec", "model": "sasrec", "t": 1.0, "p": 0.5}])
    assert reports.from_ttests(old) is None


def test_videos_verdicts_from_means_and_a_missing_table(root):
    section = videos.section(root / "videos")
    table2, table3 = section.reports
    assert table2.status == "done"
    assert table2.verdicts.loc[0, "p"] == pytest.approx(0.12168, abs=1e-4)  # worked out above
    ours = table2.ours[0].frame
    assert ours.loc[ours["Model"] == "BM25", "MRR@10"].item() == "0.6800 (1 seed)"
    assert table2.convergence["Final training loss"].tolist() == ["0.0123"]
    assert table3.status == "missing" and "evaluate videos" in table3.status_text


def test_anime_verdicts_are_computed_from_the_per_seed_file(root):
    unseen, seen = anime.section(root / "anime").reports
    row = unseen.verdicts.iloc[0]
    # K-means NDCG@10 0.10, 0.11, 0.12 vs EASE 0.60, 0.61, 0.62: diff -0.5, both std 0.01 -> d = -50
    assert row["model"] == "K-means nearest cluster" and row["reference"] == "EASE"
    assert row["cohens_d"] == pytest.approx(-50.0)
    assert row["verdict"].startswith("EASE better than K-means nearest cluster")
    assert "per_seed" in unseen.verdict_source
    assert seen.status == "missing"


def test_converged_results_replace_the_quick_ones(root):
    ml, anime_rep = sequential.section(root / "cl-epidtn").reports
    assert (ml.key, ml.status) == ("ml-100k", "converged")
    main = ml.ours[0].frame
    assert "0.9999" not in main.to_string()  # the quick files' value
    assert main.loc[main["Model"] == "CL-EPIDTN", "HR@10"].item() == "0.1200 ± 0.0200"
    # Recall@50 = 3 x HR@10 on the ratio rows: 0.30, 0.36, 0.42 -> 0.3600 ± 0.0600
    assert main.loc[main["Model"] == "CL-EPIDTN", "Recall@50"].item() == "0.3600 ± 0.0600"
    assert ml.verdict_source == "ml-100k_ttests.csv (committed)" and ml.verdicts.loc[0, "model"] == "SASRec"
    assert ml.convergence_text.startswith("All 12 trained runs found their best epoch before the maximum")
    assert "Total CPU time: 2.0 CPU-hours (7,200 s)." in ml.notes
    assert ml.status_text == "converged (12 of 12 jobs done)"
    assert anime_rep.status == "incomplete" and anime_rep.status_text == "incomplete: 2 of 10 jobs done"


def test_variants_of_ours_sit_beside_the_papers_model_and_are_tested_against_sasrec(root):
    ml, anime_rep = sequential.section(root / "cl-epidtn").reports
    titles = [table.title for table in ml.extra]
    beside = ml.extra[titles.index("Variants of ours (not the paper's model) beside CL-EPIDTN and SASRec")].frame
    # HR@10 0.18, 0.19, 0.20: mean 0.19, sample std 0.01; the paper's model and SASRec from the main runs
    assert beside.set_index("Model")["HR@10"].to_dict() == {"CL-EPIDTN": "0.1200 ± 0.0200", "SASRec": "0.1600 ± 0.0100",
                                                             "ours: full-softmax": "0.1900 ± 0.0100"}
    tested = ml.extra[titles.index("Each variant against SASRec (Welch over seeds, Holm within each metric)")].frame
    assert tested["Comparison"].tolist() == ["ours: full-softmax vs SASRec"]
    assert tested["Difference"].item() == "+0.0300"  # 0.19 - 0.16: positive, ours ahead
    assert not any("ours" in table.title for table in anime_rep.extra)  # no variants there: no table


def test_quick_results_are_labelled_and_not_converged(root):
    shutil.rmtree(root / "cl-epidtn" / "converged")
    (ml,) = sequential.section(root / "cl-epidtn").reports
    assert ml.status_text == "quick (not converged)"
    assert ml.convergence_text.startswith("4 of 4 trained runs picked their last epoch")
    assert ml.verdicts.loc[0, "model"] == "SASRec" and math.isnan(ml.verdicts.loc[0, "p"])  # no spread at all


def test_malformed_files_become_problems_not_exceptions(root):
    folder = root / "cl-epidtn" / "converged"
    (folder / "ml-100k_runs.csv").write_text("seed,hit@10\n0,0.1\n")
    (folder / "anime_meta.json").write_text("{not json")
    ml, anime_rep = sequential.section(root / "cl-epidtn").reports
    assert "ml-100k_runs.csv: missing column(s) model" in ml.problems and not ml.ours
    assert anime_rep.problems[0].startswith("anime_meta.json: not valid JSON")
    assert "quick results are not shown" in anime_rep.status_text and not anime_rep.ours
    (folder / "ml-100k_meta.json").unlink()  # converged runs without their meta: incomplete, never quick
    (folder / "ml-100k_runs.csv").write_text("model,seed,split,hit@10\ncl-epidtn,0,loo,0.2\n")
    ml = sequential.section(root / "cl-epidtn").reports[0]
    assert ml.status == "incomplete" and "progress unknown" in ml.problems[0]
    assert "0.9999" not in ml.ours[0].frame.to_string()


def test_sweeps_on_a_categorical_axis_with_error_bars_and_curves_per_seed(root):
    ml = sequential.section(root / "cl-epidtn").reports[0]
    figure = sequential.sweep_figure(ml.sweeps, "n_layers")
    hit = figure.data[0]
    assert list(hit.x) == ["1", "2", "3"] and figure.layout.xaxis.type == "category"
    # at L = 1 the seeds give 0.10, 0.11, 0.12: mean 0.11, std 0.01
    assert hit.y[0] == pytest.approx(0.11) and hit.error_y.array[0] == pytest.approx(0.01)
    histories, metric = sequential.curve_histories(ml.curves, "SASRec", "loo")
    assert metric == "validation HR@10" and sorted(histories) == ["seed 0", "seed 1", "seed 2"]
    assert histories["seed 0"][2] == {"epoch": 3, "train_loss": pytest.approx(1 / 3), "validation HR@10": pytest.approx(0.15)}


def test_signature_changes_when_a_file_changes(root, monkeypatch):
    monkeypatch.setenv(reports.REPORTS_ENV, str(root))
    before = reports.signature()
    (root / "videos" / "info_test.json").write_text(json.dumps({"seeds": 5, "more": "bytes"}))
    assert reports.signature() != before
    assert [s.key for s in reports.sections()] == ["dcdt", "two-towers", "cl-epidtn"]


@pytest.mark.parametrize("garbage", ["x", "", "1e400"])
def test_text_where_numbers_belong_never_raises(root, garbage):
    """Every number of every fixture file replaced by ``garbage``: problems are reported, nothing raises."""
    for path in root.rglob("*.csv"):
        frame = pd.read_csv(path)
        for column in frame.columns:
            if pd.api.types.is_numeric_dtype(frame[column]) and column != "seed":
                frame[column] = garbage
        frame.to_csv(path, index=False)
    found = reports.sections(root)
    for section in found:
        for report in section.reports:
            for table in report.ours + report.paper + report.extra:
                assert "nan" not in table.frame.to_string().lower()
            if report.compare is not None:
                report.compare(report.default_metric, report.default_reference)
    problems = [p for s in found for r in s.reports for p in r.problems]
    assert garbage != "x" or any("non-numeric" in p for p in problems)


def test_the_package_stays_ui_free():
    """recsys/ never imports streamlit: the page lays out what this package computes."""
    sources = sorted((PROJECT_ROOT / "recsys" / "reports").glob("*.py"))
    assert len(sources) == 4
    for path in sources:
        assert "import streamlit" not in path.read_text() and "from streamlit" not in path.read_text(), path.name


def test_variants_of_ours_do_not_make_the_papers_tables_incomplete(root):
    folder = root / "cl-epidtn" / "converged"
    meta = json.loads((folder / "ml-100k_meta.json").read_text())
    (folder / "ml-100k_meta.json").write_text(json.dumps({**meta, "ours_done": 4, "ours_total": 18}))
    ml = sequential.section(root / "cl-epidtn").reports[0]
    assert ml.status == "converged"
    assert ml.status_text == "converged (12 of 12 jobs done); variants of ours: 4 of 18 jobs done"


def test_gpu_jobs_are_noted_apart_from_cpu_time():
    meta = {"cpu_seconds_total": 7200.0,
            "by_device": {"cpu": {"jobs": 10, "cpu_seconds": 7200.0, "wall_seconds": 9000.0},
                          "cuda (Fake GPU)": {"jobs": 4, "cpu_seconds": 60.0, "wall_seconds": 1800.0}}}
    notes = sequential.meta_notes(meta, quick=False)
    assert "Total CPU time: 2.0 CPU-hours (7,200 s) of the jobs trained on the CPU." in notes
    assert "4 jobs trained on cuda (Fake GPU): 0.50 wall-hours, several jobs at a time on the one GPU." in notes


def test_convergence_lists_each_runs_maximum_when_one_was_re_run_longer():
    """One seed re-run with twice the epochs (reproduce.extend_budget_bound): its maximum is shown, not hidden."""
    runs = pd.DataFrame({"model": ["cltd"] * 3, "split": ["ratio"] * 3, "seed": [0, 1, 2],
                         "best_epoch": [34, 16, 32], "max_epochs": [80, 40, 40], "seconds": [5.0, 3.0, 4.0]})
    table, text = sequential.convergence(runs, "CPU s")
    assert table.loc[0, "Maximum epochs"] == "80, 40, 40" and table.loc[0, "Best = last epoch"] == "0 of 3"
    same, _ = sequential.convergence(runs.assign(max_epochs=40), "CPU s")
    assert same.loc[0, "Maximum epochs"] == "40"
