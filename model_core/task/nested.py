"""Nested expressions (`TaskConfig.max_depth == 2`): an argument may itself be an expression of numbers, e.g.
`Max ( First ( 2 8 ) Second ( 5 1 ) 7 )` -> 7. The inner expressions take the task's own operations and list
lengths, and hold numbers only (there is no third level).

Arrays (`ExpressionSet`), never lists of objects:
    ops [n]                          the outer operation (index into task.operations)
    values [n, n_args]               each argument's value: the number, or the inner expression's answer;
                                     ABSENT past the end of the list (so `answers` is the flat code, unchanged)
    inner_ops [n, n_args]            the inner expression's operation, -1 where the slot is a number or absent
    inner_values [n, n_args, n_args] the inner expression's values, ABSENT where there is none

Ids. Every argument slot holds one of R = `task.slot_radix` codes: a number v is `v - min_value`
(0..n_values-1), an inner expression is `n_values + its id in the flat task` (`task.flat_task`, whose ids are
op/length/values codes). An expression's id is its (operation, length) cell's offset plus its slot codes in
base R, first slot most significant: the flat layout with R for n_values. So distinct expressions have distinct
ids, depth 1 and depth 2 share one space, and `from_ids` peels the codes off again.

Generation (`draw`), balanced over cells of (operation, length, depth): a depth-1 expression has uniform values,
as in a flat task. A depth-2 expression has each argument an inner expression with probability 1/2, conditioned
on at least one; each inner operation and inner length uniform; every number uniform. (Uniform over ids would
make almost every slot a full-length inner expression: those are nearly all of R.) Training's hard cases
(`draw(hard=True)`) lean to more inner expressions and inner Sums; the held-out sets are drawn as above.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .operations import ABSENT, OPERATIONS, Expression, ExpressionSet, TaskConfig, TaskError, count_text

# values_fn(task, n, rng, lengths or None) -> [n, n_args] values, ABSENT past each list's end where lengths is
# given: `uniform_values` here, or `splits.hard_values` for the hard cases.
ValuesFn = Callable[[TaskConfig, int, np.random.Generator, "np.ndarray | None"], np.ndarray]


# ----------------------------------------------------------------------------- arrays


def normalise_inner(es: ExpressionSet) -> None:
    """Called by `ExpressionSet.__post_init__` when the task is nested or inner arrays were given: shapes and
    dtypes, a flat task refused inner expressions (and left with None), and the answers of the inner
    expressions written into `values`."""
    task, n, A = es.task, len(es.ops), es.task.n_args
    inner_ops = np.full((n, A), -1, dtype=np.int64) if es.inner_ops is None else \
        np.asarray(es.inner_ops, dtype=np.int64).reshape(n, A)  # fmt: skip
    inner_values = np.full((n, A, A), ABSENT, dtype=np.int64) if es.inner_values is None else \
        np.asarray(es.inner_values, dtype=np.int64).reshape(n, A, A)  # fmt: skip
    inner = inner_ops >= 0  # [n, A]
    if not task.nested:
        if inner.any():
            raise TaskError("This task takes numbers only, not expressions inside expressions (max_depth is 1).")
        object.__setattr__(es, "inner_ops", None)
        object.__setattr__(es, "inner_values", None)
        return
    inner_values = np.where(inner[..., None], inner_values, ABSENT)  # a number slot has no inner values
    object.__setattr__(es, "inner_ops", inner_ops)
    object.__setattr__(es, "inner_values", inner_values)
    if inner.any():
        object.__setattr__(es, "values", np.where(inner, inner_answers(task, inner_ops, inner_values), es.values))


def inner_answers(task: TaskConfig, inner_ops: np.ndarray, inner_values: np.ndarray) -> np.ndarray:
    """[n, n_args] the answer of each slot's inner expression (ABSENT where there is none): the registry fns on
    the inner rows only, [n_ops, m], then each row picks its op's (as `ExpressionSet.answers`)."""
    out = np.full(inner_ops.shape, ABSENT, dtype=np.int64)
    rows = np.nonzero(inner_ops >= 0)  # ([m], [m]): example, slot
    sub = inner_values[rows]  # [m, n_args]
    if len(sub):
        every = np.stack([OPERATIONS[name].fn(sub) for name in task.operations])  # [n_ops, m]
        out[rows] = every[inner_ops[rows], np.arange(len(sub))]
    return out


def inner_lengths(es: ExpressionSet) -> np.ndarray:
    """[n, n_args] how many values each slot's inner expression has (0 at a number or absent slot)."""
    if es.inner_values is None:
        return np.zeros(es.values.shape, dtype=np.int64)
    return (es.inner_values != ABSENT).sum(axis=2)


def concatenate(task: TaskConfig, parts: list[ExpressionSet]) -> ExpressionSet:
    """One set of the rows of `parts` (all of `task`), in order."""
    ops = np.concatenate([p.ops for p in parts])
    values = np.concatenate([p.values for p in parts])
    if not task.nested:
        return ExpressionSet(task, ops, values)
    return ExpressionSet(task, ops, values, np.concatenate([p.inner_ops for p in parts]),
                         np.concatenate([p.inner_values for p in parts]))  # fmt: skip


# ----------------------------------------------------------------------------- ids


def ids(es: ExpressionSet, task: TaskConfig) -> np.ndarray:
    """[n] int64: each expression's id (see the module docstring)."""
    R, nv = task.slot_radix, task.n_values
    codes = es.values - task.min_value  # [n, n_args] a number's code (garbage at inner and absent slots)
    rows = np.nonzero(es.inner_ops >= 0)
    if len(rows[0]):
        inner = ExpressionSet(task.flat_task, es.inner_ops[rows], es.inner_values[rows])
        codes = codes.copy()
        codes[rows] = nv + inner.ids()
    out = np.zeros(len(es), dtype=np.int64)
    for j in range(task.n_args):  # base R, first slot most significant; absent slots are at the end
        out = np.where(es.values[:, j] != ABSENT, out * R + codes[:, j], out)
    cells = es.ops * len(task.lengths) + es.lengths - task.min_args
    return task.cell_offsets[cells] + out


def from_ids(task: TaskConfig, ids: np.ndarray) -> ExpressionSet:
    """Inverse of `ids`: each id's cell, its slot codes (last first), then the inner expressions from theirs."""
    ids = np.asarray(ids, dtype=np.int64)
    R, nv, A = task.slot_radix, task.n_values, task.n_args
    cell = np.searchsorted(task.cell_offsets, ids, side="right") - 1  # [n]
    n_lengths = len(task.lengths)
    length = task.min_args + cell % n_lengths  # [n]
    rest = ids - task.cell_offsets[cell]
    codes = np.full((len(ids), A), -1, dtype=np.int64)  # [n, n_args], -1 where absent
    for j in reversed(range(A)):
        here = j < length
        q, r = np.divmod(rest, R)
        codes[:, j] = np.where(here, r, -1)
        rest = np.where(here, q, rest)
    values = np.where(codes < 0, ABSENT, np.where(codes < nv, codes + task.min_value, 0))  # inner: filled later
    inner_ops = np.full((len(ids), A), -1, dtype=np.int64)
    inner_values = np.full((len(ids), A, A), ABSENT, dtype=np.int64)
    rows = np.nonzero(codes >= nv)
    if len(rows[0]):
        inner = ExpressionSet.from_ids(task.flat_task, codes[rows] - nv)
        inner_ops[rows], inner_values[rows] = inner.ops, inner.values
    return ExpressionSet(task, cell // n_lengths, values, inner_ops, inner_values)


def numbers_only_ids(task: TaskConfig, op: int, length: int) -> np.ndarray:
    """[n_values ** length] the ids of every depth-1 expression of one (operation, length) cell, in order: each
    enumeration index's base-n_values digits re-read in base `slot_radix`."""
    R, nv = task.slot_radix, task.n_values
    rest = np.arange(nv**length, dtype=np.int64)
    out = np.zeros_like(rest)
    for j in reversed(range(length)):
        rest, code = np.divmod(rest, nv)
        out += code * R ** (length - 1 - j)
    return task.cell_offsets[op * len(task.lengths) + length - task.min_args] + out


# ----------------------------------------------------------------------------- objects


def expression(es: ExpressionSet, i: int) -> Expression:
    """Row i as an `Expression`, inner expressions as `Expression`s."""
    names = es.task.operations
    args: list[int | Expression] = []
    for j in range(int(es.lengths[i])):
        k = int(es.inner_ops[i, j])
        if k < 0:
            args.append(int(es.values[i, j]))
        else:
            inner = es.inner_values[i, j]
            args.append(Expression(names[k], tuple(inner[inner != ABSENT].tolist())))
    return Expression(names[es.ops[i]], tuple(args))


def _op_index(task: TaskConfig, name: str) -> int:
    if name not in task.operations:
        raise TaskError(f"This task does not take {name}; it takes {', '.join(task.operations)}.")
    return task.operations.index(name)


def _check_list(task: TaskConfig, e: Expression) -> None:
    if not task.min_args <= len(e.values) <= task.n_args:
        raise TaskError(f"{e.op} has {len(e.values)} values; this task takes {count_text(task)}.")


def from_expressions(task: TaskConfig, items: list[Expression]) -> ExpressionSet:
    """`ExpressionSet.from_expressions`: a flat task's set as `from_lists` makes it; a nested task's with every
    operation, length, value and depth checked (TaskError)."""
    if not task.nested:
        if any(isinstance(v, Expression) for e in items for v in e.values):
            raise TaskError("This task takes numbers only, not expressions inside expressions (max_depth is 1).")
        ops = np.array([task.operations.index(e.op) for e in items], dtype=np.int64)
        return ExpressionSet.from_lists(task, ops, [e.values for e in items])
    n, A = len(items), task.n_args
    ops = np.empty(n, dtype=np.int64)
    values = np.full((n, A), ABSENT, dtype=np.int64)
    inner_ops = np.full((n, A), -1, dtype=np.int64)
    inner_values = np.full((n, A, A), ABSENT, dtype=np.int64)
    lo, hi = task.min_value, task.max_value

    def number(v: int) -> int:
        if not lo <= v <= hi:
            raise TaskError(f"{v} is outside this task's range {lo}-{hi}.")
        return v

    for i, e in enumerate(items):
        ops[i] = _op_index(task, e.op)
        _check_list(task, e)
        for j, v in enumerate(e.values):
            if not isinstance(v, Expression):
                values[i, j] = number(v)
                continue
            if v.depth > 1:
                raise TaskError(f"This task takes expressions nested at most {task.max_depth} deep.")
            inner_ops[i, j] = _op_index(task, v.op)
            _check_list(task, v)
            inner_values[i, j, : len(v.values)] = [number(x) for x in v.values]
            values[i, j] = 0  # a placeholder: ExpressionSet writes the inner answer here
    return ExpressionSet(task, ops, values, inner_ops, inner_values)


# ----------------------------------------------------------------------------- generation


def n_balance_cells(task: TaskConfig) -> int:
    """How many cells sampling balances over: (operation, length), and in a nested task depth too."""
    return len(task.cell_sizes) * (2 if task.nested else 1)


def cell_parts(task: TaskConfig, cells: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Balance cells [n] of a nested task (`ExpressionSet.balance_cells`) -> ops [n], lengths [n], depths [n]."""
    n_lengths = len(task.lengths)
    return cells // (2 * n_lengths), task.min_args + cells // 2 % n_lengths, 1 + cells % 2


def hard_cells(task: TaskConfig, cells: np.ndarray) -> np.ndarray:
    """Balance cells [n] for hard cases: the same operations and lengths at depth 2, and where the task has `Sum`,
    the first third of them an outer Sum (its answer takes every argument's value, so it is the last learnt)."""
    per_op = 2 * len(task.lengths)  # balance cells are op-major: op * per_op + (length - min_args) * 2 + depth - 1
    out = cells | 1  # depth 2
    if "Sum" in task.operations:
        third = len(out) // 3
        out[:third] = task.operations.index("Sum") * per_op + out[:third] % per_op
    return out


def uniform_values(task: TaskConfig, n: int, rng: np.random.Generator, lengths: np.ndarray | None = None):
    """[n, n_args] uniform values in the task's range (ABSENT past each of `lengths`, where given)."""
    v = rng.integers(task.min_value, task.max_value + 1, size=(n, task.n_args))
    return v if lengths is None else np.where(np.arange(task.n_args) < lengths[:, None], v, ABSENT)


def _inner_slots(present: np.ndarray, rng: np.random.Generator, p: float = 0.5) -> np.ndarray:
    """[n, n_args] bool: each present slot an inner expression with probability `p`, redrawn for a row until it
    has at least one (a row with no present slot has none)."""
    out = np.zeros(present.shape, dtype=bool)
    pending = np.flatnonzero(present.any(axis=1))
    while len(pending):  # a row of L slots misses with probability (1 - p)**L, so this ends in a few rounds
        pick = (rng.random((len(pending), present.shape[1])) < p) & present[pending]
        ok = pick.any(axis=1)
        out[pending[ok]] = pick[ok]
        pending = pending[~ok]
    return out


def draw(task: TaskConfig, ops: np.ndarray, lengths: np.ndarray, depths: np.ndarray, rng: np.random.Generator,
         values_fn: ValuesFn = uniform_values, hard: bool = False) -> ExpressionSet:  # fmt: skip
    """One expression per row of a nested task with the given outer op [n], length [n] and depth [n] (see the
    module docstring for the distribution). `values_fn` draws the numbers of the outer list and of each inner
    list (`splits.hard_values` for the hard cases).

    `hard` draws where the uniform rows rarely go: each argument an inner expression with probability 3/4 (so
    `Sum ( Sum ( 9 8 ) Max ( 7 9 ) Sum ( 6 6 7 ) )`, three inner expressions, is 3/7 of three-argument rows, not
    1/7); an inner `Sum` (where the task has one) as likely as all its other operations together, so inner
    answers past 9 and outer sums past 30 are common; and in a third of the depth-2 rows that have a number
    too, one number is set to an inner expression's answer, or one more or less (within the range), so that
    `Max ( First ( 4 9 ) 5 )`-like near ties between the levels are common."""
    A, n = task.n_args, len(ops)
    varied = task.variable_length  # hard_values ties differently when lists vary (it is given their lengths)
    present = np.arange(A) < lengths[:, None]  # [n, A]
    values = np.where(present, values_fn(task, n, rng, lengths if varied else None), ABSENT)  # [n, A]
    inner = _inner_slots(present & (depths == 2)[:, None], rng, 0.75 if hard else 0.5)  # [n, A]
    m = int(inner.sum())
    inner_ops = np.full((n, A), -1, dtype=np.int64)
    inner_ops[inner] = rng.integers(0, len(task.operations), m)
    if hard and "Sum" in task.operations:  # half the inner expressions a Sum, the rest as before
        inner_ops[inner] = np.where(rng.random(m) < 0.5, task.operations.index("Sum"), inner_ops[inner])
    inner_len = task.min_args + rng.integers(0, len(task.lengths), m)  # [m]
    inner_values = np.full((n, A, A), ABSENT, dtype=np.int64)
    inner_values[inner] = np.where(np.arange(A) < inner_len[:, None],
                                   values_fn(task, m, rng, inner_len if varied else None), ABSENT)  # fmt: skip
    es = ExpressionSet(task, ops, values, inner_ops, inner_values)  # writes the inner answers into values
    if not hard:
        return es
    number = present & ~inner  # [n, A]
    rows = np.flatnonzero((rng.random(n) < 1 / 3) & number.any(axis=1) & inner.any(axis=1))
    dst = np.where(number[rows], rng.random((len(rows), A)), -1.0).argmax(axis=1)  # a number slot
    src = np.where(inner[rows], rng.random((len(rows), A)), -1.0).argmax(axis=1)  # an inner slot
    near = es.values[rows, src] + rng.integers(-1, 2, len(rows))
    values = es.values.copy()
    values[rows, dst] = np.clip(near, task.min_value, task.max_value)
    return ExpressionSet(task, ops, values, inner_ops, inner_values)
