"""``python -m recsys evaluate ml-100k`` and ``python -m recsys reproduce cl-epidtn``.

The parser is built on every ``python -m recsys`` call, so this module imports neither
torch nor the models; the handlers import the experiments when they run. Results are
printed to stdout (the CLI's output), progress goes through logging and tqdm.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from recsys import registry
from recsys.cliargs import non_negative_int, positive_int
from recsys.sequential import DATASETS, RESULTS_ENV


def _model_list(text: str | None) -> list[str] | None:
    """Comma-separated sequential model names (``None``: all); unknown names are an error listing the choices."""
    if not text:
        return None
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in registry.names("sequential")]
    if unknown:
        raise ValueError(f"unknown model(s) {unknown}; choose from {', '.join(registry.names('sequential'))}")
    return names


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from recsys.eval.sequential import PROTOCOL
    from recsys.sequential.experiments import evaluate_ml100k
    from recsys.sequential.export import markdown_table
    from recsys.sequential.stats import METRIC_LABELS

    table = evaluate_ml100k(_model_list(args.models), args.epochs, args.seed, args.recent_examples or None,
                            args.max_seq_len)
    print(f"Protocol: {PROTOCOL}")
    print(markdown_table(table.rename(columns=METRIC_LABELS)))
    return 0


def _cmd_reproduce(args: argparse.Namespace) -> int:
    from recsys.sequential.experiments import PROFILES
    from recsys.sequential.export import markdown_table
    from recsys.sequential.reproduce import output_dir, reproduce
    from recsys.sequential.stats import pretty_table

    profile = "quick" if args.quick else args.profile
    settings = dataclasses.replace(PROFILES[profile])
    if args.seeds:
        settings.seeds = args.seeds
    if args.epochs:
        settings.epochs, settings.cl_epochs = args.epochs, None
    if args.workers:
        settings.workers = args.workers
    if args.anime_users:
        settings.anime_max_users = args.anime_users
    if args.no_sweeps:
        settings.sweep, settings.ours = {}, {}
    datasets = list(DATASETS) if args.dataset == "all" else [args.dataset]
    from_cli = sys.argv and sys.argv[0].endswith(("recsys", "__main__.py"))
    # the command that regenerates the tables (an export-only call's tables come from running it without the flag)
    command = ("python -m recsys " + " ".join(a for a in sys.argv[1:] if a != "--export-only") if from_cli else
               f"python -m recsys reproduce cl-epidtn --profile {profile} --dataset {args.dataset}")
    out = Path(args.out) if args.out else output_dir(settings)
    report = reproduce(datasets, settings, _model_list(args.models), out, progress=True, command=command,
                       state_dir=Path(args.state_dir) if args.state_dir else None, export_only=args.export_only)
    for name, entry in report["datasets"].items():
        meta = entry["meta"]
        print(f"\n## {name}: {meta['jobs_done']} of {meta['jobs_total']} jobs, {meta['cpu_seconds_total']:.0f} CPU s")
        if not entry["summary"].empty:
            print(markdown_table(pretty_table(entry["summary"])))
    print(f"\nran {report['ran']} job(s); state in {report['state_dir']}; wrote {out}")
    return 0


def register_cli(verbs: dict) -> None:
    names = ", ".join(registry.names("sequential"))
    evaluate = verbs["evaluate"].add_parser(
        "ml-100k", help="HR@10/HR@50/NDCG@10 and Recall@10/@50 of the sequential models on ml-100k")
    evaluate.add_argument("--models", help=f"comma-separated, default all of: {names}")
    evaluate.add_argument("--epochs", type=positive_int, default=2)
    evaluate.add_argument("--seed", type=non_negative_int, default=0)
    evaluate.add_argument("--recent-examples", type=non_negative_int, default=10, help="training prefixes per user (0 = all)")
    evaluate.add_argument("--max-seq-len", type=positive_int, default=50)
    evaluate.set_defaults(func=_cmd_evaluate)

    reproduce = verbs["reproduce"].add_parser(
        "cl-epidtn", help="multi-seed tables, t-tests, ablations and sweeps of CL-EPIDTN")
    reproduce.add_argument("--profile", choices=("quick", "converged", "full"), default="full",
                           help="quick: a <10 minute smoke test; converged: early-stopped, 3 seeds, a few CPU-hours; "
                                "full: 5 seeds at the paper's size (default)")
    reproduce.add_argument("--quick", action="store_true", help="same as --profile quick")
    reproduce.add_argument("--state-dir", help="folder of finished jobs, one JSON each; a re-run skips them "
                                               "(default .cache/recsys/reproduce/<profile>)")
    reproduce.add_argument("--export-only", action="store_true",
                           help="train nothing; write the tables from the jobs finished so far (marked incomplete)")
    reproduce.add_argument("--dataset", choices=[*DATASETS, "all"], default="ml-100k")
    reproduce.add_argument("--seeds", type=positive_int, help="number of seeds (default 5; 2 with --quick)")
    reproduce.add_argument("--epochs", type=positive_int, help="override the epoch budget")
    reproduce.add_argument("--workers", type=positive_int, help="training processes side by side (default 1; 2 with --quick)")
    reproduce.add_argument("--models", help=f"comma-separated subset of: {names}")
    reproduce.add_argument("--anime-users", type=positive_int,
                           help="train and test on the first N users of the anime sample (default: the profile's)")
    reproduce.add_argument("--no-sweeps", action="store_true",
                           help="the main table, the Recall split and the ablations only: no sensitivity sweeps and no "
                                "variants of ours (a smaller CPU budget)")
    reproduce.add_argument("--out", help=f"output folder (default ${RESULTS_ENV} or docs/results/cl-epidtn; converged and full "
                                                "profiles in a sub-folder of that name)")
    reproduce.set_defaults(func=_cmd_reproduce)
