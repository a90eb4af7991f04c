"""Torch-free query encoders, by name: ``query_encoder("minilm-int8-onnx")``.

Why a registry of its own: serving a query must not import torch (issue 11), while the
catalogue side is embedded once, with whatever encoder, when the serving pack is built.
Any encoder whose query forward runs on numpy or ONNX Runtime plugs in here by name;
the serving pack records which embedding *space* its catalogue is in, and
:func:`encoder_for_space` picks the fast encoder of that space.

An encoder is any object with ``name``, ``space`` (the embedder name of the vectors it
approximates or reproduces), ``dim``, ``encode(texts) -> float32 [n, dim]`` with unit
rows, and ``describe()``. Names are resolved as:

* a registered name (:data:`QUERY_ENCODERS`), or ``"package.module:Class"``;
* ``"a+b"``: the concatenation of encoders ``a`` and ``b`` (:class:`ConcatQueryEncoder`),
  in the space ``"<space a>+<space b>"``.

Instances are process-wide singletons (a Streamlit server loads each once).
"""

from __future__ import annotations

import importlib
import logging
import os
import threading

import numpy as np

from recsys.embed.combined import join_unit_rows

__all__ = ["ConcatQueryEncoder", "QUERY_ENCODERS", "SPACE_DEFAULTS", "available", "encoder_for_space", "query_encoder",
           "register", "space_parts"]

log = logging.getLogger(__name__)

#: name -> "module:Class" (constructed without arguments)
QUERY_ENCODERS: dict[str, str] = {
    "minilm-int8-onnx": "recsys.embed.onnx_minilm:OnnxMiniLMInt8",  # layers 2-6 int8: every MRR@10 within 0.005
    "minilm-onnx": "recsys.embed.onnx_minilm:OnnxMiniLM",  # fp32 compute, same validation MRR as torch
    "minilm-numpy": "recsys.embed.numpy_bert:NumpyMiniLM",  # fp32, equal to the torch encoder to ~1e-7
    "use-onnx": "recsys.embed.onnx_use:OnnxUse",  # fp32, the numpy port's vectors (to 1e-6) in 0.54 of its time
    # USE multilingual v3 in numpy (recsys.embed.usem), its cache off
    "use-multilingual-numpy": "recsys.embed.onnx_query:uncached_use",
}
#: embedding space (the embedder name a catalogue was embedded with) -> the fast encoders that serve it,
#: fastest first: the first one :func:`available` is used (the ONNX graphs exist once
#: ``python -m recsys prepare`` has built them; until then MiniLM and USE run in numpy, the same vectors, slower).
#: ``$RECSYS_QUERY_ENCODER`` (a name as for :func:`query_encoder`) overrides it for every space.
SPACE_DEFAULTS: dict[str, tuple[str, ...]] = {"minilm-l6-v2": ("minilm-int8-onnx", "minilm-onnx", "minilm-numpy"),
                                              "use-multilingual-v3": ("use-onnx", "use-multilingual-numpy")}

_INSTANCES: dict[str, object] = {}
_LOCK = threading.RLock()  # re-entrant: a "+" name builds its parts through query_encoder


def register(name: str, target: str, space: str | None = None) -> None:
    """Add encoder ``name`` (``"module:Class"``); with ``space``, make it that space's first choice."""
    QUERY_ENCODERS[name] = target
    if space:
        SPACE_DEFAULTS[space] = (name, *SPACE_DEFAULTS.get(space, ()))


def available(name: str) -> bool:
    """Whether encoder ``name`` can load: its class's ``available()`` when it has one (files built), else yes."""
    module, _, attribute = QUERY_ENCODERS.get(name, name).partition(":")
    check = getattr(getattr(importlib.import_module(module), attribute, None), "available", None) if attribute else None
    return bool(check()) if callable(check) else True


class ConcatQueryEncoder:
    """Several encoders side by side: ``[e_1(x); ...; e_n(x)] / sqrt(n)``, a unit row again.

    Each part's row is a unit vector, so the concatenation has norm ``sqrt(n)``; dividing
    keeps dot products cosines (the mean of the parts' cosines). The catalogue side must be
    embedded the same way, by the embedder named :attr:`space`.
    """

    def __init__(self, parts):
        self.parts = list(parts)
        self.name = "+".join(p.name for p in self.parts)
        self.space = "+".join(getattr(p, "space", p.name) for p in self.parts)
        self.dim = sum(int(p.dim) for p in self.parts)

    def encode(self, texts, progress=False) -> np.ndarray:
        return join_unit_rows([p.encode(texts) for p in self.parts])

    def describe(self) -> str:
        return " + ".join(p.describe() if hasattr(p, "describe") else p.name for p in self.parts)


def uncached_use():
    """USE multilingual v3 in numpy (:class:`recsys.embed.usem.UseEmbedder`) without its disk cache.

    Why no cache: a query is encoded in about a millisecond, less than a cache look-up and write
    costs, and ``bench videos`` times queries with caches off.
    """
    from recsys.embed.usem import UseEmbedder

    encoder = UseEmbedder(cache=False)
    encoder.space = encoder.name
    return encoder


def _build(name: str):
    if "+" in name:
        return ConcatQueryEncoder(query_encoder(part.strip()) for part in name.split("+"))
    target = QUERY_ENCODERS.get(name, name)
    module, _, attribute = target.partition(":")
    if not attribute:
        raise ValueError(f"unknown query encoder {name!r}; choose one of {', '.join(QUERY_ENCODERS)} "
                         "or give 'module:Class'")
    return getattr(importlib.import_module(module), attribute)()


def query_encoder(name: str):
    """The process-wide encoder called ``name`` (see the module docstring), loaded on first call."""
    encoder = _INSTANCES.get(name)
    if encoder is None:
        with _LOCK:
            encoder = _INSTANCES.get(name)
            if encoder is None:
                encoder = _INSTANCES[name] = _build(name)
    return encoder


def _first_available(space: str) -> str:
    choices = SPACE_DEFAULTS[space]
    chosen = next((name for name in choices if available(name)), choices[-1])
    if chosen != choices[0]:
        log.warning("serving %s with %s: %s is not built (run `python -m recsys prepare`)", space, chosen, choices[0])
    return chosen


def space_parts(space: str) -> list[str]:
    """The spaces of :data:`SPACE_DEFAULTS` that make up ``space`` (itself, or its ``+`` parts); ``KeyError`` if none."""
    parts = [space] if space in SPACE_DEFAULTS else space.split("+")
    if not all(p in SPACE_DEFAULTS for p in parts):
        raise KeyError(f"no torch-free query encoder for the embedding space {space!r}")
    return parts


def encoder_for_space(space: str) -> str:
    """The name of the fast encoder serving catalogue space ``space`` (a ``+`` space: one per part)."""
    override = os.environ.get("RECSYS_QUERY_ENCODER", "").strip()
    if override:
        return override
    return "+".join(_first_available(p) for p in space_parts(space))
