"""Output-side charts: next-token probabilities, logits and the logit lens."""

from __future__ import annotations

from collections.abc import Sequence

import altair as alt
import numpy as np
import pandas as pd

from explainer.charts.common import (
    BASE_COLOUR,
    HIGHLIGHT_COLOUR,
    MID_GREY,
    fixed,
    ordered_unique,
    require_unique,
    signed_scale,
    value_tooltip,
    with_title,
)
from explainer.charts.heatmap import cell_text, grid_chart


def _vocab_frame(values: np.ndarray, tokens: Sequence[str], field: str, highlight) -> pd.DataFrame:
    values = np.asarray(values, dtype=float)  # [vocab]
    tokens = require_unique(tokens, "vocabulary tokens")
    if len(tokens) != values.shape[0]:
        raise ValueError(f"{len(tokens)} tokens for {values.shape[0]} values")
    return pd.DataFrame(
        {
            "token_id": np.arange(len(tokens)),
            "token": tokens,
            field: values,
            "highlighted": [t == highlight for t in tokens],
        }
    )


def _token_axis(df: pd.DataFrame) -> alt.X:
    """The vocabulary along x, in the frame's order (not alphabetical)."""
    return alt.X("token:N", sort=df["token"].tolist(), title="next token", axis=alt.Axis(labelAngle=0))


def _token_tooltips(field: str) -> list:
    return [alt.Tooltip("token:N", title="token"), alt.Tooltip("token_id:Q", title="token id"),
            value_tooltip(field, field)]  # fmt: skip


def probability_bars(
    probs: np.ndarray,
    tokens: Sequence[str],
    *,
    highlight: str | None = None,
    title: str | None = None,
    top_k: int | None = None,
    highlight_title: str = "true answer",
) -> alt.LayerChart:
    """Next-token probabilities [V] as bars on [0, 1]; ``highlight`` (the answer) stands out.

    Bars follow vocabulary order; with ``top_k`` only the k most probable are kept,
    most probable first.
    """
    df = _vocab_frame(probs, tokens, "probability", highlight)
    if top_k is not None:
        # Stable sort: equal probabilities keep vocabulary order, so the cut is deterministic.
        df = df.sort_values("probability", ascending=False, kind="stable").head(top_k)
    df["role"] = np.where(df["highlighted"], highlight_title, "other")
    chart = (
        alt.Chart(df)
        .mark_bar()
        .encode(
            x=_token_axis(df),
            y=alt.Y("probability:Q", scale=alt.Scale(domain=[0.0, 1.0]), title="probability"),
            # Categorical on purpose: the colour answers "is this the answer?", the bar
            # height already carries the probability.
            color=alt.Color(
                "role:N",
                scale=alt.Scale(
                    domain=[highlight_title, "other"],
                    range=[HIGHLIGHT_COLOUR, BASE_COLOUR],
                ),
                title=None,
            ),
            tooltip=_token_tooltips("probability"),
        )
    )
    return with_title(alt.layer(chart, _answer_label(df, "probability")), title, width="container")


def _answer_label(df: pd.DataFrame, field: str) -> alt.LayerChart:
    """The highlighted token's name at the end of its bar: on a phone the axis shows only every other token."""
    base = alt.Chart(df).encode(x=_token_axis(df), y=alt.Y(f"{field}:Q"), text=alt.Text("token:N"))
    up = base.transform_filter(f"datum.highlighted && datum.{field} >= 0")
    down = base.transform_filter(f"datum.highlighted && datum.{field} < 0")
    text = {"fontWeight": "bold", "fontSize": 12, "color": MID_GREY}  # readable on both themes
    return alt.layer(up.mark_text(dy=-9, **text),  # above a bar that rises
                     down.mark_text(dy=9, **text))  # below one that falls


def logit_bars(
    logits: np.ndarray,
    tokens: Sequence[str],
    *,
    highlight: str | None = None,
    title: str | None = None,
) -> alt.LayerChart:
    """Raw logits [V] as signed bars, coloured on a diverging scale centred on 0."""
    df = _vocab_frame(logits, tokens, "logit", highlight)
    chart = (
        alt.Chart(df)
        .mark_bar(strokeWidth=2)
        .encode(
            x=_token_axis(df),
            y=alt.Y("logit:Q", title="logit"),
            color=alt.Color("logit:Q", scale=signed_scale(df["logit"]), title="logit"),
            # The answer is outlined rather than recoloured: colour already means sign/size.
            stroke=fixed("stroke", alt.when("datum.highlighted").then(alt.value("black")).otherwise(alt.value(None))),
            tooltip=_token_tooltips("logit"),
        )
    )
    return with_title(alt.layer(chart, _answer_label(df, "logit")), title, width="container")


def logit_lens_lines(df: pd.DataFrame, *, title: str | None = None) -> alt.LayerChart:
    """Probability of candidate tokens read off each stage of the residual stream.

    ``df`` columns: stage (str, in display order), token (str), probability (float).
    """
    df = df[["stage", "token", "probability"]].copy()
    stages = ordered_unique(df["stage"])
    candidates = ordered_unique(df["token"])
    heat = grid_chart(
        df,
        row_label_field="stage",
        row_sort=stages,
        col_field="token",
        col_label_field="token",
        col_sort=candidates,
        value_field="probability",
        value_title="probability",
        kind="probability",
        scale_values=df["probability"],
        x_title="candidate token",
        y_title="stage",
        title=None,
    )
    text = cell_text(
        df,
        row_label_field="stage",
        row_sort=stages,
        col_label_field="token",
        col_sort=candidates,
        value_field="probability",
        light_text_test="datum.probability > 0.5",
    )
    return with_title(alt.layer(heat, text), title, width="container")
