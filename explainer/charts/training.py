"""Training charts: gradient/parameter norms, loss and accuracy curves, per-operation accuracy."""

from __future__ import annotations

import altair as alt
import pandas as pd

from explainer.charts.common import ordered_unique, value_tooltip, with_title

UNIT_DOMAIN = [0.0, 1.0]
PANEL_HEIGHT = 220
FIT_WIDTH = alt.AutoSizeParams(type="fit-x", contains="padding")
SPLIT_EVERY_STEP = "train"  # the split of `metric_curve` data recorded at every step (drawn without points)


def norms_by_layer_bars(df: pd.DataFrame, *, title: str | None = None, log_scale: bool = False) -> alt.Chart:
    """Horizontal bars of norms by layer, in the order given.

    ``df`` columns: name (str), norm (float >= 0), kind (e.g. "gradient"/"parameter").
    Kinds sharing a name sit side by side. ``log_scale`` helps when norms span decades.
    """
    df = df[["name", "norm", "kind"]].copy()
    scale = alt.Scale(type="log") if log_scale else alt.Scale(zero=True)
    chart = (
        alt.Chart(df)
        .mark_bar()
        .encode(
            y=alt.Y("name:N", sort=ordered_unique(df["name"]), title=None, axis=alt.Axis(labelLimit=260)),
            yOffset=alt.YOffset("kind:N", sort=ordered_unique(df["kind"])),
            # Unstacked: a log axis has no 0 for stacked bars to start from (nothing would be drawn).
            x=alt.X("norm:Q", scale=scale, title="norm", stack=None),
            color=alt.Color("kind:N", sort=ordered_unique(df["kind"]), title="kind",
                            legend=alt.Legend() if df["kind"].nunique() > 1 else None),  # fmt: skip
            tooltip=[
                alt.Tooltip("name:N", title="parameter"),
                alt.Tooltip("kind:N", title="kind"),
                # Norms range over many decades: scientific notation keeps them exact.
                value_tooltip("norm", "norm", ".3e"),
            ],
        )
    )
    return with_title(chart, title, width="container")


def metric_curve(
    df: pd.DataFrame,
    metric: str,
    *,
    log_y: bool = False,
    title: str | None = None,
    width: int | str | None = "container",
    height: int = PANEL_HEIGHT,
) -> alt.Chart:
    """One metric against step, one line per split (a single panel of ``training_curves``).

    ``df`` columns: step, value, metric, split. Accuracy is drawn on [0, 1].
    """
    df = df[["step", "value", "metric", "split"]]
    if metric == "accuracy":
        scale = alt.Scale(domain=UNIT_DOMAIN)
    elif log_y:
        scale = alt.Scale(type="log")
    else:
        scale = alt.Scale(zero=False)
    splits = ordered_unique(df["split"])
    base = (
        alt.Chart(df)
        .transform_filter(alt.datum.metric == metric)
        .encode(
            x=alt.X("step:Q", title="training step"),
            y=alt.Y("value:Q", scale=scale, title=metric + (" (log scale)" if log_y else "")),
            # the domain too: the legend names every split before any has data (a live chart starts empty)
            color=alt.Color("split:N", sort=splits, scale=alt.Scale(domain=splits), title="split"),
        )
    )
    # Points (with tooltips) only where values are sparse: the training split has a value at every
    # recorded step, and its hundreds of point marks, redrawn on every live update, cost the browser
    # about 2 CPU-seconds more in a 12 s run of the Train page (benchmarks/train_page_speed.py).
    points = base.transform_filter(alt.datum.split != SPLIT_EVERY_STEP).mark_point(size=15, filled=True).encode(
        tooltip=[
            alt.Tooltip("split:N", title="split"),
            alt.Tooltip("step:Q", title="step"),
            value_tooltip("value", metric),
        ]
    )
    chart = alt.layer(base.mark_line(), points)
    chart = chart.properties(title=title or metric, height=height)
    # width=None leaves sizing to the enclosing chart (e.g. a vconcat stretched by Streamlit).
    return chart if width is None else chart.properties(width=width)


def training_curves(
    df: pd.DataFrame,
    *,
    log_loss: bool = True,
    title: str | None = None,
    panel_height: int = PANEL_HEIGHT,
) -> alt.VConcatChart:
    """Loss above accuracy, sharing the step axis. ``df`` columns: step, value, metric, split.

    Stacked rather than side by side: Streamlit stretches a plain vconcat to the
    container width (autosize fit-x), while side-by-side panels need fixed widths.
    """
    panels = [
        metric_curve(df, m, log_y=log_loss and m == "loss", width=None, height=panel_height)
        for m in ("loss", "accuracy")
    ]
    # fit-x: each panel is a layer (line and points), and for a vconcat of layers Streamlit would otherwise
    # choose "pad", which sets every panel to the container's width plus its axes and legend (overflowing it).
    chart = alt.vconcat(*panels).resolve_scale(x="shared").properties(autosize=FIT_WIDTH)
    return chart.properties(title=title) if title else chart


def _category_bars(
    df: pd.DataFrame,
    *,
    category: str,
    category_title: str | None,
    value: str,
    value_title: str,
    y_scale: alt.Scale,
    text_format: str,
    title: str | None,
) -> alt.LayerChart:
    """Vertical bars, one per category in the order given, with the value printed on top."""
    categories = ordered_unique(df[category])
    base = alt.Chart(df).encode(
        x=alt.X(
            f"{category}:N",
            sort=categories,
            # every category has its slot, with or without a value yet (a live chart starts empty)
            scale=alt.Scale(domain=categories),
            title=category_title,
            axis=alt.Axis(labelAngle=0),
        ),
        y=alt.Y(f"{value}:Q", scale=y_scale, title=value_title),
        tooltip=[
            alt.Tooltip(f"{category}:N", title=category_title or category),
            value_tooltip(value, value_title),
        ],
    )
    bars = base.mark_bar().encode(color=alt.Color(f"{category}:N", sort=categories, legend=None))
    text = base.mark_text(dy=-6).encode(text=alt.Text(f"{value}:Q", format=text_format))
    return with_title(alt.layer(bars, text), title, width="container")


def op_accuracy_bars(df: pd.DataFrame, *, title: str | None = None) -> alt.LayerChart:
    """Accuracy per operation on [0, 1]. ``df`` columns: operation, accuracy."""
    return _category_bars(
        df[["operation", "accuracy"]],
        category="operation",
        category_title="operation",
        value="accuracy",
        value_title="accuracy",
        y_scale=alt.Scale(domain=UNIT_DOMAIN),
        text_format=".1%",
        title=title,
    )


def op_accuracy_over_time(df: pd.DataFrame, *, title: str | None = None) -> alt.Chart:
    """Accuracy per operation against step, on [0, 1]. ``df`` columns: step, operation, accuracy."""
    df = df[["step", "operation", "accuracy"]]
    chart = (
        alt.Chart(df)
        .mark_line(point=alt.OverlayMarkDef(size=15))
        .encode(
            x=alt.X("step:Q", title="training step"),
            y=alt.Y("accuracy:Q", scale=alt.Scale(domain=UNIT_DOMAIN), title="accuracy"),
            # Same category order as op_accuracy_bars, so an operation keeps its colour.
            color=alt.Color("operation:N", sort=ordered_unique(df["operation"]), title="operation"),
            tooltip=[
                alt.Tooltip("operation:N", title="operation"),
                alt.Tooltip("step:Q", title="step"),
                value_tooltip("accuracy", "accuracy"),
            ],
        )
    )
    return with_title(chart, title, width="container")


def before_after_bars(
    df: pd.DataFrame, *, value_title: str = "loss", title: str | None = None, text_format: str = ".4g"
) -> alt.LayerChart:
    """A few labelled values side by side, e.g. the loss before and after one SGD step.

    ``df`` columns: label, value. ``text_format`` (d3) labels the bars: ".4g" keeps small losses readable.
    """
    return _category_bars(
        df[["label", "value"]],
        category="label",
        category_title=None,
        value="value",
        value_title=value_title,
        y_scale=alt.Scale(zero=True),
        text_format=text_format,
        title=title,
    )
