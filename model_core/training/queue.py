"""One trainer for the whole server: at most MAX_RUNNING_JOBS training jobs run at once, the rest wait in line.

Every session may start a job, but the machine has 2 cores: 10 large jobs at once each ran at 0.9 steps/s and
pushed every other user's page from 0.1 s to 2.9 s. So `TrainingJob.start()` hands its job to the process-wide
`QUEUE`: it runs at once if a slot is free, else it waits ("queued") in first-come, first-served order. When a
running job ends (finished, stopped, diverged or failed) its worker thread hands the slot to the next job in
line and starts it: nothing polls. A queued job that is stopped leaves the line without ever running.

The limit defaults to 1 (the explainer's pages need the other core); set EXPLAINER_MAX_TRAINING_JOBS to change
it. Tests may set `MAX_RUNNING_JOBS` itself: it is read whenever a job asks for a slot or gives one back.

Several server processes on one machine (deploy/serve.py) share the limit through EXPLAINER_TRAINING_SLOTS_DIR
(training/slots.py): a job then also holds one of the machine's slot files while it runs. Another process frees
its slot without telling this one, so while a job here waits for the machine only, the line is tried again every
RETRY_S seconds (a timer, only then). Each process's line stays first-come, first-served; between processes, the
one that tries first when a slot frees gets it, and a job waiting on another process's run is told its wait is not
known.

Locking: one lock here, taken before any job's own lock and never while holding one, so the two cannot deadlock.
"""

from __future__ import annotations

import heapq
import logging
import os
import threading
from collections import deque
from typing import TYPE_CHECKING

from ..config import ModelConfig
from ..limits import count_params
from ..task import TaskConfig
from .memory import tokens_per_example
from .slots import MachineSlots, Slot, slots_from_env

if TYPE_CHECKING:
    from .job import TrainingJob

ENV_VAR = "EXPLAINER_MAX_TRAINING_JOBS"
DEFAULT_MAX_RUNNING = 1
MOST_RUNNING = 64  # a larger value is surely a typo: refused like any bad value
RETRY_S = 0.5  # how often a line waiting for another process's slot tries again

log = logging.getLogger(__name__)


def max_running_from_env(environ=os.environ) -> int:
    """The limit from EXPLAINER_MAX_TRAINING_JOBS: a whole number from 1 to MOST_RUNNING. A bad value is
    logged as an error and the default used instead, so a typo cannot stop the app from starting."""
    raw = environ.get(ENV_VAR)
    if raw is None or not raw.strip():
        return DEFAULT_MAX_RUNNING
    try:
        n = int(raw.strip())
    except ValueError:
        n = 0
    if not 1 <= n <= MOST_RUNNING:
        log.error("%s=%r is not a whole number from 1 to %d; using the default, %d training job(s) at a time.",
                  ENV_VAR, raw, MOST_RUNNING, DEFAULT_MAX_RUNNING)  # fmt: skip
        return DEFAULT_MAX_RUNNING
    return n


MAX_RUNNING_JOBS = max_running_from_env()


class JobQueue:
    """The running jobs and the line of waiting ones. `TrainingJob` calls it; nothing else needs to."""

    def __init__(self, slots: MachineSlots | None = None) -> None:
        self._lock = threading.Lock()
        self._running: list[TrainingJob] = []
        self._waiting: deque[TrainingJob] = deque()
        self._recent: tuple[float, float] | None = None  # (seconds per step, step work) of the latest job that ran
        self.slots = slots  # the machine's slots shared with other processes (None: this process's count only)
        self._held: dict[int, Slot] = {}  # id(job) -> the machine slot a running job holds
        self._retry: threading.Timer | None = None

    def submit(self, job: TrainingJob) -> None:
        """Put `job` in line; it is launched now (in this thread) if a slot is free."""
        with self._lock:
            self._waiting.append(job)
            admitted = self._admit()
        for j in admitted:
            j._launch()  # outside the lock: a launch takes the job's lock

    def cancel(self, job: TrainingJob) -> bool:
        """Take a waiting job out of line; False if it was not waiting (running, ended, never queued)."""
        with self._lock:
            if job not in self._waiting:
                return False
            self._waiting.remove(job)
            return True

    def release(self, job: TrainingJob, seconds_per_step: float | None = None) -> None:
        """A running job has ended: free its slot and launch the next ones. Called once, by its own thread."""
        with self._lock:
            if job in self._running:
                self._running.remove(job)
            slot = self._held.pop(id(job), None)
            if slot is not None:
                slot.release()
            if seconds_per_step:
                self._recent = (seconds_per_step, step_work(job))
            admitted = self._admit()
        for j in admitted:
            j._launch()

    def _admit(self) -> list[TrainingJob]:  # under the lock
        admitted = []
        while self._waiting and len(self._running) < max(1, MAX_RUNNING_JOBS):
            slot = self.slots.try_acquire(max(1, MAX_RUNNING_JOBS)) if self.slots is not None else None
            if self.slots is not None and slot is None:  # the machine's slots are held by other processes
                self._retry_later()
                break
            job = self._waiting.popleft()
            self._running.append(job)
            if slot is not None:
                self._held[id(job)] = slot
            admitted.append(job)
        return admitted

    def _retry_later(self) -> None:  # under the lock: one timer at a time
        if self._retry is None or not self._retry.is_alive():
            self._retry = threading.Timer(RETRY_S, self._try_again)
            self._retry.daemon = True
            self._retry.start()

    def _try_again(self) -> None:
        with self._lock:
            self._retry = None
            admitted = self._admit()
        for j in admitted:
            j._launch()

    # ------------------------------------------------------------ reading
    def running(self) -> list[TrainingJob]:
        with self._lock:
            return list(self._running)

    def waiting(self) -> list[TrainingJob]:
        with self._lock:
            return list(self._waiting)

    def place(self, job: TrainingJob) -> tuple[int | None, float | None]:
        """(position in line, 1 = next; estimated seconds until it starts) of a waiting job; (None, None) if it is
        not waiting."""
        with self._lock:
            if job not in self._waiting:
                return None, None
            ahead = list(self._waiting)[: self._waiting.index(job)]
            running = [(r, r._remaining_s()) for r in self._running]  # each job's lock, after the queue's
            elsewhere = self.slots is not None and len(self._held) < max(1, MAX_RUNNING_JOBS) and \
                self.slots.held(max(1, MAX_RUNNING_JOBS)) > len(self._held)  # fmt: skip
            # a slot held by another process frees when its run ends, which this process cannot see
            return len(ahead) + 1, None if elsewhere else self._wait(running, ahead)

    def _wait(self, running: list[tuple[TrainingJob, float | None]], ahead: list[TrainingJob]) -> float:
        """When a slot frees for the job after `ahead`: the running jobs' remaining times (a job without a step yet:
        all its steps), then each job ahead taking the first slot to free for all its steps; at the pace measured
        on this server (scaled by each job's work per step), or before any, the expected pace (`expected_step_s`).
        """
        rate = self._pace()

        def steps_s(job: TrainingJob, steps: int) -> float:
            return steps * (rate * step_work(job) if rate is not None else expected_step_s(job))

        slots = [left if left is not None else steps_s(job, job.train.steps) for job, left in running]
        slots = sorted(slots) + [0.0] * (max(1, MAX_RUNNING_JOBS) - len(slots))
        heapq.heapify(slots)
        for job in ahead:  # a job ahead that stops early (at its target accuracy) only shortens the wait
            heapq.heapreplace(slots, slots[0] + steps_s(job, job.train.steps))
        return slots[0]

    def _pace(self) -> float | None:  # under the lock: seconds per unit of step work, latest first
        for job in self._running:
            s = job._seconds_per_step()
            if s:
                return s / step_work(job)
        return self._recent[0] / self._recent[1] if self._recent else None


def step_work(job: TrainingJob) -> float:
    """A step's cost in arbitrary units, to scale one job's pace to another's: examples x tokens x parameters
    (a product's arithmetic). Rough: small models' steps cost more than this says (NumPy's per-call overhead)."""
    return work_per_step(job.task, job.model_config, job.train.batch_size, job.n_params)


def work_per_step(task: TaskConfig, model: ModelConfig, batch_size: int, n_params: int | None = None) -> float:
    """`step_work` of a configuration (before any job is made of it). `n_params`: the model's parameter count if
    already known (a job keeps it: counting takes about 0.1 ms, and the queue reads it on every queued refresh)."""
    return float(batch_size * tokens_per_example(task, model) * (count_params(model) if n_params is None else n_params))


# A step's expected time before this server has measured any: a fixed cost (NumPy's per-call overheads) and a
# cost per unit of `step_work`, evaluations and snapshots included, fitted to the 2-core machine this app is
# tuned for by benchmarks/training_pace.py (which prints its own machine's figures beside these).
PACE_OVERHEAD_S = 1.0e-3
PACE_PER_WORK_S = 1.0e-10


def expected_step_s(job: TrainingJob) -> float:
    return _expected_pace(step_work(job))


def expected_seconds_per_step(task: TaskConfig, model: ModelConfig, batch_size: int) -> float:
    return _expected_pace(work_per_step(task, model, batch_size))


def _expected_pace(work: float) -> float:
    return PACE_OVERHEAD_S + PACE_PER_WORK_S * work


def ordinal(n: int) -> str:
    """1st, 2nd, 3rd, 4th, ..., 11th, 12th, 13th, 21st, ..."""
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def about(seconds: float) -> str:
    """A wait in round figures: "less than 10 s", "about 40 s", "about 3 min", "about 1.5 h"."""
    if seconds < 60:
        return f"about {5 * round(seconds / 5)} s" if seconds >= 10 else "less than 10 s"
    if seconds < 5400:
        return f"about {round(seconds / 60)} min"
    return f"about {seconds / 3600:.1f} h"


def place_text(position: int | None, wait_s: float | None) -> str:
    """What a queued job's owner is told, e.g. "Queued: 2nd in line for the trainer (the server trains 1 model at
    a time); about 40 s." The wait is the jobs ahead's remaining steps at the pace measured so far (before any,
    the expected pace): an estimate."""
    n = max(1, MAX_RUNNING_JOBS)
    at_once = "1 model at a time" if n == 1 else f"{n} models at a time"
    where = f"{ordinal(position)} in line" if position else "in line"
    wait = "the wait is not known yet" if wait_s is None else about(wait_s)
    return f"Queued: {where} for the trainer (the server trains {at_once}); {wait}."


QUEUE = JobQueue(slots_from_env())
