"""Structural checks shared by the dataset loaders, and the public releases they compare against.

Why strict: a data file cut in the middle of a row, or with one garbage line, used to
load "fine" and silently move every number downstream (ml-100k's HR@10 went from
0.0498 to 0.0433). So loaders reject a file that is *broken* (a cut last line, a row
with the wrong number of fields, a value of the wrong type or out of range) with
:class:`DataFileError` naming the file and the line, and they *report* on a file
that is merely *unusual*: each loaded file gets a :class:`FileReport` (rows, sha256,
which public release it matches) whose ``warnings`` say when it differs from the
release it claims to be. Warnings are logged and kept for the pages and the CLI to
show (``recsys.data.anime.LAST_REPORTS``, ``SequentialDataset.data_reports``).
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger(__name__)

#: ids are stored as int64 but must fit the int32 range every index and model here uses
MAX_ID = 2**31 - 1


class DataFileError(ValueError):
    """A data file that cannot be used as it is; the message names the file and, where known, the line."""


@dataclass(frozen=True)
class Release:
    name: str
    rows: int  # data rows, header excluded
    sha256: str | None = None  # None where the file is too large to ship a checksum for here


#: file name -> the public releases a file of that name may be (see ``../shared/data/README.md``)
KNOWN_RELEASES: dict[str, tuple[Release, ...]] = {
    "anime.csv": (Release("Kaggle Anime Recommendations Database", 12_294,
                          "26c27b66120342544f19c9acb575e3dcbf37d46d1898ae57be3167eb0284a845"),),
    "rating.csv": (Release("Kaggle Anime Recommendations Database (full)", 7_813_737),
                   Release("the project's 5,000-user sample of the Kaggle rating.csv", 520_609,
                           "77c42394caedbbbdd037f3f085ac57c983e092ace81fcc7de2a3f2014bb1fa27")),
    "ml-100k.inter": (Release("MovieLens 100K (RecBole 1.2.1)", 100_000,
                              "4edb74e2a81178c2ba9ff381495f754f996c4aea351b1272ca36b43da0935eff"),),
    "ml-100k.item": (Release("MovieLens 100K (RecBole 1.2.1)", 1_682,
                             "51d7cdf777ce5c0f5b32c1d947a4a81fe07d75e78abbe761e0cd4d0756064532"),),
    "ml-100k.user": (Release("MovieLens 100K (RecBole 1.2.1)", 943,
                             "4f670007d9cfbeb9807e757209af1555b9bcc186bde25e767f67cb67c6dd5972"),),
}


@dataclass
class FileReport:
    """What a loader found in one file: row count, checksum, matching release, warnings."""

    path: str
    rows: int
    sha256: str
    release: str | None = None  # the public release it matches exactly
    warnings: list[str] = field(default_factory=list)

    def summary(self) -> str:
        where = f"matches {self.release}" if self.release else "not a known release"
        return f"{Path(self.path).name}: {self.rows:,} rows, {where}"


def check_complete(path: Path) -> None:
    """Refuse an empty file or one whose last line has no line end (cut mid-row)."""
    path = Path(path)
    size = path.stat().st_size
    if size == 0:
        raise DataFileError(f"{path}: the file is empty")
    with open(path, "rb") as handle:
        handle.seek(size - 1)
        last = handle.read(1)
    if last != b"\n":
        with open(path, "rb") as handle:
            lines = sum(chunk.count(b"\n") for chunk in iter(lambda: handle.read(1 << 20), b"")) + 1
        raise DataFileError(f"{path}: line {lines}: the last line has no line end; the file is cut mid-row")


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def report(path: Path, rows: int) -> FileReport:
    """Compare ``path`` (``rows`` data rows) with the known releases of its name; log any difference."""
    path = Path(path)
    result = FileReport(str(path), int(rows), sha256_of(path))
    releases = KNOWN_RELEASES.get(path.name, ())
    exact = [r for r in releases if r.sha256 == result.sha256]
    if exact:
        result.release = exact[0].name
    elif releases:
        same_rows = [r for r in releases if r.rows == rows]
        if same_rows and same_rows[0].sha256 is None:
            result.release = same_rows[0].name  # row count is all we can check for this one
        elif same_rows:
            result.warnings.append(
                f"{path.name} has the {rows:,} rows of {same_rows[0].name} but different contents (sha256 differs)")
        else:
            expected = " or ".join(f"{r.rows:,} ({r.name})" for r in releases)
            result.warnings.append(f"{path.name} has {rows:,} rows; the public release has {expected}")
    for warning in result.warnings:
        log.warning("%s: %s", path, warning)
    log.info("%s", result.summary())
    return result


def quick_report(path: Path) -> FileReport:
    """A :func:`report` without parsing: data rows counted as lines after the header (for the Home page).

    Also flags a cut last line, so a damaged file shows before any page tries to load it.
    """
    path = Path(path)
    with open(path, "rb") as handle:
        lines = sum(chunk.count(b"\n") for chunk in iter(lambda: handle.read(1 << 20), b""))
    result = report(path, max(lines - 1, 0))
    try:
        check_complete(path)
    except DataFileError as error:
        result.warnings.insert(0, str(error))
    return result
