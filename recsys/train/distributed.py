"""Data-parallel training with PyTorch's own engine: ``torchrun`` + ``DistributedDataParallel``.

How a run on N processes works (``python -m recsys train MODEL --nproc N``, or the studio's
"processes" field):

* the launcher (:func:`launch_ranks`) starts ``torchrun --standalone --nproc-per-node N -m
  recsys.train.worker RUN_ID --rank``; torchrun gives every process ``RANK``,
  ``WORLD_SIZE``, ``LOCAL_RANK`` and a rendezvous, and :func:`process_group` joins it
  (gloo on the CPU, NCCL on CUDA, one GPU per process);
* every rank builds the same data and model and draws the same seeded batches; of each
  *global* batch it keeps its own contiguous slice of rows (:func:`shard`), so N processes
  at batch size B see exactly the examples of one process at B, split N ways, and
  ``DistributedDataParallel`` averages their gradients (for a loss that is a mean over
  rows this is the one-process gradient; in-batch-negative losses see B/N negatives per
  rank, as with any DDP);
* rank 0 alone evaluates, writes the run registry (status, metrics, checkpoint) and
  :func:`broadcast`\\ s each epoch's record, so early stopping decides the same on every
  rank; a Stop request seen by any rank is agreed by :func:`any_rank` every
  :data:`STOP_EVERY` steps, so all ranks leave the loop at the same step (a rank left
  waiting in an all-reduce would hang); a rank that fails (a non-finite loss, a crash)
  exits, torchrun ends the others, and the launcher records the run as failed with
  that rank's error.

Why not home-made: torchrun and DDP handle rendezvous, bucketing and overlap of the
all-reduce with backward, and the same ranks run on N machines under torchrun's ``--nnodes``
(docs/scale.md says what else that needs).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist

#: how long a rank waits for the others (rendezvous, a collective) before failing the run
TIMEOUT = timedelta(minutes=30)
#: steps between two agreements on stopping (each is a small all-reduce, about 0.7 ms on gloo here)
STOP_EVERY = 10


def world() -> tuple[int, int]:
    """``(rank, world_size)``: ``(0, 1)`` outside a process group."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def launched_by_torchrun() -> bool:
    return "TORCHELASTIC_RUN_ID" in os.environ and "WORLD_SIZE" in os.environ


@contextlib.contextmanager
def process_group(device: str) -> Iterator[None]:
    """Join torchrun's process group for the block (gloo on the CPU, NCCL with one GPU per rank)."""
    if dist.is_initialized() or int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        yield
        return
    cuda = str(device).startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    if cuda:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group("nccl" if cuda else "gloo", timeout=TIMEOUT)
    try:
        yield
    finally:
        dist.destroy_process_group()


def local_device(device: torch.device) -> torch.device:
    """Each rank's own GPU (``cuda:LOCAL_RANK``); the CPU stays the CPU."""
    if device.type == "cuda" and world()[1] > 1:
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return device


def batch_rows(batch: dict[str, Any]) -> int:
    """The number of examples of a batch: its first entry's length (entries hold one row per example).

    A first entry without rows (a scalar) counts as one example, so counting never fails a run.
    """
    first = next(iter(batch.values()), ())
    if torch.is_tensor(first):
        return int(first.shape[0]) if first.ndim else 1
    return len(first) if hasattr(first, "__len__") else 1


def shard(batch: dict[str, Any], rank: int, world_size: int) -> dict[str, Any]:
    """Rank ``rank``'s contiguous slice of every entry (sizes differ by at most one row).

    Example: 5 rows on 2 ranks -> rows 0-1 on rank 0, rows 2-4 on rank 1. A batch whose
    entries differ in length cannot be split by rows and is refused, naming the lengths.
    """
    sizes = {key: (value.shape[0] if torch.is_tensor(value) else len(value)) for key, value in batch.items()}
    if len(set(sizes.values())) > 1:
        raise ValueError(f"cannot split a batch across processes: its entries have different lengths {sizes}; "
                         "every batch entry must hold one row per example")
    n = batch_rows(batch)
    bounds = [n * r // world_size for r in range(world_size + 1)]
    start, stop = bounds[rank], bounds[rank + 1]
    return {key: value[start:stop] for key, value in batch.items()}


def any_rank(flag: bool, device: torch.device) -> bool:
    """True on every rank when ``flag`` is true on at least one (an all-reduce of a 0/1 tensor)."""
    value = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item() > 0)


def mean_over_ranks(value: float, device: torch.device) -> float:
    """The mean of a float over ranks (NaN and inf propagate, so every rank sees a divergence)."""
    tensor = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(tensor)
    return float(tensor.item()) / world()[1]


def broadcast(obj: Any) -> Any:
    """Rank 0's ``obj`` on every rank (a JSON-like record; torch's object broadcast)."""
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def gather(obj: Any) -> list[Any]:
    """Every rank's ``obj``, in rank order, on every rank."""
    out: list[Any] = [None] * world()[1]
    dist.all_gather_object(out, obj)
    return out


class LossModule(torch.nn.Module):
    """``forward(batch) = model.calculate_loss(batch)``, so DDP sees the loss as a forward pass.

    DDP synchronises gradients for what runs inside its wrapped module's ``forward``; the
    project's contract trains through ``calculate_loss``, which this wrapper exposes.
    """

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, batch: dict[str, Any]) -> torch.Tensor:
        return self.model.calculate_loss(batch)


def data_parallel(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """``model``'s loss wrapped in DDP (rank 0's initial weights are broadcast to the others).

    ``static_graph``: every loss here uses the same parameters at every step (checked for
    every registered model by ``tests/test_distributed.py``), though some never use a few
    (EPIDTN's mask token, CL-DSSM's position table); a static graph lets DDP skip those
    without ``find_unused_parameters``' walk over the autograd graph at every step (that
    walk cost 5-13 % of the implicit two-tower's 2-process throughput here).
    """
    ids = [device.index] if device.type == "cuda" else None
    return torch.nn.parallel.DistributedDataParallel(LossModule(model), device_ids=ids, static_graph=True)


def torchrun_command(nproc: int, module: str, *args: str) -> list[str]:
    """The torchrun command line that runs ``python -m module args`` on ``nproc`` local processes."""
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
            "-m", module, *args]


def launch_ranks(nproc: int, module: str, *args: str, env: dict[str, str] | None = None) -> int:
    """Run ``module`` on ``nproc`` processes through torchrun and wait; returns torchrun's exit status.

    One torch thread per process on the CPU unless ``OMP_NUM_THREADS`` says otherwise
    (torchrun's own default: N processes already use N cores).
    """
    env = {**os.environ, **(env or {})}
    env.setdefault("OMP_NUM_THREADS", "1")
    return subprocess.run(torchrun_command(nproc, module, *args), env=env, check=False).returncode
