"""Linear-algebra teaching-video catalog and labelled search queries.

The video domain of the project reproduces the setting of DCDT-style course
recommendation: a teacher or student types a free-text need ("10 minute visual
intro to eigenvectors") and the system should return the teaching videos that
answer it. We ship our own small benchmark for this in ``assets/``:

* ``assets/videos.csv``  -- about 250 real, public linear-algebra videos (MIT 18.06,
  18.06SC recitations, 3Blue1Brown, Khan Academy, MIT 18.065) with their real titles,
  our own descriptions, a level and 1-3 topic slugs (most central first).
* ``assets/queries.csv`` -- about 900 hand-written queries labelled with the video ids
  that answer them, a primary topic, a writing style and a train/validation/test split.

Both files are documented in ``assets/README.md``. This module only *reads and
validates* them; ``recsys.data.video_assets`` (re)computes the split column and the
count tables. Loaders validate strictly because the files are edited by hand: a bad
row raises :class:`ValueError` naming the file and the line, instead of silently
producing a catalog that makes every metric wrong.
"""

from __future__ import annotations

import csv
import functools
import logging
import re
from pathlib import Path

import pandas as pd

from recsys.paths import ASSETS_DIR

logger = logging.getLogger(__name__)

VIDEOS_PATH = ASSETS_DIR / "videos.csv"
QUERIES_PATH = ASSETS_DIR / "queries.csv"

#: Topic slug -> meaning. Order follows a typical first course.
TOPICS: dict[str, str] = {
    "linear-algebra-intro": "what linear algebra is, course overviews, why it matters",
    "vectors": "what a vector is, addition, scalar multiplication, geometric picture in 2D/3D",
    "dot-product": "dot product, length (norm), angle between vectors, unit vectors",
    "cross-product": "cross product in 3D and its geometry",
    "linear-combinations-span": "linear combinations and span",
    "linear-independence": "linear independence and dependence",
    "basis-dimension": "basis, dimension, coordinates w.r.t. a basis",
    "matrix-operations": "matrix basics: entries, addition, transpose, matrix-vector product, special matrices",
    "matrix-multiplication": "matrix multiplication, rules, meaning as composition",
    "linear-transformations": "linear transformations, matrix of a transformation, "
    "rotations/shears/reflections, kernel and image",
    "linear-systems": "systems of linear equations: row picture, column picture, existence/uniqueness",
    "gaussian-elimination": "elimination, row reduction, echelon/RREF, pivots",
    "lu-factorization": "LU/LDU, permutation matrices, cost of elimination",
    "matrix-inverse": "inverses, Gauss-Jordan, invertibility conditions",
    "determinants": "properties, cofactor expansion, Cramer's rule, volume",
    "vector-spaces": "vector spaces and subspaces incl. abstract spaces (polynomials, functions, matrices)",
    "four-subspaces": "column space, null space, row space, left null space; Ax=0 and complete solution of Ax=b",
    "rank": "rank and rank-nullity",
    "change-of-basis": "change of basis, similar matrices",
    "orthogonality": "orthogonal vectors/subspaces, complements, orthonormal bases, orthogonal matrices",
    "projections": "projection onto a line or subspace, projection matrices",
    "least-squares": "least squares, normal equations, fitting lines/curves",
    "gram-schmidt-qr": "Gram-Schmidt and QR",
    "eigenvalues": "eigenvalues/eigenvectors, characteristic polynomial, trace/determinant relations",
    "diagonalization": "diagonalization, powers, difference equations such as Fibonacci",
    "symmetric-matrices": "symmetric matrices, spectral theorem",
    "positive-definite": "positive definite matrices, quadratic forms, tests for minima, Cholesky",
    "svd": "singular value decomposition",
    "pca-low-rank": "PCA, low-rank approximation, compression",
    "markov-matrices": "Markov matrices, steady states, stochastic processes, PageRank",
    "differential-equations": "linear ODE systems, matrix exponential",
    "complex-matrices-fft": "complex vectors/matrices, Hermitian/unitary, Fourier matrix, FFT",
    "pseudoinverse": "left/right inverses, pseudoinverse",
    "jordan-form": "Jordan form, defective matrices",
    "graphs-networks": "incidence matrices, Kirchhoff's laws, graph Laplacian",
    "numerical-linear-algebra": "norms, condition numbers, floating point error, iterative methods",
}

#: Difficulty levels, easiest first.
LEVELS: tuple[str, ...] = ("intro", "intermediate", "advanced")

#: How a query is written (see assets/README.md for examples of each).
STYLES: tuple[str, ...] = (
    "student-question",
    "teacher-planning",
    "keywords",
    "misspelling",
    "paraphrase",
    "non-english",
)

#: Query splits; queries (not videos) are split, the catalog is shared by all splits.
SPLITS: tuple[str, ...] = ("train", "validation", "test")

#: ISO 639-1 code of a query's language -> its name. The Ask page serves teachers who
#: type in their own language (the DCDT paper's platform is Chinese), so every query
#: states its language and results are reported per language.
LANGUAGES: dict[str, str] = {
    "en": "English",
    "zh": "Chinese",
    "es": "Spanish",
    "fr": "French",
    "de": "German",
    "ja": "Japanese",
    "pt": "Portuguese",
}

#: A query written from another one (a translation or a re-phrasing in another language)
#: has the id ``<source id>-<language>[n]``, e.g. ``q0475-zh``: it takes its source's
#: topic, relevant videos and split, so a translation of a test query can never train.
DERIVED_ID = re.compile(r"^(q\d{4})-([a-z]{2})(\d*)$")

#: Han ideographs, kana and hangul: text with them is Chinese or Japanese (kana: Japanese).
_CJK = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff]")
_KANA = re.compile(r"[\u3040-\u30ff]")

VIDEO_COLUMNS = ["video_id", "title", "series", "description", "level", "topics"]
QUERY_COLUMNS = ["query_id", "text", "relevant", "topic", "style", "split", "language"]

#: Topic and relevant lists are stored as one CSV cell joined with this separator.
LIST_SEP = "|"


def _split_list(cell: str) -> list[str]:
    return [part.strip() for part in cell.split(LIST_SEP) if part.strip()]


def _read_rows(path: Path, columns: list[str]) -> list[tuple[int, dict[str, str]]]:
    """Read a CSV file as ``(line_number, row)`` pairs, checking the header and cell count.

    Line numbers are the physical line on which a record *starts* (1 = header), so an
    error points at what a person sees in their editor even when cells span lines.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: file not found (the video assets ship in {ASSETS_DIR})")
    rows: list[tuple[int, dict[str, str]]] = []
    with path.open(encoding="utf-8", newline="") as fh:
        reader = csv.reader(fh)
        try:
            header = next(reader)
        except StopIteration:
            raise ValueError(f"{path}, line 1: file is empty, expected header {','.join(columns)}") from None
        if header != columns:
            raise ValueError(f"{path}, line 1: header is {header}, expected {columns}")
        start = reader.line_num + 1
        for cells in reader:
            line = start
            start = reader.line_num + 1
            if not cells or all(not c.strip() for c in cells):
                continue  # tolerate blank lines
            if len(cells) != len(columns):
                raise ValueError(
                    f"{path}, line {line}: expected {len(columns)} fields "
                    f"({','.join(columns)}), found {len(cells)}"
                )
            row = {name: cell.strip() for name, cell in zip(columns, cells)}
            for name, value in row.items():
                if not value:
                    raise ValueError(f"{path}, line {line}: empty '{name}'")
            rows.append((line, row))
    return rows


@functools.lru_cache(maxsize=8)
def _catalog_records(path_str: str) -> tuple[tuple, ...]:
    path = Path(path_str)
    records, seen = [], {}
    for line, row in _read_rows(path, VIDEO_COLUMNS):
        vid = row["video_id"]
        if vid in seen:
            raise ValueError(f"{path}, line {line}: duplicate video_id '{vid}' (first on line {seen[vid]})")
        seen[vid] = line
        if row["level"] not in LEVELS:
            raise ValueError(f"{path}, line {line}: level '{row['level']}' is not one of {LEVELS}")
        topics = _split_list(row["topics"])
        if not 1 <= len(topics) <= 3:
            raise ValueError(f"{path}, line {line}: expected 1-3 topics, found {len(topics)}")
        unknown = [t for t in topics if t not in TOPICS]
        if unknown:
            raise ValueError(f"{path}, line {line}: unknown topic(s) {unknown}")
        if len(set(topics)) != len(topics):
            raise ValueError(f"{path}, line {line}: repeated topic in {topics}")
        records.append(
            (vid, row["title"], row["series"], row["description"], row["level"], tuple(topics))
        )
    if not records:
        raise ValueError(f"{path}: no videos")
    logger.debug("loaded %d videos from %s", len(records), path)
    return tuple(records)


def load_catalog(path: str | Path | None = None) -> pd.DataFrame:
    """The video catalog, one row per video.

    Columns: ``video_id, title, series, description, level, topics`` (``list[str]``,
    most central first) and ``text`` = ``title + ". " + description``, the string that
    embedders and BM25 encode. The parsed file is cached in-process; each call
    returns a fresh DataFrame (with fresh lists) so callers may mutate it freely.
    """
    path = Path(path) if path is not None else VIDEOS_PATH
    records = _catalog_records(str(path.resolve()))
    df = pd.DataFrame(
        [
            {
                "video_id": r[0],
                "title": r[1],
                "series": r[2],
                "description": r[3],
                "level": r[4],
                "topics": list(r[5]),
            }
            for r in records
        ]
    )
    df["text"] = df["title"] + ". " + df["description"]
    return df


@functools.lru_cache(maxsize=8)
def _query_records(path_str: str, catalog_str: str) -> tuple[tuple, ...]:
    path = Path(path_str)
    video_ids = {r[0] for r in _catalog_records(catalog_str)}
    records, seen = [], {}
    for line, row in _read_rows(path, QUERY_COLUMNS):
        qid = row["query_id"]
        if qid in seen:
            raise ValueError(f"{path}, line {line}: duplicate query_id '{qid}' (first on line {seen[qid]})")
        seen[qid] = line
        relevant = _split_list(row["relevant"])
        if not relevant:
            raise ValueError(f"{path}, line {line}: no relevant video ids")
        missing = [v for v in relevant if v not in video_ids]
        if missing:
            raise ValueError(f"{path}, line {line}: relevant id(s) not in the catalog: {missing}")
        if len(set(relevant)) != len(relevant):
            raise ValueError(f"{path}, line {line}: repeated relevant id in {relevant}")
        if row["topic"] not in TOPICS:
            raise ValueError(f"{path}, line {line}: unknown topic '{row['topic']}'")
        if row["style"] not in STYLES:
            raise ValueError(f"{path}, line {line}: style '{row['style']}' is not one of {STYLES}")
        if row["split"] not in SPLITS:
            raise ValueError(f"{path}, line {line}: split '{row['split']}' is not one of {SPLITS}")
        _check_language(path, line, row)
        records.append((qid, row["text"], tuple(relevant), row["topic"], row["style"], row["split"],
                        row["language"]))
    if not records:
        raise ValueError(f"{path}: no queries")
    by_id = {r[0]: (r, seen[r[0]]) for r in records}
    for r in records:
        _check_derived(path, seen[r[0]], r, by_id)
    logger.debug("loaded %d queries from %s", len(records), path)
    return tuple(records)


def _check_language(path: Path, line: int, row: dict[str, str]) -> None:
    """The ``language`` cell is a known ISO code that agrees with the style and the script.

    Strict because per-language results are only as good as these labels: a Chinese query
    filed as English would silently move numbers between the columns of the results table.
    """
    lang, text = row["language"], row["text"]
    if lang not in LANGUAGES:
        raise ValueError(f"{path}, line {line}: language '{lang}' is not one of {tuple(LANGUAGES)}")
    if (lang == "en") != (row["style"] != "non-english"):
        raise ValueError(f"{path}, line {line}: language '{lang}' does not match style '{row['style']}'")
    has_cjk = bool(_CJK.search(text))
    if has_cjk != (lang in ("zh", "ja")) or (lang == "zh" and _KANA.search(text)):
        raise ValueError(f"{path}, line {line}: language '{lang}' does not match the script of {text!r}")


def _check_derived(path: Path, line: int, record: tuple, by_id: dict) -> None:
    """A derived query (``q0475-zh``) agrees with its source: language, topic, videos, split."""
    match = DERIVED_ID.match(record[0])
    if match is None:
        return
    source_id, lang = match.group(1), match.group(2)
    if source_id not in by_id or DERIVED_ID.match(source_id):
        raise ValueError(f"{path}, line {line}: '{record[0]}' derives from unknown query '{source_id}'")
    source = by_id[source_id][0]
    if lang != record[6]:
        raise ValueError(f"{path}, line {line}: id '{record[0]}' says language '{lang}', the row says "
                         f"'{record[6]}'")
    for index, name in ((3, "topic"), (2, "relevant"), (5, "split")):
        if record[index] != source[index]:
            raise ValueError(f"{path}, line {line}: {name} differs from its source {source_id} "
                             f"(line {by_id[source_id][1]}): {record[index]} != {source[index]}")


def load_queries(
    split: str | None = None,
    path: str | Path | None = None,
    catalog_path: str | Path | None = None,
) -> pd.DataFrame:
    """Labelled queries, optionally only one split.

    Columns: ``query_id, text, relevant`` (``list[str]`` of video ids), ``topic``
    (primary topic slug), ``style``, ``split`` and ``language`` (ISO 639-1 code, a key of
    :data:`LANGUAGES`). Every relevant id is checked
    against the catalog at ``catalog_path`` (default: the shipped one).
    """
    if split is not None and split not in SPLITS:
        raise ValueError(f"unknown split '{split}', expected one of {SPLITS} or None")
    path = Path(path) if path is not None else QUERIES_PATH
    catalog = Path(catalog_path) if catalog_path is not None else VIDEOS_PATH
    records = _query_records(str(path.resolve()), str(catalog.resolve()))
    df = pd.DataFrame(
        [
            {
                "query_id": r[0],
                "text": r[1],
                "relevant": list(r[2]),
                "topic": r[3],
                "style": r[4],
                "split": r[5],
                "language": r[6],
            }
            for r in records
            if split is None or r[5] == split
        ],
        columns=QUERY_COLUMNS,
    )
    return df.reset_index(drop=True)


def clear_cache() -> None:
    """Forget parsed files (after editing the assets inside a running process)."""
    _catalog_records.cache_clear()
    _query_records.cache_clear()


#: The official page of each series (from assets/README.md, Sources). The catalogue holds
#: no per-video URL or platform id, and we do not guess one: a result links to its
#: series' course page or topic page, where the lecture is listed by its title.
SERIES_PAGES = {
    "MIT 18.06 Linear Algebra (Spring 2005)": "https://ocw.mit.edu/courses/18-06-linear-algebra-spring-2010/",
    "MIT 18.06SC Linear Algebra (Fall 2011)": "https://ocw.mit.edu/courses/18-06sc-linear-algebra-fall-2011/",
    "3Blue1Brown: Essence of Linear Algebra": "https://www.3blue1brown.com/topics/linear-algebra",
    "3Blue1Brown: Differential Equations": "https://www.3blue1brown.com/topics/differential-equations",
    "Khan Academy: Linear Algebra": "https://www.khanacademy.org/math/linear-algebra",
    "MIT 18.065 Matrix Methods in Data Analysis, Signal Processing, and Machine Learning (Spring 2018)":
        "https://ocw.mit.edu/courses/18-065-matrix-methods-in-data-analysis-signal-processing-and-machine-learning-spring-2018/",
}
