"""The Results page (AppTest, headless) on tiny hand-made result files: present, absent, incomplete, malformed."""

from __future__ import annotations

import sys

import pytest
from streamlit.testing.v1 import AppTest

from recsys.paths import PROJECT_ROOT
from recsys.reports import REPORTS_ENV
from tests.results_fixture import write_results

PAGE = str(PROJECT_ROOT / "app_pages" / "results.py")


@pytest.fixture
def env(tmp_path, monkeypatch):
    if str(PROJECT_ROOT) not in sys.path:
        sys.path.insert(0, str(PROJECT_ROOT))
    monkeypatch.setenv(REPORTS_ENV, str(tmp_path / "results"))
    monkeypatch.setenv("RECSYS_RUNS_DIR", str(tmp_path / "runs"))
    return tmp_path / "results"


def texts(at) -> str:
    parts = [e.value for kind in ("markdown", "caption", "text", "info", "warning", "success", "error")
             for e in getattr(at, kind)]
    return "\n".join(str(p) for p in parts)


def frames(at) -> str:
    return "\n".join(d.value.to_string() for d in at.dataframe)


def test_every_paper_with_converged_incomplete_and_malformed_files(env):
    write_results(env)
    (env / "anime" / "evaluation_per_seed.csv").write_text('protocol,method\n"unterminated\n')
    at = AppTest.from_file(PAGE, default_timeout=90).run()
    assert not at.exception
    assert [h.value for h in at.header][:3] == ["DCDT: linear-algebra video search", "Two Towers: anime recommendations",
                                                "CL-EPIDTN: sequential recommendation"]
    shown, tables = texts(at), frames(at)
    assert "ml-100k: converged" in shown and "anime: incomplete: 2 of 10 jobs done" in shown
    assert "0.9999" not in tables  # the quick ml-100k numbers, replaced by the converged ones
    # the settings as the sentence the export wrote, not the dict it was made from
    assert "Settings: CONVERGED: 3 seeds, up to 40 epochs" in shown and "'seeds'" not in shown
    assert "evaluation_per_seed.csv: could not be read" in shown  # malformed: said, nothing crashes
    assert "anime_sweeps.csv" not in shown and "anime_ours.csv" not in shown  # experiments not run: no problem
    # verdict sentences with display names (worked values in tests/test_reports.py)
    assert "MRR@10, BM25 vs DCDT: no significant difference (DCDT ahead by 0.0600, Holm p = 0.122)" in shown
    assert "HR@10, SASRec vs CL-EPIDTN: no significant difference (SASRec ahead by 0.0400" in shown
    assert "None" not in tables and "nan" not in tables.lower()
    assert "python -m recsys reproduce cl-epidtn --profile converged" in [c.value for c in at.code]
    # another metric / reference recomputes the tests from the per-seed rows
    at.selectbox(key="cl-epidtn-ml-100k-metric").set_value("recall@50").run()
    assert not at.exception
    assert "Recall@50, SASRec vs CL-EPIDTN: no significant difference (SASRec ahead by 0.1200" in texts(at)


def test_without_any_results_each_paper_says_how_to_make_them(env):
    env.mkdir()
    at = AppTest.from_file(PAGE, default_timeout=90).run()
    assert not at.exception
    shown = texts(at)
    assert "python -m recsys evaluate videos" in shown and "python -m recsys evaluate anime" in shown
    assert "No results for this paper yet." in shown  # CL-EPIDTN: no meta file at all


def test_retrain_launches_a_run_and_shows_its_curves_and_a_small_table(env, tmp_path, monkeypatch):
    from recsys import registry, train
    from recsys.sequential.training import recipe
    from recsys.train.runs import RunRegistry

    env.mkdir()
    try:
        train.recipes.all_recipes()
    except ModuleNotFoundError:  # a tree where another domain has no training module yet: ours only
        monkeypatch.setattr(train.runs, "get_recipe", lambda name: recipe(registry.get(name, "sequential")))
    launched = []
    monkeypatch.setattr(RunRegistry, "launch", lambda self, run: launched.append(run.id) or 0)
    at = AppTest.from_file(PAGE, default_timeout=90).run()
    at.selectbox(key="retrain_model").set_value("sasrec")
    at.button(key="retrain_train").click().run()
    assert not at.exception and len(launched) == 1 and "sasrec" in launched[0]
    run = RunRegistry(tmp_path / "runs").get(launched[0])
    assert run.config["options"]["dataset"] == "ml-100k" and run.config["train"]["epochs"] == 3
    # the worker's part, by hand: two epochs and a final summary
    run.append_metrics({"epoch": 1, "train_loss": 2.5, "lr": 0.001, "hit@10": 0.05, "ndcg@10": 0.02, "seconds": 1.0})
    run.append_metrics({"epoch": 2, "train_loss": 2.0, "lr": 0.001, "hit@10": 0.07, "ndcg@10": 0.03, "seconds": 1.0})
    run.set_status("done", summary={"dataset": "ml-100k", "split": "loo", "test_hit@10": 0.123456789,
                                    "best_epoch": 2, "seconds": 3.4})
    at.run()
    assert not at.exception
    assert len(at.get("plotly_chart")) == 2  # loss and validation metric: two charts, two axes
    summary = at.dataframe[-1].value  # the run summary is the last table on the page
    assert summary.to_dict("records") == [{"result": "test HR@10", "value": "0.1235"},
                                          {"result": "best epoch", "value": "2"}, {"result": "seconds", "value": "3.4"}]
