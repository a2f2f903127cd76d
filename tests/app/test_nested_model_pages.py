"""The explorer on a model that reads expressions inside expressions (TaskConfig.max_depth 2), as an upload would
bring one: every page renders the nested example; the sidebar takes it typed (no value boxes, whose slots are
numbers) and draws random examples of both depths; the model card says the task nests; the Output question offers
the arguments' values (an inner answer among them); Heads counts an inner expression whole as an argument's slot and
scores it by its answer (up to a Sum's 27); Why this answer steers a head onto an inner expression's closing `)`
and asks whether the answer follows its answer.

The model is a freshly initialised one (its answers are mostly wrong, which the pages must say as they are).
Expectations are computed here with model_core (the tokens, the inner answers), never read back from the page.
"""

from __future__ import annotations

import numpy as np
import pytest
from app_helpers import open_app, set_example, shown_text

from explainer import state
from model_core import TaskConfig, TaskModel

TASK = TaskConfig(operations=("First", "Second", "Last", "Max", "Min", "Sum"), min_args=2, n_args=3, max_depth=2)
LABEL = "nested (untrained)"
TEXT = "Max ( First ( 2 8 ) Sum ( 5 1 ) 7 )"  # First -> 2, Sum -> 6: Max ( 2 6 7 ) = 7
PAGES = ["overview", "tokens", "attention", "residual", "output", "backprop", "mechanism", "heads", "loop"]


@pytest.fixture(scope="module")
def model():
    return TaskModel.new(TASK, "nested-untrained", causal=True, norm="pre", positional="learned", activation="gelu",
                         n_layers=2, d_model=32, n_heads=2, d_ff=64, seed=1)  # fmt: skip


def nested_app(model, page: str | None = None, text: str = TEXT):
    at = open_app()
    at.session_state[state.SESSION_MODELS] = {LABEL: ("session:nested-untrained", model)}
    at.run()
    at.selectbox(key="model_name").select(LABEL).run()
    assert not at.exception, at.exception
    set_example(at, text)
    if page is not None:
        at.switch_page(f"../pages/{page}.py").run(timeout=300)
    assert not at.exception, at.exception
    return at


def texts(at) -> str:
    return "\n".join(shown_text(e.value) for kind in ("markdown", "caption", "info", "warning", "error", "success")
                     for e in getattr(at, kind))  # fmt: skip


@pytest.mark.parametrize("page", PAGES)
def test_every_page_renders_the_nested_example(model, page):
    at = nested_app(model, page)
    assert at.session_state["example"] == TEXT
    assert not at.error, [e.value for e in at.error]
    assert "not worked out" not in texts(at)


def test_the_sidebar_takes_nested_text_and_no_value_boxes(model):
    at = nested_app(model)
    keys = {w.key for w in at.sidebar.number_input} | {w.key for w in at.sidebar.selectbox}
    assert not any(k and k.startswith("example_v") for k in keys) and "example_op" not in keys
    assert any("expressions inside expressions" in shown_text(c.value) for c in at.sidebar.caption)
    assert "a value may be such an expression itself (nested 2 deep)" in texts(at)  # the model card
    # a flat example of the same task is read too, and a third level is refused with the parser's message
    set_example(at, "Sum ( 9 8 7 )")
    assert at.session_state["example"] == "Sum ( 9 8 7 )"
    at.sidebar.text_input(key="example_text").set_value("Max ( First ( Min ( 1 2 ) 3 ) 4 )").run()
    assert not at.exception and at.session_state["example"] == "Sum ( 9 8 7 )"
    assert any("nested at most 2 deep" in shown_text(e.value) for e in at.sidebar.error)


def test_random_examples_are_the_tasks_and_of_both_depths(model):
    at = nested_app(model)
    seen = set()
    for _ in range(40):
        at.sidebar.button(key="random_example").click().run()
        assert not at.exception, at.exception
        expr = model.parse(at.session_state["example"])  # the task reads it
        seen.add(expr.depth)
    assert seen == {1, 2}


def test_the_output_question_offers_the_arguments_values(model):
    at = nested_app(model, "output")
    expr = model.parse(TEXT)
    args = model.expressions([expr]).values[0]  # [n_args]: 2 (First), 6 (Sum), 7
    assert args.tolist() == [2, 6, 7]
    radio = next(r for r in at.radio if r.options and all(o.startswith("`") for o in r.options))
    offered = {o.strip("`") for o in radio.options}
    assert {"2", "6", "7"} <= offered  # 6, the inner Sum's answer, is no token of the text: it is offered anyway


def test_the_model_card_gives_accuracy_per_depth(model):
    from dataclasses import replace

    from explainer import format as fmt

    recorded = replace(model, metrics={"heldout_per_op": {op: 0.5 for op in TASK.operations}, "heldout_n": 20_000,
                                       "heldout_per_depth": {"1": 0.75, "2": 0.3125}})  # fmt: skip
    at = nested_app(recorded)
    assert (f"By depth: numbers only {fmt.percent(0.75)}, an expression inside {fmt.percent(0.3125)}."
            in texts(at))  # fmt: skip


def test_heads_scores_an_inner_expression_by_its_answer(model):
    from app_helpers import charts

    from model_core.interp import input_space as isp

    at = nested_app(model, "heads")
    assert isp.argument_values(TASK) == 28  # 0-9, and a Sum of three 9s inside: 27
    shown = texts(at)
    assert "or all of the inner expression whose answer it is" in shown
    assert "(for an inner expression, its closing ))" in shown
    (frame,) = [frames[0] for spec, frames in charts(at) if str(spec.get("title", "")).startswith("Sum · L0H0")]
    values = set(frame["value"])  # the values some sampled argument has (a cell no expression has is not drawn)
    assert max(values) > TASK.max_value and values <= set(range(28))  # inner Sums reach past 9
    table, _ = isp.score_by_digit(model, 0, 0, model.expressions([model.parse(TEXT)]))  # its width: the task's
    assert table.shape == (len(TASK.operations), TASK.n_args, 28)


def test_steering_onto_an_inner_expression_reads_its_closing_bracket(model):
    from model_core import interp
    from model_core.interp.inputs import batch, roles

    at = nested_app(model, "mechanism")
    at.segmented_control(key="mech_steer_slot").set_value("slot 2: Sum ( 5 1 )").run()
    assert not at.exception, at.exception
    b = batch(model, [TEXT])
    names = roles(model, b.tokens[0])
    close = names.index("arg2.)")  # the inner Sum's `)`, found by its role
    heads = [f"L{model.transformer.cfg.n_layers - 1}H{h}" for h in range(model.transformer.cfg.n_heads)]
    logits = interp.steered_logits(model, b.tokens[:1], [int(b.answer_pos[0])], heads, [close])[0]
    top = model.vocab.decode([int(np.argmax(logits))])[0]
    said = next(shown_text(m.value) for m in at.markdown if shown_text(m.value).startswith("Steered"))
    assert said.startswith(f"Steered, the model's top token at = is {top} ")
    assert "slot 2 is Sum ( 5 1 ), whose answer is 6: the answer " in said
    assert ("the answer follows" in said) == (top == "6")


@pytest.fixture(scope="module")
def shipped():
    from model_core import load_model

    return load_model("nested-0-9")


@pytest.mark.parametrize("page", PAGES)
def test_every_page_renders_the_shipped_nested_model(shipped, page):
    """The shipped nested-0-9 (a trained model: its answers are mostly right) on a nested example, every page."""
    from explainer import format as fmt

    at = open_app(query_params={"model": "nested-0-9"})
    assert at.session_state["model_name"] == "nested-0-9"
    set_example(at, TEXT)
    # the first visit of Heads or How it answers runs the model over a sample of 5,000 inputs (once per process)
    at.switch_page(f"../pages/{page}.py").run(timeout=300)
    assert not at.exception, at.exception
    assert at.session_state["example"] == TEXT and not at.error, [e.value for e in at.error]
    if page == "overview":
        depth = shipped.metrics["heldout_per_depth"]
        assert (f"By depth: numbers only {fmt.percent(depth['1'])}, an expression inside {fmt.percent(depth['2'])}."
                in texts(at))  # fmt: skip
        answer = shipped.answer(TEXT)  # the model's own greedy answer, computed here
        assert ("which is right" if answer.correct else "which is wrong") in texts(at)
