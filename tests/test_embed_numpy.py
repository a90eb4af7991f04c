"""The numpy MiniLM query encoder (recsys/embed/numpy_bert.py) computes what the torch encoder computes."""

from __future__ import annotations

import numpy as np
import pytest

from recsys.embed import numpy_bert


def test_gelu_and_layer_norm_arithmetic():
    # GELU(x) = x * Phi(x): Phi(0) = 0.5, Phi(1) = 0.841345, Phi(-1) = 0.158655
    out = numpy_bert._gelu(np.array([0.0, 1.0, -1.0], dtype=np.float32))
    assert out.tolist() == pytest.approx([0.0, 0.841345, -0.158655], abs=1e-6)
    # [1, 3]: mean 2, variance 1 -> [-1, 1]; then * [2, 2] + [0, 1] -> [-2, 3]
    ln = numpy_bert.layer_norm(np.array([[1.0, 3.0]]), np.array([2.0, 2.0]), np.array([0.0, 1.0]), 1e-12)
    assert ln.tolist() == [pytest.approx([-2.0, 3.0])]


@pytest.mark.slow
def test_numpy_minilm_matches_the_torch_encoder():
    from recsys.embed.local import load_minilm

    texts = ["特征值是什么", "what is an eigenvector, intuitively?", "Gram-Schmidt " * 100]  # the last one is cut
    ours = numpy_bert.NumpyMiniLM().encode(texts)
    reference = load_minilm().encode(texts)
    assert ours.shape == (3, 384)
    assert np.abs(ours - reference).max() < 1e-5
    assert np.linalg.norm(ours, axis=1) == pytest.approx([1.0, 1.0, 1.0], abs=1e-6)
