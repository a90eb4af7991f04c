"""Comparing runs for people: legend labels that say what differs, and "is this run better?".

Why a module of its own: the Training studio needs both and pages stay UI only. Run ids
(``20261126-013759-toy-linear-c2f2a7``) say nothing about what was tried, so a
comparison chart labels each run with its model and only the settings that differ
between the runs shown. Serving a run that scores worse than the one already served
used to replace it without a word; :func:`serving_warning` gives the sentence to show.
"""

from __future__ import annotations

import math
from typing import Any

from recsys.train.runs import Run, RunDamaged, RunRegistry

#: settings that never make a difference worth a legend entry
_IGNORED = {"device", "monitor", "monitor_mode"}


def run_settings(run: Run) -> dict[str, Any]:
    """The run's training settings and options in one flat dict (``{}`` for a damaged run)."""
    try:
        config = run.config
    except RunDamaged:
        return {}
    return {**config.get("train", {}), **config.get("options", {})}


def _fmt(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def legend_labels(runs: list[Run]) -> dict[str, str]:
    """``run id -> "model · lr=0.01, epochs=5"`` naming only the settings that differ among ``runs``.

    Runs whose labels would still coincide get the last six characters of their id.
    """
    settings = {run.id: run_settings(run) for run in runs}
    keys = sorted({k for s in settings.values() for k in s} - _IGNORED)
    differing = [k for k in keys if len({repr(s.get(k)) for s in settings.values()}) > 1]
    labels = {}
    for run in runs:
        shown = ", ".join(f"{k}={_fmt(settings[run.id].get(k))}" for k in differing)
        labels[run.id] = f"{run.recipe or 'damaged run'}" + (f" · {shown}" if shown else "")
    counts: dict[str, int] = {}
    for label in labels.values():
        counts[label] = counts.get(label, 0) + 1
    return {rid: (f"{label} ({rid[-6:]})" if counts[label] > 1 else label) for rid, label in labels.items()}


def monitored_score(run: Run) -> tuple[str, float, str] | None:
    """``(metric, value, mode)``: the best value of the run's monitored metric (what its checkpoint holds).

    ``None`` when the run monitors nothing or recorded no finite value of it.
    """
    train = run_settings(run)
    metric, mode = train.get("monitor"), train.get("monitor_mode", "max")
    if not metric or mode not in ("max", "min"):
        return None
    values = [r[metric] for r in run.metrics() if isinstance(r.get(metric), (int, float))
              and math.isfinite(r[metric])]
    if not values:
        return None
    return metric, (max(values) if mode == "max" else min(values)), mode


def serving_warning(registry: RunRegistry, run: Run) -> str | None:
    """A sentence with both scores when ``run`` scores worse than the run served for its model, else ``None``."""
    active = registry.active_run(run.recipe) if run.recipe else None
    if active is None or active.id == run.id:
        return None
    mine, theirs = monitored_score(run), monitored_score(active)
    if mine is None or theirs is None or mine[0] != theirs[0] or mine[2] != theirs[2]:
        return None
    metric, value, mode = mine
    worse = value < theirs[1] if mode == "max" else value > theirs[1]
    if not worse:
        return None
    better = "higher" if mode == "max" else "lower"
    return (f"This run scores {metric} = {value:.4g}, worse than the served run {active.id} "
            f"({metric} = {theirs[1]:.4g}; {better} is better). Serving it replaces the better model.")
