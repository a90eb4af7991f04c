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
    assert labels == ["🔎 Ask (linear algebra)", "🎬 Anime", "📑 Results", "🧭 Embedding explorer",
                      "🏋️ Training studio"]
    assert all(link.proto.page.endswith(".py") or link.proto.page for link in links)


def test_data_files_that_differ_from_the_release_are_flagged(registry, tmp_path, monkeypatch):
    folder = tmp_path / "data" / "ml-100k"
    folder.mkdir(parents=True)
    (folder / "ml-100k.inter").write_text("user_id:token\titem_id:token\trating:float\ttimestamp:float\n1\t2\t3\t4")
    (folder / "ml-100k.item").write_text("item_id:token\tclass:token_seq\n2\tDrama\n")
    (folder / "ml-100k.user").write_text("user_id:token\tage:token\tgender:token\toccupation:token\n1\t20\tM\tx\n")
    monkeypatch.setenv("RECSYS_DATA_DIR", str(tmp_path / "data"))
    at = AppTest.from_file(str(PROJECT_ROOT / "app_pages" / "home.py"), default_timeout=60).run()
    assert not at.exception
    assert any("⚠️ ml-100k" in m.value for m in at.markdown)
    texts = " ".join(t.value for t in at.text)
    assert "the last line has no line end" in texts and "the public release has 100,000" in texts
