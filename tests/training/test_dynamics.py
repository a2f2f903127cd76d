"""Training dynamics: validation loss, the order the operations are learned in, the probe's answer per snapshot,
which weights moved, and training on the first N training expressions (with the memorisation sentence)."""

import numpy as np
import pytest

from model_core import TaskConfig, TaskModel, TrainConfig, Trainer
from model_core.task import make_splits
from model_core.task.splits import TRAIN
from model_core.training import job as tj
from model_core.training.trainer import EvalMetrics, ProbeAnswer, evaluate_with_loss, restrict_train

TINY = dict(n_layers=1, n_heads=2, d_model=16, d_ff=32)


def _reference_loss(model: TaskModel, exprs) -> float:
    """Mean cross-entropy over every answer token, from the full logits [n, T, vocab] and a float64 log-softmax."""
    batch = model.encode(exprs)
    logits = model.transformer.forward(batch.tokens).astype(np.float64)  # every position
    log_p = logits - np.log(np.exp(logits - logits.max(-1, keepdims=True)).sum(-1, keepdims=True)) \
        - logits.max(-1, keepdims=True)  # fmt: skip
    n, t = np.nonzero(batch.targets >= 0)
    return float(-log_p[n, t, batch.targets[n, t]].mean())


# ---------------------------------------------------------------- validation loss
@pytest.mark.parametrize("task, causal", [(TaskConfig(), False), (TaskConfig(max_value=99, n_args=2), True)])
def test_validation_loss_matches_numpy_from_the_full_logits(task, causal):
    model = TaskModel.new(task, **TINY, causal=causal, seed=3)
    val = make_splits(task, seed=0).val
    got = evaluate_with_loss(model, val, batch_size=700)  # several batches: the mean is over all tokens
    assert got["loss"] == pytest.approx(_reference_loss(model, val), rel=1e-5)
    plain = model.evaluate(val)
    assert got["accuracy"] == plain["accuracy"] and got["per_op"] == plain["per_op"] and got["n"] == plain["n"]


def test_every_validation_records_its_loss_and_the_last_is_the_trained_models():
    model = TaskModel.new(TaskConfig(operations=("First", "Last")), **TINY, seed=0)
    fresh = TaskModel.new(TaskConfig(operations=("First", "Last")), **TINY, seed=0)
    trainer = Trainer(model, TrainConfig(steps=30, eval_every=10, batch_size=32), early_snapshots=(5, 10))
    evals = [e for e in trainer.run() if isinstance(e, EvalMetrics)]
    assert [e.step for e in evals if e.loss is not None] == [0, 10, 20, 30]
    assert all(e.loss is None for e in evals if not e.validated)  # the early snapshots do not validate
    val = trainer.splits.val
    assert evals[0].loss == pytest.approx(_reference_loss(fresh, val), rel=1e-5)
    assert evals[-1].loss == pytest.approx(_reference_loss(model, val), rel=1e-5)


# ---------------------------------------------------------------- the order operations are learned in
def _history(per_op_by_step: dict[int, dict[str, float]]):
    return list(per_op_by_step.items())


def test_learned_order_with_a_tie_in_the_middle_and_a_clear_last():
    h = _history({0: dict(First=0.1, Max=0.2, Min=0.1, Last=0.1),
                  150: dict(First=0.5, Max=0.96, Min=0.95, Last=0.3),
                  300: dict(First=0.97, Max=0.99, Min=1.0, Last=0.8),
                  400: dict(First=0.9, Max=1.0, Min=1.0, Last=0.95)})  # fmt: skip
    order = tj.learned_order(h)
    assert [(x.operation, x.step) for x in order] == [("Max", 150), ("Min", 150), ("First", 300), ("Last", 400)]
    assert tj.learned_order_text(order, 400, ended=True) == (
        "The order in which the operations were learned (the first evaluation at which each one's validation "
        "accuracy is 95% or more): Max and Min first, at step 150; then First, at step 300; Last last, at step 400.")
    # First dropped back to 90% at step 400: "learned" is the first evaluation at 95%, as the sentence says


def test_learned_order_with_operations_never_learned():
    h = _history({0: dict(First=0.0, Second=0.1, Max=0.2), 50: dict(First=0.6, Second=0.8, Max=1.0),
                  100: dict(First=0.7, Second=0.8, Max=1.0)})  # fmt: skip
    order = tj.learned_order(h)
    assert [(x.operation, x.step, x.best, x.best_step) for x in order] == [
        ("Max", 50, 1.0, 50), ("First", None, 0.7, 100), ("Second", None, 0.8, 50)]
    text = tj.learned_order_text(order, 100, ended=True)
    assert text.endswith("accuracy is 95% or more): Max first, at step 50. First and Second never reached it "
                         "(best: First 70.0%, at step 100; Second 80.0%, at step 50).")  # fmt: skip
    assert "last" not in text  # Max is not the last learned while two never are
    during = tj.learned_order_text(order, 100, ended=False)
    assert "First and Second have not reached it yet" in during
    one_left = tj.learned_order(h[:2] + [(100, dict(First=0.96, Second=0.8, Max=1.0))])
    assert tj.learned_order_text(one_left, 100, ended=False).endswith(
        "Max first, at step 50; then First, at step 100. Second has not reached it yet "
        "(best: Second 80.0%, at step 50).")


def test_learned_order_when_none_or_all_at_once():
    none = tj.learned_order(_history({0: dict(Max=0.1, Min=0.2), 40: dict(Max=0.6, Min=0.6)}))
    assert tj.learned_order_text(none, 40, ended=True) == (
        "No operation reached 95% validation accuracy by step 40, the last evaluation. Closest: Max 60.0%, at step 40; "
        "Min 60.0%, at step 40.")
    together = tj.learned_order(_history({0: dict(Max=0.1, Min=0.2, First=0), 40: dict(Max=1.0, Min=0.95, First=1)}))
    assert tj.learned_order_text(together, 40, ended=True) == (
        "All 3 operations reached 95% validation accuracy at the same evaluation, step 40.")
    two = tj.learned_order(_history({0: dict(Max=0.1, Min=0.2), 40: dict(Max=1.0, Min=0.95)}))
    assert tj.learned_order_text(two, 40, ended=True).startswith("Both operations reached 95%")
    alone = tj.learned_order(_history({0: dict(Max=0.1), 20: dict(Max=0.97)}))
    assert tj.learned_order_text(alone, 20, ended=True) == "Max reached 95% validation accuracy at step 20."
    assert tj.learned_order_text(tj.learned_order([]), 0, ended=True) == ""
    below = tj.learned_order(_history({0: dict(Max=0.1), 20: dict(Max=0.9499)}))
    assert below[0].step is None  # 94.99% is not 95%


# ---------------------------------------------------------------- the probe's answer per snapshot
def _answers(*rights, written="9", wrong="3"):
    return [(10 * i, ProbeAnswer(written if r else wrong, r, 0.5 + 0.04 * i)) for i, r in enumerate(rights)]


def test_probe_answer_sentences():
    p = "Max ( 7 2 9 )"
    assert tj.probe_answer_text(_answers(False, False, True, True), p, "9") == (
        "The answer on the probe **Max ( 7 2 9 )** first became right (9) at step 20 and stayed right; at the last "
        "snapshot (step 30) it answers `9`, confidence 62.0%.")
    assert tj.probe_answer_text(_answers(False, True, False, True, True), p, "9") == (
        "The answer on the probe **Max ( 7 2 9 )** first became right (9) at step 10, was wrong again at step 20, "
        "and has been right since step 30; at the last snapshot (step 40) it answers `9`, confidence 66.0%.")
    assert tj.probe_answer_text(_answers(False, False), p, "9") == (
        "The model never answered the probe **Max ( 7 2 9 )** right: at the last snapshot (step 10) it answers `3`, "
        "confidence 54.0%; the right answer is 9.")
    assert tj.probe_answer_text(_answers(False, True, False), p, "9").startswith(
        "The model's answer on the probe **Max ( 7 2 9 )** was first right at step 10, but is wrong again: at the "
        "last snapshot (step 20) it answers `3`")
    assert "from step 0 (before training, by chance)" in tj.probe_answer_text(_answers(True, True), p, "9")
    assert tj.probe_answer_text([], p, "9") == ""
    near = [(0, ProbeAnswer("9", True, 0.99996))]
    assert tj.probe_answer_text(near, p, "9").endswith("confidence 99.996%.")  # never "100%" short of 1
    assert tj.probe_answer_text(near, p, "9", percent=lambda q: f"<{q}>").endswith("confidence <0.99996>.")


def test_the_trainer_records_the_models_answer_on_the_probe():
    model = TaskModel.new(TaskConfig(), **TINY, seed=0)
    trainer = Trainer(model, TrainConfig(steps=10, eval_every=10, batch_size=16), probe="Max ( 7 2 9 )")
    last = [e for e in trainer.run() if isinstance(e, EvalMetrics)][-1]
    answer = model.answer("Max ( 7 2 9 )")
    p = model.transformer.forward(model.encode(model.expressions([answer.expression])).tokens)[0, -1]
    p = np.exp(p - p.max()) / np.exp(p - p.max()).sum()  # the softmax at `=`: a bidirectional model answers there
    assert last.probe_answer.written == model.vocab.decode([int(p.argmax())])[0]
    assert last.probe_answer.confidence == pytest.approx(float(p.max()), rel=1e-5)
    assert last.probe_answer.correct == (int(p.argmax()) == model.vocab.id("9"))


# ---------------------------------------------------------------- which weights moved
def test_weight_change_norms_per_kind_and_per_parameter():
    rng = np.random.default_rng(0)
    start = TaskModel.new(TaskConfig(), n_layers=2, n_heads=2, d_model=16, d_ff=32, norm="pre").transformer.params
    end = {k: v + rng.normal(size=v.shape) * 0.1 for k, v in start.items()}
    kinds = tj.weight_change(start, end)
    assert [c.name for c in kinds] == ["embeddings", "block 0 LayerNorms", "block 0 attention", "block 0 MLP",
                                       "block 1 LayerNorms", "block 1 attention", "block 1 MLP", "final LayerNorm",
                                       "unembedding"]  # fmt: skip
    for c in kinds:
        names = [k for k in start if tj.weight_kind(k) == c.name]
        assert set(names) == set(c.params)
        s0 = np.sqrt(sum(float((start[k].astype(np.float64) ** 2).sum()) for k in names))
        d = np.sqrt(sum(float(((end[k] - start[k]).astype(np.float64) ** 2).sum()) for k in names))
        assert c.start_norm == pytest.approx(s0) and c.change_norm == pytest.approx(d)
        assert c.relative == pytest.approx(d / s0)
    assert {c.name for c in kinds} >= {"block 1 attention", "block 0 MLP", "unembedding", "final LayerNorm"}
    each = tj.weight_change(start, end, by_kind=False)
    assert [c.name for c in each] == list(start)
    bias = next(c for c in each if c.name == "blocks.0.attn.b_Q")
    assert bias.start_norm == 0 and np.isnan(bias.relative)  # starts at zero: no relative change


def test_weight_change_sentence_names_the_largest_and_smallest_and_ties():
    def w(name, start, change):
        return tj.WeightChange(name, (name,), start, change)

    changes = [w("embeddings", 10, 1), w("block 0 MLP", 10, 8.5), w("unembedding", 4, 1)]
    assert tj.weight_change_text(changes) == (
        "Moved most: the **block 0 MLP** weights, by 85% of their initial norm (‖W_end − W_start‖ / ‖W_start‖); "
        "least: the **embeddings** weights, by 10%.")
    tie = [w("block 0 attention", 2, 1), w("block 0 MLP", 4, 2), w("embeddings", 10, 1)]
    assert tj.weight_change_text(tie).startswith(
        "Moved most: the **block 0 attention and block 0 MLP** weights, by 50%")
    assert tj.weight_change_text([w("a", 1, 0), w("b", 2, 0)]) == "No weight has moved from its initial value."
    assert tj.weight_change_text([w("a", 1, 0.5), w("b", 2, 1)]).endswith("every kind moved by the same share.")
    assert "by 0.1%" in tj.weight_change_text([w("a", 1000, 1), w("b", 1, 1)])  # 0.1%, not "0%"


def test_the_job_measures_the_weights_against_its_initial_copy():
    model = dict(TINY, seed=4)
    job = tj.TrainingJob(TaskConfig(operations=("Max", "Min")), TrainConfig(steps=20, eval_every=10, batch_size=16,
                                                                            seed=4), model)  # fmt: skip
    job.start()
    assert job.join(120)
    snap = job.snapshot()
    start = TaskModel.new(TaskConfig(operations=("Max", "Min")), **model).transformer.params  # the same init
    end = job.model.transformer.params
    for c in snap.param_change:
        (name,) = c.params
        assert c.start_norm == pytest.approx(np.linalg.norm(start[name].astype(np.float64)))
        assert c.change_norm == pytest.approx(np.linalg.norm((end[name] - start[name]).astype(np.float64)))
    assert [c.name for c in snap.weight_change] == list(dict.fromkeys(tj.weight_kind(k) for k in end))
    assert all(c.change_norm > 0 for c in snap.weight_change)


# ---------------------------------------------------------------- training on the first N expressions
def test_restrict_train_takes_the_first_of_each_operations_seeded_block():
    task = TaskConfig()
    splits = make_splits(task, seed=5)
    got = restrict_train(splits, 102, seed=5)
    ids, train_ids = got.ids(task), splits.train.ids(task)
    assert len(set(ids)) == 102 and set(ids) <= set(train_ids)
    for k in range(5):  # 102 = 5 × 20 + 2: the first two operations get one more
        want = train_ids[splits.train.ops == k][: 20 + (k < 2)]
        np.testing.assert_array_equal(ids[got.ops == k], want)
    assert restrict_train(splits, len(splits.train), seed=5) is None  # all of it: no restriction
    with pytest.raises(ValueError):
        restrict_train(splits, 3, seed=5)


def test_restrict_train_on_a_hashed_task_draws_distinct_training_expressions():
    task = TaskConfig(max_value=99)
    splits = make_splits(task, seed=2)
    assert splits.hashed
    got = restrict_train(splits, 300, seed=2)
    ids = got.ids(task)
    assert len(np.unique(ids)) == 300 and (splits.split_of_ids(ids) == TRAIN).all()
    assert np.bincount(got.ops).tolist() == [60] * 5
    np.testing.assert_array_equal(restrict_train(splits, 300, seed=2).ids(task), ids)  # seeded


def test_batches_only_ever_hold_the_first_n_and_validation_and_held_out_stay():
    task = TaskConfig()
    model = TaskModel.new(task, **TINY, seed=0)
    trainer = Trainer(model, TrainConfig(steps=40, eval_every=20, batch_size=64, seed=1), train_size=100)
    allowed = set(restrict_train(make_splits(task, seed=1), 100, seed=1).ids(task))
    seen = []
    sample = trainer.sample_batch
    trainer.sample_batch = lambda n, rng: seen.append(sample(n, rng)) or seen[-1]
    list(trainer.run())
    assert len(seen) == 40
    drawn = set(np.concatenate([b.ids(task) for b in seen]))
    assert drawn <= allowed and len(drawn) > 90  # 2,560 draws from 100: almost all of them are used
    reference = make_splits(task, seed=1)
    np.testing.assert_array_equal(trainer.splits.val.ids(task), reference.val.ids(task))
    np.testing.assert_array_equal(trainer.splits.test.ids(task), reference.test.ids(task))
    assert trainer.result.train["n"] == 100
    assert trainer.result.train["accuracy"] == model.evaluate(trainer.train_set)["accuracy"]
    assert model.metrics["train_size"] == 100 and model.metrics["train_n"] == 100


def test_without_a_train_size_the_batches_are_the_splits_own():
    task = TaskConfig()
    trainer = Trainer(TaskModel.new(task, **TINY, seed=0), TrainConfig(steps=5, batch_size=32, seed=7))
    assert trainer.train_set is None
    ours = trainer.sample_batch(32, np.random.default_rng(7))
    theirs = make_splits(task, seed=7).sample_train(32, np.random.default_rng(7))
    np.testing.assert_array_equal(ours.ids(task), theirs.ids(task))


def test_a_train_size_below_the_number_of_operations_fails_the_job():
    job = tj.TrainingJob(TaskConfig(), TrainConfig(steps=10), TINY, train_size=3)
    assert job.status == "failed" and "at least one expression per operation" in job.message


def test_memorisation_sentences():
    m = tj.memorisation_text(100, 1.0, 0.41, 1000, restricted=True)
    assert m.kind == "memorised" and m.text == (
        "The model memorised its 100 training expressions: 100.0% right on them, but 41.0% on the 1,000 held-out "
        "expressions it never saw, 59 points lower. Part of what it learned holds only for the expressions it "
        "trained on.")
    g = tj.memorisation_text(3500, 1.0, 0.995, 1000, restricted=False)
    assert g.kind == "generalises" and g.text.startswith(
        "100.0% right on the 3,500 expressions of its training split and 99.5% on the 1,000 held-out")
    assert tj.memorisation_text(100, 0.99, 0.9, 1000, restricted=True).kind == "generalises"  # 9 points: not 10
    n = tj.memorisation_text(100, 0.84, 0.36, 1000, restricted=True)
    assert n.kind == "not fit" and n.text.startswith("The model has not fit its 100 training expressions yet: 84.0%")
    assert tj.memorisation_text(None, None, 0.5, 1000, restricted=False) is None
