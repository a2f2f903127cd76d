"""A training run, in a worker process of its own (the server's default) or in the calling thread.

Why a process: NumPy releases the interpreter lock only inside large array operations, and a small model's
training step is hundreds of small ones. Run in a thread of the server, a trainer held the lock most of the time,
and every explainer session of that server waited behind it. A worker process has its own interpreter (and runs
at a lower priority, `NICE`), so the pages of the other users keep the server's interpreter to themselves.

`train_run(spec, stop, emit)` is the run itself, the same code wherever it runs: it builds the splits and the
probe set, runs `Trainer.run`, and hands every event to `emit` (a `Setup` first, then each `StepMetrics` and
`EvalMetrics`, and a `MechanismError` when a snapshot's measurement fails); it returns an `Outcome`.

- Called directly, it runs in the calling thread and trains `spec.model` in place (`EXPLAINER_TRAINING_IN=thread`,
  and tests that patch the run's functions).
- `run_in_process(spec, stop, emit)` runs it in a worker process and returns the trained model in the
  `Outcome` (with its `train_config` and `metrics`, as the trainer left them). The worker is a fresh
  `python -m model_core.training.worker` (not a fork of the threaded server), started ahead of time as a spare so
  a run starts warm. A worker trains one run and exits, so its memory is returned to the
  system each time; a worker that dies (killed, out of memory) ends the run "failed" with its exit status.

The server and its workers exchange Python objects over a socket pair (`multiprocessing.connection`, which
pickles): both ends are this program, started by it; nothing a user uploads travels this way as a pickle.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import numpy as np

from ..config import ConfigError, TrainConfig
from ..interp.probe import describe_probe, held_out, mechanism_metrics, probe_set
from ..task import Expression, ExpressionSet, TaskError, make_splits
from ..task_model import TaskModel
from .trainer import Trainer, TrainResult

ENV_VAR = "EXPLAINER_TRAINING_IN"  # "process" (the default) or "thread"
NICE = 10  # the worker's priority below the server's: on a busy machine the explainer's pages go first
# Snapshots (attention and mechanism) every 10 steps up to step 100 too, where the page's default run forms its
# heads (its probe accuracy rises most between steps 40 and 90). Up to step 200 cost the default run about 15% of
# its steps/s (22 snapshots instead of 6), up to 100 a few percent (14): see benchmarks/train_page_speed.py.
EARLY_SNAPSHOTS = (10, 100)
POLL_S = 0.2  # how often the server side looks for a stop between the worker's messages
ROOT = Path(__file__).resolve().parents[2]  # the directory that holds model_core


def in_process(environ=os.environ) -> bool:
    """Whether runs go to worker processes: yes unless EXPLAINER_TRAINING_IN is "thread"."""
    return environ.get(ENV_VAR, "process").strip().lower() != "thread"


@dataclass(frozen=True)
class RunSpec:
    """Everything a run needs (picklable: it is sent to the worker)."""

    model: TaskModel  # the new model at its initial weights
    train: TrainConfig
    probe: Expression | None  # the expression whose attention is snapshotted (None: the first validation one)
    train_size: int | None = None  # train on this many training expressions (None: all of them)


@dataclass(frozen=True)
class Setup:
    """What the run tells its job before the first step."""

    probe_text: str
    probe_tokens: tuple[str, ...]
    probe_right: str
    validation_n: int
    probe_set: ExpressionSet
    probe_set_text: str


@dataclass(frozen=True)
class MechanismError:
    message: str  # why a snapshot's mechanism metrics are missing


@dataclass(frozen=True)
class Outcome:
    status: str  # the trainer's ("finished", "reached_target", "stopped", "diverged") or "failed"
    message: str
    result: TrainResult | None = None  # None if it failed
    model: TaskModel | None = None  # the trained model, from a worker process (None: trained in place)


Emit = Callable[[Any], None]


def train_run(spec: RunSpec, stop, emit: Emit) -> Outcome:
    """Train `spec.model` in place, handing each event to `emit`; `stop.is_set()` is checked between steps."""
    model, train = spec.model, spec.train
    try:
        # Overflow on the way to a NaN is reported as "diverged" by the trainer, not as warnings.
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            splits = make_splits(model.task, seed=train.seed)  # the trainer's own (same seed)
            probes = probe_set(model.task, seed=train.seed, splits=splits)

            def measure(m: TaskModel):  # an analysis that fails must not end the training run
                try:
                    return mechanism_metrics(m, probes)
                except Exception as err:  # noqa: BLE001 - shown on the page; training goes on without them
                    emit(MechanismError(f"{type(err).__name__}: {err}"))
                    return None

            trainer = Trainer(model, train, probe=spec.probe, splits=splits, early_snapshots=EARLY_SNAPSHOTS,
                              measure=measure, train_size=spec.train_size)  # fmt: skip
            where = "held-out (validation) expressions" if held_out(probes, splits) else \
                "expressions drawn from the whole task (its validation split is too small)"  # fmt: skip
            emit(Setup(trainer.probe.text, tuple(model.vocab.decode(trainer.probe_tokens[0])),
                       str(trainer.probe.answer), len(trainer.validation), probes,
                       f"{describe_probe(probes)}; {where}"))
            for event in trainer.run(stop):
                emit(event)
        result = trainer.result
        return Outcome(result.status, result.message, result)
    except (ConfigError, TaskError) as err:
        return Outcome("failed", str(err))
    except Exception as err:  # noqa: BLE001 - the UI shows the message; the run must not die silently
        return Outcome("failed", f"Training failed: {type(err).__name__}: {err}")


# ----------------------------------------------------------------------------- worker processes
class Worker:
    """A started `python -m model_core.training.worker` and the server's end of its socket."""

    def __init__(self) -> None:
        ours, theirs = socket.socketpair()
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
        try:
            self.proc = subprocess.Popen([sys.executable, "-m", "model_core.training.worker", str(theirs.fileno())],
                                         pass_fds=(theirs.fileno(),), env=env, stdin=subprocess.DEVNULL)  # fmt: skip
        finally:
            theirs.close()
        self.conn = Connection(ours.detach())

    def exit_status(self) -> int | None:
        try:
            return self.proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()

    def close(self) -> None:
        self.conn.close()
        self.exit_status()  # reaps it (a worker exits once its run is done, or when its socket closes)


class Pool:
    """Keeps one spare worker started, so that a run does not wait for Python and NumPy to load."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._spare: Worker | None = None

    def take(self) -> Worker:
        with self._lock:
            worker, self._spare = self._spare, None
        if worker is None or worker.proc.poll() is not None:  # none yet, or it died while waiting
            worker = Worker()
        self.refill()
        return worker

    def refill(self) -> None:
        """Start a spare if there is none (the next run's worker)."""
        with self._lock:
            if self._spare is None or self._spare.proc.poll() is not None:
                self._spare = Worker()


POOL = Pool()


def run_in_process(spec: RunSpec, stop: threading.Event, emit: Emit) -> Outcome:
    """The run in a worker process: its events are handed to `emit` here as they arrive; the `Outcome` carries
    the trained model. Setting `stop` asks the worker to stop before its next step. A worker that ends before it
    sends anything (a spare killed while it waited, which `poll()` may not show yet) is replaced once."""
    for attempt in range(2):
        try:
            worker = POOL.take() if attempt == 0 else Worker()
            worker.conn.send(spec)
        except OSError as err:
            if attempt == 0:
                continue
            return Outcome("failed", f"Training could not start a worker process: {err}")
        outcome = _follow(worker, stop, emit)
        if outcome is not None:
            return outcome
    status = worker.exit_status()
    return Outcome("failed", f"The training process ended unexpectedly, exit status {status}{_killed(status)}.")


def _killed(status: int | None) -> str:
    return " (killed: perhaps out of memory)" if status is not None and status < 0 else ""


def _follow(worker: Worker, stop: threading.Event, emit: Emit) -> Outcome | None:
    """Relay one worker's events until its Outcome; None if it ended before sending anything (try another)."""
    asked, heard = False, False
    try:
        while True:
            if stop.is_set() and not asked:
                worker.conn.send("stop")
                asked = True
            if not worker.conn.poll(POLL_S):
                continue
            message = worker.conn.recv()
            heard = True
            if isinstance(message, Outcome):
                return message
            emit(message)
    except (EOFError, OSError):
        if not heard and not asked:
            return None
        status = worker.exit_status()
        return Outcome("failed", f"The training process ended unexpectedly, exit status {status}{_killed(status)}.")
    finally:
        worker.close()


class _StopFromServer:
    """The worker's `stop`: set once the server sends "stop" (or its socket closes)."""

    def __init__(self, conn: Connection) -> None:
        self.conn, self._set = conn, False

    def is_set(self) -> bool:
        try:
            while not self._set and self.conn.poll():
                self._set = self.conn.recv() == "stop"
        except (EOFError, OSError):  # the server is gone: stop
            self._set = True
        return self._set


def main(fd: int) -> None:
    """A worker: wait for one RunSpec, train it, send the events and the Outcome, exit."""
    from threadpoolctl import threadpool_limits

    os.nice(NICE)
    threadpool_limits(limits=1, user_api="blas")  # as the server: the run's numbers do not depend on where it ran
    conn = Connection(fd)
    try:
        spec = conn.recv()
    except (EOFError, OSError):  # the server closed before sending a run (it exited): nothing to do
        return
    outcome = train_run(spec, _StopFromServer(conn), conn.send)
    if outcome.result is not None:
        outcome = replace(outcome, model=spec.model)
    try:
        conn.send(outcome)
    except OSError:  # the server is gone
        pass


if __name__ == "__main__":
    # Run as a script this file is `__main__`; the run's classes must pickle under their module's own name.
    from model_core.training.worker import main as worker_main

    worker_main(int(sys.argv[1]))
