"""Shared conventions for the chart builders: position labels, colour scales, tooltips.

Every builder in ``explainer.charts`` goes through these helpers so that the same
quantity looks the same on every page: probabilities always on a fixed [0, 1] blue
scale, signed values always on a diverging scale centred on 0, magnitudes from 0.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from typing import Literal

import altair as alt
import numpy as np
import pandas as pd

Kind = Literal["signed", "probability", "magnitude"]

# Whether charts are validated against the Vega-Lite schema: in the tests (tests/conftest.py), not when serving.
VALIDATE = os.environ.get("EXPLAINER_VALIDATE_CHARTS") == "1"

PROBABILITY_SCHEME = "blues"
# "redblue" runs red -> blue; reversed, negative values are blue and positive red,
# the usual reading for activations and gradients.
SIGNED_SCHEME = "redblue"
MAGNITUDE_SCHEME = "viridis"
MASK_GREY = "#c8c8c8"
HIGHLIGHT_COLOUR = "#e6550d"
BASE_COLOUR = "#4c78a8"
VALUE_FORMAT = ".4f"
# A mid grey readable on the light and the dark theme (Streamlit's chart theme colours axes and titles for each, but
# not a mark's own text or a subtitle).
MID_GREY = "#7d8494"


def fixed(channel: str, spec: dict):
    """A channel given by values only (`alt.value(...)`, or `alt.when(...).then(alt.value(a)).otherwise(alt.value(b))`)
    as its typed Altair class, e.g. `fixed("stroke", ...)` is `alt.StrokeValue(...)`, the same spec. Altair wraps a
    plain dict by trying it against each alternative of the channel's schema: 2-9 ms per channel per chart, on every
    rerun of a page; a typed one costs nothing."""
    return getattr(alt, channel[0].upper() + channel[1:] + "Value")(**spec)


def position_labels(tokens: Sequence[str]) -> list[str]:
    """``"{i}: {token}"`` for each position, so repeated tokens (two ``,``) stay distinct."""
    return [f"{i}: {tok}" for i, tok in enumerate(tokens)]


def ordered_unique(values: Iterable) -> list:
    """Distinct values in order of first appearance (the "ordered as given" sort lists).

    A pandas categorical gives all its categories, in their order, whether they appear yet or not: a live
    chart's legend and axes are then fixed before every category has data (and its spec does not change).
    """
    if isinstance(getattr(values, "dtype", None), pd.CategoricalDtype):
        return list(values.dtype.categories)
    return list(dict.fromkeys(values))


def require_unique(labels: Sequence[str], what: str) -> list[str]:
    """Vega-Lite merges equal nominal labels into one band, silently overdrawing cells."""
    labels = [str(label) for label in labels]
    if len(set(labels)) != len(labels):
        raise ValueError(f"{what} must be unique (got {labels}); label positions with position_labels(tokens)")
    return labels


def max_abs(values) -> float:
    """Half-width of a symmetric domain: max |finite value|, or 1 when there is none / all zero."""
    arr = np.asarray(values, dtype=float)
    finite = np.abs(arr[np.isfinite(arr)])
    m = float(finite.max()) if finite.size else 0.0
    return m if m > 0 else 1.0


def probability_scale() -> alt.Scale:
    # Fixed domain: a weight of 0.3 must look the same in every chart, whatever the max.
    return alt.Scale(scheme=PROBABILITY_SCHEME, domain=[0.0, 1.0], clamp=True)


def signed_scale(values) -> alt.Scale:
    # Symmetric domain + domainMid so that white means exactly 0 and equal |v| get equal shades.
    m = max_abs(values)
    return alt.Scale(scheme=SIGNED_SCHEME, reverse=True, domain=[-m, m], domainMid=0)


def magnitude_scale(values) -> alt.Scale:
    # Norms and counts start at 0: a colour scale from min would exaggerate small differences.
    return alt.Scale(scheme=MAGNITUDE_SCHEME, domain=[0.0, max_abs(values)], clamp=True)


def color_scale(kind: Kind, values) -> alt.Scale:
    if kind == "probability":
        return probability_scale()
    if kind == "signed":
        return signed_scale(values)
    if kind == "magnitude":
        return magnitude_scale(values)
    raise ValueError(f"kind must be 'signed', 'probability' or 'magnitude', not {kind!r}")


def value_tooltip(field: str, title: str, fmt: str = VALUE_FORMAT) -> alt.Tooltip:
    return alt.Tooltip(f"{field}:Q", title=title, format=fmt)


def with_title(chart, title: str | None, **props):
    """Apply a title only when given (an empty title would still reserve space)."""
    if title:
        props["title"] = title
    return with_props(chart, **props) if props else chart


def with_props(chart, **props):
    """`chart.properties(**props)`, validated only where charts are (VALIDATE): Altair checks each property against
    the schema whatever its debug mode, a few ms a chart on every rerun."""
    if VALIDATE:
        return chart.properties(**props)
    copy = chart.copy(deep=False)
    for key, value in props.items():
        setattr(copy, key, value)
    return copy
