"""Save and load any registered model as an artifact (safetensors + JSON, never pickle).

A checkpoint stores the model's :meth:`~recsys.models.base.Recommender.state` arrays and,
as JSON, the registry name, the config dataclass, and caller metadata such as a
fingerprint of the data it was trained on. :func:`load_model` rebuilds the model through
the registry (``spec.build(data, config)``), so a checkpoint can only ever become one of
the project's own classes, and verifies what the caller expects (the model's name, the
data fingerprint): a file from another model or other data is refused with a message
naming it.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from recsys import registry
from recsys.artifacts import Artifact, ArtifactError, read_artifact, write_artifact

FORMAT = "recsys.checkpoint/1"


def config_dict(config: Any) -> dict[str, Any]:
    """A config dataclass as a JSON-able dict (tuples become lists)."""
    return dataclasses.asdict(config) if dataclasses.is_dataclass(config) else dict(config or {})


def save_model(path: Path, name: str, model: Any, meta: dict[str, Any] | None = None) -> Path:
    """Write ``model`` (registered as ``name``) with ``meta`` to ``path`` (a ``.safetensors`` file)."""
    spec = registry.get(name)
    document = {"model": spec.name, "config": config_dict(model.config), **(meta or {})}
    return write_artifact(Path(path), model.state(), document, FORMAT)


def read_checkpoint(path: Path, expect: dict[str, Any] | None = None) -> Artifact:
    """The verified artifact of a checkpoint (arrays + metadata), without building the model."""
    return read_artifact(Path(path), FORMAT, expect)


def load_model(path: Path, data: Any, expect: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
    """Rebuild the model saved at ``path`` for ``data``; returns ``(model, metadata)``.

    ``expect`` lists metadata that must match (``{"model": "dcdt", "data_fingerprint": ...}``).
    Raises :class:`~recsys.artifacts.ArtifactError` naming the file for a damaged, foreign
    or mismatching checkpoint, including weights whose shapes do not fit ``data``.
    """
    artifact = read_checkpoint(path, expect)
    meta = artifact.meta
    try:
        spec = registry.get(str(meta.get("model")))
    except KeyError as error:
        raise ArtifactError(f"{path} holds an unknown model {meta.get('model')!r}") from error
    try:
        model = restore_model(spec, data, meta.get("config") or {}, artifact.arrays)
    except (TypeError, ValueError, KeyError, RuntimeError) as error:
        raise ArtifactError(f"{path} does not fit this {spec.name} model and data: {error}") from error
    return model, meta


def restore_model(spec: registry.ModelSpec, data: Any, config: dict[str, Any], arrays: dict[str, Any]):
    """A model of ``spec`` for ``data`` from a stored config dict and its ``state()`` arrays, in eval mode.

    Shared by single-model checkpoints and multi-model bundles; raises whatever the config or
    ``load_state`` raise when the stored values do not fit (callers name the file).
    """
    model = spec.build(data, spec.make_config(**_restore_tuples(spec, config)))
    model.load_state(arrays)
    if hasattr(model, "eval"):
        model.eval()
    return model


def _restore_tuples(spec: registry.ModelSpec, values: dict[str, Any]) -> dict[str, Any]:
    """JSON turns tuples into lists; give tuple-typed config fields their tuples back."""
    fields = {f.name: f for f in dataclasses.fields(spec.config_class())}
    out = {}
    for key, value in values.items():
        default = fields[key].default if key in fields else None
        out[key] = tuple(value) if isinstance(value, list) and isinstance(default, tuple) else value
    return out
