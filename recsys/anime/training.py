"""Anime training: the two neural towers, the fitted methods over them, and the studio's recipes.

:func:`build` fits every anime entry of the registry on one split, in dependency order:
the neural towers first (the paper's MSE two-tower, the implicit two-tower), then the
elbow over the MSE item vectors, then every fitted model (popularity, item-kNN, EASE,
the weighted average and the K-means / GMM retrieval built on the MSE vectors).
Settings reach each model's config through :func:`config_overrides`, one mapping for all.

Determinism: every neural model is built right after ``torch.manual_seed(seed)`` (its
initial weights were drawn from an unseeded generator before, which is why retraining
the bundle with the same seed gave different scores), trained with one torch thread
(``RECSYS_ANIME_THREADS``) and seeded shuffles; clustering uses ``random_state=seed``.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

import numpy as np
import torch

from recsys import registry
from recsys.anime.prep import AnimeData, AnimeSettings, default_settings
from recsys.data.anime import AnimeSplit
from recsys.models.implicit_two_tower import pair_batches
from recsys.models.two_tower import BiasBaseline, rating_batches, rmse
from recsys.retrieval.clusters import elbow_curve
from recsys.train.loop import TrainConfig, cpu_threads, fit

log = logging.getLogger(__name__)

#: the model whose item vectors the paper's retrieval methods (weighted, K-means, GMM) use
VECTOR_SOURCE = "anime-two-tower"


def torch_threads():
    """One torch thread for these tiny models unless ``RECSYS_ANIME_THREADS`` says otherwise.

    Why: the batches are small products, where extra threads cost more than they save,
    and one thread makes seeded CPU training repeat bit for bit.
    """
    return cpu_threads(int(os.environ.get("RECSYS_ANIME_THREADS", "1")))


def config_overrides(settings: AnimeSettings, n_clusters: int | None = None) -> dict[str, Any]:
    """Settings as config keywords; each spec's ``make_config`` takes the ones its config has."""
    return {"factors": settings.factors, "temperature": settings.implicit_temperature,
            "quantile": settings.wr_quantile, "neighbours": settings.knn_neighbours, "l2": settings.ease_l2,
            "max_items": settings.ease_max_items, "n_clusters": n_clusters or settings.cluster_k,
            "seed": settings.seed}


def mse_train_config(settings: AnimeSettings, epochs: int | None = None) -> TrainConfig:
    """The paper's optimiser settings: NAdam, lr 0.01, batch 10,000, no schedule."""
    return TrainConfig(epochs=epochs or settings.mse_epochs, lr=settings.mse_lr, batch_size=settings.mse_batch,
                       optimizer="nadam", scheduler="none", grad_clip=None, seed=settings.seed, device="cpu")


def implicit_train_config(settings: AnimeSettings, epochs: int | None = None) -> TrainConfig:
    return TrainConfig(epochs=epochs or settings.implicit_epochs, lr=settings.implicit_lr,
                       batch_size=settings.implicit_batch, optimizer="adam", scheduler="cosine", grad_clip=5.0,
                       seed=settings.seed, device="cpu")


def new_model(name: str, data: AnimeData, settings: AnimeSettings):
    """A fresh model of registry entry ``name`` with seeded initial weights."""
    torch.manual_seed(settings.seed)
    spec = registry.get(name, "anime")
    return spec.build(data, **config_overrides(settings))


def train_mse(data: AnimeData, settings: AnimeSettings, callbacks=(), config: TrainConfig | None = None):
    """The paper's two-tower on explicit ratings (``-1`` rows left out); returns (model, TrainResult).

    The test RMSE is recorded every epoch (a report, not used to pick the epoch:
    ``monitor`` is unset, so the last epoch's weights are kept, as in the paper).
    """
    split = data.split
    rated, test = split.rated(split.train), split.rated(split.test)
    model = new_model("anime-two-tower", data, settings)
    users_t, items_t = torch.tensor(test["user"].to_numpy()), torch.tensor(test["item"].to_numpy())

    def evaluate(m):
        predicted = m.predict({"user": users_t.to(m.device), "item": items_t.to(m.device)}).cpu().numpy()
        return {"test_rmse": rmse(predicted, test["rating"].to_numpy())}

    config = config or mse_train_config(settings)
    with torch_threads():
        result = fit(model, rating_batches(rated["user"].to_numpy(), rated["item"].to_numpy(),
                                           rated["rating"].to_numpy(), config.batch_size, config.seed),
                     config, evaluate=evaluate, callbacks=callbacks)
    model.cpu()
    return model, result


def train_implicit(data: AnimeData, settings: AnimeSettings, callbacks=(), evaluate=None,
                   config: TrainConfig | None = None):
    """The implicit two-tower on every watched train pair (incl. -1 rows); returns (model, TrainResult)."""
    split = data.split
    model = new_model("anime-two-tower-implicit", data, settings)
    config = config or implicit_train_config(settings)
    with torch_threads():
        result = fit(model, pair_batches(split.train["user"].to_numpy(), split.train["item"].to_numpy(),
                                         config.batch_size, config.seed), config, evaluate=evaluate,
                     callbacks=callbacks)
    model.cpu()
    return model, result


#: how each neural anime entry is trained (its batches differ: ratings vs watched pairs)
TRAINERS = {"anime-two-tower": (train_mse, mse_train_config),
            "anime-two-tower-implicit": (train_implicit, implicit_train_config)}


def fit_bias(split: AnimeSplit) -> BiasBaseline:
    rated = split.rated(split.train)
    return BiasBaseline.fit(rated["user"], rated["item"], rated["rating"], split.n_users, split.n_items)


def build(split: AnimeSplit, settings: AnimeSettings, callbacks=None, progress=None, fingerprint: str = ""):
    """Fit every anime registry entry on ``split``; ``progress(step, total, label)`` reports stages.

    Returns an :class:`~recsys.anime.serving.AnimeRecommender`.
    """
    from recsys.anime.serving import AnimeRecommender

    specs = registry.by_domain("anime")
    neural = [s for s in specs if s.kind == "neural"]
    fitted = [s for s in specs if s.kind == "fitted"]
    stages = [s.display_name for s in neural] + ["elbow"] + [s.display_name for s in fitted]
    seconds: dict[str, float] = {}
    info: dict[str, Any] = {}
    step = iter(range(len(stages)))

    def stage():
        i = next(step)
        if progress:
            progress(i, len(stages), stages[i])
        return time.perf_counter()

    data = AnimeData.from_split(split, fingerprint)
    models = {}
    for spec in neural:
        t = stage()
        trainer, _ = TRAINERS[spec.name]
        models[spec.name], result = trainer(data, settings, callbacks or ())
        seconds[spec.name] = time.perf_counter() - t
        info[f"{spec.name}_history"] = result.history
        info["device"] = result.device
    t = stage()
    vectors = models[VECTOR_SOURCE].item_vectors()
    if settings.elbow_grid:
        elbow = elbow_curve(vectors, settings.elbow_grid, seed=settings.seed)
    else:
        elbow = {"k": [], "inertia": [], "best_k": settings.cluster_k}
    seconds["elbow"] = time.perf_counter() - t
    data = data.with_item_vectors(vectors)
    overrides = config_overrides(settings, elbow["best_k"])
    for spec in fitted:
        t = stage()
        models[spec.name] = spec.build(data, **overrides).fit(data)
        seconds[spec.name] = time.perf_counter() - t
    info |= {"seconds": seconds, "split": split.summary()}
    return AnimeRecommender(settings, data, models, fit_bias(split), elbow, info)


# ---------------------------------------------------------------------------------------------
# recipes: the two towers in the Training studio / `python -m recsys train`
# ---------------------------------------------------------------------------------------------
def _run(spec, context) -> dict[str, Any]:
    from recsys.anime.prep import load_split
    from recsys.checkpoint import save_model
    from recsys.eval.anime import score_rankings, unseen_protocol
    from recsys.retrieval.topk import top_k

    settings = default_settings(quick=True, seed=context.train.seed)
    split, fingerprint = load_split(settings)
    data = AnimeData.from_split(split, fingerprint)
    trainer, _ = TRAINERS[spec.name]
    if spec.name == VECTOR_SOURCE:
        model, result = trainer(data, settings, context.callbacks, config=context.train)
    else:  # the implicit tower reports the unseen-user protocol every epoch
        histories, targets = unseen_protocol(split.unseen, split.n_items, settings.seed)

        def evaluate(model):
            scores = model.full_sort_predict(histories.batch()).detach().cpu().numpy()
            return score_rankings(top_k(scores, 10, histories.watched())[1], targets)

        model, result = trainer(data, settings, context.callbacks, evaluate=evaluate, config=context.train)
    if context.checkpoint_path:
        save_model(context.checkpoint_path, spec.name, model,
                   {"data_fingerprint": fingerprint, "seed": settings.seed, "n_items": split.n_items})
    final = result.history[-1] if result.history else {}
    keys = ("test_rmse",) if spec.name == VECTOR_SOURCE else ("train_loss", "precision@10", "map@10", "ndcg@10")
    return {k: final.get(k) for k in keys} | {"seconds": result.seconds}


def recipe(spec):
    """The studio recipe of a neural anime entry (quick defaults; ``--full`` = the paper's epochs)."""
    from recsys.train.recipes import Recipe

    if spec.name not in TRAINERS:
        raise KeyError(f"no anime trainer for {spec.name!r}; add it to recsys.anime.training.TRAINERS")
    _, train_config = TRAINERS[spec.name]
    return Recipe(name=spec.name, domain="anime", summary=spec.summary,
                  defaults=train_config(default_settings(quick=True)), full=train_config(default_settings(quick=False)),
                  run=lambda context: _run(spec, context))


def rmse_rows(recommender) -> list[dict[str, Any]]:
    """Test RMSE on explicit ratings: the paper's model vs the global mean and user+item biases."""
    split = recommender.split
    rated, test = split.rated(split.train), split.rated(split.test)
    users, items, actual = test["user"].to_numpy(), test["item"].to_numpy(), test["rating"].to_numpy()
    with torch.no_grad():
        model = recommender.models[VECTOR_SOURCE].predict({"user": torch.tensor(users),
                                                           "item": torch.tensor(items)}).numpy()
    seed = recommender.settings.seed
    return [
        {"seed": seed, "predictor": "global mean", "test_rmse": rmse(np.full(len(actual), rated["rating"].mean()), actual)},
        {"seed": seed, "predictor": "user + item bias", "test_rmse": rmse(recommender.bias.predict(users, items), actual)},
        {"seed": seed, "predictor": f"two-tower MSE ({recommender.settings.mse_epochs} epochs)",
         "test_rmse": rmse(model, actual)},
    ]
