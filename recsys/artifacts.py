"""The one on-disk format for everything the project saves: checkpoints, bundles, caches.

Nothing read from disk is trusted (a checkpoint in ``runs/`` may have been replaced by
anyone who can write there), so nothing is ever unpickled. An *artifact* is a single
safetensors file:

* the arrays (weights, item vectors, matrices) as safetensors tensors, read with
  ``safetensors.numpy`` (no torch needed for serving, no code execution possible);
* everything else (config, metadata, a fingerprint of the training data) as one JSON
  document stored in the safetensors header under the key ``"recsys"``.

One file per artifact keeps writes atomic (temp file + ``os.replace``): a crash leaves
the old file or the new one, never half of each. :func:`read_artifact` checks the
header, the JSON, the ``format`` tag the caller expects and any ``expect`` fields, and
raises :class:`ArtifactError` naming the file for anything else: a pickle payload,
random bytes, a truncated file, a valid artifact of another kind.

Small helpers for JSON and raw bytes (:func:`atomic_write_bytes`, :func:`atomic_write_json`)
live here too, so every layer writes files the same way.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

#: header key holding the JSON metadata
META_KEY = "recsys"
#: file suffix of every artifact
SUFFIX = ".safetensors"


class ArtifactError(ValueError):
    """An artifact file that is missing, damaged, foreign or of another kind; the message names it."""


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so readers see the old file or the new one, never a mix."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(Path(path), json.dumps(obj, indent=2, default=str).encode())


def read_json(path: Path, what: str = "JSON file") -> Any:
    """Parse a JSON file; :class:`ArtifactError` naming the file if it is missing or not JSON."""
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as error:
        raise ArtifactError(f"{what} {path} is missing") from error
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ArtifactError(f"{what} {path} is damaged (not valid JSON: {error})") from error


def _as_numpy(value: Any) -> np.ndarray:
    """numpy view of an array or a (CPU-copied, detached) torch tensor, without importing torch."""
    if hasattr(value, "detach"):  # a torch tensor
        value = value.detach().cpu()
        if str(value.dtype) == "torch.bfloat16":
            value = value.float()
        value = value.numpy()
    array = np.asarray(value)
    if array.dtype == object:
        raise TypeError("object arrays cannot be stored in an artifact (they would need pickle)")
    return array if array.flags.c_contiguous else np.array(array, order="C")  # (ascontiguousarray makes 0-d 1-d)


@dataclass
class Artifact:
    """What :func:`read_artifact` returns: named arrays and the JSON metadata."""

    path: Path
    arrays: dict[str, np.ndarray]
    meta: dict[str, Any]

    def tensors(self) -> dict[str, Any]:
        """The arrays as torch tensors (for ``load_state_dict``); imports torch only here."""
        import torch

        return {name: torch.from_numpy(np.array(array)) for name, array in self.arrays.items()}


def write_artifact(path: Path, arrays: Mapping[str, Any], meta: Mapping[str, Any], fmt: str) -> Path:
    """Save ``arrays`` (numpy or torch) and JSON-able ``meta`` to one safetensors file, atomically.

    ``fmt`` names the kind of artifact (e.g. ``"recsys.videos.checkpoint/2"``); readers
    refuse any other kind.
    """
    from safetensors.numpy import save

    path = Path(path)
    if path.suffix != SUFFIX:
        raise ValueError(f"artifact paths end in {SUFFIX}: {path}")
    document = {"format": fmt, **meta}
    header = {META_KEY: json.dumps(document, default=_json_default, sort_keys=True)}
    data = save({name: _as_numpy(value) for name, value in arrays.items()}, metadata=header)
    atomic_write_bytes(path, data)
    return path


def _json_default(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON-serialisable")


def read_meta(path: Path, fmt: str | None = None) -> dict[str, Any]:
    """Only the JSON metadata of an artifact (cheap: reads the header, not the arrays)."""
    from safetensors import safe_open

    path = Path(path)
    _check_exists(path)
    try:
        with safe_open(str(path), framework="numpy") as handle:
            header = handle.metadata() or {}
    except Exception as error:  # safetensors raises its own error types for damaged headers
        raise ArtifactError(f"{path} is not a readable artifact (damaged or not safetensors: {error})") from error
    return _parse_meta(path, header, fmt)


def read_artifact(path: Path, fmt: str, expect: Mapping[str, Any] | None = None) -> Artifact:
    """Load and verify an artifact written by :func:`write_artifact`.

    ``fmt`` must equal the stored format tag; each ``expect`` key must equal the stored
    metadata value (e.g. ``{"model": "dcdt", "embed_dim": 384}``). Anything else raises
    :class:`ArtifactError` naming the file and what differs.
    """
    from safetensors.numpy import load

    path = Path(path)
    _check_exists(path)
    data = path.read_bytes()
    try:
        arrays = load(data)  # validates the header and every tensor's byte range
    except Exception as error:  # safetensors raises its own error types
        raise ArtifactError(f"{path} is not a readable artifact (damaged, truncated or not safetensors: {error})") from error
    header_len = int.from_bytes(data[:8], "little")
    header = json.loads(data[8:8 + header_len]).get("__metadata__") or {}
    meta = _parse_meta(path, header, fmt)
    for key, wanted in (expect or {}).items():
        if meta.get(key) != wanted:
            raise ArtifactError(f"{path} holds {key}={meta.get(key)!r}, expected {wanted!r}")
    return Artifact(path=path, arrays=dict(arrays), meta=meta)


def _check_exists(path: Path) -> None:
    if not path.is_file():
        raise ArtifactError(f"artifact {path} is missing")


def _parse_meta(path: Path, header: Mapping[str, str], fmt: str | None) -> dict[str, Any]:
    raw = header.get(META_KEY)
    if raw is None:
        raise ArtifactError(f"{path} is a safetensors file but not a recsys artifact (no '{META_KEY}' metadata)")
    try:
        meta = json.loads(raw)
    except json.JSONDecodeError as error:
        raise ArtifactError(f"{path} has damaged metadata ({error})") from error
    if not isinstance(meta, dict):
        raise ArtifactError(f"{path} has damaged metadata (not a JSON object)")
    if fmt is not None and meta.get("format") != fmt:
        raise ArtifactError(f"{path} is a {meta.get('format')!r} artifact, expected {fmt!r}")
    return meta


def save_arrays(path: Path, **arrays: np.ndarray) -> Path:
    """Cache plain numpy arrays as ``.npz`` (atomic); read back with :func:`load_arrays`."""
    import io

    buffer = io.BytesIO()
    np.savez(buffer, **{name: _as_numpy(value) for name, value in arrays.items()})
    atomic_write_bytes(Path(path), buffer.getvalue())
    return Path(path)


def load_arrays(path: Path) -> dict[str, np.ndarray]:
    """Arrays of an ``.npz`` cache, never unpickling; :class:`ArtifactError` if damaged."""
    path = Path(path)
    _check_exists(path)
    try:
        with np.load(path, allow_pickle=False) as archive:
            return {name: archive[name] for name in archive.files}
    except Exception as error:  # zipfile, ValueError (object arrays), EOF...
        raise ArtifactError(f"cache {path} is damaged or not a plain .npz ({error})") from error
