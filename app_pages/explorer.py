"""Embedding explorer: 2-D maps (PCA / UMAP / t-SNE) of any embedding source, clusters, and overlays.

PCA is shown at once; UMAP and t-SNE are fitted in a background thread and cached on
disk (``recsys.viz.projections``), and the page picks them up when they are ready.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from recsys.viz import clustering
from recsys.viz.figures import colorable_columns, elbow_figure, scatter_figure
from recsys.viz.projections import background_jobs, fit_projection, projection_key, sample_indices
from recsys.viz.sources import SourceUnavailable, list_sources, load_source

METHOD_NAMES = {"pca": "PCA", "umap": "UMAP", "tsne": "t-SNE"}

st.title("🧭 Embedding explorer")
st.caption(
    "Where do items sit in a model's embedding space? Pick a source, a projection and a clustering; "
    "type a query or pick a user to see where they land."
)


@st.cache_resource(show_spinner="Loading embeddings…", max_entries=6)
def cached_source(key: str):
    return load_source(key)  # exceptions (SourceUnavailable) are not cached, so a retry can succeed


@st.cache_resource(max_entries=12)
def cached_pca(sample_key: str, _vectors: np.ndarray, seed: int):
    return fit_projection(_vectors, "pca", seed)


@st.cache_data(show_spinner="Computing the elbow curve…", max_entries=12)
def cached_elbow(sample_key: str, _reduced: np.ndarray, seed: int) -> pd.DataFrame:
    return clustering.elbow_table(_reduced, range(2, 13), seed)


@st.cache_resource(max_entries=12)
def cached_reduced(sample_key: str, _vectors: np.ndarray, seed: int) -> np.ndarray:
    return clustering.reduce_for_clustering(_vectors, 50, seed)


@st.cache_data(show_spinner="Clustering…", max_entries=24)
def cached_clusters(sample_key: str, _reduced: np.ndarray, k: int, method: str, seed: int):
    labels = clustering.cluster(_reduced, k, method, seed)
    return labels, clustering.silhouette(_reduced, labels, seed=seed)


@st.cache_resource(max_entries=8)
def cached_projection_result(key: str):
    return background_jobs().result(key)


# ------------------------------------------------------------------------------------------------
# source
# ------------------------------------------------------------------------------------------------
sources = list_sources()
by_key = {s.key: s for s in sources}
with st.sidebar:
    st.header("Explorer")
    source_key = st.selectbox("Embedding source", list(by_key), format_func=lambda k: by_key[k].title,
                              key="explorer_source")
st.caption(by_key[source_key].description)
try:
    data = cached_source(source_key)
except SourceUnavailable as error:
    st.info(f"**Not available:** {error}")
    st.stop()
except Exception as error:  # a pipeline bug: say so without a traceback wall
    st.error(f"Loading this source failed: {type(error).__name__}: {error}")
    st.stop()

n_total = len(data.vectors)
with st.sidebar:
    seed = int(st.number_input("Seed", 0, 10_000, 0, key="explorer_seed"))
    if n_total > 500:
        max_points = st.slider("Points shown (seeded sample)", 500, min(20_000, n_total),
                               min(3_000, n_total), step=100, key="explorer_points")
    else:
        max_points = n_total
        st.caption(f"All {n_total} points are shown.")
    method = st.radio("Projection", list(METHOD_NAMES), format_func=METHOD_NAMES.get, horizontal=True,
                      key="explorer_method")
    if method == "umap":
        n_neighbors = st.slider("UMAP neighbours", 5, 100, 15, key="umap_neighbors")
        min_dist = st.slider("UMAP min_dist", 0.0, 0.99, 0.1, key="umap_min_dist")
        params = {"n_neighbors": n_neighbors, "min_dist": float(min_dist)}
    elif method == "tsne":
        params = {"perplexity": float(st.slider("t-SNE perplexity", 5, 100, 30, key="tsne_perplexity"))}
    else:
        params = {}
    st.divider()
    cluster_method = st.radio("Clusters", ["kmeans", "gmm"], horizontal=True, key="cluster_method",
                              format_func={"kmeans": "K-means", "gmm": "Gaussian mixture"}.get)
    k = st.slider("k (clusters)", 2, 20, 8, key="cluster_k")

rows = sample_indices(n_total, max_points, seed)
vectors, meta = data.vectors[rows], data.meta.iloc[rows].reset_index(drop=True)
sample_key = f"{source_key}|{data.fingerprint}|{len(rows)}|{seed}"
st.caption(f"{data.note} · showing {len(rows):,} of {n_total:,} points ({vectors.shape[1]}-d)")

# ------------------------------------------------------------------------------------------------
# projection: PCA now, UMAP / t-SNE in the background
# ------------------------------------------------------------------------------------------------
projection = cached_pca(sample_key, vectors, seed)
pending = None
if method != "pca":
    jobs = background_jobs()
    fingerprint = f"{data.fingerprint}-{len(rows)}-{seed}"
    key = projection_key(fingerprint, method, seed, **params)
    state = jobs.state(key)
    if state == "absent":
        jobs.submit(vectors, method, seed, fingerprint=fingerprint, **params)
        state = jobs.state(key)
    if state == "done":
        projection = cached_projection_result(key) or projection
    elif state.startswith("failed"):
        st.error(f"{METHOD_NAMES[method]} {state}")
    else:
        pending = key

if pending:
    @st.fragment(run_every=2)
    def wait_for_projection():
        state = background_jobs().state(pending)
        if state != "running":
            st.rerun()
        st.info(
            f"Computing {METHOD_NAMES[method]} in the background ({background_jobs().elapsed(pending):.0f} s so far"
            + ("; the first UMAP fit in a server process compiles numba code, about a minute" if method == "umap"
               else "") + "). Showing PCA meanwhile; the map switches by itself when it is ready."
        )

    wait_for_projection()

coords = projection.coords
shown_method = projection.method

# ------------------------------------------------------------------------------------------------
# clusters
# ------------------------------------------------------------------------------------------------
reduced = cached_reduced(sample_key, vectors, seed)
labels, sil = cached_clusters(sample_key, reduced, min(k, len(rows) - 1), cluster_method, seed)
meta = meta.assign(cluster=[f"cluster {c}" for c in labels])

# ------------------------------------------------------------------------------------------------
# overlays
# ------------------------------------------------------------------------------------------------
overlays, highlight = [], []
neighbours = None
if data.encode_query is not None:
    q_left, q_right = st.columns([4, 1])
    query = q_left.text_input("Where does this query land?", key="explorer_query",
                              placeholder="e.g. visual intuition for eigenvectors")
    top_k = q_right.number_input("Nearest", 1, 50, 10, key="explorer_topk")
    if query.strip():
        try:
            q = np.asarray(data.encode_query([query]), dtype=np.float32)
        except ValueError as error:
            st.warning(f"Cannot embed that query: {error}")
        else:
            unit = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
            sims = unit @ (q[0] / max(np.linalg.norm(q[0]), 1e-12))
            order = np.argsort(-sims)[: int(top_k)]
            highlight = order.tolist()
            point = projection.transform(q)[0]
            overlays.append({"x": point[0], "y": point[1], "name": "query", "text": query[:40]})
            neighbours = pd.DataFrame({"title": meta["label"].iloc[order].to_numpy(),
                                       "cosine": np.round(sims[order], 3)})
if data.user_ids is not None:
    try:
        users = list(data.user_ids())
    except Exception as error:
        users = []
        st.caption(f"User overlay unavailable: {error}")
    if users:
        user = st.selectbox("Show a user's watched items", [None, *users], key="explorer_user",
                            format_func=lambda u: "(none)" if u is None else f"user {u}")
        if user is not None:
            history = data.user_items(user)
            position = {int(r): i for i, r in enumerate(rows)}
            in_sample = [position[r] for r in history["row"] if r in position]
            if len(history):
                weights = history["weight"].to_numpy(float)
                mean = (data.vectors[history["row"].to_numpy()] * weights[:, None]).sum(0) / weights.sum()
                point = projection.transform(mean[None, :])[0]
                overlays.append({"x": point[0], "y": point[1], "name": f"user {user} (weighted mean)",
                                 "text": f"user {user}", "symbol": "diamond", "color": "#9467bd"})
                if in_sample:
                    overlays.append({"x": coords[in_sample, 0], "y": coords[in_sample, 1],
                                     "name": "watched", "text": [""] * len(in_sample), "symbol": "circle-open",
                                     "color": "#9467bd", "size": 11})
                st.caption(f"User {user}: {len(history)} rated/watched items known to the model, "
                           f"{len(in_sample)} of them among the points shown; ◆ = rating-weighted mean.")
            else:
                st.caption(f"User {user} has no items this model knows.")

# ------------------------------------------------------------------------------------------------
# the map
# ------------------------------------------------------------------------------------------------
color_options = ["cluster", *colorable_columns(meta.drop(columns=["cluster"]))]
left, right = st.columns([3, 1])
with left:
    color_by = st.selectbox("Colour by", color_options, key="explorer_color", index=0,
                            help="Clusters by default: they follow the K-means / GMM controls. Other columns show "
                                 "their most common values, the rest as 'other'.")
    if color_by != "cluster":
        st.caption("The K-means / Gaussian-mixture controls colour the map when *Colour by* is *cluster*; "
                   "the silhouette and cluster sizes on the right always follow them.")
    fig = scatter_figure(coords, meta, color_by, highlight, overlays,
                         title=f"{METHOD_NAMES[shown_method]} of {len(rows):,} points")
    st.plotly_chart(fig, key="explorer_map")
with right:
    st.metric(f"Silhouette ({cluster_method}, k={k})", f"{sil:.3f}",
              help="Mean silhouette in the (PCA-50) vector space: near 1 = well separated, near 0 = overlapping.")
    elbow = cached_elbow(sample_key, reduced, seed)
    st.plotly_chart(elbow_figure(elbow, k), key="explorer_elbow")
    best = clustering.suggest_k(elbow)
    if cluster_method == "kmeans" and best:
        st.caption(f"Best K-means silhouette at k = {best}. Inertia always falls with k; look for the elbow.")
    elif cluster_method != "kmeans":
        st.caption("The elbow curve is K-means' (inertia and silhouette by k); the Gaussian mixture uses the "
                   "same k, and its silhouette is the number above.")
    sizes = meta["cluster"].value_counts().rename_axis("cluster").reset_index(name="points")
    st.dataframe(sizes, hide_index=True, height=220)
if neighbours is not None:
    st.subheader("Nearest items to the query")
    st.caption(f"Nearest by cosine in the full {vectors.shape[1]}-d space, among the points shown. A 2-D map "
               "cannot keep every distance, so neighbours (ringed on the map) may look scattered there.")
    st.dataframe(neighbours, hide_index=True)
