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
