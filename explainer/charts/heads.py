"""Charts of the Heads page: whole-input-space views (heads x operations, scores by digit, the accuracy map).

Pure builders: arrays or DataFrames in, Altair charts out; no Streamlit and no model maths. The numbers
printed in cells come from the caller's formatter (`fraction` here for shares of attention,
`explainer.format.percent` for accuracies): neither rounds a value that is not exactly 1 (or 0) to it.
"""

from __future__ import annotations

from collections.abc import Sequence

import altair as alt
import numpy as np
import pandas as pd

from explainer import format as fmt
from explainer.charts.common import HIGHLIGHT_COLOUR, PROBABILITY_SCHEME, Kind, color_scale, fixed, with_title

CELL_HEIGHT = 22  # px per row of a heads x operations heatmap
MAP_CELL = 7  # px per row of the accuracy map, plus room for its axes (Streamlit fits them inside the height)
MAP_FRAME = 70
# (A "container"-wide chart with a legend below it and a fixed height is drawn with almost no plot area in
# Streamlit 1.67: the heatmaps size by their row step instead, the line charts keep the default height, and the
# map, which needs a fixed height, has no legend: the page says what its colours mean.)


def fraction(x: float, decimals: int = 2) -> str:
    """A share of attention with two decimals, more where rounding would reach an end the value is not:
    0.366 -> "0.37", 0.9996 -> "0.9996", 0.00004 -> "<0.0001" (never "1.00" or "0.00" unless it is exactly 1 or 0).

    (Percentages are `explainer.format.percent`'s, which the page passes in as a table's `fmt`.)"""
    x = float(x)
    if not np.isfinite(x):
        return "—"
    for d in range(decimals, decimals + 3):
        text = f"{x:.{d}f}"
        if not ((float(text) == 1 and x < 1) or (float(text) == 0 and x > 0)):
            return text
    step = 10.0 ** -(decimals + 2)
    return f">{1 - step:.{decimals + 2}f}" if x > 0.5 else f"<{step:.{decimals + 2}f}"


def margin(x: float) -> str:
    """A logit margin: two decimals ("5.63"), and two significant digits below 0.01 ("0.0041"), so that a small
    margin does not read as a tie ("0.00")."""
    x = float(x)
    if not np.isfinite(x) or abs(x) >= 0.01 or x == 0:
        return fmt.logit(x)
    return fmt.logit(x, min(8, 1 - int(np.floor(np.log10(abs(x))))))


def table_frame(values: np.ndarray, rows: Sequence[str], cols: Sequence[str], *, row_field: str = "row",
                col_field: str = "operation", fmt=fraction) -> pd.DataFrame:  # fmt: skip
    """One row per cell of `values` [rows, cols]: the labels, the value and its printed text."""
    values = np.asarray(values, dtype=float)
    r, c = np.indices(values.shape)
    return pd.DataFrame({
        row_field: np.asarray(rows, dtype=object)[r.ravel()],
        col_field: np.asarray(cols, dtype=object)[c.ravel()],
        "value": values.ravel(),
        "text": [fmt(v) for v in values.ravel()],
    })  # fmt: skip


def table_heatmap(df: pd.DataFrame, *, rows: Sequence[str], cols: Sequence[str], row_field: str = "row",
                  col_field: str = "operation", title: str | None = None, value_title: str = "value",
                  row_title: str = "head", col_title: str = "operation", kind: Kind = "probability",
                  selection: str | None = None, legend: bool = True) -> alt.LayerChart:  # fmt: skip
    """A heatmap of a `table_frame` (rows x columns, sorted as given) with each cell's text printed in it.

    `kind` picks the colour scale (probability: fixed [0, 1] blues). `selection` names a click selection on
    (row, column): the page reads `event["selection"][selection]`."""
    values = df["value"].to_numpy(dtype=float)
    scale = color_scale(kind, values)
    finite = values[np.isfinite(values)]
    top = 1.0 if kind == "probability" else (float(finite.max()) if finite.size else 1.0)
    # viridis is dark at the bottom, blues at the top: print light text on the dark end
    light = f"datum.value > {0.55 * top}" if kind == "probability" else f"datum.value < {0.45 * top}"
    tooltip = [alt.Tooltip(f"{row_field}:N", title=row_title), alt.Tooltip(f"{col_field}:N", title=col_title),
               alt.Tooltip("text:N", title=value_title)]  # fmt: skip
    x = alt.X(f"{col_field}:N", sort=list(cols), title=col_title, axis=alt.Axis(labelAngle=0, orient="top"))
    y = alt.Y(f"{row_field}:N", sort=list(rows), title=row_title)
    colour = alt.Color("value:Q", scale=scale, title=value_title,
                       legend=alt.Legend(orient="bottom", gradientLength=160) if legend else None)  # fmt: skip
    pointer = {"cursor": "pointer"} if selection else {}
    rect = alt.Chart(df).mark_rect(stroke="white", strokeWidth=1, **pointer).encode(x=x, y=y, color=colour,
                                                                                   tooltip=tooltip)
    if selection:
        pick = alt.selection_point(name=selection, fields=[row_field, col_field], on="click")
        rect = rect.add_params(pick).encode(
            strokeWidth=fixed("strokeWidth", alt.when(pick).then(alt.value(3)).otherwise(alt.value(1))),
            stroke=fixed("stroke", alt.when(pick, empty=False).then(alt.value(HIGHLIGHT_COLOUR)).otherwise(
                alt.value("white"))),
        )
    text = alt.Chart(df).mark_text(fontSize=11).encode(
        x=x, y=y, text="text:N", tooltip=tooltip,
        color=fixed("color", alt.when(light).then(alt.value("white")).otherwise(alt.value("black"))),
    )  # fmt: skip
    chart = alt.layer(rect, text)
    return with_title(chart, title, width="container", height=alt.Step(CELL_HEIGHT))


def score_lines(df: pd.DataFrame, *, slots: Sequence[str], title: str | None = None,
                y_domain: tuple[float, float] | None = None, value_title: str = "the slot's value",
                legend: bool = True) -> alt.Chart:  # fmt: skip
    """Mean score against the slot's value, one line per slot. Columns: value, slot, score (NaN: no data)."""
    y_scale = alt.Scale(domain=list(y_domain), nice=False, zero=False) if y_domain else alt.Scale(zero=False)
    n_values = df["value"].nunique()
    chart = alt.Chart(df.dropna(subset=["score"])).mark_line(point=n_values <= 20, strokeWidth=2).encode(
        x=alt.X("value:Q", title=value_title, axis=alt.Axis(tickMinStep=1),
                scale=alt.Scale(domain=[float(df["value"].min()), float(df["value"].max())], nice=False)),
        y=alt.Y("score:Q", title="mean scaled score", scale=y_scale),
        color=alt.Color("slot:N", sort=list(slots), title="slot", legend=_slot_legend(len(slots)) if legend else None),
        tooltip=[alt.Tooltip("slot:N"), alt.Tooltip("value:Q", title="value"),
                 alt.Tooltip("score:Q", title="mean score", format=".3f")],
    )  # fmt: skip
    return with_title(chart, title, width="container")


def _slot_legend(n_slots: int) -> alt.Legend:
    """Below the chart. More than three slots (lists of up to 10 values): numbers only, five to a row, under the
    title "slot"; in one row of "slot 1", "slot 2", ... the chart's third of the page showed three of ten."""
    if n_slots <= 3:
        return alt.Legend(orient="bottom")
    return alt.Legend(orient="bottom", columns=5, labelExpr="replace(datum.label, 'slot ', '')")


def map_frame(ops: np.ndarray, values: np.ndarray, n_values: int, margin: np.ndarray, right: np.ndarray,
              texts: Sequence[str]) -> pd.DataFrame:  # fmt: skip
    """One row per expression, placed on the accuracy map: `values` [n, 2 or 3] counted from 0.

    Within a block the first value runs left to right and the second top to bottom; blocks are laid out by
    the third value (left to right) and the operation (top to bottom), one empty row/column between them."""
    ops, values = np.asarray(ops), np.asarray(values)
    block = n_values + 1
    third = values[:, 2] if values.shape[1] > 2 else np.zeros(len(values), dtype=int)
    return pd.DataFrame({
        "x": third * block + values[:, 0], "y": ops * block + values[:, 1], "expression": list(texts),
        "margin": np.asarray(margin, dtype=float), "right": np.asarray(right, dtype=bool),
    })  # fmt: skip


def accuracy_map(df: pd.DataFrame, *, operations: Sequence[str], n_values: int, blocks: int, min_value: int = 0,
                 title: str | None = None, selection: str | None = None) -> alt.Chart:  # fmt: skip
    """Every expression as one cell of a `map_frame`: blue by the margin where right (from white at 0 to the
    darkest at the largest margin), orange where wrong; no legend (say so beside it). `selection` names a click
    selection on the expression."""
    block = n_values + 1
    width, height = blocks * block - 1, len(operations) * block - 1
    names = "[" + ", ".join(f"'{op}'" for op in operations) + "]"
    right_margins = df.loc[df["right"], "margin"].to_numpy()
    top = float(right_margins.max()) if right_margins.size and right_margins.max() > 0 else 1.0
    colour = alt.when("!datum.right").then(alt.value(HIGHLIGHT_COLOUR)).otherwise(
        alt.Color("margin:Q", scale=alt.Scale(scheme=PROBABILITY_SCHEME, domain=[0, top], clamp=True),
                  title="margin (right answers)", legend=None))  # fmt: skip
    x_ticks = [b * block + (n_values - 1) / 2 + 0.5 for b in range(blocks)]
    y_ticks = [k * block + (n_values - 1) / 2 + 0.5 for k in range(len(operations))]
    chart = alt.Chart(df).transform_calculate(x2="datum.x + 1", y2="datum.y + 1").mark_rect(
        **({"cursor": "pointer"} if selection else {})).encode(
        x=alt.X("x:Q", scale=alt.Scale(domain=[0, width], nice=False, zero=True),
                axis=alt.Axis(values=x_ticks, labelExpr=f"floor(datum.value / {block}) + {min_value}", grid=False,
                              title="third value (in each block: first value →)" if blocks > 1 else
                              "first value →", labels=blocks > 1, ticks=blocks > 1)),
        x2="x2:Q",
        y=alt.Y("y:Q", scale=alt.Scale(domain=[0, height], nice=False, zero=True, reverse=True),
                axis=alt.Axis(values=y_ticks, labelExpr=f"{names}[floor(datum.value / {block})]", grid=False,
                              title="operation (in each block: second value ↓)")),
        y2="y2:Q",
        color=colour,
        tooltip=[alt.Tooltip("expression:N"), alt.Tooltip("right:N", title="right"),
                 alt.Tooltip("margin:Q", format=".2f")],
    )  # fmt: skip
    if selection:
        chart = chart.add_params(alt.selection_point(name=selection, fields=["expression"], on="click"))
    return with_title(chart, title, width="container", height=MAP_CELL * (height + 1) + MAP_FRAME)
