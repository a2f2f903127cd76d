"""Compare two examples: the sidebar's second example, each stage page's two runs on one scale or as a
difference, the Overview's sentence on where they part, and the mechanism page's counterfactual."""

from __future__ import annotations

import numpy as np
import pytest
from app_helpers import charts, open_app
from test_links import open_link

from model_core import load_model
from model_core.analysis import run_example
from model_core.analysis.compare import parting, parting_text

STAGE_PAGES = ["tokens", "attention", "residual", "output", "backprop"]


def frame_of(at, title_part: str):
    """(spec, data) of the one chart whose title contains `title_part`."""
    found = [(spec, frames[0]) for spec, frames in charts(at) if title_part in str(spec.get("title", ""))]
    assert len(found) == 1, [str(spec.get("title")) for spec, _ in charts(at)]
    return found[0]


def grid(df, shape) -> np.ndarray:
    out = np.full(shape, np.nan)
    out[df["row"].to_numpy(), df["col"].to_numpy()] = df["value"].to_numpy()
    return out


def colour_domain(spec) -> list:
    return spec["encoding"]["color"]["scale"]["domain"]


def test_switching_compare_on_starts_from_the_example_under_another_operation():
    at = open_app()
    at.toggle(key="compare_on").set_value(True).run()
    assert at.session_state["compare"] == "First ( 7 2 9 )"  # under the first op that answers otherwise
    assert at.query_params["compare"] == "First ( 7 2 9 )"
    at.button(key="compare_answer_value_changed").click().run()
    assert at.session_state["compare"] == "Max ( 7 2 0 )"
    at.text_input(key="compare_text").input("Max ( 7 2").run()
    assert at.session_state["compare"] == "Max ( 7 2 0 )" and at.error  # the last valid one stays
    at.text_input(key="compare_text").input("last(1,2,3)").run()
    assert at.session_state["compare"] == "Last ( 1 2 3 )" and not at.error
    at.toggle(key="compare_on").set_value(False).run()
    assert "compare" not in at.query_params


@pytest.mark.parametrize("page", STAGE_PAGES)
def test_every_stage_page_shows_both_runs_on_one_scale(page):
    at = open_link(f"../pages/{page}.py", {"model": "digits-0-9", "example": "Max ( 7 2 9 )",
                                           "compare": "Min ( 7 2 9 )"})  # fmt: skip
    found = [(spec, frames) for spec, frames in charts(at) if "Max ( 7 2 9 )" in str(spec.get("title"))
             or "Min ( 7 2 9 )" in str(spec.get("title")) or "of the two runs" in str(spec.get("title"))]
    assert found, page
    if page == "output":  # grouped bars: both runs in one chart
        [(spec, frames)] = found
        assert set(frames[0]["run"]) == {"Max ( 7 2 9 )", "Min ( 7 2 9 )"}
        return
    (sa, [fa]), (sb, [fb]) = found
    assert colour_domain(sa) == colour_domain(sb)  # one scale for the two
    model = load_model("digits-0-9")
    ra, rb = run_example(model, "Max ( 7 2 9 )"), run_example(model, "Min ( 7 2 9 )")
    if page == "tokens":
        want_a, want_b = ra.cache["blocks.0.hook_resid_pre"][0], rb.cache["blocks.0.hook_resid_pre"][0]
        np.testing.assert_array_equal(grid(fa, want_a.shape), want_a)
        np.testing.assert_array_equal(grid(fb, want_b.shape), want_b)
    if page == "attention":
        want_b = rb.cache["blocks.0.attn.hook_pattern"][0, 0]
        np.testing.assert_array_equal(grid(fb, want_b.shape), want_b)


@pytest.mark.parametrize("page", ["tokens", "attention", "residual", "backprop"])
def test_the_difference_is_the_first_run_minus_the_second(page):
    at = open_link(f"../pages/{page}.py", {"model": "digits-0-9", "example": "Max ( 7 2 9 )",
                                           "compare": "Max ( 7 2 8 )", "cmp": "2"})  # fmt: skip
    spec, df = frame_of(at, "first minus second")
    assert at.query_params["cmp"] == "2"
    if page == "tokens":
        model = load_model("digits-0-9")
        a = run_example(model, "Max ( 7 2 9 )").cache["blocks.0.hook_resid_pre"][0].astype(np.float64)
        b = run_example(model, "Max ( 7 2 8 )").cache["blocks.0.hook_resid_pre"][0].astype(np.float64)
        np.testing.assert_array_equal(grid(df, a.shape), a - b)
        assert not (a - b)[:6].any() and (a - b)[6].any()  # only the third value's position differs


def test_values_of_other_lengths_are_shown_side_by_side_only():
    at = open_link("../pages/tokens.py", {"model": "digits-0-99", "example": "Max ( 6 54 1 )",
                                          "compare": "Max ( 6 54 10 )", "cmp": "2"})  # fmt: skip
    assert any("do not line up" in i.value for i in at.info)
    assert not [s for s, _ in charts(at) if "first minus second" in str(s.get("title"))]


@pytest.mark.parametrize("model_name, a, b", [("digits-0-9", "Max ( 7 2 9 )", "Min ( 7 2 9 )"),
                                              ("digits-0-99", "Max ( 6 54 1 )", "Max ( 6 54 10 )")])  # fmt: skip
def test_the_overview_says_where_the_runs_part(model_name, a, b):
    at = open_link("../pages/overview.py", {"model": model_name, "example": a, "compare": b})
    model = load_model(model_name)
    want = parting_text(parting(model, run_example(model, a), run_example(model, b)))
    assert want in [m.value for m in at.markdown]
    spec, df = frame_of(at, "How far apart")
    assert df["value"].min() >= 0


def test_the_mechanism_page_patches_against_the_second_example():
    at = open_link("../pages/mechanism.py", {"model": "digits-0-9", "example": "Max ( 7 2 9 )",
                                             "compare": "Max ( 7 5 1 )"})  # fmt: skip
    assert at.radio(key="mech_cf").value == "the second example: Max ( 7 5 1 )"
    assert any("Patching Max ( 7 2 9 ) into Max ( 7 5 1 )" in str(s.get("title")) for s, _ in charts(at))


def test_a_model_that_cannot_read_the_second_example_gets_another():
    at = open_link("../pages/overview.py", {"model": "digits-0-99", "example": "Max ( 47 82 19 )",
                                            "compare": "Min ( 47 82 19 )"})  # fmt: skip
    at.selectbox(key="model_name").select("digits-0-9").run()
    assert not at.exception
    model = load_model("digits-0-9")
    assert model.parse(at.session_state["compare"]).text == at.session_state["compare"]
