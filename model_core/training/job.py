"""A training run in a background thread that a UI polls.

`TrainingJob` checks its configuration against the limits below (the model's sizes are in
`model_core.limits`) before it starts, runs a `Trainer` in a daemon worker thread (the thread
never touches the UI), and keeps every step's metrics under a lock. A UI reads
`job.snapshot()`: one consistent copy of the status, the per-step arrays and the evaluations
so far, taken in one go, so its arrays always agree in length and step. Stop with
`job.stop()`; the trainer checks between steps.

The server trains at most `queue.MAX_RUNNING_JOBS` jobs at once (default 1): a job started beyond that waits
("queued") in a first-come, first-served line and starts by itself when a slot frees; its snapshots then carry
its place in line and an estimate of the wait. A job whose estimated peak memory (`memory`) is over the server's
budget is refused like any other broken limit.

    job = TrainingJob(TaskConfig(), TrainConfig(steps=500), {"n_layers": 1, "d_model": 32})
    job.start()
    while not job.done:
        snap = job.snapshot()          # snap.progress, snap.loss, snap.evals, ...
    job.model                          # the trained TaskModel (a new model, weights read-only)

Bad hyperparameters never raise out of here: a `ConfigError`, `TaskError` or a broken
limit makes the job "failed" at once with the error's message; a loss that turns NaN
ends it as "diverged" with the trainer's message.

Every snapshot also measures the mechanism on a fixed probe set (`model_core.interp.probe`:
head roles, accuracy per operation, the component whose zeroing costs the most), and the job
snapshots every `EARLY_SNAPSHOTS[0]` steps up to step `EARLY_SNAPSHOTS[1]` besides the
`eval_every` schedule, where most of the mechanism forms.
"""

from __future__ import annotations

import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..config import ConfigError, ModelConfig, TrainConfig
from ..interp.probe import ROLE_MEASURES, MechanismMetrics, describe_probe, held_out, mechanism_metrics, probe_set
from ..limits import (  # the model's limits, shared with loading; the page reads tj.MAX_LAYERS, ...
    MAX_D_FF,
    MAX_D_MODEL,
    MAX_HEADS,
    MAX_LAYERS,
    MAX_PARAMS,
    LimitError,
    check_param_count,
    model_checks,
)
from ..limits import count_params as count_params  # re-exported (tj.count_params)
from ..limits import model_limits_text as model_limits_text  # re-exported: the Train page's uploader states them
from ..task import Expression, ExpressionSet, TaskConfig, TaskError, check_compatible, make_splits
from ..task.parser import ParseError
from ..task.vocab import DEFAULT_VOCAB
from ..task_model import TaskModel
from .memory import check_memory
from .queue import QUEUE
from .queue import place_text as place_text  # re-exported: the Train page's message for a queued job
from .trainer import EvalMetrics, StepMetrics, Trainer, snapshot_steps

# ----------------------------------------------------------------------------- limits
# What one session may train here: a 2-core machine shared by every user. The model's sizes are in
# model_core/limits.py, shared with checkpoint loading (so every model trained here loads again).
MAX_STEPS = 20_000
MAX_BATCH = 512
MAX_TRAIN_VALUE = 99  # the Train page's tasks: values in 0-99 at most
MAX_ARGS = 5
MAX_POINTS = 500  # most points a live curve sends to the browser (see `thin_indices`)

# The categories of `Snapshot.curves`: training loss and accuracy at every step, validation accuracy.
CURVE_METRICS = (LOSS, ACCURACY) = ("loss", "accuracy")
CURVE_SPLITS = (CURVE_TRAIN, CURVE_VALIDATION) = ("train", "validation")
CURVE_SPLITS_OF = {LOSS: [CURVE_TRAIN], ACCURACY: list(CURVE_SPLITS)}  # validation is scored by accuracy only

# Snapshots (attention and mechanism) every 10 steps up to step 100 too, where the page's default run forms its
# heads (its probe accuracy rises most between steps 40 and 90). Up to step 200 cost the default run about 15% of
# its steps/s (22 snapshots instead of 6), up to 100 a few percent (14): see benchmarks/train_page_speed.py.
EARLY_SNAPSHOTS = (10, 100)

# The panels of `JobSnapshot.mechanism_columns`, top to bottom, and the one row that marks the snapshot shown.
MECHANISM_PANELS = (PANEL_ACCURACY, PANEL_TO_OP, PANEL_TO_SLOT, PANEL_TOP, PANEL_LR, PANEL_GRAD) = (
    "probe accuracy", *ROLE_MEASURES, "top component", "learning rate", "gradient norm")
SHOWN = "shown snapshot"  # its panel and series
OPTIMIZER_SERIES = ("learning rate", "gradient norm")

STATUSES = ("pending", "queued", "running", "finished", "reached_target", "stopped", "diverged", "failed")
ENDED = frozenset(STATUSES[3:])
NEVER_STARTED = "Stopped while waiting in line for the trainer: it never started."


def limits_text() -> str:
    """The limits in one line, for the UI."""
    return (
        f"at most {MAX_LAYERS} blocks, {MAX_HEADS} heads, d_model {MAX_D_MODEL}, FFN width {MAX_D_FF}, "
        f"{MAX_PARAMS:,} parameters; values 0-{MAX_TRAIN_VALUE}, up to {MAX_ARGS} values; "
        f"{MAX_STEPS:,} steps; batch {MAX_BATCH}"
    )


def model_config(model_options: dict[str, Any]) -> ModelConfig:
    """The ModelConfig `TaskModel.new` builds from these options (ConfigError if invalid)."""
    return ModelConfig(vocab_size=len(DEFAULT_VOCAB), pad_id=DEFAULT_VOCAB.pad_id, **model_options)


def check_limits(task: TaskConfig, model: ModelConfig, train: TrainConfig) -> None:
    """Raise LimitError (a ConfigError) naming the first limit this configuration breaks."""
    checks = [
        *model_checks(model),
        ("Training steps", train.steps, MAX_STEPS),
        ("Batch size", train.batch_size, MAX_BATCH),
        ("The largest value", task.max_value, MAX_TRAIN_VALUE),
        ("The number of values", task.n_args, MAX_ARGS),
    ]
    for what, value, most in checks:
        if value > most:
            raise LimitError(f"{what} is {value:,}; this app trains at most {most:,}.")
    check_param_count(model)
    check_memory(task, model, train)  # after the sizes: its estimate counts the parameters


def default_name(task: TaskConfig, model: ModelConfig, seed: int) -> str:
    """E.g. "trained: 0-9, 2×4 d64 (seed 0)"; the task's other choices only when not the defaults."""
    parts = [f"{task.min_value}-{task.max_value}"]
    if task.n_args != 3:
        parts.append(f"{task.n_args} values")
    if task.operations != TaskConfig().operations:
        parts.append("/".join(task.operations))
    parts.append(f"{model.n_layers}×{model.n_heads} d{model.d_model}")
    return f"trained: {', '.join(parts)} (seed {seed})"


# ----------------------------------------------------------------------------- display helpers
def file_name(name: str, suffix: str = ".safetensors") -> str:
    """A model's name as a portable file name: ASCII letters, digits, '-' and '_' only (× becomes x), e.g.
    "trained: 0-9, 2×4 d64 (seed 0)" -> "trained_0-9_2x4_d64_seed_0.safetensors"."""
    stem = re.sub(r"[^A-Za-z0-9-]+", "_", name.replace("×", "x")).strip("_") or "model"
    return stem[:100] + suffix


def thin_indices(n: int, max_points: int = MAX_POINTS) -> np.ndarray:
    """At most `max_points` evenly spread indices into `n` points, always the first and the last.

    For drawing only: the job keeps every step; a chart shows the recorded values at these steps.
    """
    if n <= max_points:
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, max_points).round().astype(np.int64))


@dataclass(frozen=True)
class JobSnapshot:
    """One consistent copy of a job's state: every array has one entry per step done."""

    status: str
    message: str
    total_steps: int
    step: np.ndarray  # [n] 1..n
    loss: np.ndarray  # [n] each training batch's loss before its update
    accuracy: np.ndarray  # [n] each batch's exact-match accuracy before its update
    lr: np.ndarray  # [n]
    grad_norm: np.ndarray  # [n] before clipping
    evals: tuple[EvalMetrics, ...]  # validation accuracy, per operation, probe attention [layer, head, q, k]
    elapsed_s: float
    probe_text: str = ""
    probe_tokens: tuple[str, ...] = ()
    operations: tuple[str, ...] = field(default=())
    probe_set_text: str = ""  # what the mechanism's probe set is (`describe_probe`), once the run has started
    heads: tuple[str, ...] = ()  # "L0H0", ... of the model trained
    components: tuple[str, ...] = ()  # every head and MLP, as `every_component` names them
    mechanism_error: str = ""  # why the mechanism metrics are missing, if they are
    eval_every: int = 0  # validation accuracy every this many steps
    queue_position: int | None = None  # while queued: its place in line (1 = next)
    wait_s: float | None = None  # while queued: about how long until it starts (None: not known yet)
    held_out_accuracy: float | None = None  # exact match on the test split once the run ended (None before)

    @property
    def steps_done(self) -> int:
        return len(self.step)

    @property
    def done(self) -> bool:
        return self.status in ENDED

    @property
    def running(self) -> bool:
        """Not ended: pending, queued or running (the page keeps refreshing and offers Stop)."""
        return not self.done

    @property
    def queued(self) -> bool:
        return self.status == "queued"

    @property
    def progress(self) -> float:
        """0-1: steps done over steps asked for (1 once the run finished or reached its target)."""
        if self.status in ("finished", "reached_target"):
            return 1.0
        return min(1.0, self.steps_done / self.total_steps) if self.total_steps else 0.0

    @property
    def steps_per_s(self) -> float:
        """Training throughput so far, evaluations included."""
        return self.steps_done / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def validations(self) -> tuple[EvalMetrics, ...]:
        """The snapshots at which validation accuracy was measured (the `eval_every` schedule)."""
        return tuple(e for e in self.evals if e.validated)

    @property
    def latest_eval(self) -> EvalMetrics | None:
        """The latest snapshot with validation accuracy."""
        validations = self.validations
        return validations[-1] if validations else None

    @property
    def latest_snapshot(self) -> EvalMetrics | None:
        return self.evals[-1] if self.evals else None

    def curves(self, max_points: int = MAX_POINTS) -> dict[str, np.ndarray]:
        """Long-form columns (step, value, metric, split) for `charts.training_curves`.

        Training loss and accuracy at <= max_points recorded steps (thinned, never averaged),
        then validation accuracy at every evaluation.
        """
        idx = thin_indices(self.steps_done, max_points)
        ev_step = np.array([e.step for e in self.validations], dtype=np.int64)
        ev_acc = np.array([e.accuracy for e in self.validations], dtype=np.float64)
        k, m = len(idx), len(ev_step)
        return {
            "step": np.concatenate([self.step[idx], self.step[idx], ev_step]),
            "value": np.concatenate([self.loss[idx], self.accuracy[idx], ev_acc]),
            "metric": np.array([LOSS] * k + [ACCURACY] * (k + m), dtype=object),
            "split": np.array([CURVE_TRAIN] * (2 * k) + [CURVE_VALIDATION] * m, dtype=object),
        }

    def op_accuracy(self, which: int = -1) -> dict[str, list]:
        """Columns (operation, accuracy) of evaluation `which` (the latest by default)."""
        validations = self.validations
        if not validations:
            return {"operation": [], "accuracy": []}
        per_op = validations[which].per_op
        return {"operation": list(per_op), "accuracy": [float(v) for v in per_op.values()]}

    @property
    def mechanism(self) -> tuple[tuple[int, MechanismMetrics], ...]:
        """(step, metrics) of every snapshot that has its mechanism measured."""
        return tuple((e.step, e.mechanism) for e in self.evals if e.mechanism is not None)

    def mechanism_columns(self, shown: int | None = None, max_points: int = MAX_POINTS) -> dict[str, np.ndarray]:
        """Long-form columns for `charts.mechanism_over_training`: every panel on one time axis, `step`.

        Columns: step, panel (one of MECHANISM_PANELS, or SHOWN), series (an operation, a head, a component
        or one of OPTIMIZER_SERIES), value; then, for the tooltips, one column per operation (a head's attention
        for that operation; NaN in other panels), "validation" (the operation's validation accuracy at that
        step, where it was measured), "clean" and "without" (probe accuracy, and with the top component zeroed).

        - probe accuracy: a row per snapshot and operation; the attention panels: a row per snapshot and head,
          the mean over operations (`MechanismMetrics.role_mean`); top component: a row per snapshot, its
          accuracy drop (series: its name); at <= max_points snapshots (thinned, never averaged);
        - learning rate, gradient norm: at <= max_points recorded steps (thinned, never averaged);
        - SHOWN: one row at step `shown` (none if None), where the chart marks the snapshot shown.
        """
        ops = list(self.operations)
        records = self.mechanism
        records = [records[i] for i in thin_indices(len(records), max_points)]
        blocks: list[dict[str, np.ndarray]] = []

        def block(step, panel: str, series, value, **extra) -> None:
            step = np.asarray(step, dtype=np.int64)
            cols = {"step": step, "panel": np.full(len(step), panel, dtype=object),
                    "series": np.asarray(series, dtype=object), "value": np.asarray(value, dtype=np.float64)}
            for k in (*ops, "validation", "clean", "without"):
                cols[k] = np.asarray(extra[k], dtype=np.float64) if k in extra else np.full(len(step), np.nan)
            blocks.append(cols)

        if records:
            steps = np.array([s for s, _ in records], dtype=np.int64)
            metrics = [m for _, m in records]
            validation = {e.step: e.per_op for e in self.validations}
            acc = [[m.per_op.get(op, np.nan) for op in ops] for m in metrics]  # [snapshot, op]
            val = [[validation.get(int(s), {}).get(op, np.nan) for op in ops] for s in steps]
            block(np.repeat(steps, len(ops)), PANEL_ACCURACY, np.tile(np.array(ops, dtype=object), len(steps)),
                  np.ravel(acc), validation=np.ravel(val))  # fmt: skip
            heads = np.array(metrics[-1].heads, dtype=object)
            for panel in ROLE_MEASURES:
                table = np.stack([m.role_table(panel) for m in metrics])  # [snapshot, head, op]
                per_op = {op: table[:, :, k].ravel() for k, op in enumerate(metrics[-1].operations) if op in ops}
                block(np.repeat(steps, len(heads)), panel, np.tile(heads, len(steps)),
                      np.ravel([m.role_mean(panel) for m in metrics]), **per_op)  # fmt: skip
            block(steps, PANEL_TOP, [m.top_component for m in metrics], [m.top_drop for m in metrics],
                  clean=[m.accuracy for m in metrics], without=[m.ablated_accuracy[m.top] for m in metrics])
        idx = thin_indices(self.steps_done, max_points)
        for panel, values in ((PANEL_LR, self.lr), (PANEL_GRAD, self.grad_norm)):
            block(self.step[idx], panel, np.full(len(idx), panel, dtype=object), values[idx])
        if shown is not None:
            block([shown], SHOWN, [SHOWN], [0.0])
        return {k: np.concatenate([b[k] for b in blocks]) for k in blocks[0]}

    def mechanism_series(self) -> tuple[str, ...]:
        """Every value `mechanism_columns`'s series column can take, in drawing order (for a stable chart spec)."""
        return (*self.operations, *self.heads, *[c for c in self.components if c not in self.heads],
                *OPTIMIZER_SERIES, SHOWN)  # fmt: skip


# ----------------------------------------------------------------------------- the job


class TrainingJob:
    """One training run of a new model in a daemon thread; see the module docstring.

    `task`, `train` may be configs or dicts of their fields; `model` is a dict of ModelConfig
    fields. `probe` is the expression whose attention is snapshotted (text or Expression); if
    the new task cannot read it, the first validation expression is used.
    """

    def __init__(self, task: TaskConfig | dict, train: TrainConfig | dict, model: dict | None = None, *,
                 name: str | None = None, probe: str | Expression | None = None):  # fmt: skip
        self.id = uuid.uuid4().hex
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._ended = threading.Event()
        self._thread: threading.Thread | None = None
        self._status, self._message = "pending", ""
        self._n = 0
        self._evals: list[EvalMetrics] = []
        self._started_at: float | None = None
        self._ended_at: float | None = None
        self._probe_text, self._probe_tokens = "", ()
        self._probe_set_text, self._mechanism_error = "", ""
        self._held_out: float | None = None
        self.probe_set: ExpressionSet | None = None  # the mechanism's probe set, once the run has started
        self._model: TaskModel | None = None
        self.task: TaskConfig | None = None
        self.train: TrainConfig | None = None
        self.model_config: ModelConfig | None = None
        self.n_params = 0
        self.name = name or ""
        try:
            self.task = task if isinstance(task, TaskConfig) else TaskConfig.from_dict(dict(task))
            self.train = train if isinstance(train, TrainConfig) else TrainConfig.from_dict(dict(train))
            self.model_config = model_config(dict(model or {}))
            check_limits(self.task, self.model_config, self.train)
            check_compatible(self.task, self.model_config.causal)
            self.name = name or default_name(self.task, self.model_config, self.train.seed)
            self._model = TaskModel.new(self.task, self.name, **dict(model or {}))
            self._probe = self._pick_probe(probe)
            self.n_params = count_params(self.model_config)  # the queue scales one job's pace to another's by it
        except (ConfigError, TaskError) as err:  # bad hyperparameters: a message, never a traceback
            self._end("failed", str(err))
            return
        steps = self.train.steps
        self._arrays = {k: np.zeros(steps, dtype=np.float64) for k in ("loss", "accuracy", "lr", "grad_norm")}

    def _pick_probe(self, probe: str | Expression | None) -> Expression | None:
        if isinstance(probe, str):
            try:
                return self._model.parse(probe)
            except ParseError:
                return None
        if isinstance(probe, Expression) and probe.op in self.task.operations:
            try:
                return self._model.parse(probe.text)
            except ParseError:
                return None
        return None

    # ------------------------------------------------------------ control
    def start(self) -> bool:
        """Put the job in the trainer's line: it runs now if a slot is free, else it is "queued" until one is.
        False (and nothing happens) if the job failed or already started."""
        with self._lock:
            if self._status != "pending":
                return False
            self._status, self._message = "queued", "Waiting in line for the trainer…"
        QUEUE.submit(self)
        if self._stop.is_set():  # stopped while it was being put in line: take it out again
            self.stop()
        return True

    def _launch(self) -> None:
        """The queue gave this job a slot: start its thread (stopped meanwhile: give the slot back)."""
        with self._lock:
            launch = self._status == "queued" and not self._stop.is_set()
            if launch:
                self._status, self._message = "running", "Preparing the data…"
                self._started_at = time.perf_counter()  # elapsed time and steps/s count from here, not the line
        if launch:
            self._thread = threading.Thread(target=self._work, name=f"training-job-{self.id[:8]}", daemon=True)
            try:
                self._thread.start()
                return
            except RuntimeError as err:  # no thread to be had: a message, and the slot for the next job
                self._end("failed", f"Training could not start: {err}")
        elif not self.done:
            self._end("stopped", NEVER_STARTED)
        QUEUE.release(self)

    def stop(self) -> None:
        """Ask the trainer to stop before its next step (it then evaluates once and ends "stopped"); a job
        waiting in line leaves it and ends "stopped" without ever running."""
        self._stop.set()
        if QUEUE.cancel(self):
            self._end("stopped", NEVER_STARTED)
            return
        with self._lock:
            if self._status == "pending":  # never started: nothing to wait for
                self._status, self._message = "stopped", "Stopped before training started."
                self._ended_at = self._started_at = time.perf_counter()
                self._ended.set()

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the job to end (at most `timeout` seconds); True if it has ended."""
        return self._ended.wait(timeout)

    # ------------------------------------------------------------ reading
    @property
    def status(self) -> str:
        with self._lock:
            return self._status

    @property
    def message(self) -> str:
        with self._lock:
            return self._message

    @property
    def done(self) -> bool:
        return self._ended.is_set()

    @property
    def progress(self) -> float:
        return self.snapshot().progress

    @property
    def model(self) -> TaskModel | None:
        """The trained model once the job has ended (None if it failed before building one)."""
        return self._model if self.done and self.status != "failed" else None

    def snapshot(self) -> JobSnapshot:
        """A consistent copy of everything so far, taken under the lock."""
        position, wait_s = QUEUE.place(self)  # first: the queue's lock is never taken under a job's
        with self._lock:
            if self._status != "queued":  # it left the line in between
                position = wait_s = None
            n = self._n
            arrays = {k: v[:n].copy() for k, v in getattr(self, "_arrays", {}).items()}
            end = self._ended_at if self._ended_at is not None else time.perf_counter()
            elapsed = end - self._started_at if self._started_at is not None else 0.0
            return JobSnapshot(
                status=self._status,
                message=self._message,
                total_steps=self.train.steps if self.train else 0,
                step=np.arange(1, n + 1, dtype=np.int64),
                loss=arrays.get("loss", np.zeros(0)),
                accuracy=arrays.get("accuracy", np.zeros(0)),
                lr=arrays.get("lr", np.zeros(0)),
                grad_norm=arrays.get("grad_norm", np.zeros(0)),
                evals=tuple(self._evals),
                elapsed_s=elapsed,
                probe_text=self._probe_text,
                probe_tokens=self._probe_tokens,
                operations=self.task.operations if self.task else (),
                probe_set_text=self._probe_set_text,
                heads=self._heads(),
                components=self._components(),
                mechanism_error=self._mechanism_error,
                eval_every=self.train.eval_every if self.train else 0,
                queue_position=position,
                wait_s=wait_s,
                held_out_accuracy=self._held_out,
            )

    def _seconds_per_step(self) -> float | None:
        """Its pace so far (evaluations included), or None before its first step."""
        with self._lock:
            if not self._n or self._started_at is None:
                return None
            end = self._ended_at if self._ended_at is not None else time.perf_counter()
            return (end - self._started_at) / self._n

    def _remaining_s(self) -> float | None:
        """About how long until it ends, at its pace so far: 0 once ended, None before its first step."""
        if self.done:
            return 0.0
        pace = self._seconds_per_step()
        with self._lock:
            return None if pace is None else (self.train.steps - self._n) * pace

    def _heads(self) -> tuple[str, ...]:
        cfg = self.model_config
        return tuple(f"L{i}H{h}" for i in range(cfg.n_layers) for h in range(cfg.n_heads)) if cfg else ()

    def _components(self) -> tuple[str, ...]:  # as `interp.every_component` names them
        cfg = self.model_config
        return self._heads() + tuple(f"L{i}.mlp" for i in range(cfg.n_layers)) if cfg else ()

    # ------------------------------------------------------------ the worker (no UI calls here)
    def _work(self) -> None:
        try:
            self._train()
        finally:  # however it ended, its slot goes to the next job in line (started from this thread)
            QUEUE.release(self, self._seconds_per_step())

    def _train(self) -> None:
        try:
            # Overflow on the way to a NaN is reported as "diverged" by the trainer, not as warnings.
            with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
                splits = make_splits(self.task, seed=self.train.seed)  # the trainer's own (same seed)
                self.probe_set = probe_set(self.task, seed=self.train.seed, splits=splits)
                trainer = Trainer(self._model, self.train, probe=self._probe, splits=splits,
                                  early_snapshots=EARLY_SNAPSHOTS, measure=self._measure)  # fmt: skip
                tokens = tuple(self._model.vocab.decode(trainer.probe_tokens[0]))
                where = "held-out (validation) expressions" if held_out(self.probe_set, splits) else \
                    "expressions drawn from the whole task (its validation split is too small)"  # fmt: skip
                with self._lock:
                    self._probe_text, self._probe_tokens = trainer.probe.text, tokens
                    self._probe_set_text = f"{describe_probe(self.probe_set)}; {where}"
                    self._message = "Training…"
                for event in trainer.run(self._stop):
                    self._record(event)
            result = trainer.result
            status, message = result.status, result.message
            if result.test:
                message += f" Held-out accuracy {result.test['accuracy']:.1%} on {result.test['n']:,} expressions."
                with self._lock:
                    self._held_out = float(result.test["accuracy"])
        except (ConfigError, TaskError) as err:
            status, message = "failed", str(err)
        except Exception as err:  # noqa: BLE001 - the UI shows the message; the thread must not die silently
            status, message = "failed", f"Training failed: {type(err).__name__}: {err}"
        for array in self._model.transformer.params.values():
            array.setflags(write=False)  # the trained model is handed out; nothing may change it now
        self._end(status, message)

    def _measure(self, model: TaskModel) -> MechanismMetrics | None:
        """The mechanism metrics of a snapshot; None (and a note for the UI) if they cannot be measured:
        an analysis that fails must not end the training run."""
        try:
            return mechanism_metrics(model, self.probe_set)
        except Exception as err:  # noqa: BLE001 - shown on the page; training goes on without them
            with self._lock:
                self._mechanism_error = f"{type(err).__name__}: {err}"
            return None

    def snapshot_steps(self) -> list[int]:
        """The steps this job snapshots at if it runs to its last step."""
        return snapshot_steps(self.train, EARLY_SNAPSHOTS) if self.train else []

    def _record(self, event: StepMetrics | EvalMetrics) -> None:
        with self._lock:
            if isinstance(event, StepMetrics):
                i = event.step - 1
                for key in self._arrays:
                    self._arrays[key][i] = getattr(event, key)
                self._n = event.step
                self._message = f"Training: step {event.step:,} of {self.train.steps:,}."
            else:
                event.attention.setflags(write=False)
                self._evals.append(event)

    def _end(self, status: str, message: str) -> None:
        with self._lock:
            self._status, self._message = status, message
            now = time.perf_counter()
            self._ended_at = now
            if self._started_at is None:
                self._started_at = now
        self._ended.set()


def stop_job(job: TrainingJob | None) -> None:
    """Stop a job if it is one (for `on_release` hooks); safe on finished jobs and None."""
    if isinstance(job, TrainingJob):
        job.stop()
