"""The run registry and its worker: statuses, metrics streaming, stop, crash, queue, worker death.

Runs use the test-only ``toy-linear`` recipe (``tests/toy_recipe.py``): a linear model on
256 random rows, 8 batches per epoch, ``sleep`` seconds per batch. In-process tests call
``execute`` directly; the ``slow`` ones launch real detached workers
(``python -m recsys.train.worker``), which find the toy recipe through
``RECSYS_EXTRA_RECIPES``.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time

import pytest

from recsys.artifacts import atomic_write_bytes, atomic_write_json
from recsys.train.loop import Callback, TrainConfig
from recsys.train.worker import device_lock, execute


def toy_config(**kw) -> TrainConfig:
    base = dict(epochs=3, lr=0.05, batch_size=32, device="cpu", monitor="val_mse", monitor_mode="min")
    return TrainConfig(**{**base, **kw})


def wait_for(predicate, timeout=60.0, every=0.1):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"condition not met within {timeout}s")


# --- atomic writes ----------------------------------------------------------------------------
def test_atomic_write_replaces_and_leaves_no_temp_files(tmp_path):
    path = tmp_path / "status.json"
    atomic_write_json(path, {"status": "queued"})
    atomic_write_json(path, {"status": "running"})
    assert json.loads(path.read_text()) == {"status": "running"}
    assert [p.name for p in tmp_path.iterdir()] == ["status.json"]


def test_failed_atomic_write_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "checkpoint.pt"
    atomic_write_bytes(path, b"old weights")

    def crash(fd):
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", crash)
    with pytest.raises(OSError, match="disk full"):
        atomic_write_bytes(path, b"new weights, half written")
    assert path.read_bytes() == b"old weights"
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]  # the temp file was removed


# --- in-process execution -----------------------------------------------------------------------
def test_done_run_records_metrics_checkpoint_and_can_be_served(registry):
    run = registry.create("toy-linear", toy_config(epochs=3), {"sleep": 0.0})
    assert run.status()["status"] == "queued"
    summary = execute(run, registry)
    status = run.status()
    assert status["status"] == "done" and status["device"] == "cpu"
    assert [r["epoch"] for r in run.metrics()] == [1, 2, 3]
    assert all("train_loss" in r and "val_mse" in r for r in run.metrics())
    assert summary["epochs"] == 3 and summary["val_mse"] == min(r["val_mse"] for r in run.metrics())
    from tests.toy_recipe import load_toy

    assert load_toy(run.checkpoint_path).linear.weight.shape == (1, 4)
    assert "epoch 3" in run.log_tail()
    registry.set_active(run.id)
    assert registry.active_run("toy-linear").id == run.id
    assert run.config["options"] == {"sleep": 0.0} and run.config["train"]["epochs"] == 3


def test_crash_is_recorded_as_failed_with_its_error(registry):
    run = registry.create("toy-linear", toy_config(), {"sleep": 0.0, "fail_at_epoch": 2})
    with pytest.raises(RuntimeError, match="toy failure at epoch 2"):
        execute(run, registry)
    status = run.status()
    assert status["status"] == "failed"
    assert status["error"] == "RuntimeError: toy failure at epoch 2"
    assert len(run.metrics()) == 1  # epoch 1 finished before the crash
    assert not run.checkpoint_path.exists()
    assert "Traceback" in run.log_path.read_text()
    with pytest.raises(RuntimeError, match="no finished checkpoint"):
        registry.set_active(run.id)


def test_unknown_recipe_in_config_is_a_failed_run(registry):
    run = registry.create("toy-linear", toy_config())
    config = run.config
    config["recipe"] = "no-such-model"
    atomic_write_json(run.config_path, config)
    with pytest.raises(KeyError):
        execute(run, registry)
    assert run.status()["status"] == "failed" and "no-such-model" in run.status()["error"]


def test_recipes_of_a_broken_domain_do_not_hide_the_others(registry, monkeypatch):
    # the registry's domains have no importable training module in this test: each is
    # reported once in ``errors`` and the toy extra recipe is still offered
    from recsys import registry as model_registry
    from recsys.train.recipes import all_recipes

    def broken(domain, role):
        raise ImportError(f"recsys.{domain}.{role} is half written")

    monkeypatch.setattr(model_registry, "domain_module", broken)
    errors: list[str] = []
    recipes = all_recipes(errors)
    assert list(recipes) == ["toy-linear"]
    assert len(errors) == len(model_registry.DOMAINS)
    assert all("half written" in e for e in errors)


def test_stop_request_mid_run_gives_stopped(registry):
    run = registry.create("toy-linear", toy_config(epochs=50), {"sleep": 0.0})

    class StopAfterFirstEpoch(Callback):
        def on_epoch_end(self, state, record):
            run.request_stop()

    execute(run, registry, extra_callbacks=[StopAfterFirstEpoch()])
    assert run.status()["status"] == "stopped"
    # the stop file is seen at the first batch of epoch 2, so only epoch 1 is complete
    assert [r["epoch"] for r in run.metrics()] == [1]


def test_run_waits_queued_for_the_device_and_can_be_stopped_while_queued(registry):
    run = registry.create("toy-linear", toy_config(), {"sleep": 0.0})
    other = registry.create("toy-linear", toy_config())
    with device_lock(registry.root, "cpu", other):  # someone else is training on the CPU
        worker = threading.Thread(target=execute, args=(run, registry))
        worker.start()
        time.sleep(1.0)
        assert run.status()["status"] == "queued" and run.metrics() == []
        run.request_stop()
        worker.join(timeout=10)
    assert not worker.is_alive()
    status = run.status()
    assert status["status"] == "stopped" and status["error"] == "stopped while queued"


def test_delete_refuses_live_runs_and_clears_the_served_run(registry):
    run = registry.create("toy-linear", toy_config(epochs=1), {"sleep": 0.0})
    run.set_status("running", pid=os.getpid())
    with pytest.raises(RuntimeError, match="stop it before deleting"):
        registry.delete(run.id)
    run.set_status("queued", pid=None)
    execute(run, registry)
    registry.set_active(run.id)
    registry.delete(run.id)
    assert registry.active_run("toy-linear") is None
    assert registry.list() == []
    with pytest.raises(KeyError):
        registry.get(run.id)


def test_create_rejects_an_unknown_recipe(registry):
    with pytest.raises(KeyError, match="unknown model"):
        registry.create("no-such-model", toy_config())


def test_launch_pid_write_never_moves_a_running_run_back_to_queued(registry):
    run = registry.create("toy-linear", toy_config())
    run.set_status("running", pid=os.getpid())
    assert run.update_status_if("queued", pid=1) is False
    assert run.status()["status"] == "running" and run.status()["pid"] == os.getpid()
    run.set_status("queued")
    assert run.update_status_if("queued", pid=os.getpid()) is True
    assert run.status()["pid"] == os.getpid()


def test_dead_worker_is_reported_failed(registry):
    import subprocess

    run = registry.create("toy-linear", toy_config())
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    run.set_status("running", pid=process.pid)
    status = run.status()
    assert status["status"] == "failed" and "exited without reporting" in status["error"]


# --- real detached workers ------------------------------------------------------------------------
@pytest.mark.slow
def test_second_run_on_the_same_device_waits_until_the_first_finishes(registry):
    # each epoch: 8 batches x 0.05 s = 0.4 s; 4 epochs ~ 1.6 s of training per run
    first = registry.create("toy-linear", toy_config(epochs=4), {"sleep": 0.05})
    second = registry.create("toy-linear", toy_config(epochs=4), {"sleep": 0.05})
    registry.launch(first)
    wait_for(lambda: first.status()["status"] == "running")
    registry.launch(second)
    seen_queued_while_first_runs = False
    while first.status()["status"] == "running":
        if second.status()["status"] == "queued":
            seen_queued_while_first_runs = True
        assert second.status()["status"] in ("queued",), second.status()
        time.sleep(0.1)
    assert seen_queued_while_first_runs
    wait_for(lambda: second.status()["status"] in ("done", "failed", "stopped"), timeout=90)
    assert first.status()["status"] == "done", first.log_tail()
    assert second.status()["status"] == "done", second.log_tail()
    assert second.status()["started"] >= first.status()["finished"]
    assert len(second.metrics()) == 4


@pytest.mark.slow
def test_launched_run_stops_on_request_and_killed_worker_is_detected(registry):
    run = registry.create("toy-linear", toy_config(epochs=500), {"sleep": 0.05})
    registry.launch(run)
    wait_for(lambda: len(run.metrics()) >= 1)
    run.request_stop()
    wait_for(lambda: run.status()["status"] != "running", timeout=30)
    assert run.status()["status"] == "stopped"
    assert len(run.metrics()) < 500

    doomed = registry.create("toy-linear", toy_config(epochs=500), {"sleep": 0.05})
    pid = registry.launch(doomed)
    wait_for(lambda: doomed.status()["status"] == "running")
    os.kill(pid, signal.SIGKILL)
    status = wait_for(lambda: (s := doomed.status())["status"] == "failed" and s, timeout=10)
    assert "exited without reporting" in status["error"]
    with pytest.raises(RuntimeError):
        registry.set_active(doomed.id)


def test_record_metrics_streams_epochs_and_batch_progress(registry):
    from types import SimpleNamespace

    from recsys.train.worker import RecordMetrics

    run = registry.create("toy-linear", toy_config(epochs=4))
    callback = RecordMetrics(run, every=0.0)
    state = SimpleNamespace(step=7, epoch=2, config=toy_config(epochs=4))
    callback.on_batch_end(state, 0.25)
    assert run.status()["status"] == "running" and run.status()["step"] == 7
    assert run.status()["batch_loss"] == 0.25
    callback.on_epoch_end(state, {"epoch": 2, "train_loss": 0.3})
    assert run.metrics() == [{"epoch": 2, "train_loss": 0.3}]
    assert run.status()["epoch"] == 2 and run.status()["epochs"] == 4 and run.status()["step"] == 7
