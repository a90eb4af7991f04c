"""Catalogue terms (glossary batch 2): master.txt, one English term a line with its translations
(``english|zh:a;b|ja:...|es:...|fr:...|de:...|pt:...``), -> one ``term,english`` CSV per language here. Then:

    PYTHONPATH=. python docs/results/videos/glossary_build.py --add docs/results/videos/glossary_catalog
"""
import csv
from pathlib import Path
here = Path(__file__).parent
rows = {l: [] for l in ("zh", "ja", "es", "fr", "de", "pt")}
for line in (here / "master.txt").read_text(encoding="utf-8").splitlines():
    english, *parts = line.split("|")
    for part in parts:
        lang, terms = part.split(":", 1)
        rows[lang] += [(t.strip(), english.strip()) for t in terms.split(";") if t.strip()]
for lang, rs in rows.items():
    with open(here / f"{lang}.csv", "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh, lineterminator="\n"); w.writerow(["term", "english"]); w.writerows(rs)
    print(lang, len(rs))
