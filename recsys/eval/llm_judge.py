"""LLM-as-a-judge for recommendation lists, with a labelled heuristic stand-in.

Offline metrics only count hits on the held-out half of a history; a judge reads the
user's watched anime and the recommendations and scores each recommendation 1-10 with
a short reason, the "does this list make sense for this person" check (Zheng et al.,
"Judging LLM-as-a-Judge", NeurIPS 2023, on using strong LLMs as graders, and their
caveats: position and verbosity bias, so the list order is given and scores are
per item).

* **LLM judge**: an OpenAI-compatible chat model (``OPENAI_API_KEY``, optional
  ``OPENAI_BASE_URL``; model ``RECSYS_JUDGE_MODEL`` or ``gpt-4o-mini``). Replies are
  parsed robustly: a JSON list/object, JSON inside a code fence, or numbered lines such
  as ``1. 7/10 - reason``; scores are clamped to 1..10, an unparseable or missing
  item scores ``None``.
* **Heuristic judge** (no key, or the API failed): the cosine between the
  recommendation's genres and the history's rating-weighted genre profile, mapped to
  ``1 + 9 * cosine``. It is clearly labelled as a heuristic wherever it is shown.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from recsys.embed.base import redact

log = logging.getLogger(__name__)

DEFAULT_MODEL = "gpt-4o-mini"
HEURISTIC_LABEL = "heuristic judge (genre overlap with the history; not an LLM)"
SYSTEM_PROMPT = (
    "You are an expert anime recommender evaluating a recommendation list for one user. "
    "Given the anime they watched (with their rating 1-10, or 'watched' when unrated) and a numbered "
    "list of recommendations, score how good each recommendation is for this user from 1 (bad) to 10 "
    "(excellent), with a reason of at most 15 words. Reply with JSON only: "
    '[{"index": 1, "score": 7, "reason": "..."}, ...] covering every recommendation.'
)


@dataclass
class JudgeScore:
    index: int  # 1-based position in the recommendation list
    name: str
    score: float | None
    reason: str = ""


@dataclass
class JudgeResult:
    judge: str  # "llm:<model>" or the heuristic label
    scores: list[JudgeScore]
    is_llm: bool
    error: str | None = None  # why the LLM was not used / failed
    raw: str | None = None  # the model's reply, for inspection
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def mean(self) -> float | None:
        values = [s.score for s in self.scores if s.score is not None]
        return sum(values) / len(values) if values else None

    def to_dict(self) -> dict[str, Any]:
        return {"judge": self.judge, "is_llm": self.is_llm, "mean": self.mean, "error": self.error,
                "scores": [s.__dict__ for s in self.scores]}


# ---------------------------------------------------------------------------------------------
# parsing
# ---------------------------------------------------------------------------------------------
def _clamp(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    if math.isnan(number):
        return None
    return float(min(10.0, max(1.0, number)))


_FENCE = re.compile(r"```(?:json|JSON)?\s*(.*?)```", re.S)
_LINE = re.compile(r"^\s*(?:[-*#]\s*)?\(?(\d{1,3})[.):\]]\s*(.*)$")
_SLASH = re.compile(r"(\d+(?:\.\d+)?)\s*/\s*10\b")
_LABELLED = re.compile(r"(?:score|rating)\s*[:=]?\s*(\d+(?:\.\d+)?)", re.I)
_LEADING = re.compile(r"^\s*(\d+(?:\.\d+)?)\b\s*[-–—:,]?\s*(.*)$")


def _json_candidates(text: str) -> list[str]:
    candidates = [m.group(1) for m in _FENCE.finditer(text)] + [text]
    for opener, closer in (("[", "]"), ("{", "}")):
        start, end = text.find(opener), text.rfind(closer)
        if 0 <= start < end:
            candidates.append(text[start: end + 1])
    return candidates


def _from_json(obj: Any, n: int) -> dict[int, tuple[float | None, str]] | None:
    if isinstance(obj, dict):
        for key in ("scores", "recommendations", "results", "items", "ratings"):
            if isinstance(obj.get(key), list):
                return _from_json(obj[key], n)
        if all(str(k).strip().isdigit() for k in obj):  # {"1": 7, "2": {"score": 5}}
            obj = [{"index": int(k), **(v if isinstance(v, dict) else {"score": v})} for k, v in obj.items()]
        else:
            return None
    if not isinstance(obj, list):
        return None
    out: dict[int, tuple[float | None, str]] = {}
    for position, entry in enumerate(obj, start=1):
        if isinstance(entry, dict):
            index = entry.get("index", entry.get("id", entry.get("n", entry.get("rank", position))))
            try:
                index = int(index)
            except (TypeError, ValueError):
                index = position
            score = entry.get("score", entry.get("rating"))
            reason = str(entry.get("reason", entry.get("explanation", entry.get("why", ""))) or "")
        else:
            index, score, reason = position, entry, ""
        if 1 <= index <= n:
            out[index] = (_clamp(score), reason.strip())
    return out


def parse_judge_reply(text: str, n: int) -> list[tuple[float | None, str]]:
    """``n`` (score, reason) pairs from a judge reply; scores clamped to 1..10, missing -> None.

    Tries JSON (bare, in a code fence, or embedded in prose), then numbered lines:
    ``1. 7/10 - reason``, ``2) Title: 8/10 reason``, ``3. score: 6 - reason``, ``4. 9 - reason``.
    """
    text = text or ""
    for candidate in _json_candidates(text):
        try:
            parsed = _from_json(json.loads(candidate), n)
        except (json.JSONDecodeError, ValueError):
            continue
        if parsed:
            return [parsed.get(i, (None, "")) for i in range(1, n + 1)]
    found: dict[int, tuple[float | None, str]] = {}
    for line in text.splitlines():
        match = _LINE.match(line)
        if not match:
            continue
        index, rest = int(match.group(1)), match.group(2)
        if not 1 <= index <= n or index in found:
            continue
        score_match = _SLASH.search(rest) or _LABELLED.search(rest)
        if score_match:
            reason = rest[score_match.end():]
        else:
            score_match = _LEADING.match(rest)
            if not score_match:
                continue
            reason = score_match.group(2)
        found[index] = (_clamp(score_match.group(1)), reason.strip(" -–—:.,*\t"))  # * : Markdown bold
    return [found.get(i, (None, "")) for i in range(1, n + 1)]


# ---------------------------------------------------------------------------------------------
# judges
# ---------------------------------------------------------------------------------------------
def _genres(value: Any) -> list[str]:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return []
    return [g.strip() for g in str(value).split(",") if g.strip() and str(g).strip().lower() != "<na>"]


def genre_profile(history: list[dict]) -> Counter:
    """Genre weights of a history: each anime adds its rating (an unrated watch adds the mean rating)."""
    rated = [float(h["rating"]) for h in history if h.get("rating") not in (None, -1) and float(h["rating"]) > 0]
    default = sum(rated) / len(rated) if rated else 1.0
    profile: Counter = Counter()
    for h in history:
        rating = h.get("rating")
        weight = float(rating) if rating not in (None, -1) and float(rating) > 0 else default
        for genre in _genres(h.get("genre")):
            profile[genre] += weight
    return profile


def heuristic_judge(history: list[dict], recommendations: list[dict], reason: str | None = None) -> JudgeResult:
    """Score = ``1 + 9 * cos(genres of the recommendation, genre profile of the history)``."""
    profile = genre_profile(history)
    norm = math.sqrt(sum(v * v for v in profile.values()))
    scores = []
    for index, rec in enumerate(recommendations, start=1):
        genres = _genres(rec.get("genre"))
        if not genres or not norm:
            scores.append(JudgeScore(index, str(rec.get("name", "")), None, "no genre information to compare"))
            continue
        cosine = sum(profile.get(g, 0.0) for g in genres) / (norm * math.sqrt(len(genres)))
        shared = [g for g in genres if g in profile]
        why = f"shares {', '.join(shared[:4])} with the history" if shared else "no genre in common with the history"
        scores.append(JudgeScore(index, str(rec.get("name", "")), round(1 + 9 * cosine, 1),
                                 f"{why} (genre cosine {cosine:.2f})"))
    return JudgeResult(HEURISTIC_LABEL, scores, is_llm=False, error=reason)


def build_prompt(history: list[dict], recommendations: list[dict], max_history: int = 50) -> str:
    def rating(h):
        r = h.get("rating")
        return "watched" if r in (None, -1) or float(r) <= 0 else f"{float(r):g}/10"

    watched = sorted(history, key=lambda h: -(float(h.get("rating") or 0)))[:max_history]
    lines = ["Watched anime:"] + [f"- {h.get('name')} [{', '.join(_genres(h.get('genre')))}] {rating(h)}"
                                 for h in watched]
    if len(history) > max_history:
        lines.append(f"(and {len(history) - max_history} more)")
    lines.append("")
    lines.append("Recommendations:")
    lines += [f"{i}. {r.get('name')} [{', '.join(_genres(r.get('genre')))}]" for i, r in enumerate(recommendations, 1)]
    return "\n".join(lines)


def judge_recommendations(history: list[dict], recommendations: list[dict], model: str | None = None,
                          api_key: str | None = None, base_url: str | None = None, timeout: float = 15.0,
                          max_retries: int = 1) -> JudgeResult:
    """Judge with the LLM when a key is configured, else (or on failure) with the labelled heuristic.

    ``history`` items: ``{"name", "genre", "rating"}``; ``recommendations``: ``{"name", "genre"}``.
    The attempt is bounded (``timeout`` per request, ``max_retries``) so a hanging server
    gives the heuristic within about half a minute; server error text is redacted of keys.
    """
    if not recommendations:
        return JudgeResult("none", [], is_llm=False, error="no recommendations to judge")
    api_key = api_key or os.environ.get("OPENAI_API_KEY")
    if not api_key:
        return heuristic_judge(history, recommendations, reason="OPENAI_API_KEY is not set")
    model = model or os.environ.get("RECSYS_JUDGE_MODEL", DEFAULT_MODEL)
    try:
        from openai import OpenAI

        client = OpenAI(api_key=api_key, base_url=base_url or os.environ.get("OPENAI_BASE_URL") or None,
                        timeout=timeout, max_retries=max_retries)
        response = client.chat.completions.create(
            model=model, temperature=0,
            messages=[{"role": "system", "content": SYSTEM_PROMPT},
                      {"role": "user", "content": build_prompt(history, recommendations)}],
        )
        text = response.choices[0].message.content or ""
    except Exception as error:  # network, auth, rate limit, malformed body: never break the page
        message = redact(error, [api_key])
        log.warning("LLM judge failed (%s); using the heuristic judge", message)
        return heuristic_judge(history, recommendations,
                               reason=f"LLM call failed: {type(error).__name__}: {message[:200]}")
    parsed = parse_judge_reply(text, len(recommendations))
    scores = [JudgeScore(i, str(r.get("name", "")), s, why)
              for i, (r, (s, why)) in enumerate(zip(recommendations, parsed, strict=True), start=1)]
    missing = sum(s.score is None for s in scores)
    return JudgeResult(f"llm:{model}", scores, is_llm=True, raw=text,
                       error=f"{missing} of {len(scores)} scores missing from the reply" if missing else None)
