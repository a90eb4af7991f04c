"""The resumable reproduction on the toy dataset: interrupted runs resume, changed settings re-run."""

from __future__ import annotations

import dataclasses
import json

import pandas as pd
import pytest

from recsys.sequential import jobs as jobs_module
from recsys.sequential import reproduce as reproduce_module
from recsys.sequential.experiments import ReproduceSettings
from recsys.sequential.jobs import JobStore
from recsys.sequential.reproduce import make_job, plan, reproduce
from tests.sequential_toy import toy_dataset

REAL_EXECUTE = jobs_module.execute
MODELS = ["most-popular", "wals", "dssm"]
# 2 seeds on leave-one-out + 1 on the ratio split, 3 models: 9 jobs; dssm may train 30 epochs but
# stops once validation NDCG@10 has not improved for 2 epochs
SETTINGS = ReproduceSettings(profile="converged", seeds=2, ratio_seeds=1, epochs=30, patience=2, batch_size=16,
                             lr=1e-2, max_seq_len=5, sweep={}, threads=1, workers=1,
                             shared={"embedding_dim": 8, "dropout": 0.0})


@pytest.fixture
def toy(monkeypatch):
    monkeypatch.setattr(reproduce_module, "load_dataset",
                        lambda name, users=None: dataclasses.replace(toy_dataset(length=8), name=name))


class Interrupted(BaseException):
    """Stands for the machine going away mid-run (not an Exception, which the runner logs and skips;
    not KeyboardInterrupt, which would also stop pytest itself)."""


def counting(monkeypatch, stop_after: int | None = None) -> list[str]:
    """Record every job that trains; with ``stop_after``, the next one is interrupted."""
    calls: list[str] = []
    real = REAL_EXECUTE

    def execute(job, dataset, split):
        if stop_after is not None and len(calls) == stop_after:
            raise Interrupted
        calls.append(job.label)
        return real(job, dataset, split)

    monkeypatch.setattr(jobs_module, "execute", execute)
    return calls


def test_an_interrupted_run_resumes_without_redoing_finished_jobs(tmp_path, toy, monkeypatch):
    state, out = tmp_path / "state", tmp_path / "out"
    first = counting(monkeypatch, stop_after=4)
    with pytest.raises(Interrupted):
        reproduce(["ml-100k"], SETTINGS, MODELS, out, progress=False, state_dir=state)
    stored = {p.name: json.loads(p.read_text()) for p in (state / "jobs").glob("*.json")}
    assert len(first) == len(stored) == 4  # each job was on disk as soon as it finished

    second = counting(monkeypatch)
    reproduce(["ml-100k"], SETTINGS, MODELS, out, progress=False, state_dir=state)
    assert len(second) == 9 - 4 and not set(first) & set(second)
    runs = pd.read_csv(out / "ml-100k_runs.csv")
    assert len(runs) == 9
    for record in stored.values():  # the first sitting's numbers are the ones reported
        s = record["settings"]
        row = runs[(runs["model"] == s["model"]) & (runs["seed"] == s["seed"]) & (runs["split"] == s["split"])]
        metric = "hit@10" if s["split"] == "loo" else "recall@10"
        assert row[metric].item() == pytest.approx(record["metrics"][metric])
    meta = json.loads((out / "ml-100k_meta.json").read_text())
    assert (meta["jobs_done"], meta["jobs_total"], meta["complete"]) == (9, 9, True)
    assert meta["cpu_seconds_total"] == pytest.approx(runs["cpu_seconds"].sum(), abs=0.01) and runs["cpu_seconds"].max() > 0

    third = counting(monkeypatch)
    reproduce(["ml-100k"], SETTINGS, MODELS, out, progress=False, state_dir=state)
    assert third == []  # everything finished: nothing trains


def test_best_epoch_is_reported_below_the_epoch_budget(tmp_path, toy, monkeypatch):
    counting(monkeypatch)
    settings = dataclasses.replace(SETTINGS, seeds=1, ratio_seeds=1)
    reproduce(["ml-100k"], settings, ["dssm"], tmp_path / "out", progress=False, state_dir=tmp_path / "state")
    runs = pd.read_csv(tmp_path / "out" / "ml-100k_runs.csv")
    # the toy's pattern is learnt within a few epochs; patience 2 then stops well before 30
    assert (runs["max_epochs"] == 30).all() and runs["stopped_early"].all()
    assert (runs["best_epoch"] < runs["max_epochs"]).all() and (runs["epochs_run"] == runs["best_epoch"] + 2).all()
    curves = pd.read_csv(tmp_path / "out" / "ml-100k_curves.csv")
    assert len(curves) == runs["epochs_run"].sum() and (curves["val_metric_name"] == "ndcg@10").all()
    meta = json.loads((tmp_path / "out" / "ml-100k_meta.json").read_text())
    assert meta["profile"] == "converged" and meta["settings"]["patience"] == 2 and meta["deviations"]


def test_a_changed_setting_gets_a_new_key_and_reruns(tmp_path, toy, monkeypatch):
    job = make_job("ml-100k", "dssm", "loo", 0, SETTINGS)
    assert make_job("ml-100k", "dssm", "loo", 0, SETTINGS).key == job.key  # deterministic
    for changed in (dataclasses.replace(SETTINGS, lr=2e-2), dataclasses.replace(SETTINGS, max_seq_len=6),
                    dataclasses.replace(SETTINGS, shared={"embedding_dim": 16, "dropout": 0.0})):
        assert make_job("ml-100k", "dssm", "loo", 0, changed).key != job.key
    assert make_job("ml-100k", "dssm", "loo", 1, SETTINGS).key != job.key
    assert make_job("ml-100k", "dssm", "ratio", 0, SETTINGS).key != job.key
    # a fitted model ignores the optimiser settings, so a new learning rate does not re-run it
    wals = make_job("ml-100k", "wals", "loo", 0, SETTINGS)
    assert make_job("ml-100k", "wals", "loo", 0, dataclasses.replace(SETTINGS, lr=2e-2)).key == wals.key
    # a sweep point at the profile's own value (lambda 1.0 is CL-EPIDTN's default) is the main job
    sweep = plan(dataclasses.replace(SETTINGS, sweep={"lambda_cl": [0.5, 1.0]}), ["ml-100k"], ["cl-epidtn"])["ml-100k"]
    main = {j.key for j in sweep if j.role == "main"}
    assert [j.key in main for j in sweep if j.role == "sweep"] == [False, False, True, True]

    state, out = tmp_path / "state", tmp_path / "out"
    counting(monkeypatch)
    reproduce(["ml-100k"], SETTINGS, MODELS, out, progress=False, state_dir=state)
    rerun = counting(monkeypatch)
    reproduce(["ml-100k"], dataclasses.replace(SETTINGS, lr=2e-2), MODELS, out, progress=False, state_dir=state)
    assert sorted(rerun) == ["ml-100k dssm seed 0 loo", "ml-100k dssm seed 0 ratio", "ml-100k dssm seed 1 loo"]

    # a result file holding other settings, or a damaged one, is not trusted: the job runs again
    store = JobStore(state)
    record = json.loads(store.path(job).read_text())
    store.path(job).write_text(json.dumps({**record, "settings": {**record["settings"], "seed": 7}}))
    assert store.get(job) is None
    store.path(job).write_text("{not json")
    assert store.get(job) is None


def test_a_failing_job_is_skipped_and_retried_by_the_next_run(tmp_path, toy, monkeypatch):
    state, out = tmp_path / "state", tmp_path / "out"
    calls = counting(monkeypatch)

    def diverge(job, dataset, split):
        if job.model == "dssm" and job.seed == 1:
            raise RuntimeError("loss is not finite")
        return REAL_EXECUTE(job, dataset, split)

    monkeypatch.setattr(jobs_module, "execute", diverge)
    reproduce(["ml-100k"], SETTINGS, MODELS, out, progress=False, state_dir=state)
    meta = json.loads((out / "ml-100k_meta.json").read_text())
    assert (meta["jobs_done"], meta["complete"]) == (8, False)  # dssm seed 1 loo is missing, the rest finished
    calls = counting(monkeypatch)
    reproduce(["ml-100k"], SETTINGS, MODELS, out, progress=False, state_dir=state)
    assert calls == ["ml-100k dssm seed 1 loo"]


def test_export_only_marks_a_partial_run_incomplete(tmp_path, toy, monkeypatch):
    state, out = tmp_path / "state", tmp_path / "out"
    counting(monkeypatch, stop_after=2)
    with pytest.raises(Interrupted):
        reproduce(["ml-100k"], SETTINGS, MODELS, out, progress=False, state_dir=state)
    calls = counting(monkeypatch)
    reproduce(["ml-100k"], SETTINGS, MODELS, out, progress=False, state_dir=state, export_only=True)
    assert calls == []
    meta = json.loads((out / "ml-100k_meta.json").read_text())
    assert (meta["jobs_done"], meta["jobs_total"], meta["complete"]) == (2, 9, False)
    assert "INCOMPLETE" in (out / "ml-100k.md").read_text() and len(pd.read_csv(out / "ml-100k_runs.csv")) == 2


def test_jobs_trained_on_a_gpu_are_counted_apart_from_cpu_time(tmp_path, toy, monkeypatch):
    """A run finished partly on a GPU machine: CPU-hours count the CPU jobs only, the GPU's by wall time.

    Of the 9 jobs, the 3 dssm ones are relabelled as trained on CUDA (cpu 5 s, wall 7 s each), so
    by_device says cuda: 3 jobs, 21 wall-seconds; cpu: the other 6 jobs and their own CPU seconds.
    """
    real = REAL_EXECUTE

    def execute(job, dataset, split):
        record = real(job, dataset, split)
        if job.model == "dssm":
            record.update(device="cuda (Fake GPU)", cpu_seconds=5.0, wall_seconds=7.0)
        return record

    monkeypatch.setattr(jobs_module, "execute", execute)
    out = tmp_path / "out"
    reproduce(["ml-100k"], SETTINGS, MODELS, out, progress=False, state_dir=tmp_path / "state")
    meta = json.loads((out / "ml-100k_meta.json").read_text())
    runs = pd.read_csv(out / "ml-100k_runs.csv")
    assert meta["by_device"]["cuda (Fake GPU)"] == {"jobs": 3, "cpu_seconds": 15.0, "wall_seconds": 21.0}
    on_cpu = runs[runs["model"] != "dssm"]
    assert meta["by_device"]["cpu"]["jobs"] == 6 and set(on_cpu["device"]) == {"cpu"}
    assert meta["cpu_seconds_total"] == pytest.approx(on_cpu["cpu_seconds"].sum(), abs=0.01)
    assert set(runs.loc[runs["model"] == "dssm", "device"]) == {"cuda (Fake GPU)"}
    markdown = (out / "ml-100k.md").read_text()
    assert "3 jobs on cuda (Fake GPU), 0.01 wall-hours" in markdown and "(6 jobs)" in markdown


def test_variants_of_ours_are_planned_exported_and_tested_against_sasrec(tmp_path, toy, monkeypatch):
    """Settings with one variant of ours: its jobs follow the main table's, and its rows go to their own files.

    A fake trainer gives HR@10 = 0.10 + seed/100 to SASRec and 0.20 + seed/100 to the variant (loo),
    so ours leads SASRec by exactly +0.10 at every seed.
    """
    def execute(job, dataset, split):
        base = 0.20 if job.ours else 0.10 if job.model == "sasrec" else 0.05
        metric = {"hit@10": base + job.seed / 100, "hit@50": 0.5, "ndcg@10": 0.05} if split.name == "loo" else \
            {"recall@10": 0.1, "recall@50": base + job.seed / 100}
        return {"key": job.key, "settings": job.settings(), "metrics": metric, "best_epoch": 2, "epochs_run": 4,
                "max_epochs": 30, "stopped_early": True, "stop_reason": "early-stopped", "monitor": "ndcg@10",
                "cpu_seconds": 1.0, "wall_seconds": 1.0, "torch_threads": 1, "device": "cpu (1 threads)",
                "history": [{"epoch": 1, "train_loss": 1.0, "val_ndcg@10": 0.1}]}

    monkeypatch.setattr(jobs_module, "execute", execute)
    settings = dataclasses.replace(SETTINGS, seeds=3, ratio_seeds=3, ours={"wide": {"embedding_dim": 16}})
    planned = plan(settings, ["ml-100k"], ["cl-epidtn", "sasrec"])["ml-100k"]
    roles = [job.role for job in planned]
    assert roles == ["main"] * 12 + ["ours"] * 6  # 2 models x 3 seeds x 2 splits, then 3 seeds x 2 splits
    assert planned[-1].label == "ml-100k cl-epidtn seed 2 ratio ours:wide"
    out = tmp_path / "out"
    reproduce(["ml-100k"], settings, ["cl-epidtn", "sasrec"], out, progress=False, state_dir=tmp_path / "state")
    ours = pd.read_csv(out / "ml-100k_ours.csv")
    assert set(ours["model"]) == {"ours: wide"} and len(ours) == 6
    tests = pd.read_csv(out / "ml-100k_ours_ttests.csv").set_index(["metric", "model"])
    assert tests.loc[("hit@10", "ours: wide"), "diff"] == pytest.approx(0.10)  # variant − SASRec
    assert tests.loc[("hit@10", "ours: wide"), "reference"] == "sasrec"
    assert "## Variants of ours (not the paper's model) against SASRec" in (out / "ml-100k.md").read_text()
    runs = pd.read_csv(out / "ml-100k_runs.csv")
    assert "ours: wide" not in set(runs["model"])  # the main table holds the paper's models only
    meta = json.loads((out / "ml-100k_meta.json").read_text())
    assert (meta["jobs_done"], meta["jobs_total"], meta["ours_done"], meta["ours_total"]) == (12, 12, 6, 6)


def test_a_run_that_ends_at_its_budget_is_rerun_once_with_twice_the_epochs(tmp_path, toy, monkeypatch):
    """Converged tables need runs that stopped on their own: one that used every epoch is trained again, longer.

    One epoch with patience 1: dssm cannot stop early (1 epoch run of 1 allowed), so it is re-run with
    2 epochs and reported in its place; wals and most-popular train no epochs and are never re-run.
    """
    state, out = tmp_path / "state", tmp_path / "out"
    settings = dataclasses.replace(SETTINGS, seeds=1, epochs=1, patience=1)
    calls = counting(monkeypatch)
    reproduce(["ml-100k"], settings, MODELS, out, progress=False, state_dir=state)
    # 3 models x (1 loo + 1 ratio) = 6 jobs, then dssm's 2 again, longer
    assert len(calls) == 6 + 2 and calls[-2:] == ["ml-100k dssm seed 0 loo", "ml-100k dssm seed 0 ratio"]
    runs = pd.read_csv(out / "ml-100k_runs.csv")
    dssm = runs[runs["model"] == "dssm"]
    assert len(runs) == 6 and set(dssm["max_epochs"]) == {2}  # the longer runs replace the short ones
    assert set(runs.loc[runs["model"] != "dssm", "max_epochs"]) == {0}
    meta = json.loads((out / "ml-100k_meta.json").read_text())
    assert (meta["jobs_done"], meta["jobs_total"], meta["complete"]) == (6, 6, True)
    again = counting(monkeypatch)  # a re-run finds both the short and the longer runs stored: nothing trains
    reproduce(["ml-100k"], settings, MODELS, out, progress=False, state_dir=state)
    assert again == []
    quick = counting(monkeypatch)  # without early stopping (quick) the budget is the point: no re-run
    reproduce(["ml-100k"], dataclasses.replace(settings, patience=None), MODELS, tmp_path / "q", progress=False,
              state_dir=tmp_path / "q-state")
    assert len(quick) == 6
