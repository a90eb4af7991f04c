"""Issue 11: which MiniLM layers can run in int8 on the query side without moving any model's MRR@10.

Builds the fused fp32 graph as ``python -m recsys prepare`` does (:mod:`recsys.embed.onnx_build`), then one
int8 graph per variant (``quantize_dynamic``, per-channel QInt8, some nodes kept in fp32), and prints for each:
MiniLM's time per query alone (the test queries as served, with their glosses, one thread, interleaved query
by query with the fp32 graph, p50 / p99, 3 passes), the cosine of the served query vector (MiniLM + USE) to
the fp32 one, and each packed model's MRR@10 minus the fp32 graph's, on the validation split (the issue's
criterion: within 0.005) and on the 3,263 training queries (more queries, less noise; only the query vectors
differ). Run from the repository root after ``prepare``::

    OMP_NUM_THREADS=1 PYTHONPATH=. python docs/results/videos/int8_measure.py > docs/results/videos/int8/variants.md
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np
import onnx

from recsys.data.videos import load_catalog, load_queries
from recsys.embed import get_embedder, onnx_build
from recsys.embed.glossary import embed_query
from recsys.embed.local import load_minilm
from recsys.embed.onnx_minilm import OnnxMiniLM
from recsys.embed.onnx_query import ConcatQueryEncoder, query_encoder
from recsys.eval import videos as video_eval
from recsys.videos.fastserve import make_fast_service
from recsys.videos.prep import VideoData, build_items


def variants(model: onnx.ModelProto) -> dict[str, list[str]]:
    """Variant name -> the nodes kept in fp32 (per layer: Attention, then attention output, FFN in, FFN out)."""
    attention = [n.name for n in model.graph.node if n.op_type == "Attention"]
    matmul = [n.name for n in model.graph.node if n.op_type == "MatMul"]
    attn_out, ffn_in, ffn_out = matmul[0::3], matmul[1::3], matmul[2::3]
    return {"all six layers int8": [], "layer 1 fp32 (served)": onnx_build.first_layer_nodes(model),
            "layer 6 fp32": [attention[5], attn_out[5], ffn_in[5], ffn_out[5]],
            "attention fp32": attention, "attention output fp32": attn_out, "FFN output fp32": ffn_out}


def main() -> None:
    fast = make_fast_service()
    items = build_items(VideoData(load_catalog(), load_queries()), get_embedder("local"))
    use = query_encoder("use-multilingual-numpy")
    encoders = {"fp32 (fp16-stored weights)": OnnxMiniLM()}
    with tempfile.TemporaryDirectory() as tmp:
        fused = Path(tmp) / "fused.onnx"
        onnx_build.export_fused(load_minilm().model, fused)
        for i, (label, kept) in enumerate(variants(onnx.load(str(fused))).items()):
            target = Path(tmp) / f"v{i}.onnx"
            onnx_build.quantize_int8(fused, target, kept)
            onnx_build._write_manifest(target, "int8", 384, {})  # lets OnnxMiniLM load it (sha256 checked)
            encoders[label] = OnnxMiniLM(model=target)
        _, _, _, rows = items.split("test")
        typed = [items.query_typed[i] for i in rows]
        times: dict[str, list[float]] = {label: [] for label in encoders}
        for encoder in encoders.values():
            embed_query(encoder, typed[:5])
        for _ in range(3):
            for text in typed:
                for label, encoder in encoders.items():
                    start = time.perf_counter()
                    embed_query(encoder, [text])
                    times[label].append((time.perf_counter() - start) * 1e3)
        base: dict[str, dict[str, float]] = {}
        models = [m for m in fast.pack.models if m != "bm25"]  # BM25 reads words, not vectors
        print("| MiniLM graph | p50 ms | p99 ms | p50 ratio | cosine to fp32 (val): mean / min | "
              + " | ".join(f"val {m}" for m in models) + " | " + " | ".join(f"train {m}" for m in models) + " |")
        print("|" + "---|" * (5 + 2 * len(models)))
        fp32_p50 = np.percentile(times["fp32 (fp16-stored weights)"], 50)
        for label, encoder in encoders.items():
            cells = [label, f"{np.percentile(times[label], 50):.2f}", f"{np.percentile(times[label], 99):.2f}",
                     f"{np.percentile(times[label], 50) / fp32_p50:.2f}"]
            deltas = []
            for split in ("validation", "train"):
                reference, relevant, texts, split_rows = items.split(split)
                vectors = embed_query(ConcatQueryEncoder([encoder, use]), [items.query_typed[i] for i in split_rows])
                if split == "validation":
                    cosine = (reference * vectors).sum(1)
                    cells.append(f"{cosine.mean():.5f} / {cosine.min():.5f}")
                mrr = {m: video_eval.evaluate_scores(fast.pack.scorer(m).scores(vectors, texts), relevant,
                                                     metrics=("mrr@10",))["mrr@10"] for m in models}
                base.setdefault(split, mrr)
                deltas += [f"{mrr[m] - base[split][m]:+.4f}" if label != "fp32 (fp16-stored weights)"
                           else f"{mrr[m]:.4f}" for m in models]
            print("| " + " | ".join(cells + deltas) + " |", flush=True)


if __name__ == "__main__":
    main()
