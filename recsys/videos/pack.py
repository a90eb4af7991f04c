"""The serving pack: everything a video query needs that does not depend on the query, as numpy.

Why: a dual tower's promise (the DCDT paper's "pre-computation") is that the video side
is computed once; issue 11 adds that answering must not need torch at all. A pack is one
``.npz`` (``allow_pickle=False``) holding, for one embedding space and one set of
checkpoints:

* the catalogue's video ids and ``title. description`` embeddings (zero-shot cosine);
* the training queries' embeddings, texts and labelled videos (collaborative filtering
  votes with them; the page's "why" shows the nearest ones);
* DCDT's video side, from :meth:`recsys.models.dcdt.DCDT.item_tower`: ``t'``, ``d'``,
  ``W_t t' - W_d d'`` (all the attention needs), the video prior and the frozen ``t``, ``d``;
  and its query side's weights (query tower, ``W_q``, the fusion's query and interaction
  weights), so the query tower, attention and fusion run as a few numpy products;
* the single tower's video part of its first layer (``W1_t t + W1_d d``, see
  :meth:`recsys.models.single_tower.SingleTower.full_sort_predict`) and its MLP weights.

BM25 needs only the video texts (re-indexed in milliseconds at load). The scorers
(:class:`PackScorer`) reproduce each model's ``full_sort_predict``; the pack is checked
against it when built (:func:`build_pack`: max abs difference below :data:`TOLERANCE` on
the training queries) and ``tests/test_videos_pack.py`` checks it on real queries.

A pack is keyed (:func:`pack_key`) by the embedding space, the sha256 of the catalogue and
query files and of each neural model's checkpoint file: a new studio run or an edited
catalogue gets a new pack. Packs live in the cache, never in git: the one of the shipped
checkpoints is built at install (``python -m recsys prepare``), others with torch on first use.
Building imports torch; loading and scoring never do.
"""

from __future__ import annotations

import hashlib
import logging
import math
from pathlib import Path

import numpy as np

from recsys.data.integrity import sha256_of

log = logging.getLogger(__name__)

PACK_VERSION = 1
#: largest allowed |numpy score - torch score| when a pack is built
TOLERANCE = 1e-4
NEURAL = ("dcdt", "single-tower")


def pack_key(space: str, data_files: list[Path], checkpoints: dict[str, Path | None]) -> str:
    """24 hex digits of sha256 over the pack version, the space, the data files and each checkpoint file."""
    digest = hashlib.sha256(f"pack v{PACK_VERSION}\n{space}\n".encode())
    for path in data_files:
        digest.update(f"{Path(path).name} {sha256_of(path)}\n".encode())
    for name in sorted(checkpoints):
        path = checkpoints[name]
        digest.update(f"{name} {sha256_of(path) if path is not None and Path(path).is_file() else 'none'}\n".encode())
    return digest.hexdigest()[:24]


# ---------------------------------------------------------------- numpy scorers (no torch)
def _relu(x: np.ndarray) -> np.ndarray:
    return np.maximum(x, 0.0)


class PackScorer:
    """``scores(q [B, E], texts) -> [B, n_videos]`` of one model from the pack's arrays."""

    def __init__(self, arrays: dict[str, np.ndarray], prefix: str):
        self.a = {k[len(prefix):]: v for k, v in arrays.items() if k.startswith(prefix)}

    def scores(self, q: np.ndarray, texts) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def contributions(self, q: np.ndarray) -> np.ndarray | None:
        return None


class CosineScorer(PackScorer):
    """Zero-shot cosine: unit query · unit video text (``EmbeddingCosine``)."""

    def scores(self, q, texts):
        q = q / np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-12)
        return q @ self.a["items"].T


class CFScorer(PackScorer):
    """Query CF: the ``k`` nearest training queries vote with their cosine (``QueryCF.score_vectors``)."""

    def scores(self, q, texts):
        sims = q @ self.a["queries"].T
        k = min(int(self.a["k"]), sims.shape[1])
        idx = np.argsort(-sims, axis=1, kind="stable")[:, :k]
        weights = np.clip(np.take_along_axis(sims, idx, axis=1), 0.0, None)
        return np.einsum("bk,bkn->bn", weights, self.a["votes"][idx]).astype(np.float32)


class BM25Scorer(PackScorer):
    """Okapi BM25 over the video texts (``recsys.models.bm25.BM25``: same tokens, same ``k1``, ``b``)."""

    def __init__(self, arrays, prefix):
        super().__init__(arrays, prefix)
        from rank_bm25 import BM25Okapi

        from recsys.retrieval.words import tokenize

        self.tokenize = tokenize
        corpus = [tokenize(str(doc)) or ["<empty>"] for doc in self.a["texts"]]
        self.index = BM25Okapi(corpus, k1=float(self.a["k1"]), b=float(self.a["b"]))
        self.n = len(corpus)

    def scores(self, q, texts):
        out = np.zeros((len(texts), self.n), dtype=np.float32)
        for row, text in enumerate(texts):
            tokens = self.tokenize(text)
            if tokens:
                out[row] = self.index.get_scores(tokens)
        return out


class DCDTScorer(PackScorer):
    """DCDT's ``score_towers(user_tower(q), item_tower())`` in numpy (see :mod:`recsys.models.dcdt`)."""

    def _parts(self, q):
        a = self.a
        qh = _relu(q @ a["A"].T + a["a"])  # query tower (dropout is off when serving)
        alpha_t = 1.0 / (1.0 + np.exp(-((qh @ a["W_q"].T) @ a["k_diff"].T) / math.sqrt(float(a["attn_dim"]))))
        return qh, qh @ a["th"].T, qh @ a["dh"].T, alpha_t

    def scores(self, q, texts):
        a, u = self.a, self.a["u"]
        qh, qt, qd, alpha_t = self._parts(q)
        qv = qd + alpha_t * (qt - qd)
        score = (qh @ a["w_q"])[:, None] + a["prior"][None, :] + u[0] * qt + u[1] * qd + u[2] * qv
        if len(u) > 3:  # the cosine skip
            score = score + u[3] * (q @ a["t"].T) + u[4] * (q @ a["d"].T)
        if "x" in a:  # a residual zero-shot cosine (item side pre-scaled)
            score = score + q @ a["x"].T
        return score

    def contributions(self, q):
        """``[n, 3]`` (title, description, rest) for one query, as ``DCDT.contributions``."""
        a, u = self.a, self.a["u"]
        q = q.reshape(1, -1)
        qh, qt, qd, alpha_t = self._parts(q)
        qt, qd, alpha_t = qt[0], qd[0], alpha_t[0]
        title = u[0] * qt + u[2] * alpha_t * qt
        desc = u[1] * qd + u[2] * (1 - alpha_t) * qd
        if len(u) > 3:
            title = title + u[3] * (a["t"] @ q[0])
            desc = desc + u[4] * (a["d"] @ q[0])
        rest = float(qh[0] @ a["w_q"]) + a["prior"]
        if "x" in a:  # the residual cosine reads the whole text: neither field alone
            rest = rest + a["x"] @ q[0]
        return np.stack([title, desc, rest], axis=1)


class SingleTowerScorer(PackScorer):
    """The single tower's MLP per (query, video), its first layer split into query and video parts."""

    def scores(self, q, texts):
        a = self.a
        out = []
        for row in q:
            hidden = _relu(row @ a["W1q"].T + a["b1"] + a["video_part"])  # [n, H]
            out.append((_relu(hidden @ a["W2"].T + a["b2"]) @ a["W3"].T + a["b3"])[:, 0])
        return np.stack(out) if out else np.zeros((0, len(a["video_part"])), dtype=np.float32)


SCORERS = {"embedding": CosineScorer, "cf": CFScorer, "bm25": BM25Scorer, "dcdt": DCDTScorer,
           "single-tower": SingleTowerScorer}


class Pack:
    """A loaded pack: ``arrays``, ``meta`` and one scorer per model it holds."""

    def __init__(self, arrays: dict[str, np.ndarray]):
        self.arrays = arrays
        self.key = str(arrays["meta/key"])
        self.space = str(arrays["meta/space"])
        self.models = [str(m) for m in arrays["meta/models"]]
        self.sources = dict(zip(self.models, (str(s) for s in arrays["meta/sources"])))
        self._scorers: dict[str, PackScorer] = {}

    def scorer(self, name: str) -> PackScorer:
        if name not in self._scorers:
            if name not in self.models:
                raise KeyError(f"the serving pack has no {name!r} model")
            self._scorers[name] = SCORERS[name](self.arrays, f"{name}/")
        return self._scorers[name]

    @property
    def train_queries(self) -> tuple[np.ndarray, list[list[str]], list[str]]:
        """Training queries: embeddings ``[m, E]``, relevant video ids per query, texts."""
        a = self.arrays
        ids = [str(v) for v in a["videos/ids"]]
        offsets = a["train/rel_offsets"]
        rel = [[ids[j] for j in a["train/rel"][offsets[i]:offsets[i + 1]]] for i in range(len(offsets) - 1)]
        return a["train/emb"], rel, [str(t) for t in a["train/texts"]]


def load_pack(path: Path) -> Pack:
    """Read a pack (``allow_pickle=False``: nothing in it is executed); :class:`ValueError` if it is not one."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in npz.files}
    except (OSError, ValueError, EOFError) as error:
        raise ValueError(f"{path} is not a readable serving pack: {error}") from None
    if int(arrays.get("meta/version", -1)) != PACK_VERSION:
        raise ValueError(f"{path} is a serving pack of another version")
    return Pack(arrays)


def save_pack(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Atomic write of ``arrays`` as a compressed ``.npz``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.npz")
    np.savez_compressed(tmp, **arrays)
    tmp.replace(path)


# ---------------------------------------------------------------- building (torch)
def _np(tensor) -> np.ndarray:
    return tensor.detach().cpu().float().numpy().copy()


def model_arrays(name: str, model) -> dict[str, np.ndarray]:
    """The query-independent arrays of one served model (torch in, numpy out)."""
    import torch

    with torch.no_grad():
        if name == "dcdt":
            model.eval()
            parts = model._split_item(model.item_tower())
            th, dh, kt, kd, prior, t, d = parts[:7]
            w_q, _, _, u, _ = model._fusion_parts()
            out = {"A": model.query_net[0].weight, "a": model.query_net[0].bias, "W_q": model.W_q.weight,
                   "w_q": w_q, "u": u, "th": th, "dh": dh, "k_diff": kt - kd, "prior": prior}
            if model.config.cosine_skip:
                out.update(t=t, d=d)
            if getattr(model.config, "residual", False) and len(parts) > 7:  # a scaled zero-shot cosine term
                out["x"] = parts[7]
            out = {k: _np(v) for k, v in out.items()}
            out["attn_dim"] = np.asarray(model.config.attn_dim)
            return out
        if name == "single-tower":
            model.eval()
            E, W = model.config.embed_dim, model.mlp[0].weight
            video_part = model.title_emb @ W[:, E:2 * E].T + model.desc_emb @ W[:, 2 * E:].T
            return {k: _np(v) for k, v in {"W1q": W[:, :E], "b1": model.mlp[0].bias, "video_part": video_part,
                                           "W2": model.mlp[3].weight, "b2": model.mlp[3].bias,
                                           "W3": model.mlp[5].weight, "b3": model.mlp[5].bias}.items()}
        if name == "embedding":
            return {"items": _np(model.item_tower())}
        if name == "cf":
            return {"queries": model.queries.copy(), "votes": model.votes.copy(), "k": np.asarray(model.config.k)}
        if name == "bm25":
            return {"texts": np.asarray(model.data.video_text, dtype=str), "k1": np.asarray(model.config.k1),
                    "b": np.asarray(model.config.b)}
    raise KeyError(f"no serving-pack layout for model {name!r}")


def build_pack(bundle, key: str, space: str, models: list[str]) -> dict[str, np.ndarray]:
    """The pack arrays of a :class:`recsys.videos.serving.ModelBundle` (models loaded, torch), verified.

    Each model's numpy scores are compared with its ``full_sort_predict`` on the training
    queries; a difference above :data:`TOLERANCE` (a model whose layout changed) raises.
    """
    from recsys.videos.prep import full_scores

    items = bundle.items
    q_train, rel_train, texts, _ = items.split("train")
    offsets = np.cumsum([0] + [len(r) for r in rel_train])
    arrays: dict[str, np.ndarray] = {
        "meta/version": np.asarray(PACK_VERSION), "meta/key": np.asarray(key), "meta/space": np.asarray(space),
        "meta/models": np.asarray(models, dtype=str),
        "videos/ids": np.asarray(items.video_ids, dtype=str),
        "train/emb": q_train.astype(np.float32), "train/texts": np.asarray(texts, dtype=str),
        "train/rel": np.asarray([v for r in rel_train for v in r], dtype=np.int64), "train/rel_offsets": offsets,
    }
    sources = []
    for name in models:
        model = bundle.model(name)
        arrays.update({f"{name}/{k}": v for k, v in model_arrays(name, model).items()})
        sources.append(bundle.sources.get(name, ""))
        check = q_train[:64]
        diff = np.abs(SCORERS[name](arrays, f"{name}/").scores(check, texts[:64])
                      - full_scores(model, check, texts[:64])).max()
        if not diff < TOLERANCE:
            raise RuntimeError(f"the numpy scorer of {name} differs from its full_sort_predict by {diff:.2e}")
    arrays["meta/sources"] = np.asarray(sources, dtype=str)
    return arrays
