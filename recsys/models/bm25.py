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

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from recsys.models.base import Batch, FittedRecommender
from recsys.retrieval.words import STOPWORDS, stem, tokenize  # noqa: F401 - re-exported

__all__ = ["BM25", "BM25Config", "stem", "tokenize"]

#: the batch key BM25 reads (same string as ``recsys.videos.prep.QUERY_TEXT``; models import no domain code)
QUERY_TEXT_KEY = "query_text"

@dataclass
class BM25Config:
    """Okapi BM25's two knobs (Robertson & Zaragoza's usual values)."""

    k1: float = 1.5  # term-frequency saturation
    b: float = 0.75  # document-length normalisation


class BM25(FittedRecommender):
    """Okapi BM25 over each video's ``title. description`` (``items.video_text``).

    ``BM25(config, items).fit(items)``. Batch key: ``"query_text"``, a *list of strings*
    (not a tensor; :data:`recsys.videos.prep.QUERY_TEXT`): BM25 reads words, so it is the
    one model that ignores ``"query"``. ``n_columns`` is the number of videos, no padding.

    State: the index is a deterministic function of the video texts and ``(k1, b)``, so
    :meth:`state` stores only each video's token count and :meth:`load_state` re-fits
    from the items the model was built on, refusing them when the counts differ (a
    checkpoint of another catalogue). Re-fitting 261 short texts takes milliseconds;
    storing rank_bm25's dict-of-dicts would need pickle.
    """

    def __init__(self, config: BM25Config, data):
        super().__init__(config, data)
        self.data = data
        self.index = None
        self.doc_len = np.zeros(0, dtype=np.int64)
        self.n_columns = len(data.video_text) if data is not None else 0
        self.padding_index = None

    def fit(self, data) -> "BM25":
        from rank_bm25 import BM25Okapi

        tokens = [tokenize(doc) for doc in data.video_text]
        corpus = [words or ["<empty>"] for words in tokens]
        self.index = BM25Okapi(corpus, k1=self.config.k1, b=self.config.b)
        self.doc_len = np.array([len(words) for words in corpus], dtype=np.int64)
        self.n_columns = len(corpus)
        self.data = data
        return self

    def score_texts(self, texts: Sequence[str]) -> np.ndarray:
        """BM25 scores ``[len(texts), n_videos]``; a text with no known word scores 0 everywhere."""
        if self.index is None:
            raise RuntimeError("BM25 is not fitted: call fit(items) first")
        out = np.zeros((len(texts), self.n_columns), dtype=np.float32)
        for row, text in enumerate(texts):
            tokens = tokenize(text)
            if tokens:
                out[row] = self.index.get_scores(tokens)
        return out

    def full_sort_predict(self, batch: Batch) -> torch.Tensor:
        texts = batch[QUERY_TEXT_KEY]
        if isinstance(texts, str) or not all(isinstance(t, str) for t in texts):
            raise TypeError(f"BM25 reads batch[{QUERY_TEXT_KEY!r}] as a list of strings")
        return torch.from_numpy(self.score_texts(texts))

    def state(self) -> dict[str, np.ndarray]:
        if self.index is None:
            raise RuntimeError("BM25 is not fitted: nothing to save")
        return {"doc_len": self.doc_len}

    def load_state(self, arrays) -> None:
        self.fit(self.data)
        stored = np.asarray(arrays["doc_len"])
        if not np.array_equal(stored, self.doc_len):
            raise ValueError("this BM25 state was fitted on other video texts")
