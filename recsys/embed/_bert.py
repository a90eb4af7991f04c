"""A minimal BERT encoder in plain PyTorch (inference only), for MiniLM.

Devlin et al., 2019, "BERT: Pre-training of Deep Bidirectional Transformers for
Language Understanding".  Why not ``transformers.BertModel``: importing
``transformers`` costs several seconds on a small CPU (more than torch itself),
and every Streamlit process / CLI run / test session that needs one query
embedding pays it.  This module reads the same ``config.json`` and
``model.safetensors`` and computes the same function (post-LayerNorm encoder,
exact-erf GELU, absolute position embeddings); ``tests/test_embed_local.py``
checks it against ``transformers.BertModel`` to 1e-5.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass
class BertConfig:
    vocab_size: int
    hidden_size: int
    num_hidden_layers: int
    num_attention_heads: int
    intermediate_size: int
    max_position_embeddings: int
    type_vocab_size: int
    layer_norm_eps: float = 1e-12
    hidden_act: str = "gelu"
    position_embedding_type: str = "absolute"

    @classmethod
    def from_dict(cls, d: dict) -> "BertConfig":
        fields = cls.__dataclass_fields__
        cfg = cls(**{k: d[k] for k in fields if k in d})
        if cfg.hidden_act != "gelu" or cfg.position_embedding_type != "absolute":
            raise ValueError(f"unsupported BERT variant: act={cfg.hidden_act}, "
                             f"positions={cfg.position_embedding_type}")
        return cfg


class TinyBert(torch.nn.Module):
    """Holds the weights under BERT's own names, so ``model.safetensors`` loads unchanged."""

    def __init__(self, cfg: BertConfig, state: dict[str, torch.Tensor]) -> None:
        super().__init__()
        self.cfg = cfg
        needed = ["embeddings.word_embeddings.weight", "embeddings.position_embeddings.weight",
                  "embeddings.token_type_embeddings.weight", "embeddings.LayerNorm.weight",
                  "embeddings.LayerNorm.bias"]
        for i in range(cfg.num_hidden_layers):
            p = f"encoder.layer.{i}."
            for name in ("attention.self.query", "attention.self.key", "attention.self.value",
                         "attention.output.dense", "intermediate.dense", "output.dense"):
                needed += [p + name + ".weight", p + name + ".bias"]
            for name in ("attention.output.LayerNorm", "output.LayerNorm"):
                needed += [p + name + ".weight", p + name + ".bias"]
        missing = [k for k in needed if k not in state]
        if missing:
            raise KeyError(f"weights lack {len(missing)} BERT tensors, e.g. {missing[:3]}")
        self.w = {k: state[k].float() for k in needed}
        h, nh = cfg.hidden_size, cfg.num_attention_heads
        if h % nh:
            raise ValueError(f"hidden_size {h} not divisible by {nh} heads")
        # fuse q/k/v per layer: one matmul instead of three
        self.qkv = []
        for i in range(cfg.num_hidden_layers):
            p = f"encoder.layer.{i}.attention.self."
            weight = torch.cat([self.w[p + n + ".weight"] for n in ("query", "key", "value")], 0)
            bias = torch.cat([self.w.pop(p + n + ".bias") for n in ("query", "key", "value")], 0)
            for n in ("query", "key", "value"):
                del self.w[p + n + ".weight"]
            self.qkv.append((weight, bias))

    @torch.inference_mode()
    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        if input_ids.shape[1] > self.cfg.max_position_embeddings:
            raise ValueError(f"sequence of {input_ids.shape[1]} tokens > {self.cfg.max_position_embeddings}")
        return self.layers(self.embed(input_ids), attention_mask)

    def embed(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Word + position + token-type embeddings, LayerNorm: ``[B, t] -> [B, t, hidden]``."""
        cfg, w = self.cfg, self.w
        t = input_ids.shape[1]
        x = (F.embedding(input_ids, w["embeddings.word_embeddings.weight"])
             + w["embeddings.position_embeddings.weight"][:t].unsqueeze(0)
             + w["embeddings.token_type_embeddings.weight"][0])
        return F.layer_norm(x, (cfg.hidden_size,), w["embeddings.LayerNorm.weight"],
                            w["embeddings.LayerNorm.bias"], cfg.layer_norm_eps)

    def layers(self, x: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """The encoder layers over embedded tokens ``[B, t, hidden]``; no mask: every token is real.

        Split from :meth:`embed` so the ONNX export (:mod:`recsys.embed.onnx_build`) can leave the
        90 MB word-embedding table out of the graph (serving looks the rows up in numpy).
        """
        cfg, w = self.cfg, self.w
        b, t, _ = x.shape
        nh = cfg.num_attention_heads
        hd = cfg.hidden_size // nh
        # additive mask: padding keys get a large negative score (same as transformers)
        bias = None if attention_mask is None else (
            (1.0 - attention_mask[:, None, None, :].to(x.dtype)) * torch.finfo(x.dtype).min)
        for i in range(cfg.num_hidden_layers):
            p = f"encoder.layer.{i}."
            qkv = F.linear(x, *self.qkv[i]).view(b, t, 3, nh, hd).permute(2, 0, 3, 1, 4)
            q, k, v = qkv[0], qkv[1], qkv[2]
            # fused softmax(q k^T / sqrt(hd) + bias) v: faster and leaner than the explicit form
            ctx = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
            ctx = ctx.transpose(1, 2).reshape(b, t, cfg.hidden_size)
            attn = F.linear(ctx, w[p + "attention.output.dense.weight"], w[p + "attention.output.dense.bias"])
            x = F.layer_norm(attn + x, (cfg.hidden_size,), w[p + "attention.output.LayerNorm.weight"],
                             w[p + "attention.output.LayerNorm.bias"], cfg.layer_norm_eps)
            hmid = F.gelu(F.linear(x, w[p + "intermediate.dense.weight"], w[p + "intermediate.dense.bias"]))
            out = F.linear(hmid, w[p + "output.dense.weight"], w[p + "output.dense.bias"])
            x = F.layer_norm(out + x, (cfg.hidden_size,), w[p + "output.LayerNorm.weight"],
                             w[p + "output.LayerNorm.bias"], cfg.layer_norm_eps)
        return x
