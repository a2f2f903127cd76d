"""The shared training loop: it learns, it is deterministic, it stops, it refuses NaN."""

import threading

import numpy as np
import pytest

from model_core import TaskConfig, TaskModel, TrainConfig, Trainer
from model_core.training.trainer import EvalMetrics, StepMetrics

TINY_TASK = TaskConfig(operations=("First", "Last"))  # 2,000 expressions
TINY_MODEL = dict(n_layers=2, n_heads=2, d_model=32, d_ff=64)


def tiny(seed=0, **train):
    model = TaskModel.new(TINY_TASK, **TINY_MODEL, seed=seed)
    options = dict(steps=150, batch_size=32, lr=1e-2, warmup_steps=10, eval_every=25) | train
    return model, Trainer(model, TrainConfig(**options))


def test_a_short_run_learns_a_tiny_task_to_100_percent():
    model, trainer = tiny()
    events = list(trainer.run())
    steps = [e for e in events if isinstance(e, StepMetrics)]
    evals = [e for e in events if isinstance(e, EvalMetrics)]
    assert [e.step for e in evals] == [0, 25, 50, 75, 100, 125, 150]
    assert np.mean([s.loss for s in steps[-10:]]) < np.mean([s.loss for s in steps[:10]]) / 10
    assert trainer.result.status == "finished" and trainer.result.steps == 150
    assert trainer.result.test["accuracy"] == 1.0
    # Held-out expressions, answered by generation, not only by the teacher-forced metric:
    test = trainer.splits.test
    assert (model.predict_values(test) == test.answers).all()
    assert model.metrics["heldout_accuracy"] == 1.0 and model.train_config.steps == 150


def test_eval_events_carry_per_op_accuracy_and_attention_snapshots():
    model, trainer = tiny(steps=25)
    evals = [e for e in trainer.run() if isinstance(e, EvalMetrics)]
    T = trainer.probe_tokens.shape[1]
    for e in evals:
        assert set(e.per_op) == {"First", "Last"}
        assert e.attention.shape == (2, 2, T, T)
        np.testing.assert_allclose(e.attention.sum(-1), 1.0, atol=1e-5)
    assert not np.array_equal(evals[0].attention, evals[-1].attention)  # the heads moved


def test_same_config_and_seed_give_identical_weights():
    a, ta = tiny(steps=40)
    b, tb = tiny(steps=40)
    list(ta.run())
    list(tb.run())
    for name, value in a.transformer.params.items():
        np.testing.assert_array_equal(value, b.transformer.params[name])
    c, tc = tiny(steps=40, seed=1)
    list(tc.run())
    assert not np.array_equal(c.transformer.params["embed.W_E"], a.transformer.params["embed.W_E"])


def test_the_stop_flag_ends_the_run_between_steps():
    model, trainer = tiny(steps=1000)
    stop = threading.Event()
    for event in trainer.run(stop):
        if isinstance(event, StepMetrics) and event.step == 7:
            stop.set()
    assert trainer.result.status == "stopped" and trainer.result.steps == 7
    assert "Stopped after 7 steps" in trainer.result.message


def test_stop_at_accuracy_ends_early():
    model, trainer = tiny(steps=2000, stop_at_accuracy=1.0)
    list(trainer.run())
    assert trainer.result.status == "reached_target" and trainer.result.steps < 2000


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # inf - inf in the loss is the point
@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_a_non_finite_loss_stops_with_a_message_and_no_update(bad):
    model, trainer = tiny(steps=50)
    model.transformer.params["unembed.b_U"][3] = bad  # every logit row now holds a NaN/inf
    before = {k: v.copy() for k, v in model.transformer.params.items()}
    list(trainer.run())
    assert trainer.result.status == "diverged" and trainer.result.steps == 0
    assert "step 1" in trainer.result.message and "smaller learning rate" in trainer.result.message
    for name, value in model.transformer.params.items():
        np.testing.assert_array_equal(value, before[name])


def test_training_reports_the_learning_rate_schedule():
    model, trainer = tiny(steps=30, warmup_steps=10)
    lrs = [e.lr for e in trainer.run() if isinstance(e, StepMetrics)]
    assert lrs[0] == pytest.approx(1e-3) and lrs[9] == pytest.approx(1e-2)  # linear warm-up
    assert lrs[-1] < lrs[10]  # then cosine decay


def test_the_snapshot_schedule_adds_early_snapshots_to_the_evaluations():
    from model_core.training.trainer import is_validation_step, snapshot_steps

    cfg = TrainConfig(steps=300, eval_every=50)
    assert snapshot_steps(cfg) == [0, 50, 100, 150, 200, 250, 300]
    assert snapshot_steps(cfg, (10, 200)) == list(range(0, 201, 10)) + [250, 300]
    assert snapshot_steps(TrainConfig(steps=95, eval_every=40), (10, 200)) == list(range(0, 91, 10)) + [95]
    assert snapshot_steps(TrainConfig(steps=500, eval_every=25), (10, 100))[:13] == [0, 10, 20, 25, 30, 40, 50, 60,
                                                                                     70, 75, 80, 90, 100]  # fmt: skip
    assert [s for s in range(301) if is_validation_step(s, cfg)] == snapshot_steps(cfg)


def test_early_snapshots_measure_the_model_without_changing_the_run():
    model, trainer = tiny(steps=60, eval_every=25)
    seen = []  # (step, a copy of a weight) at every call of `measure`

    def measure(m):
        seen.append(m.transformer.params["blocks.0.attn.W_Q"].copy())
        return len(seen)

    trainer.early_snapshots, trainer.measure = (10, 40), measure
    weights_at = {}
    evals = []
    for event in trainer.run():
        if isinstance(event, StepMetrics):
            weights_at[event.step] = model.transformer.params["blocks.0.attn.W_Q"].copy()
        else:
            evals.append(event)
    assert [e.step for e in evals] == [0, 10, 20, 25, 30, 40, 50, 60]
    assert [e.step for e in evals if e.validated] == [0, 25, 50, 60]  # validation on its own schedule only
    assert all(e.accuracy is None and e.per_op is None for e in evals if e.step in (10, 20, 30, 40))
    assert [e.mechanism for e in evals] == list(range(1, 9))  # measured once at every snapshot, in order
    for e, w in zip(evals[1:], seen[1:], strict=True):
        np.testing.assert_array_equal(w, weights_at[e.step])  # of the weights after that many steps
    plain, t2 = tiny(steps=60, eval_every=25)
    list(t2.run())
    for name, value in plain.transformer.params.items():  # the snapshots change nothing in the run
        np.testing.assert_array_equal(value, model.transformer.params[name])


def test_the_early_stop_reads_validation_only():
    model, trainer = tiny(steps=2000, eval_every=100, stop_at_accuracy=1.0)
    trainer.early_snapshots = (5, 400)
    evals = [e for e in trainer.run() if isinstance(e, EvalMetrics)]
    assert trainer.result.status == "reached_target" and trainer.result.steps % 100 == 0
    assert evals[-1].validated and evals[-1].accuracy == 1.0


def test_training_records_the_gradient_norm_before_clipping():
    model, trainer = tiny(steps=5, grad_clip=0.1)
    norms = [e.grad_norm for e in trainer.run() if isinstance(e, StepMetrics)]
    assert len(norms) == 5 and all(n > 0.1 for n in norms)  # above the clip: the norm before clipping
