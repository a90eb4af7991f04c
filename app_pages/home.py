"""Home: what each page does, which data is present, which device trains, what is served."""

from __future__ import annotations

from pathlib import Path

import streamlit as st
import torch

from recsys.data.integrity import quick_report
from recsys.paths import DataNotFoundError, find_data_dir
from recsys.train.runs import RunRegistry

def _stamp(path: Path) -> tuple[int, int]:
    stat = path.stat()
    return stat.st_size, stat.st_mtime_ns


@st.cache_resource(show_spinner="Checking the data files…", max_entries=16)
def file_report(path: str, size: int, mtime: int):
    """Rows, checksum and release of one data file (re-checked when its size or time changes)."""
    return quick_report(Path(path))


st.title("🎯 recsys-studio")
st.markdown(
    "Recommender systems you can train, inspect and query in the browser: a linear-algebra video search "
    "(dual-tower DCDT), anime recommendations (two-tower), sequential recommendation on MovieLens (CL-EPIDTN and "
    "its baselines), with the experiments behind them."
)

#: (page file, title, what it does); each title is a link to the page
PAGES = [
    ("ask.py", "🔎 Ask (linear algebra)", "Type what you want to learn; get the teaching videos that answer it, "
                                "from the served retrieval model."),
    ("anime.py", "🎬 Anime", "Pick a user (or describe your taste) and get anime recommendations from the two-tower model."),
    ("results.py", "📑 Results", "The tables behind each model, for all three papers (DCDT, Two Towers, CL-EPIDTN): ours "
                                "beside the paper's figures, a verdict per comparison, convergence, and the command "
                                "that regenerates each table."),
    ("explorer.py", "🧭 Embedding explorer", "2-D maps (PCA, UMAP, t-SNE) of catalogue and model embeddings, clusters with elbow "
                             "and silhouette, and where a query or a user lands."),
    ("studio.py", "🏋️ Training studio", "Launch any model in a background worker, watch live loss curves, stop, compare runs and "
                          "choose the checkpoint the pages serve."),
]
st.subheader("Pages")
PAGES_DIR = Path(__file__).parent
for file, title, text in PAGES:
    if not (PAGES_DIR / file).exists():
        continue
    try:
        st.page_link(str(PAGES_DIR / file), label=title)
    except Exception:  # noqa: BLE001 - outside the app's navigation (a page run on its own): plain title
        st.markdown(f"**{title}**")
    st.caption(text)

st.subheader("Status")
left, middle, right = st.columns(3)
with left:
    st.markdown("**Data**")
    try:
        from recsys.data.videos import load_catalog

        st.markdown(f"✅ video catalogue: {len(load_catalog())} videos (shipped in `assets/`)")
    except Exception as error:
        st.markdown(f"❌ video catalogue: {error}")
    for dataset, required in [("anime", ["anime.csv", "rating.csv"]),
                              ("ml-100k", ["ml-100k.inter", "ml-100k.item", "ml-100k.user"])]:
        try:
            path = find_data_dir(dataset, required, "see the README")
        except DataNotFoundError:
            st.markdown(f"❌ {dataset}: not found (set `RECSYS_DATA_DIR`; see the README)")
            continue
        reports = [file_report(str(path / name), *_stamp(path / name)) for name in required]
        warnings = [w for r in reports for w in r.warnings]
        st.markdown(f"{'⚠️' if warnings else '✅'} {dataset}: " + ", ".join(f"{r.rows:,} rows" for r in reports))
        st.text(str(path))  # file paths and warnings: plain text, never Markdown
        for warning in warnings:
            st.text(f"⚠ {warning}")
with middle:
    st.markdown("**Device**")
    if torch.cuda.is_available():
        st.markdown(f"✅ CUDA: {torch.cuda.get_device_name(0)}")
    else:
        st.markdown(f"CPU only ({torch.get_num_threads()} threads); no CUDA device")
    st.caption(f"torch {torch.__version__}")
with right:
    st.markdown("**Runs**")
    registry = RunRegistry()
    runs = registry.list()
    counts: dict[str, int] = {}
    for run in runs:
        state = run.status()["status"]
        counts[state] = counts.get(state, 0) + 1
    st.markdown(", ".join(f"{n} {state}" for state, n in sorted(counts.items())) or "no runs yet")
    served = sorted({run.recipe for run in runs if run.recipe and registry.active_run(run.recipe)})
    if registry.active_problem():
        st.warning("The served-runs file is damaged; serving the shipped models.")
        st.text(registry.active_problem())  # file text: plain, never Markdown
    st.markdown("Served: " + (", ".join(f"`{name}`" for name in served) if served else "package defaults"))
