"""Plotly figures for the explorer (embedding maps, elbow curves) and the studio (loss curves).

Figures are built here, not in the pages, so they are unit-tested without a browser
and the CLI or a notebook can draw the same pictures.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

#: above this many distinct values a colour column is treated as continuous or too fine to colour by
MAX_CATEGORIES = 40
PALETTE = (
    "#4C78A8", "#F58518", "#54A24B", "#E45756", "#72B7B2", "#EECA3B", "#B279A2", "#FF9DA6",
    "#9D755D", "#BAB0AC", "#1F77B4", "#2CA02C", "#D62728", "#9467BD", "#8C564B", "#E377C2",
    "#7F7F7F", "#BCBD22", "#17BECF", "#AEC7E8",
)


def colorable_columns(meta: pd.DataFrame) -> list[str]:
    """Metadata columns worth colouring by: few distinct values (text, categories, small ints)."""
    columns = []
    for name in meta.columns:
        if name in ("label",):
            continue
        series = meta[name]
        if series.map(lambda v: isinstance(v, (list, tuple, np.ndarray))).any():
            continue
        n_unique = series.nunique(dropna=True)
        if 1 < n_unique <= MAX_CATEGORIES:
            columns.append(name)
    return columns


def top_categories(values: pd.Series, n: int = len(PALETTE) - 1, other: str = "other") -> pd.Series:
    """``values`` as text with all but the ``n`` most frequent categories lumped into ``other``.

    Why: past the palette's size, colours repeat and a map coloured by 36 topics cannot
    be read; the most common categories plus "other" can.
    """
    groups = values.astype("object").where(values.notna(), "(missing)").astype(str)
    keep = groups.value_counts().index[:n]
    return groups.where(groups.isin(keep), other) if groups.nunique() > n + 1 else groups


def _wrap(text: str, width: int = 60) -> str:
    text = str(text)
    return text if len(text) <= width else text[: width - 1] + "…"


def scatter_figure(
    coords: np.ndarray,
    meta: pd.DataFrame,
    color_by: str | None = None,
    highlight: Sequence[int] = (),
    overlays: Sequence[dict] = (),
    title: str = "",
    height: int = 620,
) -> go.Figure:
    """The embedding map: one marker per row, coloured by ``meta[color_by]``, hover = ``meta['label']``.

    ``highlight`` rows (e.g. a query's nearest videos) get a ring; each overlay is a dict
    ``{"x", "y", "name", "symbol"?, "color"?, "size"?, "text"?}`` drawn on top (the query,
    a user's weighted-average position, ...).
    """
    coords = np.asarray(coords, dtype=float)
    if len(coords) != len(meta):
        raise ValueError(f"{len(coords)} coordinates for {len(meta)} metadata rows")
    labels = meta["label"].astype(str).map(_wrap) if "label" in meta else pd.Series(np.arange(len(meta))).astype(str)
    fig = go.Figure()
    if color_by and color_by in meta.columns:
        groups = top_categories(meta[color_by])
        order = [v for v in groups.value_counts().index.tolist() if v != "other"]
        order += ["other"] if (groups == "other").any() else []
        for i, value in enumerate(order):
            mask = (groups == value).to_numpy()
            colour = "#C8C8C8" if value == "other" else PALETTE[i % len(PALETTE)]
            fig.add_trace(go.Scattergl(
                x=coords[mask, 0], y=coords[mask, 1], mode="markers", name=_wrap(value, 30),
                marker={"size": 6, "opacity": 0.75, "color": colour},
                text=labels[mask], customdata=np.flatnonzero(mask),
                hovertemplate="%{text}<br>" + f"{color_by}: {_wrap(value, 40)}<extra></extra>",
            ))
    else:
        fig.add_trace(go.Scattergl(
            x=coords[:, 0], y=coords[:, 1], mode="markers", name="items",
            marker={"size": 6, "opacity": 0.7, "color": PALETTE[0]},
            text=labels, customdata=np.arange(len(coords)), hovertemplate="%{text}<extra></extra>",
        ))
    highlight = [int(i) for i in highlight]
    if highlight:
        fig.add_trace(go.Scatter(
            x=coords[highlight, 0], y=coords[highlight, 1], mode="markers", name="highlighted",
            marker={"size": 14, "color": "rgba(0,0,0,0)", "line": {"width": 2.5, "color": "#111"}},
            text=labels.iloc[highlight], hovertemplate="%{text}<extra>highlighted</extra>",
        ))
    for overlay in overlays:
        fig.add_trace(go.Scatter(
            x=np.atleast_1d(overlay["x"]), y=np.atleast_1d(overlay["y"]), mode="markers+text",
            name=overlay.get("name", "overlay"), text=np.atleast_1d(overlay.get("text", overlay.get("name", ""))),
            textposition="top center",
            marker={"size": overlay.get("size", 18), "symbol": overlay.get("symbol", "star"),
                    "color": overlay.get("color", "#d62728"), "line": {"width": 1, "color": "#000"}},
            hovertemplate="%{text}<extra></extra>",
        ))
    fig.update_layout(
        title=title or None, height=height, margin={"l": 10, "r": 10, "t": 40 if title else 10, "b": 10},
        legend={"itemsizing": "constant", "font": {"size": 10}}, xaxis={"showticklabels": False, "title": None},
        yaxis={"showticklabels": False, "title": None}, template="plotly_white",
    )
    return fig


def elbow_figure(table: pd.DataFrame, chosen_k: int | None = None, height: int = 300) -> go.Figure:
    """K-means inertia (left axis) and silhouette (right axis) against k."""
    fig = make_subplots(specs=[[{"secondary_y": True}]])
    fig.add_trace(go.Scatter(x=table["k"], y=table["inertia"], mode="lines+markers", name="inertia"),
                  secondary_y=False)
    fig.add_trace(go.Scatter(x=table["k"], y=table["silhouette"], mode="lines+markers", name="silhouette"),
                  secondary_y=True)
    if chosen_k is not None:
        fig.add_vline(x=chosen_k, line_dash="dot", line_color="#888")
    fig.update_layout(height=height, margin={"l": 10, "r": 10, "t": 10, "b": 10}, template="plotly_white",
                      legend={"orientation": "h", "y": -0.25, "x": 0}, xaxis_title="k")
    fig.update_yaxes(title_text="inertia", secondary_y=False)
    fig.update_yaxes(title_text="silhouette", secondary_y=True)
    return fig


#: epoch-record entries that are not model metrics: position, schedule, timing, examples seen
NOT_METRICS = ("epoch", "lr", "seconds", "train_seconds", "examples")


def metric_names(histories: Mapping[str, Sequence[Mapping[str, float]]]) -> list[str]:
    """Metrics present in the epoch records (the bookkeeping of :data:`NOT_METRICS` left out), loss first."""
    names: list[str] = []
    for records in histories.values():
        for record in records:
            for key, value in record.items():
                if key in NOT_METRICS or key in names or not isinstance(value, (int, float)):
                    continue
                names.append(key)
    return sorted(names, key=lambda n: (not n.endswith("loss"), n))


def curves_figure(
    histories: Mapping[str, Sequence[Mapping[str, float]]], metric: str = "train_loss", height: int = 320,
    title: str | None = None, labels: Mapping[str, str] | None = None,
) -> go.Figure:
    """One line per run of ``metric`` against epoch (the studio's live and comparison charts).

    ``labels`` maps a history's key (a run id) to its legend entry (model and differing settings).
    """
    fig = go.Figure()
    last_epoch = 1
    for name, records in histories.items():
        points = [(r["epoch"], r[metric]) for r in records if metric in r and r.get(metric) is not None]
        if not points:
            continue
        x, y = zip(*points)
        last_epoch = max(last_epoch, max(x))
        fig.add_trace(go.Scatter(x=list(x), y=list(y), mode="lines+markers", name=(labels or {}).get(name, name)))
    fig.update_xaxes(dtick=max(1, math.ceil(last_epoch / 10)), tickformat="d")  # whole epochs only
    fig.update_layout(
        height=height, margin={"l": 10, "r": 10, "t": 40, "b": 10}, template="plotly_white",
        title=title or metric, xaxis_title="epoch", yaxis_title=metric, legend={"font": {"size": 10}},
    )
    return fig
