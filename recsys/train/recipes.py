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
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from recsys.train.loop import Callback, TrainConfig

log = logging.getLogger(__name__)


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


def all_recipes(errors: list[str] | None = None) -> dict[str, Recipe]:
    """Every trainable model's recipe, by name: the registry's neural entries plus any extras.

    One domain whose ``training`` module fails to import (or whose ``recipe`` raises) is
    logged and skipped, its message appended to ``errors`` when given: a half-written
    domain must not hide the others from the studio or stop the run worker.
    """
    from recsys import registry

    recipes: dict[str, Recipe] = {}
    broken: set[str] = set()

    def problem(what: str, error: Exception) -> None:
        message = f"{what}: {type(error).__name__}: {error}"
        log.error("recipes: %s", message)
        if errors is not None:
            errors.append(message)

    for spec in registry.MODELS:
        if spec.kind != "neural" or spec.domain in broken:
            continue
        try:
            module = registry.domain_module(spec.domain, "training")
        except Exception as error:  # noqa: BLE001 - any import failure of one domain
            broken.add(spec.domain)
            problem(f"the {spec.domain} models cannot be trained", error)
            continue
        try:
            recipes[spec.name] = module.recipe(spec)
        except Exception as error:  # noqa: BLE001
            problem(f"no recipe for {spec.name}", error)
    for name in extra_recipe_modules():
        try:
            extra = importlib.import_module(name).recipes()
        except Exception as error:  # noqa: BLE001
            problem(f"extra recipe module {name}", error)
            continue
        for recipe in extra:
            recipes[recipe.name] = recipe
    return dict(sorted(recipes.items()))


def get_recipe(name: str) -> Recipe:
    recipes = all_recipes()
    if name not in recipes:
        raise KeyError(f"unknown model {name!r}; trainable models: {', '.join(recipes) or 'none'}")
    return recipes[name]
