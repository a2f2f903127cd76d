"""The toy task: operations on a few numbers, as datasets of arrays and as token sequences.

An expression is `Op ( a b c )`, e.g. `Max ( 5 3 9 )` -> `9`. Datasets are arrays, never lists
of objects: `ops [n]` (index into `task.operations`) and `values [n, n_args]`.

Every expression has an integer id (mixed radix: op index, then the values), so train, val and
test are split *by distinct expression*: no test expression is ever trained on.
- Small spaces (<= 200_000 expressions) are enumerated and split per operation.
- Large spaces (e.g. 3 values in 0-99: 5,000,000) are split by a hash of the id, so an id's split
  is known without materialising the train set.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, fields
from functools import cached_property
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # vocab imports this module for the registry; only a type hint goes back
    pass

MAX_VALUE = 999  # values are at most 3 digit tokens
MAX_ARGS = 8
MAX_ENUMERABLE = 200_000  # spaces up to this size are enumerated; above, split by hash


class TaskError(ValueError):
    """A task, split or encoding request that cannot be met; the message says what to change."""


# ----------------------------------------------------------------------------- operations


@dataclass(frozen=True)
class Operation:
    """One operation: `fn` maps values `[n, n_args]` to answers `[n]`."""

    name: str
    fn: Callable[[np.ndarray], np.ndarray]
    description: str  # one line for the UI
    min_args: int = 1  # fewest values the operation makes sense on


# Adding an operation is one entry. Every answer is one of the values, so it has no more digits
# than max_value (TaskConfig.max_answer_digits relies on that).
OPERATIONS: dict[str, Operation] = {
    op.name: op
    for op in (
        Operation("First", lambda v: v[:, 0], "the first value"),
        Operation("Second", lambda v: v[:, 1], "the second value", min_args=2),
        Operation("Last", lambda v: v[:, -1], "the last value"),
        Operation("Max", lambda v: v.max(axis=1), "the largest of the values"),
        Operation("Min", lambda v: v.min(axis=1), "the smallest of the values"),
    )
}


def _known() -> str:
    return ", ".join(OPERATIONS)


def _is_int(x: Any) -> bool:
    return isinstance(x, (int, np.integer)) and not isinstance(x, bool)


def n_digits(x: np.ndarray) -> np.ndarray:
    """Decimal digits of non-negative ints (0 has one digit)."""
    return 1 + (x >= 10).astype(np.int64) + (x >= 100)


# ----------------------------------------------------------------------------- config


@dataclass(frozen=True)
class TaskConfig:
    """Which operations, on how many values, in which range."""

    operations: tuple[str, ...] = ("First", "Second", "Last", "Max", "Min")
    min_value: int = 0
    max_value: int = 9
    n_args: int = 3

    def __post_init__(self) -> None:
        ops = self.operations
        if isinstance(ops, str) or not isinstance(ops, (tuple, list)):
            raise TaskError(f"operations must be a list of names from {_known()}, got {ops!r}.")
        object.__setattr__(self, "operations", tuple(ops))  # lists from JSON become tuples
        if not ops:
            raise TaskError(f"Choose at least one operation from {_known()}.")
        for op in ops:
            if op not in OPERATIONS:
                raise TaskError(f"Unknown operation {op!r}. Known: {_known()}.")
        if len(set(ops)) != len(ops):
            dupes = sorted(op for op, n in Counter(ops).items() if n > 1)  # one pass: a list may be long
            raise TaskError(f"Each operation may appear once; repeated: {', '.join(dupes)}.")
        for name in ("min_value", "max_value", "n_args"):
            if not _is_int(getattr(self, name)):
                raise TaskError(f"{name} must be a whole number, got {getattr(self, name)!r}.")
            object.__setattr__(self, name, int(getattr(self, name)))
        if self.min_value < 0:
            raise TaskError(f"min_value must be 0 or more, got {self.min_value}.")
        if self.max_value > MAX_VALUE:
            raise TaskError(f"max_value must be at most {MAX_VALUE}, got {self.max_value}.")
        if self.min_value > self.max_value:
            raise TaskError(
                f"min_value ({self.min_value}) must not be above max_value ({self.max_value})."
            )
        if not 1 <= self.n_args <= MAX_ARGS:
            raise TaskError(f"n_args must be between 1 and {MAX_ARGS}, got {self.n_args}.")
        for op in ops:
            if self.n_args < OPERATIONS[op].min_args:
                raise TaskError(
                    f"{op} needs n_args >= {OPERATIONS[op].min_args}; raise n_args or drop {op}."
                )
        if self.space_size >= 2**63:  # ids are int64
            raise TaskError(
                f"{self.space_size:.3g} distinct expressions is too many to index; "
                "lower n_args or max_value."
            )

    @property
    def n_values(self) -> int:
        return self.max_value - self.min_value + 1

    @property
    def space_size(self) -> int:
        """Number of distinct expressions."""
        return len(self.operations) * self.n_values**self.n_args

    @property
    def max_answer_digits(self) -> int:
        return len(str(self.max_value))

    @property
    def input_len(self) -> int:
        """Most input tokens: `Op ( v , v , v ) =` with every value at full width."""
        return 1 + 1 + self.n_args * self.max_answer_digits + (self.n_args - 1) + 1 + 1

    @property
    def seq_len(self) -> int:
        """Most tokens in a whole sequence: input, answer digits, `<eos>`."""
        return self.input_len + self.max_answer_digits + 1

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)} | {
            "operations": list(self.operations)
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TaskConfig:
        """Build from a dict (e.g. a checkpoint's JSON); unknown keys are an error."""
        unknown = sorted(set(data) - {f.name for f in fields(cls)})
        if unknown:
            raise TaskError(f"unknown task config keys: {unknown}")
        return cls(**data)


def check_compatible(task: TaskConfig, causal: bool) -> None:
    """A bidirectional model predicts the answer as one token at `=`, so answers must be 0-9."""
    if not causal and task.max_answer_digits > 1:
        raise TaskError(
            "a bidirectional model answers with one token; values above 9 need a causal model"
        )


# ----------------------------------------------------------------------------- expressions


@dataclass(frozen=True)
class Expression:
    """One expression, e.g. `Expression("Max", (5, 3, 9))`; `.answer == 9`."""

    op: str
    values: tuple[int, ...]

    def __post_init__(self) -> None:
        if self.op not in OPERATIONS:
            raise TaskError(f"Unknown operation {self.op!r}. Known: {_known()}.")
        object.__setattr__(self, "values", tuple(int(v) for v in self.values))
        if len(self.values) < OPERATIONS[self.op].min_args:
            raise TaskError(f"{self.op} needs at least {OPERATIONS[self.op].min_args} values.")

    @property
    def answer(self) -> int:
        return int(OPERATIONS[self.op].fn(np.array([self.values]))[0])

    @property
    def text(self) -> str:
        return f"{self.op} ( {' '.join(map(str, self.values))} )"


@dataclass(frozen=True, eq=False)
class ExpressionSet:
    """Many expressions of one task as arrays: `ops [n]`, `values [n, n_args]`."""

    task: TaskConfig
    ops: np.ndarray  # [n] int64, index into task.operations
    values: np.ndarray  # [n, n_args] int64

    def __post_init__(self) -> None:
        ops = np.asarray(self.ops, dtype=np.int64)
        values = np.asarray(self.values, dtype=np.int64).reshape(len(ops), self.task.n_args)
        object.__setattr__(self, "ops", ops)
        object.__setattr__(self, "values", values)

    @classmethod
    def from_ids(cls, task: TaskConfig, ids: np.ndarray) -> ExpressionSet:
        """Inverse of `ids`: peel the mixed-radix digits off, last value first."""
        rest = np.asarray(ids, dtype=np.int64)
        values = np.empty((len(rest), task.n_args), dtype=np.int64)  # [n, n_args]
        for j in reversed(range(task.n_args)):
            rest, values[:, j] = np.divmod(rest, task.n_values)
        return cls(task, rest, values + task.min_value)

    def __len__(self) -> int:
        return len(self.ops)

    @cached_property
    def answers(self) -> np.ndarray:
        """[n] int64: every registry fn on all rows [n_ops, n], then each row picks its op's.

        Cheaper than masking per op for training batches, and the ops are cheap."""
        fns = [OPERATIONS[name].fn for name in self.task.operations]
        every = np.stack([fn(self.values) for fn in fns]) if len(self) else np.empty((0, 0))
        return every[self.ops, np.arange(len(self))].astype(np.int64)

    def ids(self, task: TaskConfig | None = None) -> np.ndarray:
        """[n] int64 unique id per expression: op index, then the values, in base n_values."""
        task = task or self.task
        ids = self.ops.copy()
        for j in range(task.n_args):
            ids = ids * task.n_values + (self.values[:, j] - task.min_value)
        return ids

    def expression(self, i: int) -> Expression:
        return Expression(self.task.operations[self.ops[i]], tuple(self.values[i].tolist()))

    def subset(self, idx: np.ndarray | slice) -> ExpressionSet:
        return ExpressionSet(self.task, self.ops[idx], self.values[idx])


def enumerate_all(task: TaskConfig) -> ExpressionSet:
    """Every expression of the task, in id order (so grouped by operation)."""
    if task.space_size > MAX_ENUMERABLE:
        raise TaskError(
            f"{task.space_size:,} expressions are too many to list (limit {MAX_ENUMERABLE:,}); "
            "use make_splits, which samples large spaces."
        )
    return ExpressionSet.from_ids(task, np.arange(task.space_size, dtype=np.int64))


