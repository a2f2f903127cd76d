"""Which sessions watch a training job, and when an unwatched one is stopped (model_core.training.watchers)."""

from __future__ import annotations

import threading
import time

from model_core.training.watchers import Watchers


class FakeJob:
    def __init__(self, job_id: str):
        self.id = job_id
        self.stopped = threading.Event()

    def stop(self) -> None:
        self.stopped.set()


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_reload_within_the_grace_keeps_the_job_and_a_forgotten_one_is_stopped():
    clock = Clock()
    w = Watchers(grace_s=60, clock=clock)
    job = FakeJob("a")
    w.watch(job, "tab-1")
    w.leave("a", "tab-1")  # the reload: the old session ends...
    clock.now = 59.0
    assert w.find("a") is job and not job.stopped.is_set()
    w.watch(job, "tab-2")  # ... and the new one takes the job up
    clock.now = 500.0
    w.expire()
    assert not job.stopped.is_set() and w.watched("a") == 1
    w.leave("a", "tab-2")  # now nobody comes back
    clock.now = 559.0
    assert w.find("a") is job
    clock.now = 560.0
    assert w.find("a") is None and job.stopped.is_set()


def test_a_job_two_sessions_watch_runs_until_both_have_gone():
    clock = Clock()
    w = Watchers(grace_s=10, clock=clock)
    job = FakeJob("b")
    w.watch(job, "teacher")
    w.watch(job, "student")  # opened the shared link
    w.leave("b", "teacher")
    clock.now = 100.0
    w.expire()
    assert not job.stopped.is_set() and w.find("b") is job
    w.leave("b", "student")
    clock.now = 110.0
    w.expire()
    assert job.stopped.is_set() and w.find("b") is None
    w.leave("b", "student")  # a late release of a forgotten job is harmless


def test_unknown_ids_are_not_found():
    w = Watchers(grace_s=1)
    assert w.find("no-such-job") is None
    w.leave("no-such-job", "tab")


def test_the_countdown_fires_by_itself():
    """Nothing else may look at the registry after the last tab closed: a timer stops the job."""
    w = Watchers(grace_s=0.2)
    job = FakeJob("c")
    w.watch(job, "tab")
    w.leave("c", "tab")
    assert job.stopped.wait(5.0)
    assert w.find("c") is None
    time.sleep(0)  # the timer thread is a daemon: nothing to join
