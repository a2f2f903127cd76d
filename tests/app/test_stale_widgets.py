"""Widgets whose options change with the model, the example or a run never hold a stale value.

When a selectbox's option list or labels change (fewer answer steps, layers or heads; labels that named the
example's tokens), the browser later sends back the label it still shows, which matches no option, and
Streamlit 1.67 stores that label as a raw string in `st.session_state`. `browser_sends` makes AppTest send
exactly that; other tests shrink an option list under a stored value. Each checks that the page renders
with a sensible default instead of crashing.
"""

from __future__ import annotations

import numpy as np
import pytest
from app_helpers import chart_titles, charts, open_app, set_example, shown_text

from model_core import TaskConfig, TaskModel
from model_core.analysis import run_example

OUTPUT, TOKENS, ATTENTION, RESIDUAL = "../pages/output.py", "../pages/tokens.py", "../pages/attention.py", \
    "../pages/residual.py"  # fmt: skip
CAUSAL = "digits-0-99"


def use_model(at, name: str):
    at.selectbox(key="model_name").select(name).run()
    assert not at.exception, at.exception
    return at


def add_model(at, model: TaskModel):
    at.session_state["session_models"] = {model.name: (f"session:{model.name}", model)}
    at.run()
    return use_model(at, model.name)


def browser_sends(at, key: str, label: str):
    """Rerun as the browser does when its selectbox `key` still shows `label`, no longer one of the options."""
    node = at.selectbox(key=key)
    node.options.append(label)  # what the browser's list still holds
    node.set_value(label)
    at.run()
    return at


def logits_chart_position(at) -> int:
    (title,) = [t for t in chart_titles(at) if t.startswith("Logits at position")]
    return int(title.split()[3])


def test_output_answer_step_survives_two_example_changes_and_a_stale_label():
    at = use_model(open_app(OUTPUT), CAUSAL)
    set_example(at, "Max ( 47 82 19 )")  # answer 8 2 <eos>: three steps
    at.selectbox(key="out_step").select(1).run()
    run = run_example(at.session_state["_current"].model, "Max ( 47 82 19 )")
    assert logits_chart_position(at) == run.answer_pos + 1
    # A second step exists in the next example too: the choice is kept (its label did not change).
    set_example(at, "Min ( 47 82 19 )")
    assert not at.exception, at.exception
    assert at.selectbox(key="out_step").value == 1
    # A label of the old kind, naming the example's tokens, that the browser still showed after they changed.
    browser_sends(at, "out_step", "step 2: position 13 (`8`) → wrote `2`")
    assert not at.exception, at.exception
    assert at.selectbox(key="out_step").value == 0
    set_example(at, "Max ( 5 3 9 )")  # answer 9 <eos>: two steps
    at.selectbox(key="out_step").select(1).run()
    set_example(at, "Min ( 5 3 9 )")  # still two steps: the choice is kept
    assert at.selectbox(key="out_step").value == 1
    assert logits_chart_position(at) == run_example(at.session_state["_current"].model, "Min ( 5 3 9 )").answer_pos + 1
    assert not at.error and not at.warning


def test_output_answer_step_beyond_a_shorter_answer_falls_back_to_the_first():
    at = set_example(use_model(open_app(OUTPUT), CAUSAL), "Max ( 47 82 19 )")  # 8 2 <eos>
    at.selectbox(key="out_step").select(2).run()  # the <eos> step of 8 2 <eos>
    set_example(at, "Max ( 1 2 3 )")  # 3 <eos>: two steps
    assert not at.exception, at.exception
    assert at.selectbox(key="out_step").value == 0
    assert list(at.selectbox(key="out_step").options) == ["answer token 1", "answer token 2"]


def test_output_answer_step_the_browser_still_shows_after_the_answer_got_shorter():
    at = set_example(use_model(open_app(OUTPUT), CAUSAL), "Max ( 47 82 19 )")  # 8 2 <eos>
    at.selectbox(key="out_step").select(2).run()
    set_example(at, "Max ( 1 2 3 )")  # 3 <eos>: two steps
    browser_sends(at, "out_step", "answer token 3")
    assert not at.exception, at.exception
    assert at.selectbox(key="out_step").value == 0


@pytest.mark.parametrize("key, stale", [("layer", "2"), ("head", "4"), ("head", "7")])
def test_sidebar_layer_and_head_the_browser_still_shows_for_a_larger_model(key, stale):
    at = open_app(ATTENTION)  # digits-0-9: 2 layers, 4 heads
    browser_sends(at, key, stale)
    assert not at.exception, at.exception
    assert at.selectbox(key=key).value == 0
    assert any(t.startswith("Attention pattern, L0 H0") for t in chart_titles(at))


def test_head_beyond_a_narrower_model_falls_back():
    narrow = TaskModel.new(TaskConfig(), name="two heads", d_model=16, n_heads=2, d_ff=32, seed=1)
    at = open_app(ATTENTION)
    at.selectbox(key="head").select(3).run()
    add_model(at, narrow)
    assert at.selectbox(key="head").value == 0 and list(at.selectbox(key="head").options) == ["0", "1"]


def test_tokens_dimensions_of_a_wider_model_fall_back_on_a_narrower_one():
    narrow = TaskModel.new(TaskConfig(), name="d_model 8", d_model=8, n_heads=2, d_ff=16, seed=1)
    at = open_app(TOKENS)
    at.multiselect(key="tokens_dims").set_value([1, 30, 40]).run()
    add_model(at, narrow)
    assert at.multiselect(key="tokens_dims").value == [1]  # 30 and 40 do not exist in d_model 8
    at.session_state["tokens_dims"] = [30, 40]  # nothing left: the page's default dimensions
    at.run()
    assert not at.exception, at.exception
    assert at.multiselect(key="tokens_dims").value == [0, 1]
    sinusoids = [frames[0] for spec, frames in charts(at) if "dim_label" in frames[0].columns]
    assert sinusoids and sorted(set(sinusoids[0]["dim"].astype(int))) == [0, 1]


def test_residual_final_layernorm_of_a_pre_norm_model_falls_back_on_a_post_norm_one():
    at = use_model(open_app(RESIDUAL), CAUSAL)  # pre-norm: has ln_final
    at.session_state["resid_ln"] = "ln_final"
    at.run()
    assert not at.exception and at.session_state["resid_ln"] == "ln_final"
    use_model(at, "digits-0-9")  # post-norm: ln1 and ln2 only
    assert not at.exception, at.exception
    assert at.session_state["resid_ln"] == "ln1"
    assert np.all([not t.startswith("ln_final") for t in chart_titles(at)])


def test_an_empty_value_in_the_sidebar_is_an_error_and_keeps_the_last_example():
    at = set_example(open_app(OUTPUT), "Min ( 4 8 1 )")
    run = at.session_state["_current"].run
    set_example(at, "Max ( 1 , , 2 3 )")
    assert not at.exception, at.exception
    message = "Empty value after '1': two commas with nothing between them. Remove one, or put a value."
    assert [shown_text(e.value) for e in at.sidebar.error] == [message]
    assert [shown_text(e.value) for e in at.main.error] == [message]  # the phone's box above the page says it too
    assert at.session_state["_current"].run is run
