"""Live charts for a view that redraws a few times a second (the Train page during a run).

A live chart's Vega-Lite spec is built once per server process, for each name and set of
categories, and every redraw only swaps its data in: for an unchanged spec the browser swaps the
data into the chart it has instead of building a new one, and the training thread does not wait
for Altair to build and validate a spec on every refresh.
"""

from __future__ import annotations

from collections.abc import Callable

import altair as alt
import pandas as pd
import streamlit as st

from explainer import charts, vega


def categories(data: pd.DataFrame) -> tuple:
    """What a live chart's spec depends on: its non-numeric columns' values (a categorical's categories)."""
    return tuple((c, tuple(charts.ordered_unique(data[c])))
                 for c in data.columns if not pd.api.types.is_numeric_dtype(data[c]))  # fmt: skip


@st.cache_resource(show_spinner=False, max_entries=64)
def _spec(name: str, categories: tuple, _build: Callable[[], alt.TopLevelMixin]) -> dict:
    """A live chart's Vega-Lite spec, built once per server process for each `name` and set of categories.

    Building and validating a spec with Altair holds the interpreter lock long enough (the curves' is the
    dearest) for the training thread to feel it. It is not validated here: the tests validate every
    builder's output. It is built by `vega.spec_of`, under Streamlit's Altair lock (another session's
    chart cannot strip its data), and checked to carry its one dataset before it is cached: a bad spec
    raises rather than being kept for every later session. Shared by all sessions and never modified
    (`draw` copies it).
    """
    spec = vega.spec_of(_build())
    if len(spec["datasets"]) != 1:
        raise vega.SpecError(f"a live chart needs one dataset, {name!r} has {len(spec['datasets'])}")
    return spec


def draw(name: str, build: Callable[[pd.DataFrame], alt.TopLevelMixin], data: pd.DataFrame) -> None:
    """Draw the chart `build(frame)` makes of `data`, reusing its spec and swapping in the new data.

    `build`'s spec must depend on its frame only through the frame's categories (non-numeric values): it
    gets one row per combination of them, and the spec's one dataset is replaced by `data` on every draw.
    The curves grow every tick but their spec does not change, and for an unchanged spec the browser
    swaps the data into the chart it has rather than building a new one.
    """
    cats = categories(data)
    columns = [c for c, _ in cats]
    # the sample is only made when the spec is built, not on every refresh
    spec = _spec(name, cats, lambda: build(data.drop_duplicates(subset=columns) if columns else data.head(1)))
    (dataset,) = spec["datasets"]
    spec = vega.readable_in_both_themes({**spec, "datasets": {dataset: data}})
    st.vega_lite_chart(spec, width="stretch")  # Streamlit copies the spec
