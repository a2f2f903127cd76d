"""Whole-input-space views (model_core.interp.input_space), each against a direct computation on a subset."""

import numpy as np
import pytest

from model_core import enumerate_all, interp, load_model
from model_core.interp import input_space as isp


@pytest.fixture(scope="module")
def model():
    return load_model("digits-0-9")


@pytest.fixture(scope="module")
def subset(model):
    every = enumerate_all(model.task)
    return every.subset(np.random.default_rng(0).permutation(len(every))[:400])


def test_the_space_is_every_expression_on_0_9_and_a_stated_sample_on_0_99(model):
    assert len(isp.input_space(model)) == 5000
    big = load_model("digits-0-99")
    assert len(isp.input_space(big, sample=300)) == 300


def test_head_roles_are_the_mean_attention_of_each_example(model, subset):
    roles = isp.head_roles(model, subset)
    assert roles.heads[:2] == ["L0H0", "L0H1"] and roles.operations == list(model.task.operations) and roles.n == 400
    total = roles.to_op + roles.to_answer_slot + roles.to_other_slots
    assert (total <= 1 + 1e-5).all() and (total >= 0).all()
    # direct: head L1H0, operation Max, one example at a time
    k = model.task.operations.index("Max")
    idx = np.flatnonzero(subset.ops == k)
    mass = []
    for i in idx:
        e = subset.expression(int(i))
        b = interp.batch(model, [e])
        _, cache = model.transformer.run_with_cache(b.tokens)
        row = cache["blocks.1.attn.hook_pattern"][0, 0, b.answer_pos[0]]  # head 0's row at '='
        slot = 2 + 2 * list(e.values).index(e.answer)  # 0-9 layout: values at positions 2, 4, 6
        mass.append(row[slot])
    assert roles.to_answer_slot[roles.heads.index("L1H0"), k] == pytest.approx(np.mean(mass), abs=1e-5)


def test_score_by_digit_cells_are_mean_scores(model, subset):
    table, explained = isp.score_by_digit(model, 1, 2, subset)
    assert table.shape == (5, 3, 10) and 0.0 <= explained <= 1.0
    b = model.encode(subset)
    _, cache = model.transformer.run_with_cache(b.tokens)
    scores = cache["blocks.1.attn.hook_attn_scores"][np.arange(len(subset)), 2, b.answer_pos, 4]  # slot 2 at pos 4
    k = model.task.operations.index("Min")
    sel = (subset.ops == k) & (subset.values[:, 1] == 3)
    assert table[k, 1, 3] == pytest.approx(scores[sel].mean(), rel=1e-5)


def test_ablation_matrix_is_one_minus_the_flip_rate(model, subset):
    matrix = isp.ablation_matrix(model, subset)
    assert matrix.components[:2] == ["L0H0", "L0H1"] and matrix.components[-1] == "L1.mlp"
    np.testing.assert_array_equal(matrix.clean, np.ones(5))
    b = model.encode(subset)
    flips = interp.ablate(model, b.tokens, b.answer_pos, [["L0H3"]]).flipped[0]
    row = matrix.accuracy[matrix.components.index("L0H3")]
    for k, _op in enumerate(matrix.operations):
        assert row[k] == pytest.approx(1 - flips[subset.ops == k].mean(), abs=0.01)


def test_lens_by_operation_ends_at_the_models_accuracy(model, subset):
    stages, ops, share = isp.lens_by_operation(model, subset)
    assert stages[0] == "embed + pos" and stages[-1] == "block 1 out" and share.shape == (5, 5)
    per_op = model.evaluate(subset)["per_op"]
    np.testing.assert_allclose(share[-1], [per_op[op] for op in ops])


def test_hard_cases_are_the_smallest_margins(model, subset):
    wrong, weak = isp.hard_cases(model, subset, k=5)
    assert wrong == []  # the shipped 0-9 model is right on every expression
    margins = [m for _, m in weak]
    assert margins == sorted(margins) and len(weak) == 5
    text, margin = weak[0]
    b = interp.batch(model, [text])
    att = interp.attribute(model.transformer, b.tokens, b.answer_pos)
    assert att.diff_total[0] == pytest.approx(margin, rel=1e-5)


@pytest.mark.parametrize("name", ["digits-0-9", "digits-0-99"])
@pytest.mark.parametrize("mean", [False, True])
def test_the_ablation_matrix_equals_evaluating_each_ablation_over_the_whole_model(name, mean):
    """The matrix starts each run at the ablated block and reads the answer rows only; the slow way runs
    the whole model under the same hooks. Same accuracies, to the example."""
    m = load_model(name)
    space = isp.input_space(m, sample=3000)
    exprs = space.subset(np.random.default_rng(1).permutation(len(space))[:600])
    fast = isp.ablation_matrix(m, exprs, mean=mean)
    for i, c in enumerate(fast.components):
        per_op = m.evaluate(exprs, fwd_hooks=interp.ablation_hooks(m, [c], mean=mean))["per_op"]
        np.testing.assert_array_equal(fast.accuracy[i], [per_op[op] for op in fast.operations], err_msg=c)
    assert (fast.accuracy < 1).any()  # some component matters


def test_one_space_run_serves_every_view(model, subset):
    run = isp.space_run(model, subset)
    np.testing.assert_array_equal(isp.head_roles(model, run=run).to_op, isp.head_roles(model, subset).to_op)
    np.testing.assert_array_equal(isp.lens_by_operation(model, run=run)[2], isp.lens_by_operation(model, subset)[2])
    assert isp.hard_cases(model, run=run, k=3) == isp.hard_cases(model, subset, k=3)
    with pytest.raises(ValueError, match="not both"):
        isp.head_roles(model, subset.subset(np.arange(5)), run=run)


# ---------------------------------------------------------------- the Heads page's read-outs of a SpaceRun
def test_answer_margin_is_the_margin_hard_cases_rank_by(model, subset):
    run = isp.space_run(model, subset)
    margin = isp.answer_margin(run)
    assert margin.shape == (len(subset),)
    assert ((margin > 0) == run.right).all()  # one answer token: right exactly where it wins
    texts = [subset.expression(i).text for i in range(len(subset))]
    _, weak = isp.hard_cases(model, run=run, k=5)
    for text, m in weak:
        assert margin[texts.index(text)] == pytest.approx(m, rel=1e-6)
    # direct, one example: the true token's logit at `=` minus the largest other
    b = model.encode(subset.subset(np.array([7])))
    logits = model.transformer.run_with_cache(b.tokens)[0][0, b.answer_pos[0]].astype(np.float64)
    true = b.targets[0, b.answer_pos[0]]
    assert margin[7] == pytest.approx(logits[true] - np.delete(logits, true).max(), rel=1e-5)


@pytest.mark.parametrize("name", ["digits-0-9", "digits-0-99"])
def test_example_where_ablation_flips_is_the_first_right_answer_the_component_breaks(name):
    """Checked against evaluating the one expression with and without the component (the slow, whole-model way)."""
    m = load_model(name)
    space = isp.input_space(m, sample=2000)
    exprs = space.subset(np.random.default_rng(2).permutation(len(space))[:500])
    run = isp.space_run(m, exprs)
    found = 0
    for c in run.components:
        k_c = run.components.index(c)
        for op_k, _op in enumerate(m.task.operations):
            i = isp.example_where_ablation_flips(run, c, op_k)
            breaks = np.flatnonzero((exprs.ops == op_k) & run.right & ~run.ablated_right[k_c])
            if i is None:
                assert breaks.size == 0
                continue
            found += 1
            assert i == breaks[0] and exprs.ops[i] == op_k
            if found <= 4:  # the slow check for a few
                one = exprs.subset(np.array([i]))
                assert m.evaluate(one)["accuracy"] == 1.0
                assert m.evaluate(one, fwd_hooks=interp.ablation_hooks(m, [c]))["accuracy"] == 0.0, (c, op_k)
    assert found > 0  # some component breaks some answer
    with pytest.raises(ValueError):
        isp.example_where_ablation_flips(run, "L9H9", 0)


def test_score_trend_is_the_correlation_with_the_value():
    values = np.arange(10, dtype=float)
    first = np.stack([2 * values + 1, -values, np.full(10, 3.0)])
    second = np.stack([np.where(values < 5, np.nan, values), values**2, np.r_[1.0, np.full(9, np.nan)]])
    table = np.stack([first, second])  # [op, slot, value]
    r = isp.score_trend(table)  # [op, slot]
    assert r.shape == (2, 3)
    np.testing.assert_allclose(r[0, :2], [1.0, -1.0])
    assert np.isnan(r[0, 2]) and np.isnan(r[1, 2])  # a constant score; a single value
    assert r[1, 0] == pytest.approx(1.0)  # NaN cells left out
    assert r[1, 1] == pytest.approx(np.corrcoef(values, values**2)[0, 1])


def test_score_trend_of_a_shipped_head_min_falls(model):
    """On the shipped 0-9 model some layer-1 head's score falls with the value for Min in every slot (it scores the
    smallest value highest); which head is found, not assumed."""
    run = isp.space_run(model)
    ops = list(model.task.operations)
    heads = [(layer, h) for layer in range(2) for h in range(4)]
    trends = {lh: isp.score_trend(isp.score_by_digit(model, *lh, run=run)[0]) for lh in heads}
    assert any(t[ops.index("Min")].max() < -0.7 for lh, t in trends.items() if lh[0] == 1)
