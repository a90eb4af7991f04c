"""recsys.registry: lookups, aliases, duplicate detection and ``python -m recsys models``.

These need no model imports (the specs name their classes as strings); resolving every
class is :func:`recsys.registry.check_registry`, run by the per-domain contract tests.
"""

from __future__ import annotations

import dataclasses
import json

import pytest

from recsys import cli, registry


def test_every_entry_is_complete_and_unique():
    names = [spec.name for spec in registry.MODELS]
    assert len(names) == len(set(names))
    for spec in registry.MODELS:
        assert spec.domain in registry.DOMAINS and spec.kind in ("neural", "fitted")
        assert spec.paper in registry.PAPERS and spec.display_name and spec.cite
        assert ":" in spec.config and ":" in spec.builder


def test_get_by_name_alias_and_domain():
    assert registry.get("dcdt").domain == "videos"
    assert registry.get("kmeans") is registry.get("anime-kmeans")  # alias
    assert registry.get("anime-kmeans").options == {"algorithm": "kmeans"}
    with pytest.raises(KeyError, match="unknown model 'dcdt'; choose one of: anime-"):
        registry.get("dcdt", domain="anime")
    with pytest.raises(KeyError, match="unknown model 'nope'"):
        registry.get("nope")


def test_by_domain_and_names_partition_the_list():
    by_domain = [spec for domain in registry.DOMAINS for spec in registry.by_domain(domain)]
    assert sorted(s.name for s in by_domain) == sorted(s.name for s in registry.MODELS)
    assert set(registry.names(kind="neural")) | set(registry.names(kind="fitted")) == set(registry.names())
    with pytest.raises(KeyError, match="unknown domain"):
        registry.by_domain("music")


def test_a_name_registered_twice_is_detected(monkeypatch):
    clash = dataclasses.replace(registry.get("ease"), name="ease-copy", aliases=("kmeans",))
    monkeypatch.setattr(registry, "MODELS", (*registry.MODELS, clash))
    with pytest.raises(RuntimeError, match="'kmeans' registered twice"):
        registry.get("dcdt")


def test_models_json_lists_every_entry(capsys):
    assert cli.main(["models", "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [row["name"] for row in rows] == [spec.name for spec in registry.MODELS]
    dcdt = next(row for row in rows if row["name"] == "dcdt")
    assert dcdt["domain"] == "videos" and dcdt["kind"] == "neural" and dcdt["paper_title"].startswith("Dual-tower")
    assert json.loads(registry.as_json()) == rows


def test_models_table_has_one_line_per_entry(capsys):
    assert cli.main(["models"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == len(registry.MODELS) and lines[0].split("\t")[:3] == ["dcdt", "videos", "neural"]


def _domains_import() -> bool:
    try:
        for domain in registry.DOMAINS:
            registry.domain_module(domain, "training")
    except ImportError:
        return False
    return True


@pytest.mark.skipif(not _domains_import(), reason="the domain packages are not all written yet")
def test_every_entry_resolves():
    registry.check_registry()
