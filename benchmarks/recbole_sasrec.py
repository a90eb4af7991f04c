"""Peer check: RecBole's SASRec vs ours on the same ml-100k leave-one-out split.

RecBole is NOT a project dependency. Install it on its own::

    python -m venv /tmp/recbole-venv
    /tmp/recbole-venv/bin/pip install torch==2.13.0 recbole==1.2.1 "numpy<2" "pandas<2.2"
    /tmp/recbole-venv/bin/pip install "setuptools<70"   # RecBole needs pkg_resources; after torch, not beside it

then run (from the project root, in the project's venv)::

    python benchmarks/recbole_sasrec.py --recbole-python /tmp/recbole-venv/bin/python --epochs 8

which runs both sides with the same settings and writes
``docs/results/cl-epidtn/recbole_sasrec.md`` (+ ``.json``). The two sides are run as two
sub-processes: ``--side recbole`` (needs only RecBole's venv) and ``--side ours``.

Same split, byte for byte: our loader orders each user's ratings by time with ties broken
by item id; RecBole sorts by timestamp only. So the RecBole side reads a temporary copy of
``ml-100k.inter`` (in a temp folder, never in the repo) whose timestamp column is replaced by
each rating's rank in our order; both sides then hold out the same items. The copy is named
``ml-100k-ranked``: RecBole 1.2.1 ignores ``data_path`` for a dataset called ``ml-100k`` and
reads the copy bundled in its wheel (``Config._set_default_parameters``), which silently
gave it a different split (282 of 943 test items differed) in this script's first version.
The RecBole side now checks every test row's input sequence and target against the ranked
file before it reports anything.

Protocol differences that remain and are reported: RecBole does *not* mask a user's history
items when ranking for sequential models (only the padding item), whereas our protocol does;
we report ours both ways so the like-for-like number (unmasked) can be compared.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULTS = dict(hidden_size=64, n_layers=2, n_heads=2, inner_size=256, hidden_dropout=0.5, attn_dropout=0.5,
                max_seq_len=50, lr=1e-3, batch_size=256, seed=2020)


def find_ml100k() -> Path:
    for root in [os.environ.get("RECSYS_DATA_DIR"), ROOT / "data", ROOT.parent / "shared" / "data"]:
        if root and (Path(root) / "ml-100k" / "ml-100k.inter").is_file():
            return Path(root) / "ml-100k"
    raise SystemExit("ml-100k not found (see recsys/data/movielens.py for how to get it)")


RANKED = "ml-100k-ranked"  # not "ml-100k": RecBole would read its own bundled copy instead


def ranked_copy(source: Path, dest_root: Path) -> Path:
    """Write ``dest_root/ml-100k-ranked/ml-100k-ranked.inter`` with timestamp := rank in (user, time, item id) order."""
    import pandas as pd

    frame = pd.read_csv(source / "ml-100k.inter", sep="\t", dtype=str)
    frame.columns = [c.split(":")[0] for c in frame.columns]
    frame["ts"] = pd.to_numeric(frame["timestamp"])
    frame["u"], frame["i"] = pd.to_numeric(frame["user_id"]), pd.to_numeric(frame["item_id"])
    frame = frame.sort_values(["u", "ts", "i"], kind="stable")
    frame["timestamp"] = frame.groupby("u").cumcount().astype(float)
    out = dest_root / RANKED
    out.mkdir(parents=True, exist_ok=True)
    frame[["user_id", "item_id", "rating", "timestamp"]].to_csv(
        out / f"{RANKED}.inter", sep="\t", index=False,
        header=["user_id:token", "item_id:token", "rating:float", "timestamp:float"])
    return out


def expected_test_rows(ranked_dir: Path, max_seq_len: int) -> dict[str, tuple[list[str], str]]:
    """raw user -> (last ``max_seq_len`` items before the test item, test item), from the ranked file."""
    import pandas as pd

    frame = pd.read_csv(ranked_dir / f"{RANKED}.inter", sep="\t", dtype=str)
    frame.columns = [c.split(":")[0] for c in frame.columns]
    frame["rank"] = pd.to_numeric(frame["timestamp"])
    rows = {}
    for user, group in frame.sort_values(["user_id", "rank"]).groupby("user_id"):
        items = group["item_id"].tolist()
        if len(items) >= 3:
            rows[user] = (items[:-1][-max_seq_len:], items[-1])
    return rows


def check_same_split(dataset, test_data, expected: dict) -> None:
    """Fail loudly unless RecBole's test rows are exactly the held-out rows of the ranked file."""
    seen = {}
    for interaction, _, _, positive_items in test_data:
        for row in range(len(positive_items)):
            user = dataset.id2token("user_id", int(interaction["user_id"][row]))
            length = int(interaction["item_length"][row])
            history = [dataset.id2token("item_id", int(i)) for i in interaction["item_id_list"][row][:length]]
            seen[str(user)] = ([str(i) for i in history], str(dataset.id2token("item_id", int(positive_items[row]))))
    if seen != expected:
        differing = sum(seen.get(u) != v for u, v in expected.items())
        raise SystemExit(f"RecBole's test split differs from ours for {differing} of {len(expected)} users")


@contextlib.contextmanager
def recbole_reads_its_own_checkpoints(folder: Path):
    """Let RecBole reload the checkpoint it has just written into ``folder``, and nothing else.

    RecBole 1.2.1's ``Trainer`` saves ``{"config": Config, "state_dict": ...}`` with
    ``torch.save`` and ``evaluate(load_best_model=True)`` reads it back with ``torch.load``;
    torch >= 2.6 defaults to ``weights_only=True``, which refuses RecBole's ``Config``
    object. RecBole needs the unpickling load, so it is allowed only for files inside our own
    temporary folder (written by RecBole in this process) and only while the block runs.
    This is the benchmark's peer code, not the package: ``recsys`` itself never unpickles.
    """
    import torch

    original = torch.load
    root = folder.resolve()

    def load(f, *args, **kwargs):
        if isinstance(f, (str, os.PathLike)) and Path(f).resolve().is_relative_to(root):
            kwargs["weights_only"] = False
        return original(f, *args, **kwargs)

    torch.load = load
    try:
        yield
    finally:
        torch.load = original


def run_recbole(args) -> dict:
    import torch

    from recbole.config import Config
    from recbole.data import create_dataset, data_preparation
    from recbole.model.sequential_recommender import SASRec
    from recbole.trainer import Trainer
    from recbole.utils import init_seed

    with tempfile.TemporaryDirectory() as tmp:
        ranked = ranked_copy(find_ml100k(), Path(tmp))
        settings = {
            "data_path": tmp, "checkpoint_dir": str(Path(tmp) / "saved"), "show_progress": False,
            "load_col": {"inter": ["user_id", "item_id", "timestamp"]},
            "eval_args": {"split": {"LS": "valid_and_test"}, "order": "TO", "mode": "full", "group_by": "user"},
            "metrics": ["Hit", "NDCG"], "topk": [10, 50], "valid_metric": "NDCG@10",
            "MAX_ITEM_LIST_LENGTH": args.max_seq_len, "hidden_size": args.hidden_size, "n_layers": args.n_layers,
            "n_heads": args.n_heads, "inner_size": args.inner_size, "hidden_dropout_prob": args.hidden_dropout,
            "attn_dropout_prob": args.attn_dropout, "loss_type": "CE", "train_neg_sample_args": None,
            "epochs": args.epochs, "train_batch_size": args.batch_size, "eval_batch_size": 4096, "learning_rate": args.lr,
            "stopping_step": 10, "seed": args.seed, "device": "cpu", "use_gpu": False, "reproducibility": True,
            "log_wandb": False, "state": "WARNING",
        }
        started, cwd = time.perf_counter(), os.getcwd()
        os.chdir(tmp)  # RecBole writes log/ and log_tensorboard/ into the working directory
        try:
            # RecBole's quick_start.run_recbole, unrolled so the split can be checked before training
            config = Config(model="SASRec", dataset=RANKED, config_dict=settings)
            init_seed(config["seed"], config["reproducibility"])
            dataset = create_dataset(config)
            train_data, valid_data, test_data = data_preparation(config, dataset)
            check_same_split(dataset, test_data, expected_test_rows(ranked, args.max_seq_len))
            init_seed(config["seed"] + config["local_rank"], config["reproducibility"])
            trainer = Trainer(config, SASRec(config, train_data.dataset))
            curve = []  # validation NDCG@10 per epoch: the convergence evidence (RecBole keeps no best epoch)
            _, best_valid = trainer.fit(train_data, valid_data, saved=True, show_progress=False,
                                        callback_fn=lambda epoch, score: curve.append(float(score)))
            with recbole_reads_its_own_checkpoints(Path(tmp)):
                test = trainer.evaluate(test_data, load_best_model=True, show_progress=False)
        finally:
            os.chdir(cwd)
        seconds = time.perf_counter() - started
    test = {k.lower(): float(v) for k, v in test.items()}
    return {"side": "recbole", "hit@10": test.get("hit@10"), "hit@50": test.get("hit@50"), "ndcg@10": test.get("ndcg@10"),
            "valid": {k.lower(): float(v) for k, v in (best_valid or {}).items()}, "seconds": seconds,
            "valid_ndcg@10": curve, "best_epoch": 1 + max(range(len(curve)), key=curve.__getitem__) if curve else None,
            "epochs_run": len(curve),
            "train_rows": len(train_data.dataset), "recbole": __import__("recbole").__version__, "torch": torch.__version__}


def run_ours(args) -> dict:
    sys.path.insert(0, str(ROOT))
    import torch

    from recsys.data.movielens import load_ml100k
    from recsys.data.sequential import leave_one_out, training_examples
    from recsys.eval.sequential import LOO_METRICS, evaluate_split
    from recsys.sequential.training import train_model
    from recsys.train.loop import TrainConfig

    dataset = load_ml100k()
    split = leave_one_out(dataset)
    overrides = {k: getattr(args, k) for k in ("hidden_size", "n_layers", "n_heads", "inner_size", "hidden_dropout", "attn_dropout", "max_seq_len")}
    # RecBole's trainer: Adam, constant learning rate, no gradient clipping, best epoch by valid NDCG@10 ranked
    # without masking the history (as RecBole ranks), and early stopping after 10 epochs without a gain (its
    # `stopping_step: 10` above), so --epochs 300 converges
    config = TrainConfig(epochs=args.epochs, lr=args.lr, batch_size=args.batch_size, optimizer="adam", scheduler="none",
                         grad_clip=None, seed=args.seed, device="cpu", monitor="ndcg@10", patience=10)
    trained = train_model("sasrec", dataset, split, config, overrides, windows=False,  # one row per prefix, as RecBole
                          mask_history=False)
    masked = evaluate_split(trained.model, split, "test", LOO_METRICS, max_len=args.max_seq_len)
    unmasked = evaluate_split(trained.model, split, "test", LOO_METRICS, max_len=args.max_seq_len, mask_history=False)
    return {"side": "ours", **{f"{k}": v for k, v in unmasked.items()}, "masked": masked, "seconds": trained.seconds,
            "best_epoch": trained.best_epoch, "epochs_run": trained.epochs,
            "valid_ndcg@10": [row.get("ndcg@10") for row in trained.history],
            "train_rows": len(training_examples(split.train, args.max_seq_len)), "torch": torch.__version__}


def write_report(ours: dict | None, recbole: dict | None, error: str | None, args, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    settings = ", ".join(f"{k}={getattr(args, k)}" for k in (*DEFAULTS, "epochs"))
    lines = [
        "# Peer check: RecBole SASRec vs recsys SASRec on ml-100k", "",
        f"Command: `python benchmarks/recbole_sasrec.py --recbole-python {args.recbole_python} --epochs {args.epochs} "
        f"--max-seq-len {args.max_seq_len} --seed {args.seed}`  ",
        f"Date (UTC): {time.strftime('%Y-%m-%d %H:%M', time.gmtime())}; settings: {settings}.", "",
        "Split: per-user chronological leave-one-out (RecBole `eval_args: {split: {LS: valid_and_test}, order: TO, mode: full}`), "
        "identical held-out items on both sides (RecBole reads a temporary copy whose timestamps are ranks in our "
        "time-then-item-id order). Full ranking over all items. RecBole does not mask history items for sequential "
        "models, so the like-for-like row of ours is *unmasked*; our protocol's masked numbers are shown too. "
        "Loss: cross-entropy over all items (RecBole `loss_type: CE`); Adam, constant lr, best epoch by unmasked "
        "validation NDCG@10 and early stopping after 10 epochs without a gain on both sides.", "",
        "| side | HR@10 | HR@50 | NDCG@10 | best epoch / epochs run | train+eval s |", "|---|---|---|---|---|---|",
    ]

    def fmt(x):
        return "–" if x is None else f"{x:.4f}"

    def epochs(side: dict) -> str:  # convergence evidence: a best epoch well below the epochs run
        return f"{side.get('best_epoch', '–')} / {side.get('epochs_run', '–')}"

    if recbole:
        lines.append(f"| RecBole {recbole.get('recbole', '')} SASRec (unmasked) | {fmt(recbole.get('hit@10'))} | {fmt(recbole.get('hit@50'))} | {fmt(recbole.get('ndcg@10'))} | {epochs(recbole)} | {recbole['seconds']:.0f} |")
    if ours:
        lines.append(f"| recsys SASRec (unmasked, like RecBole) | {fmt(ours.get('hit@10'))} | {fmt(ours.get('hit@50'))} | {fmt(ours.get('ndcg@10'))} | {epochs(ours)} | {ours['seconds']:.0f} |")
        m = ours["masked"]
        lines.append(f"| recsys SASRec (history masked, our protocol) | {fmt(m.get('hit@10'))} | {fmt(m.get('hit@50'))} | {fmt(m.get('ndcg@10'))} | | |")
    if error:
        lines += ["", "**RecBole side did not produce a result:**", "", "```", error[-3000:], "```"]
    if ours and recbole and recbole.get("hit@10") is not None:
        gap = ours["hit@10"] - recbole["hit@10"]
        lines += ["", f"Gap in HR@10 (ours − RecBole, like for like): {gap:+.4f}."]
    (out / "recbole_sasrec.md").write_text("\n".join(lines) + "\n")
    (out / "recbole_sasrec.json").write_text(json.dumps({"ours": ours, "recbole": recbole, "error": error}, indent=2, default=str))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--side", choices=["both", "recbole", "ours", "report"], default="both",
                        help="report: rewrite the Markdown from --ours-json/--recbole-json written by earlier single-side runs")
    parser.add_argument("--ours-json")
    parser.add_argument("--recbole-json")
    parser.add_argument("--recbole-python", default="/tmp/recbole-venv/bin/python")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--out", default=str(ROOT / "docs" / "results" / "cl-epidtn"))
    parser.add_argument("--json-out", help="(internal) where a single side writes its result")
    for key, value in DEFAULTS.items():
        parser.add_argument(f"--{key.replace('_', '-')}", type=type(value), default=value)
    args = parser.parse_args()
    if args.side == "report":
        load = lambda path: json.loads(Path(path).read_text()) if path and Path(path).exists() else None  # noqa: E731
        ours, recbole = load(args.ours_json), load(args.recbole_json)
        write_report(ours, recbole, None if recbole else "no RecBole result file given", args, Path(args.out))
        return 0
    if args.side != "both":
        result = run_recbole(args) if args.side == "recbole" else run_ours(args)
        text = json.dumps(result, default=str)
        if args.json_out:
            Path(args.json_out).write_text(text)
        print(text)
        return 0
    passthrough = [f"--epochs={args.epochs}"] + [f"--{k.replace('_', '-')}={getattr(args, k)}" for k in DEFAULTS]
    results, error = {}, None
    with tempfile.TemporaryDirectory() as tmp:
        # the two sides run at the same time (they share nothing but the data files)
        procs = {}
        for side, python in (("recbole", args.recbole_python), ("ours", sys.executable)):
            target = Path(tmp) / f"{side}.json"
            log_file = open(Path(tmp) / f"{side}.log", "w")  # files, not pipes: no deadlock on full pipes
            procs[side] = (target, log_file, subprocess.Popen(
                [python, __file__, "--side", side, "--json-out", str(target), *passthrough],
                stdout=log_file, stderr=subprocess.STDOUT, text=True, cwd=ROOT))
        for side, (target, log_file, proc) in procs.items():
            proc.wait()
            log_file.close()
            stderr = (Path(tmp) / f"{side}.log").read_text(errors="replace")
            if proc.returncode == 0 and target.exists():
                results[side] = json.loads(target.read_text())
            else:
                message = f"{side} side failed (exit {proc.returncode}):\n{stderr[-4000:]}"
                print(message, file=sys.stderr)
                if side == "recbole":
                    error = message
    write_report(results.get("ours"), results.get("recbole"), error, args, Path(args.out))
    print(json.dumps(results, indent=2, default=str))
    return 0 if "ours" in results else 1


if __name__ == "__main__":
    raise SystemExit(main())
