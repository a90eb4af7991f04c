"""The Ask page (app_pages/ask.py) through streamlit's AppTest, over the hand-made fixture service."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest
from test_videos_fixtures import FakeEmbedder, make_data

from recsys import registry
from recsys.videos import experiments, page as video_page, serving, training

PAGE = str(Path(__file__).resolve().parent.parent / "app_pages" / "ask.py")


class FlakyEmbedder(FakeEmbedder):
    """Fails like a broken backend for texts containing 'boom'; reports an OpenAI fallback."""

    def __init__(self, fallback_reason=None):
        super().__init__()
        self.last_fallback_reason = fallback_reason

    def encode(self, texts, progress=False):
        if any("boom" in t for t in texts):
            from recsys.embed import EmbeddingBackendError

            raise EmbeddingBackendError("backend unreachable")
        return super().encode(texts, progress)


@pytest.fixture
def page(tmp_path, monkeypatch):
    monkeypatch.setenv("RECSYS_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("RECSYS_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setattr(training, "QUICK_TRAIN", dataclasses.replace(training.QUICK_TRAIN, epochs=3, device="cpu"))
    monkeypatch.setattr(training, "SHIPPED_CHECKPOINTS", {})
    monkeypatch.setattr(registry, "MODELS", registry.VIDEO_MODELS)  # this domain's recipes only
    monkeypatch.setattr(experiments, "RESULTS_DIR", tmp_path / "results")
    embedder = FlakyEmbedder()
    service = serving.VideoService(data=make_data(), embedder=embedder)
    monkeypatch.setattr(serving, "make_service", lambda backend="auto", api_key=None: service)
    st.cache_resource.clear()
    app = AppTest.from_file(PAGE, default_timeout=120)
    app.run()
    app.embedder = embedder
    yield app
    st.cache_resource.clear()


def _texts(app) -> str:
    return "\n".join(m.value for m in app.markdown) + "\n".join(c.value for c in app.caption)


def test_renders_without_exception(page):
    assert not page.exception
    assert page.title[0].value.startswith("🔎 Ask")
    assert any("Type a question" in i.value for i in page.info)
    assert len([b for b in page.button if b.key and b.key.startswith("example-")]) == len(video_page.EXAMPLE_QUERIES)


def test_typing_a_query_shows_results_with_latency_and_backend(page):
    page.text_input(key="ask_query").input("gram schmidt orthonormal").run()
    assert not page.exception and not page.error
    text = _texts(page)
    assert "gram schmidt" in text.lower()  # titles of the qr fixture videos are shown
    assert "ms for this answer" in text and "Encoder: fake hashing embedder" in text
    assert "from pressing Enter to this answer" in text
    assert "First query on this server:" in text  # the first answer is labelled (it may include loading)
    # DCDT's why: the score split by modality (the three parts sum to the score)
    assert "why: title" in text and "sum = score" in text and "DCDT score" in text
    assert any(t.value.startswith("checkpoint: trained now") for t in page.text)  # which checkpoint serves
    assert not page.get("progress")  # the old ~50/50 attention bar is gone
    page.text_input(key="ask_query").input("determinant volume").run()
    text = _texts(page)
    assert "from pressing Enter to this answer" in text and "First query on this server" not in text


def test_model_picker_comes_from_the_registry(page):
    names = [spec.display_name for spec in registry.by_domain("videos")]
    assert page.selectbox(key="ask_model").options == names


def test_compare_models_side_by_side(page):
    page.radio[0].set_value("Compare models").run()
    page.text_input(key="ask_query").input("least squares fitting").run()
    assert not page.exception and not page.error
    assert {s.value for s in page.subheader} >= {"DCDT", "BM25", "Embedding cosine"}


def test_example_button_fills_the_query(page):
    page.button(key="example-1").click().run()
    assert page.text_input(key="ask_query").value == video_page.EXAMPLE_QUERIES[1]
    assert not page.exception


def test_empty_query_shows_a_message(page):
    page.text_input(key="ask_query").input("    ").run()
    assert not page.exception
    assert any("empty" in w.value for w in page.warning)


def test_ten_thousand_character_query_is_truncated_with_a_notice(page):
    page.text_input(key="ask_query").input("eigen spectrum " * 667).run()  # 10,005 characters
    assert not page.exception and not page.error
    assert any("characters long" in w.value for w in page.warning)
    assert "ms for this answer" in _texts(page)


def test_markup_and_emoji_are_shown_literally(page):
    page.text_input(key="ask_query").input("<img src=x onerror=alert(1)> **eigen** 🤔").run()
    assert not page.exception and not page.error
    assert all("<img" not in m.value for m in page.markdown)


def test_backend_failure_and_fallback_are_reported(page):
    page.embedder.last_fallback_reason = "openai failed: HTTP 500"
    page.text_input(key="ask_query").input("eigen values").run()
    assert any("OpenAI embeddings failed" in w.value for w in page.warning)
    assert any(t.value == "openai failed: HTTP 500" for t in page.text)
    page.text_input(key="ask_query").input("boom").run()
    assert not page.exception
    assert any("Could not compute" in e.value for e in page.error)
    assert any("backend unreachable" in t.value for t in page.text)


def test_server_text_is_shown_as_plain_text_never_markdown(page):
    """Issue 10: a server's error body with Markdown (a link, a remote image) must not render."""
    hostile = "403 [click me](https://evil.example) ![x](https://evil.example/x.png) **bold**"
    page.embedder.last_fallback_reason = hostile
    page.text_input(key="ask_query").input("eigen values").run()
    assert not page.exception
    assert any(t.value == hostile for t in page.text)  # st.text: shown literally
    markdown_like = [e.value for e in [*page.markdown, *page.warning, *page.error, *page.caption, *page.info]]
    assert not any("evil.example" in value for value in markdown_like)


def test_bm25_hides_videos_without_a_keyword_match(page):
    page.selectbox(key="ask_model").set_value("bm25").run()
    page.text_input(key="ask_query").input("zzzz qqqq").run()  # no word of the catalogue
    assert not page.exception and not page.error
    assert any("hidden: none of your words occurs" in i.value for i in page.info)
    assert "BM25 score" not in _texts(page)  # nothing left to show


def test_metrics_table_uses_display_names_without_std_columns(page, tmp_path):
    folder = tmp_path / "results"
    folder.mkdir(exist_ok=True)
    (folder / "table2_test.csv").write_text("model,accuracy,accuracy_std,mrr@10,mrr@10_std,seeds\n"
                                             "DCDT,0.6,0.1,0.7,0.02,5\nBM25,0.5,,0.6,,\n")
    frame = video_page.display_tables()["Test split (Table 2: DCDT vs baselines; trained models: mean over seeds)"]
    assert list(frame.columns) == ["Model", "Accuracy", "MRR@10", "Seeds"]
    assert frame.iloc[0].tolist() == ["DCDT", "0.600 ± 0.100", "0.700 ± 0.020", "5"]
    assert frame.iloc[1].tolist() == ["BM25", "0.500", "0.600", "–"]
    assert not frame.isna().any().any()
