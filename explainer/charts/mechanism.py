"""Charts of the "How it answers" page: attribution bars, ranked ablations, patching grids, steering.

Pure builders: DataFrames / arrays in, Altair charts out (the numbers come from ``model_core.interp``).
Signed quantities (contributions, changes, recovery) use the shared diverging scale centred on 0.
"""

from __future__ import annotations

from collections.abc import Sequence

import altair as alt
import numpy as np
import pandas as pd

from explainer.charts.common import BASE_COLOUR, HIGHLIGHT_COLOUR, fixed, signed_scale, with_title
from explainer.charts.heatmap import MAX_SLANTED_COLS, grid_chart, grid_frame

TOTAL_COLOUR = "#444444"


def attribution_bars(df: pd.DataFrame, *, value_title: str, title: str | None = None) -> alt.LayerChart:
    """Horizontal bars of each component's direct contribution (``component``, ``value``, in forward order),
    then a dark ``total`` bar: the real value the parts sum to. A rule marks 0."""
    order = list(df["component"])
    bars = (
        alt.Chart(df)
        .mark_bar()
        .encode(
            y=alt.Y("component:N", sort=order, title=None, axis=alt.Axis(labelLimit=160, labelOverlap=False)),
            x=alt.X("value:Q", title=value_title),
            color=alt.condition(alt.datum.component == "total", alt.value(TOTAL_COLOUR),
                                alt.Color("value:Q", scale=signed_scale(df["value"]), legend=None)),  # fmt: skip
            tooltip=[alt.Tooltip("component:N"), alt.Tooltip("value:Q", title=value_title, format="+.4f"),
                     alt.Tooltip("what:N", title="what it is")],  # fmt: skip
        )
    )
    zero = alt.Chart(pd.DataFrame({"x": [0.0]})).mark_rule(color="#888").encode(x="x:Q")
    # Streamlit fits a "container"-wide chart's axes and title inside the height: leave room for them
    return with_title(alt.layer(bars, zero), title, width="container", height=22 * len(df) + 90)


def ranked_effect_bars(df: pd.DataFrame, *, value_title: str, title: str | None = None,
                       select_name: str | None = None) -> alt.LayerChart:  # fmt: skip
    """Bars of each component's effect (``component``, ``value``, ``flipped``, ``answer``, ``logprob``), most
    negative first; components whose removal flips the answer in orange. ``select_name``: a click
    selection on ``component``."""
    order = list(df.sort_values("value", kind="stable")["component"])
    base = alt.Chart(df)
    select = alt.selection_point(name=select_name, fields=["component"], on="click") if select_name else None
    bars = base.mark_bar(cursor="pointer" if select else "default").encode(
        y=alt.Y("component:N", sort=order, title=None, axis=alt.Axis(labelOverlap=False)),
        x=alt.X("value:Q", title=value_title),
        color=fixed("color", alt.condition(alt.datum.flipped, alt.value(HIGHLIGHT_COLOUR), alt.value(BASE_COLOUR))),
        opacity=fixed("opacity", alt.condition(select, alt.value(1.0), alt.value(0.55)) if select else alt.value(1.0)),
        tooltip=[alt.Tooltip("component:N"), alt.Tooltip("value:Q", title=value_title, format="+.4f"),
                 alt.Tooltip("logprob:Q", title="Δ log-probability", format="+.4g"),
                 alt.Tooltip("answer:N", title="answer without it")],  # fmt: skip
    )
    if select:
        bars = bars.add_params(select)
    zero = alt.Chart(pd.DataFrame({"x": [0.0]})).mark_rule(color="#888").encode(x="x:Q")
    # Streamlit fits a "container"-wide chart's axes and title inside the height: leave room for them
    return with_title(alt.layer(bars, zero), title, width="container", height=22 * len(df) + 90)


def recovery_heatmap(values: np.ndarray, row_labels: Sequence[str], col_labels: Sequence[str], *,
                     x_title: str, y_title: str | None, title: str | None = None,
                     select_name: str | None = None) -> alt.Chart:  # fmt: skip
    """Recovery [rows, cols] (1 = the clean run's logit difference restored, 0 = none) on a diverging scale
    around 0, each cell printed; ``select_name``: a click selection on (row, col)."""
    df = grid_frame(np.asarray(values, dtype=float), list(row_labels), list(col_labels))
    chart = grid_chart(df, row_label_field="row_label", row_sort=list(row_labels), col_field="col",
                       col_label_field="col_label", col_sort=list(col_labels), value_field="value",
                       value_title="recovery", kind="signed", scale_values=np.append(values, [1.0, -1.0]),
                       x_title=x_title, y_title=y_title, title=None)  # fmt: skip
    # only values that matter are printed (|recovery| >= 0.1): a grid of "0.00" would hide them; tooltips are exact
    text = alt.Chart(df).transform_filter("abs(datum.value) >= 0.1").mark_text(fontSize=10).encode(
        y=alt.Y("row_label:N", sort=list(row_labels)),
        x=alt.X("col_label:N", sort=list(col_labels)),
        text=alt.Text("value:Q", format=".2f"),
        color=fixed("color", alt.when("abs(datum.value) > 0.6").then(alt.value("white")).otherwise(alt.value("black"))),
    )
    if select_name:
        select = alt.selection_point(name=select_name, fields=["row", "col"], on="click")
        chart = chart.add_params(select).encode(
            stroke=fixed("stroke", alt.when(select, empty=False).then(alt.value("black")).otherwise(alt.value(None))),
            strokeWidth=fixed("strokeWidth", alt.value(2))
        )
    # Streamlit fits the title, the axes with their labels and the legend inside the height, so it holds them
    # all: column labels of ~6.5 px a character, on end past MAX_SLANTED_COLS columns (a nested input's roles,
    # "17 arg3.inner.v2", take 100 px) with the legend below, else at 45 degrees; then 26 px a row for the cells
    upright = len(col_labels) > MAX_SLANTED_COLS
    labels = 6.5 * max((len(c) for c in col_labels), default=0) * (1.0 if upright else 0.71)
    height = max(26 * len(row_labels) + 75 + round(labels) + (100 if upright else 0), 190)
    return with_title(alt.layer(chart, text), title, width="container", height=height)


def probability_compare(df: pd.DataFrame, *, title: str | None = None, at: str = "=") -> alt.Chart:
    """Grouped bars of a few tokens' probabilities (``token``, ``run``, ``probability``) in two or more runs."""
    return with_title(
        alt.Chart(df).mark_bar().encode(
            x=alt.X("token:N", sort=list(dict.fromkeys(df["token"])), title="token"),
            xOffset=alt.XOffset("run:N", sort=list(dict.fromkeys(df["run"]))),
            y=alt.Y("probability:Q", scale=alt.Scale(domain=[0, 1]), title=f"probability at {at}"),
            color=alt.Color("run:N", sort=list(dict.fromkeys(df["run"])), title=None,
                            legend=alt.Legend(orient="bottom", labelLimit=260)),  # fmt: skip
            tooltip=[alt.Tooltip("run:N"), alt.Tooltip("token:N"), alt.Tooltip("probability:Q", format=".6f"),
                     alt.Tooltip("logprob:Q", title="log-probability", format=".4g")],  # fmt: skip
        ),
        # the height holds the axes and the legend too (Streamlit fits them inside it): 180 left no room for bars
        title, width="container", height=320,
    )  # fmt: skip
