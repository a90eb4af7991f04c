"""The single list of models: what the project can train, fit and serve.

Every model is declared here once (:data:`MODELS`); the CLI (``python -m recsys models``,
``train``, ``recommend``), the training studio's recipes, the pages' model pickers, the
embedding explorer's sources and the experiments (``evaluate``, ``reproduce``) all
iterate this list instead of keeping lists of their own.

A :class:`ModelSpec` names its config dataclass and its model class as
``"module:attribute"`` strings, resolved on first use. That keeps ``python -m recsys
models`` and the pages' pickers from importing torch and every model file just to
print a list; :func:`check_registry` (run by the contract tests) resolves them all.

Adding a model: write ``recsys/models/<name>.py`` (config dataclass + class honouring
:mod:`recsys.models.base`), add one :class:`ModelSpec` to its domain's tuple below, and
add it to the contract test's tiny fixtures if its domain has none yet. README,
"Adding a model", walks through it.
"""

from __future__ import annotations

import importlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any

#: domain -> package with the domain's data prep, training, serving, experiments, CLI, page helpers
DOMAINS: dict[str, str] = {
    "videos": "recsys.videos",
    "anime": "recsys.anime",
    "sequential": "recsys.sequential",
}

#: the papers the project reproduces (see ``../shared/papers/README.md``)
PAPERS: dict[str, str] = {
    "dcdt": "Dual-tower contrastive recommender for teaching videos (DCDT)",
    "two-towers": "Two Towers: anime recommendations with a two-tower model, K-means/GMM retrieval and popularity",
    "cl-epidtn": "CL-EPIDTN: contrastive learning with personalized dual augmented vectors in a two-tower network",
    "ours": "ours (a baseline or variant this project adds; no paper claims it)",
}


def _resolve(path: str) -> Any:
    module, _, attribute = path.partition(":")
    return getattr(importlib.import_module(module), attribute)


@dataclass(frozen=True)
class ModelSpec:
    """One registered model.

    ``kind`` is ``"neural"`` (trained by gradient descent through ``calculate_loss``)
    or ``"fitted"`` (closed form or counting, through ``fit``). ``paper`` is a key of
    :data:`PAPERS`; ``cite`` says where in it (section, table) or which outside paper
    the model comes from. ``aliases`` are older or shorter names the CLI still accepts.
    """

    name: str
    display_name: str
    domain: str
    kind: str
    paper: str
    cite: str
    config: str  # "module:ConfigDataclass"
    builder: str  # "module:ModelClass"; called as ModelClass(config, data)
    summary: str = ""
    aliases: tuple[str, ...] = ()
    options: dict[str, Any] = field(default_factory=dict, hash=False)  # builder keywords fixed for this entry

    def config_class(self) -> type:
        return _resolve(self.config)

    def model_class(self) -> type:
        return _resolve(self.builder)

    def make_config(self, **overrides: Any):
        """The config dataclass with this entry's options and ``overrides`` (unknown keys ignored)."""
        import dataclasses

        cls = self.config_class()
        known = {f.name for f in dataclasses.fields(cls)}
        values = {**self.options, **overrides}
        return cls(**{k: v for k, v in values.items() if k in known})

    def build(self, data: Any, config: Any = None, **overrides: Any):
        """A fresh, untrained model: ``ModelClass(config, data)``, the one constructor shape."""
        return self.model_class()(config if config is not None else self.make_config(**overrides), data)

    def describe(self) -> dict[str, Any]:
        row = asdict(self)
        row["paper_title"] = PAPERS[self.paper]
        row["aliases"] = list(self.aliases)
        return row


# ---------------------------------------------------------------- videos (DCDT paper)
VIDEO_MODELS: tuple[ModelSpec, ...] = (
    ModelSpec("dcdt", "DCDT", "videos", "neural", "dcdt", "the paper's model (Sec. 3)",
              "recsys.models.dcdt:DCDTConfig", "recsys.models.dcdt:DCDT",
              "dual tower: query tower, title/description towers, cross-modal attention, hard negatives"),
    ModelSpec("single-tower", "Single tower", "videos", "neural", "dcdt", "Table 3 ablation",
              "recsys.models.single_tower:SingleTowerConfig", "recsys.models.single_tower:SingleTower",
              "one MLP over [query; title; description] (DCDT's ablation)"),
    ModelSpec("bm25", "BM25", "videos", "fitted", "dcdt", "Table 2 baseline",
              "recsys.models.bm25:BM25Config", "recsys.models.bm25:BM25", "keyword baseline over title + description"),
    ModelSpec("cf", "Collaborative filtering", "videos", "fitted", "dcdt", "Table 2 baseline",
              "recsys.models.query_cf:QueryCFConfig", "recsys.models.query_cf:QueryCF",
              "the nearest training queries vote for their videos"),
    ModelSpec("embedding", "Embedding cosine", "videos", "fitted", "ours", "zero-shot baseline (ours)",
              "recsys.models.embedding_cosine:EmbeddingCosineConfig", "recsys.models.embedding_cosine:EmbeddingCosine",
              "cosine between frozen query and video-text embeddings"),
)

# ---------------------------------------------------------------- anime (Two Towers paper)
ANIME_MODELS: tuple[ModelSpec, ...] = (
    ModelSpec("anime-two-tower", "Two-tower MSE (direct prediction)", "anime", "neural", "two-towers", "Sec. 5.1",
              "recsys.models.two_tower:TwoTowerConfig", "recsys.models.two_tower:TwoTowerRating",
              "the paper's two tower: 32 factors, MSE on ratings; seen users by predicted rating", aliases=("model",)),
    ModelSpec("anime-weighted", "Weighted average of item vectors", "anime", "fitted", "two-towers", "Sec. 5.2.1",
              "recsys.models.anime_retrieval:WeightedAverageConfig", "recsys.models.anime_retrieval:WeightedAverage",
              "unseen users: rating-weighted mean of their items' vectors, nearest items by Euclidean distance",
              aliases=("weighted",), options={"metric": "l2"}),
    ModelSpec("anime-weighted-ip", "Weighted average, inner product", "anime", "fitted", "ours",
              "variant of Sec. 5.2.1 (ours)", "recsys.models.anime_retrieval:WeightedAverageConfig",
              "recsys.models.anime_retrieval:WeightedAverage",
              "the weighted-average vector scored by inner product instead of distance (norm-biased)",
              aliases=("weighted-ip",), options={"metric": "ip"}),
    ModelSpec("anime-kmeans", "K-means nearest cluster", "anime", "fitted", "two-towers", "Sec. 5.2.2",
              "recsys.models.anime_retrieval:ClusterRetrievalConfig", "recsys.models.anime_retrieval:ClusterRetrieval",
              "most popular items of the nearest K-means cluster", aliases=("kmeans",),
              options={"algorithm": "kmeans"}),
    ModelSpec("anime-gmm", "Gaussian mixture nearest cluster", "anime", "fitted", "two-towers", "Sec. 5.2.2",
              "recsys.models.anime_retrieval:ClusterRetrievalConfig", "recsys.models.anime_retrieval:ClusterRetrieval",
              "most popular items of the most likely GMM component", aliases=("gmm",), options={"algorithm": "gmm"}),
    ModelSpec("anime-popular", "Popular (weighted rating)", "anime", "fitted", "two-towers", "Sec. 5.3 (cold start)",
              "recsys.models.popularity:PopularityConfig", "recsys.models.popularity:Popularity",
              "IMDb-style weighted rating; what a brand-new user gets", aliases=("popular",)),
    ModelSpec("anime-popular-count", "Popular (interaction count)", "anime", "fitted", "ours", "baseline (ours)",
              "recsys.models.popularity:PopularityConfig", "recsys.models.popularity:Popularity",
              "most watched anime", aliases=("popular-count",), options={"by": "count"}),
    ModelSpec("anime-itemknn", "Item-kNN cosine", "anime", "fitted", "ours", "baseline (Sarwar et al., WWW 2001)",
              "recsys.models.itemknn:ItemKNNConfig", "recsys.models.itemknn:ItemKNN",
              "cosine item-item neighbours of the history", aliases=("itemknn",)),
    ModelSpec("anime-ease", "EASE", "anime", "fitted", "ours", "baseline (Steck, WWW 2019)",
              "recsys.models.ease:EASEConfig", "recsys.models.ease:EASE",
              "closed-form item-item linear autoencoder", aliases=("ease",)),
    ModelSpec("anime-two-tower-implicit", "Implicit two-tower (sampled softmax + logQ)", "anime", "neural", "ours",
              "stronger two tower (ours; Yi et al., RecSys 2019 for logQ)",
              "recsys.models.implicit_two_tower:ImplicitTwoTowerConfig", "recsys.models.implicit_two_tower:ImplicitTwoTower",
              "user tower over the watch history, in-batch softmax with logQ correction", aliases=("implicit",)),
    ModelSpec("anime-two-tower-dlae", "Two-tower, denoising linear (closed form)", "anime", "fitted", "ours",
              "stronger two tower (ours; Steck, NeurIPS 2020, DLAE at low rank)",
              "recsys.models.dlae_two_tower:DLAETwoTowerConfig", "recsys.models.dlae_two_tower:DLAETwoTower",
              "linear user tower over the history, item table, inner product; dropout-penalised ridge",
              aliases=("dlae",)),
)

# ---------------------------------------------------------------- sequential (CL-EPIDTN paper)
SEQUENTIAL_MODELS: tuple[ModelSpec, ...] = (
    ModelSpec("cl-epidtn", "CL-EPIDTN", "sequential", "neural", "cl-epidtn", "the paper's model",
              "recsys.models.cl_epidtn:CLEPIDTNConfig", "recsys.models.cl_epidtn:CLEPIDTN",
              "Transformer user tower, personalized dual augmented vectors, contrastive tasks",
              options={"variant": "cl-epidtn"}),
    ModelSpec("epidtn", "EPIDTN (no CL)", "sequential", "neural", "cl-epidtn", "ablation: no contrastive tasks",
              "recsys.models.cl_epidtn:CLEPIDTNConfig", "recsys.models.cl_epidtn:CLEPIDTN",
              "CL-EPIDTN without its contrastive losses", options={"variant": "epidtn"}),
    ModelSpec("cltd", "CLTD (no aug. vectors)", "sequential", "neural", "cl-epidtn", "ablation: no augmented vectors",
              "recsys.models.cl_epidtn:CLEPIDTNConfig", "recsys.models.cl_epidtn:CLEPIDTN",
              "CL-EPIDTN without the dual augmented vectors", options={"variant": "cltd"}),
    ModelSpec("cl-dssm", "CL-DSSM (no Transformer)", "sequential", "neural", "cl-epidtn", "ablation: no Transformer",
              "recsys.models.cl_epidtn:CLEPIDTNConfig", "recsys.models.cl_epidtn:CLEPIDTN",
              "CL-EPIDTN with mean pooling instead of the Transformer", options={"variant": "cl-dssm"}),
    ModelSpec("sasrec", "SASRec", "sequential", "neural", "cl-epidtn", "baseline (Kang & McAuley, ICDM 2018)",
              "recsys.models.sasrec:SASRecConfig", "recsys.models.sasrec:SASRec", "self-attentive sequential model"),
    ModelSpec("mind", "MIND", "sequential", "neural", "cl-epidtn", "baseline (Li et al., CIKM 2019)",
              "recsys.models.mind:MINDConfig", "recsys.models.mind:MIND", "multi-interest capsule routing"),
    ModelSpec("dssm", "DSSM", "sequential", "neural", "cl-epidtn", "baseline (Huang et al., CIKM 2013)",
              "recsys.models.dssm:DSSMConfig", "recsys.models.dssm:DSSM", "two MLP towers, in-batch softmax"),
    ModelSpec("youtube-dnn", "YouTube DNN", "sequential", "neural", "cl-epidtn", "baseline (Covington et al., RecSys 2016)",
              "recsys.models.youtube_dnn:YouTubeDNNConfig", "recsys.models.youtube_dnn:YouTubeDNN",
              "mean-pooled history MLP, in-batch softmax"),
    ModelSpec("wals", "WALS", "sequential", "fitted", "cl-epidtn", "baseline (Hu, Koren & Volinsky, ICDM 2008)",
              "recsys.models.wals:WALSConfig", "recsys.models.wals:WALS", "weighted alternating least squares"),
    ModelSpec("most-popular", "Most popular", "sequential", "fitted", "cl-epidtn", "popularity baseline",
              "recsys.models.most_popular:MostPopularConfig", "recsys.models.most_popular:MostPopular",
              "most frequent training items"),
)

#: the single list
MODELS: tuple[ModelSpec, ...] = (*VIDEO_MODELS, *ANIME_MODELS, *SEQUENTIAL_MODELS)


_built: list = [None, {}]  # [the MODELS tuple indexed, its index]: serving looks a model up on every request


def _index() -> dict[str, ModelSpec]:
    if _built[0] is MODELS:
        return _built[1]
    index: dict[str, ModelSpec] = {}
    for spec in MODELS:
        for key in (spec.name, *spec.aliases):
            if key in index and index[key] is not spec:
                raise RuntimeError(f"model name {key!r} registered twice")
            index[key] = spec
    _built[:] = [MODELS, index]
    return index


def get(name: str, domain: str | None = None) -> ModelSpec:
    """The entry called ``name`` (or one of its aliases); :class:`KeyError` listing the choices."""
    spec = _index().get(name)
    if spec is None or (domain is not None and spec.domain != domain):
        choices = ", ".join(s.name for s in MODELS if domain is None or s.domain == domain)
        raise KeyError(f"unknown model {name!r}; choose one of: {choices}")
    return spec


def by_domain(domain: str) -> tuple[ModelSpec, ...]:
    if domain not in DOMAINS:
        raise KeyError(f"unknown domain {domain!r}; choose one of: {', '.join(DOMAINS)}")
    return tuple(spec for spec in MODELS if spec.domain == domain)


def names(domain: str | None = None, kind: str | None = None) -> list[str]:
    return [s.name for s in MODELS if (domain is None or s.domain == domain) and (kind is None or s.kind == kind)]


def domain_module(domain: str, role: str):
    """``recsys.<domain>.<role>`` (roles: prep, training, serving, experiments, cli, page)."""
    if domain not in DOMAINS:
        raise KeyError(f"unknown domain {domain!r}")
    return importlib.import_module(f"{DOMAINS[domain]}.{role}")


def check_registry() -> None:
    """Resolve every entry's config and class (the contract tests call this)."""
    _index()
    for spec in MODELS:
        if spec.kind not in ("neural", "fitted"):
            raise ValueError(f"{spec.name}: kind must be 'neural' or 'fitted', not {spec.kind!r}")
        if spec.paper not in PAPERS:
            raise ValueError(f"{spec.name}: unknown paper key {spec.paper!r}")
        spec.config_class()
        spec.model_class()


def as_json() -> str:
    return json.dumps([spec.describe() for spec in MODELS], indent=2)
