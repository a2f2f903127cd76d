"""The toy task: operations on a few numbers, as datasets of arrays and as token sequences.

An expression is `Op ( a b c )`, e.g. `Max ( 5 3 9 )` -> `9`. Datasets are arrays, never lists
of objects: `ops [n]` (index into `task.operations`) and `values [n, n_args]`. A task may take lists of
several lengths (`min_args` to `n_args` values); a shorter list's missing slots hold ABSENT (-1), at the end.
A nested task (`max_depth=2`) lets an argument be an expression of numbers itself, e.g.
`Max ( First ( 2 8 ) 7 )` -> 7: see `nested.py` for its arrays and ids.

The expressions of one operation and one length form a *cell*; cells are numbered op-major
(`op * n_lengths + length - min_args`). Every expression has an integer id (its cell's offset, then the
values in mixed radix), so train, val and test are split *by distinct expression*: no test expression is
ever trained on.
- Small spaces (<= 200_000 expressions) are enumerated and split per cell.
- Large spaces (e.g. 3 values in 0-99: 5,000,000) are split by a hash of the id, so an id's split
  is known without materialising the train set.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from functools import cached_property
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # vocab imports this module for the registry; only a type hint goes back
    pass

MAX_VALUE = 999  # values are at most 3 digit tokens
MAX_ARGS = 10
ABSENT = -1  # the value in a slot past the end of a shorter list (below every real value, which are >= 0)
MAX_ENUMERABLE = 200_000  # spaces up to this size are enumerated; above, split by hash


class TaskError(ValueError):
    """A task, split or encoding request that cannot be met; the message says what to change."""


# ----------------------------------------------------------------------------- operations


@dataclass(frozen=True)
class Operation:
    """One operation: `fn` maps values `[n, n_args]` (ABSENT past each list's end) to answers `[n]`."""

    name: str
    fn: Callable[[np.ndarray], np.ndarray]
    description: str  # one line for the UI
    min_args: int = 1  # fewest values the operation makes sense on
    largest: Callable[[int, int], int] = lambda n_args, max_value: max_value  # its largest answer, on n_args values
    selects: bool = True  # its answer is one of the values (so it has a slot the answer comes from)


# Adding an operation is one entry. `largest` bounds its answers (TaskConfig.max_answer_digits relies on it):
# the selections answer one of the values; Sum answers up to n_args * max_value.
OPERATIONS: dict[str, Operation] = {
    op.name: op
    for op in (
        Operation("First", lambda v: v[:, 0], "the first value"),
        Operation("Second", lambda v: v[:, 1], "the second value", min_args=2),
        Operation("Last", lambda v: v[np.arange(len(v)), (v != ABSENT).sum(axis=1) - 1], "the last value"),
        Operation("Max", lambda v: v.max(axis=1), "the largest of the values"),  # ABSENT is below every value
        Operation("Min", lambda v: np.where(v == ABSENT, MAX_VALUE + 1, v).min(axis=1), "the smallest of the values"),
        Operation("Sum", lambda v: np.where(v == ABSENT, 0, v).sum(axis=1), "the sum of the values",
                  largest=lambda n_args, max_value: n_args * max_value, selects=False),
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
    """Which operations, on how many values (`min_args` to `n_args`; None: exactly `n_args`), in which range."""

    operations: tuple[str, ...] = ("First", "Second", "Last", "Max", "Min")
    min_value: int = 0
    max_value: int = 9
    n_args: int = 3  # the most values a list has
    min_args: int | None = None  # the fewest; None means n_args (every list has n_args values)
    max_depth: int = 1  # 1: every argument is a number; 2: an argument may be an expression of numbers

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
        if self.min_args is None:
            object.__setattr__(self, "min_args", self.n_args)
        for name in ("min_value", "max_value", "n_args", "min_args", "max_depth"):
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
        if not 1 <= self.min_args <= self.n_args:
            raise TaskError(f"min_args must be between 1 and n_args ({self.n_args}), got {self.min_args}.")
        for op in ops:
            if self.min_args < OPERATIONS[op].min_args:
                name = "n_args" if self.min_args == self.n_args else "min_args"
                raise TaskError(
                    f"{op} needs {name} >= {OPERATIONS[op].min_args}; raise {name} or drop {op}."
                )
        if self.max_depth not in (1, 2):
            raise TaskError(f"max_depth must be 1 (numbers only) or 2 (an argument may be an expression), "
                            f"got {self.max_depth}.")
        if self.largest_answer > MAX_VALUE:
            of = f"{self.n_args} Sums of " if self.max_depth > 1 else ""
            raise TaskError(f"Answers may reach {self.largest_answer:,} (Sum of {of}{self.n_args} values up to "
                            f"{self.max_value}); answers are at most {MAX_VALUE}: lower n_args or max_value"
                            + (", or drop Sum or max_depth." if self.max_depth > 1 else "."))
        if self.space_size >= 2**63:  # ids are int64
            what = "n_args, max_value, the number of operations or max_depth" if self.max_depth > 1 else \
                "n_args or max_value"  # fmt: skip
            raise TaskError(f"{self.space_size:.3g} distinct expressions is too many to index; lower {what}.")

    @property
    def n_values(self) -> int:
        return self.max_value - self.min_value + 1

    @property
    def lengths(self) -> range:
        """Every number of values a list may have."""
        return range(self.min_args, self.n_args + 1)

    @property
    def variable_length(self) -> bool:
        return self.min_args < self.n_args

    @property
    def nested(self) -> bool:
        return self.max_depth > 1

    @cached_property
    def flat_task(self) -> TaskConfig:
        """This task without nesting: the task of its inner expressions (itself when it is flat)."""
        return replace(self, max_depth=1) if self.nested else self

    @property
    def slot_radix(self) -> int:
        """How many things one argument slot may hold: a number (n_values of them), or, in a nested task, any
        expression of the flat task (its ids follow the numbers). Ids are mixed-radix in it (see `nested.py`)."""
        if not self.nested:
            return self.n_values
        return self.n_values + self.flat_task.space_size

    @property
    def space_size(self) -> int:
        """Number of distinct expressions (a Python int: it is checked against int64 before any array)."""
        return len(self.operations) * sum(self.slot_radix**n for n in self.lengths)

    @cached_property
    def cell_sizes(self) -> np.ndarray:
        """[n_ops * n_lengths] int64: expressions in each cell (one operation, one length), op-major."""
        return np.tile([self.slot_radix**n for n in self.lengths], len(self.operations)).astype(np.int64)

    @cached_property
    def cell_offsets(self) -> np.ndarray:
        """[n_ops * n_lengths] int64: the first id of each cell."""
        return np.cumsum(self.cell_sizes) - self.cell_sizes

    @property
    def largest_answer(self) -> int:
        """The largest answer of any expression; nested, an argument may be an inner expression's largest answer
        (Sum of 3 Sums of 3 values in 0-9: 81)."""
        flat = max(OPERATIONS[op].largest(self.n_args, self.max_value) for op in self.operations)
        if not self.nested:
            return flat
        arg = max(self.max_value, flat)  # the largest an argument can be
        return max(OPERATIONS[op].largest(self.n_args, arg) for op in self.operations)

    @property
    def value_digits(self) -> int:
        return len(str(self.max_value))

    @property
    def max_answer_digits(self) -> int:
        return len(str(self.largest_answer))

    @property
    def input_len(self) -> int:
        """Most input tokens: `Op ( v , v , v ) =` with every value at full width (nested: with every argument
        a full-length inner expression `Op ( v , v , v )`)."""
        arg = self.value_digits
        if self.nested:
            arg = max(arg, 1 + 1 + self.n_args * self.value_digits + (self.n_args - 1) + 1)
        return 1 + 1 + self.n_args * arg + (self.n_args - 1) + 1 + 1

    @property
    def seq_len(self) -> int:
        """Most tokens in a whole sequence: input, answer digits, `<eos>`."""
        return self.input_len + self.max_answer_digits + 1

    def to_dict(self) -> dict[str, Any]:
        """As JSON; `min_args` only where lists vary in length, `max_depth` only where it is 2 (so a flat, fixed
        task's dict is as it always was)."""
        out = {f.name: getattr(self, f.name) for f in fields(self)} | {"operations": list(self.operations)}
        if not self.variable_length:
            del out["min_args"]
        if not self.nested:
            del out["max_depth"]
        return out

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
        why = "values above 9" if task.max_value > 9 else f"answers up to {task.largest_answer} (Sum)"
        raise TaskError(f"a bidirectional model answers with one token; {why} need a causal model")


# ----------------------------------------------------------------------------- expressions


@dataclass(frozen=True)
class Expression:
    """One expression, e.g. `Expression("Max", (5, 3, 9))`; `.answer == 9`. A value may be an (inner) Expression:
    `Expression("Max", (Expression("First", (2, 8)), 7))` is `Max ( First ( 2 8 ) 7 )`, answer 7."""

    op: str
    values: tuple[int | Expression, ...]

    def __post_init__(self) -> None:
        if self.op not in OPERATIONS:
            raise TaskError(f"Unknown operation {self.op!r}. Known: {_known()}.")
        object.__setattr__(self, "values", tuple(v if isinstance(v, Expression) else int(v) for v in self.values))
        if len(self.values) < OPERATIONS[self.op].min_args:
            raise TaskError(f"{self.op} needs at least {OPERATIONS[self.op].min_args} values.")

    @property
    def depth(self) -> int:
        """1 if every value is a number; one more than its deepest inner expression otherwise."""
        return 1 + max((v.depth for v in self.values if isinstance(v, Expression)), default=0)

    @property
    def answer(self) -> int:
        args = [v.answer if isinstance(v, Expression) else v for v in self.values]  # inner expressions first
        return int(OPERATIONS[self.op].fn(np.array([args]))[0])

    @property
    def text(self) -> str:
        return f"{self.op} ( {' '.join(v.text if isinstance(v, Expression) else str(v) for v in self.values)} )"


@dataclass(frozen=True, eq=False)
class ExpressionSet:
    """Many expressions of one task as arrays: `ops [n]`, `values [n, n_args]` (ABSENT past each list's end).

    A nested task's set also has `inner_ops [n, n_args]` (the op of the inner expression in each slot, or -1
    where the slot is a number or absent) and `inner_values [n, n_args, n_args]` (its values, ABSENT where there
    is none); `values` then holds, at an inner slot, the inner expression's answer (filled in here, whatever was
    passed), so `answers` reads `values` at any depth. A flat task's set has neither (both None)."""

    task: TaskConfig
    ops: np.ndarray  # [n] int64, index into task.operations
    values: np.ndarray  # [n, n_args] int64
    inner_ops: np.ndarray | None = field(default=None, repr=False)  # [n, n_args] int64, nested tasks only
    inner_values: np.ndarray | None = field(default=None, repr=False)  # [n, n_args, n_args] int64, nested only

    def __post_init__(self) -> None:
        ops = np.asarray(self.ops, dtype=np.int64)
        values = np.asarray(self.values, dtype=np.int64).reshape(len(ops), self.task.n_args)
        object.__setattr__(self, "ops", ops)
        object.__setattr__(self, "values", values)
        # (max_depth, not the `nested` property: this runs for every batch of the flat path too)
        if self.task.max_depth > 1 or self.inner_ops is not None or self.inner_values is not None:
            from .nested import normalise_inner  # here, not at the top: nested imports this module

            normalise_inner(self)

    @classmethod
    def from_lists(cls, task: TaskConfig, ops: np.ndarray, lists: list[tuple[int, ...]]) -> ExpressionSet:
        """From value lists of any allowed length (padded with ABSENT here); in a nested task a value may be an
        inner `Expression` (see `from_expressions`)."""
        if task.nested:
            return cls.from_expressions(task, [Expression(task.operations[k], v) for k, v in zip(ops, lists,
                                                                                                strict=True)])
        values = np.full((len(lists), task.n_args), ABSENT, dtype=np.int64)
        for i, v in enumerate(lists):
            if not task.min_args <= len(v) <= task.n_args:
                raise TaskError(f"{len(v)} values; this task takes {count_text(task)}.")
            values[i, : len(v)] = v
        return cls(task, ops, values)

    @classmethod
    def from_expressions(cls, task: TaskConfig, items: list[Expression]) -> ExpressionSet:
        """From `Expression`s: a flat task's as `from_lists` makes them (an inner expression is a TaskError);
        a nested task's with their operations, lengths, range and depth checked against it (TaskError)."""
        from .nested import from_expressions

        return from_expressions(task, items)

    @classmethod
    def from_ids(cls, task: TaskConfig, ids: np.ndarray) -> ExpressionSet:
        """Inverse of `ids`: find each id's cell, then peel the mixed-radix digits off, last value first."""
        if task.max_depth > 1:
            from .nested import from_ids

            return from_ids(task, ids)
        ids = np.asarray(ids, dtype=np.int64)
        cell = np.searchsorted(task.cell_offsets, ids, side="right") - 1  # [n]
        n_lengths = len(task.lengths)
        length = task.min_args + cell % n_lengths  # [n]
        rest = ids - task.cell_offsets[cell]
        values = np.full((len(ids), task.n_args), ABSENT, dtype=np.int64)  # [n, n_args]
        for j in reversed(range(task.n_args)):
            here = j < length
            q, r = np.divmod(rest, task.n_values)
            values[:, j] = np.where(here, r + task.min_value, ABSENT)
            rest = np.where(here, q, rest)
        return cls(task, cell // n_lengths, values)

    def __len__(self) -> int:
        return len(self.ops)

    @cached_property
    def lengths(self) -> np.ndarray:
        """[n] int64: how many values each list has."""
        return (self.values != ABSENT).sum(axis=1)

    @cached_property
    def cells(self) -> np.ndarray:
        """[n] int64: each expression's cell (its operation and length)."""
        return self.ops * len(self.task.lengths) + self.lengths - self.task.min_args

    @cached_property
    def depths(self) -> np.ndarray:
        """[n] int64: 1 where every argument is a number, 2 where one is an inner expression."""
        if self.inner_ops is None:
            return np.ones(len(self), dtype=np.int64)
        return 1 + (self.inner_ops >= 0).any(axis=1).astype(np.int64)

    @cached_property
    def balance_cells(self) -> np.ndarray:
        """[n] int64: the cells sampling balances over: `cells` in a flat task; (operation, length, depth) in a
        nested one, numbered `cell * 2 + depth - 1` (so still op-major)."""
        if not self.task.nested:
            return self.cells
        return self.cells * 2 + self.depths - 1

    @cached_property
    def answers(self) -> np.ndarray:
        """[n] int64: every registry fn on all rows [n_ops, n], then each row picks its op's.

        Cheaper than masking per op for training batches, and the ops are cheap."""
        fns = [OPERATIONS[name].fn for name in self.task.operations]
        every = np.stack([fn(self.values) for fn in fns]) if len(self) else np.empty((0, 0))
        return every[self.ops, np.arange(len(self))].astype(np.int64)

    def ids(self, task: TaskConfig | None = None) -> np.ndarray:
        """[n] int64 unique id per expression: its cell's offset plus the values in base n_values (nested: each
        slot's code in base `slot_radix`, see `nested.py`)."""
        task = task or self.task
        if task.max_depth > 1:
            from .nested import ids

            return ids(self, task)
        if not task.variable_length:  # one cell per op: op index, then every value
            ids = self.ops.copy()
            for j in range(task.n_args):
                ids = ids * task.n_values + (self.values[:, j] - task.min_value)
            return ids
        ids = np.zeros(len(self), dtype=np.int64)
        for j in range(task.n_args):
            here = self.values[:, j] != ABSENT
            ids = np.where(here, ids * task.n_values + (self.values[:, j] - task.min_value), ids)
        return task.cell_offsets[self.ops * len(task.lengths) + self.lengths - task.min_args] + ids

    def expression(self, i: int) -> Expression:
        if self.inner_ops is not None:
            from .nested import expression

            return expression(self, i)
        return Expression(self.task.operations[self.ops[i]], tuple(self.values[i, : self.lengths[i]].tolist()))

    def subset(self, idx: np.ndarray | slice) -> ExpressionSet:
        if self.inner_ops is not None:
            return ExpressionSet(self.task, self.ops[idx], self.values[idx], self.inner_ops[idx],
                                 self.inner_values[idx])  # fmt: skip
        return ExpressionSet(self.task, self.ops[idx], self.values[idx])

    def sample(self, n: int, seed) -> ExpressionSet:
        """At most `n` of these, drawn without replacement with `seed` (a numpy seed), in their order; all of them
        (this set itself) when it has no more than `n`."""
        if len(self) <= n:
            return self
        return self.subset(np.sort(np.random.default_rng(seed).choice(len(self), n, replace=False)))


def count_text(task: TaskConfig) -> str:
    """How many values the task takes, in words: '3 values' or '2 to 10 values'."""
    if task.variable_length:
        return f"{task.min_args} to {task.n_args} values"
    return f"{task.n_args} value" + ("s" if task.n_args > 1 else "")


def task_text(task: TaskConfig) -> str:
    """The task in words: 'First, Second, Last, Max, Min of 3 values in 0-9', and for a nested task ', where a value
    may be such an expression itself (nested 2 deep)'."""
    text = f"{', '.join(task.operations)} of {count_text(task)} in {task.min_value}-{task.max_value}"
    if task.nested:
        text += f", where a value may be such an expression itself (nested {task.max_depth} deep)"
    return text


def enumerate_all(task: TaskConfig) -> ExpressionSet:
    """Every expression of the task, in id order (so grouped by operation)."""
    if task.space_size > MAX_ENUMERABLE:
        raise TaskError(
            f"{task.space_size:,} expressions are too many to list (limit {MAX_ENUMERABLE:,}); "
            "use make_splits, which samples large spaces."
        )
    return ExpressionSet.from_ids(task, np.arange(task.space_size, dtype=np.int64))


