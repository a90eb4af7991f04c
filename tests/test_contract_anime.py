"""Every anime registry entry honours the one model contract (tests/contract.py) on tiny data."""

from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from recsys import registry
from recsys.anime.prep import AnimeData
from tests.contract import check_contract, fitted_or_stepped, scores

SPECS = registry.by_domain("anime")


@pytest.fixture(scope="module")
def data() -> AnimeData:
    return tiny_data()


def tiny_data() -> AnimeData:
    """8 users x 12 items: user u rated items u, u+1, u+2, u+3 (mod 12) with 1 + (u + i) % 10; item 5 of
    user 0 is watched, not rated (-1). Item vectors are seeded noise: they stand in for the MSE model's."""
    rows, cols, values = [], [], []
    for u in range(8):
        for j in range(4):
            rows.append(u), cols.append((u + j) % 12), values.append(1 + (u + j) % 10)
    rows.append(0), cols.append(5), values.append(-1)
    ratings = sp.csr_matrix((np.asarray(values, np.float32), (rows, cols)), shape=(8, 12))
    rng = np.random.default_rng(0)
    data = AnimeData(8, 12, ratings, item_mean_rating=rng.uniform(5, 9, 12), item_votes=rng.integers(1, 100, 12),
                     fingerprint="tiny")
    return data.with_item_vectors(rng.normal(size=(12, 4)))


@pytest.fixture()
def batch() -> dict:
    return tiny_batch()


def tiny_batch() -> dict:
    # training keys (user, item, rating) double as the scoring batch: users 0..3, one of their items each
    return {"user": torch.tensor([0, 1, 2, 3]), "item": torch.tensor([1, 2, 3, 4]),
            "rating": torch.tensor([2.0, 4.0, 6.0, 8.0])}


def test_every_anime_method_is_registered():
    assert {s.aliases[0] for s in SPECS} == {"model", "weighted", "weighted-ip", "kmeans", "gmm", "popular",
                                             "popular-count", "itemknn", "ease", "implicit", "dlae"}


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.name)
def test_contract(spec, data, batch, tmp_path):
    check_contract(spec, data, batch, tmp_path)


@pytest.mark.parametrize("spec", [s for s in SPECS if s.name != "anime-two-tower"], ids=lambda s: s.name)
def test_history_rows_score_like_the_training_rows(spec, data, batch):
    """A user given by ``history`` (unseen, new) scores as the same user given by its training row."""
    model = fitted_or_stepped(spec, data, batch)
    by_history = {"user": torch.full((4,), -1), "history": data.ratings[[0, 1, 2, 3]]}
    np.testing.assert_allclose(scores(model, by_history), scores(model, batch), rtol=1e-5, atol=1e-5)


def test_registry_lists_every_anime_model(capsys):
    from recsys.cli import main

    assert main(["models", "--format", "json"]) == 0
    listed = {row["name"]: row for row in json.loads(capsys.readouterr().out)}
    for spec in SPECS:
        assert listed[spec.name]["domain"] == "anime" and listed[spec.name]["kind"] == spec.kind
