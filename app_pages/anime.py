"""Anime recommender page: pick a dataset user or rate a few anime, compare methods, ask a judge.

UI only: the models are served by :mod:`recsys.anime.serving`; tables and pickers come from
:mod:`recsys.anime.page` and the model registry.
"""

from __future__ import annotations

import streamlit as st

from recsys.anime import warmup

st.title("🎬 Anime recommender")
warmup.start()  # the split and item-kNN's similarity in a thread while torch imports just below

import pandas as pd  # noqa: E402

from recsys.anime import page as helpers  # noqa: E402
from recsys.anime import serving  # noqa: E402
from recsys.eval.llm_judge import judge_recommendations  # noqa: E402
from recsys.paths import DataNotFoundError  # noqa: E402

st.caption(
    "Two-tower models of the anime paper (MSE on ratings; weighted-average nearest anime, K-means and GMM retrieval "
    "for unseen users) beside our denoising two-tower, an implicit two-tower, EASE, item-kNN and popularity. "
    "Watched anime are never recommended."
)


try:
    # the full bundle when trained (cached in-process by serving, shared with the explorer); on a first
    # visit item-kNN / popularity are served at once and the rest trains in a background thread that
    # starts at the end of this script, once the first list is on screen (not competing with it)
    with st.spinner("Loading the anime data…"):
        recommender, complete = serving.page_recommender_now()
except DataNotFoundError as error:
    st.error(f"The anime dataset is missing.\n\n{error}")
    st.stop()

if not complete:
    st.info("First visit: the two-tower models and EASE are training in the background (about a minute or "
            "two). Item-kNN and popularity are served meanwhile; the page adds the others when they are ready.")

    @st.fragment(run_every=5)
    def _wait_for_models():
        if serving.page_recommender_now()[1]:
            st.rerun(scope="app")

    _wait_for_models()

split = recommender.split
LABELS = {name: label for name, label in helpers.page_methods().items() if name in recommender.models}
DEFAULTS = [m for m in helpers.DEFAULT_PAGE_METHODS if m in LABELS]
if complete:
    st.caption(f"Serving: {helpers.served_note(recommender)}")
for refused in recommender.train_info.get("refused", []):
    st.warning("A studio checkpoint was refused; the cached model is served instead.")
    st.text(refused)  # a file path and a reason: plain text, never Markdown


def show_recommendations(histories, key: str) -> dict:
    """Side-by-side columns, one per chosen method; returns {method: (table, fallback)}."""
    methods = st.multiselect("Methods", list(LABELS), default=DEFAULTS, format_func=lambda m: LABELS[m],
                             key=f"{key}-methods" + ("" if complete else "-quick"), select_all=False)
    k = st.slider("How many recommendations", 5, 20, 10, key=f"{key}-k")
    shown = {}
    if not methods:
        st.info("Pick at least one method.")
        return shown
    per_row = 2  # two lists side by side: wide enough for the title, the score and every genre
    for start in range(0, len(methods), per_row):
        columns = st.columns(per_row)
        for column, method in zip(columns, methods[start: start + per_row]):
            table, fallback, latency = helpers.recommend_table(recommender, method, histories, k)
            shown[method] = (table, fallback)
            with column:
                st.markdown(f"**{LABELS[method]}**")
                st.caption(method)
                if fallback:
                    st.markdown(":orange-badge[fallback]")
                    st.caption(fallback)
                # a static table wraps long titles and genre lists instead of cutting them
                st.table(table[["name", "score", "genre"]].assign(
                    score=table["score"].map(lambda v: "" if v is None or pd.isna(v) else f"{v:.3f}")),
                    hide_index=True)
                st.caption(f"{latency:.1f} ms")
    return shown


def judge_section(history_table, shown: dict, key: str) -> None:
    if not shown:
        return
    method = st.selectbox("Judge the list of", list(shown), key=f"{key}-judge-method")
    if st.button("Judge", key=f"{key}-judge"):
        history = history_table.assign(rating=history_table["rating"].map(lambda r: -1 if r == "watched" else float(r)))
        recs = shown[method][0].to_dict("records")
        with st.spinner("Judging…"):
            result = judge_recommendations(history.to_dict("records"), recs)
        label = result.judge if result.is_llm else f"⚠️ {result.judge}"
        st.markdown("**Judge:**")
        st.text(label + (f" — {result.error}" if result.error else ""))  # server text: plain, never Markdown
        mean = result.mean
        st.metric("Mean score", "n/a" if mean is None else f"{mean:.1f} / 10")
        st.dataframe([{"#": s.index, "anime": s.name, "score": s.score, "reason": s.reason} for s in result.scores],
                     hide_index=True)


tab_user, tab_new = st.tabs(["Dataset user", "New user"])

with tab_user:
    kind = st.radio("Users", ["seen (in training)", "unseen (held out)"], horizontal=True, key="user-kind")
    if kind.startswith("seen"):
        options = [int(u) for u in split.user_ids]
    else:
        options = [int(u) for u in sorted(split.unseen["user_id"].unique())]
    user_id = int(st.selectbox("User id (type to search)", options, index=0, key="user-pick"))
    try:
        histories, table, user_kind = helpers.dataset_user(recommender, user_id)
    except KeyError as error:
        st.error(f"{error.args[0]}. Pick a user from the list, or use the New user tab.")
    else:
        st.subheader(f"User {user_id} ({user_kind}): {len(table)} anime watched")
        if table.empty:
            st.warning("This user has no history; methods fall back to popularity.")
        st.dataframe(table[["name", "rating", "genre"]], hide_index=True, height=240)
        shown = show_recommendations(histories, "user")
        judge_section(table, shown, "user")

with tab_new:
    st.write("Search anime you have watched, rate them, and the recommendations follow.")
    query = st.text_input("Search anime", key="new-query")
    found = helpers.search_anime(recommender, query, limit=200)
    # the picks stay among the options whatever the search shows, so a new search never drops them
    picked = list(st.session_state.get("new-chosen", []))
    names = helpers.anime_names(recommender, picked) | dict(zip(found["anime_id"], found["name"], strict=True))
    options = picked + [a for a in found["anime_id"].tolist() if a not in picked]
    chosen = st.multiselect("Anime you watched", options, format_func=lambda a: names.get(a, str(a)),
                            key="new-chosen", select_all=False)
    ratings = {}
    for anime_id in chosen:
        ratings[anime_id] = st.slider(names.get(anime_id, str(anime_id)), 1, 10, 8, key=f"new-rate-{anime_id}")
    if not ratings:
        st.info("Rate at least one anime to get recommendations (with none, only popularity applies).")
    else:
        histories, skipped = recommender.histories_from_ids(list(ratings), list(ratings.values()))
        table = helpers.history_table(recommender, split.item_index(list(ratings)), list(ratings.values()))
        shown = show_recommendations(histories, "new")
        judge_section(table, shown, "new")

if not complete:
    serving.start_bundle_build()  # after the first list is drawn; once per process
