"""Roles of positions (model_core.interp.inputs.roles) on lists of several lengths, against hand-written lists."""

from __future__ import annotations

import pytest

from model_core import TaskConfig, TaskModel
from model_core.interp.inputs import batch, roles


@pytest.fixture(scope="module")
def causal():
    return TaskModel.new(TaskConfig(min_args=2, n_args=10), causal=True)


@pytest.fixture(scope="module")
def bidirectional():
    return TaskModel.new(TaskConfig(min_args=2, n_args=10), causal=False)


def _roles(model, text):
    b = batch(model, [text])
    return roles(model, b.tokens[0]), int(b.answer_pos[0])


def test_two_values_causal(causal):
    got, eq = _roles(causal, "Last ( 4 7 )")
    # Last ( 4 , 7 ) = 7 <eos>: the model reads the answer digit back (teacher forcing); <eos> is only a target
    assert got == ["op", "(", "v1", ",", "v2", ")", "=", "ans.0"]
    assert eq == 6


def test_five_values_causal(causal):
    got, eq = _roles(causal, "Max ( 1 8 3 9 2 )")
    assert got == ["op", "(", "v1", ",", "v2", ",", "v3", ",", "v4", ",", "v5", ")", "=", "ans.0"]
    assert eq == 12


def test_ten_values_causal(causal):
    got, eq = _roles(causal, "Min ( 5 2 8 1 9 3 7 4 6 0 )")
    want = ["op", "("]
    for j in range(1, 11):
        want += [f"v{j}", ","]
    want[-1] = ")"  # no comma after the last value
    assert got == want + ["=", "ans.0"]
    assert eq == 22 and got[20] == "v10"


def test_short_list_padded_in_a_bidirectional_batch(bidirectional):
    # a bidirectional model reads a short list in the task's full width: the rest of the row is padding
    got, eq = _roles(bidirectional, "Second ( 3 6 1 )")
    assert got[:9] == ["op", "(", "v1", ",", "v2", ",", "v3", ")", "="]
    assert eq == 8
    assert set(got[9:]) == {"pad"} and len(got) == 23  # op ( 10 values 9 commas ) =


def test_lengths_mixed_in_one_batch(causal):
    # one batch of a 2- and a 10-value list: the shorter row is padded, and its roles stop at its own `=`
    b = batch(causal, ["First ( 9 0 )", "First ( 9 0 1 2 3 4 5 6 7 8 )"])
    short, long_ = roles(causal, b.tokens[0]), roles(causal, b.tokens[1])
    assert short[:8] == ["op", "(", "v1", ",", "v2", ")", "=", "ans.0"]
    assert set(short[8:]) == {"pad"}
    assert long_.count(",") == 9 and [r for r in long_ if r.startswith("v")] == [f"v{j}" for j in range(1, 11)]
    assert b.answer_pos.tolist() == [6, 22]


def test_two_digit_lists_of_several_lengths():
    # 0-99 lists of 2 to 5 values: a value's digits are named by place, and slots shift with the digits
    model = TaskModel.new(TaskConfig(max_value=99, min_args=2, n_args=5), causal=True)
    got, eq = _roles(model, "Max ( 7 42 )")
    assert got == ["op", "(", "v1.ones", ",", "v2.tens", "v2.ones", ")", "=", "ans.0", "ans.1"]
    assert eq == 7
    got, _ = _roles(model, "First ( 10 2 33 4 56 )")
    assert [r for r in got if r.startswith("v")] == ["v1.tens", "v1.ones", "v2.ones", "v3.tens", "v3.ones", "v4.ones",
                                                     "v5.tens", "v5.ones"]  # fmt: skip


def test_patching_names_the_lengths_when_the_layouts_differ(causal):
    # patching needs the same roles at the same positions: a list of another length is another layout
    from model_core.interp import PatchError, patch_sweep

    with pytest.raises(PatchError, match=r"give as many values \(3 and 2 here\), with the same numbers of digits"):
        patch_sweep(causal, "Min ( 5 2 8 )", "Last ( 4 7 )")
