"""The query glossary: matching rules on hand-made rows, the file format, and the shipped glossary."""

from __future__ import annotations

import numpy as np
import pytest

from recsys.embed.glossary import GLOSSARY_FILE, Glossary, embed_query, expand_query, fold, load_glossary, read_rows

ROWS = [("特征值", "eigenvalue"), ("特征向量", "eigenvector"), ("特征", "characteristic"), ("rang", "rank"),
        ("valeur propre", "eigenvalue"), ("Determinante", "determinant")]


def test_fold_drops_case_and_accents():
    assert fold("Valeur Propre") == "valeur propre"
    assert fold("Déterminant") == "determinant"
    assert fold("特征值") == "特征值"  # no case or accents in Chinese


def test_longest_term_wins_and_each_gloss_is_added_once():
    glossary = Glossary.from_rows(ROWS)
    # "特征向量" is tried before the "特征" inside it; "特征值" appears twice but is glossed once
    assert glossary.expand("特征向量和特征值, 特征值") == "特征向量和特征值, 特征值 (eigenvector; eigenvalue)"
    assert glossary.expand("特征多项式") == "特征多项式 (characteristic)"


def test_latin_terms_match_whole_words_whatever_the_case_and_accents():
    glossary = Glossary.from_rows(ROWS)
    assert glossary.expand("le rang d'une matrice") == "le rang d'une matrice (rank)"
    assert glossary.expand("arrangement de vecteurs") == "arrangement de vecteurs"  # "rang" inside a word
    assert glossary.expand("VALÉUR PROPRE de A") == "VALÉUR PROPRE de A (eigenvalue)"
    assert glossary.expand("determinante 3x3") == "determinante 3x3 (determinant)"


def test_a_query_without_terms_or_already_in_english_is_unchanged():
    glossary = Glossary.from_rows(ROWS)
    assert glossary.expand("what is an eigenvalue") == "what is an eigenvalue"
    assert glossary.expand("eigenvalue 特征值") == "eigenvalue 特征值"  # its gloss is already there


def test_the_file_is_checked_strictly(tmp_path):
    path = tmp_path / "glossary.csv"
    for text, message in [("term,english\nx,y\n", "header"), ("language,term,english\nxx,rang,rank\n", "language"),
                          ("language,term,english\nfr,,rank\n", "empty"),
                          ("language,term,english\nfr,rang," + "r" * 300 + "\n", "over-long")]:
        path.write_text(text, encoding="utf-8")
        with pytest.raises(ValueError, match=message):
            read_rows(path)
    with pytest.raises(ValueError, match="no usable term"):
        Glossary.from_rows([("rank", "rank")])  # a term equal to its gloss adds nothing


def test_the_shipped_glossary_glosses_other_languages_and_leaves_english_alone():
    rows = read_rows(GLOSSARY_FILE)
    assert len(rows) > 1000 and load_glossary().size > 1000
    assert "eigenvalue" in expand_query("特征值是什么")
    assert "determinant" in expand_query("¿Qué es el determinante?")
    assert "eigenvector" in expand_query("固有ベクトルとは")
    for english in ["What is an eigenvalue?", "Gilbert Strang lecture on the four subspaces", "image of a matrix"]:
        assert expand_query(english) == english


class _Recorder:
    """A fake encoder: remembers what it read and returns one fixed unit row per text."""

    def __init__(self, row, reads_glosses=None):
        self.row, self.read = np.asarray(row, dtype=np.float32), []
        if reads_glosses is not None:
            self.reads_glosses = reads_glosses

    def encode(self, texts):
        self.read += texts
        return np.tile(self.row, (len(texts), 1))


class _Concat:
    def __init__(self, *parts):
        self.parts = parts


def test_embed_query_glosses_for_the_english_encoder_and_not_for_the_multilingual_one():
    english, multilingual = _Recorder([1.0, 0.0]), _Recorder([0.0, 1.0], reads_glosses=False)
    rows = embed_query(_Concat(english, multilingual), ["特征值是什么", "what is a matrix"])
    assert english.read == [expand_query("特征值是什么"), "what is a matrix"]
    assert english.read[0] != "特征值是什么"  # the shipped glossary knows 特征值
    assert multilingual.read == ["特征值是什么", "what is a matrix"]  # as typed
    # joined as the concatenation's own encode joins: [1, 0, 0, 1] / sqrt(2) = 0.7071 at both ends
    np.testing.assert_allclose(rows, [[0.70710677, 0, 0, 0.70710677]] * 2, rtol=1e-6)
    single = _Recorder([1.0])  # no parts, no reads_glosses attribute: it reads the glosses
    embed_query(single, ["特征值是什么"])
    assert single.read == [expand_query("特征值是什么")]
