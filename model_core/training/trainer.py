"""The training loop the CLI and the app share.

`Trainer.run()` is a generator: after every step it yields a `StepMetrics`, and
every `eval_every` steps (and at the first and last step) an `EvalMetrics` with
validation accuracy per operation and a snapshot of the probe expression's
attention patterns, so a UI can replay how the heads formed. It stops between
steps when a `threading.Event` is set, and stops with a message (keeping the last
finite weights) if the loss or the gradient becomes NaN or infinite.

With `early_snapshots=(every, until)` it also snapshots every `every` steps up to step
`until` (the Train page: every 10 steps up to 100, when most heads form): those
`EvalMetrics` carry the attention and the `measure` but no validation accuracy
(`accuracy` and `per_op` are None), so the validation schedule, its cost and the early
stop are those of `eval_every`. `measure(model)`, if given, is called at every snapshot
and its result kept as `EvalMetrics.mechanism` (the Train page measures the mechanism
on a probe set, `model_core.interp.probe`). Neither changes the weights or the batches.

Every validation also measures the mean token loss on the validation split (`evaluate_with_loss`: the same
forward pass as the accuracy), and every snapshot the model's answer on the probe and its confidence
(`ProbeAnswer`). With `train_size=N` the batches come from N training expressions only (`restrict_train`: the
first ones of each operation's seeded order), so that a learner can watch a model memorise them; the validation
and held-out splits stay as they are. At the end the model is also scored on the training expressions it used
(`TrainResult.train`, where they can be listed: not for a hashed task trained on all of them).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .. import machine
from ..config import TrainConfig
from ..task import Expression, ExpressionSet, Splits, exact_match_at_rows, make_splits
from ..task.splits import TRAIN, _sample_split_ids
from ..task_model import TaskModel, accuracy_breakdown
from . import _alloc
from .memory import EVAL_BATCH
from .optim import clip_grad_norm, lr_at, make_optimizer


@dataclass(frozen=True)
class StepMetrics:
    step: int  # steps done so far (1 after the first update)
    loss: float  # the batch's mean cross-entropy before this update
    accuracy: float  # the batch's exact-match accuracy before this update
    lr: float
    grad_norm: float  # before clipping
    elapsed_s: float


@dataclass(frozen=True)
class ProbeAnswer:
    """What the model answers on the probe expression at a snapshot."""

    written: str  # the answer tokens it wrote, e.g. "9" or "8 2 <eos>"
    correct: bool
    confidence: float  # the probability of its whole answer (`Answer.confidence`)


@dataclass(frozen=True)
class EvalMetrics:
    """A snapshot at one step: the probe's attention, and validation accuracy on the `eval_every` schedule."""

    step: int
    accuracy: float | None  # exact match on the validation split; None at an early snapshot between evaluations
    per_op: dict[str, float] | None
    attention: np.ndarray  # [layer, head, q_pos, k_pos] the probe's patterns at this step
    elapsed_s: float
    mechanism: Any = None  # what the trainer's `measure(model)` returned at this step (None without one)
    loss: float | None = None  # mean token cross-entropy on the validation split (None where not validated)
    probe_answer: ProbeAnswer | None = None

    @property
    def validated(self) -> bool:
        """Whether validation accuracy was measured at this step."""
        return self.accuracy is not None


def is_validation_step(step: int, cfg: TrainConfig) -> bool:
    """Validation accuracy is measured at step 0, every `eval_every` steps and at the last step."""
    return step % cfg.eval_every == 0 or step == cfg.steps


def is_snapshot_step(step: int, cfg: TrainConfig, early: tuple[int, int] | None = None) -> bool:
    """A snapshot (attention, measure) is taken at every validation step and, with `early` = (every, until),
    every `every` steps up to step `until`."""
    if is_validation_step(step, cfg):
        return True
    return early is not None and step <= early[1] and step % early[0] == 0


def snapshot_steps(cfg: TrainConfig, early: tuple[int, int] | None = None) -> list[int]:
    """The steps of every snapshot of a run that goes to its last step."""
    return [s for s in range(cfg.steps + 1) if is_snapshot_step(s, cfg, early)]


@dataclass
class TrainResult:
    status: str  # "finished", "reached_target", "stopped" or "diverged"
    message: str
    steps: int
    wall_s: float
    test: dict = field(default_factory=dict)  # held-out accuracy: {"accuracy", "per_op", "n"}
    train: dict = field(default_factory=dict)  # the same on the training expressions used ({} if not listed)


def evaluate_with_loss(model: TaskModel, exprs: ExpressionSet, batch_size: int = EVAL_BATCH) -> dict:
    """`TaskModel.evaluate` (accuracy overall and per operation, "n") and "loss": the mean cross-entropy over
    every answer token (a causal model's <eos> too), as the training loss averages a batch, from one pass."""
    right = np.zeros(len(exprs), dtype=bool)
    total, count = 0.0, 0
    for start in range(0, len(exprs), batch_size):
        part = exprs.subset(np.arange(start, min(start + batch_size, len(exprs))))
        batch = model.encode(part)
        rows = np.nonzero(batch.targets >= 0)
        logits = model.transformer.forward(batch.tokens, rows=rows).astype(np.float64)  # [answer tokens, vocab]
        right[start : start + len(part)] = exact_match_at_rows(logits, batch.targets)
        target = batch.targets[rows]  # [answer tokens]
        top = logits.max(axis=-1)
        log_z = top + np.log(np.exp(logits - top[:, None]).sum(axis=-1))
        total += float((log_z - logits[np.arange(len(target)), target]).sum())
        count += len(target)
    return accuracy_breakdown(exprs, right) | {"loss": total / count if count else float("nan")}


VALIDATION_CAP = 5_000  # expressions each evaluation scores, at most


def validation_set(splits: Splits) -> ExpressionSet:
    """The validation split, or a seeded sample of VALIDATION_CAP of it (lists of 2 to 10 values hold 45,000,
    whose scoring at every evaluation would take longer than the training between them). The held-out split is
    scored whole at the end."""
    return splits.val.sample(VALIDATION_CAP, [splits.seed, 2])


def restrict_train(splits: Splits, n: int, seed: int) -> ExpressionSet | None:
    """N distinct training expressions, balanced across cells (operations, and lengths: n // n_cells each, one
    more for the first n % n_cells), grouped by cell; None if the split holds no more than N (train on all of it).

    Enumerated tasks: the first of each cell's block of `splits.train`, which `make_splits` shuffled with the
    seed. Hashed tasks (no list of the training split): drawn with the seed, as `make_splits` draws validation."""
    task, n_cells = splits.task, len(splits.task.cell_sizes)
    if n < n_cells:
        what = "operations times lengths" if task.variable_length else "operations"
        raise ValueError(f"train_size must be at least the number of {what} ({n_cells}), got {n}")
    if not splits.hashed:
        if n >= len(splits.train):
            return None
        rows = [np.flatnonzero(splits.train.cells == k)[: n // n_cells + (k < n % n_cells)] for k in range(n_cells)]
        return splits.train.subset(np.concatenate(rows))
    rng = np.random.default_rng([seed, 1])  # not the batches' generator: the batches stay as they were
    fraction = 1.0 - splits.val_fraction - splits.test_fraction
    return ExpressionSet.from_ids(task, _sample_split_ids(task, TRAIN, n, fraction, rng, splits.split_of_ids))


class Trainer:
    def __init__(self, model: TaskModel, cfg: TrainConfig, *, probe: str | Expression | None = None,
                 splits: Splits | None = None, early_snapshots: tuple[int, int] | None = None,
                 measure: Callable[[TaskModel], Any] | None = None, train_size: int | None = None):  # fmt: skip
        # A step allocates hundreds of short-lived arrays and many small matrix products:
        # keep freed memory for reuse and fault in OpenBLAS's buffer once (see _alloc).
        _alloc.keep_freed_memory()
        _alloc.warm_up_blas()
        self.model = model
        self.cfg = cfg
        self.splits = splits if splits is not None else make_splits(model.task, seed=cfg.seed)
        # the training expressions the batches come from: None = the whole train split (`Splits.sample_train`)
        self.train_set = restrict_train(self.splits, train_size, cfg.seed) if train_size is not None else None
        if self.train_set is not None and cfg.hard_fraction:
            raise ValueError("hard_fraction draws from the whole training split; it cannot be used with train_size")
        self._batches = self.splits if self.train_set is None else self.splits.with_train(self.train_set)
        self.validation = validation_set(self.splits)  # what each evaluation scores
        self.optimizer = make_optimizer(cfg, model.transformer.params)
        self.rng = np.random.default_rng(cfg.seed)
        if probe is None:
            probe = self.splits.val.expression(0)
        self.probe = model.parse(probe) if isinstance(probe, str) else probe
        self.probe_tokens = model.encode(model.expressions([self.probe])).tokens  # [1, T]
        self.result: TrainResult | None = None
        if early_snapshots is not None and not (early_snapshots[0] >= 1 and early_snapshots[1] >= 0):
            raise ValueError(f"early_snapshots must be (every >= 1, until >= 0), got {early_snapshots!r}")
        self.early_snapshots = early_snapshots
        self.measure = measure

    def sample_batch(self, n: int, rng: np.random.Generator) -> ExpressionSet:
        """n training expressions (with replacement, balanced across operations) from `train_set`, else from the
        whole train split (`hard_fraction` of them from its hard cases)."""
        if self.cfg.hard_fraction:
            return self._batches.sample_train(n, rng, hard_fraction=self.cfg.hard_fraction)
        return self._batches.sample_train(n, rng)

    def used_train_set(self) -> ExpressionSet | None:
        """The training expressions the batches come from, when they can be listed."""
        return self.train_set if self.train_set is not None else self.splits.train

    def probe_answer(self) -> ProbeAnswer:
        a = self.model.answer(self.probe)
        return ProbeAnswer(" ".join(a.answer_tokens), a.correct, a.confidence)

    def probe_attention(self) -> np.ndarray:
        """[layer, head, q_pos, k_pos] attention patterns of the probe expression, now."""
        _, cache = self.model.transformer.run_with_cache(
            self.probe_tokens, names_filter=lambda name: name.endswith("hook_pattern")
        )
        return np.stack([cache[f"blocks.{i}.attn.hook_pattern"][0] for i in range(self.model.transformer.cfg.n_layers)])

    def _evaluate(self, step: int, start: float, validate: bool = True) -> EvalMetrics:
        ev = evaluate_with_loss(self.model, self.validation) if validate else \
            {"accuracy": None, "per_op": None, "loss": None}  # fmt: skip
        mechanism = self.measure(self.model) if self.measure is not None else None
        return EvalMetrics(step, ev["accuracy"], ev["per_op"], self.probe_attention(), time.perf_counter() - start,
                           mechanism, ev["loss"], self.probe_answer())  # fmt: skip

    def run(self, stop: threading.Event | None = None) -> Iterator[StepMetrics | EvalMetrics]:
        cfg, model = self.cfg, self.model
        params = model.transformer.params
        start = time.perf_counter()
        status, message, step = "finished", f"Trained for {cfg.steps} steps.", 0
        yield self._evaluate(0, start)
        while step < cfg.steps:
            if stop is not None and stop.is_set():
                status, message = "stopped", f"Stopped after {step} steps."
                break
            batch = model.encode(self.sample_batch(cfg.batch_size, self.rng))
            loss, grads, logits = model.transformer.loss_and_grads(batch.tokens, batch.targets)
            norm = clip_grad_norm(grads, cfg.grad_clip)
            if not (np.isfinite(loss) and np.isfinite(norm)):
                what = "loss" if not np.isfinite(loss) else "gradient"
                status = "diverged"
                message = (
                    f"The {what} became {'NaN' if np.isnan(loss if what == 'loss' else norm) else 'infinite'} "
                    f"at step {step + 1} (learning rate {lr_at(step, cfg):.3g}); training stopped and the "
                    f"model keeps its weights from step {step}. Try a smaller learning rate."
                )
                break
            lr = lr_at(step, cfg)
            self.optimizer.step(params, grads, lr)
            step += 1
            right = exact_match_at_rows(logits, batch.targets)  # logits: [target rows, vocab]
            yield StepMetrics(step, loss, float(right.mean()), lr, float(norm), time.perf_counter() - start)
            if is_snapshot_step(step, cfg, self.early_snapshots):
                ev = self._evaluate(step, start, validate=is_validation_step(step, cfg))
                yield ev
                if ev.validated and cfg.stop_at_accuracy is not None and ev.accuracy >= cfg.stop_at_accuracy:
                    status = "reached_target"
                    message = f"Reached {ev.accuracy:.1%} validation accuracy after {step} steps."
                    break
        wall = time.perf_counter() - start
        test = model.evaluate(self.splits.test, batch_size=EVAL_BATCH)
        used = self.used_train_set()
        train = model.evaluate(used, batch_size=EVAL_BATCH) if used is not None else {}
        model.train_config = cfg
        model.metrics = {
            "status": status, "steps": step, "wall_s": round(wall, 3),
            "heldout_accuracy": test["accuracy"], "heldout_per_op": test["per_op"], "heldout_n": test["n"],
            **({"heldout_per_length": {str(k): v for k, v in test["per_length"].items()}} if "per_length" in test
               else {}),  # JSON keys are strings
            **({"heldout_per_depth": {str(k): v for k, v in test["per_depth"].items()}} if "per_depth" in test
               else {}),
            **({"train_size": len(self.train_set)} if self.train_set is not None else {}),
            **({"train_accuracy": train["accuracy"], "train_n": train["n"]} if train else {}),
            "trained_on": machine.fingerprint(),
        }  # fmt: skip
        self.result = TrainResult(status, message, step, wall, test, train)
