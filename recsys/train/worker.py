"""The detached run worker: ``python -m recsys.train.worker RUN_ID`` executes one queued run.

:meth:`recsys.train.runs.RunRegistry.launch` starts this module rather than the full
CLI so a worker needs nothing but the run registry and the recipes: building the
CLI parser imports every pipeline's command-line glue, and one half-written
pipeline must not be able to stop training runs of the others from starting.
The registry root comes from ``$RECSYS_RUNS_DIR`` (``launch`` sets it).
"""

from __future__ import annotations

import argparse
import logging
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m recsys.train.worker", description=__doc__.split("\n\n")[0])
    parser.add_argument("run_id")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    from recsys.train.runs import RunRegistry, execute

    registry = RunRegistry()
    try:
        run = registry.get(args.run_id)
    except KeyError as error:
        print(f"error: {error.args[0]}", file=sys.stderr)
        return 2
    try:
        execute(run, registry)
    except Exception:  # already recorded in status.json and the log by execute
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
