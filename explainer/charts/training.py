"""Training charts: gradient/parameter norms, loss and accuracy curves, per-operation accuracy."""

from __future__ import annotations

import altair as alt
import pandas as pd

from explainer.charts.common import BASE_COLOUR, fixed, ordered_unique, value_tooltip, with_props, with_title

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
    splits: list[str] | None = None,
    legend_title: str = "split",
) -> alt.Chart:
    """One metric against step, one line per split (a single panel of ``training_curves``).

    ``df`` columns: step, value, metric, split. Accuracy is drawn on [0, 1]. ``splits``: the splits this
    metric has, which its legend lists (default: every split of ``df``); ``legend_title`` names them (e.g. "run"
    when each line is one training run).
    """
    df = df[["step", "value", "metric", "split"]]
    if metric == "accuracy":
        scale = alt.Scale(domain=UNIT_DOMAIN)
    elif log_y:
        scale = alt.Scale(type="log")
    else:
        scale = alt.Scale(zero=False)
    splits = ordered_unique(df["split"]) if splits is None else list(splits)
    base = (
        alt.Chart(df)
        .transform_filter(alt.datum.metric == metric)
        .encode(
            x=alt.X("step:Q", title="training step"),
            y=alt.Y("value:Q", scale=scale, title=metric + (" (log scale)" if log_y else "")),
            # the domain too: the legend names every split before any has data (a live chart starts empty)
            # runs' names are long: their legend goes below the plot, one per line
            color=alt.Color("split:N", sort=splits, scale=alt.Scale(domain=splits), title=legend_title,
                            legend=alt.Legend(orient="bottom", direction="vertical", labelLimit=400)
                            if legend_title != "split" else alt.Undefined),  # fmt: skip
        )
    )
    # Points (with tooltips) only where values are sparse: the training split has a value at every
    # recorded step, and its hundreds of point marks, redrawn on every live update, cost the browser
    # about 2 CPU-seconds more in a 12 s run of the Train page (benchmarks/train_page_speed.py).
    points = base.transform_filter(alt.datum.split != SPLIT_EVERY_STEP).mark_point(size=15, filled=True).encode(
        tooltip=[
            alt.Tooltip("split:N", title=legend_title),
            alt.Tooltip("step:Q", title="step"),
            value_tooltip("value", metric),
        ]
    )
    chart = alt.layer(base.mark_line(), points)
    chart = with_props(chart, title=title or metric, height=height)
    # width=None leaves sizing to the enclosing chart (e.g. a vconcat stretched by Streamlit).
    return chart if width is None else with_props(chart, width=width)


def training_curves(
    df: pd.DataFrame,
    *,
    log_loss: bool = True,
    title: str | None = None,
    panel_height: int = PANEL_HEIGHT,
    splits: dict[str, list[str]] | None = None,
) -> alt.VConcatChart:
    """Loss above accuracy, sharing the step axis. ``df`` columns: step, value, metric, split.

    Stacked rather than side by side: Streamlit stretches a plain vconcat to the
    container width (autosize fit-x), while side-by-side panels need fixed widths.
    ``splits``: each metric's splits (e.g. validation only for accuracy); each panel then has its own legend,
    naming only those (a split listed first keeps its colour in both).
    """
    panels = [
        metric_curve(df, m, log_y=log_loss and m == "loss", width=None, height=panel_height,
                     splits=None if splits is None else splits[m])  # fmt: skip
        for m in ("loss", "accuracy")
    ]
    # fit-x: each panel is a layer (line and points), and for a vconcat of layers Streamlit would otherwise
    # choose "pad", which sets every panel to the container's width plus its axes and legend (overflowing it).
    chart = with_props(alt.vconcat(*panels).resolve_scale(x="shared"), autosize=FIT_WIDTH)
    if splits is not None:
        chart = chart.resolve_scale(color="independent")
    return with_props(chart, title=title) if title else chart


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
    colored: bool = True,
) -> alt.LayerChart:
    """Vertical bars, one per category in the order given, with the value printed on top; `colored`: one colour
    per category (else one colour for all: a colour that means nothing can still suggest something, like red)."""
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
    bars = base.mark_bar()
    if colored:
        bars = bars.encode(color=alt.Color(f"{category}:N", sort=categories, legend=None))
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


def weight_change_bars(df: pd.DataFrame, *, title: str | None = None) -> alt.LayerChart:
    """How far each kind of weight moved in training: horizontal bars of ||W_end - W_start|| / ||W_start||, in the
    order given, with the share printed at each bar's end. ``df`` columns: name, relative, start_norm,
    change_norm."""
    df = df[["name", "relative", "start_norm", "change_norm"]]
    base = alt.Chart(df).encode(
        y=alt.Y("name:N", sort=ordered_unique(df["name"]), title=None, axis=alt.Axis(labelLimit=160)),
        x=alt.X("relative:Q", title="‖W_end − W_start‖ / ‖W_start‖", axis=alt.Axis(format=".0%"),
                scale=alt.Scale(zero=True)),
        tooltip=[alt.Tooltip("name:N", title="weights"), value_tooltip("relative", "relative change", ".1%"),
                 value_tooltip("start_norm", "‖W_start‖", ".4g"), value_tooltip("change_norm", "‖W_end − W_start‖",
                                                                                 ".4g")],
    )  # fmt: skip
    bars = base.mark_bar(color=BASE_COLOUR)
    text = base.mark_text(align="left", dx=3).encode(text=alt.Text("relative:Q", format=".0%"))
    return with_title(alt.layer(bars, text), title, width="container")



def before_after_bars(
    df: pd.DataFrame, *, value_title: str = "loss", title: str | None = None, text_format: str = ".4g"
) -> alt.LayerChart:
    """A few labelled values side by side, in one colour, e.g. the loss before and after each SGD step.

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
        colored=False,
    )


MECHANISM_HEIGHTS = (110, 110, 110, 90, 60, 60)  # the panels of `mechanism_over_training`, top to bottom
MECHANISM_TITLES = (
    ["Accuracy per operation on the probe set"],
    ["Attention from = to the operation token", "per head, mean over operations"],
    ["Attention from = to the answer's slot", "per head, mean over operations"],
    ["Accuracy lost when the most important", "component (head or MLP) is zeroed"],
    ["Learning rate"],
    ["Gradient norm (before clipping, log scale)"],
)


def mechanism_over_training(
    df: pd.DataFrame,
    *,
    panels: tuple[str, ...],
    shown: str,
    operations: list[str],
    heads: list[str],
    components: list[str],
    title: str | None = None,
) -> alt.VConcatChart:
    """How the mechanism forms, one panel above the other on one shared training-step axis.

    ``df`` is long-form, one dataset for every panel: columns step, panel, series, value, then per-operation
    columns (named by ``operations``: a head's attention for that operation), validation, clean, without.
    ``panels`` names the six panels as the ``panel`` column does, top to bottom: probe accuracy per operation
    (series: operations), attention to the operation token and to the answer's slot (series: heads), the top
    component's accuracy drop (series: components), learning rate, gradient norm. The row whose panel is
    ``shown`` marks the snapshot shown elsewhere on the page: a dashed rule in every panel.
    """
    accuracy, to_op, to_slot, top, lr, grad = panels
    base = alt.Chart(df)
    x = alt.X("step:Q", title=None)  # the axis title only under the last panel (the axis is shared)
    rule = base.transform_filter(alt.datum.panel == shown).mark_rule(color="#666", strokeDash=[4, 3]).encode(
        x=x, tooltip=[alt.Tooltip("step:Q", title="snapshot shown")])

    def legend(title: str, n: int) -> alt.Legend:  # under its panel, in rows of <= 5: it fits a phone too
        return alt.Legend(title=None, orient="bottom", direction="horizontal", columns=min(n, 5), labelLimit=90,
                          symbolSize=40, labelFontSize=10, columnPadding=8, rowPadding=2, offset=4)  # fmt: skip

    def panel(name: str):
        return base.transform_filter(alt.datum.panel == name)

    def colour(series: list[str], title: str) -> alt.Color:
        return alt.Color("series:N", sort=series, scale=alt.Scale(domain=series), legend=legend(title, len(series)),
                         title=title)  # fmt: skip

    op_tips = [alt.Tooltip(f"{op}:Q", title=f"{op}", format=".2f") for op in operations]
    step_tip = alt.Tooltip("step:Q", title="step")
    unit = alt.Scale(domain=UNIT_DOMAIN)
    charts = [
        panel(accuracy).mark_line(point=alt.OverlayMarkDef(size=14, filled=True)).encode(
            x=x, y=alt.Y("value:Q", scale=unit, title="accuracy"), color=colour(operations, "operation"),
            tooltip=[alt.Tooltip("series:N", title="operation"), step_tip,
                     alt.Tooltip("value:Q", title="probe accuracy", format=".1%"),
                     alt.Tooltip("validation:Q", title="validation accuracy", format=".1%")]),
    ]  # fmt: skip
    for name in (to_op, to_slot):
        charts.append(panel(name).mark_line(point=alt.OverlayMarkDef(size=10, filled=True)).encode(
            x=x, y=alt.Y("value:Q", scale=unit, title="attention"), color=colour(heads, "head"),
            tooltip=[alt.Tooltip("series:N", title="head"), step_tip,
                     alt.Tooltip("value:Q", title="mean over operations", format=".2f"), *op_tips]))  # fmt: skip
    top_base = panel(top).encode(x=x, y=alt.Y("value:Q", title="accuracy lost", axis=alt.Axis(format=".0%")))
    charts.append(alt.layer(
        top_base.mark_line(color="#bbb"),
        top_base.mark_point(size=36, filled=True).encode(
            color=colour(components, "component"),
            tooltip=[alt.Tooltip("series:N", title="most important"), step_tip,
                     alt.Tooltip("value:Q", title="accuracy lost", format=".1%"),
                     alt.Tooltip("clean:Q", title="probe accuracy", format=".1%"),
                     alt.Tooltip("without:Q", title="with it zeroed", format=".1%")]),
    ))  # fmt: skip
    charts.append(panel(lr).mark_line().encode(
        x=x, y=alt.Y("value:Q", title=None, axis=alt.Axis(format=".0e", tickCount=3)),
        color=fixed("color", alt.value(BASE_COLOUR))))  # fmt: skip
    charts.append(panel(grad).mark_line().encode(
        x=alt.X("step:Q", title="training step"),
        y=alt.Y("value:Q", title=None, scale=alt.Scale(type="log"), axis=alt.Axis(tickCount=3)),
        color=fixed("color", alt.value(BASE_COLOUR))))

    def heading(lines: list[str]) -> alt.TitleParams:
        extra = {"subtitle": lines[1:]} if len(lines) > 1 else {}
        return alt.TitleParams(lines[0], anchor="start", fontSize=12, subtitleFontSize=11, **extra)

    layered = [with_props(alt.layer(c, rule), title=heading(t), height=h)
               for c, t, h in zip(charts, MECHANISM_TITLES, MECHANISM_HEIGHTS, strict=True)]  # fmt: skip
    chart = with_props(alt.vconcat(*layered, spacing=10).resolve_scale(x="shared", color="independent"),
                       autosize=FIT_WIDTH)
    # every y axis as wide as the widest, so that the panels line up and no axis title is cut off on the left
    chart = chart.configure_axisY(minExtent=42, maxExtent=42)
    return with_props(chart, title=title) if title else chart
