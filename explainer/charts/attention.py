"""Attention charts: pattern and score heatmaps, one query's bars, per-head small multiples.

Queries are on y and keys on x, both labelled ``"{i}: {token}"`` and sorted by position.
"""

from __future__ import annotations

from collections.abc import Sequence

import altair as alt
import numpy as np
import pandas as pd

from explainer.charts.common import (
    BASE_COLOUR,
    HIGHLIGHT_COLOUR,
    VALUE_FORMAT,
    Kind,
    fixed,
    position_labels,
    probability_scale,
    value_tooltip,
    with_props,
    with_title,
)
from explainer.charts.heatmap import grey_when_masked, grid_chart, grid_frame

# Scores at or below this are treated as masked fill values (-1e9, -1e10, finfo.min):
# real scaled Q.K scores of a small model are nowhere near it.
MASKED_SCORE_THRESHOLD = -1e4


def _attention_frame(
    matrix: np.ndarray,
    tokens: Sequence[str],
    value_field: str,
    masked: np.ndarray | None,
) -> pd.DataFrame:
    """One row per (query, key) cell, with positions, labels and raw tokens."""
    labels = position_labels(tokens)
    df = grid_frame(
        matrix,
        labels,
        labels,
        row_field="query_pos",
        col_field="key_pos",
        row_label_field="query_label",
        col_label_field="key_label",
        value_field=value_field,
        masked=masked,
    )
    toks = np.asarray([str(t) for t in tokens], dtype=object)
    df["query_token"] = toks[df["query_pos"].to_numpy()]
    df["key_token"] = toks[df["key_pos"].to_numpy()]
    return df


def _query_tooltips(value: alt.Tooltip, masked: bool) -> list:
    tips = [
        alt.Tooltip("query_pos:Q", title="query position"),
        alt.Tooltip("query_token:N", title="query token"),
        alt.Tooltip("key_pos:Q", title="key position"),
        alt.Tooltip("key_token:N", title="key token"),
        value,
    ]
    if masked:
        tips.append(alt.Tooltip("masked:N", title="masked"))
    return tips


def _position_heatmap(
    df: pd.DataFrame,
    tokens: Sequence[str],
    *,
    value_field: str,
    value_title: str,
    kind: Kind,
    scale_values,
    tooltip: list,
    title: str | None,
    selected_query: int | None,
    selection_name: str | None,
):
    """Query x key heatmap with an optional click-to-select-query param and row highlight."""
    labels = position_labels(tokens)
    chart = grid_chart(
        df,
        row_label_field="query_label",
        row_sort=labels,
        col_field="key_pos",
        col_label_field="key_label",
        col_sort=labels,
        value_field=value_field,
        value_title=value_title,
        kind=kind,
        scale_values=scale_values,
        x_title="key position (attended to)",
        y_title="query position (attending)",
        title=title,
        tooltip=tooltip,
    )
    stroke = None
    if selected_query is not None:
        # The page owns the selected query (it survives reruns and data changes), so
        # the outline follows it rather than the transient click state.
        stroke = alt.when(f"datum.query_pos == {int(selected_query)}")
    if selection_name is not None:
        # A click anywhere on a row selects that query; the page reads
        # event["selection"][selection_name] == [{"query_pos": i}].
        selection = alt.selection_point(name=selection_name, fields=["query_pos"], on="click")
        chart = chart.add_params(selection)
        if stroke is None:
            stroke = alt.when(selection, empty=False)
    if stroke is not None:
        chart = chart.encode(
            stroke=fixed("stroke", stroke.then(alt.value("black")).otherwise(alt.value(None))),
            strokeWidth=fixed("strokeWidth", alt.value(1.5)),
        )
    return chart


def attention_heatmap(
    pattern: np.ndarray,
    tokens: Sequence[str],
    *,
    title: str | None = None,
    selected_query: int | None = None,
    masked: np.ndarray | None = None,
    selection_name: str | None = "query",
) -> alt.Chart:
    """Attention weights ``pattern`` [q, k] on a fixed [0, 1] scale; masked cells grey.

    Clicking a cell selects its query row (param ``selection_name``, field ``query_pos``).
    """
    pattern = np.asarray(pattern, dtype=float)  # [q_pos, k_pos]
    df = _attention_frame(pattern, tokens, "weight", masked)
    return _position_heatmap(
        df,
        tokens,
        value_field="weight",
        value_title="attention weight",
        kind="probability",
        scale_values=pattern,
        tooltip=_query_tooltips(value_tooltip("weight", "weight"), masked is not None),
        title=title,
        selected_query=selected_query,
        selection_name=selection_name,
    )


def attention_scores_heatmap(
    scores: np.ndarray,
    tokens: Sequence[str],
    *,
    masked: np.ndarray | None = None,
    title: str | None = None,
    selected_query: int | None = None,
    selection_name: str | None = None,
    mask_threshold: float = MASKED_SCORE_THRESHOLD,
) -> alt.Chart:
    """Scaled Q.K scores [q, k] on a diverging scale centred on 0.

    Masked cells (given by ``masked``, or non-finite, or <= ``mask_threshold``) carry a
    null score and the text "masked", so a -1e9 fill value neither shows as a number
    nor stretches the colour domain.
    """
    scores = np.asarray(scores, dtype=float)  # [q_pos, k_pos]
    hidden = ~np.isfinite(scores) | (scores <= mask_threshold)
    if masked is not None:
        hidden |= np.asarray(masked, dtype=bool)
    shown = np.where(hidden, np.nan, scores)
    df = _attention_frame(shown, tokens, "score", hidden)
    df["score_text"] = [
        "masked" if h else format(s, VALUE_FORMAT) for s, h in zip(df["score"], df["masked"], strict=True)
    ]
    return _position_heatmap(
        df,
        tokens,
        value_field="score",
        value_title="scaled score",
        kind="signed",
        scale_values=shown,
        tooltip=_query_tooltips(alt.Tooltip("score_text:N", title="score"), masked=False),
        title=title,
        selected_query=selected_query,
        selection_name=selection_name,
    )


def attention_bars(
    weights: np.ndarray,
    tokens: Sequence[str],
    *,
    query_label: str,
    title: str | None = None,
) -> alt.LayerChart:
    """One query's attention distribution over keys [k]: horizontal bars on [0, 1]."""
    weights = np.asarray(weights, dtype=float)  # [k_pos]
    labels = position_labels(tokens)
    df = pd.DataFrame(
        {
            "key_pos": np.arange(len(weights)),
            "key_label": labels,
            "key_token": [str(t) for t in tokens],
            "weight": weights,
        }
    )
    base = alt.Chart(df).encode(
        y=alt.Y("key_label:N", sort=labels, title="key position (attended to)"),
        x=alt.X("weight:Q", scale=alt.Scale(domain=[0.0, 1.0]), title="attention weight"),
        tooltip=[
            alt.Tooltip("key_pos:Q", title="key position"),
            alt.Tooltip("key_token:N", title="key token"),
            value_tooltip("weight", "weight"),
        ],
    )
    bars = base.mark_bar().encode(color=alt.Color("weight:Q", scale=probability_scale(), title="weight", legend=None))
    text = base.mark_text(align="left", dx=3).encode(text=alt.Text("weight:Q", format=".3f"))
    title = title or f"Attention from query {query_label}"
    return with_title(alt.layer(bars, text), title, width="container")


def heads_frame(patterns: np.ndarray, tokens: Sequence[str], *, masked: np.ndarray | None = None) -> pd.DataFrame:
    """The data of a layer's `head_panel`s: one row per (head, query, key) cell of ``patterns`` [head, q, k].

    Its spec depends only on the tokens, the layer and the number of heads, so a live view can keep the
    spec and send a new frame when the weights change.
    """
    patterns = np.asarray(patterns, dtype=float)  # [head, q_pos, k_pos]
    frames = []
    for h in range(patterns.shape[0]):  # a handful of heads; builds data only, no maths
        df = _attention_frame(patterns[h], tokens, "weight", masked)
        df.insert(0, "head", h)
        frames.append(df)
    return pd.concat(frames, ignore_index=True)



def head_panel(
    pattern: np.ndarray,
    tokens: Sequence[str],
    *,
    layer: int,
    head: int,
    highlight: bool = False,
    masked: np.ndarray | None = None,
    selection_name: str | None = None,
    row_step: int = 18,
) -> alt.Chart:
    """One head's pattern [q, k] as a compact heatmap titled "L{layer} H{head}": a panel of "all heads".

    It is as wide as its container (a page puts one per column, so the panels stack on a phone) and a row
    step high; no legend (the fixed [0, 1] blues of every attention heatmap). ``highlight`` outlines it.
    With ``selection_name``, a click anywhere on it selects the head: the page reads
    ``event["selection"][selection_name] == [{"head": head}]``.
    """
    df = _attention_frame(np.asarray(pattern, dtype=float), tokens, "weight", masked)
    df.insert(0, "head", int(head))
    labels = position_labels(tokens)
    colour = alt.Color("weight:Q", scale=probability_scale(), title="attention weight", legend=None)
    chart = (
        alt.Chart(df)
        .mark_rect(cursor="pointer" if selection_name else alt.Undefined)
        .encode(
            x=alt.X("key_label:N", sort=labels, axis=alt.Axis(labelFontSize=8, labelAngle=-90, title=None)),
            y=alt.Y("query_label:N", sort=labels, axis=alt.Axis(labelFontSize=8, title=None)),
            color=grey_when_masked(colour) if masked is not None else colour,
            tooltip=[alt.Tooltip("head:Q", title="head")]
            + _query_tooltips(value_tooltip("weight", "weight"), masked is not None),
        )
    )
    chart = with_props(chart, width="container", height=alt.Step(row_step),
                       title=alt.TitleParams(f"L{layer} H{head}", color=HIGHLIGHT_COLOUR if highlight else None,
                                             fontWeight="bold" if highlight else "normal"))  # fmt: skip
    if highlight:
        chart = with_props(chart, view=alt.ViewBackground(stroke=HIGHLIGHT_COLOUR, strokeWidth=3))
    if selection_name is not None:
        chart = chart.add_params(alt.selection_point(name=selection_name, fields=["head"], on="click"))
    return chart


# ---------------------------------------------------------------- heads switched off
ABLATION_COLOURS = {"flips the answer": HIGHLIGHT_COLOUR, "keeps the answer": BASE_COLOUR}


def head_ablation_bars(df: pd.DataFrame, *, title=None, x_domain: tuple[float, float] | None = None,
                       bar_height: int = 22) -> alt.LayerChart:  # fmt: skip
    """Every head switched off alone at one answer position, ranked: horizontal bars of the change in the
    prediction's logit difference, from the most harmful head (most negative) down.

    ``df``: one row per head with columns ``head`` ("L0H3"), ``position_label``, ``predicts`` (the all-heads
    prediction there), ``delta_logit_diff``, ``delta_logprob``, ``logit_diff`` (with the head off), ``top``
    (the prediction with the head off) and ``flipped`` (bool): heads whose removal flips the prediction are
    coloured. The log-probability change is in the tooltip. ``x_domain``: the x axis's range (give every
    position's chart the same one so that they compare); default from 0 and the changes here.
    """
    df = df.copy()
    df["effect"] = np.where(df["flipped"].to_numpy(dtype=bool), "flips the answer", "keeps the answer")
    if x_domain is None:
        x_domain = change_domain(df["delta_logit_diff"])
    order = df.sort_values("delta_logit_diff", kind="stable")["head"].tolist()
    bars = (
        alt.Chart()
        .mark_bar()
        .encode(
            y=alt.Y("head:N", sort=order, title=None),
            x=alt.X("delta_logit_diff:Q", scale=alt.Scale(domain=list(x_domain), nice=True),
                    title="Δ logit difference (head off − all on)"),  # fmt: skip
            color=alt.Color(
                "effect:N",
                scale=alt.Scale(domain=list(ABLATION_COLOURS), range=list(ABLATION_COLOURS.values())),
                legend=alt.Legend(orient="bottom", title=None),
            ),
            tooltip=[
                alt.Tooltip("head:N", title="head switched off"),
                alt.Tooltip("position_label:N", title="answer position"),
                alt.Tooltip("predicts:N", title="all heads predict"),
                alt.Tooltip("delta_logit_diff:Q", title="Δ logit difference", format="+.3f"),
                alt.Tooltip("delta_logprob:Q", title="Δ log-probability", format="+.3g"),
                alt.Tooltip("logit_diff:Q", title="logit difference, head off", format=".3f"),
                alt.Tooltip("top:N", title="predicts, head off"),
            ],
        )
    )
    rule = alt.Chart().mark_rule(color="#888").encode(x=alt.datum(0))  # one dataset: the rule reads it too
    # height by the row step: Streamlit fits a "container"-wide chart's title, axes and legend inside a fixed
    # height, which leaves the bars almost no room
    return with_title(alt.layer(bars, rule, data=df), title, width="container", height=alt.Step(bar_height))


def change_domain(values) -> tuple[float, float]:
    """An x range for signed changes: from min(0, smallest) to max(0, largest); (-1, 1) when all are 0."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    lo, hi = (min(0.0, float(v.min())), max(0.0, float(v.max()))) if v.size else (0.0, 0.0)
    return (lo, hi) if hi > lo else (-1.0, 1.0)


def logit_diff_before_after(df: pd.DataFrame, *, title: str | None = None) -> alt.LayerChart:
    """The answer's logit difference at each answer position, all heads on vs with some off.

    ``df``: columns ``position_label``, ``run`` ("all heads" / "heads off" label) and ``logit_diff``.
    Bars below 0 mean another token wins there.
    """
    labels = list(dict.fromkeys(df["position_label"]))
    runs = list(dict.fromkeys(df["run"]))
    base = alt.Chart().encode(
        y=alt.Y("position_label:N", sort=labels, title=None),
        yOffset=alt.YOffset("run:N", sort=runs),
        x=alt.X("logit_diff:Q", title="logit difference (answer − strongest other token)"),
        tooltip=[
            alt.Tooltip("position_label:N", title="answer position"),
            alt.Tooltip("run:N", title="run"),
            alt.Tooltip("logit_diff:Q", title="logit difference", format=".3f"),
        ],
    )
    bars = base.mark_bar().encode(
        color=alt.Color("run:N", sort=runs, scale=alt.Scale(range=[BASE_COLOUR, HIGHLIGHT_COLOUR]),
                        legend=alt.Legend(orient="bottom", title=None, labelLimit=320))  # fmt: skip
    )
    rule = alt.Chart().mark_rule(color="#888").encode(x=alt.datum(0))
    return with_title(alt.layer(bars, rule, data=df), title, width="container", height=alt.Step(18 * len(runs)))
