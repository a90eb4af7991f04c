"""Issue 11: why the other languages score 0.80 on validation but 0.70 on test, source by source.

Every held-out non-English query is a translation of an English query of the same split (its id is the
source's plus ``-zh``, ``-es``, ...). Scores both splits with the shipped DCDT checkpoint and prints, per split,
MRR@10 of the English sources that were translated against the mean of their translations, and the test
sources whose translations lose the most. Run from the repository root::

    OMP_NUM_THREADS=1 PYTHONPATH=. python docs/results/videos/translation_gap.py
"""

from __future__ import annotations

import pandas as pd

from recsys.data.videos import load_catalog, load_queries
from recsys.embed import get_embedder
from recsys.eval import videos as video_eval
from recsys.videos.prep import VideoData, build_items, full_scores
from recsys.videos.serving import load_trained


def per_query(items, model, split: str) -> pd.DataFrame:
    queries, relevant, texts, rows = items.split(split)
    ids = [items.query_ids[j] for j in rows]
    by_query = video_eval.evaluate_by_group(full_scores(model, queries, texts), relevant, ids, metrics=("mrr@10",))
    return pd.DataFrame({"source": [i.split("-")[0] for i in ids], "english": [items.query_language[j] == "English"
                         for j in rows], "rr": [by_query[i]["mrr@10"] for i in ids], "text": texts})


def main() -> None:
    items = build_items(VideoData(load_catalog(), load_queries()), get_embedder("local"))
    model, source = load_trained("dcdt", items, train_if_missing=False)
    model.eval()
    print(f"DCDT: {source}\n")
    print("| split | translated English sources | their MRR@10 | translations | their MRR@10 | mean drop per source "
          "| sources dropping > 0.3 |")
    print("|---|---|---|---|---|---|---|")
    worst = None
    for split in ("validation", "test"):
        frame = per_query(items, model, split)
        translations = frame[~frame.english]
        sources = frame[frame.english & frame.source.isin(set(translations.source))].set_index("source")
        pairs = pd.DataFrame({"english": sources.rr, "translations": translations.groupby("source").rr.mean(),
                              "text": sources.text}).dropna()
        drop = pairs.english - pairs.translations
        print(f"| {split} | {len(sources)} | {sources.rr.mean():.3f} | {len(translations)} | "
              f"{translations.rr.mean():.3f} | {drop.mean():+.3f} | {int((drop > 0.3).sum())} |")
        if split == "test":
            worst = pairs.assign(drop=drop).sort_values("drop", ascending=False).head(8)
    print("\nTest sources whose translations lose the most (MRR@10 of the English source / mean of its translations):\n")
    for _, row in worst.iterrows():
        print(f"* {row.english:.2f} / {row.translations:.2f}: {row.text}")


if __name__ == "__main__":
    main()
