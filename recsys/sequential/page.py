"""Page helpers of the sequential domain (Results page, explorer sources). UI-free."""

from __future__ import annotations

import numpy as np
import pandas as pd

from recsys.viz.sources import Source, SourceData, SourceUnavailable, finished_runs, unavailable


def load_sequential_run(run_id: str) -> SourceData:
    """Item-tower vectors of a finished sequential run (CL-EPIDTN, SASRec, ...), rebuilt from its checkpoint.

    The checkpoint is verified before use (:func:`recsys.sequential.serving.load_run`); a
    damaged or foreign one becomes a :class:`SourceUnavailable` naming the file.
    """
    import torch

    from recsys.artifacts import ArtifactError
    from recsys.sequential.serving import load_run
    from recsys.train.runs import RunRegistry

    run = RunRegistry().get(run_id)
    try:
        loaded = load_run(run)
    except ArtifactError as error:
        raise SourceUnavailable(f"run {run_id}: {error}") from error
    model, dataset = loaded.model, loaded.dataset
    if not hasattr(model, "item_tower"):
        raise SourceUnavailable(f"{run.recipe} has no item tower to show")
    with torch.no_grad():
        vectors = model.item_tower().detach().cpu().numpy()[1:]  # row 0 is padding
    names = list(dataset.item_names)[1:]
    meta = pd.DataFrame({"label": names if len(names) == len(vectors) else [f"item {i + 1}" for i in range(len(vectors))],
                         "item_id": np.arange(1, len(vectors) + 1)})
    values = np.asarray(dataset.item_features.values)[1:]
    if len(values) == len(vectors):
        for f, field_name in enumerate(dataset.item_features.names):
            meta[field_name] = values[:, f]
    return SourceData(vectors, meta, note=f"{len(vectors):,} {dataset.name} items, item tower of {run.recipe} "
                                          f"run {run_id}")


def embedding_sources() -> list[Source]:
    from recsys import registry

    sequential = set(registry.names("sequential"))
    seq_runs = finished_runs(lambda recipe: recipe in sequential)
    sources = [Source(f"seq:{run_id}", f"Sequential items: {recipe} ({run_id})",
                      "Item-tower vectors of this finished run.", lambda run_id=run_id: load_sequential_run(run_id))
               for run_id, recipe in seq_runs]
    if not seq_runs:
        sources.append(Source("cl-epidtn-items", "Sequential items: CL-EPIDTN item tower",
                              "Item-tower vectors of a finished sequential run (CL-EPIDTN, SASRec, ...).",
                              unavailable("No finished sequential run yet: train `cl-epidtn` (or another "
                                          "sequential model) in the Training studio, then come back.")))
    return sources
