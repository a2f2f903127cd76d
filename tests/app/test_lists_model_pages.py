"""The explorer on lists-0-9 (lists of 2 to 10 values): the sidebar's example widgets follow the list's length,
the model card and every page (but Train) tell the truth about lists of several lengths.

Expectations are written here from the task's rules (token counts, positions, the parse error's words) or
computed with model_core, never read back from the page.
"""

from __future__ import annotations

import collections
import dataclasses
import re

import numpy as np
import pytest
from app_helpers import chart_titles, charts, open_app, set_example, shown_text

from explainer import state
from model_core import TaskConfig, TaskModel, load_model

MODEL = "lists-0-9"
TWO, FIVE, TEN = "Last ( 4 7 )", "Max ( 1 8 3 9 2 )", "Min ( 5 2 8 1 9 3 7 4 6 0 )"
TEN_VALUES = [5, 2, 8, 1, 9, 3, 7, 4, 6, 0]
PAGES = ["overview", "tokens", "attention", "residual", "output", "backprop", "mechanism", "heads", "loop"]


@pytest.fixture(scope="module")
def model():
    return load_model(MODEL)


def lists_app(page: str | None = None):
    at = open_app(query_params={"model": MODEL})
    assert at.session_state["model_name"] == MODEL
    if page is not None:
        # the first visit of Heads or How it answers runs the model over 5,000 lists (once per process): more than
        # AppTest's 60 s on a busy machine
        at.switch_page(f"../pages/{page}.py").run(timeout=300)
        assert not at.exception, at.exception
    return at


def values_shown(at) -> list[int]:
    """The sidebar's value boxes, in slot order (their keys are example_v0, example_v1, ...)."""
    boxes = {int(b.key.removeprefix("example_v")): b.value for b in at.sidebar.number_input if
             b.key and b.key.startswith("example_v")}  # fmt: skip
    assert sorted(boxes) == list(range(len(boxes)))
    return [boxes[j] for j in range(len(boxes))]


def page_text(at) -> str:
    return "\n".join(shown_text(str(e.value)) for kind in ("markdown", "caption", "info", "success", "error")
                     for e in getattr(at, kind))  # fmt: skip


# ---------------------------------------------------------------- the sidebar
def test_value_boxes_follow_the_lists_length_both_ways():
    at = lists_app()
    for text in (TWO, FIVE, TEN):
        set_example(at, text)
        assert not at.exception, at.exception
        values = [int(v) for v in text.split(" ( ")[1].rstrip(" )").split()]
        assert at.sidebar.number_input(key="example_n").value == len(values)
        assert values_shown(at) == values
        assert at.sidebar.selectbox(key="example_op").value == text.split()[0]
    # 10 values, then 5, then a count of 7: slots 6 and 7 take back the values the 10-value list had there
    set_example(at, FIVE)
    at.sidebar.number_input(key="example_n").set_value(7).run()
    assert at.session_state["example"] == "Max ( 1 8 3 9 2 3 7 )"  # TEN's 6th and 7th values are 3 and 7
    assert values_shown(at) == [1, 8, 3, 9, 2, 3, 7]
    assert at.sidebar.text_input(key="example_text").value == "Max ( 1 8 3 9 2 3 7 )"
    at.sidebar.number_input(key="example_n").set_value(2).run()
    assert at.session_state["example"] == "Max ( 1 8 )" and values_shown(at) == [1, 8]
    at.sidebar.number_input(key="example_v1").set_value(6).run()
    at.sidebar.selectbox(key="example_op").select("Second").run()
    assert at.session_state["example"] == "Second ( 1 6 )"
    assert not at.exception, at.exception


def test_the_count_box_is_only_for_lists_of_several_lengths():
    at = open_app()  # digits-0-9: three values, as before
    assert not [b for b in at.sidebar.number_input if b.key == "example_n"]
    assert len(values_shown(at)) == 3
    assert "3 values in 0-9" in at.sidebar.text_input(key="example_text").help
    # to lists-0-9 and back: its three values stay (2 to 10 is fine), a 10-value list does not fit digits-0-9
    kept = at.session_state["example"]
    at.selectbox(key="model_name").select(MODEL).run()
    assert at.session_state["example"] == kept and at.sidebar.number_input(key="example_n").value == 3
    assert values_shown(at) == [int(v) for v in kept.split(" ( ")[1].rstrip(" )").split()]
    set_example(at, TEN)
    at.selectbox(key="model_name").select("digits-0-9").run()
    assert not at.exception, at.exception
    assert at.session_state["example"] != TEN and len(values_shown(at)) == 3
    at.selectbox(key="model_name").select(MODEL).run()
    assert at.sidebar.number_input(key="example_n").value == 3 and len(values_shown(at)) == 3


def test_an_11_value_list_is_refused_and_the_last_valid_example_stays():
    at = lists_app("attention")
    set_example(at, TEN)
    set_example(at, "Max ( 1 2 3 4 5 6 7 8 9 0 1 )")
    assert not at.exception, at.exception
    errors = " ".join(shown_text(e.value) for e in at.sidebar.error)
    assert "Max takes 2 to 10 values here; got 11." in errors
    assert at.session_state["example"] == TEN and values_shown(at) == TEN_VALUES
    assert any(f"Still showing the last valid example: {TEN}" in shown_text(c.value) for c in at.sidebar.caption)


def test_help_and_model_card_state_the_range_of_lengths(model):
    at = lists_app()
    help_text = at.sidebar.text_input(key="example_text").help
    assert "2 to 10 values in 0-9" in help_text
    for example in re.findall(r"Max \([^)]*\)|min\([^)]*\)", help_text):  # the help's examples are readable
        model.parse(example)
    card = page_text(at)
    assert "First, Second, Last, Max, Min of 2 to 10 values in 0-9." in card
    # the card's per-length line, from a copy of the model whose metrics hold what a new checkpoint records
    per_length = {str(n): 1.0 for n in range(2, 10)} | {"10": 0.75}
    copy = dataclasses.replace(model, metrics={**model.metrics, "heldout_per_length": per_length})
    at.session_state[state.SESSION_MODELS] = {"lists copy": ("session:lists-copy", copy)}
    at.run()
    at.selectbox(key="model_name").select("lists copy").run()
    want = "By number of values: " + ", ".join(f"{n} values 100%" for n in range(2, 10)) + ", 10 values 75.0%."
    assert want in page_text(at)


def test_random_examples_draw_every_length_equally(model):
    rng = np.random.default_rng(1)
    counts = collections.Counter(len(model.parse(state._random_text(model, rng)).values) for _ in range(9_000))
    assert sorted(counts) == list(range(2, 11))
    assert all(800 <= c <= 1200 for c in counts.values()), counts  # 1,000 each expected; 4+ sd is about 120
    at = lists_app()
    for _ in range(3):
        at.button(key="random_example").click().run()
        n = len(model.parse(at.session_state["example"]).values)
        assert at.sidebar.number_input(key="example_n").value == n and len(values_shown(at)) == n


# ---------------------------------------------------------------- every page, three lengths, changed in a row
@pytest.mark.parametrize("page", PAGES)
def test_every_page_opens_on_lists_of_2_5_and_10_values(page):
    at = lists_app(page)
    for text in (TWO, FIVE, TEN):  # one after the other on the same page
        set_example(at, text)
        assert not at.exception, (text, at.exception)
        assert at.session_state["example"] == text
    assert len(values_shown(at)) == 10


def test_overview_states_the_task_and_counts_the_tokens():
    at = lists_app("overview")
    for text, n in ((TWO, 2), (FIVE, 5), (TEN, 10)):
        set_example(at, text)
        # op ( n values, n - 1 commas ) = and the one-digit answer it reads back: 2n + 4 tokens
        assert f"The model reads {2 * n + 4} tokens" in page_text(at)
        assert any("Task: First, Second, Last, Max, Min of 2 to 10 values in 0-9." in shown_text(c.value)
                   for c in at.caption)  # fmt: skip


def test_mechanism_labels_every_slot_of_a_ten_value_list():
    at = lists_app("mechanism")
    set_example(at, TEN)
    assert not at.exception, at.exception
    # the patching grid's columns are "position role": v1 at position 2, ..., v10 at 20, `=` at 22
    cols = [set(f["col_label"]) for spec, frames in charts(at) for f in frames if "col_label" in f]
    labels = set().union(*cols) if cols else set()
    assert {"2 v1", "20 v10", "21 )", "22 ="} <= labels, sorted(labels)
    (steer,) = [g for g in at.get("button_group") if g.proto.id.endswith("mech_steer_slot")]
    assert [o.content for o in steer.proto.options] == [f"slot {j + 1}: {v}" for j, v in enumerate(TEN_VALUES)]


def test_output_says_which_inputs_share_the_embedding_row():
    at = lists_app("output")
    set_example(at, FIVE)
    # `=` is at position 12 exactly for the lists of 5 values (one digit each): the number of digits is not enough
    assert "embed + pos is the same for every input of 5 values: at position 12" in page_text(at)


def test_heads_and_tokens_say_they_use_a_sample(model):
    at = lists_app("heads")
    text = page_text(at)
    assert f"a sample of 5,000 held-out expressions (of {model.task.space_size:,})" in text
    assert "No map of every expression" in text
    assert not [t for t in chart_titles(at) if t.startswith("Right or wrong")]
    slots = [set(f["slot"]) for _, frames in charts(at) for f in frames if "slot" in f]
    assert slots and set().union(*slots) == {f"slot {j}" for j in range(1, 11)}
    at.switch_page("../pages/tokens.py").run()
    assert "score the model again on a sample of held-out inputs" in page_text(at)


def test_loop_says_the_sampler_balances_operation_and_length_cells():
    at = lists_app("loop")
    text = page_text(at)
    assert "balanced across the 45 cells of one operation and one length (9 lengths)" in text
    assert "The sampler balanced the 45 cells of one operation and one length" in text


def test_a_wrong_answer_is_shown_as_wrong_on_every_page():
    # the shipped lists-0-9 makes no mistake on its held-out split, so a fresh (untrained) lists model, added to
    # the session as an upload would be, gives the wrong answers; which ones is found here with model_core
    fresh = TaskModel.new(TaskConfig(min_args=2, n_args=10), "fresh lists", n_layers=1, n_heads=2, d_model=16,
                          d_ff=32, seed=0, causal=True)  # fmt: skip
    wrong = [t for t in (TWO, FIVE, TEN) if not fresh.answer(t).correct]
    assert wrong, "a model that never trained answers these right by chance"
    at = open_app()
    at.session_state[state.SESSION_MODELS] = {"fresh lists": ("session:fresh-lists", fresh)}
    at.run()
    at.selectbox(key="model_name").select("fresh lists").run()
    for text in wrong:
        set_example(at, text)
        (answer,) = [m for m in at.metric if m.label == "Model's answer"]
        assert answer.delta == f"wrong: the answer is {fresh.parse(text).answer}"
    for page in PAGES[1:]:
        at.switch_page(f"../pages/{page}.py").run()
        assert not at.exception, (page, at.exception)
        assert at.session_state["example"] == wrong[-1]
