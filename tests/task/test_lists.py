"""Lists of several lengths (TaskConfig.min_args < n_args): ids, answers, token layout, splits and parsing,
each against a plain-Python reference."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from model_core.task import (
    ABSENT,
    Expression,
    ExpressionSet,
    TaskConfig,
    TaskError,
    encode,
    enumerate_all,
    make_splits,
)
from model_core.task.parser import ParseError, parse_expression
from model_core.task.splits import TEST, TRAIN, VAL, hard_values
from model_core.task.vocab import DEFAULT_VOCAB

SMALL = TaskConfig(min_args=1, n_args=3, max_value=4, operations=("First", "Last", "Max", "Min"))
LISTS = TaskConfig(min_args=2, n_args=10)
REFERENCE = {"First": lambda v: v[0], "Second": lambda v: v[1], "Last": lambda v: v[-1], "Max": max, "Min": min}


def test_every_id_is_one_expression_of_one_length():
    every = enumerate_all(SMALL)
    assert len(every) == SMALL.space_size == 4 * (5 + 25 + 125)
    assert (every.ids() == np.arange(SMALL.space_size)).all()
    lists = {(every.expression(i).op, every.expression(i).values) for i in range(len(every))}
    assert len(lists) == len(every)  # distinct
    assert {len(v) for _, v in lists} == {1, 2, 3}
    # a shorter list's missing slots are ABSENT, at the end only
    assert ((every.values == ABSENT) == (np.arange(3) >= every.lengths[:, None])).all()


def test_ids_round_trip_on_a_large_space():
    ids = np.random.default_rng(0).integers(0, LISTS.space_size, 50_000)
    exprs = ExpressionSet.from_ids(LISTS, ids)
    assert (exprs.ids() == ids).all()
    assert LISTS.space_size == 5 * sum(10**n for n in range(2, 11))


def test_answers_match_a_python_reference_at_every_length():
    every = enumerate_all(SMALL)
    want = [REFERENCE[e.op](list(e.values)) for e in map(every.expression, range(len(every)))]
    assert every.answers.tolist() == want
    # Last is the last value of each list, not the last slot
    exprs = ExpressionSet.from_lists(LISTS, [2, 2, 1], [(4, 7), (1, 2, 3, 4, 5, 6, 7, 8, 9, 0), (3, 9, 1)])
    assert exprs.answers.tolist() == [7, 0, 9]


def test_tokens_spell_the_expression_for_every_length():
    exprs = ExpressionSet.from_ids(LISTS, LISTS.cell_offsets + 12_345 % LISTS.cell_sizes)  # one of every cell
    for causal in (True, False):
        batch = encode(exprs, DEFAULT_VOCAB, causal)
        for i in range(len(exprs)):
            e = exprs.expression(i)
            words = [e.op, "(", *" , ".join(map(str, e.values)).split(), ")", "="]
            if causal:
                words += [str(e.answer)]  # the answer is read back; <eos> is never an input
            got = DEFAULT_VOCAB.decode(batch.tokens[i].tolist())
            assert got[: len(words)] == words and set(got[len(words):]) <= {"<pad>"}
            assert batch.answer_pos[i] == words.index("=")
            assert DEFAULT_VOCAB.decode([batch.targets[i, batch.answer_pos[i]]]) == [str(e.answer)]
    # a bidirectional model reads every list in the task's longest width, so no batch changes its input
    assert encode(exprs.subset(slice(0, 1)), DEFAULT_VOCAB, False).tokens.shape[1] == LISTS.input_len


def test_splits_are_disjoint_and_spread_over_every_length():
    splits = make_splits(LISTS, seed=3)
    val, test = set(splits.val.ids().tolist()), set(splits.test.ids().tolist())
    assert not val & test
    assert (splits.split_of_ids(splits.test.ids()) == TEST).all()
    assert (splits.split_of_ids(splits.val.ids()) == VAL).all()
    counts = np.bincount(splits.test.lengths, minlength=11)[2:]
    assert len(splits.test) >= 20_000 and (counts > 0).all()
    # the lists of two values are few (100 per operation): the held-out set takes every one the split holds
    pairs = np.concatenate([LISTS.cell_offsets[k * 9] + np.arange(100) for k in range(5)])  # each op's cell of 2
    pairs = ExpressionSet.from_ids(LISTS, pairs)
    assert counts[0] == (splits.split_of_ids(pairs.ids()) == TEST).sum()
    batch = splits.sample_train(9 * 200, np.random.default_rng(0), hard_fraction=0.5)
    assert (splits.split_of_ids(batch.ids()) == TRAIN).all()
    assert (np.bincount(batch.lengths, minlength=11)[2:] == 200).all()  # each length as common as any other


def test_enumerated_splits_balance_lengths_in_training():
    splits = make_splits(SMALL, seed=0)
    assert not splits.hashed
    parts = [set(p.ids().tolist()) for p in (splits.train, splits.val, splits.test)]
    assert sum(map(len, parts)) == SMALL.space_size and not (parts[0] & parts[1] or parts[0] & parts[2])
    batch = splits.sample_train(1200, np.random.default_rng(1))
    assert (np.bincount(batch.lengths)[1:] == 400).all()


def test_hard_values_stay_inside_each_list():
    lengths = np.random.default_rng(0).integers(2, 11, 5_000)
    v = hard_values(LISTS, 5_000, np.random.default_rng(1), lengths)
    assert ((v == ABSENT) == (np.arange(10) >= lengths[:, None])).all()
    assert ((v[v != ABSENT] >= 0) & (v[v != ABSENT] <= 9)).all()
    # ties of any size: lists of one repeated value come up at every length (uniform draws: 1 in 10**(n - 1))
    one_value = np.array([len(set(row[row != ABSENT].tolist())) == 1 for row in v])
    assert set(lengths[one_value].tolist()) == set(range(2, 11))


def test_the_config_names_its_lengths_and_refuses_bad_ones():
    assert "min_args" not in TaskConfig().to_dict()  # a fixed task's dict is as it always was
    assert TaskConfig.from_dict(LISTS.to_dict()) == LISTS
    assert TaskConfig(n_args=3, min_args=3) == TaskConfig()
    with pytest.raises(TaskError, match="min_args must be between 1 and n_args"):
        TaskConfig(min_args=4, n_args=3)
    with pytest.raises(TaskError, match="Second needs min_args >= 2"):
        TaskConfig(min_args=1, n_args=3)


@pytest.mark.parametrize(
    ("text", "phrase"),
    [
        ("Max ( 5 )", "Max takes 2 to 10 values here; got 1."),
        ("Max ( 1 2 3 4 5 6 7 8 9 0 1 )", "Max takes 2 to 10 values here; got 11."),
        ("Last ( )", "put 2 to 10 values"),
    ],
)
def test_parser_states_the_range_of_lengths(text, phrase):
    with pytest.raises(ParseError, match=phrase.replace("(", r"\(").replace(")", r"\)")):
        parse_expression(text, LISTS)


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(LISTS.operations), st.lists(st.integers(0, 9), min_size=2, max_size=10))
def test_any_list_of_an_allowed_length_parses_back(op, values):
    expr = parse_expression(f"{op.lower()}({', '.join(map(str, values))})", LISTS)
    assert expr == Expression(op, tuple(values))
    assert parse_expression(expr.text, LISTS) == expr
