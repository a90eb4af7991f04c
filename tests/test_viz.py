"""recsys.viz: sampling, projections and their cache, clustering, figures, source helpers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from recsys.viz import clustering, figures, projections, sources


def two_blobs(n=40, d=6, seed=0):
    rng = np.random.default_rng(seed)
    a = rng.normal(scale=0.3, size=(n, d)) + 5
    b = rng.normal(scale=0.3, size=(n, d)) - 5
    return np.concatenate([a, b]).astype(np.float32)


# --- sampling and projections --------------------------------------------------------------------
def test_sample_is_seeded_sorted_and_complete_when_small():
    assert projections.sample_indices(5, 10).tolist() == [0, 1, 2, 3, 4]
    first = projections.sample_indices(1000, 100, seed=3)
    assert len(first) == 100 and len(set(first)) == 100
    assert np.all(np.diff(first) > 0)
    assert first.tolist() == projections.sample_indices(1000, 100, seed=3).tolist()
    assert first.tolist() != projections.sample_indices(1000, 100, seed=4).tolist()
    with pytest.raises(ValueError, match="positive"):
        projections.sample_indices(10, 0)


def test_pca_of_points_on_a_line_keeps_their_spacing():
    # points t * (1, 1, 0) for t = -2..2: the first component is that direction, so the
    # first coordinate is +-sqrt(2) * t and the second is 0.
    t = np.arange(-2, 3, dtype=np.float32)
    x = np.stack([t, t, np.zeros_like(t)], axis=1)
    p = projections.fit_projection(x, "pca")
    np.testing.assert_allclose(np.abs(p.coords[:, 0]), np.sqrt(2) * np.abs(t), atol=1e-5)
    np.testing.assert_allclose(p.coords[:, 1], 0, atol=1e-5)
    # transform of a new point on the line: t = 3 -> |coordinate| = 3 sqrt(2)
    assert abs(p.transform(np.array([[3, 3, 0]], np.float32))[0, 0]) == pytest.approx(3 * np.sqrt(2), abs=1e-4)


def test_projection_rejects_bad_input():
    with pytest.raises(ValueError, match="unknown projection"):
        projections.fit_projection(np.zeros((5, 2)), "mds")
    with pytest.raises(ValueError, match="at least 3 rows"):
        projections.fit_projection(np.zeros((2, 4)), "pca")
    with pytest.raises(ValueError, match="NaN"):
        projections.fit_projection(np.array([[0, 1], [1, np.nan], [2, 2]]), "pca")


def test_tsne_separates_blobs_and_places_new_points_by_neighbours():
    x = two_blobs()
    p = projections.fit_projection(x, "tsne", perplexity=10, max_iter=300)
    assert p.coords.shape == (80, 2) and not p.can_transform
    centre_a, centre_b = p.coords[:40].mean(0), p.coords[40:].mean(0)
    placed = p.transform(x[:1] + 0.01)[0]
    # a point next to blob a lands nearer blob a's centre than blob b's
    assert np.linalg.norm(placed - centre_a) < np.linalg.norm(placed - centre_b)


def test_projection_cache_round_trip_and_key(tmp_path):
    x = two_blobs()
    fp = projections.fingerprint_array(x)
    assert fp == projections.fingerprint_array(x.copy()) and fp != projections.fingerprint_array(x + 1)
    assert projections.projection_key(fp, "umap", 0, n_neighbors=15) == projections.projection_key(fp, "umap", 0)
    assert projections.projection_key(fp, "umap", 0, n_neighbors=5) != projections.projection_key(fp, "umap", 0)
    first = projections.cached_projection(x, "pca", root=tmp_path)
    files = list(tmp_path.glob("pca-*.npz"))
    assert len(files) == 1
    projections._MEMORY.clear()  # read back from disk, as a restarted server would
    again = projections.load_projection(files[0].stem, tmp_path)
    assert again is not None and files[0].exists()
    np.testing.assert_array_equal(first.coords, again.coords)
    # PCA's transform survives the cache as plain arrays
    np.testing.assert_allclose(first.transform(x[:3]), again.transform(x[:3]), atol=1e-5)
    projections._MEMORY.clear()
    files[0].write_bytes(b"garbage")  # a corrupt entry is dropped, not fatal
    assert projections.load_projection(files[0].stem, tmp_path) is None and not files[0].exists()


def test_tsne_cache_keeps_neighbour_placement(tmp_path):
    x = two_blobs()
    first = projections.cached_projection(x, "tsne", root=tmp_path, perplexity=10, max_iter=250)
    projections._MEMORY.clear()
    [path] = tmp_path.glob("tsne-*.npz")
    again = projections.load_projection(path.stem, tmp_path)
    np.testing.assert_array_equal(first.coords, again.coords)
    np.testing.assert_allclose(first.transform(x[:2]), again.transform(x[:2]), atol=1e-5)


def test_background_jobs_fit_once_and_report_state(tmp_path):
    jobs = projections.ProjectionJobs(root=tmp_path)
    x = two_blobs()
    key = jobs.submit(x, "pca")
    assert jobs.state(key) in ("running", "done")
    projection = jobs.wait(key, timeout=60)
    assert jobs.state(key) == "done" and projection.coords.shape == (80, 2)
    assert jobs.submit(x, "pca") == key  # cached: nothing new to do
    bad = jobs.submit(np.zeros((2, 3), np.float32), "pca")
    with pytest.raises(ValueError):
        jobs.wait(bad, timeout=60)
    assert jobs.state(bad).startswith("failed: ValueError")
    assert jobs.state("never-submitted") == "absent"


@pytest.mark.slow
def test_umap_fits_and_transforms():
    x = two_blobs(n=60)
    p = projections.fit_projection(x, "umap", n_neighbors=10)
    assert p.coords.shape == (120, 2) and p.can_transform
    placed = p.transform(x[:1])[0]
    centre_a, centre_b = p.coords[:60].mean(0), p.coords[60:].mean(0)
    assert np.linalg.norm(placed - centre_a) < np.linalg.norm(placed - centre_b)


# --- clustering -------------------------------------------------------------------------------------
def test_kmeans_and_gmm_recover_two_blobs():
    x = two_blobs()
    for method in clustering.CLUSTER_METHODS:
        labels = clustering.cluster(x, 2, method)
        assert len(set(labels[:40])) == 1 and len(set(labels[40:])) == 1 and labels[0] != labels[-1]
    with pytest.raises(ValueError, match="unknown clustering"):
        clustering.cluster(x, 2, "dbscan")
    with pytest.raises(ValueError, match="at least 2"):
        clustering.cluster(x, 1)


def test_silhouette_by_hand():
    # points 0, 1 (cluster A) and 10, 11 (cluster B) on a line.
    # point 0: a = 1, b = mean(10, 11) = 10.5 -> s = (10.5 - 1) / 10.5 = 0.904762
    # point 1: a = 1, b = mean(9, 10) = 9.5 -> s = 8.5 / 9.5 = 0.894737; by symmetry the
    # mean over the four points is (0.904762 + 0.894737) / 2 = 0.899749
    x = np.array([[0.0], [1.0], [10.0], [11.0]])
    assert clustering.silhouette(x, np.array([0, 0, 1, 1])) == pytest.approx(0.899749, abs=1e-5)
    assert np.isnan(clustering.silhouette(x, np.zeros(4)))


def test_elbow_table_and_suggested_k():
    x = two_blobs()
    table = clustering.elbow_table(x, range(2, 6))
    assert table["k"].tolist() == [2, 3, 4, 5]
    assert table["inertia"].is_monotonic_decreasing
    assert clustering.suggest_k(table) == 2  # two blobs separate best at k = 2
    small = clustering.elbow_table(x[:4], range(2, 10))
    assert small["k"].tolist() == [2, 3]  # k must stay below the number of points


def test_reduce_for_clustering_caps_dimensions():
    x = np.random.default_rng(0).normal(size=(100, 80)).astype(np.float32)
    assert clustering.reduce_for_clustering(x, 50).shape == (100, 50)
    assert clustering.reduce_for_clustering(x[:, :10], 50).shape == (100, 10)


# --- figures ---------------------------------------------------------------------------------------------
def test_scatter_figure_has_one_trace_per_colour_plus_overlays():
    meta = pd.DataFrame({"label": ["a", "b", "c", "d"], "topic": ["x", "x", "y", None]})
    coords = np.arange(8, dtype=float).reshape(4, 2)
    fig = figures.scatter_figure(coords, meta, "topic", highlight=[1], overlays=[{"x": 0, "y": 0, "name": "query"}])
    names = [trace.name for trace in fig.data]
    assert names == ["x", "y", "(missing)", "highlighted", "query"]
    assert list(fig.data[0].text) == ["a", "b"]
    with pytest.raises(ValueError, match="metadata rows"):
        figures.scatter_figure(coords[:3], meta)


def test_colorable_columns_skip_lists_labels_and_unique_ids():
    meta = pd.DataFrame({
        "label": list("abcd"), "id": [1, 2, 3, 4], "topic": ["x", "x", "y", "y"], "tags": [["t"]] * 4,
        "const": ["k"] * 4,
    })
    assert figures.colorable_columns(meta) == ["id", "topic"]  # 4 distinct small ints still colour
    many = pd.DataFrame({"label": range(100), "id": range(100)})
    assert figures.colorable_columns(many) == []


def test_curves_figure_and_metric_names():
    histories = {
        "run1": [{"epoch": 1, "train_loss": 2.0, "lr": 0.1, "mrr@10": 0.1}, {"epoch": 2, "train_loss": 1.0}],
        "run2": [{"epoch": 1, "train_loss": 3.0, "seconds": 1.0}],
    }
    assert figures.metric_names(histories) == ["train_loss", "mrr@10"]
    fig = figures.curves_figure(histories, "train_loss")
    assert [t.name for t in fig.data] == ["run1", "run2"]
    assert list(fig.data[0].y) == [2.0, 1.0]
    assert [t.name for t in figures.curves_figure(histories, "mrr@10").data] == ["run1"]


def test_elbow_figure_has_both_axes():
    table = pd.DataFrame({"k": [2, 3], "inertia": [10.0, 5.0], "silhouette": [0.5, 0.4]})
    fig = figures.elbow_figure(table, chosen_k=3)
    assert [t.name for t in fig.data] == ["inertia", "silhouette"]


# --- sources ------------------------------------------------------------------------------------------------
def test_source_data_validates_and_labels():
    data = sources.SourceData(np.zeros((3, 2)), pd.DataFrame({"x": [1, 2, 3]}))
    assert data.meta["label"].tolist() == ["item 0", "item 1", "item 2"]
    assert data.vectors.dtype == np.float32 and len(data.fingerprint) == 16
    with pytest.raises(ValueError, match="metadata rows"):
        sources.SourceData(np.zeros((3, 2)), pd.DataFrame({"x": [1]}))




def test_a_broken_domain_does_not_empty_the_source_list(monkeypatch):
    from recsys import registry

    def page(domain, role):
        if domain == "anime":
            raise ImportError("half written")
        return type("Page", (), {"embedding_sources": staticmethod(
            lambda: [sources.Source(f"{domain}-x", domain, "", sources.unavailable(f"{domain} not trained"))])})

    monkeypatch.setattr(registry, "domain_module", page)
    keys = [s.key for s in sources.list_sources()]
    assert keys == ["videos-x", "sequential-x"]
    with pytest.raises(sources.SourceUnavailable, match="videos not trained"):
        sources.load_source("videos-x")


def test_a_damaged_checkpoint_makes_a_source_unavailable_not_an_exception(monkeypatch):
    from recsys import registry
    from recsys.artifacts import ArtifactError

    def load():
        raise ArtifactError("runs/x/checkpoint.safetensors is not a readable artifact")

    page = type("Page", (), {"embedding_sources": staticmethod(lambda: [sources.Source("k", "t", "", load)])})
    monkeypatch.setattr(registry, "DOMAINS", {"videos": "recsys.videos"})
    monkeypatch.setattr(registry, "domain_module", lambda domain, role: page)
    with pytest.raises(sources.SourceUnavailable, match="checkpoint.safetensors"):
        sources.load_source("k")
