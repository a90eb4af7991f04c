"""The LLM judge: robust reply parsing, the labelled heuristic, and the API path via the fake server."""

from __future__ import annotations

import pytest

from recsys.eval.llm_judge import (
    HEURISTIC_LABEL,
    heuristic_judge,
    judge_recommendations,
    parse_judge_reply,
)
from tests.fake_openai import FakeOpenAI

HISTORY = [
    {"name": "Naruto", "genre": "Action, Shounen", "rating": 8},
    {"name": "Clannad", "genre": "Drama, Romance", "rating": 4},
    {"name": "Bleach", "genre": "Action, Supernatural", "rating": -1},
]
RECS = [
    {"name": "One Piece", "genre": "Action, Shounen"},
    {"name": "Toradora!", "genre": "Romance"},
    {"name": "Mystery", "genre": None},
]


def test_parse_plain_json_and_clamping():
    reply = '[{"index": 1, "score": 7, "reason": "fits"}, {"index": 2, "score": 14, "reason": "x"}, ' \
            '{"index": 3, "score": -2}]'
    assert parse_judge_reply(reply, 3) == [(7.0, "fits"), (10.0, "x"), (1.0, "")]  # 14 -> 10, -2 -> 1


def test_parse_json_in_code_fence_with_prose_and_missing_item():
    reply = 'Sure! Here you go:\n```json\n{"scores": [{"index": 2, "score": "6", "reason": "ok"}]}\n```\nBye'
    assert parse_judge_reply(reply, 3) == [(None, ""), (6.0, "ok"), (None, "")]


def test_parse_numbered_lines():
    reply = "1. 7/10 - similar action\n2) Toradora!: 3 / 10 — romance, rated low\n" \
            "3. score: 5 - unknown genre\n9. 8/10 - out of range index is ignored"
    assert parse_judge_reply(reply, 3) == [(7.0, "similar action"), (3.0, "romance, rated low"),
                                           (5.0, "unknown genre")]


def test_parse_leading_number_and_garbage():
    assert parse_judge_reply("1. 8 - great\n2. no idea", 2) == [(8.0, "great"), (None, "")]
    assert parse_judge_reply("I cannot help with that.", 2) == [(None, ""), (None, "")]
    assert parse_judge_reply("", 1) == [(None, "")]


def test_heuristic_judge_genre_cosine():
    # profile: each anime adds its rating; the unrated Bleach adds the mean of (8, 4) = 6:
    # Action 8 + 6 = 14, Shounen 8, Drama 4, Romance 4, Supernatural 6;
    # |profile| = sqrt(196 + 64 + 16 + 16 + 36) = sqrt(328) = 18.111
    # One Piece {Action, Shounen}: (14 + 8) / (18.111 * sqrt(2)) = 0.8589 -> 1 + 9 * 0.8589 = 8.7
    # Toradora! {Romance}: 4 / 18.111 = 0.2209 -> 1 + 9 * 0.2209 = 3.0
    result = heuristic_judge(HISTORY, RECS, reason="no key")
    assert result.judge == HEURISTIC_LABEL and not result.is_llm
    assert [s.score for s in result.scores] == [8.7, 3.0, None]
    assert "Action" in result.scores[0].reason
    assert result.mean == pytest.approx((8.7 + 3.0) / 2)


def test_no_key_uses_labelled_heuristic(monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    result = judge_recommendations(HISTORY, RECS)
    assert not result.is_llm and "OPENAI_API_KEY" in result.error and "heuristic" in result.judge


def test_llm_judge_against_fake_server(monkeypatch):
    reply = "```json\n[{\"index\": 1, \"score\": 9, \"reason\": \"more shounen action\"}, " \
            "{\"index\": 2, \"score\": 4, \"reason\": \"romance was rated low\"}, " \
            "{\"index\": 3, \"score\": 5, \"reason\": \"unclear\"}]\n```"
    with FakeOpenAI(chat_reply=reply, require_key="sk-test") as server:
        monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
        monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
        result = judge_recommendations(HISTORY, RECS, model="judge-model")
        (request,) = server.requests_to("/v1/chat/completions")
    assert result.is_llm and result.judge == "llm:judge-model" and result.error is None
    assert [s.score for s in result.scores] == [9.0, 4.0, 5.0]
    assert request.body["model"] == "judge-model"
    prompt = request.body["messages"][-1]["content"]
    assert "Naruto" in prompt and "8/10" in prompt and "Bleach" in prompt and "watched" in prompt
    assert "1. One Piece" in prompt


def test_llm_failure_falls_back_to_heuristic(monkeypatch):
    with FakeOpenAI() as server:
        server.fail_next(10, status=500)
        monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
        monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
        result = judge_recommendations(HISTORY, RECS, max_retries=1, timeout=5)
    assert not result.is_llm and "LLM call failed" in result.error
    assert result.scores[0].score == 8.7


def test_llm_partial_reply_marks_missing(monkeypatch):
    with FakeOpenAI(chat_reply="1. 6/10 - fine") as server:
        monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
        monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
        result = judge_recommendations(HISTORY, RECS)
    assert [s.score for s in result.scores] == [6.0, None, None]
    assert result.error == "2 of 3 scores missing from the reply"


def test_server_error_echoing_the_key_is_redacted(monkeypatch, caplog):
    """Issue 10: a 401 whose message holds the key must not put it on the page or in the log."""
    import openai

    class Echoing:
        def __init__(self, api_key, **kwargs):
            self.chat = self
            self.completions = self
            self.key = api_key

        def create(self, **kwargs):
            raise RuntimeError(f"401 Incorrect API key provided: {self.key}; also sk-otherKEY123456")

    monkeypatch.setattr(openai, "OpenAI", Echoing)
    monkeypatch.setenv("OPENAI_API_KEY", "my-secret-key-42")
    with caplog.at_level("WARNING"):
        result = judge_recommendations(HISTORY, RECS)
    assert not result.is_llm and "LLM call failed" in result.error and "[redacted key]" in result.error
    for text in (result.error, caplog.text):
        assert "my-secret-key-42" not in text and "sk-otherKEY123456" not in text


def test_parses_the_papers_figure_2_reply():
    # the Two Towers paper's Fig. 2 (user 66004): Markdown-bold "Title - 8/10:" lines, mean (8 + 7 + 6) / 3 = 7
    reply = ("Rating and explanation:\n"
             " 1. **Kure-nai - 8/10:** Kure-nai offers a mix of action, drama, and character development.\n"
             " 2. **Tetsuwan Birdy Decode - 7/10:** Tetsuwan Birdy Decode combines sci-fi elements with action.\n"
             " 3. **Nyan Koi! - 6/10:** Nyan Koi! is a lighter, comedy-focused anime.\n"
             "Average rating: 7/10")
    parsed = parse_judge_reply(reply, 3)
    assert [score for score, _ in parsed] == [8.0, 7.0, 6.0]
    assert parsed[0][1] == "Kure-nai offers a mix of action, drama, and character development"
    assert sum(score for score, _ in parsed) / 3 == 7.0
