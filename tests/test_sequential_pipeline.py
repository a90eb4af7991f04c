"""The reproduction end to end on the toy dataset, recipes and the CLI wiring."""

from __future__ import annotations

import dataclasses
import json

import pandas as pd
import pytest

from recsys.sequential import cli as sequential_cli
from recsys.sequential import reproduce as reproduce_module
from recsys.sequential import training
from recsys.sequential.experiments import QUICK
from recsys.sequential.prep import make_split, recent_only
from recsys.sequential.reproduce import reproduce
from recsys.sequential.serving import load_checkpoint
from recsys.train.loop import TrainConfig
from recsys import registry
from recsys.eval.stats import COLUMNS
from recsys.train.recipes import RecipeContext
from tests.sequential_toy import toy_dataset


def test_recent_only_keeps_each_users_latest_prefixes():
    examples = recent_only({1: [1, 2, 3, 4, 5], 2: [6, 7]}, max_len=2, recent=2)
    # user 1: targets 4, 5 (with histories [2,3], [3,4]); user 2: its single example 7 <- [6]
    assert examples.items.tolist() == [4, 5, 7]
    assert examples.item_seq.tolist() == [[2, 3], [3, 4], [0, 6]]


def test_training_windows_hold_every_prefix_once():
    from recsys.data.sequential import training_examples, training_windows

    sequences = {1: [1, 2, 3, 4, 5, 6, 7, 8, 9], 2: [5, 6], 3: [7]}
    windows = training_windows(sequences, max_len=4)
    # user 1 has inputs 1..8 and targets 2..9; windows of 4 inputs overlapping by 2, from the end:
    # [5,6,7,8] trains its last two targets (8, 9: at least 2 items of history in the window),
    # [3,4,5,6] trains 6, 7, and the first window [1,2,3,4] trains all of 2..5;
    # user 2 is one short window [_,_,_,5] -> 6; user 3 (a single item) has no target
    assert windows.item_seq.tolist() == [[5, 6, 7, 8], [3, 4, 5, 6], [1, 2, 3, 4], [0, 0, 0, 5]]
    assert windows.next_items.tolist() == [[0, 0, 8, 9], [0, 0, 6, 7], [2, 3, 4, 5], [0, 0, 0, 6]]
    assert windows.users.tolist() == [1, 1, 1, 2] and windows.item_seq_len.tolist() == [4, 4, 4, 1]
    # the same targets as one example per prefix, each exactly once
    assert windows.n_targets == len(training_examples(sequences, max_len=4)) == 9
    batch = next(windows.batches(batch_size=3, shuffle=False))
    assert batch["next_items"].shape == (3, 4) and batch["user"].tolist() == [1, 1, 1]


def sequential_recipes():
    # this domain's recipes only: all_recipes() also needs the other domains' training modules
    return {spec.name: training.recipe(spec) for spec in registry.by_domain("sequential") if spec.kind == "neural"}


def test_every_trainable_model_has_a_recipe():
    recipes = sequential_recipes()
    assert set(recipes) == {"cl-epidtn", "epidtn", "cltd", "cl-dssm", "sasrec", "mind", "dssm", "youtube-dnn"}
    assert recipes["sasrec"].defaults.batch_size == 64 and recipes["dssm"].defaults.batch_size == 256
    for name in ("sasrec", "youtube-dnn", "dssm", "mind"):
        assert recipes[name].domain == "sequential"
    assert training.variants() == ("cl-epidtn", "epidtn", "cltd", "cl-dssm")
    for name in training.variants():
        assert name in recipes and recipes[name].name == name


def test_cli_parses_reproduce_and_evaluate():
    import argparse

    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="verb")
    verbs = {v: sub.add_parser(v).add_subparsers(dest="domain") for v in ("evaluate", "reproduce")}
    sequential_cli.register_cli(verbs)
    args = parser.parse_args(["reproduce", "cl-epidtn", "--quick", "--dataset", "all", "--seeds", "3"])
    assert args.quick and args.dataset == "all" and args.seeds == 3
    args = parser.parse_args(["evaluate", "ml-100k", "--models", "wals,most-popular"])
    assert args.models == "wals,most-popular"
    with pytest.raises(SystemExit):  # numeric arguments use recsys.cliargs types: 0 seeds is refused
        parser.parse_args(["reproduce", "cl-epidtn", "--seeds", "0"])
    with pytest.raises(ValueError, match="unknown model"):
        sequential_cli._model_list("sasrec,bert4rec")


def test_cli_smaller_budget_flags_reach_the_settings(monkeypatch, tmp_path):
    """--anime-users and --no-sweeps change the profile's copy only: the profile itself is untouched."""
    import argparse

    from recsys.sequential import experiments
    from recsys.sequential import reproduce as reproduce_mod

    seen = {}

    def fake_reproduce(datasets, settings, models, out, **kwargs):
        seen.update(datasets=datasets, settings=settings, command=kwargs["command"])
        return {"datasets": {}, "ran": 0, "state_dir": str(tmp_path)}

    monkeypatch.setattr(reproduce_mod, "reproduce", fake_reproduce)
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="verb")
    sequential_cli.register_cli({v: sub.add_parser(v).add_subparsers(dest="domain") for v in ("evaluate", "reproduce")})
    args = parser.parse_args(["reproduce", "cl-epidtn", "--profile", "converged", "--dataset", "anime",
                              "--anime-users", "500", "--no-sweeps", "--out", str(tmp_path)])
    assert args.func(args) == 0
    settings = seen["settings"]
    assert seen["datasets"] == ["anime"] and settings.anime_max_users == 500
    assert settings.sweep == {} and settings.ours == {}
    assert experiments.CONVERGED.anime_max_users == 5000 and experiments.CONVERGED.sweep  # the profile is unchanged
    assert "no sensitivity sweeps" in experiments.describe_settings(settings, "anime")
    assert experiments.describe_settings(settings, "anime").endswith("; first 500 users of the anime sample.")
    assert "users" not in experiments.describe_settings(settings, "ml-100k").split(";")[-1]  # no anime cap on ml-100k
    with pytest.raises(SystemExit):
        parser.parse_args(["reproduce", "cl-epidtn", "--anime-users", "0"])


@pytest.mark.slow
def test_reproduce_on_the_toy_writes_every_table(tmp_path, monkeypatch):
    monkeypatch.setattr(reproduce_module, "load_dataset", lambda name, users=None: dataclasses.replace(toy_dataset(length=8), name=name))
    models = ["most-popular", "wals", "dssm", "cl-epidtn"]
    settings = dataclasses.replace(
        QUICK, seeds=2, epochs=1, max_seq_len=5, batch_size=16,
        cl_overrides={"embedding_dim": 16, "n_layers": 1, "aug_dim": 4},
        sweep={"lambda_cl": [0.1, 1.0]}, sweep_epochs=None, workers=1,
    )
    report = reproduce(["ml-100k"], settings, models, tmp_path, progress=False, state_dir=tmp_path / "state")
    runs = pd.read_csv(tmp_path / "ml-100k_runs.csv")
    # one row per (model, seed, split): 2 seeds on leave-one-out, QUICK.ratio_seeds = 1 on the ratio split
    assert len(runs) == 2 * len(models) + len(models) and set(runs["model"]) == set(models)
    loo, ratio = runs[runs["split"] == "loo"], runs[runs["split"] == "ratio"]
    assert loo[["hit@10", "hit@50", "ndcg@10"]].notna().all().all() and loo["recall@10"].isna().all()
    assert ratio[["recall@10", "recall@50"]].notna().all().all() and set(ratio["seed"]) == {0}
    assert (runs["cpu_seconds"] >= 0).all() and (runs.loc[runs["model"] == "cl-epidtn", "cpu_seconds"] > 0).all()
    summary = report["datasets"]["ml-100k"]["summary"]
    pop = summary.set_index("model").loc["most-popular"]
    assert pop["hit@10_std"] == 0.0  # counting is seed-independent
    text = (tmp_path / "ml-100k.md").read_text()
    assert "leave-one-out" in text and "± " in text and "Convergence" in text
    readme = (tmp_path / "README.md").read_text()
    assert "quick profile" in readme and "resumes" in readme
    assert "  - settings: QUICK: 2 seeds" in readme  # each data set's own settings, under its line
    tests = pd.read_csv(tmp_path / "ml-100k_ttests.csv")
    assert list(tests.columns) == list(COLUMNS)
    assert set(tests.loc[tests["metric"] == "hit@10", "model"]) == set(models) - {"cl-epidtn"}
    assert (tests["p"].isna() | tests["p"].between(0, 1)).all()  # NaN when both sides have zero variance
    sweeps = pd.read_csv(tmp_path / "ml-100k_sweeps.csv")
    # lambda 0.1 and 1.0 on 1 sweep seed; each point has HR@10 (loo job) and Recall@50 (ratio job)
    assert sorted(sweeps["value"]) == [0.1, 1.0] and sweeps[["hit@10", "recall@50"]].notna().all().all()
    assert (tmp_path / "ml-100k_sweep_lambda_cl.png").exists()
    meta = json.loads((tmp_path / "ml-100k_meta.json").read_text())
    assert meta["quick"] is True and meta["profile"] == "quick" and meta["complete"] is True
    # 8 loo + 4 ratio + 4 sweep jobs, of which the lambda = 1.0 pair equals the main cl-epidtn seed-0 jobs
    assert meta["jobs_done"] == meta["jobs_total"] == 14
    curves = pd.read_csv(tmp_path / "ml-100k_curves.csv")
    assert set(curves["model"]) == {"dssm", "cl-epidtn"} and (curves["val_metric_name"] == "ndcg@10").all()


@pytest.mark.slow
def test_recipe_trains_and_saves_a_checkpoint(tmp_path, monkeypatch):
    monkeypatch.setattr(training, "load_dataset", lambda name, users=None: toy_dataset(length=8))
    recipe = sequential_recipes()["sasrec"]
    context = RecipeContext(TrainConfig(epochs=1, batch_size=16), {"max_seq_len": 5, "hidden_size": 8, "inner_size": 16},
                            [], tmp_path / "checkpoint.safetensors")
    summary = recipe.run(context)
    assert 0 <= summary["test_hit@10"] <= 1
    data = toy_dataset(length=8)
    model = load_checkpoint(tmp_path / "checkpoint.safetensors", data, make_split(data, "loo"), "sasrec")
    assert model.config.hidden_size == 8


@pytest.mark.parametrize("mask_history", [True, False])
def test_validation_masks_history_as_asked(mask_history):
    """The RecBole peer check picks its best epoch on unmasked validation, as RecBole ranks."""
    from recsys.eval.sequential import evaluate_split

    data = toy_dataset()
    split = make_split(data, "loo")
    config = TrainConfig(epochs=1, batch_size=16, seed=0, device="cpu")
    trained = training.train_model("sasrec", data, split, config, {"max_seq_len": 4, "hidden_size": 8,
                                   "inner_size": 16, "n_layers": 1, "n_heads": 1}, windows=False,
                                   mask_history=mask_history)
    trained.model.eval()
    recorded = trained.history[-1]["ndcg@10"]  # one epoch: the returned weights are that epoch's
    # 10 items: unmasked, the top 10 holds the user's history too, so the target ranks lower than when masked
    expected = {mask: evaluate_split(trained.model, split, "valid", ["ndcg@10"], max_len=4, mask_history=mask)["ndcg@10"]
                for mask in (True, False)}
    assert expected[True] > expected[False]
    assert recorded == pytest.approx(expected[mask_history])
