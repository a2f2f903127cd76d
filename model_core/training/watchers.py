"""Which browser sessions watch each training job, so that a reload or a shared link finds its job again.

A job belongs to no session: the Train page puts its id in the URL (`?job=<id>`), and any session of this server
process that opens that URL watches it (a reload is a new session). When the last watcher goes (a closed tab, a
reload, a session that started another run), the job keeps running for `GRACE_S` seconds; if nobody watches it
again by then it is stopped, so a forgotten tab cannot hold the server's trainer. A job that has ended is
remembered for as long, so that a reload just after the end still shows its result.

The id is a random 128-bit uuid: knowing the link is what lets a session watch a job. Jobs live in one process;
behind the load balancer (deploy/serve.py) a browser keeps to its process, but a link opened in another browser
may reach another process, which does not know the job.

Locking: one lock here, never held while calling into a job (job.stop() takes the queue's and the job's locks).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .job import TrainingJob

GRACE_S = 60.0  # how long an unwatched job keeps running (and an ended one stays findable)


class Watchers:
    def __init__(self, grace_s: float = GRACE_S, clock: Callable[[], float] = time.monotonic):
        self.grace_s = grace_s
        self._clock = clock
        self._lock = threading.Lock()
        self._jobs: dict[str, TrainingJob] = {}
        self._watching: dict[str, set[str]] = {}  # job id -> the session ids watching it
        self._unwatched_since: dict[str, float] = {}  # job id -> when its last watcher went

    def watch(self, job: TrainingJob, session: str) -> None:
        """`session` watches `job` (again): an unwatched job's countdown is cancelled."""
        with self._lock:
            self._jobs[job.id] = job
            self._watching.setdefault(job.id, set()).add(session)
            self._unwatched_since.pop(job.id, None)
        self.expire()

    def leave(self, job_id: str, session: str) -> None:
        """`session` no longer watches the job; when nobody does, its countdown starts (checked after GRACE_S)."""
        with self._lock:
            watchers = self._watching.get(job_id)
            if watchers is None:
                return
            watchers.discard(session)
            if watchers:
                return
            self._unwatched_since[job_id] = self._clock()
        timer = threading.Timer(self.grace_s + 0.05, self.expire)  # nothing else would look at it then
        timer.daemon = True
        timer.start()

    def find(self, job_id: str) -> TrainingJob | None:
        """The job with this id if this process still has it (running, queued, or ended less than GRACE_S ago)."""
        self.expire()
        with self._lock:
            return self._jobs.get(job_id)

    def watched(self, job_id: str) -> int:
        with self._lock:
            return len(self._watching.get(job_id, ()))

    def expire(self) -> None:
        """Stop every job nobody has watched for GRACE_S, and forget it."""
        now = self._clock()
        with self._lock:
            gone = [i for i, since in self._unwatched_since.items() if now - since >= self.grace_s]
            jobs = [self._jobs.pop(i) for i in gone]
            for i in gone:
                del self._unwatched_since[i]
                self._watching.pop(i, None)
        for job in jobs:  # outside the lock: stop() takes the queue's and the job's locks
            job.stop()


WATCHERS = Watchers()  # the process's jobs: every session of this server shares it
