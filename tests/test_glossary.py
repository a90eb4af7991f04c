"""The query glossary: matching rules on hand-made rows, the file format, and the shipped glossary."""

from __future__ import annotations

import pytest

from recsys.embed.glossary import GLOSSARY_FILE, Glossary, expand_query, fold, load_glossary, read_rows

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
