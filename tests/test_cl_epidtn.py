"""CL-EPIDTN on a hand-made 4-user, 6-item dataset (shapes, losses, ablations, padding, training)."""

from __future__ import annotations

import math

import pytest
import torch

from recsys.data.sequential import FeatureTable, SequentialDataset
from recsys.models.cl_epidtn import (
    CLEPIDTN,
    CLEPIDTNConfig,
    activity_buckets,
    in_batch_bce,
    info_nce,
    item_categories,
    nt_xent,
    variant,
)
from recsys.train.loop import TrainConfig, fit

@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny tensors gain nothing from threads, and on a busy shared CPU OpenMP's spin-waiting
    makes each op ~10x slower; one thread keeps this file at a few seconds."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


SMALL = dict(embedding_dim=16, n_layers=2, n_heads=2, aug_dim=4, max_seq_len=5, dropout=0.1)


def tiny_dataset() -> SequentialDataset:
    # users 1..4 with fields gender (codes 1..2) and age band (codes 1..3); row 0 is padding
    users = FeatureTable(["gender", "age"], torch.tensor([[0, 0], [1, 1], [2, 2], [1, 3], [2, 1]]), [3, 4])
    # items 1..6 with a decade field and up to two genres (codes 1..3, 0 = padding)
    items = FeatureTable(
        ["decade"],
        torch.tensor([[0], [1], [1], [2], [2], [1], [2]]),
        [3],
        multi_name="genre",
        multi=torch.tensor([[0, 0], [1, 2], [2, 0], [3, 0], [0, 3], [1, 3], [2, 1]]),
        multi_cardinality=4,
    )
    sequences = {1: [1, 2, 3, 4], 2: [2, 3], 3: [5], 4: [6, 1, 2, 3, 4, 5]}
    return SequentialDataset("tiny", 4, 6, users, items, sequences, has_timestamps=True)


def tiny_batch() -> dict[str, torch.Tensor]:
    # user 1: [1,2,3] -> 4; user 2: [2] -> 3; user 3: no history -> 5; user 4: [6,1,2,3,4] -> 5
    # (users 3 and 4 share the target 5: a false negative for each other in the main loss)
    return {
        "user": torch.tensor([1, 2, 3, 4]),
        "item_seq": torch.tensor([[0, 0, 1, 2, 3], [0, 0, 0, 0, 2], [0, 0, 0, 0, 0], [6, 1, 2, 3, 4]]),
        "item_seq_len": torch.tensor([3, 1, 0, 5]),
        "item": torch.tensor([4, 3, 5, 5]),
    }


def make(name: str = "cl-epidtn", **overrides) -> CLEPIDTN:
    torch.manual_seed(0)
    return CLEPIDTN(variant(name, **{**SMALL, **overrides}), tiny_dataset())


# -- losses on toy numbers --------------------------------------------------------------------


def test_info_nce_matches_hand_computation():
    sim = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    # each row: -log(e^1 / (e^1 + e^0)) = log(1 + e^-1) = 0.31326
    assert info_nce(sim, 1.0).item() == pytest.approx(math.log(1 + math.exp(-1)), abs=1e-6)
    assert info_nce(sim, 1.0).item() == pytest.approx(0.3133, abs=1e-4)
    # temperature 0.5 doubles the logits: log(1 + e^-2) = 0.12693
    assert info_nce(sim, 0.5).item() == pytest.approx(math.log(1 + math.exp(-2)), abs=1e-6)
    # masking row 0's negative leaves only its positive: row 0 -> 0, row 1 -> 0.31326; mean 0.15663
    invalid = torch.tensor([[False, True], [False, False]])
    assert info_nce(sim, 1.0, invalid).item() == pytest.approx(math.log(1 + math.exp(-1)) / 2, abs=1e-6)


def test_nt_xent_with_and_without_hard_negative():
    z = torch.eye(2)
    # anchor z1_0: positive z2_0 (sim 1), negatives z2_1 (0) and z1_1 (0), itself masked:
    # -log(e / (e + 2)) = log(1 + 2/e) = 0.55144; every anchor alike
    assert nt_xent(z, z.clone(), 1.0).item() == pytest.approx(math.log(1 + 2 / math.e), abs=1e-6)
    # a hard negative equal to the anchor adds e^1: -log(e / (2e + 2)) = log(2 + 2/e) = 1.24459
    hard_on = nt_xent(z, z.clone(), 1.0, hard=z.clone(), hard_valid=torch.tensor([True, True]))
    assert hard_on.item() == pytest.approx(math.log(2 + 2 / math.e), abs=1e-6)
    # an invalid hard negative (user with < 2 items) is ignored
    hard_off = nt_xent(z, z.clone(), 1.0, hard=z.clone(), hard_valid=torch.tensor([False, False]))
    assert hard_off.item() == pytest.approx(math.log(1 + 2 / math.e), abs=1e-6)


@pytest.mark.parametrize("logq", [False, True])
def test_main_loss_is_a_softmax_over_the_batchs_distinct_items(logq):
    model = make(logq_correction=logq).eval()  # eval: no dropout, so towers and loss see the same vectors
    batch = tiny_batch()
    with torch.no_grad():
        u = model.user_tower(batch)
        # the batch's distinct targets are 3, 4, 5 (rows 3 and 4 share 5, which appears once as a
        # column: a row's own target is never also its negative); rows target columns 1, 0, 2, 2
        v = model.item_tower(torch.tensor([3, 4, 5]))
        logits = u @ v.T / model.config.temperature
        if logq:
            # item counts over the sequences, +1 each: items 1..6 -> 3, 4, 4, 3, 3, 2; padding 0 -> 1;
            # total 20, so the columns 3, 4, 5 get log q = log(4/20), log(3/20), log(3/20)
            q = torch.tensor([4.0, 3.0, 3.0]) / 20
            logits = logits - q.log().unsqueeze(0)
        expected = torch.stack([-torch.log_softmax(logits[i], 0)[c] for i, c in enumerate([1, 0, 2, 2])]).mean()
        got = model.loss_parts(batch)["main"]
    assert got.item() == pytest.approx(expected.item(), rel=1e-5)


def test_bce_main_loss_is_eq_14_over_every_in_batch_pair():
    # one row, two columns, positive at column 0: labels [1, 0]
    # logits [0, 0]: both entries cost log 2 -> mean log 2 = 0.69315
    assert in_batch_bce(torch.zeros(1, 2), torch.tensor([0])).item() == pytest.approx(math.log(2), abs=1e-6)
    # logits [2, -1]: -log sigmoid(2) = log(1 + e^-2) = 0.12693, -log(1 - sigmoid(-1)) = log(1 + e^-1) = 0.31326
    # -> mean 0.22010
    got = in_batch_bce(torch.tensor([[2.0, -1.0]]), torch.tensor([0])).item()
    assert got == pytest.approx((math.log(1 + math.exp(-2)) + math.log(1 + math.exp(-1))) / 2, abs=1e-6)
    assert got == pytest.approx(0.22010, abs=1e-5)
    model = make("epidtn", main_loss="bce", logq_correction=False).eval()
    batch = tiny_batch()
    with torch.no_grad():
        logits = model.user_tower(batch) @ model.item_tower(torch.tensor([3, 4, 5])).T / model.config.temperature
        expected = in_batch_bce(logits, torch.tensor([1, 0, 2, 2]))  # rows target items 4, 3, 5, 5
        assert model.loss_parts(batch)["main"].item() == pytest.approx(expected.item(), rel=1e-5)


def test_full_main_loss_is_a_softmax_over_every_item():
    # ours: columns are items 1..6 (padding 0 left out), so rows targeting items 4, 3, 5, 5 take
    # columns 3, 2, 4, 4; log-q is asked for but does not apply (nothing is sampled)
    model = make("epidtn", main_loss="full", logq_correction=True).eval()
    batch = tiny_batch()
    with torch.no_grad():
        logits = model.user_tower(batch) @ model.item_tower(torch.arange(1, 7)).T / model.config.temperature
        expected = torch.stack([-torch.log_softmax(logits[i], 0)[c] for i, c in enumerate([3, 2, 4, 4])]).mean()
        got = model.loss_parts(batch)["main"]
        in_batch = make("epidtn", main_loss="infonce", logq_correction=False).eval()
        in_batch.load_state_dict(model.state_dict())
    assert got.item() == pytest.approx(expected.item(), rel=1e-5)
    # three more negatives (items 1, 2, 6) than the in-batch softmax: a larger loss for the same vectors
    assert got.item() > in_batch.loss_parts(batch)["main"].item()
    with pytest.raises(ValueError, match="main_loss"):
        make(main_loss="sampled")


def test_item_tower_with_one_layer_as_in_eq_11():
    two, one = make(), make(item_tower_layers=1)
    linear = [m for m in one.item_mlp if isinstance(m, torch.nn.Linear)]
    # item id + decade + genres + a_v: 3 slots of d = 16 and aug_dim 4 -> 52 inputs, straight to d = 16
    assert [(m.in_features, m.out_features) for m in linear] == [(52, 16)]
    assert [(m.in_features, m.out_features) for m in two.item_mlp if isinstance(m, torch.nn.Linear)] == [(52, 32), (32, 16)]
    assert one.item_tower().norm(dim=-1)[1:].tolist() == pytest.approx([1.0] * 6, abs=1e-5)
    with pytest.raises(ValueError, match="item_tower_layers"):
        make(item_tower_layers=3)


def test_causal_encoder_gives_every_prefix_state_in_one_pass():
    for name in ("cl-epidtn", "cl-dssm"):
        model = make(name).eval()
        window = torch.tensor([[0, 6, 1, 2, 3]])  # four real inputs, right-aligned
        with torch.no_grad():
            table = model._token_table()
            states = model.encode_sequence(window, torch.tensor([4]), table, every_position=True)
            for n in range(1, 5):  # the state after the first n inputs, encoded on their own
                prefix = torch.tensor([[0] * (5 - n) + [6, 1, 2, 3][:n]])
                alone = model.encode_sequence(prefix, torch.tensor([n]), table)
                assert torch.allclose(states[0, n], alone[0], atol=1e-5), (name, n)


def test_a_window_batch_is_its_prefix_batch_in_one_pass():
    # user 4's window [6, 1, 2, 3, 4] with targets after inputs 2..5 -> 4 (prefix, target) pairs
    model = make().eval()
    windows = {"user": torch.tensor([4]), "item_seq": torch.tensor([[6, 1, 2, 3, 4]]),
               "item_seq_len": torch.tensor([5]), "next_items": torch.tensor([[0, 2, 3, 4, 5]])}
    prefixes = {"user": torch.tensor([4, 4, 4, 4]),
                "item_seq": torch.tensor([[0, 0, 0, 6, 1], [0, 0, 6, 1, 2], [0, 6, 1, 2, 3], [6, 1, 2, 3, 4]]),
                "item_seq_len": torch.tensor([2, 3, 4, 5]), "item": torch.tensor([2, 3, 4, 5])}
    with torch.no_grad():
        one_pass, separately = model.loss_parts(windows), model.loss_parts(prefixes)
    # same (history, target) pairs and the same distinct items as columns: same main and mimic
    # losses (the contrastive parts draw random views, so they are not compared)
    assert one_pass["main"].item() == pytest.approx(separately["main"].item(), rel=1e-5)
    assert one_pass["mimic"].item() == pytest.approx(separately["mimic"].item(), rel=1e-5)
    with pytest.raises(ValueError, match="after a padding position"):
        model.loss_parts(dict(windows, item_seq_len=torch.tensor([3]), item_seq=torch.tensor([[0, 0, 2, 3, 4]])))


def test_shapes_padding_column_and_normalisation():
    model = make().eval()
    batch = tiny_batch()
    with torch.no_grad():
        u = model.user_tower(batch)
        items = model.item_tower()
        scores = model.full_sort_predict(batch)
        pairs = model.predict(batch)
    assert u.shape == (4, 16) and items.shape == (7, 16) and scores.shape == (4, 7)
    assert torch.allclose(u.norm(dim=1), torch.ones(4), atol=1e-5)
    assert torch.allclose(items[1:].norm(dim=1), torch.ones(6), atol=1e-5)
    assert torch.equal(items[0], torch.zeros(16))  # the padding item
    assert torch.isneginf(scores[:, 0]).all() and torch.isfinite(scores[:, 1:]).all()
    assert scores[:, 1:].abs().max() <= 1 + 1e-5  # cosine scores, no temperature
    assert torch.allclose(pairs, scores.gather(1, batch["item"].view(-1, 1)).squeeze(1), atol=1e-6)
    assert torch.isfinite(u[2]).all()  # user 3 has an empty history


def test_item_subset_matches_full_table_and_checkpoint_round_trip():
    model = make().eval()
    with torch.no_grad():
        full = model.item_tower()
        subset = model.item_tower(torch.tensor([5, 2]))
        scores = model.full_sort_predict(tiny_batch())
    assert torch.allclose(subset, full[[5, 2]], atol=1e-6)  # what a faiss index built once would hold
    torch.manual_seed(123)  # a differently initialised copy, then the saved weights
    copy = CLEPIDTN(variant("cl-epidtn", **SMALL), tiny_dataset())
    copy.load_state_dict(model.state_dict())
    with torch.no_grad():
        assert torch.equal(copy.eval().full_sort_predict(tiny_batch()), scores)


def test_eval_mode_is_deterministic():
    model = make().eval()
    with torch.no_grad():
        assert torch.equal(model.full_sort_predict(tiny_batch()), model.full_sort_predict(tiny_batch()))


def test_transformer_ignores_padding():
    model = make().eval()
    batch = tiny_batch()
    with torch.no_grad():
        before = model.user_tower(batch)
        changed = dict(batch, item_seq=batch["item_seq"].clone())
        changed["item_seq"][0, :2] = torch.tensor([5, 6])  # padded slots of user 1 (length 3)
        changed["item_seq"][1, :4] = 4  # padded slots of user 2 (length 1)
        after_change = model.user_tower(changed)
        wider = dict(batch, item_seq=torch.cat([torch.zeros(4, 3, dtype=torch.long), batch["item_seq"]], 1))
        after_wider = model.user_tower(wider)  # more left padding, cut back to max_seq_len = 5
        real_change = dict(batch, item_seq=batch["item_seq"].clone())
        real_change["item_seq"][0, -1] = 6  # a real item of user 1
        moved = model.user_tower(real_change)
    assert torch.allclose(before, after_change, atol=1e-6)
    assert torch.allclose(before, after_wider, atol=1e-6)
    assert not torch.allclose(before[0], moved[0], atol=1e-4)  # real items do matter
    assert torch.allclose(before[1:], moved[1:], atol=1e-6)  # and only to their own user


# -- augmented vectors and the mimic loss -----------------------------------------------------


def test_mimic_loss_updates_only_augmented_vectors():
    model = make()
    model.zero_grad()
    model.loss_parts(tiny_batch())["mimic"].backward()
    reached = {n for n, p in model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    assert reached, "the mimic loss must train something"
    assert all(n.startswith(("user_aug.", "item_aug.")) for n in reached), sorted(reached)
    assert any(n.startswith("user_aug.") for n in reached) and any(n.startswith("item_aug.") for n in reached)


def test_activity_buckets_and_item_categories():
    ds = tiny_dataset()
    # lengths 4, 2, 1, 6 -> 1 + floor(log2(n)) = 3, 2, 1, 3; padding user 0 -> 0
    assert activity_buckets(ds, 12).tolist() == [0, 3, 2, 1, 3]
    assert activity_buckets(ds, 3).tolist() == [0, 2, 2, 1, 2]  # capped at n_buckets - 1
    # first non-padding genre of each item (item 4's genres are [0, 3] -> 3)
    cats, n = item_categories(ds.item_features, "auto")
    assert cats.tolist() == [0, 1, 2, 3, 3, 1, 2] and n == 4
    cats, n = item_categories(ds.item_features, "field")
    assert cats.tolist() == [0, 1, 1, 2, 2, 1, 2] and n == 3


def test_random_subsequence_is_a_short_contiguous_slice():
    seq = torch.tensor([[0, 0, 3, 4, 5, 6]] * 50 + [[0, 0, 0, 0, 0, 7]] * 5)
    lens = torch.tensor([4] * 50 + [1] * 5)
    torch.manual_seed(1)
    sub, sub_len = CLEPIDTN.random_subsequence(seq, lens)
    for row, n in zip(sub.tolist(), sub_len.tolist()):
        real = row[len(row) - n:]
        assert row[: len(row) - n] == [0] * (len(row) - n)  # right-aligned, padded on the left
        if real == [7]:
            continue
        assert 1 <= n <= 2  # at most half of the 4 real items
        start = [3, 4, 5, 6].index(real[0])
        assert real == [3, 4, 5, 6][start:start + n]


# -- ablations --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "display", "parts"),
    [
        ("cl-epidtn", "CL-EPIDTN", {"main", "seq_cl", "attr_cl", "item_cl", "mimic"}),
        ("epidtn", "EPIDTN", {"main", "mimic"}),
        ("cltd", "CLTD", {"main", "seq_cl", "attr_cl", "item_cl"}),
        ("cl-dssm", "CL-DSSM", {"main", "seq_cl", "attr_cl", "item_cl", "mimic"}),
    ],
)
def test_variants_switch_components(name, display, parts):
    model = make(name)
    loss = model.calculate_loss(tiny_batch())
    assert torch.isfinite(loss)
    assert set(model.last_loss_parts) == parts
    assert model.display_name == display
    # total = main + lambda_cl * cl parts + mimic_weight * mimic, with both weights 1 here
    assert loss.item() == pytest.approx(sum(model.last_loss_parts.values()), rel=1e-5)
    assert (model.encoder is None) == (name == "cl-dssm")
    assert hasattr(model, "user_aug") == (name != "cltd")
    loss.backward()
    with torch.no_grad():
        assert model.eval().full_sort_predict(tiny_batch()).shape == (4, 7)


def test_loss_weights_scale_the_parts():
    model = make(lambda_cl=0.5, mimic_weight=2.0)
    torch.manual_seed(3)
    loss = model.calculate_loss(tiny_batch())
    p = model.last_loss_parts
    expected = p["main"] + 0.5 * (p["seq_cl"] + p["attr_cl"] + p["item_cl"]) + 2.0 * p["mimic"]
    assert loss.item() == pytest.approx(expected, rel=1e-5)


def test_bad_input_is_reported_clearly():
    with pytest.raises(ValueError, match="unknown CL-EPIDTN variant"):
        CLEPIDTNConfig(variant="sasrec")
    with pytest.raises(ValueError, match="divisible"):
        make(embedding_dim=15)
    model = make()
    bad = dict(tiny_batch(), item=torch.tensor([4, 3, 5, 99]))
    with pytest.raises(ValueError, match="item ids must be in 0..6"):
        model.calculate_loss(bad)
    with pytest.raises(KeyError, match="item_seq"):
        model.user_tower({"user": torch.tensor([1])})


# -- training ---------------------------------------------------------------------------------


def test_a_few_training_steps_reduce_the_loss():
    model = make()
    batch = tiny_batch()
    result = fit(model, lambda epoch: [batch] * 3,
                 TrainConfig(epochs=5, lr=5e-3, scheduler="none", device="cpu", seed=0))
    losses = [r["train_loss"] for r in result.history]
    # the total starts near main + 3 CL terms ~ 4 * log(batch-ish sizes) + mimic (about 7.5 here)
    # and the model can memorise four rows, so 15 steps must remove well over one nat
    assert losses[-1] < losses[0] - 1.0, losses
    assert set(model.last_loss_parts) == {"main", "seq_cl", "attr_cl", "item_cl", "mimic"}
    assert not model.training  # fit leaves the model in eval mode
