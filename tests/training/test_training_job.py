"""TrainingJob: a Trainer in a background thread that a UI polls (no Streamlit here)."""

from __future__ import annotations

import time

import numpy as np
import pytest

from model_core import (
    ConfigError,
    EvalMetrics,
    ModelConfig,
    TaskConfig,
    TaskError,
    TaskModel,
    TrainConfig,
    enumerate_all,
)
from model_core.analysis.attention import strongest_attention
from model_core.interp import probe as pr
from model_core.training import job as tj
from model_core.training import queue as tq
from model_core.training import worker
from model_core.training.job import TrainingJob

TINY = {"n_layers": 1, "n_heads": 2, "d_model": 16, "d_ff": 32}
MAX2 = TaskConfig(operations=("Max",), n_args=2)  # 100 expressions: learnt in a few hundred steps


def tiny_job(steps: int = 300, task: TaskConfig = MAX2, model: dict | None = None, **train) -> TrainingJob:
    train = {"batch_size": 32, "lr": 1e-2, "warmup_steps": 5, "eval_every": 50} | train
    return TrainingJob(task, TrainConfig(steps=steps, **train), model or TINY)


def test_runs_to_the_end_and_the_trained_model_answers():
    job = tiny_job()
    assert job.status == "pending" and job.model is None and job.snapshot().steps_done == 0
    assert job.start()
    assert not job.start()  # one thread per job
    seen = []
    while not job.done:
        seen.append(job.snapshot().progress)
        time.sleep(0.005)
    assert job.join(30)
    assert seen == sorted(seen) and any(0 < p < 1 for p in seen)
    snap = job.snapshot()
    assert job.status == snap.status == "finished" and snap.progress == 1.0 and snap.steps_done == 300
    assert "Trained for 300 steps" in job.message and "Held-out accuracy" in job.message
    assert [e.step for e in snap.validations] == [0, 50, 100, 150, 200, 250, 300]
    assert [e.step for e in snap.evals] == list(range(0, 101, 10)) + [150, 200, 250, 300] == job.snapshot_steps()
    assert snap.loss[-20:].mean() < snap.loss[:20].mean() / 2
    assert snap.steps_per_s > 0 and snap.elapsed_s > 0
    model = job.model
    assert model.evaluate(enumerate_all(MAX2))["accuracy"] >= 0.95
    assert [model.answer(t).value for t in ("Max ( 3 8 )", "Max ( 9 0 )", "Max ( 5 5 )")] == [8, 9, 5]
    assert model.name == job.name == "trained: 0-9, 2 values, Max, 1×2 d16 (seed 0)"
    assert model.train_config == job.train
    assert all(not p.flags.writeable for p in model.transformer.params.values())  # handed out read-only


def test_stop_mid_run_ends_stopped_quickly():
    job = tiny_job(steps=tj.MAX_STEPS, eval_every=5000)
    job.start()
    while job.snapshot().steps_done < 5:
        time.sleep(0.005)
    t0 = time.perf_counter()
    job.stop()
    assert job.join(10)
    assert time.perf_counter() - t0 < 5
    snap = job.snapshot()
    assert snap.status == "stopped" and 5 <= snap.steps_done < tj.MAX_STEPS
    assert snap.message.startswith(f"Stopped after {snap.steps_done} steps.")
    assert 0 < snap.progress < 1 and job.model is not None


def test_stop_before_start():
    job = tiny_job()
    job.stop()
    assert job.done and job.status == "stopped" and not job.start()


def test_a_diverging_learning_rate_ends_diverged_with_a_message():
    # SGD at lr 10 without gradient clipping: the loss overflows within a few dozen steps.
    job = tiny_job(steps=500, optimizer="sgd", lr=10.0, grad_clip=0.0, warmup_steps=0)
    job.start()
    assert job.join(30)
    assert job.status == "diverged"
    assert "became" in job.message and "Try a smaller learning rate" in job.message
    assert job.snapshot().steps_done < 500
    assert all(np.isfinite(p).all() for p in job.model.transformer.params.values())  # last finite weights


@pytest.mark.parametrize(
    "task, train, model, error",
    [
        (TaskConfig(), {}, {"d_model": 30, "n_heads": 4}, lambda: ModelConfig(d_model=30, n_heads=4)),
        (TaskConfig(max_value=99), {}, {}, None),  # bidirectional on 0-99
        ({"operations": ["Foo"]}, {}, {}, lambda: TaskConfig(operations=("Foo",))),
        (TaskConfig(), {"lr": 0.0}, {}, lambda: TrainConfig(lr=0.0)),
    ],
)
def test_an_invalid_config_is_refused_with_the_error_message(task, train, model, error):
    job = TrainingJob(task, train, model)
    assert job.status == "failed" and job.done and job.model is None
    assert not job.start() and job._thread is None
    if error is not None:
        with pytest.raises((ConfigError, TaskError)) as err:
            error()
        assert job.message == str(err.value)
    else:
        assert "causal" in job.message
    assert job.snapshot().steps_done == 0


@pytest.mark.parametrize(
    "model, train, task, words",
    [
        ({"d_model": 260, "n_heads": 4}, {}, {}, "Width (d_model) is 260; this app trains at most 256"),
        ({"n_layers": 5}, {}, {}, "Blocks (layers) is 5; this app trains at most 4"),
        ({"n_heads": 16}, {}, {}, "Heads is 16; this app trains at most 8"),
        ({"d_ff": 2048}, {}, {}, "FFN width (d_ff) is 2,048; this app trains at most 1,024"),
        ({"n_layers": 4, "d_model": 256, "d_ff": 1024}, {}, {}, "this app trains at most 2,000,000"),
        ({}, {"steps": 20_001}, {}, "Training steps is 20,001; this app trains at most 20,000"),
        ({}, {"batch_size": 513}, {}, "Batch size is 513; this app trains at most 512"),
        ({"causal": True}, {}, {"max_value": 100}, "The largest value is 100; this app trains at most 99"),
        ({"causal": True}, {}, {"n_args": 6, "max_value": 99}, "The number of values is 6; this app trains at most 5"),
    ],
)
def test_limits(model, train, task, words):
    job = TrainingJob(TaskConfig(**task), TrainConfig(**train), model)
    assert job.status == "failed" and words in job.message and not job.start()
    with pytest.raises(tj.LimitError):
        tj.check_limits(TaskConfig(**task), tj.model_config(model), TrainConfig(**train))


def test_limits_allow_their_edges():
    big = tj.model_config({"n_layers": 2, "d_model": 256, "n_heads": 8, "d_ff": 1024})
    task = TaskConfig(max_value=99, n_args=5)
    most = tj.max_steps_for(task, big, 512)  # the largest model's steps fit in one run's time at the expected pace
    assert 100 < most < tj.MAX_STEPS and most * tq.expected_seconds_per_step(task, big, 512) <= tj.MAX_RUN_S
    tj.check_limits(task, big, TrainConfig(steps=most, batch_size=512))
    with pytest.raises(tj.LimitError, match=f"Training steps is {most + 1:,}; at this size a step takes about .* so "
                                         f"this app trains at most {most:,} steps of it"):  # fmt: skip
        tj.check_limits(task, big, TrainConfig(steps=most + 1, batch_size=512))
    small = tj.model_config({})
    assert tj.max_steps_for(TaskConfig(), small, 64) == tj.MAX_STEPS  # the default model: every step allowed
    tj.check_limits(TaskConfig(), small, TrainConfig(steps=tj.MAX_STEPS, batch_size=64))
    assert tj.count_params(big) == sum(p.size for p in TaskModel.new(TaskConfig(), **{
        "n_layers": 2, "d_model": 256, "n_heads": 8, "d_ff": 1024}).transformer.params.values())  # fmt: skip
    assert "2,000,000 parameters" in tj.limits_text()


def test_snapshots_are_consistent_while_the_thread_runs():
    job = tiny_job(steps=200, eval_every=20)
    job.start()
    shots = []
    while not job.done:
        shots.append(job.snapshot())
        time.sleep(0.002)
    shots.append(job.snapshot())
    assert len(shots) > 5
    for s in shots:
        n = s.steps_done
        assert len(s.loss) == len(s.accuracy) == len(s.lr) == len(s.grad_norm) == n
        np.testing.assert_array_equal(s.step, np.arange(1, n + 1))
        assert (s.loss > 0).all() and (s.lr > 0).all()  # no unwritten slots
        steps = [e.step for e in s.evals]
        assert steps == sorted(steps) and (not steps or steps[-1] <= n)
        assert s.progress == (1.0 if s.status == "finished" else n / 200)
    final = shots[-1]
    for s in shots[:-1]:  # every earlier snapshot is a prefix of the final record
        np.testing.assert_array_equal(s.loss, final.loss[: s.steps_done])
    final.loss[0] = -1.0  # a snapshot is a copy
    assert job.snapshot().loss[0] > 0
    with pytest.raises(ValueError):
        final.evals[-1].attention[0, 0, 0, 0] = 1.0  # snapshots of attention are read-only


def test_the_same_config_twice_gives_bit_identical_weights():
    models = []
    for _ in range(2):
        job = tiny_job(steps=60, eval_every=30)
        job.start()
        job.join(30)
        models.append((job.model.transformer.params, job.snapshot().loss))
    (p1, l1), (p2, l2) = models
    assert p1.keys() == p2.keys()
    assert all(np.array_equal(p1[k], p2[k]) for k in p1)
    np.testing.assert_array_equal(l1, l2)
    job = tiny_job(steps=60, eval_every=30, seed=1)  # a different seed changes the batches
    job.start()
    job.join(30)
    assert not np.array_equal(job.model.transformer.params["embed.W_E"], p1["embed.W_E"])


def test_the_probe_is_the_given_example_when_the_task_reads_it():
    job = TrainingJob(TaskConfig(), TrainConfig(steps=2, eval_every=1), TINY, probe="min(4, 8, 1)")
    job.start()
    job.join(30)
    snap = job.snapshot()
    assert snap.probe_text == "Min ( 4 8 1 )" and snap.probe_tokens[-1] == "="
    ev = snap.evals[-1]
    assert ev.attention.shape == (1, 2, len(snap.probe_tokens), len(snap.probe_tokens))
    np.testing.assert_allclose(ev.attention.sum(-1), 1.0, rtol=1e-5)
    other = TrainingJob(MAX2, TrainConfig(steps=1), TINY, probe="Min ( 4 8 1 )")  # not in this task
    other.start()
    other.join(30)
    assert other.snapshot().probe_text.startswith("Max (")


def test_thin_indices():
    np.testing.assert_array_equal(tj.thin_indices(7, 500), np.arange(7))
    for n in (501, 1000, 20_000):
        idx = tj.thin_indices(n, 500)
        assert len(idx) <= 500 and idx[0] == 0 and idx[-1] == n - 1 and (np.diff(idx) > 0).all()
        assert np.diff(idx).max() <= np.ceil((n - 1) / 499)  # evenly spread: no large gaps


def test_curves_show_recorded_values_at_thinned_steps():
    rng = np.random.default_rng(0)
    n = 1200
    snap = tj.JobSnapshot(
        "finished", "", n, np.arange(1, n + 1), rng.random(n) + 0.1, rng.random(n), np.ones(n), np.ones(n),
        (EvalMetrics(0, 0.1, {"Max": 0.1}, np.zeros((1, 1, 2, 2)), 0.0),
         EvalMetrics(n, 0.9, {"Max": 0.9}, np.zeros((1, 1, 2, 2)), 1.0)), 2.0,
    )  # fmt: skip
    cols = snap.curves(max_points=500)
    k = len(tj.thin_indices(n, 500))
    assert len(cols["step"]) == 2 * k + 2
    loss = cols["metric"] == "loss"
    np.testing.assert_array_equal(cols["value"][loss], snap.loss[cols["step"][loss] - 1])  # the recorded values
    train_acc = (cols["metric"] == "accuracy") & (cols["split"] == "train")
    np.testing.assert_array_equal(cols["value"][train_acc], snap.accuracy[cols["step"][train_acc] - 1])
    val = cols["split"] == "validation"
    assert cols["step"][val].tolist() == [0, n] and cols["value"][val].tolist() == [0.1, 0.9]
    assert snap.op_accuracy() == {"operation": ["Max"], "accuracy": [0.9]}
    assert [(e.step, e.per_op) for e in snap.validations] == [(0, {"Max": 0.1}), (n, {"Max": 0.9})]
    assert snap.steps_per_s == n / 2.0


def test_strongest_attention_matches_a_loop():
    pattern = np.random.default_rng(1).dirichlet(np.ones(6), size=(4, 6))  # [head, q, k]
    for q in range(6):
        best = max(((h, k) for h in range(4) for k in range(6)), key=lambda hk: pattern[hk[0], q, hk[1]])
        assert strongest_attention(pattern, q) == (*best, pattern[best[0], q, best[1]])


def test_default_name():
    cfg = tj.model_config({})
    assert tj.default_name(TaskConfig(), cfg, 0) == "trained: 0-9, 2×4 d64 (seed 0)"


def test_every_snapshot_records_the_mechanism_on_the_probe_set():
    job = tiny_job(steps=60, task=TaskConfig(operations=("First", "Max")), eval_every=25)
    job.start()
    assert job.join(60) and job.status == "finished"
    snap = job.snapshot()
    assert [e.step for e in snap.evals] == [0, 10, 20, 25, 30, 40, 50, 60] == job.snapshot_steps()
    assert [e.step for e in snap.validations] == [0, 25, 50, 60]
    assert snap.latest_eval.step == 60 and snap.op_accuracy()["operation"] == ["First", "Max"]
    # the probe set: held-out expressions of the task, the same ones the job was given
    probe = job.probe_set
    np.testing.assert_array_equal(probe.ids(), pr.probe_set(job.task, seed=0).ids())
    assert snap.probe_set_text == "50 expressions, 25 per operation; held-out (validation) expressions"
    assert [s for s, _ in snap.mechanism] == [e.step for e in snap.evals] and not snap.mechanism_error
    # the first snapshot is the untrained model's, the last the trained model's
    first, last = snap.mechanism[0][1], snap.mechanism[-1][1]
    untrained = TaskModel.new(job.task, **TINY)
    for got, model in ((first, untrained), (last, job.model)):
        want = pr.mechanism_metrics(model, probe)
        np.testing.assert_array_equal(got.to_op, want.to_op)
        np.testing.assert_array_equal(got.ablated_accuracy, want.ablated_accuracy)
        assert got.per_op == want.per_op and got.top_component == want.top_component
    assert snap.heads == ("L0H0", "L0H1") and snap.components == ("L0H0", "L0H1", "L0.mlp")


def test_mechanism_columns_put_every_panel_on_one_step_axis():
    job = tiny_job(steps=30, task=TaskConfig(operations=("First", "Max")), eval_every=30)
    job.start()
    assert job.join(60)
    snap = job.snapshot()
    cols = snap.mechanism_columns(shown=20)
    assert len({len(v) for v in cols.values()}) == 1
    panel, series, step, value = cols["panel"], cols["series"], cols["step"], cols["value"]
    assert set(panel) == {*tj.MECHANISM_PANELS, tj.SHOWN} and set(series) <= set(snap.mechanism_series())
    m = dict(snap.mechanism)
    acc = panel == tj.PANEL_ACCURACY
    assert sorted(set(step[acc])) == [0, 10, 20, 30]
    for s_, op, v in zip(step[acc], series[acc], value[acc], strict=True):
        assert v == m[s_].per_op[op]
    on = (panel == tj.PANEL_TO_OP) & (step == 30)
    np.testing.assert_allclose(value[on], m[30].to_op.mean(axis=1))
    np.testing.assert_allclose(cols["First"][on], m[30].to_op[:, 0])
    top = panel == tj.PANEL_TOP
    assert list(series[top]) == [m[s_].top_component for s_ in (0, 10, 20, 30)]
    np.testing.assert_allclose(value[top], [m[s_].top_drop for s_ in (0, 10, 20, 30)])
    np.testing.assert_array_equal(value[panel == tj.PANEL_GRAD], snap.grad_norm)  # 30 steps: none thinned
    np.testing.assert_array_equal(value[panel == tj.PANEL_LR], snap.lr)
    assert step[panel == tj.SHOWN].tolist() == [20]
    assert tj.SHOWN not in snap.mechanism_columns()["panel"]
    long = tiny_job(steps=1200, task=MAX2, eval_every=600)  # a long curve is thinned to <= MAX_POINTS
    long.start()
    assert long.join(120)
    lr_steps = long.snapshot().mechanism_columns()["step"][long.snapshot().mechanism_columns()["panel"] == tj.PANEL_LR]
    assert len(lr_steps) <= tj.MAX_POINTS and lr_steps[0] == 1 and lr_steps[-1] == 1200


def test_a_failing_measurement_does_not_end_the_run(monkeypatch):
    def broken(model, probe):
        raise ValueError("no luck")

    monkeypatch.setenv(worker.ENV_VAR, "thread")  # in this process, where the patch is
    monkeypatch.setattr(worker, "mechanism_metrics", broken)
    job = tiny_job(steps=20)
    job.start()
    assert job.join(30) and job.status == "finished"
    snap = job.snapshot()
    assert snap.mechanism_error == "ValueError: no luck" and snap.mechanism == () and len(snap.evals) == 3


def test_mechanism_columns_thin_a_long_run_to_max_points_snapshots():
    from model_core.interp.input_space import HeadRoles

    z = np.zeros((2, 1))
    m = pr.MechanismMetrics(HeadRoles(["L0H0", "L0H1"], ["Max"], z + 0.5, z + 0.25, z, z, n=4), 0.75, {"Max": 0.75},
                            ("L0H0", "L0H1", "L0.mlp"), np.array([0.5, 0.75, 0.75]), np.zeros((3, 1)), n=4)  # fmt: skip
    n = 2000
    evals = tuple(EvalMetrics(s, None, None, np.zeros((1, 2, 2, 2)), 0.0, m) for s in range(0, n + 1, 2))
    snap = tj.JobSnapshot("finished", "", n, np.arange(1, n + 1), np.ones(n), np.ones(n), np.ones(n), np.ones(n),
                          evals, 1.0, operations=("Max",), heads=("L0H0", "L0H1"),
                          components=("L0H0", "L0H1", "L0.mlp"))  # fmt: skip
    cols = snap.mechanism_columns()
    for panel in tj.MECHANISM_PANELS:
        steps = cols["step"][cols["panel"] == panel]
        assert len(set(steps)) <= tj.MAX_POINTS and steps.min() in (0, 1) and steps.max() == n, panel
    top = cols["panel"] == tj.PANEL_TOP
    assert set(cols["series"][top]) == {"L0H0"} and np.allclose(cols["value"][top], 0.25)
    on = cols["panel"] == tj.PANEL_TO_OP
    assert np.allclose(cols["value"][on], 0.5) and np.allclose(cols["Max"][on], 0.5)


def test_a_run_that_reaches_the_time_limit_stops_and_says_why():
    """One run holds the server's trainer: past `max_run_s` of training it stops like a Stop press, and says so."""
    job = tiny_job(steps=20_000, eval_every=5_000)
    job.max_run_s = 0.5
    started = time.perf_counter()
    job.start()
    assert job.join(60)
    snap = job.snapshot()
    assert snap.status == "stopped" and 0 < snap.steps_done < 20_000
    assert f"Stopped at the time limit of {0.5 / 60:g} minutes per run" in snap.message
    assert f"after {snap.steps_done:,} steps" in snap.message
    assert time.perf_counter() - started < 30
    assert "15 minutes of training per run" in tj.limits_text()


def test_a_run_within_the_time_limit_is_not_cut():
    job = tiny_job(steps=20, eval_every=10)
    job.start()
    assert job.join(60)
    assert job.snapshot().status == "finished" and "time limit" not in job.snapshot().message


def test_duration_text_is_the_expected_pace_times_the_steps():
    task, model = TaskConfig(), tj.model_config({})
    step_s = tq.expected_seconds_per_step(task, model, 64)
    text = tj.duration_text(task, model, TrainConfig(steps=3000, batch_size=64))
    assert text == (f"A step of these settings takes about {step_s * 1000:.2g}\u00a0ms on this server (an estimate): "
                    f"3,000 steps, {tq.about(3000 * step_s)}. At this size a run may have up to 20,000 steps.")
    big = tj.model_config({"n_layers": 4, "d_model": 256, "n_heads": 8, "d_ff": 448, "causal": True})
    text = tj.duration_text(TaskConfig(max_value=99, n_args=5), big, TrainConfig(steps=100, batch_size=512))
    most = tj.max_steps_for(TaskConfig(max_value=99, n_args=5), big, 512)
    assert f"may have up to {most:,} steps" in text and most < tj.MAX_STEPS and "\u00a0s on this server" in text


def test_a_sum_task_counts_its_own_vocabulary_and_a_small_train_size_names_the_lengths():
    job = TrainingJob(TaskConfig(operations=("Max", "Sum")), TrainConfig(steps=10), {"causal": True})
    assert job.status != "failed" and job.model_config.vocab_size == 22  # the Sum token too
    lists = TaskConfig(min_args=2, n_args=10)
    job = TrainingJob(lists, TrainConfig(steps=10), {"causal": True}, train_size=40)
    assert job.status == "failed" and "at least one expression per operation and length (45)" in job.message


def test_each_evaluation_of_a_lists_task_scores_a_capped_seeded_sample_of_validation():
    from model_core.task import make_splits
    from model_core.training.trainer import VALIDATION_CAP, validation_set

    splits = make_splits(TaskConfig(min_args=2, n_args=10), seed=4)
    val = validation_set(splits)
    assert len(splits.val) == 45_000 and len(val) == VALIDATION_CAP
    assert set(val.ids().tolist()) <= set(splits.val.ids().tolist())  # validation expressions only
    assert np.array_equal(val.ids(), validation_set(splits).ids())  # the same each time
    assert set(val.lengths.tolist()) == set(range(2, 11))
    small = make_splits(TaskConfig(), seed=0)
    assert validation_set(small) is small.val  # 500: whole, as before
