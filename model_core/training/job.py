"""A training run in the background that a UI polls.

`TrainingJob` checks its configuration against the limits below (the model's sizes are in
`model_core.limits`) before it starts, runs a `Trainer` in a worker process (`worker`: the server's interpreter
stays free for the explainer's users) watched by a daemon thread that never touches the UI, and keeps every
step's metrics under a lock. A UI reads
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

The job also keeps a copy of the initial weights, and at the end measures how far each kind of weight moved
(`weight_change`); with `train_size=N` it trains on N training expressions only (the trainer's `restrict_train`).
The sentences about a run's dynamics are pure functions at the end of this module: the order in which the
operations were learned (`learned_order_text`), when the probe's answer became right (`probe_answer_text`), the
largest mover (`weight_change_text`) and a memorised training set (`memorisation_text`).
"""

from __future__ import annotations

import re
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..config import ConfigError, ModelConfig, TrainConfig
from ..interp.probe import ROLE_MEASURES, MechanismMetrics
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
from ..task import Expression, ExpressionSet, TaskConfig, TaskError, check_compatible, nested
from ..task.parser import ParseError
from ..task.vocab import DEFAULT_VOCAB, vocab_for
from ..task_model import TaskModel
from .memory import check_memory
from .queue import QUEUE, about, expected_seconds_per_step
from .queue import place_text as place_text  # re-exported: the Train page's message for a queued job
from .trainer import EvalMetrics, ProbeAnswer, StepMetrics, snapshot_steps
from .worker import EARLY_SNAPSHOTS, MechanismError, RunSpec, Setup, in_process, run_in_process, train_run

# ----------------------------------------------------------------------------- limits
# What one session may train here: a 2-core machine shared by every user. The model's sizes are in
# model_core/limits.py, shared with checkpoint loading (so every model trained here loads again).
MAX_STEPS = 20_000
MAX_BATCH = 512
MAX_TRAIN_VALUE = 99  # the Train page's tasks: values in 0-99 at most
MAX_ARGS = 10  # values in a list, for values 0-9
MAX_ARGS_WIDE = 5  # and for values above 9, whose lists are up to twice as many tokens
# nested (an argument may be an expression): the most values whose expressions still have int64 ids (TaskConfig)
MAX_ARGS_NESTED, MAX_ARGS_NESTED_WIDE = 3, 2
MAX_POINTS = 500  # most points a live curve sends to the browser (see `thin_indices`)
# A run holds the server's trainer (training/queue.py) while it runs: the largest allowed job trains at a few
# tenths of a step per second on this machine, so its 20,000 steps would keep everyone else waiting for a day.
MAX_RUN_S = 15 * 60

# The categories of `Snapshot.curves`: training loss and accuracy at every step, validation loss and accuracy.
CURVE_METRICS = (LOSS, ACCURACY) = ("loss", "accuracy")
CURVE_SPLITS = (CURVE_TRAIN, CURVE_VALIDATION) = ("train", "validation")
CURVE_SPLITS_OF = {LOSS: list(CURVE_SPLITS), ACCURACY: list(CURVE_SPLITS)}

TRAIN_SIZES = (None, 1000, 300, 100)  # the Train page's choices of how many training expressions (None: all)
LEARNED_AT = 0.95  # an operation counts as learned at the first evaluation with validation accuracy >= this
MEMORISED_GAP = 0.10  # training accuracy >= LEARNED_AT and held-out this far below it: memorised

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
        f"{MAX_PARAMS:,} parameters; values 0-{MAX_TRAIN_VALUE}, up to {MAX_ARGS} values ({MAX_ARGS_WIDE} above 9); "
        f"{MAX_STEPS:,} steps (fewer for large models: as many as fit in {MAX_RUN_S // 60} minutes); "
        f"batch {MAX_BATCH}; {MAX_RUN_S // 60} minutes of training per run"
    )


def max_args(max_value: int, nested: bool = False) -> int:
    """The most values a list may have for training here, with values up to `max_value` (and nesting)."""
    if nested:
        return MAX_ARGS_NESTED if max_value <= 9 else MAX_ARGS_NESTED_WIDE
    return MAX_ARGS if max_value <= 9 else MAX_ARGS_WIDE


def model_config(model_options: dict[str, Any], task: TaskConfig | None = None) -> ModelConfig:
    """The ModelConfig `TaskModel.new` builds from these options for `task` (its vocabulary: a Sum adds a token;
    default: the original operations'). ConfigError if invalid."""
    vocab = vocab_for(task.operations) if task is not None else DEFAULT_VOCAB
    return ModelConfig(vocab_size=len(vocab), pad_id=vocab.pad_id, **model_options)


def check_limits(task: TaskConfig, model: ModelConfig, train: TrainConfig) -> None:
    """Raise LimitError (a ConfigError) naming the first limit this configuration breaks."""
    checks = [
        *model_checks(model),
        ("Training steps", train.steps, MAX_STEPS),
        ("Batch size", train.batch_size, MAX_BATCH),
        ("The largest value", task.max_value, MAX_TRAIN_VALUE),
        ("The number of values", task.n_args, max_args(task.max_value, task.nested)),
    ]
    for what, value, most in checks:
        if value > most:
            raise LimitError(f"{what} is {value:,}; this app trains at most {most:,}.")
    check_param_count(model)
    check_memory(task, model, train)  # after the sizes: its estimate counts the parameters
    most = max_steps_for(task, model, train.batch_size)
    if train.steps > most:
        raise LimitError(f"Training steps is {train.steps:,}; at this size a step takes about "
                         f"{_seconds(expected_seconds_per_step(task, model, train.batch_size))} here, so this app "
                         f"trains at most {most:,} steps of it ({MAX_RUN_S // 60} minutes per run). Use fewer steps, "
                         "a smaller batch or a smaller model.")  # fmt: skip


def max_steps_for(task: TaskConfig, model: ModelConfig, batch_size: int) -> int:
    """The most steps one run of this size may ask for: MAX_STEPS, or as many as fit in MAX_RUN_S at the expected
    pace (`queue.expected_seconds_per_step`), so that a run is refused up front rather than cut short."""
    return max(1, min(MAX_STEPS, int(MAX_RUN_S / expected_seconds_per_step(task, model, batch_size))))


def duration_text(task: TaskConfig, model: ModelConfig, train: TrainConfig) -> str:
    """How long a run of these settings should take here, e.g. "A step of these settings takes about 7 ms on this
    server (an estimate): 1,000 steps, about 10 s. At this size a run may have up to 20,000 steps." """
    step_s = expected_seconds_per_step(task, model, train.batch_size)
    most = max_steps_for(task, model, train.batch_size)
    return (f"A step of these settings takes about {_seconds(step_s)} on this server (an estimate): "
            f"{train.steps:,} steps, {about(train.steps * step_s)}. At this size a run may have up to "
            f"{most:,} steps.")  # fmt: skip


def _seconds(s: float) -> str:
    """A step's time: "6.9 ms", "0.26 s", "2.0 s" (a no-break space: the figure and its unit stay on one line)."""
    if s < 0.1:
        return f"{s * 1000:.2g}\u00a0ms"
    return f"{s:.2g}\u00a0s" if s < 1 else f"{s:.1f}\u00a0s"


def default_name(task: TaskConfig, model: ModelConfig, seed: int) -> str:
    """E.g. "trained: 0-9, 2×4 d64 (seed 0)"; the task's other choices only when not the defaults."""
    parts = [f"{task.min_value}-{task.max_value}"]
    if task.variable_length:
        parts.append(f"{task.min_args}-{task.n_args} values")
    elif task.n_args != 3:
        parts.append(f"{task.n_args} values")
    if task.operations != TaskConfig().operations:
        parts.append("/".join(task.operations))
    if task.nested:
        parts.append("nested")
    parts.append(f"{model.n_layers}×{model.n_heads} d{model.d_model}")
    return f"trained: {', '.join(parts)} (seed {seed})"


# ----------------------------------------------------------------------------- display helpers
def file_name(name: str, suffix: str = ".safetensors") -> str:
    """A model's name as a portable file name: ASCII letters, digits, '-' and '_' only (× becomes x), e.g.
    "trained: 0-9, 2×4 d64 (seed 0)" -> "trained_0-9_2x4_d64_seed_0.safetensors"."""
    stem = re.sub(r"[^A-Za-z0-9-]+", "_", name.replace("×", "x")).strip("_") or "model"
    return stem[:100] + suffix


def runs_text(runs: list[dict], name: Callable[[str], str] = str,
              pct: Callable[[float], str] = lambda x: f"{x:.2%}") -> str:  # fmt: skip
    """Which of several ended runs (`explainer.state.remember_run`'s records: name, step, accuracy, held_out)
    reached 100% validation accuracy first, and which did best on held-out expressions; true of these runs.
    `name` writes a run's name (e.g. bold and escaped for Markdown), `pct` a fraction (the app's never rounds
    up to 100%)."""
    first = {r["name"]: next((s for s, a in zip(r["step"], r["accuracy"], strict=True) if a >= 1.0), None)
             for r in runs}  # fmt: skip
    reached = {n: s for n, s in first.items() if s is not None}
    parts = []
    if not reached:
        parts.append(f"None of these {len(runs)} runs reached 100% validation accuracy.")
    else:
        best = min(reached.values())
        who = [n for n, s in reached.items() if s == best]
        parts.append(f"{len(reached)} of these {len(runs)} runs reached 100% validation accuracy; "
                     + (f"{name(who[0])} first, at step {best:,}." if len(who) == 1
                        else f"{', '.join(name(n) for n in who)} first, all at step {best:,}."))  # fmt: skip
    held = [(r["held_out"], r["name"]) for r in runs if r["held_out"] is not None]
    if held:
        top = max(h for h, _ in held)
        who = [n for h, n in held if h == top]
        if len(who) == len(held):
            parts.append(f"All {len(held)} score the same on held-out expressions ({pct(top)}).")
        else:
            parts.append(f"Best on held-out expressions: {', '.join(name(n) for n in who)} ({pct(top)}).")
    return " ".join(parts)


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
    probe_right: str = ""  # the probe's right answer
    operations: tuple[str, ...] = field(default=())
    probe_set_text: str = ""  # what the mechanism's probe set is (`describe_probe`), once the run has started
    heads: tuple[str, ...] = ()  # "L0H0", ... of the model trained
    components: tuple[str, ...] = ()  # every head and MLP, as `every_component` names them
    mechanism_error: str = ""  # why the mechanism metrics are missing, if they are
    eval_every: int = 0  # validation accuracy every this many steps
    queue_position: int | None = None  # while queued: its place in line (1 = next)
    wait_s: float | None = None  # while queued: about how long until it starts (None: not known yet)
    held_out_accuracy: float | None = None  # exact match on the test split once the run ended (None before)
    held_out_n: int = 0  # how many test expressions that is
    validation_n: int = 0  # how many validation expressions each evaluation scores
    train_size: int | None = None  # the training expressions asked for (None: all of the train split)
    train_n: int | None = None  # once ended: how many training expressions it trained on (None: not listed)
    train_accuracy: float | None = None  # once ended: exact match on those
    weight_change: tuple[WeightChange, ...] = ()  # once ended: how far each kind of weight moved
    param_change: tuple[WeightChange, ...] = ()  # once ended: how far each parameter moved

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

        Training loss at <= max_points recorded steps (thinned, never averaged), validation loss at every
        evaluation, then training accuracy at the same steps and validation accuracy at every evaluation.
        """
        idx = thin_indices(self.steps_done, max_points)
        validations = self.validations
        ev_step = np.array([e.step for e in validations], dtype=np.int64)
        ev_acc = np.array([e.accuracy for e in validations], dtype=np.float64)
        with_loss = [e for e in validations if e.loss is not None]
        loss_step = np.array([e.step for e in with_loss], dtype=np.int64)
        ev_loss = np.array([e.loss for e in with_loss], dtype=np.float64)
        k, m, j = len(idx), len(ev_step), len(loss_step)
        return {
            "step": np.concatenate([self.step[idx], loss_step, self.step[idx], ev_step]),
            "value": np.concatenate([self.loss[idx], ev_loss, self.accuracy[idx], ev_acc]),
            "metric": np.array([LOSS] * (k + j) + [ACCURACY] * (k + m), dtype=object),
            "split": np.array([CURVE_TRAIN] * k + [CURVE_VALIDATION] * j + [CURVE_TRAIN] * k
                              + [CURVE_VALIDATION] * m, dtype=object),  # fmt: skip
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
    the new task cannot read it, the first validation expression is used. `train_size`: train on this many
    training expressions only (None: all of them).
    """

    def __init__(self, task: TaskConfig | dict, train: TrainConfig | dict, model: dict | None = None, *,
                 name: str | None = None, probe: str | Expression | None = None,
                 train_size: int | None = None):  # fmt: skip
        self.id = uuid.uuid4().hex
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.max_run_s = MAX_RUN_S  # tests may shorten it
        self._ended = threading.Event()
        self._thread: threading.Thread | None = None
        self._status, self._message = "pending", ""
        self._n = 0
        self._evals: list[EvalMetrics] = []
        self._started_at: float | None = None
        self._ended_at: float | None = None
        self._probe_text, self._probe_tokens, self._probe_right = "", (), ""
        self._probe_set_text, self._mechanism_error = "", ""
        self._held_out: float | None = None
        self._held_out_n = self._validation_n = 0
        self.train_size = train_size
        self._train_n: int | None = None
        self._train_accuracy: float | None = None
        self._initial: dict[str, np.ndarray] = {}  # the weights before training (a copy)
        self._weight_change: tuple[WeightChange, ...] = ()
        self._param_change: tuple[WeightChange, ...] = ()
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
            self.model_config = model_config(dict(model or {}), self.task)
            check_limits(self.task, self.model_config, self.train)
            check_compatible(self.task, self.model_config.causal)
            cells = nested.n_balance_cells(self.task)  # one operation (and one length, one depth) each
            if train_size is not None and train_size < cells:
                task = self.task
                each = " and ".join(["operation"] + ["length"] * task.variable_length + ["depth"] * task.nested)
                raise ConfigError(f"Train on at least one expression per {each} ({cells}), not {train_size}.")
            self.name = name or default_name(self.task, self.model_config, self.train.seed)
            self._model = TaskModel.new(self.task, self.name, **dict(model or {}))
            self._probe = self._pick_probe(probe)
            self.n_params = count_params(self.model_config)  # the queue's `step_work` reads it on every refresh
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
                probe_right=self._probe_right,
                operations=self.task.operations if self.task else (),
                probe_set_text=self._probe_set_text,
                heads=self._heads(),
                components=self._components(),
                mechanism_error=self._mechanism_error,
                eval_every=self.train.eval_every if self.train else 0,
                queue_position=position,
                wait_s=wait_s,
                held_out_accuracy=self._held_out,
                held_out_n=self._held_out_n,
                validation_n=self._validation_n,
                train_size=self.train_size,
                train_n=self._train_n,
                train_accuracy=self._train_accuracy,
                weight_change=self._weight_change,
                param_change=self._param_change,
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
        self._initial = {k: v.copy() for k, v in self._model.transformer.params.items()}
        spec = RunSpec(self._model, self.train, self._probe, self.train_size)
        self._began = time.perf_counter()
        self._timed_out = False
        try:
            run = run_in_process if in_process() else train_run
            outcome = run(spec, self._stop, self._on_event)
            status, message, result = outcome.status, outcome.message, outcome.result
            if outcome.model is not None:  # trained in a worker process: the model it sent back
                self._model = outcome.model
            if result is not None:
                if self._timed_out and status == "stopped":
                    message = (f"Stopped at the time limit of {self.max_run_s / 60:g} minutes per run (this server "
                               f"has one trainer for everyone), after {result.steps:,} steps.")  # fmt: skip
                if result.test:
                    message += (f" Held-out accuracy {result.test['accuracy']:.1%} on {result.test['n']:,} "
                                "expressions.")  # fmt: skip
                    with self._lock:
                        self._held_out, self._held_out_n = float(result.test["accuracy"]), int(result.test["n"])
                if result.train:
                    with self._lock:
                        self._train_n, self._train_accuracy = int(result.train["n"]), float(result.train["accuracy"])
                params = self._model.transformer.params
                kinds, each = weight_change(self._initial, params), weight_change(self._initial, params, by_kind=False)
                with self._lock:
                    self._weight_change, self._param_change = tuple(kinds), tuple(each)
        except Exception as err:  # noqa: BLE001 - the UI shows the message; the thread must not die silently
            status, message = "failed", f"Training failed: {type(err).__name__}: {err}"
        for array in self._model.transformer.params.values():
            array.setflags(write=False)  # the trained model is handed out; nothing may change it now
        self._end(status, message)

    def _on_event(self, event: Setup | StepMetrics | EvalMetrics | MechanismError) -> None:
        """What the run reports (from the worker process, or this thread): kept for the snapshots."""
        if isinstance(event, Setup):
            with self._lock:
                self._probe_text, self._probe_tokens, self._probe_right = (event.probe_text, event.probe_tokens,
                                                                           event.probe_right)  # fmt: skip
                self._validation_n, self._probe_set_text = event.validation_n, event.probe_set_text
                self._message = "Training…"
            self.probe_set = event.probe_set
        elif isinstance(event, MechanismError):
            with self._lock:
                self._mechanism_error = event.message
        else:
            self._record(event)
            if not self._timed_out and time.perf_counter() - self._began > self.max_run_s:
                self._timed_out = True
                self._stop.set()  # the trainer evaluates once more and ends "stopped"

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


# ----------------------------------------------------------------------------- the dynamics of a run
@dataclass(frozen=True)
class WeightChange:
    """How far a group of weights (a kind, or one parameter) moved: ||W_end - W_start|| / ||W_start||, the norms
    over every entry of the group's parameters together (Frobenius)."""

    name: str  # a kind ("block 0 attention") or a parameter's name
    params: tuple[str, ...]
    start_norm: float  # ||W_start||
    change_norm: float  # ||W_end - W_start||

    @property
    def relative(self) -> float:
        """The change over the initial norm (NaN for weights that start at zero: biases)."""
        return self.change_norm / self.start_norm if self.start_norm > 0 else float("nan")


def weight_kind(name: str) -> str:
    """The kind of a parameter: "embeddings", "block i attention" / "LayerNorms" / "MLP", "final LayerNorm",
    "unembedding"."""
    parts = name.split(".")
    if parts[0] == "blocks":
        kind = {"attn": "attention", "mlp": "MLP", "ln1": "LayerNorms", "ln2": "LayerNorms"}[parts[2]]
        return f"block {parts[1]} {kind}"
    return {"embed": "embeddings", "pos_embed": "embeddings", "ln_final": "final LayerNorm",
            "unembed": "unembedding"}[parts[0]]  # fmt: skip


def weight_change(start: dict[str, np.ndarray], end: dict[str, np.ndarray], by_kind: bool = True) -> list[WeightChange]:
    """How far the weights moved from `start` to `end`, per kind (`weight_kind`) or per parameter, in the order of
    `end`'s parameters."""
    groups: dict[str, list[str]] = {}
    for name in end:
        groups.setdefault(weight_kind(name) if by_kind else name, []).append(name)
    out = []
    for group, names in groups.items():
        w0 = np.concatenate([np.ravel(start[n]).astype(np.float64) for n in names])
        w1 = np.concatenate([np.ravel(end[n]).astype(np.float64) for n in names])
        out.append(WeightChange(group, tuple(names), float(np.linalg.norm(w0)), float(np.linalg.norm(w1 - w0))))
    return out


def _pct(x: float, decimals: int = 0) -> str:
    """A share as a percentage with `decimals` decimals (up to two more where rounding would make it look like 0%
    or 100%), as the page's bars and the job's message write accuracies with 1."""
    for d in range(decimals, decimals + 3):
        text = f"{x:.{d}%}"
        if not ((float(text[:-1]) == 0 and x > 0) or (float(text[:-1]) == 100 and x < 1)):
            return text
    return f"less than {10.0 ** -d:g}%" if x < 0.5 else f"more than {100 - 10.0 ** -d:g}%"  # still: which side


def _names(items: list[str]) -> str:
    """"A", "A and B", "A, B and C"."""
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _at_step(step: int) -> str:
    return "at step 0 (before training)" if step == 0 else f"at step {step:,}"


@dataclass(frozen=True)
class Learned:
    """When one operation was learned: the first evaluation with validation accuracy >= the threshold."""

    operation: str
    step: int | None  # None: it never reached the threshold
    best: float  # its highest validation accuracy
    best_step: int  # the first evaluation with that accuracy


def learned_order(history: list[tuple[int, dict[str, float]]], threshold: float = LEARNED_AT) -> list[Learned]:
    """Each operation's `Learned` from (step, validation accuracy per operation) at each evaluation, in step
    order: sorted by the step it was learned at (the operations' own order on a tie), those never learned last."""
    if not history:
        return []
    ops = list(history[-1][1])
    out = []
    for op in ops:
        series = [(step, per_op[op]) for step, per_op in history if op in per_op]
        reached = [step for step, acc in series if acc >= threshold]
        best = max(acc for _, acc in series)
        best_step = next(step for step, acc in series if acc == best)
        out.append(Learned(op, reached[0] if reached else None, best, best_step))
    return sorted(out, key=lambda x: (x.step is None, x.step or 0, ops.index(x.operation)))


def learned_order_text(order: list[Learned], last_step: int, *, ended: bool, threshold: float = LEARNED_AT) -> str:
    """A sentence on the order in which the operations were learned (see `learned_order`), true on ties, on
    operations that never reach the threshold, and during a run (`ended` False: "not yet")."""
    if not order:
        return ""
    t = _pct(threshold)
    groups: dict[int, list[str]] = {}
    for x in order:
        if x.step is not None:
            groups.setdefault(x.step, []).append(x.operation)
    never = [x for x in order if x.step is None]
    not_yet = "never reached it" if ended else "has not reached it yet"

    def best_of(xs: list[Learned]) -> str:
        return "; ".join(f"{x.operation} {_pct(x.best, 1)}, {_at_step(x.best_step)}" for x in xs)

    if not groups:
        top = max(x.best for x in order)
        closest = [x for x in order if x.best == top]
        return (f"No operation {'reached' if ended else 'has reached'} {t} validation accuracy by step "
                f"{last_step:,}, the last evaluation. Closest: {best_of(closest)}.")  # fmt: skip
    if len(groups) == 1 and not never:
        (step, ops), = groups.items()
        if len(ops) == 1:
            return f"{ops[0]} reached {t} validation accuracy {_at_step(step)}."
        which = "Both" if len(ops) == 2 else f"All {len(ops)}"
        return f"{which} operations reached {t} validation accuracy at the same evaluation, {_at_step(step)[3:]}."
    parts = []
    for i, (step, ops) in enumerate(groups.items()):
        if i == 0 and (len(groups) > 1 or never):
            parts.append(f"{_names(ops)} first, {_at_step(step)}")
        elif i == len(groups) - 1 and not never:
            parts.append(f"{_names(ops)} last, {_at_step(step)}")
        else:
            parts.append(f"then {_names(ops)}, {_at_step(step)}")
    text = (f"The order in which the operations were learned (the first evaluation at which each one's validation "
            f"accuracy is {t} or more): " + "; ".join(parts) + ".")  # fmt: skip
    if never:
        verb = not_yet if len(never) == 1 else not_yet.replace("has", "have")
        text += f" {_names([x.operation for x in never])} {verb} (best: {best_of(never)})."
    return text


def probe_answer_text(history: list[tuple[int, ProbeAnswer]], probe: str, right: str,
                      percent: Callable[[float], str] = lambda p: _pct(p, 1)) -> str:  # fmt: skip
    """When the model's answer on the probe first became right and whether it stayed right, from (step, answer)
    at each snapshot; `right` is the right answer; `percent` writes the confidence (the page passes its own
    formatter, so that the sentence and the page's other numbers agree)."""
    if not history:
        return ""

    def _confidence(p: float) -> str:
        return f"confidence {percent(p)}"

    steps = [s for s, _ in history]
    ok = [a.correct for _, a in history]
    last_step, last = history[-1]
    now = f"at the last snapshot (step {last_step:,}) it answers `{last.written}`, {_confidence(last.confidence)}"
    if not any(ok):
        return f"The model never answered the probe **{probe}** right: {now}; the right answer is {right}."
    first = ok.index(True)
    if not ok[-1]:
        return (f"The model's answer on the probe **{probe}** was first right {_at_step(steps[first])}, but is "
                f"wrong again: {now}; the right answer is {right}.")  # fmt: skip
    since = len(ok) - ok[::-1].index(False) if False in ok else 0  # the start of the last run of right answers
    if since == 0:
        return (f"The model answered the probe **{probe}** right ({right}) at every snapshot, from step 0 "
                f"(before training, by chance); {now}.")  # fmt: skip
    if since == first:
        return (f"The answer on the probe **{probe}** first became right ({right}) {_at_step(steps[first])} and "
                f"stayed right; {now}.")  # fmt: skip
    wrong = ok.index(False, first)
    return (f"The answer on the probe **{probe}** first became right ({right}) {_at_step(steps[first])}, was "
            f"wrong again {_at_step(steps[wrong])}, and has been right since step {steps[since]:,}; {now}.")


def weight_change_text(changes: list[WeightChange] | tuple[WeightChange, ...]) -> str:
    """The kind (or kinds, on a tie) of weight that moved most relative to its initial size, and the least."""
    moved = [c for c in changes if np.isfinite(c.relative)]
    if not moved:
        return ""
    if all(c.change_norm == 0 for c in moved):
        return "No weight has moved from its initial value."
    top, low = max(c.relative for c in moved), min(c.relative for c in moved)
    most = [c.name for c in moved if c.relative == top]
    least = [c.name for c in moved if c.relative == low]
    text = (f"Moved most: the **{_names(most)}** weights, by {_pct(top)} of their initial norm "
            f"(‖W_end − W_start‖ / ‖W_start‖)")  # fmt: skip
    if top == low:
        return text + "; every kind moved by the same share."
    return text + f"; least: the **{_names(least)}** weights, by {_pct(low)}."


@dataclass(frozen=True)
class FitVerdict:
    kind: str  # "memorised", "not fit" or "generalises"
    text: str


def memorisation_text(train_n: int | None, train_accuracy: float | None, held_out: float | None, held_out_n: int,
                      *, restricted: bool) -> FitVerdict | None:  # fmt: skip
    """After a run: accuracy on the training expressions it used against held-out accuracy, and whether that says
    it memorised them (training >= LEARNED_AT and held-out at least MEMORISED_GAP below). None if either is
    unknown."""
    if train_n is None or train_accuracy is None or held_out is None:
        return None
    what = f"its {train_n:,} training expressions" if restricted else \
        f"the {train_n:,} expressions of its training split"  # fmt: skip
    new = f"the {held_out_n:,} held-out expressions it never saw"
    gap = train_accuracy - held_out
    if train_accuracy >= LEARNED_AT and gap >= MEMORISED_GAP:
        return FitVerdict("memorised", f"The model memorised {what}: {_pct(train_accuracy, 1)} right on them, but "
                          f"{_pct(held_out, 1)} on {new}, {gap * 100:.0f} points lower. Part of what it learned holds "
                          "only for the expressions it trained on.")  # fmt: skip
    if train_accuracy < LEARNED_AT:
        return FitVerdict("not fit", f"The model has not fit {what} yet: {_pct(train_accuracy, 1)} right on "
                          f"them, {_pct(held_out, 1)} on {new}.")  # fmt: skip
    return FitVerdict("generalises", f"{_pct(train_accuracy, 1)} right on {what} and {_pct(held_out, 1)} on "
                      f"{new}: what it learned carries over to expressions it never saw.")  # fmt: skip
