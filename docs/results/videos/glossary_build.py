"""How ``assets/glossary.csv`` was made (issue 11): per-language glossaries merged and filtered.

    PYTHONPATH=. python docs/results/videos/glossary_build.py DIR    # DIR holds zh.csv, ja.csv, es.csv, ...

Input: one ``term,english`` file per language, written by translators (language-model helpers
briefed as native speakers) from the list of 137 English terms in this folder's
``glossary_terms_en.txt``. The list was written from the 36 topic names of ``assets/queries.csv``
and general linear-algebra vocabulary; its last search words ("geometric meaning", "intuition",
"what is", ...) were added after eight Chinese queries of mixed splits had been printed, so they are
not blind to the data. The translators saw neither the queries nor the catalogue. Filters, so that
the glossary adds English words to non-English queries and nothing else:

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


def main(source: Path) -> None:
    catalog = load_catalog()
    english = " ".join(catalog["title"].astype(str)) + " " + " ".join(catalog["description"].astype(str))
    vocabulary = set(re.findall(r"\w+", fold(english)))
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
    kept = sorted(dict.fromkeys(kept), key=lambda r: (LANGUAGES.index(r[0]), r[2], r[1]))
    with open(GLOSSARY_FILE, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh, lineterminator="\n")
        writer.writerow(["language", "term", "english"])
        writer.writerows(kept)
    print(f"{len(kept)} rows kept; dropped {short} too short, {ambiguous} also English catalogue words")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
