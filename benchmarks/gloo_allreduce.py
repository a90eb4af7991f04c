"""Time one gloo all-reduce of a float32 gradient of a given size between local processes.

Why: DDP all-reduces the whole dense gradient at every step, embedding tables included, so
this cost sets how far data-parallel training scales (docs/scale.md uses it to split a step
into compute and communication). Run it through torchrun::

    python -m torch.distributed.run --standalone --nproc-per-node 2 benchmarks/gloo_allreduce.py --mb 0.25 3.2 32

Rank 0 prints, per size, the median and p90 seconds of ``--repeats`` all-reduces (after
``--warmup``) and the implied bus bandwidth (a ring moves ``2 (N - 1) / N`` of the data).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
import torch.distributed as dist


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mb", type=float, nargs="+", default=[0.25, 3.2, 32.0], help="gradient sizes in MB")
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    for mb in args.mb:
        tensor = torch.ones(int(mb * 2**20 / 4))
        seconds = []
        for step in range(args.warmup + args.repeats):
            dist.barrier()
            started = time.perf_counter()
            dist.all_reduce(tensor)
            if step >= args.warmup:
                seconds.append(time.perf_counter() - started)
        if rank == 0:
            median = float(np.median(seconds))
            moved = 2 * (world - 1) / world * tensor.numel() * 4
            print(f"{world} processes, {mb:g} MB: median {median * 1e3:.2f} ms, p90 "
                  f"{np.percentile(seconds, 90) * 1e3:.2f} ms, bus {moved / median / 1e9:.2f} GB/s", flush=True)
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
