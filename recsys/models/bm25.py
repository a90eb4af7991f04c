"""BM25 over video title + description: the lexical baseline.

Paper: S. Robertson and H. Zaragoza, "The Probabilistic Relevance Framework: BM25 and
Beyond", Foundations and Trends in Information Retrieval 3(4), 2009 (Okapi BM25,
``k1 = 1.5, b = 0.75``); used as a baseline by the DCDT teaching-video paper. Scoring is
by ``rank_bm25.BM25Okapi``.

Why a lexical baseline: a query that names the exact term ("Gram-Schmidt") is
answered well by word overlap alone, and it costs no training. BM25 fails on
paraphrases ("make vectors perpendicular") that embedding models catch.

Tokenisation (:func:`tokenize`): Unicode NFKC, lowercase, runs of letters/digits
(any script), each CJK character its own token (those scripts do not separate words
by spaces), a short English stop list, and a light suffix stemmer
(:func:`stem`: plurals, -ing, -ed, -ly), which is cheap and merges
"eigenvalues"/"eigenvalue", "diagonalizing"/"diagonalize".
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence

import numpy as np
import torch

from recsys.models.base import Batch, Recommender

__all__ = ["BM25", "stem", "tokenize"]

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


class BM25(Recommender):
    """Okapi BM25 over one text per video. Batch key: ``"query_text"`` (a list of strings)."""

    display_name = "BM25"

    def __init__(self, k1: float = 1.5, b: float = 0.75):
        self.k1, self.b = k1, b
        self.index = None
        self.n_items = 0

    def fit(self, documents: Sequence[str]) -> "BM25":
        from rank_bm25 import BM25Okapi

        corpus = [tokenize(doc) or ["<empty>"] for doc in documents]
        self.index = BM25Okapi(corpus, k1=self.k1, b=self.b)
        self.n_items = len(corpus)
        return self

    def score_texts(self, texts: Sequence[str]) -> np.ndarray:
        if self.index is None:
            raise RuntimeError("BM25 is not fitted: call fit(documents) first")
        out = np.zeros((len(texts), self.n_items), dtype=np.float32)
        for row, text in enumerate(texts):
            tokens = tokenize(text)
            if tokens:
                out[row] = self.index.get_scores(tokens)
        return out

    def full_sort_predict(self, batch: Batch) -> torch.Tensor:
        return torch.from_numpy(self.score_texts(batch["query_text"]))
