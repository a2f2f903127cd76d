"""Residual-stream charts: norms across stages, sublayer writes, FFN activation histogram."""

from __future__ import annotations

import altair as alt
import numpy as np
import pandas as pd

from explainer.charts.common import ordered_unique, value_tooltip, with_title
from explainer.charts.heatmap import grid_chart


def stage_norms(df: pd.DataFrame, *, title: str | None = None) -> alt.Chart:
    """Residual-stream norm per position (y) at each stage (x), on a magnitude scale from 0.

    ``df`` columns: stage (str, in display order), position_label (str), norm (float).
    """
    df = df[["stage", "position_label", "norm"]].copy()
    return grid_chart(
        df,
        row_label_field="position_label",
        row_sort=ordered_unique(df["position_label"]),
        col_field="stage",
        col_label_field="stage",
        col_sort=ordered_unique(df["stage"]),
        value_field="norm",
        value_title="norm",
        kind="magnitude",
        scale_values=df["norm"],
        x_title="stage",
        y_title="position",
        title=title,
    )


def sublayer_contributions(df: pd.DataFrame, *, title: str | None = None) -> alt.Chart:
    """Norm of what each sublayer writes into the residual stream, grouped by position.

    ``df`` columns: block (int), sublayer ("attention"/"FFN"), position_label, norm.
    Within a position the bars run in computation order (B0 attention, B0 FFN, B1 ...).
    """
    df = df[["block", "sublayer", "position_label", "norm"]].copy()
    df["series"] = [f"B{b} {s}" for b, s in zip(df["block"], df["sublayer"], strict=True)]
    blocks = sorted(ordered_unique(df["block"]))
    sublayers = ordered_unique(df["sublayer"])
    compute_order = [f"B{b} {s}" for b in blocks for s in sublayers]
    # tableau20 alternates dark/light pairs: listing the series sublayer-major gives each
    # sublayer one hue (blue: attention, orange: FFN) and each block a shade of it.
    colour_order = [f"B{b} {s}" for s in sublayers for b in blocks]
    chart = (
        alt.Chart(df)
        .mark_bar()
        .encode(
            x=alt.X(
                "position_label:N",
                sort=ordered_unique(df["position_label"]),
                title="position",
                axis=alt.Axis(labelAngle=-45),
            ),
            xOffset=alt.XOffset("series:N", sort=compute_order),
            y=alt.Y("norm:Q", title="norm of sublayer output", scale=alt.Scale(zero=True)),
            color=alt.Color(
                "series:N",
                scale=alt.Scale(domain=colour_order, scheme="tableau20"),
                title="block / sublayer",
            ),
            tooltip=[
                alt.Tooltip("block:Q", title="block"),
                alt.Tooltip("sublayer:N", title="sublayer"),
                alt.Tooltip("position_label:N", title="position"),
                value_tooltip("norm", "norm"),
            ],
        )
    )
    return with_title(chart, title, width="container")


def neuron_histogram(
    values: np.ndarray,
    *,
    bins: int = 40,
    title: str | None = None,
    value_title: str = "FFN hidden activation",
) -> alt.LayerChart:
    """Histogram of activations (any shape, flattened) with a rule at 0.

    The raw values are sent and binned by Vega-Lite, so the tooltip's bin edges and
    counts come straight from the data.
    """
    values = np.asarray(values, dtype=float).ravel()  # [n]
    df = pd.DataFrame({"activation": values})
    binning = alt.Bin(maxbins=bins)
    bars = (
        alt.Chart(df)
        .mark_bar()
        .encode(
            x=alt.X("activation:Q", bin=binning, title=value_title),
            y=alt.Y("count():Q", title="number of activations"),
            tooltip=[
                alt.Tooltip("activation:Q", bin=binning, title="bin", format=".4f"),
                alt.Tooltip("count():Q", title="count"),
            ],
        )
    )
    # Where ReLU/GELU cut: everything left of the rule is (nearly) switched off.
    zero = alt.Chart(pd.DataFrame({"zero": [0.0]})).mark_rule(color="#888", strokeDash=[4, 3]).encode(x="zero:Q")
    return with_title(alt.layer(bars, zero), title, width="container")
