"""The Training studio page, driven headless by Streamlit's AppTest with the toy recipe.

Launching spawns a real detached worker (``python -m recsys.train.worker``), so the
launch test is ``slow``; the page is re-run until the worker finishes.
"""

from __future__ import annotations

import time

import pytest
from streamlit.testing.v1 import AppTest

from recsys.paths import PROJECT_ROOT
from recsys.train.loop import TrainConfig
from recsys.train.worker import execute

PAGE = str(PROJECT_ROOT / "app_pages" / "studio.py")


def page() -> AppTest:
    """The studio with the toy recipe picked (real recipes are listed too once pipelines exist)."""
    at = AppTest.from_file(PAGE, default_timeout=60).run()
    at.selectbox(key="studio_recipe").set_value("toy-linear").run()
    return at


def test_empty_registry_renders_with_the_toy_recipe_offered(registry):
    at = page().run()
    assert not at.exception
    assert any(o.startswith("toy-linear") for o in at.selectbox(key="studio_recipe").options)
    assert at.number_input(key="studio_epochs").value == 5  # the recipe's default
    assert any("No runs yet" in info.value for info in at.info)


def test_finished_runs_are_listed_compared_served_and_deleted(registry):
    done = registry.create("toy-linear", TrainConfig(epochs=2, device="cpu", monitor="val_mse", monitor_mode="min"),
                           {"sleep": 0.0})
    execute(done, registry)
    failed = registry.create("toy-linear", TrainConfig(epochs=3, device="cpu"), {"sleep": 0.0, "fail_at_epoch": 2})
    with pytest.raises(RuntimeError):
        execute(failed, registry)

    at = page().run()
    assert not at.exception
    table = at.dataframe[0].value  # the only table on the page: all runs
    assert set(table["run"]) == {done.id, failed.id}
    assert table.set_index("run").loc[failed.id, "error"] == "RuntimeError: toy failure at epoch 2"
    assert len(at.get("plotly_chart")) >= 1  # the watched run's loss curve
    # the watched run's training throughput, from its last epoch record (examples / train_seconds)
    assert any(" examples/s" in md.value for md in at.markdown), [md.value for md in at.markdown][:5]

    at.selectbox(key="studio_watch_select").set_value(done.id).run()
    at.button(key="serve").click().run()
    assert not at.exception
    assert registry.active_run("toy-linear").id == done.id

    at.selectbox(key="studio_watch_select").set_value(failed.id).run()
    at.button(key="delete").click().run()
    assert not at.exception
    assert [r.id for r in registry.list()] == [done.id]


@pytest.mark.slow
def test_launch_from_the_page_trains_in_a_worker(registry):
    at = page().run()
    at.number_input(key="studio_epochs").set_value(2)
    at.button(key="launch").click().run()
    assert not at.exception
    runs = registry.list()
    assert len(runs) == 1 and runs[0].config["train"]["epochs"] == 2
    deadline = time.time() + 90
    while runs[0].status()["status"] in ("queued", "running") and time.time() < deadline:
        time.sleep(0.5)
    assert runs[0].status()["status"] == "done", runs[0].log_tail()
    at.run()
    assert not at.exception
    assert len(runs[0].metrics()) == 2


def toy(registry, **train):
    run = registry.create("toy-linear", TrainConfig(**{"epochs": 2, "device": "cpu", "monitor": "val_mse",
                                                       "monitor_mode": "min", **train}), {"sleep": 0.0})
    execute(run, registry)
    return run


def test_run_picker_shows_a_fresh_status(registry):
    import os

    run = registry.create("toy-linear", TrainConfig(epochs=2, device="cpu"), {"sleep": 0.0})
    run.set_status("running", pid=os.getpid())
    at = page().run()
    assert at.selectbox(key="studio_watch_select").options == [f"🏃 {run.id} (running)"]
    run.set_status("done")
    at.run()
    assert at.selectbox(key="studio_watch_select").options == [f"✅ {run.id} (done)"]


def test_compare_follows_the_watched_run_and_labels_runs_by_what_differs(registry):
    first = toy(registry, lr=0.05)
    second = toy(registry, lr=0.001)
    at = page().run()
    at.selectbox(key="studio_watch_select").set_value(first.id).run()
    assert at.multiselect(key="compare_runs").value == [first.id]
    at.selectbox(key="studio_watch_select").set_value(second.id).run()
    assert at.multiselect(key="compare_runs").value == [second.id]  # followed, not stuck on the first
    at.multiselect(key="compare_runs").select(first.id).run()
    assert not at.exception
    import json

    names = sorted(trace["name"] for trace in json.loads(at.get("plotly_chart")[-1].proto.spec)["data"])
    assert names == ["toy-linear · lr=0.001", "toy-linear · lr=0.05"]  # model + the one setting that differs
    at.button(key="delete").click().run()  # deleting a compared run must not break the multiselect
    assert not at.exception and at.multiselect(key="compare_runs").value == [first.id]


def test_serving_a_worse_run_warns_with_both_scores(registry):
    good = toy(registry, epochs=5, lr=0.05)
    bad = toy(registry, epochs=1, lr=0.0001)
    registry.set_active(good.id)
    at = page().run()
    at.selectbox(key="studio_watch_select").set_value(bad.id).run()
    [warning] = [w.value for w in at.warning if "worse than the served run" in w.value]
    from recsys.train.compare import monitored_score

    assert f"{monitored_score(bad)[1]:.4g}" in warning and f"{monitored_score(good)[1]:.4g}" in warning
    at.selectbox(key="studio_watch_select").set_value(good.id).run()
    assert not [w for w in at.warning if "worse than" in w.value]


def test_processes_are_offered_up_to_the_cores_and_recorded_with_the_run(registry, monkeypatch):
    import os

    from recsys.train.runs import RunRegistry

    launched = []
    monkeypatch.setattr(RunRegistry, "launch", lambda self, run: launched.append(run) or 0)  # no worker here
    at = page()
    field = at.number_input(key="studio_nproc")
    assert (field.value, field.min, field.max) == (1, 1, os.cpu_count())
    field.set_value(min(2, os.cpu_count())).run()
    at.button(key="launch").click().run()
    assert not at.exception
    assert [run.config["nproc"] for run in launched] == [min(2, os.cpu_count())]
