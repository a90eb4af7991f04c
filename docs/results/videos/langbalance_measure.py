"""Issue 11: DCDT with translated training queries, with and without the language-balanced draw.

One (query file, english_share, seed) per call: trains DCDT as ``evaluate videos`` does (``FULL_TRAIN``,
validation MRR@10 picks the epoch), scores ``--split`` by query language and writes one JSON under
``--out`` (plus the weights, so that the test split can be scored later for the configuration the
validation split chose, without retraining: ``--score-only``). Run from the repository root::

    git show 5605963:assets/queries.csv > /tmp/translated_queries.csv   # 1,461 queries + 2,380 translations
    OMP_NUM_THREADS=1 PYTHONPATH=. python docs/results/videos/langbalance_measure.py assets/queries.csv none 0
    OMP_NUM_THREADS=1 PYTHONPATH=. python docs/results/videos/langbalance_measure.py /tmp/translated_queries.csv 0.7 0
    ...                                                        (the same with --split test --score-only)

The tables in ``README.md`` (section "Language-balanced draw") are the means and sample standard deviations
of these JSON files over seeds 0-4.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import torch

from recsys.data.videos import load_catalog, load_queries
from recsys.embed import get_embedder
from recsys.eval import videos as video_eval
from recsys.videos.prep import VideoData, build_items, full_scores
from recsys.videos.training import FULL_TRAIN, build_model, train_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("queries", help="a queries.csv (the shipped one, or one with the translations)")
    parser.add_argument("english_share", help="DCDT's english_share, or 'none' (every pair once per epoch)")
    parser.add_argument("seed", type=int)
    parser.add_argument("--split", default="validation", choices=["validation", "test"])
    parser.add_argument("--score-only", action="store_true", help="score the weights saved by an earlier run")
    parser.add_argument("--out", default=".cache/langbalance")
    args = parser.parse_args()
    share = None if args.english_share == "none" else float(args.english_share)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tag = f"{Path(args.queries).stem}_{share}_s{args.seed}"
    items = build_items(VideoData(load_catalog(), load_queries(path=args.queries)), get_embedder("local"))
    record: dict = {"queries": args.queries, "english_share": share, "seed": args.seed, "split": args.split}
    if args.score_only:
        model = build_model("dcdt", items, {"english_share": share})
        model.load_state_dict(torch.load(out / f"{tag}.pt"))
        model.eval()
    else:
        started = time.time()
        model, result = train_model("dcdt", items, dataclasses.replace(FULL_TRAIN, seed=args.seed),
                                    {"english_share": share})
        record.update(wall_s=round(time.time() - started, 1), best_epoch=result.best_epoch,
                      epochs_run=len(result.history))
        torch.save(model.state_dict(), out / f"{tag}.pt")
    q, rel, _, rows = items.split(args.split)
    scores = full_scores(model, q)
    languages = [items.query_language[i] for i in rows]
    other = [language != "English" for language in languages]
    record.update(all=video_eval.evaluate_scores(scores, rel),
                  by_language=video_eval.evaluate_by_group(scores, rel, languages),
                  other=video_eval.evaluate_scores(scores[other], [r for r, o in zip(rel, other) if o]))
    (out / f"{tag}_{args.split}.json").write_text(json.dumps(record, indent=1) + "\n")
    print(tag, args.split, {k: round(v["mrr@10"], 3) for k, v in (("all", record["all"]), ("other", record["other"]),
                                                                 ("English", record["by_language"]["English"]))})


if __name__ == "__main__":
    main()
