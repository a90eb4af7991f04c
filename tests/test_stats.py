import math

import pytest

from recsys.eval.stats import COLUMNS, cohens_d, comparison_table, holm, welch


def test_holm_worked_example():
    # sorted 0.01, 0.03, 0.04 -> x3, x2, x1 = 0.03, 0.06, 0.04 -> running max 0.03, 0.06, 0.06
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])


def test_holm_ignores_nan_and_caps_at_one():
    # two finite p-values: 0.2 x 2 = 0.4, then max(0.4, 0.9 x 1) = 0.9
    adjusted = holm([0.9, float("nan"), 0.2])
    assert adjusted[0] == pytest.approx(0.9) and adjusted[2] == pytest.approx(0.4) and math.isnan(adjusted[1])
    assert holm([0.6, 0.7]) == pytest.approx([1.0, 1.0])


def test_cohens_d_and_welch():
    # a = [1, 2, 3] (mean 2, var 1), b = [2, 3, 4] (mean 3, var 1): pooled sd 1, d = -1
    assert cohens_d([1, 2, 3], [2, 3, 4]) == pytest.approx(-1.0)
    t, p = welch([1, 2, 3], [2, 3, 4])
    # t = (2 - 3) / sqrt(1/3 + 1/3) = -1.2247
    assert t == pytest.approx(-1.224744871) and 0.2 < p < 0.4
    assert all(math.isnan(x) for x in welch([1.0], [2.0, 3.0]))
    assert all(math.isnan(x) for x in welch([1.0, 1.0], [2.0, 2.0]))  # no spread: no test


def test_comparison_table_direction_and_correction():
    values = {"ref": [0.10, 0.11, 0.12], "strong": [0.20, 0.21, 0.22], "same": [0.10, 0.12, 0.11]}
    table = comparison_table(values, "ref", "hit@10")
    assert tuple(table.columns) == COLUMNS
    strong = table.set_index("model").loc["strong"]
    assert strong["diff"] == pytest.approx(0.10)
    assert strong["p_holm"] == pytest.approx(min(1.0, 2 * strong["p"]))  # smallest of two p-values, x2
    assert strong["verdict"].startswith("strong better than ref")
    same = table.set_index("model").loc["same"]
    assert same["verdict"].startswith("no significant difference")
