"""Page helpers of the sequential domain (Ablations/Results pages, explorer sources). UI-free."""

from __future__ import annotations

import numpy as np
import pandas as pd

from recsys.viz.sources import Source, SourceData, SourceUnavailable, finished_runs, run_registry, unavailable


def load_sequential_run(run_id: str) -> SourceData:
    """Item-tower vectors of a finished sequential run (CL-EPIDTN, SASRec, ...), rebuilt from its checkpoint."""
    import torch

    needs = "`recsys.pipelines.sequential.load_checkpoint(path, dataset, split)`"
    module = _import("recsys.pipelines.sequential", needs)
    function = getattr(module, "item_embeddings", None)
    if callable(function):
        vectors, meta = _unpack(function(run_id), needs)
        meta = meta if meta is not None else pd.DataFrame(index=range(len(vectors)))
        return SourceData(vectors, meta, note=f"item tower of run {run_id}")
    for name in ("load_dataset", "make_split", "load_checkpoint"):
        if not callable(getattr(module, name, None)):
            raise SourceUnavailable(f"`recsys.pipelines.sequential` has no `{name}`; this source needs {needs}.")
    run = run_registry().get(run_id)
    options = {**getattr(module, "RECIPE_OPTIONS", {}), **run.config.get("options", {})}
    dataset = module.load_dataset(options.get("dataset", "ml-100k"), options.get("anime_max_users"))
    split = module.make_split(dataset, options.get("split", "loo"))
    model = module.load_checkpoint(run.checkpoint_path, dataset, split)
    if not hasattr(model, "item_tower"):
        raise SourceUnavailable(f"{run.recipe} has no item tower to show")
    with torch.no_grad():
        vectors = model.item_tower().detach().cpu().numpy()[1:]  # row 0 is padding
    names = list(getattr(dataset, "item_names", []))[1:]
    meta = pd.DataFrame({"label": names if len(names) == len(vectors) else [f"item {i + 1}" for i in range(len(vectors))],
                         "item_id": np.arange(1, len(vectors) + 1)})
    table = getattr(dataset, "item_features", None)
    if table is not None and getattr(table, "values", None) is not None:
        values = np.asarray(table.values)[1:]
        for f, field_name in enumerate(table.names):
            if len(values) == len(vectors):
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
