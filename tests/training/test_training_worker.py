"""Training in a worker process (model_core/training/worker.py): the same run as in a thread, stopped and failed
cleanly, at a lower priority, and never holding the server's interpreter."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import numpy as np
import pytest

from model_core import TaskConfig, TrainConfig
from model_core.training import worker
from model_core.training.job import TrainingJob

TINY = {"n_layers": 1, "n_heads": 2, "d_model": 16, "d_ff": 32}
MAX2 = TaskConfig(operations=("Max",), n_args=2)


def job(steps: int = 120, **train) -> TrainingJob:
    train = {"batch_size": 32, "lr": 1e-2, "warmup_steps": 5, "eval_every": 40} | train
    return TrainingJob(MAX2, TrainConfig(steps=steps, **train), TINY, probe="Max ( 3 8 )")


def finished(j: TrainingJob, timeout: float = 60) -> TrainingJob:
    j.start()
    assert j.join(timeout), j.message
    return j


def running(steps_done: int) -> TrainingJob:
    """A long run, once it has done this many steps."""
    j = job(steps=20_000, eval_every=5_000)
    j.start()
    deadline = time.monotonic() + 30
    while j.snapshot().steps_done < steps_done and time.monotonic() < deadline:
        time.sleep(0.02)
    assert j.snapshot().steps_done >= steps_done, j.message
    return j


def worker_pids() -> list[int]:
    """This process's children that are training workers, from /proc."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == os.getpid() and b"model_core.training.worker" in cmdline:
            pids.append(int(entry.name))
    return pids


def niceness(pid: int) -> int:
    return int((Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[16])


def test_the_setting_reads_process_unless_thread():
    assert worker.in_process({}) and worker.in_process({worker.ENV_VAR: "process"})
    assert not worker.in_process({worker.ENV_VAR: " Thread "})


def test_a_run_in_a_worker_process_is_the_run_in_a_thread(monkeypatch):
    """Bit for bit: the same steps' losses, the same snapshots, the same trained weights and metadata."""
    monkeypatch.setenv(worker.ENV_VAR, "process")
    there = finished(job())
    monkeypatch.setenv(worker.ENV_VAR, "thread")
    here = finished(job())
    a, b = there.snapshot(), here.snapshot()
    assert a.status == b.status == "finished" and a.message == b.message
    for key in ("loss", "accuracy", "lr", "grad_norm"):
        np.testing.assert_array_equal(getattr(a, key), getattr(b, key))
    assert [e.step for e in a.evals] == [e.step for e in b.evals]
    for x, y in zip(a.evals, b.evals, strict=True):
        np.testing.assert_array_equal(x.attention, y.attention)
        assert x.per_op == y.per_op and x.probe_answer == y.probe_answer
        assert (x.mechanism is None) == (y.mechanism is None)
    assert (a.probe_text, a.probe_tokens, a.probe_set_text) == (b.probe_text, b.probe_tokens, b.probe_set_text)
    np.testing.assert_array_equal(there.probe_set.ids(), here.probe_set.ids())
    for name, value in here.model.transformer.params.items():
        np.testing.assert_array_equal(there.model.transformer.params[name], value, err_msg=name)
        assert not there.model.transformer.params[name].flags.writeable  # handed out read-only, as in a thread
    assert there.model.train_config == here.model.train_config == here.train
    # The same record, but for the wall time, and the BLAS threads (the worker uses one, as the server; this test
    # process, without the app, the library's default).
    def record(model):
        m = dict(model.metrics)
        del m["wall_s"]
        m["trained_on"] = {k: v for k, v in m["trained_on"].items() if k != "blas_threads"}
        return m

    assert record(there.model) == record(here.model) and there.model.metrics["trained_on"]["blas_threads"] == 1
    assert [w.relative for w in a.weight_change] == [w.relative for w in b.weight_change]


def test_the_worker_trains_at_a_lower_priority_and_stop_reaches_it(monkeypatch):
    monkeypatch.setenv(worker.ENV_VAR, "process")
    j = running(5)
    mine = niceness(os.getpid())
    assert worker.NICE > 0 and any(niceness(p) == min(19, mine + worker.NICE) for p in worker_pids())
    asked = time.monotonic()
    j.stop()
    assert j.join(10)
    assert time.monotonic() - asked < 5 and j.status == "stopped" and 0 < j.snapshot().steps_done < 20_000
    assert j.model is not None and j.model.train_config == j.train  # a stopped run's model comes back too


def test_a_worker_that_dies_fails_its_run_and_the_next_run_trains(monkeypatch):
    monkeypatch.setenv(worker.ENV_VAR, "process")
    j = running(3)
    for pid in worker_pids():  # the running one and the spare: as if the system killed them for memory
        os.kill(pid, signal.SIGKILL)
    assert j.join(15)
    assert j.status == "failed" and j.message.startswith("The training process ended unexpectedly, exit status -9")
    assert "out of memory" in j.message
    again = finished(job(steps=40))
    assert again.status == "finished", again.message  # a new worker replaces them


@pytest.mark.parametrize("mode", ["process", "thread"])
def test_a_run_that_fails_in_the_worker_says_why(monkeypatch, mode):
    """A train_size the trainer refuses with hard_fraction: the trainer's error, as a message, either way."""
    monkeypatch.setenv(worker.ENV_VAR, mode)
    j = finished(TrainingJob(MAX2, TrainConfig(steps=10, hard_fraction=0.5), TINY, train_size=20))
    assert j.status == "failed" and "hard_fraction" in j.message and "Training failed: ValueError" in j.message
