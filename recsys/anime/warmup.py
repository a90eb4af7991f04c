"""Start the Anime page's first list before torch has finished importing.

On a fresh server the page's first personal list is item-kNN (:func:`recsys.anime.serving.quick_recommender`),
and everything before it is serial: importing torch (about 2 s here; the model contract needs it),
loading the split (0.3-0.6 s), then item-kNN's item-item cosine (about 2 s). The split and the cosine
need only numpy and scipy, and both release the GIL for most of their work, so :func:`start` runs
them in a thread while the page imports torch; the quick bundle's item-kNN fit then finds the
similarity already computed (:mod:`recsys.retrieval.cosine` memoises it by the matrix's digest).
Measured with ``benchmarks/anime_first_visit.py`` (the closing note of issue 12 gives the numbers).

It does nothing when there is no import to overlap (torch already loaded, e.g. the server has
served the page before) or when the full bundle is cached (the page loads that instead). A failure
here only costs the head start: the page computes the same things itself and reports any error.
"""

from __future__ import annotations

import logging
import sys
import threading

from recsys.anime.prep import AnimeData, AnimeSettings, binary, bundle_path, default_settings, load_split
from recsys.retrieval.cosine import cosine_topk

log = logging.getLogger(__name__)

_started: list[threading.Thread] = []


def start(settings: AnimeSettings | None = None) -> bool:
    """Compute the split and item-kNN's similarity in a daemon thread (once per process); True if started."""
    settings = settings or default_settings(quick=True)
    if _started or "torch" in sys.modules:
        return False
    try:
        if bundle_path(settings).exists():
            return False
    except Exception:  # noqa: BLE001 - e.g. no data: the page says so when it loads the data itself
        return False
    thread = threading.Thread(target=_prepare, args=(settings,), name="anime-warmup", daemon=True)
    _started.append(thread)
    thread.start()
    return True


def _prepare(settings: AnimeSettings) -> None:
    try:
        split, fingerprint = load_split(settings)
        cosine_topk(binary(AnimeData.from_split(split, fingerprint).interactions), settings.knn_neighbours)
    except Exception:  # noqa: BLE001 - the page does the same work itself and shows its errors
        log.warning("anime warm-up failed; the page computes the first list itself", exc_info=True)
