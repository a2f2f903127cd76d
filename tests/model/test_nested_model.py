"""The shipped nested-0-9: its held-out accuracy, every depth at 99.5% or more, measured here from its own
held-out split (not read off its metadata), and greedy answers that agree with the teacher-forced figures."""

from __future__ import annotations

import numpy as np
import pytest

from model_core import load_model
from model_core.task import make_splits

TARGET = 0.995  # exact match at every depth (issue: nested operations and sums)


@pytest.fixture(scope="module")
def shipped():
    return load_model("nested-0-9")


@pytest.fixture(scope="module")
def test_split(shipped):
    return make_splits(shipped.task, seed=shipped.train_config.seed).test


def test_the_shipped_nested_model_reaches_its_target_at_every_depth(shipped, test_split):
    ev = shipped.evaluate(test_split)
    assert ev["n"] == 20_000 and sorted(ev["per_depth"]) == [1, 2]
    assert min(ev["per_depth"].values()) >= TARGET, ev["per_depth"]
    assert set(ev["per_op"]) == set(shipped.task.operations) and "Sum" in ev["per_op"]
    # the card and the pages quote the metadata: it is what this evaluation gives
    assert shipped.metrics["heldout_accuracy"] == ev["accuracy"]
    assert shipped.metrics["heldout_per_depth"] == {str(d): a for d, a in ev["per_depth"].items()}


def test_the_shipped_nested_model_answers_greedily_exactly_where_teacher_forcing_says_right(shipped, test_split):
    rows = np.random.default_rng(0).choice(len(test_split), 1_500, replace=False)
    exprs = test_split.subset(np.sort(rows))
    right = shipped.exact_match(shipped.encode(exprs))
    assert np.array_equal(right, shipped.predict_values(exprs) == exprs.answers)
    assert (exprs.depths == 2).any() and (exprs.answers >= 10).any()  # nested, and answers of two digits


def test_the_shipped_nested_model_sums_the_briefs_examples(shipped):
    for text, value in [("Sum ( Sum ( 9 8 ) 7 )", 24), ("Max ( First ( 2 8 ) Second ( 5 1 ) 7 )", 7),
                        ("Sum ( 9 8 7 )", 24)]:  # fmt: skip
        assert shipped.answer(text).value == value, text
