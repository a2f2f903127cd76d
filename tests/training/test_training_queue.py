"""The server's one trainer: jobs beyond MAX_RUNNING_JOBS wait in line; and the memory estimate that refuses jobs."""

from __future__ import annotations

import inspect
import logging
import time
import tracemalloc

import pytest

from model_core import TaskConfig, TrainConfig, make_splits
from model_core.limits import MAX_D_FF, MAX_D_MODEL, MAX_HEADS, MAX_LAYERS, MAX_PARAMS, count_params
from model_core.task import OPERATIONS
from model_core.training import job as tj
from model_core.training import memory, worker
from model_core.training import queue as tq
from model_core.training.job import TrainingJob

TINY = {"n_layers": 1, "n_heads": 2, "d_model": 16, "d_ff": 32}
MAX2 = TaskConfig(operations=("Max",), n_args=2)
BIG_TASK = TaskConfig(max_value=99, n_args=5)  # the longest sequences the Train page allows


@pytest.fixture
def one_at_a_time(monkeypatch):
    """A cap of 1, whatever the environment says; restored after the test."""
    monkeypatch.setattr(tq, "MAX_RUNNING_JOBS", 1)
    assert not tq.QUEUE.running() and not tq.QUEUE.waiting(), "a job of another test is still in the queue"


def tiny_job(steps: int = 150, **train) -> TrainingJob:
    return TrainingJob(MAX2, TrainConfig(steps=steps, **({"batch_size": 32, "eval_every": 50} | train)), TINY)


def wait_for_steps(job: TrainingJob, n: int = 1, timeout: float = 30) -> None:
    deadline = time.perf_counter() + timeout
    while job.snapshot().steps_done < n:
        assert time.perf_counter() < deadline, f"no step within {timeout} s: {job.status}"
        time.sleep(0.005)


def test_jobs_beyond_the_cap_wait_in_line_and_run_in_order(one_at_a_time):
    jobs = [tiny_job(steps=600), tiny_job(), tiny_job()]  # the first long enough to look at the line
    assert all(job.start() for job in jobs)
    assert [j.status for j in jobs] == ["running", "queued", "queued"]
    snaps = [j.snapshot() for j in jobs]
    assert [s.queue_position for s in snaps] == [None, 1, 2]
    assert all(s.running and not s.done and s.steps_done == 0 and s.elapsed_s == 0 for s in snaps[1:])
    assert tq.QUEUE.running() == jobs[:1] and tq.QUEUE.waiting() == jobs[1:]
    wait_for_steps(jobs[0], 5)
    second, third = jobs[1].snapshot(), jobs[2].snapshot()  # the first job has a pace now: an estimated wait
    assert second.queued and 0 < second.wait_s < third.wait_s  # the third waits for the second's steps too
    assert second.wait_s == pytest.approx(jobs[0]._remaining_s(), rel=0.5)
    for job in jobs:
        assert job.join(60) and job.status == "finished"
    for before, after in zip(jobs, jobs[1:], strict=False):  # each started only once the one before had ended
        assert after._started_at >= before._ended_at
    assert not tq.QUEUE.running() and not tq.QUEUE.waiting()
    assert all(j.snapshot().queue_position is None for j in jobs)


def test_stopping_a_queued_job_takes_it_out_of_line(one_at_a_time):
    first = tiny_job(steps=tj.MAX_STEPS, eval_every=5000)  # runs until stopped
    second, third, fourth = tiny_job(), tiny_job(), tiny_job()
    for job in (first, second, third, fourth):
        job.start()
    assert [j.snapshot().queue_position for j in (second, third, fourth)] == [1, 2, 3]
    second.stop()
    assert second.done and second.status == "stopped" and second.message == tj.NEVER_STARTED
    assert second._thread is None and second.snapshot().steps_done == 0 and second.model is not None
    assert [j.snapshot().queue_position for j in (third, fourth)] == [1, 2]  # the others moved up
    assert tq.QUEUE.waiting() == [third, fourth]
    fourth.stop()  # the last in line too
    assert fourth.status == "stopped" and tq.QUEUE.waiting() == [third]
    assert first.status == "running"  # stopping queued jobs does not touch the running one
    first.stop()
    assert first.join(10) and first.status == "stopped" and first.message.startswith("Stopped after")
    assert third.join(60) and third.status == "finished"
    assert not second.start()  # a stopped job stays stopped


def test_a_refused_job_takes_no_slot(one_at_a_time):
    bad = TrainingJob(MAX2, TrainConfig(steps=10), {"d_model": 30, "n_heads": 4})
    assert bad.status == "failed" and not bad.start()
    assert not tq.QUEUE.running() and not tq.QUEUE.waiting()
    good = tiny_job(steps=20)
    assert good.start() and good.status == "running"  # the slot was free: no line
    assert good.join(30) and good.status == "finished"


def test_the_wait_adds_up_the_jobs_ahead(one_at_a_time, monkeypatch):
    queue = tq.JobQueue()
    ahead = tiny_job(steps=100)  # never started: only its config is read
    running = tiny_job(steps=300)
    expected = tq.expected_step_s(ahead)
    assert expected == pytest.approx(tq.PACE_OVERHEAD_S + tq.PACE_PER_WORK_S * tq.step_work(ahead))
    assert queue._wait([(running, None)], []) == pytest.approx(300 * expected)  # no step yet: all of its steps
    assert queue._wait([(running, 12.0)], []) == 12.0
    assert queue._wait([(running, 12.0)], [ahead]) == pytest.approx(12.0 + 100 * expected)  # no pace measured yet
    queue._recent = (0.05, tq.step_work(ahead))  # the latest job: 0.05 s per step at the same work per step
    assert queue._wait([(running, 12.0)], [ahead]) == pytest.approx(17.0)
    assert queue._wait([(running, None)], [ahead]) == pytest.approx(300 * 0.05 + 5.0)  # the measured pace
    bigger = TrainingJob(MAX2, TrainConfig(steps=100, batch_size=64), TINY)  # twice the work per step
    assert queue._wait([(running, 12.0)], [ahead, bigger]) == pytest.approx(27.0)
    monkeypatch.setattr(tq, "MAX_RUNNING_JOBS", 2)  # two slots: the job ahead takes the first to free
    assert queue._wait([(running, 12.0), (running, 3.0)], [ahead]) == pytest.approx(8.0)


def test_a_queued_job_has_a_wait_before_the_running_job_has_done_a_step(one_at_a_time):
    first = tiny_job(steps=tj.MAX_STEPS, eval_every=5000)
    second = tiny_job()
    first.start()
    second.start()
    snap = second.snapshot()  # at once: the first has not done a step (nor, perhaps, has its worker started)
    assert snap.queued and snap.queue_position == 1 and snap.wait_s is not None and snap.wait_s > 0
    assert "not known" not in tq.place_text(snap.queue_position, snap.wait_s)
    first.stop()
    second.stop()
    assert first.join(10)


def test_place_text(one_at_a_time, monkeypatch):
    want = "Queued: 2nd in line for the trainer (the server trains 1 model at a time); about 40 s."
    assert tq.place_text(2, 40.3) == want
    assert tq.place_text(1, None).startswith("Queued: 1st in line") and "not known yet" in tq.place_text(1, None)
    assert [tq.ordinal(n) for n in (1, 2, 3, 4, 11, 12, 13, 21, 22, 101, 111)] == [
        "1st", "2nd", "3rd", "4th", "11th", "12th", "13th", "21st", "22nd", "101st", "111th"]  # fmt: skip
    assert [tq.about(s) for s in (3, 12, 59, 61, 600, 7200)] == [
        "less than 10 s", "about 10 s", "about 60 s", "about 1 min", "about 10 min", "about 2.0 h"]  # fmt: skip
    monkeypatch.setattr(tq, "MAX_RUNNING_JOBS", 2)
    assert "(the server trains 2 models at a time)" in tq.place_text(3, 100)


@pytest.mark.parametrize(
    "value, want",
    [(None, 1), ("", 1), ("2", 2), (" 3 ", 3), ("64", 64), ("0", 1), ("-1", 1), ("1.5", 1), ("two", 1), ("65", 1)],
)
def test_the_environment_variable(value, want, caplog):
    environ = {} if value is None else {tq.ENV_VAR: value}
    with caplog.at_level(logging.ERROR, logger=tq.__name__):
        assert tq.max_running_from_env(environ) == want
    bad = value not in (None, "", "2", " 3 ", "64")
    assert bool(caplog.records) == bad
    if bad:
        assert tq.ENV_VAR in caplog.text and repr(value) in caplog.text and "using the default, 1" in caplog.text


# ---------------------------------------------------------------- the memory estimate


def test_an_over_budget_job_is_refused_at_once(monkeypatch):
    big = {"n_layers": 2, "n_heads": 8, "d_model": 256, "d_ff": 1024, "causal": True}
    monkeypatch.setattr(memory, "MAX_JOB_BYTES", 500_000_000)
    job = TrainingJob(BIG_TASK, TrainConfig(batch_size=512), big)
    assert job.status == "failed" and job.done and not job.start()
    need = memory.estimate_job_bytes(BIG_TASK, tj.model_config(big), TrainConfig(batch_size=512))
    assert need > 500_000_000
    assert f"would need about {need / 1e9:.2f} GB of memory" in job.message and "at most 0.50 GB" in job.message
    assert not tq.QUEUE.running() and not tq.QUEUE.waiting()
    assert TrainingJob(TaskConfig(), TrainConfig(), {}).status == "pending"  # the defaults still fit


@pytest.mark.parametrize("task", [BIG_TASK, TaskConfig(n_args=tj.MAX_ARGS),  # the longest examples the page allows
                                  TaskConfig(operations=tuple(OPERATIONS), n_args=tj.MAX_ARGS_NESTED, max_depth=2)])
def test_every_job_the_limits_allow_fits_the_default_budget(task):
    """The budget refuses nothing the other limits allow: the heaviest allowed jobs are estimated under it, on
    0-99 x 5 values, lists of 10 and nested expressions with Sum (32 tokens)."""
    heaviest = 0
    for layers in range(1, MAX_LAYERS + 1):
        for heads in (1, 2, 4, MAX_HEADS):
            for d_model in range(heads * 4, MAX_D_MODEL + 1, 32):
                for d_ff in range(64, MAX_D_FF + 1, 64):
                    cfg = tj.model_config({"n_layers": layers, "n_heads": heads, "d_model": d_model, "d_ff": d_ff,
                                           "causal": True}, task)  # fmt: skip
                    if count_params(cfg) <= MAX_PARAMS:
                        need = memory.estimate_job_bytes(task, cfg, TrainConfig(batch_size=tj.MAX_BATCH))
                        heaviest = max(heaviest, need)
    assert 0.5 * memory.MAX_JOB_BYTES < heaviest <= memory.MAX_JOB_BYTES


def test_the_estimate_follows_the_trainer():
    """The estimate's evaluation batch is the one the trainer evaluates with, and the largest split's size."""
    from model_core.training import trainer

    assert memory.EVAL_BATCH == inspect.signature(trainer.evaluate_with_loss).parameters["batch_size"].default
    assert inspect.getsource(trainer.Trainer).count("batch_size=EVAL_BATCH") == 2  # the held-out and train scores
    defaults = inspect.signature(make_splits).parameters
    assert (memory.TEST_FRACTION, memory.N_EVAL) == (defaults["test_fraction"].default, defaults["n_eval"].default)
    for task in (TaskConfig(), MAX2, TaskConfig(max_value=99, n_args=2), BIG_TASK):
        assert memory.evaluation_batch(task) == min(memory.EVAL_BATCH, len(make_splits(task).test))


def test_the_estimate_is_near_the_measured_peak(one_at_a_time, monkeypatch):
    """tracemalloc's peak over a whole job (NumPy reports its arrays to it) against the estimate."""
    monkeypatch.setenv(worker.ENV_VAR, "thread")  # tracemalloc sees this process only
    model = {"n_layers": 2, "n_heads": 4, "d_model": 64, "d_ff": 256, "causal": True}
    job = TrainingJob(BIG_TASK, TrainConfig(batch_size=128, steps=2, eval_every=2), model)
    tracemalloc.start()
    try:
        job.start()
        assert job.join(60) and job.status == "finished", job.message
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    ratio = memory.estimate_job_bytes(job.task, job.model_config, job.train) / peak
    assert 0.9 < ratio < 1.3, ratio  # measured: 1.10


def test_a_refusal_names_what_lowers_the_peak(monkeypatch):
    """The largest model on nested expressions peaks in its evaluation passes, which no batch size changes: under a
    budget below that, the message says so and does not advise a smaller batch; a huge batch's run peaks in its
    steps and is told that."""
    monkeypatch.setattr(memory, "MAX_JOB_BYTES", 1_000_000_000)
    nested = TaskConfig(operations=tuple(OPERATIONS), n_args=3, max_depth=2)
    big = {"n_layers": MAX_LAYERS, "n_heads": MAX_HEADS, "d_model": MAX_D_MODEL, "d_ff": 448, "causal": True}
    model = tj.model_config(big, nested)
    step, evaluation = memory._activations(nested, model, TrainConfig(batch_size=16))
    assert evaluation > step
    with pytest.raises(tj.LimitError, match="peak is an evaluation pass") as err:
        memory.check_memory(nested, model, TrainConfig(batch_size=16))
    assert "smaller batch" not in str(err.value)
    small = tj.model_config({"n_layers": 1, "n_heads": 2, "d_model": 32, "d_ff": 64})
    step, evaluation = memory._activations(TaskConfig(), small, TrainConfig(batch_size=10**6))
    assert step > evaluation
    with pytest.raises(tj.LimitError, match="Use a smaller batch"):
        memory.check_memory(TaskConfig(), small, TrainConfig(batch_size=10**6))
