"""Nested expressions (TaskConfig.max_depth == 2): config, answers, ids, splits, balance, tokens and parsing, each
held against a plain-Python reference; and the flat path as it was."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from model_core.task import (
    ABSENT,
    IGNORE,
    Expression,
    ExpressionSet,
    TaskConfig,
    TaskError,
    check_compatible,
    encode,
    enumerate_all,
    make_splits,
    nested,
)
from model_core.task.parser import MAX_CHARS, ParseError, parse_expression
from model_core.task.splits import TEST, TRAIN, VAL
from model_core.task.vocab import DEFAULT_VOCAB, vocab_for

NESTED = TaskConfig(min_args=2, n_args=3, max_depth=2)  # First..Min on 0-9: answers 0-9, so bidirectional too
ALL_OPS = ("First", "Second", "Last", "Max", "Min", "Sum")
WITH_SUM = TaskConfig(operations=ALL_OPS, min_args=2, n_args=3, max_depth=2)  # the brief's example space
WIDE = TaskConfig(operations=("Max", "Min", "Sum", "Last"), max_value=99, min_args=1, n_args=2, max_depth=2)
TINY = TaskConfig(operations=("First", "Max"), max_value=1, min_args=1, n_args=2, max_depth=2)  # 420: listable
FLAT = TaskConfig()

REFERENCE = {"First": lambda v: v[0], "Second": lambda v: v[1], "Last": lambda v: v[-1], "Max": max, "Min": min,
             "Sum": sum}  # fmt: skip


def evaluate(e: Expression) -> int:
    """A plain recursive evaluator, independent of the registry's NumPy fns."""
    return REFERENCE[e.op]([evaluate(v) if isinstance(v, Expression) else v for v in e.values])


def random_expression(rnd: random.Random, task: TaskConfig, depth: int | None = None) -> Expression:
    """A random expression in plain Python: each argument an inner expression with probability 1/2."""
    def values(allow_inner):
        n = rnd.randint(task.min_args, task.n_args)
        return tuple(Expression(rnd.choice(task.operations), values(False)) if allow_inner and rnd.random() < 0.5
                     else rnd.randint(task.min_value, task.max_value) for _ in range(n))  # fmt: skip
    return Expression(rnd.choice(task.operations), values(task.nested if depth is None else depth > 1))


def expressions(task: TaskConfig):
    """A hypothesis strategy of the task's expressions (nested ones for a nested task)."""
    number = st.integers(task.min_value, task.max_value)

    def listed(arg):
        return st.lists(arg, min_size=task.min_args, max_size=task.n_args).map(tuple)

    inner = st.builds(Expression, st.sampled_from(task.operations), listed(number))
    return st.builds(Expression, st.sampled_from(task.operations), listed(st.one_of(number, inner)))


def spelled(e: Expression) -> str:
    """The model's spelling, from text: `Max ( First ( 1 2 , 8 ) , 7 )` (digits apart, commas between values)."""
    return f"{e.op} ( " + " , ".join(spelled(v) if isinstance(v, Expression) else " ".join(str(v))
                                     for v in e.values) + " )"  # fmt: skip


# ----------------------------------------------------------------------------- config


def test_a_nested_config_counts_its_space_answers_and_lengths():
    R = 10 + 6 * (10**2 + 10**3)  # a slot: a number, or any flat expression
    assert (WITH_SUM.slot_radix, R) == (6610, 6610)
    assert WITH_SUM.space_size == 6 * (R**2 + R**3) and 1.7e12 < WITH_SUM.space_size < 1.8e12
    assert WITH_SUM.largest_answer == 81 and WITH_SUM.max_answer_digits == 2  # Sum of 3 Sums of 3 nines
    # Max ( Second ( 9 , 9 , 9 ) , Second ( 9 , 9 , 9 ) , Second ( 9 , 9 , 9 ) ) =
    assert WITH_SUM.input_len == len(("Max ( " + " , ".join(["Second ( 9 , 9 , 9 )"] * 3) + " ) =").split()) == 30
    assert WITH_SUM.seq_len == 30 + 2 + 1
    assert NESTED.largest_answer == 9 and WIDE.largest_answer == 396 and TINY.space_size == 420
    assert TaskConfig(operations=("Sum",), n_args=3, max_depth=2).largest_answer == 81


def test_the_flat_config_and_its_dict_are_as_they_were():
    assert json.dumps(FLAT.to_dict()) == ('{"operations": ["First", "Second", "Last", "Max", "Min"], "min_value": 0, '
                                          '"max_value": 9, "n_args": 3}')  # fmt: skip
    assert "max_depth" not in TaskConfig(min_args=2, n_args=10).to_dict()
    assert (FLAT.space_size, FLAT.input_len, FLAT.seq_len, FLAT.slot_radix) == (5_000, 9, 11, 10)
    assert TaskConfig(max_depth=1) == FLAT and FLAT.flat_task is FLAT
    data = json.loads(json.dumps(WITH_SUM.to_dict()))
    assert data["max_depth"] == 2 and TaskConfig.from_dict(data) == WITH_SUM


@pytest.mark.parametrize(
    "kwargs, phrase",
    [
        (dict(max_depth=3), "max_depth must be 1 (numbers only) or 2"),
        (dict(max_depth=0), "max_depth must be 1"),
        (dict(max_depth=1.5), "max_depth must be a whole number"),
        (dict(max_depth=True), "max_depth must be a whole number"),
        (dict(max_value=99, max_depth=2), "too many to index; lower n_args, max_value"),
        (dict(min_args=2, n_args=10, max_depth=2), "max_depth"),
        (dict(operations=("Sum",), max_value=99, n_args=4, max_depth=2), "Answers may reach 1,584"),
    ],
)
def test_a_nested_config_refuses_what_it_cannot_hold(kwargs, phrase):
    with pytest.raises(TaskError) as err:
        TaskConfig(**kwargs)
    assert phrase in str(err.value)


def test_check_compatible_reads_the_nested_answer_width():
    check_compatible(NESTED, causal=False)
    with pytest.raises(TaskError, match=r"answers up to 81 \(Sum\) need a causal model"):
        check_compatible(WITH_SUM, causal=False)


# ----------------------------------------------------------------------------- expressions and answers


def test_expressions_answer_and_spell_recursively():
    e = Expression("Max", (Expression("First", (2, 8)), Expression("Second", (5, 1)), 7))
    assert (e.text, e.answer, e.depth) == ("Max ( First ( 2 8 ) Second ( 5 1 ) 7 )", 7, 2)
    s = Expression("Sum", (Expression("Sum", (9, 8)), 7))
    assert (s.answer, s.text, Expression("Max", (5, 3)).depth) == (24, "Sum ( Sum ( 9 8 ) 7 )", 1)


@pytest.mark.parametrize("task", [NESTED, WITH_SUM, WIDE])
def test_answers_match_a_recursive_python_evaluator(task):
    rnd = random.Random(0)
    items = [random_expression(rnd, task) for _ in range(3_000)]
    exprs = ExpressionSet.from_expressions(task, items)
    assert exprs.answers.tolist() == [evaluate(e) for e in items]
    assert [e.answer for e in items[:300]] == [evaluate(e) for e in items[:300]]
    assert exprs.depths.tolist() == [e.depth for e in items]
    # values hold each argument's value: the number, or the inner expression's answer
    for i in range(50):
        want = [evaluate(v) if isinstance(v, Expression) else v for v in items[i].values]
        assert exprs.values[i].tolist() == want + [ABSENT] * (task.n_args - len(want))
        assert exprs.expression(i) == items[i]


def test_arrays_of_a_nested_set():
    exprs = ExpressionSet.from_expressions(NESTED, [parse_expression("Max ( First ( 2 8 ) 7 )", NESTED),
                                                    parse_expression("Min ( 4 5 6 )", NESTED)])  # fmt: skip
    assert exprs.inner_ops.tolist() == [[0, -1, -1], [-1, -1, -1]]
    assert exprs.inner_values[0].tolist() == [[2, 8, ABSENT], [ABSENT] * 3, [ABSENT] * 3]
    assert (exprs.inner_values[1] == ABSENT).all()
    assert exprs.values.tolist() == [[2, 7, ABSENT], [4, 5, 6]] and exprs.answers.tolist() == [7, 4]
    assert exprs.depths.tolist() == [2, 1] and exprs.lengths.tolist() == [2, 3]
    sub = exprs.subset(np.array([1, 0]))
    assert [sub.expression(0).text, sub.expression(1).text] == ["Min ( 4 5 6 )", "Max ( First ( 2 8 ) 7 )"]
    assert sub.sample(1, 0).inner_ops.shape == (1, 3)
    flat = ExpressionSet.from_expressions(FLAT, [Expression("Max", (5, 3, 9))])
    assert flat.inner_ops is None and flat.inner_values is None and flat.depths.tolist() == [1]
    with pytest.raises(TaskError, match="numbers only"):
        ExpressionSet.from_expressions(FLAT, [Expression("Max", (Expression("First", (1, 2, 3)), 3, 9))])
    for bad, phrase in [(Expression("Max", (Expression("Max", (Expression("First", (1, 2)), 2)), 3)), "at most 2"),
                        (Expression("Max", (Expression("First", (1, 2, 3, 4)), 3)), "First has 4 values"),
                        (Expression("Max", (Expression("Sum", (1, 2)), 3)), "does not take Sum"),
                        (Expression("Max", (Expression("First", (1, 12)), 3)), "12 is outside")]:  # fmt: skip
        with pytest.raises(TaskError, match=phrase):
            ExpressionSet.from_expressions(NESTED, [bad])


# ----------------------------------------------------------------------------- ids


@settings(max_examples=200, deadline=None)
@given(st.lists(expressions(WITH_SUM), min_size=1, max_size=20))
def test_ids_round_trip_and_distinct_expressions_have_distinct_ids(items):
    exprs = ExpressionSet.from_expressions(WITH_SUM, items)
    ids = exprs.ids()
    assert ((ids >= 0) & (ids < WITH_SUM.space_size)).all()
    back = ExpressionSet.from_ids(WITH_SUM, ids)
    assert [back.expression(i) for i in range(len(back))] == items
    assert np.array_equal(back.inner_values, exprs.inner_values) and np.array_equal(back.values, exprs.values)
    assert len(set(ids.tolist())) == len(set(items))


def test_random_ids_round_trip_over_the_whole_space():
    for task in (WITH_SUM, WIDE, NESTED):
        ids = np.random.default_rng(0).integers(0, task.space_size, 20_000)
        assert np.array_equal(ExpressionSet.from_ids(task, ids).ids(), ids)


def test_a_tiny_nested_space_is_every_expression_once():
    every = enumerate_all(TINY)
    items = [every.expression(i) for i in range(len(every))]
    assert len(set(items)) == len(items) == 420 and (every.ids() == np.arange(420)).all()
    assert max(e.depth for e in items) == 2 and sum(e.depth == 1 for e in items) == 2 * (2 + 4)
    assert every.answers.tolist() == [evaluate(e) for e in items]


# ----------------------------------------------------------------------------- splits and balance


@pytest.fixture(scope="module")
def splits():
    return make_splits(WITH_SUM, seed=0, n_eval=1_000)


def test_splits_are_disjoint_and_batches_come_from_train(splits):
    assert splits.hashed and splits.train is None
    val, test = splits.val.ids(), splits.test.ids()
    assert len(val) == len(np.unique(val)) == 4 * 1_000 == len(test) == len(np.unique(test))  # per (length, depth)
    assert not np.isin(val, test).any()
    assert (splits.split_of_ids(val) == VAL).all() and (splits.split_of_ids(test) == TEST).all()
    rng = np.random.default_rng(1)
    for hard in (0.0, 0.5):
        train = np.concatenate([splits.sample_train(1_000, rng, hard_fraction=hard).ids() for _ in range(10)])
        assert (splits.split_of_ids(train) == TRAIN).all()
        assert not np.isin(train, val).any() and not np.isin(train, test).any()
    # the held-out sets: every operation and both depths; the few depth-1 lists of two values all taken
    assert set(splits.test.depths.tolist()) == {1, 2} and (np.bincount(splits.test.ops) > 0).all()
    pairs = np.concatenate([nested.numbers_only_ids(WITH_SUM, k, 2) for k in range(6)])
    in_test = ((splits.test.depths == 1) & (splits.test.lengths == 2)).sum()
    assert in_test == (splits.split_of_ids(pairs) == TEST).sum()


def test_a_tiny_nested_task_lists_its_held_out_sets():
    s = make_splits(TINY, seed=2)
    split = s.split_of_ids(np.arange(TINY.space_size))
    assert sorted(s.val.ids().tolist()) == np.flatnonzero(split == VAL).tolist()
    assert sorted(s.test.ids().tolist()) == np.flatnonzero(split == TEST).tolist()
    batch = s.sample_train(500, np.random.default_rng(0), hard_fraction=0.3)
    assert (s.split_of_ids(batch.ids()) == TRAIN).all()


def test_training_batches_balance_ops_and_depths_and_vary_the_inner_lists(splits):
    batch = splits.sample_train(24_000, np.random.default_rng(3))
    assert np.bincount(batch.ops).tolist() == [4_000] * 6 and np.bincount(batch.depths)[1:].tolist() == [12_000] * 2
    assert np.bincount(batch.lengths)[2:].tolist() == [12_000] * 2
    deep = batch.subset(batch.depths == 2)
    inner = deep.inner_ops >= 0  # [m, n_args]
    lengths = nested.inner_lengths(deep)[inner]
    assert 0.45 < (lengths == 2).mean() < 0.55  # inner lists short and long alike
    # one, two or three inner arguments: of 3 slots, each inner with p 1/2 given one at least, all 3 is 1/7
    per_row = np.bincount(inner.sum(axis=1))[1:] / len(deep)
    assert len(per_row) == 3 and per_row[0] > 0.45 and per_row[1] > 0.3 and 0.05 < per_row[2] < 0.1
    np.testing.assert_allclose(np.bincount(deep.inner_ops[inner]) / inner.sum(), [1 / 6] * 6, atol=0.02)
    assert 0.4 < ((deep.inner_ops >= 0).sum() / (deep.lengths.sum())) < 0.8  # numbers stay common too
    again = splits.sample_train(64, np.random.default_rng(9))
    assert np.array_equal(again.ids(), splits.sample_train(64, np.random.default_rng(9), hard_fraction=0.0).ids())


def test_hard_cases_reach_into_the_inner_lists():
    s = make_splits(WIDE, seed=0, n_eval=200)
    batch = s.sample_train(8_000, np.random.default_rng(4), hard_fraction=0.5)
    assert (s.split_of_ids(batch.ids()) == TRAIN).all()
    hard, rest = batch.subset(np.arange(4_000)), batch.subset(np.arange(4_000, 8_000))

    def shares(part):
        inner = part.inner_values[part.inner_ops >= 0]  # [m, n_args] inner lists
        numbers = part.values[(part.inner_ops < 0) & (part.values != ABSENT)]
        pairs = inner[(inner != ABSENT).sum(axis=1) == 2]
        number = (part.inner_ops < 0) & (part.values != ABSENT)
        both = np.flatnonzero(number.any(axis=1) & (part.inner_ops >= 0).any(axis=1))  # a number beside an inner
        # a number within one of an inner expression's answer: Max ( Last ( 40 7 ) 8 ) style near ties
        near = [any(abs(part.values[i, a] - part.values[i, b]) <= 1 for a in np.flatnonzero(number[i])
                    for b in np.flatnonzero(part.inner_ops[i] >= 0)) for i in both]  # fmt: skip
        return ((inner[inner != ABSENT] < 10).mean(), (numbers < 10).mean(),
                (np.abs(pairs[:, 0] - pairs[:, 1]) <= 1).mean(), np.mean(near))  # fmt: skip

    (inner_short, short, ties, near), (inner_short0, short0, ties0, near0) = shares(hard), shares(rest)
    assert inner_short > 0.4 and short > 0.4 and inner_short0 < 0.15 and short0 < 0.15  # every digit count
    # near ties between the levels: a third of the rows that have a number beside an inner expression
    assert ties > ties0 + 0.15 and near > near0 + 0.25


def test_hard_cases_are_nested_with_more_and_summing_inner_expressions(splits):
    """Hard rows are all of depth 2, a third of them an outer Sum and the rest spread over operations and lengths
    (a share of a balanced batch), each argument an inner expression with p 3/4 (given one at least) and half
    the inner expressions a Sum; the uniform rows keep p 1/2 and 1/6, and balance over depths."""
    batch = splits.sample_train(12_000, np.random.default_rng(5), hard_fraction=0.5)
    hard, rest = batch.subset(np.arange(6_000)), batch.subset(np.arange(6_000, 12_000))
    sum_op = WITH_SUM.operations.index("Sum")
    assert (hard.depths == 2).all() and np.allclose(np.bincount(hard.lengths)[2:], 3_000, rtol=0.04)
    ops = np.bincount(hard.ops)  # a third Sum, then each of the six ops as likely: 2,000 + 4,000 / 6 for Sum
    assert np.allclose(np.delete(ops, sum_op), 4_000 / 6, rtol=0.08) and abs(ops[sum_op] - 2_000 - 4_000 / 6) < 80
    assert np.allclose(np.bincount(rest.depths)[1:], 3_000, rtol=0.04)
    assert np.allclose(np.bincount(rest.ops), 1_000, rtol=0.08)
    for part, p_inner, p_sum in ((hard, 0.75, 0.5 + 0.5 / 6), (rest.subset(rest.depths == 2), 0.5, 1 / 6)):
        inner = part.inner_ops >= 0
        three = part.lengths == 3
        # of 3 slots, each inner with p given one at least: all three inner is p^3 / (1 - (1 - p)^3)
        all_three = (inner[three].sum(axis=1) == 3).mean()
        assert abs(all_three - p_inner**3 / (1 - (1 - p_inner) ** 3)) < 0.03
        assert abs((part.inner_ops[inner] == sum_op).mean() - p_sum) < 0.03
    # so outer sums of 30 or more, rare in uniform rows, are common among the hard ones
    big = [(p.answers[(p.ops == sum_op) & (p.depths == 2)] >= 30).mean() for p in (hard, rest)]
    assert big[0] > 0.1 > 0.05 > big[1]


def test_listed_training_subsets_are_grouped_and_sampled_by_depth(splits):
    from model_core.training.trainer import restrict_train

    train = restrict_train(splits, 240, seed=0)
    assert len(train) == 240 and (splits.split_of_ids(train.ids()) == TRAIN).all()
    assert np.bincount(train.balance_cells).tolist() == [10] * 24  # (op, length, depth) cells
    batch = splits.with_train(train).sample_train(480, np.random.default_rng(0))
    assert np.isin(batch.ids(), train.ids()).all() and np.bincount(batch.depths)[1:].tolist() == [240, 240]


# ----------------------------------------------------------------------------- tokens


@pytest.mark.parametrize("task, causal", [(NESTED, True), (NESTED, False), (WITH_SUM, True), (WIDE, True)])
def test_tokens_spell_the_nested_expression(task, causal):
    rnd = random.Random(1)
    items = [random_expression(rnd, task) for _ in range(400)]
    vocab = vocab_for(task.operations)
    batch = encode(ExpressionSet.from_expressions(task, items), vocab, causal)
    assert batch.tokens.shape[1] <= (task.seq_len - 1 if causal else task.input_len)
    if not causal:
        assert batch.tokens.shape[1] == task.input_len
    for i, e in enumerate(items):
        words = spelled(e).split() + ["="]
        answer = list(str(evaluate(e)))
        got = vocab.decode(batch.tokens[i].tolist())
        if causal:
            words += answer  # read back; <eos> is only a target
        assert got[: len(words)] == words and set(got[len(words):]) <= {"<pad>"}
        eq = words.index("=")
        assert batch.answer_pos[i] == eq
        targets = batch.targets[i]
        want = vocab.encode(answer + ["<eos>"]) if causal else vocab.encode(answer)
        assert targets[eq : eq + len(want)].tolist() == want
        assert (np.delete(targets, np.arange(eq, eq + len(want))) == IGNORE).all()


def test_the_flat_encoding_is_the_hand_derived_tokens():
    # DEFAULT_VOCAB ids: <pad> 0, <eos> 1, ( 2, ) 3, , 4, = 5, First 6 ... Max 9, Min 10, digits 11-20
    flat = ExpressionSet(FLAT, np.array([3, 0]), np.array([[5, 3, 9], [0, 7, 2]]))
    batch = encode(flat, DEFAULT_VOCAB, causal=True)
    assert batch.tokens.tolist() == [[9, 2, 16, 4, 14, 4, 20, 3, 5, 20], [6, 2, 11, 4, 18, 4, 13, 3, 5, 11]]
    assert batch.targets.tolist() == [[-1] * 8 + [20, 1], [-1] * 8 + [11, 1]]
    lists = TaskConfig(max_value=99, min_args=2, n_args=3)  # Last ( 1 2 , 5 ) = 5 and Max ( 4 0 , 7 , 9 9 ) = 9 9
    exprs = ExpressionSet.from_lists(lists, np.array([2, 3]), [(12, 5), (40, 7, 99)])
    batch = encode(exprs, DEFAULT_VOCAB, causal=True)
    assert batch.tokens.tolist() == [[8, 2, 12, 13, 4, 16, 3, 5, 16, 0, 0, 0, 0],
                                     [9, 2, 15, 11, 4, 18, 4, 20, 20, 3, 5, 20, 20]]  # fmt: skip
    assert batch.targets.tolist() == [[-1] * 7 + [16, 1] + [-1] * 4, [-1] * 10 + [20, 20, 1]]
    assert exprs.inner_ops is None and batch.answer_pos.tolist() == [7, 10]


# ----------------------------------------------------------------------------- parser

GOOD = [
    ("Max ( First ( 2 8 ) Second ( 5 1 ) 7 )", "Max ( First ( 2 8 ) Second ( 5 1 ) 7 )"),
    ("max(first(2, 8), second(5,1), 7) =", "Max ( First ( 2 8 ) Second ( 5 1 ) 7 )"),
    ("MIN ( 3 LAST(4 5 6) )", "Min ( 3 Last ( 4 5 6 ) )"),
    ("Max(First(1,2)First(3,4))", "Max ( First ( 1 2 ) First ( 3 4 ) )"),
    ("  Second (1, Min ( 0 , 9 ),2 ) =  ", "Second ( 1 Min ( 0 9 ) 2 )"),
    ("Max ( 5 3 9 )", "Max ( 5 3 9 )"),
    ("last\t(\tmax(0 0)\t)", None),  # one value: Last takes 2 to 3 here
]


@pytest.mark.parametrize("text, want", GOOD)
def test_parses_nested_inputs(text, want):
    if want is None:
        with pytest.raises(ParseError, match="Last takes 2 to 3 values here; got 1"):
            parse_expression(text, NESTED)
        return
    assert parse_expression(text, NESTED).text == want


@pytest.mark.parametrize(
    "text, task, phrase",
    [
        ("Max ( First ( 2 8 , 7", NESTED, "The '(' after First is never closed: add ')'"),
        ("max ( first ( 2 8 , 7", NESTED, "The '(' after First is never closed"),
        ("Max ( First ( 2 8 ) , 7", NESTED, "Missing ')' at the end: the '(' after Max is never closed"),
        ("Max ( 5 3 ) 8 )", NESTED, "')' after 8 has no '(' to close"),
        ("Max ( 5 3 9 ) )", NESTED, "')' after ')' has no '(' to close"),
        ("Max ( First ( Min ( 1 2 ) 3 ) 4 )", NESTED, "This model takes expressions nested at most 2 deep"),
        ("Max ( First ( 1 2 3 ) 4 5 )", FLAT, "This model takes numbers only, not expressions inside expressions"),
        ("Max ( First ( 1 2 3 ) 4 5 )", None, "numbers only"),
        ("Max ( (5 3 9) )", FLAT, "Only one '('"),
        ("Max ( First ( 1 2 3 4 ) 5 )", NESTED, "First takes 2 to 3 values here; got 4."),
        ("Max ( Second ( 1 ) 5 )", NESTED, "Second takes 2 to 3 values here; got 1."),
        ("Max ( First ( 1 2 ) )", NESTED, "Max takes 2 to 3 values here; got 1."),
        ("Max ( Sum ( 1 2 ) 5 )", NESTED, "This model does not know Sum. It knows: First"),
        ("Max ( Frist ( 1 2 ) 5 )", NESTED, "Unknown operation 'Frist'. Did you mean 'First'?"),
        ("Max ( ( 1 2 ) 5 )", NESTED, "A '(' must come right after an operation name"),
        ("Max ( 5 ( 1 2 ) )", NESTED, "A '(' must come right after an operation name"),
        ("Max ( First ( 1 12 ) 5 )", NESTED, "12 is outside this model's range 0-9"),
        ("Max ( First ( 1 2 ) , , 5 )", NESTED, "Empty value after ')': two commas"),
        ("Max ( First ( , 1 2 ) 5 )", NESTED, "a ',' right after '('"),
        ("Max ( First ( 1 2 , ) 5 )", NESTED, "a ',' right before ')'"),
        ("Max ( First ( ) 5 )", NESTED, "Nothing between the parentheses: put 2 to 3 values, like First ( 5 3 9 )"),
        ("Max ( 5 First 2 )", NESTED, "Missing '(' after First"),
        ("Max ( First ( 1 x ) 4 )", NESTED, "'x' is not a whole number"),
        ("Max ( First ( 1 2 ) ) 4", NESTED, "Nothing may follow ')'"),
        ("Max ( First ( 1 2 ) ) = 4", NESTED, "Nothing may follow ')'"),
        ("Max ( " + "First ( 1 2 ) " * 20 + ")", NESTED, f"keep it under {MAX_CHARS}"),
        ("First ( 1 2 ", NESTED, "Missing ')'"),
        ("First 1 2 )", NESTED, "Missing '('"),
    ],
)
def test_rejects_bad_nested_inputs(text, task, phrase):
    with pytest.raises(ParseError) as err:
        parse_expression(text, task)
    assert phrase in str(err.value)


def _parses_or_parse_error(text, task):
    try:
        expr = parse_expression(text, task)
    except ParseError as e:
        assert str(e)
        return
    assert isinstance(expr, Expression) and expr.depth <= task.max_depth
    ExpressionSet.from_expressions(task, [expr])  # what the parser accepts, the task takes


@settings(max_examples=300, deadline=None)
@given(st.text(), st.sampled_from([NESTED, WIDE]))
def test_any_text_parses_or_raises_parse_error(text, task):
    _parses_or_parse_error(text, task)


PIECES = ["Max", "max", "MIN", "First", "second", "Last", "Sum", "Mx", "(", ")", "((", "))", ",", ",,", "=", " ",
          "\t", "5", "9", "0", "42", "999", "-3", "5.5", "x", "٣", "\x00", "first(", "max (", "9" * 300]  # fmt: skip


@settings(max_examples=500, deadline=None)
@given(st.lists(st.sampled_from(PIECES), max_size=16).map("".join), st.sampled_from([NESTED, WIDE, TINY, FLAT]))
def test_near_misses_parse_or_raise_parse_error(text, task):
    _parses_or_parse_error(text, task)


@settings(max_examples=200, deadline=None)
@given(expressions(NESTED), st.sampled_from([" ", ", ", ","]), st.booleans())
def test_the_text_of_any_nested_expression_parses_back(expr, sep, lower):
    assert parse_expression(expr.text, NESTED) == expr

    def written(e):
        name = e.op.lower() if lower else e.op.upper()
        return f"{name}(" + sep.join(written(v) if isinstance(v, Expression) else str(v) for v in e.values) + ")"

    assert parse_expression(written(expr) + " =", NESTED) == expr


# ----------------------------------------------------------------------------- accuracy, CLI and training


def test_accuracy_breakdown_reports_each_depth(capsys):
    from model_core.cli import _print_accuracy
    from model_core.task_model import accuracy_breakdown

    items = [Expression("Max", (1, 2)) if i % 2 == 0 else Expression("Max", (Expression("First", (i % 10, 2)), 3))
             for i in range(40)]  # fmt: skip
    exprs = ExpressionSet.from_expressions(NESTED, items)
    right = np.array([i % 2 == 0 or i % 4 == 1 for i in range(40)])  # depth 1 all right, depth 2 half
    ev = accuracy_breakdown(exprs, right)
    assert ev["per_depth"] == {1: 1.0, 2: 0.5} and "per_depth" not in accuracy_breakdown(
        ExpressionSet(FLAT, np.zeros(2, dtype=np.int64), np.zeros((2, 3), dtype=np.int64)), np.ones(2, bool))
    _print_accuracy("held-out", ev)
    assert "depth 1   100.00%" in capsys.readouterr().out


def test_a_tiny_causal_model_trains_on_nested_expressions():
    from model_core import TaskModel
    from model_core.config import TrainConfig
    from model_core.training.trainer import StepMetrics, Trainer

    model = TaskModel.new(WITH_SUM, causal=True, norm="pre", positional="learned", activation="gelu", n_layers=1,
                          d_model=32, n_heads=2, d_ff=64)  # fmt: skip
    splits = make_splits(WITH_SUM, seed=0, n_eval=100)
    trainer = Trainer(model, TrainConfig(steps=60, batch_size=64, eval_every=60, warmup_steps=5), splits=splits,
                      probe="Sum ( Sum ( 9 8 ) 7 )")  # fmt: skip
    losses = [e.loss for e in trainer.run() if isinstance(e, StepMetrics)]
    assert len(losses) == 60 and np.isfinite(losses).all()
    assert np.mean(losses[-10:]) < 0.8 * np.mean(losses[:10])
    assert set(model.metrics["heldout_per_depth"]) == {"1", "2"}
    assert model.answer("max(first(2, 8), 7)").expression.depth == 2
