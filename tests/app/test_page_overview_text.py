"""The Overview page's answer, its right/wrong flag, its confidence and its "What to notice", read as rendered.

Each sentence is checked against numbers recomputed from the run (Answer.step_probs, the teacher-forced run) on the
input that exposed it: a wrong answer on digits-0-99 (`Max ( 3 0 0 )`), a right multi-token answer
(`Max ( 6 57 6 )`), an answer within 0.0005 of certain (`Max ( 7 2 9 )`) and a tie in the input (`Max ( 5 5 2 )`).
"""

from __future__ import annotations

import json

import numpy as np
from app_helpers import (
    chart_titles,
    charts,
    open_app,
    select_imperfect_99,
    select_session_model,
    set_example,
    shown_text,
)
from streamlit.proto.Metric_pb2 import Metric

from explainer import format as fmt
from tests.fixtures import ORIGINAL_09

OVERVIEW = "../pages/overview.py"


def overview(model: str | None, text: str):
    at = open_app(OVERVIEW)
    if model is not None:
        at.selectbox(key="model_name").select(model).run()
    set_example(at, text)
    assert not at.exception, at.exception
    return at


def notice(at) -> str:
    hits = [shown_text(el.value) for el in at.info if shown_text(el.value).startswith("What to notice")]
    assert len(hits) == 1, [el.value for el in at.info]
    return hits[0]


def metric(at, label: str):
    hits = [m for m in at.metric if m.label == label]
    assert len(hits) == 1, [m.label for m in at.metric]
    return hits[0]


def softmax64(z):
    z = np.asarray(z, dtype=np.float64)
    e = np.exp(z - z.max())
    return e / e.sum()


def test_wrong_answer_is_named_with_the_step_it_goes_wrong():
    at = set_example(select_imperfect_99(open_app(OVERVIEW)), "Max ( 3 0 0 )")  # a model with real mistakes
    run = at.session_state["_current"].run
    a = run.answer
    assert not a.correct and a.value == 0 and a.expression.answer == 3
    # the flag: red, no arrow (a right/wrong flag is not a change)
    flag = metric(at, "Model's answer")
    assert flag.value == "0" and flag.delta == "wrong: the answer is 3"
    assert flag.proto.direction == Metric.MetricDirection.NONE and flag.proto.color == Metric.MetricColor.RED
    # the notice: the model's answer, that it is wrong, and where
    p0 = softmax64(run.grad_cache["hook_logits"][0, run.answer_pos])  # step 1 reads the true input in both runs
    v = at.session_state["_current"].model.vocab
    text = notice(at)
    assert text.startswith("What to notice: the model writes 0 <eos> in 2 steps (one token each), which is wrong: "
                           "the answer is 3 (3 <eos>).")  # fmt: skip
    assert (f"It goes wrong at step 1: it writes 0 ({fmt.percent(p0[v.id('0')])}) where the true token 3 gets "
            f"{fmt.percent(p0[v.id('3')])}.") in text
    assert fmt.percent(p0[v.id("3")]) == fmt.percent(a.step_probs[0, v.id("3")])
    weak = int(np.argmin(a.step_probs.max(axis=-1)))
    assert weak == 0 and f"is step 1 (the step where it goes wrong): 0 at {fmt.with_log(a.step_probs[0].max())}" in text
    for spec, _ in charts(at):  # Vega titles do not render Markdown
        assert "`" not in json.dumps(spec.get("title"))


def test_right_causal_answer_names_its_weakest_step():
    at = overview("digits-0-99", "Max ( 6 57 6 )")
    a = at.session_state["_current"].run.answer
    assert a.correct and a.answer_tokens == ["5", "7", "<eos>"]
    flag = metric(at, "Model's answer")
    assert flag.value == "57" and flag.delta == "correct"
    assert flag.proto.direction == Metric.MetricDirection.NONE and flag.proto.color == Metric.MetricColor.GREEN
    p = a.step_probs.max(axis=-1)
    weak = int(np.argmin(p))
    text = notice(at)
    assert text.startswith("What to notice: the model writes 5 7 <eos> in 3 steps (one token each), which is right.")
    assert (f"Its weakest step, the one whose written token got the lowest probability, is step {weak + 1}: "
            f"{a.answer_tokens[weak]} at {fmt.with_log(p[weak])}.") in text
    assert "wrong" not in text
    assert metric(at, "Confidence").value == fmt.percent(float(np.prod(p)))


def test_almost_certain_answer_is_not_written_100_percent():
    # the digits-0-9 shipped before the 9,600-example recipe: more confident than today's (tests/fixtures)
    at = select_session_model(open_app(OVERVIEW), "digits-0-9 (original)", "session:original-0-9", ORIGINAL_09)
    set_example(at, "Max ( 7 2 9 )")
    a = at.session_state["_current"].run.answer
    p = float(a.step_probs[0].max())
    assert 0.9995 < p < 1.0 and f"{p:.1%}" == "100.0%"
    shown = metric(at, "Confidence").value
    assert shown == fmt.percent(p) == "99.9933%"
    assert metric(at, "Model's answer").proto.direction == Metric.MetricDirection.NONE
    text = notice(at)
    assert text.startswith(f"What to notice: the model answers 9, which is right. At = it gives 9 a probability of "
                           f"{fmt.with_log(p)}; every other token shares the rest, {fmt.percent(1 - p)}.")
    assert "100" not in text


def test_tie_in_the_input():
    at = overview(None, "Max ( 5 5 2 )")
    a = at.session_state["_current"].run.answer
    assert a.correct and a.value == 5
    assert notice(at).startswith(f"What to notice: the model answers 5, which is right. At = it gives 5 a probability "
                                 f"of {fmt.with_log(a.step_probs[0].max())}")
    assert chart_titles(at) == ["First answer token"]
    (spec, _), = charts(at)
    assert spec["title"]["subtitle"] == "probabilities at position 8, the = token"
