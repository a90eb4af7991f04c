"""Planted projection-cache files: the explorer's cache is plain arrays, never unpickled.

Before the fix ``recsys.viz.projections`` stored ``.pkl`` files and ``pickle.load``-ed them:
a planted cache entry ran code when the explorer drew a map.
"""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest

from recsys.artifacts import save_arrays
from recsys.viz import projections


class Evil:
    marker = None

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def blobs():
    return np.random.default_rng(0).normal(size=(30, 5)).astype(np.float32)


@pytest.fixture(autouse=True)
def fresh_memory():
    projections._MEMORY.clear()
    yield
    projections._MEMORY.clear()


def test_an_old_pickle_cache_is_never_opened(tmp_path):
    x = blobs()
    key = projections.projection_key(projections.fingerprint_array(x), "pca", 0)
    marker = tmp_path / "pwned"
    Evil.marker = marker
    (tmp_path / f"{key}.pkl").write_bytes(pickle.dumps(Evil()))  # the old format, at the old path
    projection = projections.cached_projection(x, "pca", root=tmp_path)
    assert projection.coords.shape == (30, 2) and not marker.exists()
    assert (tmp_path / f"{key}.npz").exists()  # rebuilt in the new format


@pytest.mark.parametrize("kind", ["pickle", "random", "truncated", "object array", "foreign npz", "bad shapes"])
def test_a_planted_cache_entry_is_dropped_and_refitted(tmp_path, kind):
    x = blobs()
    first = projections.cached_projection(x, "pca", root=tmp_path)
    [path] = tmp_path.glob("pca-*.npz")
    good = path.read_bytes()
    projections._MEMORY.clear()
    marker = tmp_path / "pwned"
    Evil.marker = marker
    if kind == "pickle":
        path.write_bytes(pickle.dumps(Evil()))
    elif kind == "random":
        path.write_bytes(os.urandom(1000))
    elif kind == "truncated":
        path.write_bytes(good[: len(good) // 2])
    elif kind == "object array":
        with open(path, "wb") as handle:
            np.savez(handle, coords=np.array([Evil()], dtype=object), meta=np.array("{}"))
    elif kind == "foreign npz":
        save_arrays(path, weights=np.ones(3))
    else:
        save_arrays(path, coords=np.ones((30, 3)), meta=np.array('{"method": "pca"}'))
    assert projections.load_projection(path.stem, tmp_path) is None and not path.exists()
    again = projections.cached_projection(x, "pca", root=tmp_path)
    np.testing.assert_allclose(again.coords, first.coords, atol=1e-5)
    assert not marker.exists()


def test_no_pickle_anywhere_in_the_package_or_pages():
    from recsys.paths import PROJECT_ROOT

    offenders = []
    for folder in ("recsys", "app_pages"):
        for path in (PROJECT_ROOT / folder).rglob("*.py"):
            text = path.read_text()
            for needle in ("import pickle", "pickle.load", "weights_only=False", "allow_pickle=True", "torch.load("):
                if needle in text:
                    offenders.append(f"{path.relative_to(PROJECT_ROOT)}: {needle}")
    assert offenders == []


def test_a_planted_embedding_cache_is_ignored_not_fatal(tmp_path):
    import sqlite3

    from recsys.embed.cache import EmbeddingCache

    (tmp_path / "random").mkdir()
    (tmp_path / "random" / "vectors.sqlite").write_bytes(os.urandom(4096))  # not a database
    cache = EmbeddingCache("m", 2, folder=tmp_path / "random")
    assert cache.get_many(["k"]) == {} and not cache.persist  # memory-only, with a logged warning

    cache = EmbeddingCache("m", 2, folder=tmp_path / "planted")
    conn = sqlite3.connect(tmp_path / "planted" / "vectors.sqlite")
    conn.executemany("INSERT INTO vectors VALUES (?, ?, ?)", [
        ("text", 2, "8 chars!"),  # TEXT of the right length: np.frombuffer raised TypeError
        ("nan", 2, np.array([np.nan, 1], "<f4").tobytes()),
        ("short", 2, b"\x00" * 4),
        ("good", 2, np.array([0.6, 0.8], "<f4").tobytes()),
    ])
    conn.commit()
    conn.close()
    found = cache.get_many(["text", "nan", "short", "good"])
    assert list(found) == ["good"] and found["good"].tolist() == pytest.approx([0.6, 0.8])
