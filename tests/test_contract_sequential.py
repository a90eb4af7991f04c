"""Every sequential registry entry honours the model contract (tests/contract.py) on a tiny dataset."""

from __future__ import annotations

import importlib
import json

import pytest
import torch

from recsys import registry
from tests.contract import check_contract
from tests.sequential_toy import toy_dataset

SPECS = registry.by_domain("sequential")


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny tensors gain nothing from threads; on the shared CPU one thread is much faster."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny():
    """The 12-user, 10-item toy (user u watches (u + t) % 10 + 1) and a batch of 3 users.

    Histories are right-aligned and 0-padded (the batch contract of recsys.data.sequential);
    ``item`` is each row's next item, so the neural models can take a training step on it.
    """
    data = toy_dataset(n_users=12, n_items=10, length=6)
    batch = {
        "user": torch.tensor([1, 2, 3]),
        "item_seq": torch.tensor([[0, 0, 2, 3, 4], [0, 3, 4, 5, 6], [0, 0, 0, 0, 4]]),
        "item_seq_len": torch.tensor([3, 4, 1]),
        "item": torch.tensor([5, 7, 5]),
    }
    return data, batch


def test_the_domain_lists_its_models():
    assert [s.name for s in SPECS] == ["cl-epidtn", "epidtn", "cltd", "cl-dssm", "sasrec", "mind", "dssm",
                                       "youtube-dnn", "wals", "most-popular"]
    for spec in SPECS:  # each entry resolves (registry.check_registry() covers every domain)
        assert spec.kind in ("neural", "fitted") and spec.paper == "cl-epidtn"
        assert spec.model_class().kind == spec.kind
        spec.config_class()


@pytest.mark.parametrize("spec", SPECS, ids=[s.name for s in SPECS])
def test_contract(spec, tmp_path):
    data, batch = tiny()
    check_contract(spec, data, batch, tmp_path)
    model = spec.build(data)
    # sequential convention: n_items + 1 columns, column 0 is the padding item
    assert (model.n_columns, model.padding_index) == (11, 0)
    if "variant" in spec.options:  # the registry's options pick the CL-EPIDTN variant
        assert model.config.variant == spec.options["variant"] == spec.name


@pytest.mark.parametrize("spec", SPECS, ids=[s.name for s in SPECS])
def test_listed_by_the_cli(spec, capsys):
    for domain in registry.DOMAINS:  # the CLI builds every domain's verbs
        try:
            importlib.import_module(f"{registry.DOMAINS[domain]}.cli")
        except ModuleNotFoundError as error:
            pytest.skip(f"domain {domain} has no CLI module in this tree yet ({error})")
    from recsys.cli import main

    assert main(["models", "--format", "json"]) == 0
    listed = {row["name"]: row for row in json.loads(capsys.readouterr().out)}
    assert listed[spec.name]["domain"] == "sequential" and listed[spec.name]["kind"] == spec.kind
