"""Input hygiene for every embedding backend.

Texts come from user search boxes, CSV synopses and LLM output, so they can be
empty, huge, full of emoji, markup, control characters or lone surrogates.
We clean them *once*, here, before hashing (the cache key is the cleaned text)
and before any backend sees them, so that:

* an empty / whitespace-only text fails loudly at the API boundary with a
  message that says which item is empty (callers show it in the UI), instead
  of silently producing the embedding of "" (a meaningless vector);
* nothing a backend cannot encode reaches it (lone surrogates break UTF-8
  encoding, NUL and other C0 controls confuse tokenizers and JSON);
* very long texts are cut to a length the backend can take.  MiniLM only reads
  256 tokens anyway; OpenAI rejects inputs over 8191 tokens, and since every
  token covers at least one UTF-8 byte, cutting to at most 8000 *bytes* is a
  hard guarantee whatever the script (emoji are 4 bytes and may be several
  tokens, so a character budget would not be).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence

__all__ = ["clean_text", "prepare_texts", "truncate_utf8"]

_WHITESPACE = re.compile(r"\s+")


def _drop_unsafe(ch: str) -> str:
    cat = unicodedata.category(ch)
    if cat == "Cc":  # C0/C1 controls: tab/newline become spaces, the rest go
        return " " if ch.isspace() else ""
    if cat in ("Cs", "Co", "Cn"):  # lone surrogates, private use, unassigned
        return ""
    return ch


def truncate_utf8(text: str, max_bytes: int) -> str:
    """Cut ``text`` so its UTF-8 encoding is at most ``max_bytes``, never splitting a character."""
    encoded = text.encode("utf-8")
    if len(encoded) <= max_bytes:
        return text
    return encoded[:max_bytes].decode("utf-8", errors="ignore")


def clean_text(text: str, *, max_chars: int | None = None, max_utf8_bytes: int | None = None) -> str:
    """Normalise one text: NFC, drop control/surrogate characters, collapse whitespace, truncate.

    Collapsing whitespace is safe for both backends (BERT's tokenizer splits on
    whitespace anyway; OpenAI recommends replacing newlines with spaces) and
    makes the cache key insensitive to incidental formatting.
    Returns ``""`` for a text with nothing left; :func:`prepare_texts` turns that
    into a ``ValueError``.
    """
    if not isinstance(text, str):
        raise TypeError(f"expected str, got {type(text).__name__}")
    # Lone surrogates cannot be NFC-normalised via UTF-8 round trips; strip them first.
    text = "".join(_drop_unsafe(ch) for ch in text) if not text.isascii() or not text.isprintable() else text
    text = unicodedata.normalize("NFC", text)
    text = _WHITESPACE.sub(" ", text).strip()
    if max_chars is not None and len(text) > max_chars:
        text = text[:max_chars].rstrip()
    if max_utf8_bytes is not None:
        text = truncate_utf8(text, max_utf8_bytes).rstrip()
    return text


def _has_content(text: str) -> bool:
    """False for "" and for texts made only of invisible format characters (zero-width space, BOM)."""
    return any(unicodedata.category(ch) != "Cf" for ch in text)


def prepare_texts(texts: Sequence[str], *, max_chars: int | None = None,
                  max_utf8_bytes: int | None = None) -> list[str]:
    """Validate and clean a batch; raise ``ValueError`` naming every empty item.

    A bare ``str`` is refused (it would otherwise be iterated character by
    character and embed each letter).
    """
    if isinstance(texts, (str, bytes)):
        raise TypeError("encode() takes a list of texts, not a single string: use encode([text])")
    try:
        items = list(texts)
    except TypeError as exc:
        raise TypeError(f"encode() takes a list of texts, got {type(texts).__name__}") from exc
    cleaned: list[str] = []
    empty: list[int] = []
    for i, text in enumerate(items):
        if not isinstance(text, str):
            raise TypeError(f"text #{i} is {type(text).__name__}, expected str")
        out = clean_text(text, max_chars=max_chars, max_utf8_bytes=max_utf8_bytes)
        if not _has_content(out):
            empty.append(i)
        cleaned.append(out)
    if empty:
        shown = ", ".join(f"#{i}" for i in empty[:10]) + (" ..." if len(empty) > 10 else "")
        what = "Text is" if len(items) == 1 else f"{len(empty)} of {len(items)} texts are"
        raise ValueError(f"{what} empty or whitespace-only ({shown}); "
                         "type something to embed.")
    return cleaned
