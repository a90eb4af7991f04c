"""The training catalogue, derived from the model registry: one recipe per neural model.

A :class:`Recipe` knows how to build a model's data and model, train it through
:func:`recsys.train.loop.fit`, and save a checkpoint. Recipes are not declared by hand:
:func:`all_recipes` asks each neural entry of :data:`recsys.registry.MODELS` for its
domain's ``training.recipe(spec)``. Tests and experiments may add recipes from modules
named in ``$RECSYS_EXTRA_RECIPES`` (each defines ``recipes() -> list[Recipe]``), which the
detached run worker finds too.
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


def extra_recipe_modules() -> tuple[str, ...]:
    """Modules named in ``$RECSYS_EXTRA_RECIPES`` (comma-separated)."""
    return tuple(m.strip() for m in os.environ.get("RECSYS_EXTRA_RECIPES", "").split(",") if m.strip())


def all_recipes() -> dict[str, Recipe]:
    """Every trainable model's recipe, by name: the registry's neural entries plus any extras."""
    from recsys import registry

    recipes = {}
    for spec in registry.MODELS:
        if spec.kind == "neural":
            recipes[spec.name] = registry.domain_module(spec.domain, "training").recipe(spec)
    for module in extra_recipe_modules():
        for recipe in importlib.import_module(module).recipes():
            recipes[recipe.name] = recipe
    return dict(sorted(recipes.items()))


def get_recipe(name: str) -> Recipe:
    recipes = all_recipes()
    if name not in recipes:
        raise KeyError(f"unknown model {name!r}; trainable models: {', '.join(recipes) or 'none'}")
    return recipes[name]
