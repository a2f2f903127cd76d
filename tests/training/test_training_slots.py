"""The machine's training slots shared by server processes (training/slots.py), and the queue that uses them: another
process's run (a real second process holding a slot file) makes a job here wait, and its end, even by SIGKILL,
lets the job run."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest

from model_core import TaskConfig, TrainConfig
from model_core.training import queue as tq
from model_core.training.job import TrainingJob
from model_core.training.slots import ENV_VAR, MachineSlots, slots_from_env

TINY = {"n_layers": 1, "n_heads": 2, "d_model": 16, "d_ff": 32}
MAX2 = TaskConfig(operations=("Max",), n_args=2)

# A second process that takes slot 0 the way the queue does, says so, and holds it until it is killed.
HOLDER = """
import fcntl, os, sys, time
fd = os.open(os.path.join(sys.argv[1], "slot-0.lock"), os.O_RDWR | os.O_CREAT, 0o600)
fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
print("held", flush=True)
time.sleep(600)
"""


def hold_slot_elsewhere(directory) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(directory)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def released(directory, timeout: float = 10) -> bool:
    """Whether slot 0 is free within `timeout`: a job gives its slot back just after `join` returns (its thread hands
    it to the next job in line once the run has ended)."""
    deadline = time.monotonic() + timeout
    while MachineSlots(directory).held(1):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def test_a_slot_is_held_once_and_freed_on_release(tmp_path):
    here, there = MachineSlots(tmp_path), MachineSlots(tmp_path)  # two holders of one directory
    a = here.try_acquire(2)
    b = there.try_acquire(2)
    assert (a.index, b.index) == (0, 1) and there.try_acquire(2) is None and here.held(2) == 2
    a.release()
    a.release()  # idempotent
    assert not a.held and here.held(2) == 1
    c = there.try_acquire(2)
    assert c.index == 0 and here.try_acquire(2) is None
    assert here.try_acquire(3).index == 2  # a larger limit has more slots


def test_a_process_that_dies_frees_its_slot(tmp_path):
    proc = hold_slot_elsewhere(tmp_path)
    slots = MachineSlots(tmp_path)
    assert slots.try_acquire(1) is None and slots.held(1) == 1
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    slot = slots.try_acquire(1)
    assert slot is not None and slot.index == 0
    slot.release()


def test_the_environment_variable(tmp_path, caplog):
    assert slots_from_env({}) is None and slots_from_env({ENV_VAR: "  "}) is None
    assert slots_from_env({ENV_VAR: str(tmp_path / "new")}).directory == tmp_path / "new"  # made if missing
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    assert slots_from_env({ENV_VAR: str(blocker)}) is None
    assert "cannot hold training slots" in caplog.text


@pytest.fixture
def shared_queue(monkeypatch, tmp_path):
    """This process's queue with the machine's slots in tmp_path, one at a time."""
    monkeypatch.setattr(tq, "MAX_RUNNING_JOBS", 1)
    monkeypatch.setattr(tq.QUEUE, "slots", MachineSlots(tmp_path))
    assert not tq.QUEUE.running() and not tq.QUEUE.waiting(), "a job of another test is still in the queue"
    return tmp_path


def test_another_process_s_run_makes_a_job_wait_until_it_ends(shared_queue):
    other = hold_slot_elsewhere(shared_queue)
    try:
        job = TrainingJob(MAX2, TrainConfig(steps=30, batch_size=32, eval_every=10), TINY)
        assert job.start() and job.status == "queued"
        time.sleep(3 * tq.RETRY_S)  # the line is tried again meanwhile: still held elsewhere
        snap = job.snapshot()
        assert job.status == "queued" and snap.queue_position == 1 and snap.wait_s is None
        assert "the wait is not known yet" in tq.place_text(snap.queue_position, snap.wait_s)
    finally:
        other.send_signal(signal.SIGKILL)  # that run ends (as abruptly as it can)
        other.wait()
    assert job.join(60) and job.status == "finished", job.message
    assert released(shared_queue)  # and the finished job gave its slot back


def test_a_job_here_holds_the_machine_slot_while_it_runs(shared_queue):
    job = TrainingJob(MAX2, TrainConfig(steps=20_000, batch_size=32, eval_every=5_000), TINY)
    assert job.start() and job.status == "running"
    assert MachineSlots(shared_queue).try_acquire(1) is None  # another process would wait
    job.stop()
    assert job.join(30)
    assert released(shared_queue)
