"""The mechanism's probe set and per-snapshot metrics (model_core.interp.probe), against direct computations."""

import numpy as np
import pytest

from model_core import TaskConfig, TaskModel, interp, make_splits
from model_core.interp import input_space as isp
from model_core.interp import probe as pr
from model_core.interp.input_space import HeadRoles


def test_the_probe_set_is_fixed_balanced_and_held_out():
    task = TaskConfig()
    probe = pr.probe_set(task, seed=0)
    assert len(probe) == pr.PROBE_SIZE == 50
    assert np.bincount(probe.ops).tolist() == [10] * 5
    again = pr.probe_set(task, seed=0)
    np.testing.assert_array_equal(probe.ids(), again.ids())  # the same set for the same arguments
    assert not np.array_equal(pr.probe_set(task, seed=1).ids(), probe.ids())
    splits = make_splits(task, seed=0)
    assert pr.held_out(probe, splits)  # drawn from the validation split: never trained on
    assert len(np.unique(probe.ids())) == 50
    assert pr.describe_probe(probe) == "50 expressions, 10 per operation"
    assert np.bincount(pr.probe_set(task, n=203).ops).tolist() == [41, 41, 41, 40, 40]


def test_a_0_99_probe_is_mostly_two_digit_values_with_some_one_digit_ones():
    task = TaskConfig(max_value=99)
    probe = pr.probe_set(task, n=200, seed=0)
    assert np.bincount(probe.ops).tolist() == [40] * 5
    two = (probe.values >= 10).all(axis=1)
    for k in range(5):
        assert two[probe.ops == k].sum() == 32  # TWO_DIGIT_SHARE of each operation's 40
    assert (probe.values[~two] < 10).any(axis=1).all()
    assert pr.describe_probe(probe).endswith("160 with only two-digit values, 40 with a one-digit value")
    assert pr.held_out(probe, make_splits(task, seed=0))
    default = pr.probe_set(task, seed=0)
    assert len(default) == 50 and (default.values >= 10).all(axis=1).sum() == 40


def test_a_small_task_draws_from_every_expression():
    task = TaskConfig(operations=("Max",), n_args=2)  # 100 expressions, about 10 of them in validation
    probe = pr.probe_set(task, n=100, seed=0)
    assert len(probe) == 100 and len(np.unique(probe.ids())) == 100
    assert not pr.held_out(probe, make_splits(task, seed=0))


@pytest.mark.parametrize("name", ["digits-0-9", "digits-0-99"])
def test_mechanism_metrics_match_head_roles_evaluate_and_ablation_hooks(shipped, name):
    model = shipped[name]
    probe = pr.probe_set(model.task, n=100, seed=3)
    m = pr.mechanism_metrics(model, probe)
    assert m.n == 100 and m.operations == list(model.task.operations)
    # head roles: the same numbers as head_roles on the same set
    roles = isp.head_roles(model, probe)
    assert m.heads == roles.heads
    np.testing.assert_allclose(m.to_op, roles.to_op, rtol=1e-6)
    np.testing.assert_allclose(m.to_answer_slot, roles.to_answer_slot, rtol=1e-6)
    np.testing.assert_allclose(m.role_mean(pr.TO_OP), roles.to_op.mean(axis=1), rtol=1e-6)
    # accuracy: model.evaluate on the probe
    clean = model.evaluate(probe)
    assert m.accuracy == clean["accuracy"] and m.per_op == clean["per_op"]
    # each component zeroed: a loop of model.evaluate with ablation_hooks
    names = [c[0] for c in interp.every_component(model.transformer)]
    assert list(m.components) == names
    loop = [model.evaluate(probe, fwd_hooks=interp.ablation_hooks(model, [c])) for c in names]
    # (the same examples right: the ablation runs start at the ablated block, the loop runs the whole model)
    np.testing.assert_array_equal(m.ablated_accuracy, [r["accuracy"] for r in loop])
    np.testing.assert_array_equal(m.ablated_per_op, [list(r["per_op"].values()) for r in loop])
    drops = [clean["accuracy"] - r["accuracy"] for r in loop]
    assert m.top_drop == max(drops) and m.top_component == names[int(np.argmax(drops))]
    assert m.top_drop > 0.05  # a trained model: some component matters


def test_mechanism_metrics_of_an_untrained_one_block_model():
    model = TaskModel.new(TaskConfig(operations=("First", "Min")), n_layers=1, n_heads=2, d_model=16, d_ff=32)
    probe = pr.probe_set(model.task, n=40)
    m = pr.mechanism_metrics(model, probe)
    assert m.components == ("L0H0", "L0H1", "L0.mlp") and m.heads == ["L0H0", "L0H1"]
    assert m.to_op.shape == (2, 2) and m.ablated_per_op.shape == (3, 2)
    assert ((m.to_op >= 0) & (m.to_op + m.to_answer_slot <= 1 + 1e-6)).all()


# ---------------------------------------------------------------- the history in words
def _metrics(to_op_first: float, acc_first: float, *, drop: float = 0.5, top: int = 1) -> pr.MechanismMetrics:
    """Two heads, two operations; head L0H1's attention to the operation token on First is `to_op_first`."""
    z = np.zeros((2, 2))
    to_op = np.array([[0.1, 0.1], [to_op_first, 0.2]])
    roles = HeadRoles(["L0H0", "L0H1"], ["First", "Max"], to_op, z + 0.3, z, z, n=20)
    accuracy = (acc_first + 0.5) / 2
    ablated = np.full(3, accuracy)
    ablated[top] -= drop
    return pr.MechanismMetrics(roles, accuracy, {"First": acc_first, "Max": 0.5}, ("L0H0", "L0H1", "L0.mlp"),
                               ablated, np.zeros((3, 2)), n=20)  # fmt: skip


def test_describe_history_says_what_the_numbers_say():
    steps = [0, 10, 20, 30]
    history = [_metrics(0.1, 0.3), _metrics(0.2, 0.31), _metrics(0.9, 0.97), _metrics(0.95, 1.0)]
    lines = pr.describe_history(steps, history)
    assert lines[0].startswith("Each operation's largest rise") and "First 31% → 97% (steps 10–20)" in lines[0]
    assert "Max never rose" in lines[0]
    # the mean over operations of L0H1's attention to the operation token: (0.9 + 0.2) / 2 = 0.55 at step 20
    assert ("L0H1's mean attention from `=` to the operation token (over operations) first reaches 0.50 at step 20 "
            "(0.20 at step 10), around when First's probe accuracy jumps from 31% to 97% (steps 10–20)") in lines[1]
    assert lines[2].startswith("No head's mean attention from `=` to the answer's slot")
    assert "L0H1 attends to the operation token (First 0.95)" in lines[3]
    assert lines[4].startswith("At the last snapshot (step 30) zeroing L0H1 costs the most: probe accuracy "
                               "falls from 75% to 25%. It is the most important component at 4 of the 4 snapshots")
    assert ("Its attention from `=` to the operation token on First expressions first reaches 0.50 at step 20 "
            "(0.20 at step 10), around when First's probe accuracy jumps from 31% to 97%") in lines[4]


def test_describe_history_without_a_role_or_an_important_component():
    steps = [0, 100]
    lines = pr.describe_history(steps, [_metrics(0.1, 0.5, drop=0.0), _metrics(0.2, 0.4, drop=-0.1)])
    assert "First never rose" in lines[0] and "Max never rose" in lines[0]
    assert lines[1].startswith("No head's mean attention from `=` to the operation token")
    assert "no head puts 0.50 or more" in lines[3]
    assert lines[4] == "At the last snapshot (step 100) zeroing any one head or MLP costs no probe accuracy."
    assert pr.describe_history([], []) == []


def test_describe_history_never_rounds_a_share_across_the_threshold():
    lines = pr.describe_history([0, 10], [_metrics(0.798, 0.5), _metrics(0.95, 0.9)])  # means 0.499, then 0.575
    assert "first reaches 0.50 at step 10 (0.499 at step 0)" in lines[1]
