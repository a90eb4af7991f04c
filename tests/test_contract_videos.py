"""Every registered video model honours the one contract (tests/contract.py) on tiny random data."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from contract import check_contract
from test_videos_fixtures import tiny_items

from recsys import registry

SPECS = registry.by_domain("videos")


def tiny_batch(items):
    """Three queries (their texts too, for BM25), an item per query and two negatives each."""
    q, _, texts, _ = items.split("train")
    query = torch.from_numpy(np.concatenate([q[:2], items.split("test")[0][:1]]))
    return {"query": query, "query_text": [*texts[:2], "no such words"], "item": torch.tensor([0, 3, 4]),
            "neg": torch.tensor([[1, 2], [0, 4], [2, 3]])}


def test_the_domain_has_its_five_models():
    assert [s.name for s in SPECS] == ["dcdt", "single-tower", "bm25", "cf", "embedding"]
    for spec in SPECS:
        spec.config_class(), spec.model_class()  # the paths resolve


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.name)
def test_contract(spec, tmp_path):
    items = tiny_items()
    batch = tiny_batch(items)
    check_contract(spec, items, batch, tmp_path)
    model = spec.build(items)
    assert model.n_columns == items.n_videos == 5 and model.padding_index is None


def test_bm25_reads_the_query_text_key():
    items = tiny_items()
    model = registry.get("bm25").build(items).fit(items)
    # only video 4 ("gram schmidt video 4") shares a word with "gram": it alone scores above 0
    scores = model.full_sort_predict({"query_text": ["gram"]})[0]
    assert (scores > 0).tolist() == [False, False, False, False, True]
    with pytest.raises(TypeError, match="list of strings"):
        model.full_sort_predict({"query_text": "gram"})


def test_every_video_model_is_listed_by_the_cli(capsys, monkeypatch):
    from recsys.cli import main

    # only this domain's CLI module is loaded, so another domain mid-change cannot fail this test
    monkeypatch.setattr(registry, "DOMAINS", {"videos": registry.DOMAINS["videos"]})
    assert main(["models", "--format", "json"]) == 0
    listed = {row["name"]: row for row in json.loads(capsys.readouterr().out)}
    for spec in SPECS:
        assert listed[spec.name]["domain"] == "videos" and listed[spec.name]["kind"] == spec.kind
    assert listed["embedding"]["paper"] == "ours"  # our zero-shot baseline, not the DCDT paper's
