"""Test-only recipes that train real registry models on tiny seeded data (not part of the package).

Registered through ``RECSYS_EXTRA_RECIPES=tests.ddp_recipe`` so that the ranks torchrun
starts (``python -m recsys.train.worker RUN_ID --rank``) find them too. Each trains through
the one loop and saves a real :mod:`recsys.checkpoint` file, so a 1-process and a
2-process run can be compared end to end:

* ``ddp-mse``: the Two Towers paper's rating model (no dropout, a mean-squared loss over
  rows), so 2 processes at the same global batch follow the 1-process run step for step;
* ``ddp-sequential``: SASRec (or the sequential model named by the ``model`` option)
  through :func:`recsys.sequential.training.train_model` (dropout, full softmax), on
  sequences where the next item is the previous one + 1 with probability 0.6; its
  validation NDCG@10 varies with the seed.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import torch

from recsys import registry
from recsys.anime.prep import AnimeData
from recsys.checkpoint import save_model
from recsys.data.sequential import FeatureTable, SequentialDataset
from recsys.models.two_tower import rating_batches
from recsys.train.loop import TrainConfig, fit
from recsys.train.recipes import Recipe, RecipeContext

N_USERS, N_ITEMS = 48, 20


def rating_data() -> tuple[AnimeData, np.ndarray]:
    """48 users x 20 items, 10 ratings each from a rank-2 taste model; 2 per user held out."""
    rng = np.random.default_rng(0)
    users = np.repeat(np.arange(N_USERS), 10)
    items = np.concatenate([rng.choice(N_ITEMS, 10, replace=False) for _ in range(N_USERS)])
    taste, kind = rng.normal(size=(N_USERS, 2)), rng.normal(size=(N_ITEMS, 2))
    ratings = np.clip(np.rint(5.5 + 2 * (taste[users] * kind[items]).sum(1)), 1, 10).astype(np.float32)
    matrix = sp.csr_matrix((ratings, (users, items)), shape=(N_USERS, N_ITEMS))
    data = AnimeData(N_USERS, N_ITEMS, matrix, item_mean_rating=np.full(N_ITEMS, 5.5), item_votes=np.ones(N_ITEMS),
                     fingerprint="ddp-tiny")
    held_out = np.arange(len(users)) % 10 >= 8
    return data, np.stack([users, items, ratings, held_out]).T


def run_mse(context: RecipeContext) -> dict:
    data, rows = rating_data()
    train, valid = rows[rows[:, 3] == 0], rows[rows[:, 3] == 1]
    torch.manual_seed(context.train.seed)
    model = registry.get("anime-two-tower").build(data, factors=8)
    valid_user, valid_item = torch.tensor(valid[:, 0]).long(), torch.tensor(valid[:, 1]).long()

    def evaluate(m):
        predicted = m.predict({"user": valid_user, "item": valid_item})
        return {"val_mse": float(((predicted - torch.tensor(valid[:, 2]).float()) ** 2).mean())}

    batches = rating_batches(train[:, 0].astype(int), train[:, 1].astype(int), train[:, 2], context.train.batch_size,
                             context.train.seed)
    result = fit(model, batches, context.train, evaluate, context.callbacks)
    if context.checkpoint_path is not None:
        save_model(context.checkpoint_path, "anime-two-tower", model, {"data_fingerprint": data.fingerprint})
    return {"val_mse": result.best_value, "epochs": len(result.history)}


def sequence_data(seed: int = 0) -> SequentialDataset:
    """60 users x 30 items, 14 steps each: next = previous + 1 (mod 30) with probability 0.6, else random."""
    rng = np.random.default_rng(seed)
    sequences = {}
    for user in range(1, 61):
        item, seq = int(rng.integers(1, 31)), []
        for _ in range(14):
            seq.append(item)
            item = item % 30 + 1 if rng.random() < 0.6 else int(rng.integers(1, 31))
        sequences[user] = seq
    return SequentialDataset(
        name="ddp-toy", n_users=60, n_items=30,
        user_features=FeatureTable(["a"], torch.tensor([[0]] + [[1 + u % 3] for u in range(1, 61)]), [4]),
        item_features=FeatureTable(["c"], torch.tensor([[0]] + [[1 + i % 4] for i in range(1, 31)]), [5]),
        sequences=sequences, has_timestamps=True, item_names=["<pad>"] + [f"item {i}" for i in range(1, 31)])


def run_sequential(context: RecipeContext) -> dict:
    from recsys.sequential.prep import make_split
    from recsys.sequential.training import save_checkpoint, train_model

    dataset = sequence_data()
    split = make_split(dataset, "loo")
    trained = train_model(context.options.get("model", "sasrec"), dataset, split, context.train,
                          {"max_seq_len": 10, "hidden_size": 16, "n_layers": 1, "n_heads": 1},
                          callbacks=context.callbacks)
    if context.checkpoint_path is not None:
        save_checkpoint(context.checkpoint_path, trained, dataset, split, {"max_seq_len": 10})
    return {"val_ndcg@10": max(r["ndcg@10"] for r in trained.history), "best_epoch": trained.best_epoch}


MSE = Recipe(name="ddp-mse", domain="test", summary="test-only: the paper's rating two-tower on 48 x 20 ratings",
             defaults=TrainConfig(epochs=6, lr=0.02, batch_size=32, optimizer="adam", device="cpu",
                                  monitor="val_mse", monitor_mode="min"), run=run_mse)
SEQUENTIAL = Recipe(name="ddp-sequential", domain="test", summary="test-only: SASRec on 60 noisy toy sequences",
                    defaults=TrainConfig(epochs=8, lr=5e-3, batch_size=64, device="cpu", monitor="ndcg@10"),
                    run=run_sequential)


def recipes() -> list[Recipe]:
    return [MSE, SEQUENTIAL]
