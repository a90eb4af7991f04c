"""Words of a text for lexical matching (BM25): the tokenizer, with no torch behind it.

Why a module of its own: :class:`recsys.models.bm25.BM25` is a torch module (every model
is), while the torch-free serving path (:mod:`recsys.videos.pack`) scores BM25 with the
same tokens. The rules (NFKC, lowercase, letters/digits of any script, one token per
CJK character since those scripts do not separate words by spaces, a short English stop
list, a light suffix stemmer) are documented in :mod:`recsys.models.bm25`.
"""

from __future__ import annotations

import re
import unicodedata

__all__ = ["STOPWORDS", "stem", "tokenize"]

_WORD = re.compile(r"[^\W_]+", re.UNICODE)
_CJK = re.compile(r"([\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff])")
STOPWORDS = frozenset(
    "a an and are as at be by can do does for from how i in is it its me my of on or that the this "
    "to was what when where which who why will with you your".split()
)


def stem(token: str) -> str:
    """A very light English stemmer; words of 4 letters or fewer are kept as they are."""
    if len(token) <= 4 or not token.isascii():
        return token
    for suffix, repl in (("ies", "y"), ("sses", "ss"), ("ing", ""), ("ed", ""), ("ly", ""), ("es", ""), ("s", "")):
        if token.endswith(suffix) and len(token) - len(suffix) >= 3:
            if suffix == "s" and token.endswith("ss"):
                return token
            if suffix == "es" and not token.endswith(("ches", "shes", "xes", "zes", "sses")):
                return token[:-1]  # "matrices" -> "matrice", "bases" -> "base"
            if suffix in ("ing", "ed") and token[: -len(suffix)].endswith(("iz", "at")):
                return token[: -len(suffix)] + "e"  # "diagonalizing" -> "diagonalize"
            return token[: -len(suffix)] + repl
    return token


def tokenize(text: str) -> list[str]:
    text = unicodedata.normalize("NFKC", text).lower()
    text = _CJK.sub(r" \1 ", text)
    return [stem(word) for word in _WORD.findall(text) if word not in STOPWORDS]
