"""Training side of the video domain: hard-negative mining, the training run, checkpoints, recipes.

* :class:`HardNegativeMiner`: the training callback that re-mines every pair's negatives
  at the start of each epoch with the current model (DCDT's dynamic hard negatives;
  the sampling rule itself is :func:`recsys.models.dcdt.mine_hard_negatives`). It lives
  here, not in the model file, so models never import the training loop.
* :func:`train_model`: DCDT or the single tower on (training query, relevant video)
  pairs through :func:`recsys.train.loop.fit`, validation MRR@10 picking the best epoch.
* :func:`save_checkpoint` / :func:`load_checkpoint`: one safetensors artifact per model
  through :mod:`recsys.checkpoint` (no pickle), with the embedder, its dimension, the
  catalogue fingerprint (``data_fingerprint`` = :func:`recsys.videos.prep.catalog_hash`),
  the training config and the result. :class:`CheckpointMismatch` keeps the serving
  rules: another embedder is refused, another catalogue version allowed unless strict.
* :func:`recipe`: the studio / ``python -m recsys train`` recipe of each neural video model.
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import torch

from recsys import registry
from recsys.artifacts import ArtifactError, read_meta
from recsys.checkpoint import FORMAT, load_model, save_model
from recsys.eval import videos as video_eval
from recsys.models.base import NeuralRecommender
from recsys.models.dcdt import mine_hard_negatives
from recsys.paths import ASSETS_DIR, PROJECT_ROOT, cache_dir
from recsys.train.loop import Callback, TrainConfig, TrainResult, batch_indices, cpu_threads, fit, seed_everything
from recsys.train.recipes import Recipe, RecipeContext
from recsys.videos.prep import VideoItems, full_scores, relevance_mask

log = logging.getLogger(__name__)

#: the quick recipe (about a minute on a 2-core CPU) and the paper's settings
QUICK_TRAIN = TrainConfig(epochs=60, lr=1e-3, batch_size=16, weight_decay=0.01, scheduler="cosine",
                          seed=0, device="auto", patience=10, monitor="mrr@10")
FULL_TRAIN = dataclasses.replace(QUICK_TRAIN, epochs=200, patience=15)

CHECKPOINT_DIR = ASSETS_DIR / "checkpoints"
SHIPPED_CHECKPOINTS = {"dcdt": CHECKPOINT_DIR / "dcdt-minilm-use.safetensors",
                       "single-tower": CHECKPOINT_DIR / "single-tower-minilm-use.safetensors"}
#: the embedder the shipped checkpoints were trained on: the local default, MiniLM + USE multilingual v3
#: (``recsys.embed.multilingual_embedder``); serving must encode queries with both and concatenate
SHIPPED_EMBEDDER = "minilm-l6-v2+use-multilingual-v3"


class HardNegativeMiner(Callback):
    """Re-mines each training pair's negatives at the start of every epoch (``on_epoch_begin``).

    ``queries [Q, E]`` are the training queries, ``pair_query [P]`` the query index of each
    (query, positive) training pair, ``relevant [Q, n]`` the relevance mask. After each
    call, :attr:`negatives` ``[P, n_negatives]`` holds the epoch's negatives; the caller's
    batch function reads it. With ``dynamic=False`` negatives are uniform over all
    non-relevant videos (the ablation without hard negatives).
    """

    def __init__(self, queries: torch.Tensor, pair_query: torch.Tensor, relevant: torch.Tensor,
                 fraction: float = 0.3, n_negatives: int = 4, dynamic: bool = True, seed: int = 0):
        self.queries = queries
        self.pair_query = pair_query
        self.relevant = relevant
        self.fraction = fraction
        self.n_negatives = n_negatives
        self.dynamic = dynamic
        self.generator = torch.Generator().manual_seed(seed)
        self.negatives: torch.Tensor | None = None
        self.epochs_mined = 0

    def mine(self, model: NeuralRecommender) -> torch.Tensor:
        device = model.device
        relevant = self.relevant[self.pair_query].to(device)
        if self.dynamic:
            was_training = model.training
            model.eval()
            with torch.no_grad():
                scores = model.full_sort_predict({"query": self.queries.to(device)})[self.pair_query.to(device)]
            model.train(was_training)
            fraction = self.fraction
        else:
            scores, fraction = torch.zeros(relevant.shape, device=device), 1.0
        self.negatives = mine_hard_negatives(scores, relevant, fraction, self.n_negatives, self.generator).cpu()
        self.epochs_mined += 1
        return self.negatives

    def on_epoch_begin(self, state, model):
        self.mine(model)


def language_pair_weights(is_english: torch.Tensor, english_share: float) -> torch.Tensor:
    """Probability of each training pair in a language-balanced draw: ``[P]``, summing to 1.

    ``is_english [P]`` (bool) marks the pairs whose query is English. An English pair gets
    ``english_share / n_english``, any other ``(1 - english_share) / n_other``: every pair
    as likely as the others of its group, the two groups in the ratio asked for whatever
    their sizes. With only one group present, every pair gets ``1 / P``.
    """
    if not 0 < english_share < 1:
        raise ValueError(f"english_share must be in (0, 1), got {english_share}")
    is_english = torch.as_tensor(is_english, dtype=torch.bool)
    n_english = int(is_english.sum())
    n_other = len(is_english) - n_english
    if n_english == 0 or n_other == 0:
        return torch.full((len(is_english),), 1.0 / len(is_english), dtype=torch.float64)
    return torch.where(is_english, english_share / n_english, (1 - english_share) / n_other).double()


def language_balanced_draw(is_english: torch.Tensor, english_share: float,
                           generator: torch.Generator | None = None) -> torch.Tensor:
    """One epoch's training pairs: ``P`` indices drawn with replacement by :func:`language_pair_weights`.

    Why: 2,380 translated training queries make the non-English pairs five times the English
    ones, and a model early-stopped on that mix follows the majority
    (``docs/results/videos/README.md``); the draw keeps English at ``english_share`` of every epoch.
    """
    weights = language_pair_weights(is_english, english_share)
    return torch.multinomial(weights, len(weights), replacement=True, generator=generator)


def build_model(name: str, items: VideoItems, options: dict[str, Any] | None = None):
    """A fresh model of registry entry ``name`` over ``items``; ``options`` override config fields."""
    spec = registry.get(name, domain="videos")
    return spec.build(items, **(options or {}))


def train_model(name: str, items: VideoItems, train: TrainConfig, options: dict[str, Any] | None = None,
                callbacks: Sequence[Callback] = (), train_split: str = "train", valid_split: str = "validation"):
    """Train DCDT or the single tower on (training query, relevant video) pairs.

    Negatives are re-mined each epoch by :class:`HardNegativeMiner`; validation MRR@10
    selects the best epoch and drives early stopping. Each epoch takes every pair once,
    shuffled, unless the model's config sets ``english_share`` (DCDT, 0.7 by default) and
    the training queries are both English and not: then the epoch's pairs come from
    :func:`language_balanced_draw`. Returns ``(model, TrainResult)``
    with the model in eval mode on its training device.
    """
    seed_everything(train.seed)  # the weights' initialisation depends on the seed too
    model = build_model(name, items, options)
    q_train, rel_train, _, train_rows = items.split(train_split)
    q_valid, rel_valid, _, _ = items.split(valid_split)
    pair_query = torch.tensor([i for i, rel in enumerate(rel_train) for _ in rel], dtype=torch.long)
    pair_item = torch.tensor([v for rel in rel_train for v in rel], dtype=torch.long)
    queries = torch.from_numpy(q_train)
    cfg = model.config
    miner = HardNegativeMiner(queries, pair_query, relevance_mask(rel_train, items.n_videos),
                              fraction=cfg.hard_fraction, n_negatives=cfg.n_negatives,
                              dynamic=cfg.dynamic_negatives, seed=train.seed)

    # DCDT's language-balanced draw; None, or training queries of one group only: every pair once per epoch
    english_share = getattr(cfg, "english_share", None)
    if english_share is not None:
        is_english = torch.tensor([items.query_language[train_rows[i]] == "English" for i in pair_query.tolist()])
        if not 0 < int(is_english.sum()) < len(is_english):
            english_share = None

    def batches(epoch: int) -> Iterable[dict[str, torch.Tensor]]:
        generator = torch.Generator().manual_seed(train.seed * 100_003 + epoch)
        if english_share is None:
            chunks = batch_indices(len(pair_query), train.batch_size, generator)
        else:  # independent draws come in random order already: no shuffle needed
            chunks = language_balanced_draw(is_english, english_share, generator).split(train.batch_size)
        for idx in chunks:
            yield {"query": queries[pair_query[idx]], "item": pair_item[idx], "neg": miner.negatives[idx]}

    def evaluate(model) -> dict[str, float]:
        return video_eval.evaluate_scores(full_scores(model, q_valid), rel_valid)

    with cpu_threads(1 if str(train.device) in ("cpu", "auto") and not torch.cuda.is_available() else None):
        result = fit(model, batches, train, evaluate=evaluate, callbacks=[miner, *callbacks])
    return model, result


# ---------------------------------------------------------------- checkpoints
class CheckpointMismatch(ArtifactError):
    """A readable checkpoint made for another model, embedder or (when strict) catalogue."""


def save_checkpoint(path: Path, name: str, model, items: VideoItems, train: TrainConfig | None = None,
                    result: TrainResult | None = None, metrics: dict | None = None) -> Path:
    """Write ``model`` with what serving checks (embedder, dimension, catalogue fingerprint) and how it was trained."""
    meta = {
        "embedder": items.embedder_name,
        "embed_dim": items.dim,
        "data_fingerprint": items.catalog_hash,
        "n_videos": items.n_videos,
        "train": dataclasses.asdict(train) if train is not None else None,
        "result": None if result is None else {
            "best_epoch": result.best_epoch, "best_value": result.best_value, "epochs_run": len(result.history),
            "stop_reason": result.stop_reason, "seconds": result.seconds, "device": result.device},
        "metrics": metrics or {},
        "created": time.time(),
    }
    return save_model(Path(path), name, model, meta)


def load_checkpoint(path: Path, items: VideoItems, expected_model: str | None = None,
                    strict_catalog: bool = False) -> tuple[Any, dict[str, Any]]:
    """Rebuild the model of a checkpoint for ``items``: ``(model, metadata)``.

    Raises :class:`CheckpointMismatch` for a readable checkpoint that does not fit:
    another model than ``expected_model``, another embedder or dimension (the weights
    map one embedding space), or another catalogue version when ``strict_catalog``.
    Without ``strict_catalog`` another catalogue is allowed: the towers read only
    embeddings, never video ids, so weights learned on an earlier catalogue score new
    or edited videos too (the content model's answer to cold start); the metadata's
    ``catalog_matches`` says which case it is. A damaged, truncated or foreign file
    (pickle, random bytes, not a recsys checkpoint) raises
    :class:`~recsys.artifacts.ArtifactError` naming it; nothing in it is executed.
    """
    path = Path(path)
    meta = read_meta(path, FORMAT)  # header only: refuse mismatches before reading the arrays
    if expected_model and meta.get("model") != expected_model:
        raise CheckpointMismatch(f"{path} holds a {meta.get('model')} model, not {expected_model}")
    if meta.get("embedder") != items.embedder_name or meta.get("embed_dim") != items.dim:
        raise CheckpointMismatch(
            f"{path} was trained on {meta.get('embedder')} ({meta.get('embed_dim')}-d) embeddings, "
            f"not {items.embedder_name} ({items.dim}-d)")
    catalog_matches = meta.get("data_fingerprint") == items.catalog_hash
    if not catalog_matches:
        if strict_catalog:
            raise CheckpointMismatch(f"{path} was trained on another version of the video catalogue")
        log.info("%s was trained on another version of the catalogue (%s); its weights still apply",
                 path, meta.get("data_fingerprint"))
    model, meta = load_model(path, items, expect={"model": meta.get("model")})
    return model, {**meta, "catalog_matches": catalog_matches}


def cached_checkpoint_path(name: str, items: VideoItems) -> Path:
    """Where a checkpoint trained on demand is cached (``.safetensors``; old ``.pt`` files are never read)."""
    from recsys.embed.cache import safe_model_dirname

    return cache_dir("videos", "checkpoints") / f"{name}-{safe_model_dirname(items.embedder_name)}-{items.catalog_hash}.safetensors"


# ---------------------------------------------------------------- recipes (CLI `train`, Training studio)
_OPTIONS = {"backend": "local", "export": False}


def _run_recipe(name: str) -> Callable[[RecipeContext], dict[str, Any]]:
    def run(ctx: RecipeContext) -> dict[str, Any]:
        from recsys.embed import get_embedder
        from recsys.videos.prep import VideoData, build_items_retrying

        options = dict(ctx.options)
        items = build_items_retrying(VideoData.load(), get_embedder(options.get("backend", "local")), progress=True)
        model, result = train_model(name, items, ctx.train, options, ctx.callbacks)
        q_test, rel_test, _, _ = items.split("test")
        metrics = {f"test_{k}": v for k, v in video_eval.evaluate_scores(full_scores(model, q_test), rel_test).items()}
        metrics[f"valid_{ctx.train.monitor}"] = result.best_value
        summary = {"model": name, "embedder": items.embedder_name, "best_epoch": result.best_epoch,
                   "epochs_run": len(result.history), "stop_reason": result.stop_reason,
                   "seconds": round(result.seconds, 2), "device": result.device, **metrics}
        if ctx.checkpoint_path is not None:
            save_checkpoint(ctx.checkpoint_path, name, model, items, ctx.train, result, metrics)
            if options.get("export"):
                if items.embedder_name != SHIPPED_EMBEDDER:
                    raise ValueError(f"export=true ships a checkpoint for {SHIPPED_EMBEDDER} only, "
                                     f"this run used {items.embedder_name}")
                target = SHIPPED_CHECKPOINTS[name]
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(ctx.checkpoint_path, target)
                summary["exported"] = str(target.relative_to(PROJECT_ROOT))
        return summary

    return run


def recipe(spec: registry.ModelSpec) -> Recipe:
    """The training recipe of a neural video model; its options are the model config's fields."""
    config = dataclasses.asdict(spec.make_config())
    config.pop("embed_dim", None)  # always the embedder's
    return Recipe(name=spec.name, domain="videos", summary=f"{spec.display_name}: {spec.summary}",
                  defaults=QUICK_TRAIN, full=FULL_TRAIN, run=_run_recipe(spec.name), options={**_OPTIONS, **config})

