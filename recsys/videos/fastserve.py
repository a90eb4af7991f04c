"""Torch-free serving of the video domain: a fast query encoder plus a pre-computed serving pack.

Why: issue 11 measured 14.5 s from starting the app on a fresh clone to the first answer
(importing torch, loading MiniLM, embedding the whole catalogue) and ~8 ms a query, most
of it the fp32 encoder. Here nothing heavy runs at start or per query:

* the query is encoded by a torch-free encoder named by
  :func:`recsys.embed.onnx_query.encoder_for_space` (MiniLM on ONNX Runtime, layers 2-6
  in int8, for the MiniLM half of the shipped space, USE multilingual on ONNX Runtime in fp32
  for the other; any numpy / ONNX encoder, or a ``+`` concatenation, plugs in by name);
* everything query-independent comes from a serving pack (:mod:`recsys.videos.pack`) in the
  cache, keyed by the sha256 of the checkpoints and data files: the pack of the shipped
  checkpoints is built at install time with the ONNX graphs (:func:`prepare`,
  ``python -m recsys prepare``, about 40 s), any other (a studio run serving, an edited
  catalogue) with torch on first use;
* scoring, top-k and the "why" run in numpy. A model the pack has no layout for is
  scored by the torch :class:`~recsys.videos.serving.VideoService` (loaded then, said so).

:class:`FastVideoService` answers exactly like :class:`~recsys.videos.serving.VideoService`
(same records; ``recommend_many`` is shared), so the Ask page and the CLI use either.
Neither the packs nor the graphs are committed: they are build outputs (26 MB and 51 MB).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from recsys.embed.glossary import embed_query
from recsys.paths import ASSETS_DIR, cache_dir, runs_dir
from recsys.videos import pack as packs
from recsys.videos.serving import VideoService, check_model, model_names

log = logging.getLogger(__name__)

SHIPPED_DIR = ASSETS_DIR / "checkpoints"


@dataclass
class CatalogData:
    """The catalogue and queries as text (what ``VideoData`` holds, loaded without the model code)."""

    catalog: Any
    queries: Any

    @classmethod
    def load(cls) -> "CatalogData":
        from recsys.data.videos import load_catalog, load_queries

        return cls(load_catalog(), load_queries())


def shipped_checkpoint(name: str, space: str) -> Path | None:
    """The committed checkpoint of model ``name`` trained on ``space`` (read from the headers), if any."""
    from recsys.artifacts import ArtifactError, read_meta

    for path in sorted(SHIPPED_DIR.glob("*.safetensors")):
        try:
            meta = read_meta(path)
        except ArtifactError:
            continue
        if meta.get("model") == name and meta.get("embedder") == space:
            return path
    return None


def serving_checkpoints(space: str) -> dict[str, Path | None]:
    """The checkpoint file each neural model would serve from: an active studio run, else the shipped one.

    ``None`` when there is neither (then :class:`VideoService` finds a cached one or trains,
    and the pack built from it is cached under a key that says "none").
    """
    out: dict[str, Path | None] = {}
    active = (runs_dir() / "active.json").is_file()
    for name in packs.NEURAL:
        path = None
        if active:  # rare: only then is the run registry (and torch) imported
            from recsys.train.runs import RunRegistry
            from recsys.videos.serving import active_run_id

            run_id = active_run_id(name)
            path = RunRegistry().get(run_id).checkpoint_path if run_id else None
        out[name] = path or shipped_checkpoint(name, space)
    return out


def pack_sources() -> list[Path]:
    """The data files a pack is computed from besides the checkpoints: the catalogue and the queries (CF
    votes with the training queries, which are read as typed, so the glossary is not one of them)."""
    from recsys.data.videos import QUERIES_PATH, VIDEOS_PATH

    return [VIDEOS_PATH, QUERIES_PATH]


def locate_pack(space: str, build_if_missing: bool = True,
                checkpoints: dict[str, Path | None] | None = None) -> tuple[packs.Pack, str]:
    """The serving pack of ``space`` for ``checkpoints`` (default: those that serve now), and where it came from."""
    checkpoints = serving_checkpoints(space) if checkpoints is None else checkpoints
    key = packs.pack_key(space, pack_sources(), checkpoints)
    cached = cache_dir("videos", "packs") / f"{key}.npz"
    if cached.is_file():
        try:
            pack = packs.load_pack(cached)
        except ValueError as error:
            log.warning("rebuilding the serving pack: %s", error)
        else:
            if pack.key == key:
                return pack, f"serving pack {cached.name}"
            log.warning("rebuilding the serving pack %s: it says key %s", cached.name, pack.key)
    if not build_if_missing:
        raise FileNotFoundError(f"no serving pack {key} for {space}; build it with `python -m recsys prepare`")
    start = time.perf_counter()
    packs.save_pack(cached, build_arrays(space, key))
    return packs.load_pack(cached), f"built now with torch ({time.perf_counter() - start:.0f} s), cached as {cached.name}"


def build_arrays(space: str, key: str, skip: tuple[str, ...] = ()) -> dict[str, np.ndarray]:
    """Build a pack with the torch service (items embedded by the local embedder, checkpoints loaded).

    ``skip``: models left out (served by the torch service if asked for).
    """
    from recsys.embed import get_embedder

    service = VideoService(embedder=get_embedder("local"))
    if service.embedder.name != space:
        raise RuntimeError(f"the local embedder is {service.embedder.name}, not {space}")
    bundle = service.bundle(progress=False)
    models = [name for name in model_names() if name in packs.SCORERS and name not in skip]
    return packs.build_pack(bundle, key, space, models)


class FastVideoService(VideoService):
    """:class:`VideoService` over a serving pack and a torch-free query encoder (see the module docstring)."""

    def __init__(self, space: str, encoder: str, data: CatalogData | None = None, build_if_missing: bool = True):
        from recsys.embed.onnx_query import query_encoder

        start = time.perf_counter()
        self.data = data if data is not None else CatalogData.load()
        self._checkpoints = serving_checkpoints(space)
        self.pack, self.pack_origin = locate_pack(space, build_if_missing, self._checkpoints)
        self.embedder = query_encoder(encoder)
        if getattr(self.embedder, "space", self.embedder.name) != space:
            raise ValueError(f"query encoder {encoder} embeds into {getattr(self.embedder, 'space', '?')}, "
                             f"the serving pack is in {space}")
        self.space = space
        self._rows = self.data.catalog.to_dict("records")
        self._index = {row["video_id"]: i for i, row in enumerate(self._rows)}
        if [str(v) for v in self.pack.arrays["videos/ids"]] != list(self.data.catalog["video_id"]):
            raise RuntimeError(f"the serving pack {self.pack.key} lists other videos than the catalogue")
        self._lock = threading.RLock()
        self._torch: VideoService | None = None  # only for a model the pack cannot score
        self._active_seen = False  # a studio run was served at some point: keep checking
        self.train_if_missing = build_if_missing
        self.answered = 0
        self.created_at, self.load_seconds = time.time(), time.perf_counter() - start
        log.info("fast video service ready in %.2f s (%s, %s)", self.load_seconds, self.pack_origin, encoder)
        # USE reads its weights on its first call (about 1 s), ONNX Runtime allocates on its first run, and the
        # glossary is parsed on its first use; done
        # here in the background, so the first question typed does not pay for them (or pays only what is left).
        # Not a daemon: a process that exits at once (the CLI refusing an empty query) waits for it, since
        # tearing the interpreter down under a thread inside ONNX Runtime aborts the process
        threading.Thread(target=self._warm_up, name="query-encoder-warmup").start()

    def _warm_up(self) -> None:
        try:
            embed_query(self.embedder, ["warm-up"])  # the glossary is read here too, not on the first question
        except Exception:  # noqa: BLE001 - the first real question loads the encoder again and reports the error
            log.warning("warming up the query encoder failed", exc_info=True)

    @property
    def backend_description(self) -> str:
        return f"{self.embedder.describe()}; video side pre-computed ({self.pack_origin})"

    @property
    def fallback_reason(self) -> str | None:
        return None

    def bundle(self, progress: bool = False) -> packs.Pack:
        """The serving pack (loaded with the service: nothing to build; no torch model bundle here)."""
        return self.pack

    def _torch_service(self) -> VideoService:
        with self._lock:
            if self._torch is None:
                from recsys.embed import get_embedder

                self._torch = VideoService(data=None, embedder=get_embedder("local"),
                                           train_if_missing=self.train_if_missing)
            return self._torch

    def model_source(self, name: str) -> str:
        return self._source(check_model(name).name)

    def refresh(self) -> None:
        """Follow the studio: when another run is made to serve (``active.json``), switch to its pack.

        Costs one ``stat`` while no run is active; the new pack is built with torch on first use.
        """
        if not (runs_dir() / "active.json").is_file() and not self._active_seen:
            return
        self._active_seen = True
        checkpoints = serving_checkpoints(self.space)
        if checkpoints != self._checkpoints:
            with self._lock:
                self.pack, self.pack_origin = locate_pack(self.space, self.train_if_missing, checkpoints)
                self._checkpoints = checkpoints
            log.info("serving pack switched to %s", self.pack_origin)

    def _encode(self, text: str) -> tuple[np.ndarray, float]:
        self.refresh()
        start = time.perf_counter()
        vec = embed_query(self.embedder, [text])
        return vec, (time.perf_counter() - start) * 1000

    def _ready(self, name: str) -> None:
        if name in self.pack.models:
            self.pack.scorer(name)
        else:
            self._torch_service()._ready(name)

    def _scores(self, name: str, vec: np.ndarray, text: str) -> np.ndarray:
        if name in self.pack.models:
            return self.pack.scorer(name).scores(vec, [text])
        return self._torch_service()._scores(name, vec, text)

    def _contributions(self, name: str, vec: np.ndarray) -> np.ndarray | None:
        if name in self.pack.models:
            return self.pack.scorer(name).contributions(vec)
        return self._torch_service()._contributions(name, vec)

    def _source(self, name: str) -> str:
        if name in self.pack.models:
            return f"{self.pack.sources.get(name) or 'fitted'}; served from the {self.pack_origin}"
        return f"{self._torch_service()._source(name)} (torch: not in the serving pack)"

    def _train_queries(self):
        return self.pack.train_queries


def make_fast_service(backend: str = "auto", api_key: str | None = None) -> FastVideoService | None:
    """The fast service when the local embedder serves and has a torch-free encoder; else ``None``."""
    from recsys.embed import get_embedder
    from recsys.embed.onnx_query import encoder_for_space
    from recsys.embed.openai_backend import resolve_api_key

    choice = (backend or "auto").strip().lower()
    if choice == "openai" or (choice == "auto" and resolve_api_key(api_key) is not None):
        return None
    space = get_embedder("local").name  # the space the local embedder puts the catalogue in (constructing loads nothing)
    try:
        encoder = encoder_for_space(space)
    except KeyError as error:
        log.info("%s: serving with torch", error)
        return None
    return FastVideoService(space, encoder)


def make_service(backend: str = "auto", api_key: str | None = None, fast: bool = True):
    """The service the Ask page and the CLI use (through :func:`recsys.videos.serving.make_service`).

    With the local embedder (``"local"``, or ``"auto"`` without an OpenAI key) and ``fast``,
    the torch-free :class:`FastVideoService`; when it cannot serve
    (no fast encoder for the local embedder's space, or a damaged file: said in ``serving_note``)
    or for OpenAI, :class:`VideoService`.
    """
    note = None
    if fast:
        try:
            service = make_fast_service(backend, api_key)
        except Exception as error:  # a damaged encoder file, onnxruntime missing...: serve, slower, and say why
            log.warning("torch-free serving is unavailable (%s); serving with torch", error)
            service, note = None, f"Serving with torch (slower): the torch-free path is unavailable: {error}"
        if service is not None:
            return service
    service = VideoService(backend=backend, api_key=api_key)
    service.serving_note = note
    return service


def prepare() -> list[str]:
    """Build what serving reads and git does not hold, once: the ONNX query encoders and the serving pack.

    Run by the install command (``python -m recsys prepare``); each part is skipped when it is
    there and passes its check, so a second run costs a few hashes. Needs torch. Returns one
    line per part, saying what was done.
    """
    from recsys.embed import get_embedder, onnx_build, onnx_use

    start = time.perf_counter()
    built = onnx_build.ensure_built()[1]
    use_graph, use_built = onnx_use.ensure_built()
    done = [f"ONNX query encoders {'built' if built or use_built else 'already built'} in {use_graph.parent} "
            f"({time.perf_counter() - start:.1f} s)"]
    space = get_embedder("local").name
    _, origin = locate_pack(space, build_if_missing=True)
    done.append(f"serving pack of {space}: {origin if origin.startswith('built') else 'already built, ' + origin}")
    return done
