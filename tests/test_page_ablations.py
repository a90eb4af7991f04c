"""The Ablations page renders with and without reproduction results (AppTest, headless)."""

from __future__ import annotations

import json
import sys

import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from recsys.paths import PROJECT_ROOT
from recsys.sequential.stats import summarise, ttests

PAGE = str(PROJECT_ROOT / "app_pages" / "ablations.py")


@pytest.fixture
def env(tmp_path, monkeypatch):
    if str(PROJECT_ROOT) not in sys.path:
        sys.path.insert(0, str(PROJECT_ROOT))
    monkeypatch.setenv("RECSYS_RESULTS_DIR", str(tmp_path / "results"))
    monkeypatch.setenv("RECSYS_RUNS_DIR", str(tmp_path / "runs"))
    return tmp_path / "results"


def write_fake_results(folder):
    """Hand-made per-seed numbers for three models on ml-100k (not real results)."""
    folder.mkdir(parents=True)
    rows = []
    for seed, (a, b, c) in enumerate([(0.10, 0.05, 0.08), (0.12, 0.05, 0.07)]):
        for model, hr in (("cl-epidtn", a), ("most-popular", b), ("epidtn", c)):
            rows.append({"dataset": "ml-100k", "model": model, "seed": seed, "seconds": 1.0, "hit@10": hr,
                         "hit@50": 2 * hr, "ndcg@10": hr / 2, "recall@10": hr, "recall@50": 3 * hr})
    runs = pd.DataFrame(rows)
    runs.to_csv(folder / "ml-100k_runs.csv", index=False)
    summarise(runs).to_csv(folder / "ml-100k_summary.csv", index=False)
    ttests(runs).to_csv(folder / "ml-100k_ttests.csv", index=False)
    pd.DataFrame([{"param": "n_layers", "value": v, "seed": 0, "hit@10": 0.1 * v, "ndcg@10": 0.05 * v} for v in (1, 3)]).to_csv(
        folder / "ml-100k_sweeps.csv", index=False)
    (folder / "ml-100k_meta.json").write_text(json.dumps({"protocol": "leave-one-out", "settings": "QUICK", "quick": True}))
    (folder / "README.md").write_text("# results\n")


def test_page_without_results_says_how_to_make_them(env):
    at = AppTest.from_file(PAGE, default_timeout=60).run()
    assert not at.exception
    assert any("reproduce cl-epidtn" in info.value for info in at.info)


def test_page_with_results_shows_tables_and_significance(env):
    write_fake_results(env)
    at = AppTest.from_file(PAGE, default_timeout=60).run()
    assert not at.exception
    assert len(at.dataframe) >= 4  # main, paper, t-tests, ablation
    main = at.dataframe[0].value
    assert "CL-EPIDTN" in set(main["Model"])
    # CL-EPIDTN HR@10 over seeds 0.10, 0.12 -> mean 0.11, sample std 0.0141
    assert main.loc[main["Model"] == "CL-EPIDTN", "HR@10"].item() == "0.1100 ± 0.0141"
    # changing the plotted metric reruns cleanly
    at.selectbox(key="metric-ml-100k").set_value("ndcg@10").run()
    assert not at.exception


def test_retrain_button_creates_and_launches_a_run(env, tmp_path, monkeypatch):
    from recsys.train.runs import RunRegistry

    from recsys import registry, train
    from recsys.sequential.training import recipe

    try:
        train.recipes.all_recipes()
    except ModuleNotFoundError:  # a tree where another domain has no training module yet: ours only
        monkeypatch.setattr(train.runs, "get_recipe", lambda name: recipe(registry.get(name, "sequential")))
    launched = []
    monkeypatch.setattr(RunRegistry, "launch", lambda self, run: launched.append(run.id) or 0)
    at = AppTest.from_file(PAGE, default_timeout=60).run()
    at.selectbox(key="ablations_model").set_value("sasrec")
    at.button(key="ablations_train").click().run()
    assert not at.exception
    assert len(launched) == 1 and "sasrec" in launched[0]
    run = RunRegistry(tmp_path / "runs").get(launched[0])
    assert run.config["options"]["dataset"] == "ml-100k" and run.config["train"]["epochs"] == 1
    assert any(launched[0] in md.value for md in at.markdown)
