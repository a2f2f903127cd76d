"""Roles of positions (model_core.interp.inputs.roles) on nested expressions, against hand-written lists; and a
flat task's roles as they always were."""

from __future__ import annotations

import pytest

from model_core import TaskConfig, TaskModel
from model_core.interp.inputs import batch, roles

NESTED = TaskConfig(min_args=2, n_args=3, max_depth=2)


@pytest.fixture(scope="module")
def causal():
    return TaskModel.new(NESTED, causal=True)


@pytest.fixture(scope="module")
def bidirectional():
    return TaskModel.new(NESTED, causal=False)


def _roles(model, text):
    b = batch(model, [text])
    return roles(model, b.tokens[0]), int(b.answer_pos[0])


def test_an_inner_expression_first(causal):
    got, eq = _roles(causal, "Max ( First ( 2 8 ) 7 )")
    # Max ( First ( 2 , 8 ) , 7 ) = 7
    assert got == ["op", "(", "arg1.op", "arg1.(", "arg1.inner.v1", "arg1.inner.,", "arg1.inner.v2", "arg1.)", ",",
                   "arg2", ")", "=", "ans.0"]  # fmt: skip
    assert eq == 11


def test_an_inner_expression_between_numbers(causal):
    got, eq = _roles(causal, "Min ( 5 Second ( 5 1 9 ) 7 )")
    assert got == ["op", "(", "arg1", ",", "arg2.op", "arg2.(", "arg2.inner.v1", "arg2.inner.,", "arg2.inner.v2",
                   "arg2.inner.,", "arg2.inner.v3", "arg2.)", ",", "arg3", ")", "=", "ans.0"]  # fmt: skip
    assert eq == 15


def test_two_inner_expressions(causal):
    got, _ = _roles(causal, "Max ( Last ( 1 2 ) Min ( 3 4 ) )")
    assert got == ["op", "(", "arg1.op", "arg1.(", "arg1.inner.v1", "arg1.inner.,", "arg1.inner.v2", "arg1.)", ",",
                   "arg2.op", "arg2.(", "arg2.inner.v1", "arg2.inner.,", "arg2.inner.v2", "arg2.)", ")", "=",
                   "ans.0"]  # fmt: skip


def test_numbers_only_in_a_nested_task_are_args(causal, bidirectional):
    got, _ = _roles(causal, "Max ( 5 3 )")
    assert got == ["op", "(", "arg1", ",", "arg2", ")", "=", "ans.0"]
    got, eq = _roles(bidirectional, "Max ( 5 3 )")  # read in the task's longest width: the rest is padding
    assert got[: eq + 1] == ["op", "(", "arg1", ",", "arg2", ")", "="]
    assert set(got[eq + 1 :]) == {"pad"} and len(got) == NESTED.input_len


def test_two_digit_places_inside_and_out():
    model = TaskModel.new(TaskConfig(max_value=99, n_args=2, max_depth=2, operations=("Max", "Sum")), causal=True)
    got, _ = _roles(model, "Sum ( Max ( 12 3 ) 45 )")  # Sum ( Max ( 1 2 , 3 ) , 4 5 ) = 5 7
    assert got == ["op", "(", "arg1.op", "arg1.(", "arg1.inner.v1.tens", "arg1.inner.v1.ones", "arg1.inner.,",
                   "arg1.inner.v2.ones", "arg1.)", ",", "arg2.tens", "arg2.ones", ")", "=", "ans.0",
                   "ans.1"]  # fmt: skip


def test_a_flat_task_keeps_its_names():
    flat = TaskModel.new(TaskConfig(), causal=True)
    assert _roles(flat, "Max ( 5 3 9 )")[0] == ["op", "(", "v1", ",", "v2", ",", "v3", ")", "=", "ans.0"]
    wide = TaskModel.new(TaskConfig(max_value=99), causal=True)
    assert _roles(wide, "Max ( 5 31 9 )")[0] == ["op", "(", "v1.ones", ",", "v2.tens", "v2.ones", ",", "v3.ones", ")",
                                                 "=", "ans.0", "ans.1"]  # fmt: skip


def test_head_roles_count_a_nested_argument_whole_as_the_answers_slot(causal):
    """`to the answer's slot` on nested inputs: the mean attention from `=` to every position of the argument whose
    value is the answer (a number's digit, or all of an inner expression, `arg2.op` to `arg2.)`), computed here from
    the roles' names and the pattern, first slot on a tie, per operation."""
    import numpy as np

    from model_core.interp import input_space as isp

    texts = ["Max ( First ( 2 8 ) 7 )", "Min ( 4 Max ( 1 1 ) 9 )", "Last ( 3 Max ( 5 6 ) )", "First ( Min ( 8 2 ) 1 )",
             "Max ( 2 5 )", "Second ( 6 Last ( 4 9 1 ) 0 )"]  # fmt: skip
    exprs = causal.expressions([causal.parse(t) for t in texts])
    got = isp.head_roles(causal, exprs)
    run = isp.space_run(causal, exprs)
    cfg = causal.transformer.cfg
    want = {}  # op -> [head] masses, one list per example
    for i, text in enumerate(texts):
        b = batch(causal, [text])
        names = roles(causal, b.tokens[0])
        expr = causal.parse(text)
        slot = 1 + list(exprs.values[i]).index(exprs.answers[i])  # the argument holding the answer, first on a tie
        where = [t for t, r in enumerate(names) if r.split(".")[0] == f"arg{slot}"]
        row = run.pattern[i, :, :, :]  # [L, H, T] from `=`
        want.setdefault(expr.op, []).append(row[:, :, where].sum(-1).reshape(cfg.n_layers * cfg.n_heads))
    for op, masses in want.items():
        k = got.operations.index(op)
        np.testing.assert_allclose(got.to_answer_slot[:, k], np.mean(masses, axis=0), rtol=1e-6)
