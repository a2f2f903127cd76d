"""explainer.vega: specs built beside Streamlit's own conversions keep their data, and live-chart specs are
checked before they are cached."""

import threading

import altair as alt
import numpy as np
import pandas as pd
import pytest
from streamlit.elements.vega_charts import _convert_altair_to_vega_lite_spec

from explainer import live_charts, vega

FRAME = pd.DataFrame({"step": np.arange(40), "value": np.linspace(0, 1, 40)})


def line(df: pd.DataFrame = FRAME) -> alt.Chart:
    return alt.Chart(df).mark_line().encode(x="step:Q", y="value:Q")


def race(convert, n: int = 60) -> list[dict]:
    """`convert(chart)` n times while another thread converts charts as st.altair_chart does (another session
    drawing), the process-wide Altair state switched back and forth meanwhile."""
    stop = threading.Event()

    def other_session() -> None:
        chart = alt.Chart(pd.DataFrame({"a": [1, 2]})).mark_bar().encode(x="a:Q")
        while not stop.is_set():
            _convert_altair_to_vega_lite_spec(chart)

    thread = threading.Thread(target=other_session)
    thread.start()
    try:
        return [convert(line()) for _ in range(n)]
    finally:
        stop.set()
        thread.join()


def test_the_race_strips_the_data_of_a_spec_built_without_the_lock():
    # The hazard the module exists for, shown on Altair directly: this is what the live charts did.
    specs = race(lambda chart: chart.to_dict(validate=False))
    assert sum(not s.get("datasets") for s in specs) > 0


def test_spec_of_keeps_its_data_while_another_session_draws():
    specs = race(vega.spec_of)
    for spec in specs:
        (name,) = spec["datasets"]
        assert spec["data"] == {"name": name} and spec["datasets"][name] is not None
        pd.testing.assert_frame_equal(spec["datasets"][name], FRAME)


def test_spec_of_is_the_chart_streamlit_would_draw():
    chart = alt.layer(line(), line().mark_point())  # one frame used twice: one dataset
    ours = vega.spec_of(chart, validate=True)
    theirs = _convert_altair_to_vega_lite_spec(chart)
    assert list(ours["datasets"]) == ["data-0"] and len(theirs["datasets"]) == 1
    (their_name,) = theirs["datasets"]
    strip = lambda s, name: repr({k: v for k, v in s.items() if k != "datasets"}).replace(name, "DATA")  # noqa: E731
    assert strip(ours, "data-0") == strip(theirs, their_name)
    assert "config" not in ours  # the "none" theme, as st.altair_chart: no fixed 300 x 300 view


def test_spec_of_refuses_a_spec_that_names_data_it_lacks(monkeypatch):
    # A transformer that names data without keeping it (as Streamlit's does, for a spec built in its race)
    monkeypatch.setattr(vega, "_keep_frames", lambda data, frames: {"name": "lost"})
    alt.data_transformers.register(vega.TRANSFORMER, vega._keep_frames)
    try:
        with pytest.raises(vega.SpecError, match="lost"):
            vega.spec_of(line())
    finally:
        monkeypatch.undo()
        alt.data_transformers.register(vega.TRANSFORMER, vega._keep_frames)


def test_a_live_spec_with_other_than_one_dataset_is_refused_and_not_cached():
    live_charts._spec.clear()
    calls = []

    def two_frames() -> alt.LayerChart:
        calls.append(1)
        return alt.layer(line(), line(FRAME.assign(value=1.0)).mark_point())

    for _ in range(2):
        with pytest.raises(vega.SpecError, match="one dataset"):
            live_charts._spec("two frames", (), two_frames)
    assert len(calls) == 2  # the refusal was not kept: the next call built it again
    spec = live_charts._spec("one frame", (), line)
    assert live_charts._spec("one frame", (), line) is spec  # a good spec is cached
    live_charts._spec.clear()


def test_subtitles_get_a_colour_readable_on_both_themes_without_changing_the_spec():
    import altair as alt
    import pandas as pd

    from explainer import vega

    chart = alt.Chart(pd.DataFrame({"x": [1]})).mark_point().encode(x="x:Q").properties(
        title=alt.TitleParams("Title", subtitle="hook_name"))
    spec = vega.spec_of(chart)
    drawn = vega.readable_in_both_themes(spec)
    assert drawn["config"]["title"]["subtitleColor"] == vega.SUBTITLE_COLOR
    assert "subtitleColor" not in spec.get("config", {}).get("title", {})  # a cached spec stays as it was
    own = {**spec, "config": {"title": {"subtitleColor": "red"}}}
    assert vega.readable_in_both_themes(own) is own


def test_equal_frames_share_one_dataset_and_frames_alike_in_shape_do_not():
    a = pd.DataFrame({"x": [1, 2, 3], "y": [0.5, 0.25, 1.0]})
    copy = a.copy()
    other = pd.DataFrame({"x": [1, 2, 3], "y": [0.5, 0.25, 2.0]})  # same columns, types and length; one row differs
    layered = alt.layer(alt.Chart(a).mark_bar().encode(x="x:O", y="y:Q"),
                        alt.Chart(a).mark_rule().encode(x="x:O"),  # the same object again
                        alt.Chart(copy).mark_point().encode(x="x:O", y="y:Q"))  # an equal copy
    spec = vega.spec_of(layered)
    assert len(spec["datasets"]) == 1
    spec = vega.spec_of(alt.layer(alt.Chart(a).mark_bar().encode(x="x:O", y="y:Q"),
                                  alt.Chart(other).mark_point().encode(x="x:O", y="y:Q")))  # fmt: skip
    assert [d["y"].tolist() for d in spec["datasets"].values()] == [[0.5, 0.25, 1.0], [0.5, 0.25, 2.0]]


def test_unvalidated_properties_and_typed_value_channels_give_the_same_spec(monkeypatch):
    """Serving skips Altair's per-property validation (with_props) and its schema search for a plain-dict channel
    (fixed): the spec must be the one the validated, plain-dict way gives."""
    import altair as alt
    import pandas as pd

    from explainer.charts import common

    df = pd.DataFrame({"x": [1, 2], "y": [3, 4], "hi": [True, False]})

    def build(typed: bool):
        stroke = alt.when("datum.hi").then(alt.value("black")).otherwise(alt.value(None))
        width = alt.value(1.5)
        base = alt.Chart(df).mark_rect().encode(
            x="x:Q", y="y:Q", stroke=common.fixed("stroke", stroke) if typed else stroke,
            strokeWidth=common.fixed("strokeWidth", width) if typed else width)  # fmt: skip
        return common.with_props(base, title="t", height=alt.Step(20), width="container")

    reference = build(typed=False).to_dict(validate=True)  # VALIDATE is on under test: .properties(...)
    monkeypatch.setattr(common, "VALIDATE", False)
    fast = build(typed=True)
    assert fast.to_dict(validate=True) == reference
