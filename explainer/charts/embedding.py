"""Embedding-space charts: positional-encoding sinusoids and a 2-D token scatter."""

from __future__ import annotations

from collections.abc import Sequence

import altair as alt
import numpy as np
import pandas as pd

from explainer.charts.common import fixed, max_abs, ordered_unique, value_tooltip, with_title


def sinusoid_lines(
    pos_enc: np.ndarray,
    dims: Sequence[int],
    *,
    title: str | None = None,
) -> alt.Chart:
    """Chosen dimensions of the positional encoding ``pos_enc`` [T, D] against position."""
    pos_enc = np.asarray(pos_enc, dtype=float)  # [pos, d_model]
    dims = [int(d) for d in dims]
    n_pos = pos_enc.shape[0]
    dim_labels = [f"dim {d}" for d in dims]
    df = pd.DataFrame(
        {
            "position": np.tile(np.arange(n_pos), len(dims)),
            "dim": np.repeat(dims, n_pos),
            "dim_label": np.repeat(dim_labels, n_pos),
            # [pos, dims] -> [dims, pos] -> one row per (dim, pos), matching the columns above
            "value": pos_enc[:, dims].T.ravel(),
        }
    )
    m = max_abs(df["value"])
    chart = (
        alt.Chart(df)
        .mark_line(point=True)
        .encode(
            x=alt.X("position:Q", title="position", axis=alt.Axis(tickMinStep=1)),
            y=alt.Y("value:Q", title="encoding value", scale=alt.Scale(domain=[-m, m])),
            # Dimensions are categories here; keep the legend in the order they were asked for.
            color=alt.Color("dim_label:N", sort=dim_labels, title="dimension"),
            tooltip=[
                alt.Tooltip("dim:Q", title="dimension"),
                alt.Tooltip("position:Q", title="position"),
                value_tooltip("value", "value"),
            ],
        )
    )
    return with_title(chart, title, width="container")


def embedding_scatter(
    points: np.ndarray,
    labels: Sequence[str],
    *,
    groups: Sequence[str] | None = None,
    highlight: Sequence[str] | None = None,
    x_title: str = "PC 1",
    y_title: str = "PC 2",
    title: str | None = None,
) -> alt.LayerChart:
    """Points [n, 2] (already projected, e.g. by PCA) with a text label on each point.

    Colour is the point's group ("digit", "operation", ...); labels in ``highlight`` are
    drawn larger and bold.
    """
    points = np.asarray(points, dtype=float)  # [n, 2]
    if points.ndim != 2 or points.shape[1] != 2 or points.shape[0] != len(labels):
        raise ValueError(f"points shape {points.shape} does not match {len(labels)} labels")
    highlight_set = {str(h) for h in highlight or ()}
    labels = [str(label) for label in labels]
    group_values = [str(g) for g in groups] if groups is not None else ["token"] * len(labels)
    df = pd.DataFrame(
        {
            "x": points[:, 0],
            "y": points[:, 1],
            "label": labels,
            "group": group_values,
            "highlighted": [label in highlight_set for label in labels],
        }
    )
    is_hi = alt.when("datum.highlighted")
    base = alt.Chart(df).encode(
        x=alt.X("x:Q", title=x_title, scale=alt.Scale(zero=False)),
        y=alt.Y("y:Q", title=y_title, scale=alt.Scale(zero=False)),
        color=alt.Color(
            "group:N",
            sort=ordered_unique(group_values),
            title="group",
            legend=None if groups is None else alt.Legend(),
        ),
        tooltip=[
            alt.Tooltip("label:N", title="token"),
            alt.Tooltip("group:N", title="group"),
            value_tooltip("x", x_title),
            value_tooltip("y", y_title),
        ],
    )
    dots = base.mark_circle(opacity=0.85).encode(
        size=fixed("size", is_hi.then(alt.value(180)).otherwise(alt.value(60))))
    # fontWeight is a mark property, not an encoding channel: highlighted labels get
    # their own text layer rather than a condition.
    text = base.mark_text(align="left", dx=7, dy=-4, fontSize=11).encode(text="label:N")
    text_hi = base.mark_text(align="left", dx=9, dy=-6, fontSize=15, fontWeight="bold").encode(text="label:N")
    text = text.transform_filter("!datum.highlighted")
    text_hi = text_hi.transform_filter("datum.highlighted")
    return with_title(alt.layer(dots, text, text_hi), title, width="container")
