"""The reproduction's t-tests and sweep points on hand-made per-seed numbers (not real results)."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from recsys.eval.stats import COLUMNS
from recsys.sequential.plots import plot_sweep, sweep_points
from recsys.sequential.stats import ttests


def test_ttests_take_each_metric_from_its_own_split_with_direction_and_holm():
    rows = []
    # HR@10 on leave-one-out: cl-epidtn 0.10, 0.12, 0.14 (mean 0.12); sasrec 0.20, 0.22, 0.24 (mean 0.22);
    # most-popular 0.05 every seed. Recall@50 on the ratio split: cl-epidtn 0.30, 0.31, 0.32; sasrec the same.
    for seed, (cl, sas) in enumerate([(0.10, 0.20), (0.12, 0.22), (0.14, 0.24)]):
        rows += [{"model": "cl-epidtn", "seed": seed, "split": "loo", "hit@10": cl},
                 {"model": "sasrec", "seed": seed, "split": "loo", "hit@10": sas},
                 {"model": "most-popular", "seed": seed, "split": "loo", "hit@10": 0.05},
                 {"model": "cl-epidtn", "seed": seed, "split": "ratio", "recall@50": 0.30 + 0.01 * seed},
                 {"model": "sasrec", "seed": seed, "split": "ratio", "recall@50": 0.30 + 0.01 * seed}]
    table = ttests(pd.DataFrame(rows))
    assert list(table.columns) == list(COLUMNS)
    hr = table[table["metric"] == "hit@10"].set_index("model")
    # sasrec - cl-epidtn = +0.10; both stds 0.02, so t = 0.10 / sqrt(0.02^2/3 * 2) = 6.1237, Welch df = 4
    assert hr.loc["sasrec", "diff"] == pytest.approx(0.10) and hr.loc["sasrec", "t"] == pytest.approx(6.1237, abs=1e-3)
    assert hr.loc["sasrec", "n_model"] == 3 and hr.loc["sasrec", "reference"] == "cl-epidtn"
    # most-popular: -0.07, t = -0.07 / (0.02 / sqrt 3) = -6.0622 (df 2); Holm doubles the smaller p
    assert hr.loc["most-popular", "diff"] == pytest.approx(-0.07)
    assert hr.loc["most-popular", "t"] == pytest.approx(-6.0622, abs=1e-3)
    p = sorted(hr["p"])
    assert sorted(hr["p_holm"]) == pytest.approx([2 * p[0], max(2 * p[0], p[1])])
    assert hr.loc["sasrec", "verdict"].startswith("sasrec better than cl-epidtn")
    # Recall@50 comes from the ratio rows only: identical seeds, no difference
    rec = table[table["metric"] == "recall@50"].set_index("model")
    assert list(rec.index) == ["sasrec"] and rec.loc["sasrec", "diff"] == pytest.approx(0.0)
    assert rec.loc["sasrec", "p"] == pytest.approx(1.0)


def test_ttests_without_the_reference_are_empty():
    runs = pd.DataFrame([{"model": "sasrec", "seed": 0, "split": "loo", "hit@10": 0.2}])
    assert ttests(runs).empty and list(ttests(runs).columns) == list(COLUMNS)


def test_sweep_points_and_integer_ticks(tmp_path):
    # n_layers 1 over seeds: HR@10 0.10, 0.12, 0.14 -> mean 0.12, std 0.02; n_layers 3: 0.20 on one seed
    frame = pd.DataFrame([
        {"param": "n_layers", "value": 1, "seed": s, "hit@10": h, "recall@50": 0.3} for s, h in enumerate([0.10, 0.12, 0.14])
    ] + [{"param": "n_layers", "value": 3, "seed": 0, "hit@10": 0.20, "recall@50": float("nan")}])
    points = sweep_points(frame, "hit@10")
    assert points.loc[1, "mean"] == pytest.approx(0.12) and points.loc[1, "std"] == pytest.approx(0.02)
    assert points.loc[3, "count"] == 1 and math.isnan(points.loc[3, "std"])
    assert sweep_points(frame, "recall@50").index.tolist() == [1]  # the missing ratio job is left out
    ticks = plot_sweep(frame, "n_layers", tmp_path / "sweep.png", "layers")
    assert ticks == {"hit@10": ["1", "3"], "recall@50": ["1", "3"]}  # never 1.5 or 2.5
    assert (tmp_path / "sweep.png").stat().st_size > 1000
    lam = frame.assign(param="lambda_cl", value=[0.1, 0.1, 0.1, 0.5])
    assert plot_sweep(lam, "lambda_cl", tmp_path / "lam.png", "lambda")["hit@10"] == ["0.1", "0.5"]
