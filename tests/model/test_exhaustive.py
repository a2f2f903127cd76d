"""benchmarks/exhaustive.py: its count and list of mistakes agree with independent references.

The references answer every expression another way: `model.answer(text)` on texts written here (parsed, then
greedy generation one expression at a time) and `model.evaluate` on `enumerate_all`. A shipped model that makes
no mistake cannot show that the mistakes found are the right ones, so a copy with one head's output zeroed
(which gets hundreds wrong) is compared mistake by mistake.
"""

import itertools
import sys
from pathlib import Path

import numpy as np
import pytest

from model_core import ExpressionSet, Transformer, enumerate_all, load_model

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import exhaustive  # noqa: E402


def zero_head(model, layer: int, head: int):
    """A copy of the model with one head's writes (its W_O) zeroed; the original is left as it was."""
    params = {k: v.copy() for k, v in model.transformer.params.items()}
    params[f"blocks.{layer}.attn.W_O"][head] = 0.0
    return model.with_transformer(Transformer(model.transformer.cfg, params))


def texts(task, limit=None):
    """Every expression's text, in the benchmark's order (value tuple slowest, operation fastest), written
    without the task module."""
    values = range(task.min_value, task.max_value + 1)
    out = (f"{op} ( {' '.join(map(str, v))} )"
           for v in itertools.product(values, repeat=task.n_args) for op in task.operations)  # fmt: skip
    return list(itertools.islice(out, limit))


def reference(model, limit=None):
    """(mistakes as [(text, value the model writes, true answer)], mistakes per operation), one answer at a time."""
    wrong, per_op = [], dict.fromkeys(model.task.operations, 0)
    for text in texts(model.task, limit):
        a = model.answer(text)
        if not a.correct:
            wrong.append((text, a.value, a.expression.answer))
            per_op[a.expression.op] += 1
    return wrong, per_op


@pytest.fixture(scope="module")
def small():
    return load_model("digits-0-9")


def listed(found):
    return [(m.text, m.value, m.true) for m in found]


def test_order_is_every_expression_once(small):
    ids = exhaustive.order_ids(small, 0, small.task.space_size)
    assert np.array_equal(np.sort(ids), np.arange(small.task.space_size))
    assert np.array_equal(ids[:10], exhaustive.order_ids(small, 0, 10))
    assert np.array_equal(ids[4990:], exhaustive.order_ids(small, 4990, 5000))


def test_shipped_small_model_agrees_with_answer_loop_and_evaluate(small):
    n, found, per_op = exhaustive.mistakes(small, batch=777)  # chunks that do not divide 5,000
    wrong, ref_per_op = reference(small)
    assert n == 5000
    assert listed(found) == wrong
    assert per_op == ref_per_op
    ev = small.evaluate(enumerate_all(small.task))
    assert sum(per_op.values()) == round((1 - ev["accuracy"]) * 5000)


def test_broken_model_lists_the_same_mistakes(small):
    # the head whose zeroing costs the most accuracy over all 5,000 (found on the model, not assumed)
    cfg, every = small.transformer.cfg, enumerate_all(small.task)
    heads = [(layer, h) for layer in range(cfg.n_layers) for h in range(cfg.n_heads)]
    broken = min((zero_head(small, *lh) for lh in heads), key=lambda m: m.evaluate(every)["accuracy"])
    n, found, per_op = exhaustive.mistakes(broken, batch=1000)
    wrong, ref_per_op = reference(broken)
    assert 50 < len(wrong) < 4000 and sum(v > 0 for v in ref_per_op.values()) >= 3  # mistakes, in most ops
    assert n == 5000
    assert listed(found) == wrong  # the same expressions, in the same order, with the same wrong answers
    assert all(m.greedy_wrong and m.value != m.true for m in found)
    assert per_op == ref_per_op
    ev = broken.evaluate(enumerate_all(broken.task))
    for op in broken.task.operations:
        assert per_op[op] == round((1 - ev["per_op"][op]) * 1000)
    # `keep` describes only the first ones; the counts still cover all
    n2, first, per_op2 = exhaustive.mistakes(broken, batch=4096, keep=7)
    assert listed(first) == wrong[:7] and per_op2 == per_op


def test_causal_multi_digit_model_with_limit():
    """digits-0-99 (causal: answers of one or two digits, then <eos>) on a prefix of the order, broken so that
    it makes mistakes: the same ones as greedy answers written one expression at a time."""
    broken = zero_head(load_model("digits-0-99"), 0, 1)  # hundreds wrong on this prefix
    n, found, per_op = exhaustive.mistakes(broken, batch=300, limit=1000)
    wrong, ref_per_op = reference(broken, limit=1000)
    assert n == 1000 and len(wrong) > 20
    assert listed(found) == wrong
    assert per_op == ref_per_op
    assert any(m.true >= 10 for m in found)  # two-digit answers among them


def test_main_prints_the_figures(small, capsys):
    assert exhaustive.main(["--model", "digits-0-9", "--show", "3"]) == 0
    out = capsys.readouterr().out
    assert "expressions evaluated: 5,000 (all)" in out
    assert "mistakes: 0" in out and "expressions/s" in out and "load average" in out and "numpy" in out


def test_a_sample_of_lists_covers_every_length_and_counts_as_one_answer_at_a_time():
    model = zero_head(load_model("lists-0-9"), 1, 0)  # a copy that gets some lists wrong
    ids = exhaustive.sample_ids(model, 400, seed=1)
    assert ((ids >= 0) & (ids < model.task.space_size)).all()
    exprs = ExpressionSet.from_ids(model.task, ids)
    assert set(exprs.lengths.tolist()) == set(range(2, 11)) and set(exprs.ops.tolist()) == set(range(5))
    n, found, per_op = exhaustive.mistakes(model, batch=64, ids=ids, keep=None)
    want = [(e.text, model.answer(e).value, e.answer) for e in map(exprs.expression, range(n))]
    want = [w for w in want if w[1] != w[2]]
    assert n == 400 and listed(found) == want and sum(per_op.values()) == len(want) > 0


def test_a_sample_of_nested_expressions_is_drawn_as_the_held_out_sets_are_or_uniform_over_ids():
    """Nested: both depths alike by default (ids uniform would nest a full-length expression almost everywhere),
    and the mistakes found are those of answering one expression at a time."""
    from model_core import TaskConfig, TaskModel

    task = TaskConfig(operations=("First", "Max", "Sum"), min_args=2, n_args=3, max_depth=2)
    model = TaskModel.new(task, causal=True, norm="pre", n_layers=1, n_heads=2, d_model=16, d_ff=32, seed=3)
    drawn = ExpressionSet.from_ids(task, exhaustive.sample_ids(model, 3_000, seed=1))
    assert abs((drawn.depths == 1).mean() - 0.5) < 0.04 and set(drawn.ops.tolist()) == {0, 1, 2}
    uniform = ExpressionSet.from_ids(task, exhaustive.sample_ids(model, 3_000, seed=1, uniform_ids=True))
    assert (uniform.depths == 2).mean() > 0.99  # almost every id nests: the hard end of the space
    full = (uniform.inner_ops >= 0).sum(axis=1) == uniform.lengths
    assert full.mean() > 3 * ((drawn.inner_ops >= 0).sum(axis=1) == drawn.lengths).mean()
    ids = exhaustive.sample_ids(model, 150, seed=2)
    exprs = ExpressionSet.from_ids(task, ids)
    n, found, per_op = exhaustive.mistakes(model, batch=64, ids=ids, keep=None)
    want = [(e.text, model.answer(e).value, e.answer) for e in map(exprs.expression, range(n))]
    want = [w for w in want if w[1] != w[2]]
    assert n == 150 and listed(found) == want and sum(per_op.values()) == len(want) > 0
