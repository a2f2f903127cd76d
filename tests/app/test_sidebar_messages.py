"""The sidebar's message for an example the open model cannot read (AppTest)."""

from __future__ import annotations

from app_helpers import open_app, shown_text


def error_text(at) -> str:
    return " ".join(shown_text(e.value) for e in at.error)


def test_values_above_9_on_digits_0_9_point_to_the_model_that_reads_them():
    at = open_app()
    assert at.selectbox(key="model_name").value == "digits-0-9"
    at.text_input(key="example_text").input("max(99,98,97)").run()
    text = error_text(at)
    assert "99 is outside this model's range 0-9." in text
    assert "digits-0-99 can read it: choose it under Model." in text
    at.selectbox(key="model_name").set_value("digits-0-99").run()
    at.text_input(key="example_text").input("max(99,98,97)").run()
    assert not at.error and at.session_state["example"] == "Max ( 99 98 97 )"


def test_text_no_model_reads_gets_no_pointer_and_names_the_models_range():
    at = open_app()
    at.text_input(key="example_text").input("Max ( x 3 9 )").run()
    text = error_text(at)
    assert "'x' is not a whole number; values are whole numbers from 0 to 9." in text
    assert "can read it" not in text
    at.selectbox(key="model_name").set_value("digits-0-99").run()
    at.text_input(key="example_text").input("Max ( x 3 9 )").run()
    assert "from 0 to 99" in error_text(at)


def test_hard_example_cycles_through_the_least_confident_answers_and_the_card_gives_per_op_accuracy():
    from model_core import load_model
    from model_core.interp.input_space import hard_cases, space_run

    at = open_app()
    model = load_model("digits-0-9")
    wrong, unsure = hard_cases(model, run=space_run(model))
    assert not wrong  # the shipped digits-0-9 is right on all 5,000 inputs
    at.button(key="hard_example_button").click().run()
    assert at.session_state["example"] == model.parse(unsure[0][0]).text
    note = " ".join(shown_text(i.value) for i in at.sidebar.info)
    assert "Hard example 1 of 20" in note and "makes no mistake on every input" in note
    assert f"{unsure[0][1]:.2f} logits" in note
    at.button(key="hard_example_button").click().run()
    assert at.session_state["example"] == model.parse(unsure[1][0]).text
    card = " ".join(shown_text(m.value) for m in at.sidebar.markdown)
    assert "Held-out accuracy on 1,000 expressions" in card and "Max 100%" in card


def test_the_phones_example_box_edits_the_same_example_and_follows_the_sidebar():
    at = open_app()
    at.text_input(key="example_text_phone").input("min(4, 8, 1)").run()
    assert at.session_state["example"] == "Min ( 4 8 1 )"
    assert at.text_input(key="example_text").value == "Min ( 4 8 1 )"  # the sidebar's box follows
    at.text_input(key="example_text").input("Last ( 3 1 4 )").run()
    assert at.text_input(key="example_text_phone").value == "Last ( 3 1 4 )"  # and the other way round
    at.text_input(key="example_text_phone").input("Max ( 1 2 )").run()
    assert at.session_state["example"] == "Last ( 3 1 4 )"  # the last valid example stays
    assert at.text_input(key="example_text_phone").value == "Max ( 1 2 )"  # what was typed stays to be fixed
    assert "takes 3 values" in " ".join(shown_text(e.value) for e in at.main.error)
