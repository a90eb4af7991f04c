"""Where the project finds data, caches and runs.

Data is never committed. Each loader asks :func:`find_data_dir` for its dataset,
which looks in ``$RECSYS_DATA_DIR``, then ``./data/``, then ``../shared/data/``
and, if nothing is there, raises :class:`DataNotFoundError` saying what was
looked for and how to get it.
"""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
ASSETS_DIR = PROJECT_ROOT / "assets"


class DataNotFoundError(FileNotFoundError):
    """A dataset is missing; the message lists the places searched and how to get it."""


def data_roots() -> list[Path]:
    """Candidate data roots, in priority order."""
    roots = []
    if os.environ.get("RECSYS_DATA_DIR"):
        roots.append(Path(os.environ["RECSYS_DATA_DIR"]).expanduser())
    roots.append(Path.cwd() / "data")
    roots.append(PROJECT_ROOT / "data")
    roots.append(PROJECT_ROOT.parent / "shared" / "data")
    # de-duplicate while keeping order (cwd is often the project root)
    seen, unique = set(), []
    for root in roots:
        key = str(root.resolve()) if root.exists() else str(root)
        if key not in seen:
            seen.add(key)
            unique.append(root)
    return unique


def find_data_dir(dataset: str, required: list[str], how_to_get: str) -> Path:
    """Return the first ``<root>/<dataset>`` that holds every file in ``required``."""
    searched = []
    for root in data_roots():
        candidate = root / dataset
        searched.append(str(candidate))
        if all((candidate / name).is_file() for name in required):
            return candidate
    raise DataNotFoundError(
        f"Dataset '{dataset}' not found: need {', '.join(required)} in one of:\n  "
        + "\n  ".join(searched)
        + f"\nHow to get it: {how_to_get}\n"
        "Set RECSYS_DATA_DIR to the folder that contains '"
        + dataset
        + "/' to use another location."
    )


def cache_dir(*parts: str) -> Path:
    """A writable cache folder (``$RECSYS_CACHE_DIR`` or ``./.cache/recsys``), created on demand."""
    base = Path(os.environ.get("RECSYS_CACHE_DIR", PROJECT_ROOT / ".cache" / "recsys"))
    path = base.joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


def runs_dir() -> Path:
    """The run registry root (``$RECSYS_RUNS_DIR`` or ``./runs``), git-ignored."""
    path = Path(os.environ.get("RECSYS_RUNS_DIR", PROJECT_ROOT / "runs"))
    path.mkdir(parents=True, exist_ok=True)
    return path
