"""The Home page (AppTest): every page in the list is a link; run counts survive damaged runs."""

from __future__ import annotations

from streamlit.testing.v1 import AppTest

from recsys.paths import PROJECT_ROOT

APP = str(PROJECT_ROOT / "app.py")


def test_each_page_in_the_list_is_a_link(registry):
    at = AppTest.from_file(APP, default_timeout=60).run()
    assert not at.exception
    links = at.get("page_link")
    labels = [link.proto.label for link in links]
    assert labels == ["🔎 Ask (linear algebra)", "🎬 Anime", "📊 Ablations", "🧭 Embedding explorer",
                      "🏋️ Training studio"]
    assert all(link.proto.page.endswith(".py") or link.proto.page for link in links)
