"""The catalogue of trainable models, so that one CLI verb and one page can train any of them.

A :class:`Recipe` knows how to build a model's data and model, train it through
:func:`recsys.train.loop.fit`, and save a checkpoint. Domain pipelines register
their recipes at import (``@register``); :func:`all_recipes` imports the pipelines
so the catalogue is complete wherever it is asked for.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from recsys.train.loop import Callback, TrainConfig

#: modules that register recipes when imported
PIPELINE_MODULES = ("recsys.pipelines.videos", "recsys.pipelines.anime", "recsys.pipelines.sequential")


@dataclass
class RecipeContext:
    """What a recipe's ``run`` receives: settings, callbacks, and where to save."""

    train: TrainConfig
    options: dict[str, Any]
    callbacks: Sequence[Callback]
    checkpoint_path: Path | None = None


@dataclass
class Recipe:
    name: str  # CLI and registry name, e.g. "dcdt"
    domain: str  # "videos" | "anime" | "ml-100k" ...
    summary: str  # one line for the studio's picker
    defaults: TrainConfig  # quick defaults: about a minute on a 2-core CPU
    run: Callable[[RecipeContext], dict[str, Any]]  # trains, saves the checkpoint, returns final metrics
    options: dict[str, Any] = field(default_factory=dict)  # recipe-specific knobs and their defaults
    full: TrainConfig | None = None  # the paper's settings, when they differ from the quick defaults

    def config(self, **overrides: Any) -> TrainConfig:
        """The default config with ``overrides`` applied (``None`` values are ignored)."""
        return dataclasses.replace(self.defaults, **{k: v for k, v in overrides.items() if v is not None})


_RECIPES: dict[str, Recipe] = {}


def register(recipe: Recipe) -> Recipe:
    _RECIPES[recipe.name] = recipe
    return recipe


def recipe_modules() -> tuple[str, ...]:
    """The pipeline modules plus any in ``$RECSYS_EXTRA_RECIPES`` (comma-separated module names).

    The extra modules let tests (and experiments) register recipes that are not part
    of the package, and still have them found by the detached run worker process.
    """
    extra = tuple(m.strip() for m in os.environ.get("RECSYS_EXTRA_RECIPES", "").split(",") if m.strip())
    return PIPELINE_MODULES + extra


def all_recipes() -> dict[str, Recipe]:
    for module in recipe_modules():
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as error:  # a pipeline not written yet must not hide the others
            if error.name != module:
                raise
    return dict(sorted(_RECIPES.items()))


def get_recipe(name: str) -> Recipe:
    recipes = all_recipes()
    if name not in recipes:
        raise KeyError(f"unknown model {name!r}; trainable models: {', '.join(recipes) or 'none'}")
    return recipes[name]
