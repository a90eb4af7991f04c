"""Where the embedding explorer gets its vectors: *sources*, contributed by each domain.

A source is a function returning a :class:`SourceData`: ``vectors`` (n, d) and a
row-aligned ``meta`` DataFrame with a ``label`` column (the hover text) plus columns
to colour by (topic, series, genre, type, ...). A source may also say how to put a
text query into the same space (``encode_query``) and how to look up a user's items
(``user_items``), which the explorer draws as overlays.

Each domain's page module (``recsys.<domain>.page``) offers its sources through
``embedding_sources() -> list[Source]``; :func:`list_sources` iterates the domains of
the registry. A source that cannot load now (untrained, no data) raises
:class:`SourceUnavailable` with a message the page shows as is.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
import pandas as pd

from recsys.viz.projections import fingerprint_array

log = logging.getLogger(__name__)


class SourceUnavailable(RuntimeError):
    """This source cannot be shown now; the message says why and what to do."""


@dataclass
class SourceData:
    vectors: np.ndarray
    meta: pd.DataFrame
    encode_query: Callable[[list[str]], np.ndarray] | None = None  # texts -> vectors in this space
    user_ids: Callable[[], Sequence[int]] | None = None  # users offered for the user overlay
    user_items: Callable[[int], pd.DataFrame] | None = None  # user -> DataFrame[row, weight]
    note: str = ""

    def __post_init__(self):
        self.vectors = np.asarray(self.vectors, dtype=np.float32)
        if self.vectors.ndim != 2:
            raise ValueError(f"source vectors must be 2-D, got shape {self.vectors.shape}")
        if len(self.meta) != len(self.vectors):
            raise ValueError(f"{len(self.vectors)} vectors but {len(self.meta)} metadata rows")
        self.meta = self.meta.reset_index(drop=True)
        if "label" not in self.meta:
            self.meta["label"] = [f"item {i}" for i in range(len(self.meta))]

    @cached_property
    def fingerprint(self) -> str:
        return fingerprint_array(self.vectors)


@dataclass
class Source:
    key: str
    title: str
    description: str
    load: Callable[[], SourceData] = field(repr=False)


# ---------------------------------------------------------------------------------------------
# pipeline-backed sources
# ---------------------------------------------------------------------------------------------
def run_registry():
    from recsys.train.runs import RunRegistry

    return RunRegistry()


def finished_runs(predicate: Callable[[str], bool]) -> list[tuple[str, str]]:
    """``(run_id, recipe)`` of finished runs with a checkpoint whose recipe satisfies ``predicate``."""
    out = []
    try:
        runs = run_registry().list()
    except OSError:
        return out
    for run in runs:  # damaged runs have recipe "" and status "damaged": never offered
        try:
            recipe = run.recipe
            if recipe and predicate(recipe) and run.status().get("status") == "done" and run.checkpoint_path.is_file():
                out.append((run.id, recipe))
        except (OSError, ValueError, KeyError):
            continue
    return out


def unavailable(message: str) -> Callable[[], SourceData]:
    def load() -> SourceData:
        raise SourceUnavailable(message)

    return load


def list_sources() -> list[Source]:
    """Every source the explorer offers now, from each domain's ``page.embedding_sources()``.

    Sources that cannot load yet (no trained model, no data) still appear, and say why
    when picked; a domain whose page module fails to import is logged and skipped.
    """
    from recsys import registry

    sources: list[Source] = []
    for domain in registry.DOMAINS:
        try:
            sources += registry.domain_module(domain, "page").embedding_sources()
        except Exception as error:  # noqa: BLE001 - one broken domain must not empty the explorer
            log.error("explorer: the %s sources are unavailable: %s: %s", domain, type(error).__name__, error)
    return sources


def get_source(key: str) -> Source:
    for source in list_sources():
        if source.key == key:
            return source
    raise KeyError(f"unknown explorer source {key!r}")


def load_source(key: str) -> SourceData:
    """Load a source by key; raises :class:`SourceUnavailable` with the reason when it cannot."""
    source = get_source(key)
    try:
        return source.load()
    except SourceUnavailable:
        raise
    except FileNotFoundError as error:  # a missing dataset (DataNotFoundError) or checkpoint
        raise SourceUnavailable(str(error)) from error
    except ValueError as error:  # ArtifactError (a damaged or foreign checkpoint), a malformed data file
        raise SourceUnavailable(str(error)) from error
