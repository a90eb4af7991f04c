"""The Studio and Home pages with damaged or hostile run files (AppTest, headless).

Before the fix a ``status.json`` without ``"status"``, a ``config.json`` of ``{}`` or a
truncated ``active.json`` made both pages show an exception; text from run files
rendered as Markdown (a planted error message could show a live link).
"""

from __future__ import annotations

import pytest
from streamlit.testing.v1 import AppTest

from recsys.artifacts import atomic_write_json
from recsys.paths import PROJECT_ROOT
from recsys.train.loop import TrainConfig
from recsys.train.worker import execute

STUDIO = str(PROJECT_ROOT / "app_pages" / "studio.py")
HOME = str(PROJECT_ROOT / "app_pages" / "home.py")


def toy_config() -> TrainConfig:
    return TrainConfig(epochs=2, lr=0.05, batch_size=32, device="cpu", monitor="val_mse", monitor_mode="min")


@pytest.fixture
def damaged_registry(registry):
    good = registry.create("toy-linear", toy_config(), {"sleep": 0.0})
    execute(good, registry)
    registry.set_active(good.id)
    no_status = registry.create("toy-linear", toy_config())
    atomic_write_json(no_status.status_path, {"pid": 1})
    empty_config = registry.create("toy-linear", toy_config())
    atomic_write_json(empty_config.config_path, {})
    path = registry.root / "active.json"
    path.write_text(path.read_text()[:5])
    return registry, good, no_status, empty_config


def test_studio_lists_damaged_runs_with_their_reason(damaged_registry):
    registry, good, no_status, empty_config = damaged_registry
    at = AppTest.from_file(STUDIO, default_timeout=60).run()
    assert not at.exception
    table = at.dataframe[0].value.set_index("run")
    assert "damaged" in table.loc[no_status.id, "status"] and "status" in table.loc[no_status.id, "error"]
    assert "lacks recipe, train" in table.loc[empty_config.id, "error"]
    assert "done" in table.loc[good.id, "status"]
    assert any("not valid JSON" in w.value for w in at.warning)  # the truncated active.json
    at.selectbox(key="studio_watch_select").set_value(empty_config.id).run()
    assert not at.exception
    assert any("Damaged" in e.value for e in at.error)


def test_home_counts_damaged_runs_and_keeps_working(damaged_registry):
    at = AppTest.from_file(HOME, default_timeout=60).run()
    assert not at.exception
    markdown = " ".join(m.value for m in at.markdown)
    assert "2 damaged" in markdown and "1 done" in markdown
    assert any("damaged" in w.value for w in at.warning)


def test_studio_shows_a_planted_error_message_as_plain_text(registry):
    run = registry.create("toy-linear", toy_config())
    atomic_write_json(run.status_path, {"status": "failed", "error": "[click](http://evil.example) ![x](http://evil.example/x.png)"})
    at = AppTest.from_file(STUDIO, default_timeout=60).run()
    assert not at.exception
    [error] = [e.value for e in at.error if "evil" in e.value]
    assert "\\[click\\]\\(http" in error and "\\!\\[x\\]" in error  # escaped: no link, no image
