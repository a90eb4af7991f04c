"""MiniLM's query side in numpy: the same weights and function as :mod:`recsys.embed._bert`, no torch.

Why: issue 11 asks for a query side that serves without torch (a fresh server pays for
importing torch before its first answer) and in about a millisecond. This is the first
step: the all-MiniLM-L6-v2 encoder (BERT, Devlin et al. 2019; post-LayerNorm, exact-erf
GELU, mean pooling, unit rows) computed with numpy from the same sha256-checked
``model.safetensors`` (read by ``safetensors.numpy``) and ``tokenizer.json``. One text at
a time, so there is no padding and no mask. ``tests/test_embed_numpy.py`` checks it
against the torch encoder; ``bench videos`` times both on the same queries.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from recsys.embed.local import MINILM_MAX_TOKENS, MINILM_SHA256, minilm_dir, verify_model_file

__all__ = ["NumpyMiniLM"]


def layer_norm(x: np.ndarray, weight: np.ndarray, bias: np.ndarray, eps: float) -> np.ndarray:
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * weight + bias


def _gelu(x: np.ndarray) -> np.ndarray:
    """Exact GELU, ``x * Phi(x)`` (scipy's erf: numpy has none; scipy is already a dependency)."""
    from scipy.special import erf

    return 0.5 * x * (1.0 + erf(x / np.float32(math.sqrt(2.0))))


class NumpyMiniLM:
    """``NumpyMiniLM().encode(texts) -> [n, 384]`` unit rows, as :class:`recsys.embed.local.MiniLM`."""

    name = "minilm-numpy"
    space = "minilm-l6-v2"  # the same vectors as the torch encoder (to ~1e-7)
    dim = 384

    def __init__(self, model_dir: Path | None = None, expected_sha256: str = MINILM_SHA256):
        from safetensors.numpy import load_file
        from tokenizers import Tokenizer

        model_dir = Path(model_dir) if model_dir else minilm_dir()
        weights = model_dir / "model.safetensors"
        verify_model_file(weights, expected_sha256)  # before reading a weight
        self.cfg = json.loads((model_dir / "config.json").read_text())
        self.tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        self.tokenizer.enable_truncation(max_length=MINILM_MAX_TOKENS)
        self.tokenizer.no_padding()
        w = {k: np.asarray(v, dtype=np.float32) for k, v in load_file(str(weights)).items()}
        w = {k[len("bert."):] if k.startswith("bert.") else k: v for k, v in w.items()}
        self.w = w
        self.layers = []
        for i in range(self.cfg["num_hidden_layers"]):
            p = f"encoder.layer.{i}."
            qkv_w = np.concatenate([w[p + f"attention.self.{n}.weight"] for n in ("query", "key", "value")]).T.copy()
            qkv_b = np.concatenate([w[p + f"attention.self.{n}.bias"] for n in ("query", "key", "value")])
            self.layers.append((qkv_w, qkv_b, w[p + "attention.output.dense.weight"].T.copy(),
                                w[p + "attention.output.dense.bias"], w[p + "attention.output.LayerNorm.weight"],
                                w[p + "attention.output.LayerNorm.bias"], w[p + "intermediate.dense.weight"].T.copy(),
                                w[p + "intermediate.dense.bias"], w[p + "output.dense.weight"].T.copy(),
                                w[p + "output.dense.bias"], w[p + "output.LayerNorm.weight"], w[p + "output.LayerNorm.bias"]))

    def _one(self, ids: list[int]) -> np.ndarray:
        cfg, w = self.cfg, self.w
        eps, h, nh = cfg.get("layer_norm_eps", 1e-12), cfg["hidden_size"], cfg["num_attention_heads"]
        hd, t = h // nh, len(ids)
        x = (w["embeddings.word_embeddings.weight"][ids] + w["embeddings.position_embeddings.weight"][:t]
             + w["embeddings.token_type_embeddings.weight"][0])
        x = layer_norm(x, w["embeddings.LayerNorm.weight"], w["embeddings.LayerNorm.bias"], eps)
        for qkv_w, qkv_b, o_w, o_b, ln1_w, ln1_b, i_w, i_b, d_w, d_b, ln2_w, ln2_b in self.layers:
            qkv = (x @ qkv_w + qkv_b).reshape(t, 3, nh, hd).transpose(1, 2, 0, 3)  # [3, heads, t, hd]
            scores = qkv[0] @ qkv[1].transpose(0, 2, 1) / math.sqrt(hd)
            scores = np.exp(scores - scores.max(-1, keepdims=True))
            ctx = (scores / scores.sum(-1, keepdims=True)) @ qkv[2]  # [heads, t, hd]
            x = layer_norm(ctx.transpose(1, 0, 2).reshape(t, h) @ o_w + o_b + x, ln1_w, ln1_b, eps)
            x = layer_norm(_gelu(x @ i_w + i_b) @ d_w + d_b + x, ln2_w, ln2_b, eps)
        pooled = x.mean(0)
        return pooled / max(float(np.linalg.norm(pooled)), 1e-12)

    def encode(self, texts: list[str], progress=False) -> np.ndarray:
        """Unit rows; texts are cleaned as :class:`recsys.embed.local.LocalEmbedder` cleans them."""
        from recsys.embed.text import prepare_texts

        texts = prepare_texts(texts, max_chars=4000)
        out = np.zeros((len(texts), self.cfg["hidden_size"]), dtype=np.float32)
        for row, encoding in enumerate(self.tokenizer.encode_batch(list(texts))):
            out[row] = self._one(encoding.ids)
        return out

    def describe(self) -> str:
        return "all-MiniLM-L6-v2 in numpy (fp32, 384-d, sha256-verified)"
