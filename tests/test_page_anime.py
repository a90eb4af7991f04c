"""The anime page renders, serves dataset users and new users (streamlit AppTest, tiny bundle)."""

from __future__ import annotations

from pathlib import Path

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from recsys.anime import serving
from recsys.anime.page import DEFAULT_PAGE_METHODS
from recsys.anime.prep import AnimeSettings
from recsys.anime.training import build
from recsys.data.anime import split_anime, synthetic_anime

PAGE = str(Path(__file__).resolve().parents[1] / "app_pages" / "anime.py")
TINY = dict(mse_epochs=2, mse_batch=256, implicit_epochs=1, implicit_batch=128, elbow_grid=None, cluster_k=4,
            knn_neighbours=10, ease_l2=10.0, n_unseen=10)


@pytest.fixture(scope="module")
def tiny_bundle():
    catalogue, ratings = synthetic_anime(n_users=60, n_items=30, seed=1)
    return build(split_anime(catalogue, ratings, n_unseen=10, seed=0), AnimeSettings(**TINY), fingerprint="tiny")


@pytest.fixture()
def app(tiny_bundle, monkeypatch):
    monkeypatch.setattr(serving, "page_recommender_now", lambda: (tiny_bundle, True))
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    st.cache_resource.clear()
    at = AppTest.from_file(PAGE, default_timeout=60)
    at.run()
    yield at
    st.cache_resource.clear()


def _tables(at):
    """The history (an interactive dataframe) followed by each method's list (static tables)."""
    return [df.value for df in at.dataframe] + [t.value for t in at.table]


def test_page_renders_and_shows_a_users_recommendations(app, tiny_bundle):
    assert not app.exception
    user_id = int(tiny_bundle.split.user_ids[3])
    app.selectbox(key="user-pick").set_value(user_id).run()
    assert not app.exception
    assert any(f"User {user_id} (seen)" in h.value for h in app.subheader)
    tables = _tables(app)
    history, recommendations = tables[0], tables[1:]
    assert len(recommendations) == len(DEFAULT_PAGE_METHODS)
    assert all(len(t) == 10 for t in recommendations)
    assert not set(recommendations[0]["name"]) & set(history["name"])  # watched never recommended


def test_unseen_user_model_column_shows_fallback_badge(app, tiny_bundle):
    app.radio(key="user-kind").set_value("unseen (held out)").run()
    app.multiselect(key="user-methods").set_value(["anime-two-tower", "anime-ease"]).run()
    assert not app.exception
    assert any("fallback" in m.value for m in app.markdown)


def test_one_user_picker_and_personal_methods_lead(app, tiny_bundle):
    assert len(app.number_input) == 0  # no "...or type any user_id" box defaulting to 0
    assert [s.label for s in app.selectbox][0] == "User id (type to search)"
    assert app.multiselect(key="user-methods").value == list(DEFAULT_PAGE_METHODS)
    assert DEFAULT_PAGE_METHODS[:3] == ("anime-two-tower-dlae", "anime-ease", "anime-itemknn")
    table = _tables(app)[1]
    assert list(table.columns) == ["name", "score", "genre"]  # the score is a visible column
    assert table["score"].notna().all()


def test_new_user_picks_survive_new_searches(app, tiny_bundle):
    # synthetic names "Anime 0".."Anime 29": each search shows other titles; every pick must stay
    picks = []
    for query, name in (("Anime 1", "Anime 12"), ("Anime 2", "Anime 25"), ("Anime 3", "Anime 3"),
                        ("Anime 0", "Anime 0")):
        app.text_input(key="new-query").set_value(query).run()
        box = app.multiselect(key="new-chosen")
        anime_id = int(tiny_bundle.split.items.loc[tiny_bundle.split.items["name"] == name, "anime_id"].iloc[0])
        assert name in box.options  # the options as shown (format_func: the title)
        picks.append(anime_id)
        box.set_value(list(box.value) + [anime_id]).run()
        assert not app.exception
        assert list(app.multiselect(key="new-chosen").value) == picks
    assert [s.label for s in app.slider if s.key and s.key.startswith("new-rate-")] == \
        ["Anime 12", "Anime 25", "Anime 3", "Anime 0"]


def test_first_visit_serves_item_knn_while_the_rest_trains(tiny_bundle, monkeypatch):
    import dataclasses

    quick = dataclasses.replace(tiny_bundle, models={n: tiny_bundle.models[n] for n in serving.FAST_METHODS})
    monkeypatch.setattr(serving, "page_recommender_now", lambda: (quick, False))
    started = []
    monkeypatch.setattr(serving, "start_bundle_build", lambda: started.append(True) or True)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    at = AppTest.from_file(PAGE, default_timeout=60)
    at.run(timeout=60)
    assert not at.exception
    assert any("training in the background" in i.value for i in at.info)
    assert at.multiselect(key="user-methods-quick").value == ["anime-itemknn"]
    assert len(_tables(at)) == 2  # the history and item-kNN's personal list
    assert started == [True]  # the full bundle's build starts after the first list is drawn


def test_new_user_ratings_give_recommendations_and_heuristic_judge(app, tiny_bundle):
    first_two = tiny_bundle.split.items["anime_id"].iloc[:2].tolist()
    app.multiselect(key="new-chosen").set_value(first_two).run()
    app.slider(key=f"new-rate-{first_two[0]}").set_value(10).run()
    assert not app.exception
    names = set(tiny_bundle.split.items["name"].iloc[:2])
    new_tables = [t for t in _tables(app) if "score" in t.columns]
    assert len(new_tables) >= 8  # four methods in each tab
    assert not names & set(new_tables[-1]["name"])
    app.button(key="new-judge").click().run()
    assert not app.exception
    assert any("heuristic judge" in t.value for t in app.text)  # the judge's text: plain, not Markdown


def test_method_picker_lists_every_registered_anime_model(app):
    from recsys import registry

    assert list(app.multiselect(key="user-methods").options) == [s.display_name for s in registry.by_domain("anime")]
    assert any("Serving:" in c.value and "cached bundle" in c.value for c in app.caption)
