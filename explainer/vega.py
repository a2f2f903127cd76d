"""Altair charts to Vega-Lite specs, safely beside Streamlit, and drawn without a second validation.

Altair's theme and data transformer are process-wide. `st.altair_chart` switches both while it
converts a chart (under a lock of its own), so a spec built at the same moment in another session's
thread without that lock comes out with Streamlit's transformer: its data is missing ("datasets" is
empty). `spec_of` converts under the same lock, with a transformer of its own, and checks the result.

`draw` is `st.altair_chart` without validating the spec on every rerun, and Altair's debug mode (which
validates each channel object as a builder makes it) is off: validation is most of the cost of a chart on
a page that reruns on every edit. The tests set EXPLAINER_VALIDATE_CHARTS=1 (tests/conftest.py), so every
chart a page draws under test is validated, as it is built and as a whole.
"""

from __future__ import annotations

import threading
from contextlib import nullcontext
from typing import Any

import altair as alt
import pandas as pd
import streamlit as st

from explainer.charts import common
from explainer.charts.common import MID_GREY

try:  # the lock st.altair_chart converts under: holding it keeps its transformer out of ours
    from streamlit.elements.vega_charts import _altair_globals_lock as ALTAIR_LOCK
except ImportError:  # a Streamlit without it: at least our own conversions never interleave
    ALTAIR_LOCK = threading.Lock()

TRANSFORMER = "explainer_frames"
VALIDATE = common.VALIDATE  # see above
if not VALIDATE:
    # Altair's debug mode validates every channel object as it is built (alt.X(...), a condition), against the
    # whole schema: about a sixth of a chart-heavy page's run. The tests keep it on, with full validation.
    alt.utils.schemapi.disable_debug_mode()


class SpecError(RuntimeError):
    """A converted spec that lost its data (it must never be drawn or cached)."""


class _Frame:
    """One dataset of a spec: its data, a cheap signature, and its content hash, made only when needed."""

    def __init__(self, data: Any) -> None:
        self.data = data
        self.signature = _signature(data)
        self._content: bytes | None = None

    def content(self) -> bytes:
        if self._content is None:
            self._content = pd.util.hash_pandas_object(self.data, index=True).to_numpy().tobytes()
        return self._content


def _signature(data: Any) -> tuple:
    if isinstance(data, pd.DataFrame):
        return (tuple(data.columns), tuple(map(str, data.dtypes)), len(data))
    return ("object", id(data))


def _keep_frames(data: Any, frames: dict[str, _Frame]) -> dict[str, str]:
    """Data transformer: name each distinct dataset "data-0", "data-1", ... in the order the chart meets
    them (stable across reruns, so an unchanged chart keeps its spec) and keep the frame itself.

    Equal frames get one name: a builder may hand Altair one frame several times (layers) or equal copies
    (filters). The same object is found by identity; only frames alike in columns, types and length are
    hashed to compare their rows (hashing every frame was a few per cent of a page's run)."""
    new = _Frame(data)
    for name, frame in frames.items():
        if frame.signature != new.signature:
            continue
        if frame.data is data or (isinstance(data, pd.DataFrame) and frame.content() == new.content()):
            return {"name": name}
    name = f"data-{len(frames)}"
    frames[name] = new
    return {"name": name}


alt.data_transformers.register(TRANSFORMER, _keep_frames)


def spec_of(chart: alt.TopLevelMixin, *, validate: bool | None = None) -> dict:
    """The chart's Vega-Lite spec, its data frames under "datasets" by name (Streamlit serialises them).

    Built under Streamlit's Altair lock, with the "none" theme as st.altair_chart uses (the default
    theme's 300 x 300 view would fix every chart's size). Raises SpecError if a dataset the spec
    names is missing, so a corrupt spec is never drawn or cached. `validate` defaults to VALIDATE.
    """
    validate = VALIDATE if validate is None else validate
    frames: dict[str, _Frame] = {}
    with ALTAIR_LOCK:
        theme = alt.theme.enable("none") if alt.theme.active == "default" else nullcontext()
        with theme, alt.data_transformers.enable(TRANSFORMER, frames=frames):
            spec = chart.to_dict(validate=validate)
    datasets = {**spec.get("datasets", {}), **{name: frame.data for name, frame in frames.items()}}
    named = _dataset_names(spec)
    if named - set(datasets):
        raise SpecError(f"the chart's spec names data it does not carry: {sorted(named - set(datasets))}")
    spec["datasets"] = {name: datasets[name] for name in sorted(datasets)}
    return spec


def _dataset_names(spec: Any) -> set[str]:
    """Every {"data": {"name": ...}} the spec refers to, at any depth (layers, concatenations)."""
    found: set[str] = set()
    stack = [spec]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            data = node.get("data")
            if isinstance(data, dict) and isinstance(data.get("name"), str):
                found.add(data["name"])
            stack.extend(v for k, v in node.items() if k != "datasets")
        elif isinstance(node, list):
            stack.extend(node)
    return found


def draw(chart: alt.TopLevelMixin | dict, *, where: Any = None, **kwargs: Any):
    """`st.altair_chart(chart, **kwargs)` (in container `where`, e.g. a column), unvalidated (see above).

    `chart` may be a spec already made by `spec_of` (a page caches the specs of charts that depend only on
    the model; Streamlit copies it, so a shared one is never changed). Returns the selection event, if any.
    """
    kwargs.setdefault("width", "stretch")
    spec = chart if isinstance(chart, dict) else spec_of(chart)
    return (where if where is not None else st).vega_lite_chart(readable_in_both_themes(spec), **kwargs)


SUBTITLE_COLOR = MID_GREY  # Streamlit's chart theme colours titles for light and dark, not subtitles


def readable_in_both_themes(spec: dict) -> dict:
    """The spec with a subtitle colour readable on the light and the dark theme (a copy: specs may be shared)."""
    config = spec.get("config", {})
    title = config.get("title", {})
    if "subtitleColor" in title:
        return spec
    return {**spec, "config": {**config, "title": {**title, "subtitleColor": SUBTITLE_COLOR}}}
