"""How ``assets/glossary.csv`` was made (issue 11): per-language glossaries merged and filtered.

    PYTHONPATH=. python docs/results/videos/glossary_build.py DIR          # DIR holds zh.csv, ja.csv, es.csv, ...
    PYTHONPATH=. python docs/results/videos/glossary_build.py --add DIR    # add DIR's rows to the shipped glossary

Input: one ``term,english`` file per language, written by translators (language-model helpers
briefed as native speakers) from the list of English terms in this folder's ``glossary_terms_en.txt``.

* First 137 terms (2,267 rows, built with ``DIR``): written from the 36 topic names of
  ``assets/queries.csv`` and general linear-algebra vocabulary; its last search words ("geometric
  meaning", "intuition", "what is", ...) were added after eight Chinese queries of mixed splits had
  been printed, so they are not blind to the data. The translators saw neither the queries nor the
  catalogue.
* Next 166 terms (from "Fourier matrix" on; 1,862 rows, 2026-11-27, added with ``--add`` from
  ``docs/results/videos/glossary_catalog``, whose ``split.py`` writes its files): the linear-algebra
  terms of the CATALOGUE that the list lacked, read from ``assets/videos.csv`` (titles, descriptions, topics) and the topic descriptions of ``recsys.data.videos.TOPICS``, in the
  catalogue's own wording ("graph Laplacian", "Fourier matrix", "orthogonal complement", "pivot
  columns", "gradient descent", ...), every word of each term a word of that text. No query was read
  to choose them (blind to ``assets/queries.csv``); the translations, usual textbook forms with common
  variants (simplified and traditional Chinese where they differ), were written without the queries
  too. ``--add`` applies the same filters, keeps the shipped rows as they are and skips a term its
  language already has (90 such rows), so no existing term changes its gloss.

Filters, so that the glossary adds English words to non-English queries and nothing else:

* a one-character Chinese or Japanese term (解 "solution", 像 "image") and a Latin term under three
  letters ("li") are dropped: they match inside unrelated words;
* a one-word Latin term that is also a word of the English catalogue (French "image", "rotations",
  German "Matrix") is dropped: an English query would be glossed by it.

Writes ``assets/glossary.csv`` (``language,term,english``) and prints how many rows each filter removed.
"""

from __future__ import annotations

import csv
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT))

from recsys.data.videos import load_catalog  # noqa: E402
from recsys.embed.glossary import GLOSSARY_FILE, LANGUAGES, _is_cjk, fold  # noqa: E402


def catalogue_vocabulary() -> set[str]:
    """The folded words of the English catalogue (titles and descriptions)."""
    catalog = load_catalog()
    english = " ".join(catalog["title"].astype(str)) + " " + " ".join(catalog["description"].astype(str))
    return set(re.findall(r"\w+", fold(english)))


def read_source(source: Path, vocabulary: set[str]) -> tuple[list[tuple[str, str, str]], int, int]:
    """(language, term, english) rows of ``source``'s per-language files that pass the filters; counts dropped."""
    kept, short, ambiguous = [], 0, 0
    for language in LANGUAGES:
        path = source / f"{language}.csv"
        with open(path, newline="", encoding="utf-8") as fh:
            for row in csv.DictReader(fh):
                term, gloss = row["term"].strip(), row["english"].strip()
                if len(term) < (2 if _is_cjk(term) else 3):
                    short += 1
                elif not _is_cjk(term) and " " not in term and fold(term) in vocabulary:
                    ambiguous += 1
                else:
                    kept.append((language, term, gloss))
    return kept, short, ambiguous


def write(rows: list[tuple[str, str, str]]) -> list[tuple[str, str, str]]:
    rows = sorted(dict.fromkeys(rows), key=lambda r: (LANGUAGES.index(r[0]), r[2], r[1]))
    with open(GLOSSARY_FILE, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(["language", "term", "english"])
        writer.writerows(rows)
    return rows


def main(source: Path) -> None:
    kept, short, ambiguous = read_source(source, catalogue_vocabulary())
    kept = write(kept)
    print(f"{len(kept)} rows kept; dropped {short} too short, {ambiguous} also English catalogue words")


def add(source: Path) -> None:
    """Append ``source``'s rows to the shipped glossary: same filters, and a term its language already has is skipped.

    The shipped rows stay as they are (a term keeps its gloss); within ``source`` the first
    gloss of a term wins, in the files' order.
    """
    with open(GLOSSARY_FILE, newline="", encoding="utf-8") as fh:
        shipped = [(r["language"], r["term"], r["english"]) for r in csv.DictReader(fh)]
    known = {(language, fold(term)) for language, term, _ in shipped}
    new, short, ambiguous = read_source(source, catalogue_vocabulary())
    added, duplicate = [], 0
    for language, term, gloss in new:
        if (language, fold(term)) in known:
            duplicate += 1
        else:
            known.add((language, fold(term)))
            added.append((language, term, gloss))
    rows = write(shipped + added)
    counts = {language: sum(r[0] == language for r in added) for language in LANGUAGES}
    print(f"{len(added)} rows added {counts}, {len(rows)} in all; dropped {short} too short, "
          f"{ambiguous} also English catalogue words, {duplicate} terms the glossary already had")


if __name__ == "__main__":
    if sys.argv[1] == "--add":
        add(Path(sys.argv[2]))
    else:
        main(Path(sys.argv[1]))
