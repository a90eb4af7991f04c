"""CUDA check: every neural model trains on a GPU, and the CL-EPIDTN reproduction's jobs run there.

The project's dev and CI machines have no GPU, so the CUDA path (``--device cuda``, ``device=auto``)
is checked on a lent GPU machine with this script, in three steps::

    python benchmarks/cuda_check.py smoke --out DIR              # 1. each neural model, 1 epoch on CUDA
    python benchmarks/cuda_check.py jobs --out DIR --cpu-state STATE --workers 12   # 2. + 3., below
    python benchmarks/cuda_check.py collect --cuda DIR --cpu-state STATE            # back on the dev machine

1. ``smoke``: every neural entry of the registry trains for one epoch through its studio recipe
   (``python -m recsys train NAME --device cuda --epochs 1``), one after another; DIR/smoke.json
   says, per model, whether it finished, in how long, and the end of its output.
2. ``jobs`` re-runs on CUDA the converged profile's main-table jobs of CL-EPIDTN and SASRec that
   STATE (a copy of the CPU run's state directory) holds from the CPU, so that ``collect`` can set
   CUDA beside CPU for the same settings and seeds;
3. and runs every neural job of the profile that STATE does not hold yet (``--dataset``: ml-100k's
   sweeps and variants of ours, or another data set's whole profile). All go to DIR/jobs, one JSON
   file per job as it finishes (:class:`recsys.sequential.jobs.JobStore`); stop it at any time,
   nothing finished is lost.

``collect`` copies every result the CPU run's state directory lacks into it (a job already there
is kept: the CPU result came first) and writes ``docs/results/cl-epidtn/converged/cuda_vs_cpu.csv``
(+ ``.md``): each main-table job's test metrics, best epoch and wall seconds on both devices.
GPU runs are not bit-identical to CPU runs at the same seed (other kernels, other summation
order), so the comparison is of the spread across seeds, not of digits.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from recsys import registry  # noqa: E402
from recsys.artifacts import atomic_write_json  # noqa: E402
from recsys.eval.stats import comparison_table  # noqa: E402
from recsys.eval.tables import frame_to_markdown  # noqa: E402
from recsys.sequential.experiments import CONVERGED  # noqa: E402
from recsys.sequential.jobs import JobStore, device_name, run_pending, unique  # noqa: E402
from recsys.sequential.prep import load_dataset  # noqa: E402
from recsys.sequential.reproduce import plan  # noqa: E402

log = logging.getLogger("cuda_check")
COMPARED = ("cl-epidtn", "sasrec")  # models whose main-table jobs are trained on both devices
RESULTS = ROOT / "docs" / "results" / "cl-epidtn" / "converged"


def smoke(out: Path, timeout: int, models: list[str] | None = None) -> list[dict]:
    """Train every neural registry model (or ``models``) for one epoch on CUDA through ``python -m recsys train``."""
    rows = []
    for name in models or registry.names(kind="neural"):
        started = time.perf_counter()
        try:
            done = subprocess.run([sys.executable, "-m", "recsys", "train", name, "--device", "cuda", "--epochs", "1"],
                                  cwd=ROOT, capture_output=True, text=True, timeout=timeout)
            rc, text = done.returncode, done.stdout + done.stderr
        except subprocess.TimeoutExpired as expired:
            rc, text = "timeout", f"{expired.stdout or ''}{expired.stderr or ''}"
        row = {"model": name, "rc": rc, "seconds": round(time.perf_counter() - started, 1),
               "tail": [line for line in str(text).splitlines() if line.strip()][-6:]}
        log.info("%s: rc %s in %.1f s", name, rc, row["seconds"])
        rows.append(row)
        (out / "smoke.json").write_text(json.dumps(rows, indent=2, default=str))
    return rows


def cuda_jobs(cpu_state: Path, dataset: str = "ml-100k") -> list:
    """The main-table jobs of :data:`COMPARED` that ``cpu_state`` holds from the CPU (CL-EPIDTN first), then
    every neural job of the profile that ``cpu_state`` lacks (main table, sweeps, variants of ours), SASRec last."""
    planned = plan(CONVERGED, [dataset], registry.names("sequential"))[dataset]
    held = JobStore(cpu_state)

    def on_cpu(job) -> bool:
        record = held.get(job)
        return record is not None and device_name(record) == "cpu"

    compared = {model: [job for job in planned if job.role == "main" and job.model == model and on_cpu(job)]
                for model in COMPARED}
    pending = [job for job in planned if job.neural and held.get(job) is None]
    return unique([*compared["cl-epidtn"], *pending, *compared["sasrec"]])


def collect(cuda_dir: Path, cpu_state: Path, out: Path, commit: str | None, dataset: str = "ml-100k") -> None:
    """Every result the CPU state lacks into it; CPU vs CUDA for the main jobs trained on both, to ``out``.

    The GPU machine gets a copy of the working tree whose ``.git`` (if any) may be an older commit
    than the files it runs (seen: the session's starting commit), so ``commit``, the one that was
    sent, replaces what its records name.
    """
    import pandas as pd

    planned = plan(CONVERGED, [dataset], registry.names("sequential"))[dataset]
    cuda, cpu = JobStore(cuda_dir), JobStore(cpu_state)
    copied, rows = 0, []
    for job in unique(planned):
        record, cpu_record = cuda.get(job), cpu.get(job)
        if record is None:
            continue
        if cpu_record is None:
            atomic_write_json(cpu.path(job), {**record, "git_commit": commit or record.get("git_commit")})
            copied += 1
        elif job.role == "main" and job.model in COMPARED and device_name(cpu_record) == "cpu":
            for device, rec in (("cpu", cpu_record), ("cuda", record)):
                rows.append({"model": job.model, "split": job.split, "seed": job.seed, "device": device,
                             "device_name": rec.get("device", "cpu"), **rec["metrics"], "best_epoch": rec["best_epoch"],
                             "epochs_run": rec["epochs_run"], "wall_seconds": rec["wall_seconds"]})
    log.info("copied %d results into %s", copied, cpu.root)
    if not rows:
        return
    table = pd.DataFrame(rows)
    out.mkdir(parents=True, exist_ok=True)
    name = "cuda_vs_cpu" if dataset == "ml-100k" else f"cuda_vs_cpu_{dataset}"
    table.to_csv(out / f"{name}.csv", index=False)
    metrics = [m for m in ("hit@10", "ndcg@10", "recall@50") if m in table]
    summary = table.groupby(["model", "split", "device"])[[*metrics, "best_epoch", "wall_seconds"]].agg(["mean", "std"])
    summary.columns = [f"{a} {b}" for a, b in summary.columns]
    summary = summary.reset_index()
    for column in [c for c in summary.columns if c.startswith(("best_epoch", "wall_seconds"))]:
        summary[column] = [f"{v:.1f}" for v in summary[column]]  # epochs and seconds: one decimal is plenty
    tests = []
    for (model, split), group in table.groupby(["model", "split"]):
        metric = "hit@10" if split == "loo" else "recall@50"
        values = {device: part[metric].dropna().tolist() for device, part in group.groupby("device")}
        if len(values.get("cpu", [])) > 1 and len(values.get("cuda", [])) > 1:
            row = comparison_table(values, "cpu", metric).iloc[0]
            tests.append({"model": model, "split": split, "metric": metric, "cuda - cpu": row["diff"],
                          "Welch p": row["p"]})
    (out / f"{name}.md").write_text(
        f"# CUDA vs CPU: the converged profile's main-table jobs on both devices ({dataset})\n\n"
        "Command: `python benchmarks/cuda_check.py jobs ...` on the GPU machine, then `collect` here (see the script).\n"
        "Same settings and seeds; not bit-identical across devices, so compare means and spreads over seeds. Wall\n"
        "seconds are not a speed comparison: the CPU jobs shared 2 cores with another job, the CUDA ones one GPU\n"
        "with 12 others.\n\n" + frame_to_markdown(summary) + "\n\n"
        "Each device's seeds against the other's (Welch; uncorrected, one test per row):\n\n"
        + frame_to_markdown(pd.DataFrame(tests)) + "\n")


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("step", choices=["smoke", "jobs", "collect"])
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "cuda-check")
    parser.add_argument("--cpu-state", type=Path, help="the CPU run's reproduce state directory (holds jobs/)")
    parser.add_argument("--cuda", type=Path, help="collect: the state directory the GPU machine wrote (its --out)")
    parser.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 2) - 4))
    parser.add_argument("--timeout", type=int, default=180, help="smoke: seconds per model")
    parser.add_argument("--dataset", default="ml-100k", help="jobs, collect: the data set of the profile's jobs")
    parser.add_argument("--models", nargs="+", help="smoke: these models only (default: every neural one)")
    parser.add_argument("--commit", help="collect: the commit sent to the GPU machine (its records may name another)")
    args = parser.parse_args()
    if args.step == "smoke":
        args.out.mkdir(parents=True, exist_ok=True)
        rows = smoke(args.out, args.timeout, args.models)
        return 0 if all(row["rc"] == 0 for row in rows) else 1
    if args.cpu_state is None:
        parser.error(f"{args.step} needs --cpu-state")
    if args.step == "collect":
        collect(args.cuda or args.out, args.cpu_state, RESULTS, args.commit, args.dataset)
        return 0
    import torch

    if not torch.cuda.is_available():
        parser.error("no CUDA device: the jobs would run on the CPU")
    jobs = cuda_jobs(args.cpu_state, args.dataset)
    log.info("%d jobs on %s with %d workers", len(jobs), torch.cuda.get_device_name(0), args.workers)
    store = JobStore(args.out)
    done = run_pending(jobs, store, lambda name: load_dataset(name, CONVERGED.anime_max_users), args.workers,
                       threads=1, progress=False)
    log.info("%d jobs finished", done)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
