"""Two embedders side by side: each one's unit vector, concatenated and scaled back to unit length.

Why: on our validation split (``docs/results/videos/encoders.md``) the English-only
all-MiniLM-L6-v2 is the best encoder for English questions and the multilingual USE v3
(:mod:`recsys.embed.usem`) for Chinese, Spanish, French and German ones; neither is best on
both. With ``x = [a; b] / sqrt(2)`` for unit ``a`` (384-d MiniLM) and ``b`` (512-d USE), the
cosine of two such vectors is the mean of the two encoders' cosines,
``<x, x'> = (<a, a'> + <b, b'>) / 2``: the zero-shot score is an equal-weight ensemble,
and a model trained on ``x`` (DCDT) can learn to lean on either part per query.

Worked example: a = (1, 0), b = (0, 1) -> x = (1, 0, 0, 1) / sqrt(2) = (0.7071, 0, 0, 0.7071),
unit length. Each part keeps its own disk cache (``encode`` of the parts), so adding the
combination re-embeds nothing that either part has seen.
"""

from __future__ import annotations

import numpy as np

from recsys.embed.base import Embedder, Progress

__all__ = ["ConcatEmbedder", "join_unit_rows"]


def join_unit_rows(blocks: list[np.ndarray]) -> np.ndarray:
    """``[b_1; ...; b_k] / sqrt(k)`` row by row: unit rows again when every block has unit rows."""
    return (np.concatenate(blocks, axis=1) / np.float32(np.sqrt(len(blocks)))).astype(np.float32, copy=False)


class ConcatEmbedder(Embedder):
    """``[e1(text); e2(text); ...] / sqrt(k)`` of ``k`` embedders with unit rows; name ``"a+b"``."""

    def __init__(self, *parts: Embedder) -> None:
        if len(parts) < 2:
            raise ValueError("ConcatEmbedder needs at least two embedders")
        super().__init__(cache=False)  # each part caches its own vectors
        self.parts = parts
        self.name = "+".join(p.name for p in parts)
        self.dim = sum(p.dim for p in parts)

    def _embed(self, texts: list[str], progress: Progress = False) -> np.ndarray:
        return join_unit_rows([p.encode(texts, progress=progress) for p in self.parts])

    def describe(self) -> str:
        return " + ".join(p.describe() for p in self.parts) + f", concatenated ({self.dim}-d)"
