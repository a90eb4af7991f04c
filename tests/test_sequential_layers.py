"""The one field embedder and MLP (recsys.models.layers), and that DSSM and CL-DSSM both use them."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from recsys import registry
from recsys.data.sequential import FeatureTable
from recsys.models.layers import FeatureEmbedding, masked_mean, mlp
from tests.sequential_toy import toy_dataset


def test_feature_embedding_zero_for_unknown_and_mean_of_genres():
    # entities 0..2: field "a" codes 0, 1, 2; genres [], [1, 2], [2, 0]
    table = FeatureTable(["a"], torch.tensor([[0], [1], [2]]), [3], multi_name="g",
                         multi=torch.tensor([[0, 0], [1, 2], [2, 0]]), multi_cardinality=3)
    embed = FeatureEmbedding(table, dim=2)
    with torch.no_grad():
        embed.fields[0].weight.copy_(torch.tensor([[5.0, 5.0], [1.0, 0.0], [0.0, 1.0]]))
        embed.bag.weight.copy_(torch.tensor([[9.0, 9.0], [2.0, 0.0], [0.0, 4.0]]))
    out = embed(torch.tensor([0, 1, 2]))
    assert embed.output_dim == 4 and out.shape == (3, 4)
    # field a: code 1 -> (1, 0); genres mean over non-zero codes only: [1, 2] -> ((2,0) + (0,4)) / 2 = (1, 2)
    assert out[1].tolist() == [1.0, 0.0, 1.0, 2.0]
    assert out[2].tolist() == [0.0, 1.0, 0.0, 4.0]  # genre 2 alone; the 0 is padding
    assert out[0, 2:].tolist() == [0.0, 0.0]  # no genres at all: zeros
    assert [s.shape for s in embed.slots(torch.tensor([1, 2]))] == [(2, 2), (2, 2)]


def test_new_tables_start_small_with_zero_padding_rows():
    torch.manual_seed(0)
    table = FeatureTable(["a"], torch.zeros(5, 1, dtype=torch.long), [1000])
    weight = FeatureEmbedding(table, dim=64).fields[0].weight
    assert weight[0].abs().sum() == 0  # code 0 = unknown embeds to zeros
    assert weight[1:].std().item() == pytest.approx(0.02, rel=0.05)


def test_codes_outside_the_cardinality_are_refused():
    table = FeatureTable(["a"], torch.tensor([[0], [3]]), [3])
    with pytest.raises(ValueError, match="codes outside 0..2"):
        FeatureEmbedding(table, dim=2, kind="user")


def test_mlp_is_linear_relu_dropout_with_a_linear_end():
    net = mlp([4, 8, 2], dropout=0.1)
    assert [type(m) for m in net] == [nn.Linear, nn.ReLU, nn.Dropout, nn.Linear]
    # masked mean of rows (1, 3) and (3, 5) with the third row masked: (2, 4)
    x = torch.tensor([[[1.0, 3.0], [3.0, 5.0], [100.0, 100.0]]])
    assert masked_mean(x, torch.tensor([[True, True, False]])).tolist() == [[2.0, 4.0]]


def test_dssm_and_cl_dssm_share_embedder_activation_and_padding():
    data = toy_dataset()
    dssm, cl_dssm = registry.get("dssm").build(data), registry.get("cl-dssm").build(data)
    for model in (dssm, cl_dssm):
        activations = {type(m) for m in model.modules() if isinstance(m, (nn.ReLU, nn.GELU))}
        assert activations == {nn.ReLU}  # CL-DSSM has no Transformer, so no GELU anywhere
        embedders = [m for m in model.modules() if isinstance(m, FeatureEmbedding)]
        assert len(embedders) == 2 and all(e.fields[0].padding_idx == 0 for e in embedders)
    assert dssm.item_embedding.padding_idx == cl_dssm.item_embedding.padding_idx == 0
