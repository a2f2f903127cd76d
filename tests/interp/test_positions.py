"""Why position matters (model_core.interp.positions): the switched-off positional encoding, checked by hand."""

from __future__ import annotations

import numpy as np
import pytest

from model_core import load_model
from model_core.interp.positions import (
    WithoutPositions,
    accuracy_without_positions,
    order_matters,
    random_pick_accuracy,
)
from model_core.task import TaskConfig, enumerate_all


def test_which_operations_depend_on_order():
    ops = ("First", "Second", "Last", "Max", "Min")
    assert [order_matters(op, TaskConfig()) for op in ops] == [True] * 3 + [False] * 2


def test_a_random_pick_scores_the_closed_form():
    # one of 3 values in 0-9 at random is the first one with p 1/3, or equals it by chance: 1/3 + 2/3 * 1/10
    assert random_pick_accuracy("First", TaskConfig()) == pytest.approx(1 / 3 + 2 / 3 / 10, abs=0.01)
    # lists of 2 or 3 values, each length half the time: the mean of the two lengths' closed forms
    lists = TaskConfig(min_args=2, n_args=3)
    want = np.mean([1 / n + (n - 1) / n / 10 for n in (2, 3)])
    assert random_pick_accuracy("First", lists, n=200_000) == pytest.approx(want, abs=0.005)
    # Last picks the last value of each list, whatever its length: a random pick of one of two values in 0-9 is
    # right half the time plus a tenth of the other half
    assert random_pick_accuracy("Last", TaskConfig(min_args=2, n_args=2)) == pytest.approx(0.55, abs=0.01)


@pytest.fixture(scope="module")
def model():
    return load_model("digits-0-9")


def test_without_positions_matches_a_hand_run_and_the_model_cannot_see_order(model):
    exprs = enumerate_all(model.task)
    wp = accuracy_without_positions(model, exprs)
    net = model.transformer
    batch = model.encode(exprs)
    zero = [("hook_pos_embed", lambda x, hook: np.zeros_like(x))]
    logits = net.run_with_hooks(batch.tokens, zero)  # [n, T, vocab]
    rows = np.nonzero(batch.targets >= 0)
    right = logits[rows].argmax(-1) == batch.targets[rows]  # one answer token per expression here
    for k, op in enumerate(model.task.operations):
        assert wp.without[wp.operations.index(op)] == pytest.approx(right[exprs.ops == k].mean())
        assert wp.accuracy[wp.operations.index(op)] == 1.0
    # the hook really removes position: swapping the first two values leaves every logit at `=` unchanged
    swapped = batch.tokens.copy()
    text = exprs.expression(0).text.split()
    first, second = text.index("(") + 1, text.index("(") + 2  # the positions of the first two values
    swapped[:, [first, second]] = swapped[:, [second, first]]
    np.testing.assert_allclose(net.run_with_hooks(swapped, zero)[rows[0], rows[1]], logits[rows], atol=1e-5)
    assert wp.n == len(exprs) == 5000


def _wp(without, causal=False, max_value=9):
    ops = ["First", "Max", "Min"]
    return WithoutPositions(ops, np.ones(3), np.array(without), [True, False, False], np.array([0.4, 0.38, 0.38]),
                            1000, causal, max_value)  # fmt: skip


def test_sentences_follow_the_numbers():
    text = " ".join(_wp([0.39, 0.92, 1.0]).sentences())
    assert "First collapses: First 100% → 39%." in text
    assert "Max loses some" in text and "Min keeps its accuracy" in text
    assert "about what a random pick does" in text and "unordered bag" in text and "uses positions" not in text
    text = " ".join(_wp([0.7, 0.02, 0.03], causal=True, max_value=99).sentences())
    assert "still beats a random pick, although this model is causal" in text
    assert "yet Max and Min collapse too" in text and "tens from its units" in text
    text = " ".join(_wp([0.1, 1.0, 1.0], causal=True).sentences())
    assert "below a random pick" in text and "collapse too" not in text
