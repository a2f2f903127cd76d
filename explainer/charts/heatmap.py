"""Rect heatmaps over a 2-D array: the shared base of the matrix and attention charts.

``grid_frame`` turns an array [rows, cols] into one row per cell; ``grid_chart`` draws it
with labels sorted by index (never alphabetically), a colour scale picked by the kind of
quantity, optional grey masked cells, and exact-value tooltips.
"""

from __future__ import annotations

from collections.abc import Sequence

import altair as alt
import numpy as np
import pandas as pd

from explainer.charts.common import MASK_GREY, Kind, color_scale, fixed, require_unique, value_tooltip, with_title

# Above this many columns, per-column tick labels overlap: switch to a numeric axis.
MAX_LABELLED_COLS = 32


def grey_when_masked(colour: alt.Color):
    """Masked cells take no part in the computation: grey, whatever their stored value."""
    return alt.when("datum.masked").then(alt.value(MASK_GREY)).otherwise(colour)


def grid_frame(
    values: np.ndarray,
    row_labels: Sequence[str],
    col_labels: Sequence[str],
    *,
    row_field: str = "row",
    col_field: str = "col",
    row_label_field: str = "row_label",
    col_label_field: str = "col_label",
    value_field: str = "value",
    masked: np.ndarray | None = None,
) -> pd.DataFrame:
    """One row per cell of ``values`` [rows, cols], in row-major order.

    Columns: row index, col index, their labels, the value and (if given) ``masked``.
    """
    values = np.asarray(values, dtype=float)  # [rows, cols]
    if values.ndim != 2:
        raise ValueError(f"expected a 2-D array, got shape {values.shape}")
    n_rows, n_cols = values.shape
    if len(row_labels) != n_rows or len(col_labels) != n_cols:
        raise ValueError(f"{len(row_labels)} row / {len(col_labels)} col labels for shape {values.shape}")
    rows, cols = np.indices(values.shape)  # [rows, cols] each
    df = pd.DataFrame(
        {
            row_field: rows.ravel(),
            col_field: cols.ravel(),
            row_label_field: np.asarray(row_labels, dtype=object)[rows.ravel()],
            col_label_field: np.asarray(col_labels, dtype=object)[cols.ravel()],
            value_field: values.ravel(),
        }
    )
    if masked is not None:
        masked = np.asarray(masked, dtype=bool)
        if masked.shape != values.shape:
            raise ValueError(f"mask shape {masked.shape} != values shape {values.shape}")
        df["masked"] = masked.ravel()
    return df


MAX_SLANTED_COLS = 16  # more named columns than this: their labels stand upright


def grid_chart(
    df: pd.DataFrame,
    *,
    row_label_field: str,
    row_sort: list[str],
    col_field: str,
    col_label_field: str,
    col_sort: list[str],
    value_field: str,
    value_title: str,
    kind: Kind,
    scale_values,
    x_title: str,
    y_title: str,
    title: str | None,
    tooltip: list | None = None,
    numeric_cols: bool = False,
    index_cols: bool = False,
) -> alt.Chart:
    """The rect heatmap every 2-D chart shares.

    ``tooltip`` replaces the default (row, col, value) tooltip. ``scale_values`` are the
    values the colour domain is fitted to (masked entries already left out). ``index_cols``: the column
    labels are just 0, 1, 2, ... (a d_head dimension), so they lie flat and, where the chart is too narrow
    for all of them (16 at 390 px), every other one is drawn (the rest are readable from their neighbours).
    """
    y = alt.Y(f"{row_label_field}:N", sort=row_sort, title=y_title)
    if numeric_cols:
        # Each cell spans [c - 0.5, c + 0.5] on a numeric axis: cells stay adjacent and the
        # axis gets a few round ticks instead of hundreds of overlapping labels.
        n_cols = len(col_sort)
        base = alt.Chart(df).transform_calculate(
            col_start=f"datum.{col_field} - 0.5", col_end=f"datum.{col_field} + 0.5"
        )
        x_enc = {
            "x": alt.X(
                "col_start:Q",
                title=x_title,
                scale=alt.Scale(domain=[-0.5, n_cols - 0.5], nice=False, zero=False),
                axis=alt.Axis(tickMinStep=1),
            ),
            "x2": alt.X2("col_end:Q"),
        }
    else:
        base = alt.Chart(df)
        x_enc = {
            "x": alt.X(
                f"{col_label_field}:N",
                sort=col_sort,
                title=x_title,
                # every label drawn: Vega's overlap check compares the rotated labels' bounding boxes, which
                # overlap long before the slanted text does, and hid every other position at 390 px. Many
                # columns (a list of 10 values has 24 positions) stand upright: slanted, they ran into each other
                axis=alt.Axis(labelAngle=0, labelOverlap="parity") if index_cols else
                alt.Axis(labelAngle=-90 if len(col_sort) > MAX_SLANTED_COLS else -45, labelOverlap=False),
            )
        }
    # many named columns (24 positions of a 10-value list): the legend below, so the cells get the chart's width;
    # at its right it left a phone's columns a few pixels each, too narrow for their labels
    legend = alt.Legend(orient="bottom") if not numeric_cols and len(col_sort) > MAX_SLANTED_COLS else alt.Undefined
    colour = alt.Color(f"{value_field}:Q", scale=color_scale(kind, scale_values), title=value_title, legend=legend)
    if "masked" in df.columns:
        colour = grey_when_masked(colour)
    if tooltip is None:
        tooltip = [
            alt.Tooltip(f"{row_label_field}:N", title=y_title),
            alt.Tooltip(f"{col_label_field}:N", title=x_title),
            value_tooltip(value_field, value_title),
        ]
    # invalid="show": keep cells whose value is null (masked scores) instead of dropping them.
    chart = base.mark_rect(invalid="show").encode(y=y, color=colour, tooltip=tooltip, **x_enc)
    return with_title(chart, title, width="container")


def matrix_heatmap(
    values: np.ndarray,
    row_labels: Sequence[str],
    col_labels: Sequence[str] | None = None,
    *,
    title: str | None = None,
    x_title: str = "dimension",
    y_title: str = "position",
    value_title: str = "value",
    kind: Kind = "signed",
    scale_values=None,
) -> alt.Chart:
    """Heatmap of ``values`` [rows, cols]: embeddings, positional encodings, activations, grads.

    ``row_labels`` must be unique (use ``position_labels(tokens)`` for positions). With
    more than 32 columns the x axis is numeric (column index) instead of one label each.
    ``scale_values``: the values the colour scale is fitted to (default ``values``), e.g. two runs' arrays
    so that two heatmaps side by side share one scale.
    """
    values = np.asarray(values, dtype=float)  # [rows, cols]
    n_cols = values.shape[1]
    named_cols = col_labels is not None
    row_labels = require_unique(row_labels, "row labels")
    col_labels = [str(c) for c in range(n_cols)] if col_labels is None else require_unique(col_labels, "column labels")
    df = grid_frame(values, row_labels, col_labels)
    numeric_cols = n_cols > MAX_LABELLED_COLS
    # On a numeric axis the hovered column's index is the useful coordinate; its name
    # is added only when the caller gave real names.
    tooltip = [
        alt.Tooltip("row_label:N", title=y_title),
        alt.Tooltip("col:Q", title=x_title),
    ]
    if named_cols:
        tooltip.append(alt.Tooltip("col_label:N", title=f"{x_title} name"))
    tooltip.append(value_tooltip("value", value_title))
    return grid_chart(
        df,
        row_label_field="row_label",
        row_sort=row_labels,
        col_field="col",
        col_label_field="col_label",
        col_sort=col_labels,
        value_field="value",
        value_title=value_title,
        kind=kind,
        scale_values=values if scale_values is None else np.asarray(scale_values, dtype=float),
        x_title=x_title,
        y_title=y_title,
        title=title,
        tooltip=tooltip if numeric_cols else None,
        numeric_cols=numeric_cols,
        index_cols=not named_cols and not numeric_cols,
    )


def cell_text(
    df: pd.DataFrame,
    *,
    row_label_field: str,
    row_sort: list[str],
    col_label_field: str,
    col_sort: list[str],
    value_field: str,
    fmt: str = ".2f",
    light_text_test: str,
) -> alt.Chart:
    """Value printed in each cell, to layer over a ``grid_chart`` of the same ``df``.

    ``light_text_test`` is a Vega expression true where the cell colour is dark.
    """
    return (
        alt.Chart(df)
        .mark_text(fontSize=10)
        .encode(
            y=alt.Y(f"{row_label_field}:N", sort=row_sort),
            x=alt.X(f"{col_label_field}:N", sort=col_sort),
            text=alt.Text(f"{value_field}:Q", format=fmt),
            color=fixed("color", alt.when(light_text_test).then(alt.value("white")).otherwise(alt.value("black"))),
        )
    )
