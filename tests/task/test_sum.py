"""Sum: the first operation whose answer is not one of the values (multi-digit answers on 0-9), as one registry
entry; its answers against Python's sum, its answer width, vocabulary and layout."""

from __future__ import annotations

import numpy as np
import pytest

from model_core import TaskModel
from model_core.task import OPERATIONS, TaskConfig, TaskError, check_compatible, encode, enumerate_all
from model_core.task.vocab import DEFAULT_VOCAB, vocab_for


def test_sum_answers_every_list_as_python_does():
    task = TaskConfig(operations=("Sum", "Max"), min_args=1, n_args=4, max_value=9)
    every = enumerate_all(task)
    want = [sum(e.values) if e.op == "Sum" else max(e.values) for e in map(every.expression, range(len(every)))]
    assert every.answers.tolist() == want and max(want) == 36


def test_the_answer_width_follows_the_largest_sum():
    assert TaskConfig(operations=("Sum",), n_args=3).max_answer_digits == 2  # up to 27
    assert TaskConfig(operations=("Sum",), n_args=5, max_value=99).max_answer_digits == 3  # up to 495
    assert TaskConfig().max_answer_digits == 1 and TaskConfig(max_value=99).max_answer_digits == 2  # as before
    with pytest.raises(TaskError, match="Answers may reach 1,998"):
        TaskConfig(operations=("Sum",), n_args=2, max_value=999)
    with pytest.raises(TaskError, match=r"answers up to 27 \(Sum\) need a causal model"):
        check_compatible(TaskConfig(operations=("Max", "Sum")), causal=False)


def test_the_original_tasks_keep_their_vocabulary_and_sum_adds_its_name():
    assert len(OPERATIONS) == 6 and OPERATIONS["Sum"].min_args == 1
    assert len(DEFAULT_VOCAB) == 21 and "Sum" not in DEFAULT_VOCAB.tokens
    assert vocab_for(TaskConfig().operations) is DEFAULT_VOCAB
    with_sum = vocab_for(("Max", "Sum"))
    assert with_sum.tokens == DEFAULT_VOCAB.tokens[:11] + ("Sum",) + DEFAULT_VOCAB.tokens[11:]
    assert len(TaskModel.new(TaskConfig(operations=("Sum",)), causal=True).vocab) == 22


def test_a_sum_is_written_digit_by_digit_after_its_one_digit_values():
    task = TaskConfig(operations=("Sum",))
    model = TaskModel.new(task, causal=True)
    exprs = model.expressions([model.parse("sum(9, 8, 7)"), model.parse("Sum ( 0 1 2 )")])
    batch = encode(exprs, model.vocab, causal=True)
    words = [model.vocab.decode(row) for row in batch.tokens.tolist()]
    assert words[0] == ["Sum", "(", "9", ",", "8", ",", "7", ")", "=", "2", "4"]
    assert words[1] == ["Sum", "(", "0", ",", "1", ",", "2", ")", "=", "3", "<pad>"]
    targets = [model.vocab.decode(row[row >= 0]) for row in batch.targets]
    assert targets == [["2", "4", "<eos>"], ["3", "<eos>"]]
    assert np.array_equal(batch.answer_pos, [8, 8])


def test_head_roles_give_a_sum_no_answer_slot():
    from model_core.interp.input_space import head_roles

    model = TaskModel.new(TaskConfig(operations=("Max", "Sum"), n_args=2), causal=True, n_layers=1, d_model=16,
                          n_heads=2, d_ff=32)  # fmt: skip
    roles = head_roles(model)
    assert np.isnan(roles.to_answer_slot[:, 1]).all() and np.isfinite(roles.to_answer_slot[:, 0]).all()
    # the Sum's attention from `=` still splits between the operation token, the value slots and the rest
    assert np.isfinite(roles.to_other_slots).all() and (roles.to_op + roles.to_other_slots <= 1 + 1e-6).all()
