"""recsys-studio: the Streamlit entry point.

Run with ``streamlit run app.py``. Each page lives in ``app_pages/`` and is UI only; the
modelling is in the ``recsys`` package.
"""

from pathlib import Path

import streamlit as st

st.set_page_config(page_title="recsys-studio", page_icon="🎯", layout="wide")

PAGES_DIR = Path(__file__).parent / "app_pages"
#: (file, title, icon, url path): the url path is the deep link (``/results``, ``/results#cl-epidtn``)
PAGES = [
    ("home.py", "Home", "🏠", ""),
    ("ask.py", "Ask (linear algebra)", "🔎", "ask"),
    ("anime.py", "Anime", "🎬", "anime"),
    ("results.py", "Results", "📑", "results"),
    ("explorer.py", "Embedding explorer", "🧭", "explorer"),
    ("studio.py", "Training studio", "🏋️", "studio"),
]

navigation = st.navigation(
    [
        st.Page(str(PAGES_DIR / file), title=title, icon=icon, default=(file == "home.py"), url_path=url or None)
        for file, title, icon, url in PAGES
        if (PAGES_DIR / file).exists()
    ]
)
navigation.run()
