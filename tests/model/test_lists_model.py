"""Models on lists of several lengths: a short list reads the same in any batch, and greedy answers agree with the
teacher-forced exact match the accuracy figures use."""

from __future__ import annotations

import numpy as np

from model_core import TaskConfig, TaskModel, load_model
from model_core.task import ExpressionSet, make_splits

LISTS = TaskConfig(min_args=2, n_args=10)


def test_a_bidirectional_model_reads_a_short_list_the_same_alone_or_beside_a_long_one():
    model = TaskModel.new(LISTS, n_layers=1, n_heads=2, d_model=16, d_ff=32, seed=1)
    short = ExpressionSet.from_lists(LISTS, [3], [(4, 7)])
    both = ExpressionSet.from_lists(LISTS, [3, 2], [(4, 7), tuple(range(10))])
    alone, mixed = model.encode(short), model.encode(both)
    assert (alone.tokens[0] == mixed.tokens[0]).all() and alone.tokens.shape[1] == LISTS.input_len
    a = model.transformer.forward(alone.tokens)[0, alone.answer_pos[0]]
    b = model.transformer.forward(mixed.tokens)[0, mixed.answer_pos[0]]
    assert np.array_equal(a, b)
    # the greedy answer is the top logit at `=`, read from the same full-width input
    top = model.vocab.decode([int(np.argmax(a))])[0]
    assert model.answer("Max ( 4 7 )").answer_tokens == [top]


def test_the_shipped_lists_model_answers_greedily_exactly_where_teacher_forcing_says_right():
    model = load_model("lists-0-9")
    test = make_splits(model.task, seed=model.train_config.seed).test
    rows = np.random.default_rng(0).choice(len(test), 1500, replace=False)
    exprs = test.subset(np.sort(rows))
    right = model.exact_match(model.encode(exprs))
    greedy = model.predict_values(exprs) == exprs.answers
    assert np.array_equal(right, greedy)
    assert len(set(exprs.lengths.tolist())) == 9  # every length from 2 to 10 is in the sample


def test_the_shipped_lists_model_is_right_on_every_held_out_list_of_every_length():
    model = load_model("lists-0-9")
    ev = model.evaluate(make_splits(model.task, seed=model.train_config.seed).test)
    assert ev["n"] >= 20_000 and ev["accuracy"] == 1.0
    assert sorted(ev["per_length"]) == list(range(2, 11)) and set(ev["per_length"].values()) == {1.0}
    assert model.metrics["heldout_per_length"] == {str(n): 1.0 for n in range(2, 11)}
