"""Each sequential baseline behind the model contract: shapes, one step lowers the loss, model specifics."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from recsys.data.sequential import leave_one_out, training_examples
from recsys.models.dssm import DSSM, DSSMConfig
from recsys.models.mind import MIND, CapsuleRouting, MINDConfig, squash
from recsys.models.most_popular import MostPopular
from recsys.models.sasrec import SASRec, SASRecConfig
from recsys.models.wals import WALS, WALSConfig
from recsys.models.youtube_dnn import YouTubeDNN, YouTubeDNNConfig
from tests.sequential_toy import toy_dataset

NEURAL = [
    (YouTubeDNN, YouTubeDNNConfig(embedding_dim=16, feature_dim=4, hidden=(32,), dropout=0.0, max_seq_len=5)),
    (DSSM, DSSMConfig(embedding_dim=16, feature_dim=4, hidden=(32,), dropout=0.0, max_seq_len=5)),
    (MIND, MINDConfig(embedding_dim=16, feature_dim=4, n_interests=3, hidden=32, dropout=0.0, max_seq_len=5)),
    (SASRec, SASRecConfig(hidden_size=16, n_layers=1, n_heads=2, inner_size=32, hidden_dropout=0.0, attn_dropout=0.0, max_seq_len=5)),
]


def toy_batch():
    data = toy_dataset()
    split = leave_one_out(data)
    examples = training_examples(split.train, max_len=5)
    return data, examples.batch(torch.arange(len(examples)))


@pytest.mark.parametrize("cls,config", NEURAL, ids=[c.__name__ for c, _ in NEURAL])
def test_forward_shapes_and_padding_column(cls, config):
    torch.manual_seed(0)
    data, batch = toy_batch()
    model = cls(config, data).eval()
    scores = model.full_sort_predict(batch)
    assert scores.shape == (len(batch["user"]), data.n_items + 1)
    assert torch.isinf(scores[:, 0]).all() and torch.isfinite(scores[:, 1:]).all()
    assert model.item_tower().shape[0] == data.n_items + 1
    assert model.predict(batch).shape == (len(batch["user"]),)


@pytest.mark.parametrize("cls,config", NEURAL, ids=[c.__name__ for c, _ in NEURAL])
def test_training_steps_lower_the_loss(cls, config):
    torch.manual_seed(0)
    data, batch = toy_batch()
    model = cls(config, data)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    first = model.calculate_loss(batch)
    for _ in range(15):
        loss = model.calculate_loss(batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert math.isfinite(first.item())
    assert model.calculate_loss(batch).item() < first.item()


def test_mind_routing_shapes_and_adaptive_interest_count():
    torch.manual_seed(0)
    routing = CapsuleRouting(dim=8, n_interests=4, max_len=6, iterations=3)
    behaviours = torch.randn(2, 6, 8)
    mask = torch.tensor([[0, 0, 0, 0, 1, 1], [1, 1, 1, 1, 1, 1]], dtype=torch.float)
    capsules, active = routing(behaviours, mask, torch.tensor([1, 2]))
    assert capsules.shape == (2, 4, 8)
    assert active.tolist() == [[True, False, False, False], [True, True, False, False]]
    assert (capsules.norm(dim=-1) < 1).all()  # squash keeps norms below 1
    # squash: a vector of norm 3 gets norm 9 / 10
    assert squash(torch.tensor([[3.0, 0.0]])).norm().item() == pytest.approx(0.9)
    # K'_u = max(1, min(K, floor(log2 len))): 2 items -> 1 interest, 5 items -> 2 interests
    data, _ = toy_batch()
    model = MIND(NEURAL[2][1], data).eval()
    batch = {"user": torch.tensor([1, 2]), "item_seq": torch.tensor([[0, 0, 0, 1, 2], [1, 2, 3, 4, 5]]),
             "item_seq_len": torch.tensor([2, 5])}
    vectors, interest_mask = model.interests(batch)
    assert vectors.shape == (2, 3, 16) and interest_mask.sum(1).tolist() == [1, 2]
    assert model.user_tower(batch).shape == (2, 3, 16)
    # serving = max over the active interests
    scores = model.full_sort_predict(batch)
    manual = (vectors[1, :2] @ model.item_tower().T).max(0).values
    assert torch.allclose(scores[1, 1:], manual[1:], atol=1e-6)


def test_sasrec_is_causal():
    torch.manual_seed(0)
    data, _ = toy_batch()
    model = SASRec(NEURAL[3][1], data).eval()
    seq = torch.tensor([[0, 3, 4, 5, 6]])
    changed = seq.clone()
    changed[0, 4] = 9  # change the most recent (future for every earlier position) item
    with torch.no_grad():
        a, b = model.sequence_output(seq), model.sequence_output(changed)
    # earlier real positions (1..3) do not see it; position 0 is padding, whose query has no
    # allowed key and (as in RecBole) attends uniformly: its output is never read
    assert torch.allclose(a[:, 1:4], b[:, 1:4], atol=1e-6)
    assert not torch.allclose(a[:, 4], b[:, 4])  # the last position does


def test_sasrec_window_loss_is_the_loss_of_its_prefixes():
    torch.manual_seed(0)
    data, _ = toy_batch()
    model = SASRec(NEURAL[3][1], data).eval()  # dropout 0: the two losses see the same states
    # one window [3, 4, 5, 6] with the next item after each input: 4, 5, 6, 7
    window = {"item_seq": torch.tensor([[0, 3, 4, 5, 6]]), "next_items": torch.tensor([[0, 4, 5, 6, 7]])}
    # the same four (prefix, target) pairs as rows; positions count from the oldest item, so each
    # prefix gets the ids it has inside the window
    prefixes = {"item_seq": torch.tensor([[0, 0, 0, 0, 3], [0, 0, 0, 3, 4], [0, 0, 3, 4, 5], [0, 3, 4, 5, 6]]),
                "item": torch.tensor([4, 5, 6, 7])}
    with torch.no_grad():
        assert model.calculate_loss(window).item() == pytest.approx(model.calculate_loss(prefixes).item(), rel=1e-5)


def test_most_popular_counts_training_items():
    data = dataclasses.replace(toy_dataset(n_users=2, n_items=4), sequences={1: [1, 2, 2], 2: [2, 3]})
    model = MostPopular(None, data).fit(data)
    scores = model.full_sort_predict({"user": torch.tensor([1])})
    # item 2 seen 3 times, items 1 and 3 once, item 4 never
    assert scores[0, 1:].tolist() == [1.0, 3.0, 1.0, 0.0] and scores[0, 0] == -math.inf


def test_wals_ranks_co_consumed_items_first():
    data = toy_dataset(n_users=6, n_items=6)
    # two clusters: users 1-3 consume items 1-3, users 4-6 items 4-6; user 1 has not seen item 3
    sequences = {1: [1, 2], 2: [1, 2, 3], 3: [2, 3, 1], 4: [4, 5, 6], 5: [5, 6, 4], 6: [6, 4, 5]}
    data = dataclasses.replace(data, sequences=sequences)
    model = WALS(WALSConfig(factors=4, iterations=20, regularization=0.01), data).fit(data)
    scores = model.full_sort_predict({"user": torch.tensor([1])})[0]
    assert scores[3] > scores[4:].max()
    assert scores.shape == (7,) and scores[0] == -math.inf


def test_logq_correction_subtracts_log_q_by_hand():
    from recsys.models.seq_features import in_batch_softmax_loss, item_log_frequency, logq_correct

    # items 1..3 seen 3, 1, 0 times -> add-one counts [1, 4, 2, 1] (row 0 = padding), total 8
    log_q = item_log_frequency({1: [1, 1, 2], 2: [1]}, n_items=3)
    assert torch.allclose(log_q, torch.tensor([1 / 8, 4 / 8, 2 / 8, 1 / 8]).log())
    logits, targets = torch.zeros(2, 2), torch.tensor([1, 3])
    corrected = logq_correct(logits, log_q, targets)  # column j moves by -log q(targets[j])
    assert torch.allclose(corrected, torch.tensor([[math.log(2.0), math.log(8.0)]] * 2))
    # zero vectors: plain loss is log 2; corrected row 0 = -log(2 / (2 + 8)), row 1 = -log(8 / 10)
    u, v = torch.zeros(2, 4), torch.zeros(2, 4)
    assert math.isclose(float(in_batch_softmax_loss(u, v, targets)), math.log(2), rel_tol=1e-6)
    expected = (-math.log(0.2) - math.log(0.8)) / 2
    assert math.isclose(float(in_batch_softmax_loss(u, v, targets, log_q=log_q)), expected, rel_tol=1e-6)


@pytest.mark.parametrize("cls,config", NEURAL[:3], ids=[c.__name__ for c, _ in NEURAL[:3]])
def test_logq_correction_is_a_config_option(cls, config):
    import dataclasses

    data, _ = toy_batch()
    assert config.logq_correction is True
    assert cls(config, data).item_log_frequency.shape == (data.n_items + 1,)
    assert cls(dataclasses.replace(config, logq_correction=False), data).item_log_frequency is None
