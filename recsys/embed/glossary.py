"""Cross-lingual query expansion: a hand-written linear-algebra glossary appends English glosses to a query.

Ours, not the DCDT paper's (its platform serves Chinese teachers with a multilingual embedding).
Why: the catalogue is English and so is half of the default encoder (all-MiniLM-L6-v2 reads
English only); a query such as "特征值是什么" reaches the catalogue only through the multilingual
half (USE), and BM25 finds no word of it in any title. Appending the English terms the query
names ("特征值是什么 (eigenvalue; what is)") gives both the words they can match. The glossary
(``assets/glossary.csv``: language, term, english) was translated from a list of English
linear-algebra terms by translators who saw no query; how far the list itself is blind to the
data is said in ``assets/README.md``.

Which encoder reads the glosses (:func:`embed_query`): the English-only one does; one that
declares ``reads_glosses = False`` (USE, multilingual) reads the query as typed, since the
English words in brackets only blur a question it already understands. Validation split, DCDT
trained as usual, 3 seeds, MRR@10 of the 191 non-English queries: both encoders read the
glosses 0.716 ± 0.003; USE reads the query as typed 0.736 ± 0.007; MiniLM reads the glosses
alone (no original words) 0.701 ± 0.011; both read the glosses alone 0.582 ± 0.014 (English
queries read as before in all four: they rarely name a term). English catalogue text is never
glossed: the glossary is a query-time rewrite.

Matching: accents and case are ignored; a term in a Latin script matches whole words only
("rang" never matches inside "arrangement"); a term in Chinese or Japanese script matches as a
substring (those scripts have no spaces). Longer terms win over the shorter ones inside them
("特征向量" before "特征"), and each English gloss is added once, in the order found. A
query with no glossary term is returned unchanged, so English queries are untouched (the
glossary's build drops Latin terms that are also English catalogue words:
``docs/results/videos/glossary_build.py``).
"""

from __future__ import annotations

import csv
import logging
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from recsys.embed.combined import join_unit_rows
from recsys.paths import PROJECT_ROOT

log = logging.getLogger(__name__)

GLOSSARY_FILE = PROJECT_ROOT / "assets" / "glossary.csv"
LANGUAGES = ("zh", "ja", "es", "fr", "de", "pt")
_MAX_FIELD = 200  # characters: a term or gloss longer than this is a damaged row


def fold(text: str) -> str:
    """Case- and accent-insensitive form: NFKD, combining marks dropped, casefolded ("Valeur Propre" -> "valeur propre")."""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(c for c in decomposed if not unicodedata.combining(c)).casefold()


def _is_cjk(text: str) -> bool:
    return any("\u3040" <= c <= "\u30ff" or "\u3400" <= c <= "\u9fff" or "\uf900" <= c <= "\ufaff" for c in text)


_WORD = re.compile(r"\w+")


@dataclass(frozen=True)
class Glossary:
    """Folded terms -> English gloss, indexed for a scan that costs microseconds, not a regex per term.

    Chinese and Japanese terms are looked up by their first character at every character of the
    query; Latin-script terms, as word sequences, by their first word at every word of the query
    (so "Gram-Schmidt" and "gram schmidt" are the same term). Each index lists its terms longest
    first, and a match moves the scan past it.
    """

    by_char: dict[str, list[tuple[str, str]]]
    by_word: dict[str, list[tuple[tuple[str, ...], str]]]
    size: int

    @classmethod
    def from_rows(cls, rows: Iterable[tuple[str, str]]) -> "Glossary":
        by_char: dict[str, list[tuple[str, str]]] = {}
        by_word: dict[str, list[tuple[tuple[str, ...], str]]] = {}
        seen: set[str] = set()
        for term, gloss in rows:
            key, gloss = fold(term.strip()), gloss.strip()
            words = tuple(_WORD.findall(key))
            if not key or key == fold(gloss) or key in seen or not (words or _is_cjk(key)):
                continue  # a term equal to its gloss adds nothing; the first gloss of a term wins
            seen.add(key)
            if _is_cjk(key):
                by_char.setdefault(key[0], []).append((key, gloss))
            else:
                by_word.setdefault(words[0], []).append((words, gloss))
        if not seen:
            raise ValueError("the glossary has no usable term")
        for entries in (*by_char.values(), *by_word.values()):
            entries.sort(key=lambda entry: -len(entry[0]))
        return cls(by_char, by_word, len(seen))

    def glosses(self, folded: str) -> list[str]:
        """The English glosses of the terms in ``folded`` (a :func:`fold`-ed text), each once, in order of appearance."""
        found = []
        i = 0
        while i < len(folded):
            for term, gloss in self.by_char.get(folded[i], ()):
                if folded.startswith(term, i):
                    found.append((i, gloss))
                    i += len(term) - 1
                    break
            i += 1
        words = [(m.start(), m.group()) for m in _WORD.finditer(folded)]
        j = 0
        while j < len(words):
            for term, gloss in self.by_word.get(words[j][1], ()):
                if tuple(w for _, w in words[j:j + len(term)]) == term:
                    found.append((words[j][0], gloss))
                    j += len(term) - 1
                    break
            j += 1
        return list(dict.fromkeys(gloss for _, gloss in sorted(found)))

    def expand(self, text: str) -> str:
        """``text`` with its glosses appended in brackets; unchanged when it names no term."""
        folded = fold(text)
        words = " ".join(_WORD.findall(folded))
        glosses = [g for g in self.glosses(folded)  # a gloss already in the query as words adds nothing
                   if f" {' '.join(_WORD.findall(fold(g)))} " not in f" {words} "]
        return f"{text} ({'; '.join(glosses)})" if glosses else text


def read_rows(path: Path) -> list[tuple[str, str]]:
    """(term, english) rows of a glossary CSV (``language,term,english``), checked strictly."""
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        if reader.fieldnames != ["language", "term", "english"]:
            raise ValueError(f"{path.name}: header must be language,term,english, got {reader.fieldnames}")
        rows = []
        for line, row in enumerate(reader, start=2):
            language, term, gloss = (row.get(k) or "" for k in ("language", "term", "english"))
            if language not in LANGUAGES:
                raise ValueError(f"{path.name} line {line}: unknown language {language!r}")
            if not term.strip() or not gloss.strip() or max(len(term), len(gloss)) > _MAX_FIELD:
                raise ValueError(f"{path.name} line {line}: empty or over-long term or gloss")
            rows.append((term, gloss))
    return rows


@lru_cache(maxsize=4)
def load_glossary(path: Path = GLOSSARY_FILE) -> Glossary:
    glossary = Glossary.from_rows(read_rows(Path(path)))
    log.info("glossary: %d terms from %s", glossary.size, Path(path).name)
    return glossary


def expand_query(text: str) -> str:
    """The query as BM25 and the English encoder read it: the shipped glossary's English glosses appended."""
    return load_glossary().expand(text)


def embed_query(encoder, texts: list[str]) -> np.ndarray:
    """Query vectors as the models read them: each encoder reads the text it understands best.

    An encoder with ``reads_glosses = False`` gets the queries as typed, any other gets
    :func:`expand_query` of them; a concatenation (an encoder with ``parts``: the local
    MiniLM + USE, in torch or torch-free) is embedded part by part and joined as its own
    ``encode`` joins them. Worked example: "特征值是什么" reaches MiniLM as "特征值是什么
    (eigenvalue; what is)" and USE as "特征值是什么"; the 896-d row is [MiniLM row; USE row] / sqrt(2).
    """
    parts = getattr(encoder, "parts", None)
    if parts:
        return join_unit_rows([embed_query(part, texts) for part in parts])
    if getattr(encoder, "reads_glosses", True):
        texts = [expand_query(text) for text in texts]
    return encoder.encode(list(texts))
