"""The Train page trains a nested task (an argument may be an expression): the checkbox and its link parameter, the
number of values capped where the task's ids still fit int64, and a short run whose model the explorer then opens,
reading a nested example and showing the run's accuracy per depth.

Expectations come from model_core (TaskConfig refuses one more value; the job's own held-out figures), never from
the page itself.
"""

from __future__ import annotations

import pytest
from app_helpers import open_app, set_example, shown_text
from test_links import open_link
from test_page_train import PAGE, configure, wait_until_done

from explainer import format as fmt
from explainer import state
from model_core import TaskConfig, TaskError
from model_core.presets import train_page_defaults
from model_core.task import OPERATIONS, task_text
from model_core.training import job as tj


@pytest.mark.parametrize("max_value, most", [(9, tj.MAX_ARGS_NESTED), (99, tj.MAX_ARGS_NESTED_WIDE)])
def test_the_caps_are_the_largest_nested_tasks_that_can_be_indexed(max_value, most):
    every = tuple(OPERATIONS)
    assert TaskConfig(operations=every, max_value=max_value, n_args=most, min_args=2, max_depth=2).nested
    with pytest.raises(TaskError, match="too many to index"):
        TaskConfig(operations=every, max_value=max_value, n_args=most + 1, min_args=2, max_depth=2)
    assert tj.max_args(max_value, nested=True) == most


def test_nesting_caps_the_number_of_values_and_a_link_carries_it():
    at = open_app(PAGE)
    at.slider(key="train_n_args").set_value(8).run()
    at.checkbox(key="train_nested").check().run()
    assert not at.exception, at.exception
    slider = at.slider(key="train_n_args")
    assert (slider.max, slider.value) == (tj.MAX_ARGS_NESTED, tj.MAX_ARGS_NESTED)
    at.selectbox(key="train_max_value").select(99).run()
    assert not at.exception, at.exception
    assert tj.MAX_ARGS_NESTED_WIDE == 2  # one choice: a disabled box, not a slider from 2 to 2
    box = at.number_input(key="train_n_args")
    assert box.value == 2 and box.disabled
    linked = open_link(PAGE, {"tnest": "1"})
    assert linked.checkbox(key="train_nested").value is True


def test_a_nested_run_trains_and_the_explorer_opens_its_model():
    at = open_app(PAGE)
    at.checkbox(key="train_nested").check()
    at.multiselect(key="train_ops").select("Sum")  # answers up to 81: the page makes the model causal
    configure(at, steps=60, eval_every=20, train_layers=1, train_heads=2, train_d_model=32, train_d_ff=64)
    at.run().button(key="train_start").click().run()
    job = wait_until_done(at, timeout=120)
    assert job.status == "finished", job.message
    assert job.task.nested and job.model.causal and "nested" in job.name
    depth = job.model.metrics["heldout_per_depth"]
    assert set(depth) == {"1", "2"}
    at.run()
    assert not at.exception, at.exception
    # the explorer reads the page-trained model on a nested example
    at.switch_page("../pages/overview.py").run()
    names = at.selectbox(key="model_name").options
    assert job.name in names
    at.selectbox(key="model_name").select(job.name).run()
    set_example(at, "Sum ( Sum ( 9 8 7 ) 7 1 )")
    assert not at.exception, at.exception
    assert not at.sidebar.error, [e.value for e in at.sidebar.error]
    assert at.session_state["example"] == "Sum ( Sum ( 9 8 7 ) 7 1 )"
    shown = "\n".join(shown_text(m.value) for m in at.markdown)
    assert (f"By depth: numbers only {fmt.percent(depth['1'])}, an expression inside {fmt.percent(depth['2'])}."
            in shown)  # fmt: skip
    assert state.SESSION_MODELS in at.session_state


def test_the_caption_says_what_the_hard_cases_are_with_expressions_inside():
    """The hard cases' nested part (splits.sample_train) is stated only when nesting is on, and Sum only with Sum."""
    at = open_app(PAGE)

    def captions() -> str:
        return " ".join(shown_text(c.value) for c in at.caption)

    holds = "every hard case holds one, most of its arguments are expressions"
    share = train_page_defaults().train.hard_fraction
    assert f"draws {share:.0%} of each batch from hard cases" in captions() and holds not in captions()
    at.checkbox(key="train_nested").check().run()
    assert f"{holds}." in captions()  # the default operations have no Sum
    at.multiselect(key="train_ops").select("Sum").run()
    assert not at.exception, at.exception
    assert f"{holds}, and Sum is common inside and out." in captions()
    # the defaults' claim names the defaults' task, not the nested one chosen now
    defaults = task_text(train_page_defaults().task)
    assert any(f"defaults (the original 2-block model, on {defaults}) reach 100%" in i.value for i in at.info)
