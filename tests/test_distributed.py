"""Data-parallel training: torchrun + DDP (gloo) through the one loop, against one process.

Unit tests cover the batch split; the ``slow`` ones start real ranks through torchrun
(``python -m recsys train MODEL --nproc 2``'s path: :func:`recsys.train.worker.execute`
with ``nproc=2``) on the test-only recipes of ``tests/ddp_recipe.py`` and
``tests/toy_recipe.py``. Each launch costs about 10 s on the 2-core CI machine (torchrun
and two processes importing torch).
"""

from __future__ import annotations

import re
import statistics
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from recsys.train import distributed
from recsys.train.loop import TrainConfig
from recsys.train.worker import execute


# --- the batch split (no processes) ------------------------------------------------------------
def test_shards_are_contiguous_disjoint_and_cover_the_batch():
    batch = {"user": torch.arange(5), "seq": torch.arange(10).reshape(5, 2), "text": ["a", "b", "c", "d", "e"]}
    first, second = distributed.shard(batch, 0, 2), distributed.shard(batch, 1, 2)
    # 5 rows on 2 ranks: bounds 5*0//2=0, 5*1//2=2, 5*2//2=5 -> rows 0-1 and 2-4
    assert first["user"].tolist() == [0, 1] and second["user"].tolist() == [2, 3, 4]
    assert second["seq"].tolist() == [[4, 5], [6, 7], [8, 9]] and first["text"] == ["a", "b"]
    # 7 rows on 3 ranks: bounds 0, 2, 4, 7 -> 2 + 2 + 3 rows, in order
    parts = [distributed.shard({"x": torch.arange(7)}, r, 3)["x"].tolist() for r in range(3)]
    assert parts == [[0, 1], [2, 3], [4, 5, 6]]


def test_a_batch_that_is_not_row_major_is_refused_with_its_shapes():
    with pytest.raises(ValueError, match=r"different lengths.*'user': 4.*'table': 9"):
        distributed.shard({"user": torch.arange(4), "table": torch.zeros(9, 2)}, 0, 2)
    assert distributed.batch_rows({"text": ["a", "b", "c"], "x": torch.zeros(3, 5)}) == 3
    assert distributed.batch_rows({"target": torch.tensor(2.0)}) == 1  # a scalar batch: one example


def test_one_process_is_rank_0_of_1_and_not_a_torchrun_rank(monkeypatch):
    assert distributed.world() == (0, 1)
    monkeypatch.delenv("TORCHELASTIC_RUN_ID", raising=False)
    assert not distributed.launched_by_torchrun()  # `worker RUN_ID --rank` by hand is refused on this
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "x")
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert distributed.launched_by_torchrun()


def test_torchrun_command_runs_the_module_on_n_local_processes():
    command = distributed.torchrun_command(3, "recsys.train.worker", "RUN", "--rank")
    assert command[1:4] == ["-m", "torch.distributed.run", "--standalone"]
    assert "--nproc-per-node=3" in command and command[-4:] == ["-m", "recsys.train.worker", "RUN", "--rank"]


def test_a_run_asks_for_a_whole_number_of_processes(registry):
    with pytest.raises(ValueError, match="nproc must be a whole number"):
        registry.create("toy-linear", TrainConfig(epochs=1, device="cpu"), nproc=0)
    assert registry.create("toy-linear", TrainConfig(epochs=1, device="cpu"), nproc=2).config["nproc"] == 2


# --- real ranks --------------------------------------------------------------------------------
@pytest.fixture
def ddp_registry(registry, monkeypatch):
    monkeypatch.setenv("RECSYS_EXTRA_RECIPES", "tests.toy_recipe,tests.ddp_recipe")
    return registry


def train(registry, recipe: str, nproc: int, options: dict | None = None, **config):
    from recsys.train.recipes import get_recipe

    run = registry.create(recipe, get_recipe(recipe).config(**config), options, nproc=nproc)
    summary = execute(run, registry)
    assert run.status()["status"] == "done", run.status()
    return run, summary


@pytest.mark.slow
def test_two_processes_follow_one_step_for_step_on_a_mean_loss(ddp_registry):
    """The paper's rating two-tower (mean squared error over rows, no dropout).

    Two ranks of 16 rows average their gradients into the gradient of the 32-row batch,
    so the runs differ only by float summation order.
    """
    from recsys.checkpoint import load_model
    from tests.ddp_recipe import rating_data

    one, one_summary = train(ddp_registry, "ddp-mse", 1)
    two, two_summary = train(ddp_registry, "ddp-mse", 2)
    assert two_summary["processes"] == 2 and two.status()["nproc"] == 2
    curve_one = [r["val_mse"] for r in one.metrics()]
    curve_two = [r["val_mse"] for r in two.metrics()]
    assert len(curve_one) == len(curve_two) == 6 and curve_one[-1] < curve_one[0]  # it learned something
    np.testing.assert_allclose(curve_two, curve_one, rtol=1e-4)
    np.testing.assert_allclose([r["train_loss"] for r in two.metrics()], [r["train_loss"] for r in one.metrics()],
                               rtol=1e-4)
    # both checkpoints load through the one loader and score alike
    data, rows = rating_data()
    batch = {"user": torch.tensor(rows[:40, 0]).long(), "item": torch.tensor(rows[:40, 1]).long()}
    scores = []
    for run in (one, two):
        model, meta = load_model(run.checkpoint_path, data, expect={"model": "anime-two-tower"})
        assert meta["data_fingerprint"] == "ddp-tiny"
        with torch.no_grad():
            scores.append(model.full_sort_predict(batch).numpy())
    np.testing.assert_allclose(scores[1], scores[0], rtol=1e-4, atol=1e-4)


@pytest.mark.slow
def test_two_processes_reach_the_one_process_metric_within_seed_noise(ddp_registry):
    """SASRec (dropout, softmax over all items): 2 ranks at seed 0 vs 1 rank at seeds 0-2."""
    from recsys.sequential.prep import make_split
    from recsys.sequential.serving import load_checkpoint
    from tests.ddp_recipe import sequence_data

    single = [train(ddp_registry, "ddp-sequential", 1, seed=seed) for seed in (0, 1, 2)]
    values = [summary["val_ndcg@10"] for _, summary in single]
    two, two_summary = train(ddp_registry, "ddp-sequential", 2, seed=0)
    spread = statistics.stdev(values)
    assert min(values) > 0.2  # far above chance (10 of 30 items: about 0.1) on the noisy chain
    assert abs(two_summary["val_ndcg@10"] - statistics.mean(values)) <= max(3 * spread, 0.03), (values, two_summary)
    dataset = sequence_data()
    for run in (single[0][0], two):  # the serving loader checks model, dataset, split and data fingerprint
        model = load_checkpoint(Path(run.checkpoint_path), dataset, make_split(dataset, "loo"), name="sasrec")
        scores = model.full_sort_predict({"item_seq": torch.tensor([[0, 1, 2, 3]]), "item_seq_len": torch.tensor([3])})
        assert scores.shape == (1, 31) and torch.isfinite(scores[0, 1:]).all()


def test_every_neural_model_uses_the_same_parameters_at_every_step():
    """What DDP's ``static_graph`` relies on: a loss never switches parameters on or off between steps."""
    from recsys import registry
    from tests.test_contract_anime import tiny_batch as anime_batch, tiny_data as anime_data
    from tests.test_contract_sequential import tiny as sequential_tiny
    from tests.test_contract_videos import tiny_batch, tiny_items

    items = tiny_items()
    data = {"videos": (items, {k: v for k, v in tiny_batch(items).items() if k != "query_text"}),
            "sequential": sequential_tiny(), "anime": (anime_data(), anime_batch())}
    for spec in registry.MODELS:
        if spec.kind != "neural":
            continue
        model_data, batch = data[spec.domain]
        used = []
        for seed in range(3):  # different dropout, masks and sampled rows each step
            torch.manual_seed(seed)
            model = spec.build(model_data)
            model.train()
            model.calculate_loss(batch).backward()
            used.append({name for name, p in model.named_parameters() if p.grad is not None})
        assert used[0] == used[1] == used[2], spec.name
        assert len(used[0]) >= 2, spec.name


@pytest.mark.slow
def test_a_model_with_parameters_its_loss_never_uses_trains_on_two_processes(ddp_registry):
    """EPIDTN never uses its mask token (no contrastive views): the static graph must allow that."""
    run, summary = train(ddp_registry, "ddp-sequential", 2, {"model": "epidtn"}, epochs=2)
    assert summary["processes"] == 2 and len(run.metrics()) == 2 and run.checkpoint_path.is_file()


def _rank_processes(run_id: str) -> list[int]:
    """Pids of the ranks of ``run_id`` (live processes started with ``--rank``; not torchrun's agent)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                command = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if run_id.encode() in command and b"--rank" in command and b"torch.distributed.run" not in command:
                pids.append(int(entry.name))
    return pids


@pytest.mark.slow
def test_stop_reaches_every_rank_of_a_launched_run(ddp_registry):
    run = ddp_registry.create("toy-linear", TrainConfig(epochs=200, lr=0.05, batch_size=32, device="cpu",
                                                        monitor="val_mse", monitor_mode="min"),
                              {"sleep": 0.02}, nproc=2)
    ddp_registry.launch(run)  # the studio's path: a detached worker that starts torchrun
    deadline = time.time() + 90
    while len(run.metrics()) < 2:
        assert time.time() < deadline and run.status()["status"] in ("queued", "running"), run.status()
        time.sleep(0.2)
    assert len(_rank_processes(run.id)) == 2
    run.request_stop()
    while run.status()["status"] == "running":
        assert time.time() < deadline, "the run did not stop"
        time.sleep(0.2)
    assert run.status()["status"] == "stopped" and 2 <= len(run.metrics()) < 200
    while _rank_processes(run.id):
        assert time.time() < deadline, "a rank outlived the stop"
        time.sleep(0.2)


@pytest.mark.slow
@pytest.mark.parametrize("option, expected", [
    ("fail_on_rank", r"training process 1 of 2: RuntimeError: toy failure at epoch 2"),
    # rank 0 usually reports only that its peer vanished, which names rank 1; when torchrun ends it first, both are named
    ("kill_on_rank", r"(training process 1 of 2 was killed or exited without reporting|training processes 0, 1 of 2 "
                     r"ended without reporting: one was killed or exited and torchrun stopped the others) "
                     r"\(torchrun exit status 1.*"),
])
def test_a_crashed_rank_fails_the_run_with_a_clear_error(ddp_registry, option, expected):
    run = ddp_registry.create("toy-linear", TrainConfig(epochs=5, lr=0.05, batch_size=32, device="cpu"),
                              {"sleep": 0.0, option: 1}, nproc=2)
    with pytest.raises(RuntimeError):
        execute(run, ddp_registry)
    status = run.status()
    assert status["status"] == "failed"
    assert re.fullmatch(expected, status["error"]), status["error"]
    assert not run.checkpoint_path.exists() and not _rank_processes(run.id)


@pytest.mark.parametrize("nproc", ["2", 0, 10**6, True])
def test_a_run_whose_config_asks_for_a_bad_number_of_processes_fails_before_launching(registry, nproc):
    import json

    run = registry.create("toy-linear", TrainConfig(epochs=1, device="cpu"))
    config = json.loads(run.config_path.read_text())
    run.config_path.write_text(json.dumps({**config, "nproc": nproc}))  # an edited or planted config.json
    with pytest.raises(ValueError):
        execute(run, registry)
    status = run.status()
    assert status["status"] == "failed" and "nproc must be a whole number from 1 to 64" in status["error"]
    assert not _rank_processes(run.id)


def test_the_throughput_bench_counts_every_example_of_every_epoch(registry, tmp_path):
    from recsys.train.bench import bench

    table = bench(["toy-linear"], [1], epochs=2, repeats=2, options={"sleep": 0.0}, runs_root=tmp_path / "bench")
    row = table.iloc[0]
    # the toy recipe: 8 batches of 32 rows per epoch = 256 examples
    assert (row["model"], row["processes"], row["examples_per_epoch"], row["repeats"]) == ("toy-linear", 1, 256, 2)
    assert row["examples_per_s"] > 0 and row["speedup_vs_first"] == 1.0
