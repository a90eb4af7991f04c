"""Tiny hand-made video catalogue, labelled queries and a fake embedder for the video tests.

Nothing here comes from assets/: 8 made-up topics x 3 videos, each topic with its own
words; queries use a topic's words (some title words, some description-only words), so
the problem is learnable but the untrained models are not already perfect.
The fake embedder hashes words to fixed random unit vectors and averages them: no
model to load, deterministic, fast.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd

TOPIC_WORDS = {
    "eig": (["eigen", "spectrum"], ["characteristic", "invariant", "stretch"]),
    "svd": (["singular", "decomposition"], ["compress", "lowrank", "sigma"]),
    "det": (["determinant", "volume"], ["cofactor", "area", "orientation"]),
    "ls": (["least", "squares"], ["fitting", "regression", "residual"]),
    "qr": (["gram", "schmidt"], ["orthonormal", "triangular", "factor"]),
    "inv": (["inverse", "invertible"], ["gaussjordan", "identity", "undo"]),
    "proj": (["projection", "shadow"], ["subspace", "closest", "perpendicular"]),
    "mark": (["markov", "stochastic"], ["steady", "pagerank", "probability"]),
}
FILLER = ["lecture", "example", "course", "intro", "video", "notes", "board", "visual"]


class FakeEmbedder:
    """Bag of hashed words -> unit vector; the embedder interface of recsys.embed."""

    def __init__(self, dim: int = 32, name: str = "fake-hash"):
        self.dim, self.name = dim, f"{name}-{dim}"
        self.last_fallback_reason = None
        self.calls = 0

    def _word(self, word: str) -> np.ndarray:
        seed = int.from_bytes(hashlib.sha256(word.encode()).digest()[:4], "little")
        v = np.random.default_rng(seed).standard_normal(self.dim)
        return v / np.linalg.norm(v)

    def encode(self, texts, progress=False) -> np.ndarray:
        self.calls += 1
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, text in enumerate(texts):
            words = text.lower().split()
            if not words:
                raise ValueError(f"text {i} is empty")
            v = sum(self._word(w.strip(".,?!")) for w in words)
            out[i] = v / max(np.linalg.norm(v), 1e-9)
        return out

    def describe(self) -> str:
        return f"fake hashing embedder ({self.dim}-d)"


def make_catalog() -> pd.DataFrame:
    rows = []
    rng = np.random.default_rng(0)
    for topic, (title_words, desc_words) in TOPIC_WORDS.items():
        for k in range(3):
            title = f"{' '.join(title_words)} {FILLER[k]}"
            desc = " ".join(list(rng.choice(desc_words, 4)) + list(rng.choice(FILLER, 3)))
            rows.append({"video_id": f"{topic}-{k}", "title": title, "series": f"Series {k}",
                         "description": desc, "level": "intro", "topics": [topic]})
    df = pd.DataFrame(rows)
    df["text"] = df["title"] + ". " + df["description"]
    return df


def make_queries(n_per_topic: int = 10) -> pd.DataFrame:
    rows = []
    rng = np.random.default_rng(1)
    splits = ["train"] * 6 + ["validation"] * 2 + ["test"] * 2
    for topic, (title_words, desc_words) in TOPIC_WORDS.items():
        for j in range(n_per_topic):
            words = [rng.choice(desc_words), rng.choice(desc_words + title_words), rng.choice(FILLER)]
            k = j % 3  # each query is answered by one or two of the topic's videos
            relevant = [f"{topic}-{k}"] + ([f"{topic}-{(k + 1) % 3}"] if j % 2 else [])
            rows.append({"query_id": f"q-{topic}-{j}", "text": " ".join(words), "relevant": relevant,
                         "topic": topic, "style": "keywords", "split": splits[j % len(splits)], "language": "en"})
    return pd.DataFrame(rows)


def make_data():
    from recsys.videos.prep import VideoData

    return VideoData(make_catalog(), make_queries())


def tiny_items(n_videos: int = 5, dim: int = 4, seed: int = 0):
    """A few videos with random unit embeddings, texts and labelled queries in every split (contract tests).

    Query ``j`` (of 8) is the unit vector of video ``j % n_videos``'s text plus noise and is
    relevant to that video; splits cycle train, train, validation, test.
    """
    from recsys.videos.prep import VideoItems

    rng = np.random.default_rng(seed)
    unit = lambda x: (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)  # noqa: E731
    title, desc = unit(rng.standard_normal((n_videos, dim))), unit(rng.standard_normal((n_videos, dim)))
    text = unit(title + desc)
    words = ["eigen spectrum", "singular decomposition", "determinant volume", "least squares", "gram schmidt",
             "inverse identity", "projection subspace", "markov steady"]
    videos = [f"{words[i % len(words)]} video {i}" for i in range(n_videos)]
    rows = np.arange(8) % n_videos
    queries = unit(text[rows] + 0.3 * rng.standard_normal((8, dim)))
    return VideoItems(title=title, desc=desc, text=text, video_text=videos, query_emb=queries,
                      query_text=[words[i % len(words)] for i in rows], query_ids=[f"q{j}" for j in range(8)],
                      query_split=np.array(["train", "train", "validation", "test"] * 2),
                      relevant=[[int(i)] for i in rows], embedder_name="tiny-random", catalog_hash="tiny")


def test_fixture_shapes():
    data = make_data()
    assert len(data.catalog) == 24 and len(data.queries) == 80
    assert set(data.queries["split"]) == {"train", "validation", "test"}
    vecs = FakeEmbedder().encode(["eigen spectrum", "eigen spectrum"])
    # same text -> same unit vector
    assert np.allclose(vecs[0], vecs[1]) and np.isclose(np.linalg.norm(vecs[0]), 1.0)
