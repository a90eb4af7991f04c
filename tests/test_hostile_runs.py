"""Hostile input to the run registry, the run worker and ``python -m recsys train|runs``.

Every case here failed before the fix (issue 10): run ids that escape ``runs/``,
damaged run files that crashed ``runs list`` and the pages, ``runs execute`` retraining a
finished run, arguments that ended in tracebacks, and planted checkpoints. Runs use
the test-only toy recipe (``tests/toy_recipe.py``) through the ``registry`` fixture.
"""

from __future__ import annotations

import json
import os
import pickle

import pytest

from recsys import cli
from recsys.artifacts import ArtifactError, atomic_write_json
from recsys.train.loop import TrainConfig
from recsys.train.runs import Run, valid_run_id
from recsys.train.worker import execute


def toy_config(**kw) -> TrainConfig:
    base = dict(epochs=2, lr=0.05, batch_size=32, device="cpu", monitor="val_mse", monitor_mode="min")
    return TrainConfig(**{**base, **kw})


def done_run(registry):
    run = registry.create("toy-linear", toy_config(), {"sleep": 0.0})
    execute(run, registry)
    assert run.status()["status"] == "done"
    return run


def outside_folder(tmp_path):
    """A folder outside runs/ that looks like a run (it has a config.json)."""
    victim = tmp_path / "precious"
    victim.mkdir()
    (victim / "config.json").write_text(json.dumps({"recipe": "toy-linear", "train": {}}))
    (victim / "thesis.tex").write_text("years of work")
    return victim


class Evil:
    """Unpickling this creates a marker file: proof that a load executed code."""

    marker = None

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def pickle_payload(marker) -> bytes:
    Evil.marker = marker
    return pickle.dumps(Evil())


# --- run ids escaping runs/ ---------------------------------------------------------------------
@pytest.mark.parametrize("action", ["delete", "stop", "activate", "execute"])
def test_a_path_is_no_such_run_and_nothing_outside_runs_is_touched(registry, tmp_path, capsys, action):
    victim = outside_folder(tmp_path)
    relative = os.path.relpath(victim, registry.root)  # ../precious
    for run_id in (str(victim), relative, f"{relative}/", "../../precious"):
        code = cli.main(["runs", action, run_id])
        err = capsys.readouterr().err
        assert code in (1, 2) and "no such run" in err, (run_id, err)
        assert "Traceback" not in err
    assert sorted(p.name for p in victim.iterdir()) == ["config.json", "thesis.tex"]  # no STOP, not deleted


def test_a_symlinked_run_folder_pointing_out_of_runs_is_ignored(registry, tmp_path):
    victim = outside_folder(tmp_path)
    link = registry.root / "20260101-000000-toy-linear-abcdef"  # a valid-looking id
    link.symlink_to(victim, target_is_directory=True)
    assert registry.list() == []
    with pytest.raises(KeyError, match="no such run"):
        registry.delete(link.name)
    assert (victim / "thesis.tex").exists()


@pytest.mark.parametrize("run_id", ["", ".", "..", "/", "a/b", "20260101-000000-toy-linear-abcdef/../..",
                                    "20260101-000000-toy-linear-ABCDEF", "x" * 5000, "20260101-000000-a\n-abcdef"])
def test_only_ids_shaped_like_the_registry_s_own_are_valid(run_id):
    assert not valid_run_id(run_id)


def test_ids_the_registry_makes_are_valid(registry):
    run = registry.create("toy-linear", toy_config())
    assert valid_run_id(run.id) and registry.get(run.id).path == run.path


# --- damaged run files --------------------------------------------------------------------------
def damage(run: Run, kind: str) -> str:
    """Damage one file of ``run``; returns a word the reason must contain."""
    if kind == "status without status":
        atomic_write_json(run.status_path, {"pid": 1})
        return "status"
    if kind == "status not an object":
        run.status_path.write_text("[1, 2]")
        return "status"
    if kind == "config empty object":
        atomic_write_json(run.config_path, {})
        return "lacks recipe, train"
    if kind == "config random bytes":
        run.config_path.write_bytes(os.urandom(64) + b"\xff")
        return "not valid JSON"
    if kind == "config truncated":
        run.config_path.write_text(run.config_path.read_text()[:20])
        return "not valid JSON"
    if kind == "status pickle payload":
        run.status_path.write_bytes(pickle_payload(run.path.parent.parent / "pwned"))
        return "not valid JSON"
    if kind == "log symlink":
        (run.path / "log.txt").symlink_to(run.path.parent.parent / "elsewhere.txt")
        return "symbolic link(s): log.txt"
    raise AssertionError(kind)


KINDS = ["status without status", "status not an object", "config empty object", "config random bytes",
         "config truncated", "status pickle payload", "log symlink"]


@pytest.mark.parametrize("kind", KINDS)
def test_a_damaged_run_is_listed_as_damaged_with_its_reason(registry, capsys, kind):
    good = done_run(registry)
    bad = registry.create("toy-linear", toy_config())
    word = damage(bad, kind)
    status = bad.status()
    assert status["status"] == "damaged" and word in status["error"]
    assert bad.recipe == "" or not kind.startswith("config")
    assert good.status()["status"] == "done"
    assert cli.main(["runs", "list"]) == 0
    out = capsys.readouterr().out
    assert f"{bad.id}\tdamaged\t" in out and f"{good.id}\tdone" in out
    with pytest.raises(RuntimeError, match="damaged"):
        execute(bad, registry)
    registry.delete(bad.id)  # a damaged run can be cleaned up
    assert [r.id for r in registry.list()] == [good.id]
    assert not (registry.root.parent / "pwned").exists() and not (registry.root.parent / "elsewhere.txt").exists()


def test_stop_never_follows_a_planted_link(registry, tmp_path):
    run = registry.create("toy-linear", toy_config())
    target = tmp_path / "victim-file"
    run.stop_path.symlink_to(target)
    with pytest.raises(OSError):
        run.request_stop()
    assert not target.exists()


def test_a_truncated_active_file_serves_the_defaults_and_says_so(registry, capsys):
    run = done_run(registry)
    registry.set_active(run.id)
    path = registry.root / "active.json"
    path.write_text(path.read_text()[:7])
    assert registry.active_run("toy-linear") is None
    assert "not valid JSON" in registry.active_problem()
    assert cli.main(["runs", "list"]) == 0
    assert "serving the shipped models" in capsys.readouterr().err
    registry.set_active(run.id)  # serving again repairs the file
    assert registry.active_run("toy-linear").id == run.id and registry.active_problem() is None


def test_an_active_file_naming_a_path_serves_nothing(registry, tmp_path):
    atomic_write_json(registry.root / "active.json", {"toy-linear": str(outside_folder(tmp_path))})
    assert registry.active_run("toy-linear") is None


def test_garbage_lines_in_metrics_are_skipped(registry):
    run = registry.create("toy-linear", toy_config())
    run.metrics_path.write_bytes(b'{"epoch": 1, "train_loss": 0.5}\n[1]\n\xff\xfe garbage\n"text"\n{"epoch": 2')
    assert run.metrics() == [{"epoch": 1, "train_loss": 0.5}]


# --- execute only queued runs -------------------------------------------------------------------
def test_execute_refuses_a_finished_run_and_changes_nothing(registry, capsys):
    run = done_run(registry)
    metrics, checkpoint = run.metrics_path.read_bytes(), run.checkpoint_path.read_bytes()
    status = run.status_path.read_bytes()
    assert cli.main(["runs", "execute", run.id]) != 0
    assert "only a queued run can be executed" in capsys.readouterr().err
    with pytest.raises(RuntimeError, match="only a queued run"):
        execute(run, registry)
    assert run.metrics_path.read_bytes() == metrics and run.checkpoint_path.read_bytes() == checkpoint
    assert run.status_path.read_bytes() == status


def test_execute_refuses_a_run_another_live_worker_holds(registry):
    run = registry.create("toy-linear", toy_config())
    run.set_status("queued", pid=os.getppid())  # a live process that is not us
    with pytest.raises(RuntimeError, match="already taken"):
        execute(run, registry)


# --- train arguments ----------------------------------------------------------------------------
@pytest.mark.parametrize("args, message", [
    (["--lr", "1e12"], "must be at most 10"),
    (["--lr", "nan"], "finite number"),
    (["--batch-size", "0"], "must be at least 1"),
    (["--epochs", "0"], "must be at least 1"),
    (["--epochs", "-3"], "must be at least 1"),
    (["--epochs", "1e3"], "not a valid int"),
])
def test_bad_train_arguments_are_one_clear_line(registry, capsys, args, message):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["train", "toy-linear", *args])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and message in err and "Traceback" not in err
    assert registry.list() == []  # nothing was recorded


def test_a_diverging_run_fails_with_loss_not_finite_and_no_traceback(registry, capsys):
    code = cli.main(["train", "toy-linear", "--epochs", "3", "--option", "diverge=true", "--option", "sleep=0"])
    captured = capsys.readouterr()
    assert code == 1
    [run] = registry.list()
    status = run.status()
    assert status["status"] == "failed"
    assert status["error"].startswith("loss is not finite at epoch 1")
    assert "Traceback" not in captured.err and "loss is not finite at epoch 1" in captured.err
    assert "Traceback" in run.log_path.read_text()  # the details are in the run's log
    assert not run.checkpoint_path.exists()


def test_a_config_json_with_bad_settings_fails_clearly(registry):
    run = registry.create("toy-linear", toy_config())
    config = run.config
    config["train"]["batch_size"] = 0
    atomic_write_json(run.config_path, config)
    with pytest.raises(ValueError, match="batch_size must be"):
        execute(run, registry)
    assert run.status()["status"] == "failed" and "batch_size must be" in run.status()["error"]


# --- planted checkpoints ------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["pickle", "random", "truncated", "foreign"])
def test_a_planted_checkpoint_is_refused_naming_the_file_and_runs_nothing(registry, tmp_path, kind):
    from recsys.artifacts import write_artifact
    from tests.toy_recipe import load_toy

    run = done_run(registry)
    marker = tmp_path / "pwned"
    good = run.checkpoint_path.read_bytes()
    if kind == "pickle":
        run.checkpoint_path.write_bytes(pickle_payload(marker))
    elif kind == "random":
        run.checkpoint_path.write_bytes(os.urandom(4096))
    elif kind == "truncated":
        run.checkpoint_path.write_bytes(good[: len(good) // 2])
    else:  # a valid artifact of another kind
        write_artifact(run.checkpoint_path, {"w": [1.0]}, {"model": "dcdt"}, "recsys.checkpoint/1")
    with pytest.raises(ArtifactError, match="checkpoint.safetensors"):
        load_toy(run.checkpoint_path)
    assert not marker.exists()
    assert registry.get(run.id).status()["status"] == "done"  # listing and status never open it
