"""Tasks, splits and encoding, held against plain-Python references."""

import json

import numpy as np
import pytest

from model_core.task import (
    IGNORE,
    OPERATIONS,
    Expression,
    ExpressionSet,
    TaskConfig,
    TaskError,
    check_compatible,
    encode,
    enumerate_all,
    exact_match,
    make_splits,
)
from model_core.task.vocab import DEFAULT_VOCAB as V

REFERENCE = {  # plain Python, independent of the registry's NumPy fns
    "First": lambda v: v[0],
    "Second": lambda v: v[1],
    "Last": lambda v: v[-1],
    "Max": max,
    "Min": min,
}
BIG = TaskConfig(max_value=99)


@pytest.fixture(scope="module")
def small_splits():
    return make_splits(TaskConfig(), seed=0)


@pytest.fixture(scope="module")
def big_splits():
    return make_splits(BIG, seed=0)


def reference_sequence(op, values, causal):
    """The token strings of one example, built from text: `Max ( 1 2 , 3 ) = 1 2 <eos>`."""
    digits = [" ".join(str(v)) for v in values]
    answer = " ".join(str(REFERENCE[op](list(values))))
    return f"{op} ( {' , '.join(digits)} ) = {answer} <eos>".split()


# ----------------------------------------------------------------------------- config


def test_task_properties():
    t = TaskConfig()
    assert (t.n_values, t.space_size, t.max_answer_digits) == (10, 5_000, 1)
    assert (t.input_len, t.seq_len) == (9, 11)  # Max ( 5 , 3 , 9 ) =  then  9 <eos>
    assert (BIG.space_size, BIG.input_len, BIG.seq_len) == (5_000_000, 12, 15)
    assert list(OPERATIONS) == ["First", "Second", "Last", "Max", "Min", "Sum"]


def test_task_dict_round_trip():
    t = TaskConfig(operations=("Max", "Min"), min_value=2, max_value=50, n_args=4)
    data = json.loads(json.dumps(t.to_dict()))
    assert data["operations"] == ["Max", "Min"]
    assert TaskConfig.from_dict(data) == t
    with pytest.raises(TaskError, match="unknown task config keys"):
        TaskConfig.from_dict({**data, "colour": 1})


@pytest.mark.parametrize(
    "kwargs, phrase",
    [
        (dict(operations=("Max", "Mul")), "Unknown operation 'Mul'. Known: First, Second"),
        (dict(operations=()), "at least one operation"),
        (dict(operations="Max"), "list of names"),
        (dict(operations=("Max", "Max")), "repeated: Max"),
        (dict(min_value=5, max_value=3), "min_value (5) must not be above max_value (3)"),
        (dict(min_value=-1), "min_value must be 0 or more"),
        (dict(max_value=1000), "at most 999"),
        (dict(max_value=9.5), "whole number"),
        (dict(n_args=0), "between 1 and 10"),
        (dict(n_args=11), "between 1 and 10"),
        (dict(n_args=True), "whole number"),
        (dict(n_args=1), "Second needs n_args >= 2"),
        (dict(max_value=999, n_args=7), "too many to index"),
    ],
)
def test_task_validation(kwargs, phrase):
    with pytest.raises(TaskError) as err:
        TaskConfig(**kwargs)
    assert phrase in str(err.value)


def test_check_compatible():
    check_compatible(TaskConfig(), causal=False)
    check_compatible(BIG, causal=True)
    with pytest.raises(TaskError, match="bidirectional model answers with one token"):
        check_compatible(BIG, causal=False)


# ----------------------------------------------------------------------------- expressions


def test_expression():
    e = Expression("Max", (5, 3, 9))
    assert (e.answer, e.text) == (9, "Max ( 5 3 9 )")
    with pytest.raises(TaskError, match="Unknown operation"):
        Expression("Mul", (1, 2))


def test_enumerate_all_is_every_expression_once():
    t = TaskConfig()
    exprs = enumerate_all(t)
    assert len(exprs) == 5_000
    assert len(np.unique(exprs.ids())) == 5_000
    assert np.bincount(exprs.ops).tolist() == [1_000] * 5
    assert exprs.values.min() == 0 and exprs.values.max() == 9
    with pytest.raises(TaskError, match="too many to list"):
        enumerate_all(BIG)


def test_answers_match_plain_python_on_every_expression():
    exprs = enumerate_all(TaskConfig())
    ops = [exprs.task.operations[k] for k in exprs.ops.tolist()]
    expected = [REFERENCE[op](v) for op, v in zip(ops, exprs.values.tolist(), strict=True)]
    assert exprs.answers.tolist() == expected
    e = exprs.expression(1234)
    assert e.answer == expected[1234] and e.op == ops[1234]


def test_ids_round_trip_with_offset_range():
    t = TaskConfig(operations=("Min", "Last"), min_value=3, max_value=7, n_args=2)
    exprs = enumerate_all(t)
    assert exprs.ids().tolist() == list(range(t.space_size))
    again = ExpressionSet.from_ids(t, exprs.ids())
    assert np.array_equal(again.values, exprs.values) and np.array_equal(again.ops, exprs.ops)


# ----------------------------------------------------------------------------- splits


def test_small_splits_disjoint_cover_and_stratified(small_splits):
    s = small_splits
    parts = [s.train.ids(), s.val.ids(), s.test.ids()]
    everything = np.concatenate(parts)
    assert len(everything) == 5_000 and len(np.unique(everything)) == 5_000
    for part, per_op in zip([s.train, s.val, s.test], [700, 100, 200], strict=True):
        assert np.bincount(part.ops, minlength=5).tolist() == [per_op] * 5
    for which, part in enumerate(parts):
        assert (s.split_of_ids(part) == which).all()


def test_small_splits_depend_on_seed_only():
    a, b, c = (
        make_splits(TaskConfig(), seed=1),
        make_splits(TaskConfig(), seed=1),
        make_splits(TaskConfig(), seed=2),
    )
    assert np.array_equal(a.test.ids(), b.test.ids())
    assert not np.array_equal(np.sort(a.test.ids()), np.sort(c.test.ids()))


def test_large_splits_never_leak(big_splits):
    s = big_splits
    assert s.train is None
    val, test = s.val.ids(), s.test.ids()
    assert len(val) == len(np.unique(val)) == 5_000
    assert len(test) == len(np.unique(test)) == 5_000
    assert np.bincount(s.val.ops).tolist() == [1_000] * 5
    assert (s.split_of_ids(val) == 1).all() and (s.split_of_ids(test) == 2).all()

    rng = np.random.default_rng(123)
    train = np.concatenate([s.sample_train(1_000, rng).ids() for _ in range(20)])  # 20,000 draws
    assert (s.split_of_ids(train) == 0).all()
    assert not np.isin(train, val).any() and not np.isin(train, test).any()
    assert s.val.values.max() <= 99 and s.val.values.min() >= 0


def test_large_split_fractions_and_determinism(big_splits):
    ids = np.random.default_rng(0).integers(0, BIG.space_size, 200_000)
    share = np.bincount(big_splits.split_of_ids(ids), minlength=3) / len(ids)
    np.testing.assert_allclose(share, [0.7, 0.1, 0.2], atol=0.005)

    again, other = make_splits(BIG, seed=0), make_splits(BIG, seed=1)
    assert np.array_equal(again.split_of_ids(ids), big_splits.split_of_ids(ids))
    assert np.array_equal(again.test.ids(), big_splits.test.ids())
    assert (other.split_of_ids(ids) != big_splits.split_of_ids(ids)).mean() > 0.3


def test_split_arguments_are_checked():
    with pytest.raises(TaskError, match="leave something to train on"):
        make_splits(TaskConfig(), val_fraction=0.5, test_fraction=0.5)
    with pytest.raises(TaskError, match=r"test_fraction must be in \[0, 1\)"):
        make_splits(TaskConfig(), test_fraction=-0.1)
    with pytest.raises(TaskError, match="lower n_eval"):
        make_splits(TaskConfig(max_value=99, n_args=3), val_fraction=0.001, n_eval=50_000)


@pytest.mark.parametrize("which", ["small", "big"])
@pytest.mark.parametrize("n", [64, 7, 1])
def test_sample_train_is_balanced_and_from_train(which, n, small_splits, big_splits):
    s = small_splits if which == "small" else big_splits
    rng = np.random.default_rng(5)
    batch = s.sample_train(n, rng)
    counts = np.bincount(batch.ops, minlength=5)
    assert counts.sum() == n and counts.max() - counts.min() <= 1
    assert (s.split_of_ids(batch.ids()) == 0).all()
    if n == 64:
        assert (np.diff(batch.ops) < 0).any()  # shuffled, not grouped by op


@pytest.mark.parametrize("which", ["small", "big"])
def test_hard_sampling_draws_short_values_and_ties_from_train(which, small_splits, big_splits):
    s = small_splits if which == "small" else big_splits
    batch = s.sample_train(4_000, np.random.default_rng(3), hard_fraction=0.5)
    counts = np.bincount(batch.ops, minlength=5)
    assert counts.sum() == 4_000 and counts.min() > 700  # every operation, about equally
    assert (s.split_of_ids(batch.ids()) == 0).all()  # never a held-out expression
    hard, rest = batch.values[:2_000], batch.values[2_000:]
    ties = (hard[:, 0] == hard[:, 1]) | (hard[:, 1] == hard[:, 2]) | (hard[:, 0] == hard[:, 2])
    if which == "big":  # 0-99: one-digit values about half of the hard rows', a tenth of the uniform rows'
        assert 0.45 < (hard < 10).mean() < 0.6 and 0.08 < (rest < 10).mean() < 0.12
        assert 0.15 < ties.mean() < 0.35
    assert (batch.values >= s.task.min_value).all() and (batch.values <= s.task.max_value).all()
    # without it, the draws are what they were
    a = s.sample_train(64, np.random.default_rng(9))
    b = s.sample_train(64, np.random.default_rng(9), hard_fraction=0.0)
    assert np.array_equal(a.ids(), b.ids())


def test_hard_values_cover_each_digit_band():
    from model_core.task.splits import hard_values

    task = TaskConfig(min_value=5, max_value=120)
    v = hard_values(task, 30_000, np.random.default_rng(0))
    assert v.min() >= 5 and v.max() <= 120
    bands = np.digitize(v, [10, 100])  # one, two, three digits
    np.testing.assert_allclose(np.bincount(bands.ravel()) / v.size, [1 / 3] * 3, atol=0.03)


# ----------------------------------------------------------------------------- encoding


def _set(task, rows):
    ops = [task.operations.index(op) for op, _ in rows]
    return ExpressionSet(task, np.array(ops), np.array([v for _, v in rows]))


def test_encode_bidirectional_by_hand():
    batch = encode(_set(TaskConfig(), [("Max", (5, 3, 9)), ("First", (0, 7, 2))]), V, causal=False)
    assert batch.tokens.tolist() == [
        V.encode("Max ( 5 , 3 , 9 ) =".split()),
        V.encode("First ( 0 , 7 , 2 ) =".split()),
    ]
    assert batch.targets.tolist() == [[-1] * 8 + [V.id("9")], [-1] * 8 + [V.id("0")]]
    assert batch.answer_pos.tolist() == [8, 8]
    with pytest.raises(TaskError, match="values above 9 need a causal model"):
        encode(_set(BIG, [("Max", (5, 3, 9))]), V, causal=False)


def test_encode_causal_by_hand():
    batch = encode(_set(TaskConfig(), [("Min", (5, 3, 9))]), V, causal=True)
    assert batch.tokens.tolist() == [V.encode("Min ( 5 , 3 , 9 ) = 3".split())]
    assert batch.targets.tolist() == [[-1] * 8 + V.encode(["3", "<eos>"])]


def test_encode_causal_multi_digit_by_hand():
    batch = encode(_set(BIG, [("Max", (12, 34, 56)), ("First", (5, 0, 99))]), V, causal=True)
    pad, eos = V.pad_id, V.eos_id
    assert batch.tokens.tolist() == [
        V.encode("Max ( 1 2 , 3 4 , 5 6 ) = 5 6".split()),
        V.encode("First ( 5 , 0 , 9 9 ) = 5".split()) + [pad] * 3,
    ]
    assert batch.targets.tolist() == [
        [-1] * 11 + [V.id("5"), V.id("6"), eos],
        [-1] * 9 + [V.id("5"), eos] + [-1] * 3,
    ]
    assert batch.answer_pos.tolist() == [11, 9]


@pytest.mark.parametrize(
    "task", [TaskConfig(), BIG, TaskConfig(min_value=95, max_value=105, n_args=2)]
)
def test_encode_matches_text_reference(task):
    """Random batches against sequences built from strings, in both modes."""
    rng = np.random.default_rng(0)
    ops = rng.integers(0, len(task.operations), 200)
    exprs = ExpressionSet(
        task, ops, rng.integers(task.min_value, task.max_value + 1, (200, task.n_args))
    )
    for causal in [True, False] if task.max_value <= 9 else [True]:
        batch = encode(exprs, V, causal)
        assert batch.tokens.dtype == batch.targets.dtype == np.int64
        assert batch.tokens.shape[1] <= task.seq_len - 1
        for i in range(len(exprs)):
            e = exprs.expression(i)
            seq = V.encode(reference_sequence(e.op, e.values, causal))
            eq = seq.index(V.equals_id)
            inputs = seq[:-1] if causal else seq[: eq + 1]
            row, tgt = batch.tokens[i].tolist(), batch.targets[i].tolist()
            assert row == inputs + [V.pad_id] * (len(row) - len(inputs))
            assert batch.answer_pos[i] == eq
            expected = [IGNORE] * eq + (seq[eq + 1 :] if causal else seq[eq + 1 : eq + 2])
            assert tgt == expected + [IGNORE] * (len(tgt) - len(expected))


def test_exact_match():
    targets = np.array([[-1, -1, 7, 1], [-1, -1, 7, 1], [-1, 3, -1, -1]])
    pred = np.array([[0, 0, 7, 1], [9, 9, 7, 2], [5, 3, 5, 5]])
    assert exact_match(pred, targets).tolist() == [True, False, True]
    logits = np.eye(10)[pred]  # [n, T, vocab]
    assert exact_match(logits, targets).tolist() == [True, False, True]
