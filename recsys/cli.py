"""``python -m recsys``: the command line over the same domain modules the app uses.

Verbs::

    prepare            build what serving reads and git does not hold (the ONNX query encoders, the
                       video serving pack) into the cache; the install command runs it once
    models             every registered model: domain, kind, paper (``--format json``)
    train MODEL        train any registered model (``--nproc N``: on N processes); the run is recorded in runs/
    runs ...           list / stop / delete / activate runs (and the worker's `execute`)
    evaluate DOMAIN    evaluation tables (videos, anime)
    recommend DOMAIN   recommendations as JSON lines
    bench DOMAIN       latency benchmarks; ``bench training``: throughput on 1 and N processes;
                       ``bench ann``: faiss IVF / HNSW recall@10 and latency against the exact index
    reproduce NAME     multi-seed reproduction of a paper's tables (cl-epidtn)

Domain verbs come from each domain's CLI module (``recsys.<domain>.cli``, the domains
listed in :data:`recsys.registry.DOMAINS`): its ``register_cli(verbs)`` adds sub-parsers
to ``verbs["evaluate"]`` and so on, setting ``func`` to a handler ``(args) -> int``.
Numeric arguments use the shared types of :mod:`recsys.cliargs`. Handlers print results to stdout;
the package logs through :mod:`logging`.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import traceback

from recsys.cliargs import key_value, learning_rate, non_negative_int, positive_int

DOMAIN_VERBS = ("evaluate", "recommend", "bench", "reproduce")


def _train(args: argparse.Namespace) -> int:
    from recsys.train.recipes import get_recipe
    from recsys.train.runs import RunRegistry
    from recsys.train.worker import execute

    recipe = get_recipe(args.model)
    base = recipe.full if args.full and recipe.full else recipe.defaults
    overrides = {
        "epochs": args.epochs, "lr": args.lr, "batch_size": args.batch_size,
        "seed": args.seed, "device": args.device, "patience": args.patience,
    }
    import dataclasses

    config = dataclasses.replace(base, **{k: v for k, v in overrides.items() if v is not None}).validate()
    options = dict(args.option or [])
    if args.dataset:
        options["dataset"] = args.dataset
    registry = RunRegistry()
    run = registry.create(recipe.name, config, options, nproc=args.nproc)
    print(f"run {run.id} ({run.path})", file=sys.stderr)
    try:
        summary = execute(run, registry, progress=True)
    except Exception:  # recorded in the run's status (one line) and log (traceback)
        summary = None
    status = run.status()
    print(json.dumps({"run_id": run.id, "status": status["status"], **(summary or {})}, default=str))
    if status["status"] == "failed":
        print(f"error: run {run.id} failed: {status.get('error', '?')} (log: {run.log_path})", file=sys.stderr)
    if args.activate and status["status"] == "done":
        registry.set_active(run.id)
    return 0 if status["status"] == "done" else 1


def _models(args: argparse.Namespace) -> int:
    from recsys import registry

    if args.format == "json":
        print(registry.as_json())
        return 0
    for spec in registry.MODELS:
        print(f"{spec.name}\t{spec.domain}\t{spec.kind}\t{spec.paper}\t{spec.display_name}")
    return 0


def _prepare(args: argparse.Namespace) -> int:
    from recsys.videos.fastserve import prepare

    for line in prepare():
        print(line)
    return 0


def _runs(args: argparse.Namespace) -> int:
    from recsys.train.runs import RunRegistry

    registry = RunRegistry()
    if args.action == "list":
        for run in registry.list():
            status = run.status()
            print(f"{run.id}\t{status['status']}\t{status.get('error', '')}")
        problem = registry.active_problem()
        if problem:
            print(f"warning: {problem}; serving the shipped models", file=sys.stderr)
    elif args.action == "execute":  # what a launched worker runs; one implementation for both
        from recsys.train import worker

        return worker.main([args.run_id])
    elif args.action == "stop":
        registry.get(args.run_id).request_stop()
    elif args.action == "delete":
        registry.delete(args.run_id)
    elif args.action == "activate":
        registry.set_active(args.run_id)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m recsys", description=__doc__.split("\n\n")[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")

    prepare = verbs.add_parser("prepare", help="build the ONNX query encoders and the video serving pack into the "
                                               "cache (once, at install; about 40 s; skipped when already built)")
    prepare.set_defaults(func=_prepare)

    models = verbs.add_parser("models", help="list every registered model (domain, kind, paper)")
    models.add_argument("--format", default="table", choices=["table", "json"])
    models.set_defaults(func=_models)

    train = verbs.add_parser("train", help="train a model and record the run in runs/")
    train.add_argument("model", help="model name; see `python -m recsys models`")
    train.add_argument("--epochs", type=positive_int)
    train.add_argument("--lr", type=learning_rate)
    train.add_argument("--batch-size", type=positive_int)
    train.add_argument("--seed", type=non_negative_int)
    train.add_argument("--device", help="auto (CUDA when present), cpu, cuda, cuda:N")
    train.add_argument("--patience", type=positive_int, help="early-stopping patience in epochs")
    train.add_argument("--dataset", help="dataset for models trained on several (e.g. ml-100k, anime)")
    train.add_argument("--full", action="store_true", help="use the paper's full settings instead of the quick defaults")
    train.add_argument("--option", action="append", type=key_value, metavar="KEY=VALUE", help="model option")
    train.add_argument("--activate", action="store_true", help="serve this run's checkpoint in the app")
    train.add_argument("--nproc", type=positive_int, default=1,
                       help="training processes (torchrun + DistributedDataParallel; gloo on CPU, NCCL with one GPU "
                            "each); the batch size stays the global one")
    train.set_defaults(func=_train)

    runs = verbs.add_parser("runs", help="list, stop, delete or activate recorded runs")
    runs.add_argument("action", choices=["list", "models", "execute", "stop", "delete", "activate"])
    runs.add_argument("run_id", nargs="?")
    runs.set_defaults(func=_runs)

    domain_parsers = {
        verb: verbs.add_parser(verb, help=help_text).add_subparsers(dest="domain", required=True, metavar="DOMAIN")
        for verb, help_text in [
            ("evaluate", "print and write evaluation tables"),
            ("recommend", "recommendations as JSON lines"),
            ("bench", "latency benchmarks"),
            ("reproduce", "multi-seed reproduction of a paper's tables"),
        ]
    }
    from recsys import registry
    from recsys.retrieval import ann_bench
    from recsys.train import bench

    bench.register_cli(domain_parsers["bench"])
    ann_bench.register_cli(domain_parsers["bench"])
    for domain in registry.DOMAINS:
        try:  # one broken domain must not take `models`, `train`, `runs` and the others down
            registry.domain_module(domain, "cli").register_cli(domain_parsers)
        except Exception as error:  # noqa: BLE001
            logging.getLogger(__name__).error("the %s commands are unavailable: %s: %s",
                                              domain, type(error).__name__, error)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    if args.verb == "runs" and args.action == "models":
        from recsys.train.recipes import all_recipes

        for name, recipe in all_recipes().items():
            print(f"{name}\t{recipe.domain}\t{recipe.summary}")
        return 0
    if args.verb == "runs" and args.action in ("execute", "stop", "delete", "activate") and not args.run_id:
        parser.error(f"runs {args.action} needs a RUN_ID")
    try:
        return args.func(args)
    except BrokenPipeError:  # output piped into `head` and the like: stop quietly
        sys.stderr.close()
        return 0
    except (KeyError, ValueError, FileNotFoundError, RuntimeError) as error:
        if args.verbose:
            traceback.print_exc()
        message = error.args[0] if isinstance(error, KeyError) and error.args else error
        print(f"error: {message}", file=sys.stderr)
        return 2
    except Exception as error:  # noqa: BLE001 - one clear line; the traceback only with -v
        if args.verbose:
            traceback.print_exc()
        print(f"error: {type(error).__name__}: {error} (run with -v for the traceback)", file=sys.stderr)
        return 1
