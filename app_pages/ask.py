"""Ask: find linear-algebra teaching videos for a question (DCDT and baselines).

UI only: every computation is in :mod:`recsys.videos.serving` (``VideoService``) and
:mod:`recsys.videos.page` (model picker from the registry, examples, result tables).
Text from outside (server errors, fallback reasons, model sources) is shown with
``st.text``, never as Markdown; catalogue and query text inside Markdown is escaped.
"""

from __future__ import annotations

import re
import time

import streamlit as st

from recsys.eval import videos as video_eval
from recsys.videos import page as video_page
from recsys.videos import serving

QUERY_KEY = "ask_query"
_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|>~<&$])")


def md_escape(text: str) -> str:
    """Show user or catalogue text literally inside st.markdown: no markup, no links, no HTML."""
    return _MD_SPECIAL.sub(r"\\\1", " ".join(str(text).split()))


@st.cache_resource(show_spinner="Loading the video catalogue and the embedding model…")
def load_service(backend: str, api_key: str | None):
    return serving.make_service(backend=backend, api_key=api_key or None)


def _use_example(text: str) -> None:
    st.session_state[QUERY_KEY] = text


def _settings():
    with st.sidebar:
        st.subheader("Ask settings")
        backend = st.selectbox("Embedding backend", ["auto", "local", "openai"], index=0,
                               help="auto: OpenAI text-embedding-3-small when an API key is set, "
                                    "else the local all-MiniLM-L6-v2.")
        api_key = ""
        if backend != "local":
            api_key = st.text_input("OpenAI API key (optional)", type="password",
                                    help="Leave empty to use the OPENAI_API_KEY environment variable.")
        k = st.slider("Videos per model", 1, 20, 5)
    return backend, api_key, k


def _render_results(record: dict, names: dict[str, str]) -> None:
    name = record["model"]
    st.caption(f"{md_escape(names.get(name, name))}: {record['latency_ms']:.1f} ms for this answer "
               f"(query embedding + scoring + top-k; scoring + top-k alone {record['score_ms']:.2f} ms)")
    if record.get("source"):
        st.text(f"checkpoint: {record['source']}")
    if record.get("hidden_no_match"):
        st.info(f"{record['hidden_no_match']} more videos are hidden: none of your words occurs in them "
                "(BM25 matches words only, so it cannot answer in another language or with other words).")
    if not record["results"]:
        st.info("No videos.")
    kind = video_page.score_kind(name)
    for rank, item in enumerate(record["results"], start=1):
        with st.container(border=True):
            st.markdown(f"**{rank}. {md_escape(item['title'])}**")
            if item.get("summary"):
                st.text(item["summary"])
            topics = ", ".join(item["topics"])
            st.caption(f"{md_escape(item['series'])} · level: {md_escape(item['level'])} · "
                       f"topics: {md_escape(topics)} · {kind} {item['score']:.3f}")
            if item.get("link"):
                st.markdown(f"[Watch: the series' course page]({item['link']}) (lists this lecture by its title; "
                            "the catalogue has no per-video link)")
            why = video_page.why_line(item)
            if why:
                st.caption(md_escape(why))


def _waited_line(waited_ms: float, first_query: bool, loaded_now: bool, load_seconds: float | None) -> str:
    """What the user waited for, labelled: the first query of a server, and any loading it included."""
    label = "First query on this server: " if first_query else ""
    loading = ""
    if loaded_now and load_seconds is not None:
        loading = f", including {load_seconds:.2f} s loading the recommender (encoder and video side)"
    elif first_query and load_seconds is not None:
        loading = f"; the recommender (encoder and video side) had loaded in {load_seconds:.2f} s when the page opened"
    return f"{label}{waited_ms:.0f} ms from pressing Enter to this answer on the page{loading}"


def _render_neighbours(neighbours: list[dict], titles: dict[str, str]) -> None:
    with st.expander("Why: the closest training queries", expanded=False):
        st.caption("Labelled training queries nearest to yours by embedding cosine, and the videos they were "
                   "answered with (what the collaborative-filtering model votes with and what DCDT learned from).")
        for n in neighbours:
            videos = "; ".join(md_escape(titles.get(v, v)) for v in n["relevant"][:4])
            st.markdown(f"- *{md_escape(n['text'])}* (cosine {n['similarity']:.2f}) → {videos}")


def _render_metrics() -> None:
    with st.expander("Metrics and evaluation", expanded=False):
        st.markdown("\n".join(f"- **{video_eval.METRIC_LABELS[m]}**: {d}"
                              for m, d in video_eval.METRIC_DEFINITIONS.items()))
        tables = video_page.display_tables()
        for title, frame in tables.items():
            st.markdown(f"**{title}**")
            st.dataframe(frame, hide_index=True)
        if not tables:
            st.caption("No evaluation yet: run `python -m recsys evaluate videos --split test --seeds 5`.")


def main() -> None:
    st.title("🔎 Ask: linear-algebra videos")
    st.caption("Describe what you want to learn or teach; DCDT (a dual tower over frozen text embeddings with "
               "cross-modal attention) and its baselines recommend videos from the catalogue.")
    backend, api_key, k = _settings()

    page_start = time.perf_counter()  # what the user waits for starts here (loading the service included)
    run_wall = time.time()
    try:
        service = load_service(backend, api_key)
    except Exception as error:  # missing assets, unloadable model: a message, not a traceback
        st.error("Could not load the video recommender:")
        st.text(f"{type(error).__name__}: {error}")
        return

    st.write("Examples:")
    columns = st.columns(3)
    for i, example in enumerate(video_page.EXAMPLE_QUERIES):
        columns[i % 3].button(example, key=f"example-{i}", on_click=_use_example, args=(example,),
                              width="stretch")
    ask, go = st.columns([5, 1], vertical_alignment="bottom")
    query = ask.text_input("Your question (any language; Enter searches)", key=QUERY_KEY,
                           placeholder="e.g. a visual intuition for eigenvectors before my exam")
    go.button("Search", key="ask_search", width="stretch")  # Enter in the box submits as well
    mode = st.radio("Models", ["One model", "Compare models"], horizontal=True)
    names = video_page.model_choices()
    if mode == "One model":
        models = [st.selectbox("Model", list(names), format_func=names.get, key="ask_model")]
    else:
        models = st.multiselect("Models to compare", list(names),
                                default=[n for n in video_page.DEFAULT_COMPARE if n in names], format_func=names.get)
    _render_metrics()

    if not query:
        st.info("Type a question above or click an example.")
        return
    if not query.strip():
        st.warning("The query is empty: type what you want to learn.")
        return
    if not models:
        st.warning("Choose at least one model.")
        return

    first_query = getattr(service, "answered", 0) == 0
    loaded_now = getattr(service, "created_at", 0.0) >= run_wall  # the service was loaded in this very run
    try:
        with st.spinner("Recommending… (the first query loads the models)"):
            answer = service.recommend_many(query, models, k=k, explain=True)
    except ValueError as error:  # our own message about the input
        st.warning(md_escape(str(error)))
        return
    except Exception as error:  # embedding backend down, training failed...: the text may come from a server
        st.error("Could not compute recommendations:")
        st.text(f"{type(error).__name__}: {error}")
        return

    for notice in answer["notices"]:
        st.warning(notice)
    if getattr(service, "serving_note", None):
        st.text(service.serving_note)  # may quote a file path or a library's message: plain text
    if answer["fallback_reason"]:
        st.warning("OpenAI embeddings failed, so the local model is used instead. The server said:")
        st.text(str(answer["fallback_reason"]))
    st.caption(f"Encoder: {md_escape(answer['backend'])} · query embedded in {answer['embed_ms']:.1f} ms")
    if answer.get("read_as", answer["query"]) != answer["query"]:
        glosses = answer["read_as"][len(answer["query"]):].strip()
        st.caption(f"Read with the glossary's English terms: {md_escape(glosses)} (BM25 and the English-only "
                   "encoder read these; the local multilingual encoder reads the question as typed)")
    waited = st.empty()  # filled once the results are on the page: what the user waited for, rendering included

    if len(models) == 1:
        _render_results(answer["results"][models[0]], names)
    else:
        for column, name in zip(st.columns(len(models)), models):
            with column:
                st.subheader(names[name])
                _render_results(answer["results"][name], names)
    titles = dict(zip(service.data.catalog["video_id"], service.data.catalog["title"]))
    _render_neighbours(answer.get("neighbours", []), titles)
    waited_ms = (time.perf_counter() - page_start) * 1000  # service loading and rendering included
    waited.caption(_waited_line(waited_ms, first_query, loaded_now, getattr(service, "load_seconds", None)))


main()
