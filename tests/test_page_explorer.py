"""The Embedding explorer page, driven headless by Streamlit's AppTest over a fake source.

The fake source is three well-separated Gaussian blobs in 8-d (60 points each) whose
``group`` column names the blob, so clusters, colours, the query overlay and the user
overlay all have answers known in advance.
"""

from __future__ import annotations


import numpy as np
import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from recsys.paths import PROJECT_ROOT
from recsys.viz import projections, sources

PAGE = str(PROJECT_ROOT / "app_pages" / "explorer.py")
CENTRES = np.eye(8, dtype=np.float32)[:3] * 10  # blob b sits at 10 * e_b


def blobs() -> sources.SourceData:
    rng = np.random.default_rng(0)
    vectors = np.concatenate([c + rng.normal(scale=0.5, size=(60, 8)) for c in CENTRES]).astype(np.float32)
    meta = pd.DataFrame({"label": [f"{g}-{i}" for g in "abc" for i in range(60)], "group": np.repeat(list("abc"), 60)})
    history = pd.DataFrame({"row": [0, 1, 2, 60], "weight": [10.0, 10.0, 10.0, 1.0]})
    return sources.SourceData(
        vectors, meta,
        encode_query=lambda texts: np.stack([CENTRES["abc".index(t[0])] for t in texts]),  # "a..." -> blob a
        user_ids=lambda: [7],
        user_items=lambda user: history,
        note="three blobs",
    )


@pytest.fixture
def fake_sources(monkeypatch, tmp_path):
    monkeypatch.setenv("RECSYS_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("RECSYS_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setattr(projections, "_JOBS", None)  # fresh job runner bound to the tmp cache

    def unavailable():
        raise sources.SourceUnavailable("pipeline X is not written yet")

    fake = [
        sources.Source("blobs", "Three blobs", "test data", blobs),
        sources.Source("missing", "Missing pipeline", "needs X", unavailable),
    ]
    monkeypatch.setattr(sources, "list_sources", lambda: fake)
    monkeypatch.setattr(sources, "get_source", lambda key: {s.key: s for s in fake}[key])


def page() -> AppTest:
    return AppTest.from_file(PAGE, default_timeout=120)


def test_pca_map_clusters_and_elbow(fake_sources):
    at = page().run()
    assert not at.exception
    assert len(at.get("plotly_chart")) == 2  # the map and the elbow curve
    assert "showing 180 of 180 points" in " ".join(c.value for c in at.caption)
    at.slider(key="cluster_k").set_value(3).run()
    # three blobs 10 apart with noise 0.5: k=3 separates them, the silhouette is close to 1
    assert float(at.metric[0].value) > 0.8
    sizes = at.dataframe[0].value
    assert sorted(sizes["points"]) == [60, 60, 60]
    assert "Best K-means silhouette at k = 3" in " ".join(c.value for c in at.caption)
    assert "group" in at.selectbox(key="explorer_color").options


def test_query_overlay_lists_the_nearest_items_of_the_right_blob(fake_sources):
    at = page().run()
    at.number_input(key="explorer_topk").set_value(5)
    at.text_input(key="explorer_query").set_value("b please").run()
    assert not at.exception
    nearest = at.dataframe[-1].value
    assert len(nearest) == 5 and all(title.startswith("b-") for title in nearest["title"])


def test_user_overlay_reports_watched_items(fake_sources):
    at = page().run()
    at.selectbox(key="explorer_user").set_value(7).run()
    assert not at.exception
    assert "User 7: 4 rated/watched items" in " ".join(c.value for c in at.caption)


def test_unavailable_source_shows_the_reason(fake_sources):
    at = page().run()
    at.selectbox(key="explorer_source").set_value("missing").run()
    assert not at.exception
    assert any("pipeline X is not written yet" in i.value for i in at.info)


def test_tsne_runs_in_the_background_and_is_picked_up(fake_sources):
    at = page().run()
    at.radio(key="explorer_method").set_value("tsne").run()
    assert not at.exception
    assert any("Computing t-SNE in the background" in i.value for i in at.info)
    jobs = projections.background_jobs()
    for key in list(jobs._futures):
        jobs.wait(key, timeout=240)
    at.run()
    assert not at.exception
    assert not any("Computing" in i.value for i in at.info)
    assert at.get("plotly_chart")[0].proto.spec and "t-SNE of 180 points" in at.get("plotly_chart")[0].proto.spec


def test_catalog_text_source_loads_real_embeddings():
    """The one source implemented here: the shipped catalogue through the local MiniLM embedder."""
    try:
        data = sources.load_source("catalog-text")
    except sources.SourceUnavailable as error:
        pytest.skip(f"catalogue text source unavailable: {error}")
    assert data.vectors.shape[0] == len(data.meta) > 100
    assert {"label", "series", "topic"} <= set(data.meta.columns)
    np.testing.assert_allclose(np.linalg.norm(data.vectors, axis=1), 1.0, atol=1e-4)
    query = data.encode_query(["eigenvalues and eigenvectors"])
    best = int(np.argmax(data.vectors @ query[0]))
    assert "eigen" in data.meta["label"][best].lower()


def test_colour_defaults_to_cluster_and_follows_the_clustering_controls(fake_sources):
    import json

    at = page().run()
    assert at.selectbox(key="explorer_color").value == "cluster"
    at.slider(key="cluster_k").set_value(3).run()
    names = sorted(t["name"] for t in json.loads(at.get("plotly_chart")[0].proto.spec)["data"])
    assert names == ["cluster 0", "cluster 1", "cluster 2"]
    at.radio(key="cluster_method").set_value("gmm").run()
    assert not at.exception
    captions = " ".join(c.value for c in at.caption)
    assert "Best K-means silhouette" not in captions and "the Gaussian mixture uses the same k" in captions
    at.selectbox(key="explorer_color").set_value("group").run()
    assert "colour the map when *Colour by* is *cluster*" in " ".join(c.value for c in at.caption)


def test_the_query_neighbours_say_they_live_in_the_full_space(fake_sources):
    at = page().run()
    at.text_input(key="explorer_query").set_value("a query").run()
    assert "Nearest by cosine in the full 8-d space" in " ".join(c.value for c in at.caption)


def test_many_categories_become_the_top_ones_plus_other():
    from recsys.viz.figures import PALETTE, scatter_figure, top_categories

    # 36 topics, topic i has i + 1 points: the 19 largest (topics 35..17) keep a colour, the rest are "other"
    values = pd.Series([f"t{i}" for i in range(36) for _ in range(i + 1)])
    groups = top_categories(values)
    assert groups.nunique() == len(PALETTE) and (groups == "other").sum() == sum(range(1, 18))
    meta = pd.DataFrame({"label": values, "topic": values})
    fig = scatter_figure(np.zeros((len(values), 2)), meta, "topic")
    assert [t.name for t in fig.data][-1] == "other" and len(fig.data) == len(PALETTE)
    assert len({t.marker.color for t in fig.data}) == len(PALETTE)  # no colour repeats
