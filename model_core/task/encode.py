"""Expressions as token sequences: the layout the models read, their targets, and exact match."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from .task.vocab import Vocabulary

from .operations import ABSENT, ExpressionSet, TaskConfig, check_compatible, n_digits

IGNORE = -1  # target id meaning "no loss here"


# ----------------------------------------------------------------------------- token sequences


@dataclass(frozen=True, eq=False)
class Batch:
    tokens: np.ndarray  # [n, T] int64, padded at the end with vocab.pad_id
    targets: np.ndarray  # [n, T] int64, IGNORE (-1) where there is no loss
    answer_pos: np.ndarray  # [n] int64, index of the `=` token


@dataclass(frozen=True)
class _Layout:
    """Fixed-width slots for `Op ( v , v , v ) = a <eos>`: every number gets D digit slots."""

    template: np.ndarray  # [W] token ids of the fixed slots (op and digit slots filled per batch)
    digit_cols: np.ndarray  # [(n_args + 1) * D] slot of each digit: the values', then the answer's
    sep_cols: np.ndarray  # [n_args] the slot after each value: `,`, or `)` after the last
    equals_slot: int
    digit_ids: np.ndarray  # [10] token id of each digit
    op_ids: np.ndarray  # [n_ops] token id of each of task.operations


@lru_cache(maxsize=32)
def _layout(task: TaskConfig, vocab: Vocabulary) -> _Layout:
    D = task.max_answer_digits
    cells: list[str | None] = [None, "("]  # None marks a slot filled per example
    for j in range(task.n_args):
        cells += [None] * D + ["," if j < task.n_args - 1 else ")"]
    cells += ["="] + [None] * D + ["<eos>"]
    template = np.array([vocab.pad_id if c is None else vocab.id(c) for c in cells])
    digit_cols = [
        c for j in range(task.n_args) for c in range(2 + j * (D + 1), 2 + j * (D + 1) + D)
    ]
    equals_slot = cells.index("=")
    digit_cols += range(equals_slot + 1, equals_slot + 1 + D)
    sep_cols = [2 + j * (D + 1) + D for j in range(task.n_args)]
    return _Layout(
        template,
        np.array(digit_cols),
        np.array(sep_cols),
        equals_slot,
        np.array([vocab.id(str(d)) for d in range(10)]),
        np.array([vocab.id(op) for op in task.operations]),
    )


def _full_sequences(
    exprs: ExpressionSet, vocab: Vocabulary
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Whole sequences like `Max ( 5 6 , 7 , 8 ) = 5 6 <eos>`.

    Returns tokens [n, T], answer_pos [n] (index of `=`), length [n]. Every example is laid out
    in the same fixed-width slots, then the slots of leading zeros (and, in a shorter list, of the
    missing values and their separators) are squeezed out.
    """
    if exprs.inner_ops is not None:
        return _nested_sequences(exprs, vocab)
    task, n = exprs.task, len(exprs)
    lay = _layout(task, vocab)
    D = task.max_answer_digits
    numbers = np.concatenate([exprs.values, exprs.answers[:, None]], axis=1)  # [n, n_args + 1]
    powers = 10 ** np.arange(D - 1, -1, -1)  # [D], most significant digit first
    digits = numbers[..., None] // powers % 10  # [n, n_args + 1, D]

    slots = np.repeat(lay.template[None, :], n, axis=0)  # [n, W]
    slots[:, 0] = lay.op_ids[exprs.ops]
    slots[:, lay.digit_cols] = lay.digit_ids[digits.reshape(n, len(lay.digit_cols))]
    if D == 1 and not task.variable_length:  # one digit each, every list full: nothing to squeeze
        return slots, np.full(n, lay.equals_slot), np.full(n, slots.shape[1])

    # A digit slot is kept unless it is a leading zero (0 itself keeps its last slot) or its value is absent.
    keep = np.ones(slots.shape, dtype=bool)  # [n, W]
    present = np.arange(D) >= D - n_digits(numbers)[..., None]  # [n, n_args + 1, D]
    if task.variable_length:
        slot = np.arange(task.n_args)  # [n_args]
        length = exprs.lengths[:, None]  # [n, 1]
        present[:, :-1] &= (slot < length)[..., None]  # the answer (last) is always there
        keep[:, lay.sep_cols] = slot < length  # a missing value's separator goes too
        last_sep = lay.sep_cols[exprs.lengths - 1]  # [n] the separator after the last value closes the list
        slots[np.arange(n), last_sep] = slots[0, lay.sep_cols[-1]]  # `)`
    keep[:, lay.digit_cols] = present.reshape(n, len(lay.digit_cols))
    return _squeeze(slots, keep, lay.equals_slot, vocab.pad_id)


def _squeeze(slots: np.ndarray, keep: np.ndarray, equals_slot: int, pad_id: int):
    """The kept slots of each row [n, W] moved to the front, in their order, padded to the longest row: tokens
    [n, T], answer_pos [n] (the kept slots before `=`'s), length [n]."""
    order = np.argsort(~keep, axis=1, kind="stable")  # kept slots first, in their order
    tokens = np.take_along_axis(slots, order, axis=1)
    length = keep.sum(axis=1)  # [n]
    T = int(length.max(initial=0))
    tokens = np.where(np.arange(T) < length[:, None], tokens[:, :T], pad_id)
    return tokens, keep[:, :equals_slot].sum(axis=1), length


@dataclass(frozen=True)
class _NestedLayout:
    """Fixed-width slots for a nested task, per outer argument j a block of B slots:
    `iop ( d.. , d.. , d.. ) d.. ,` = the inner expression (op, `(`, Dv digit slots and a separator per inner
    value), then the Dv digit slots of a number, then the outer separator. Each example keeps either the inner
    expression's slots or the number's; the separators after the last value of each list become `)`."""

    template: np.ndarray  # [W] token ids of the fixed slots (`(`, `,`, `=`, `<eos>`; pad where filled per batch)
    inner_op_cols: np.ndarray  # [n_args] the inner op's slot in each block
    inner_paren_cols: np.ndarray  # [n_args] the inner `(`
    inner_digit_cols: np.ndarray  # [n_args, n_args, Dv] block j, inner value i, digit k
    inner_sep_cols: np.ndarray  # [n_args, n_args] the separator after inner value i of block j
    number_cols: np.ndarray  # [n_args, Dv] the number's digits in block j
    sep_cols: np.ndarray  # [n_args] the outer separator after block j
    answer_cols: np.ndarray  # [D] the answer's digits
    equals_slot: int
    digit_ids: np.ndarray  # [10]
    op_ids: np.ndarray  # [n_ops]
    comma_id: int
    close_id: int


@lru_cache(maxsize=32)
def _nested_layout(task: TaskConfig, vocab: Vocabulary) -> _NestedLayout:
    A, Dv, D = task.n_args, task.value_digits, task.max_answer_digits
    B = 2 + A * (Dv + 1) + Dv + 1  # one argument's block
    base = 2 + B * np.arange(A)  # [A] each block's first slot, after `Op (`
    inner_digit = base[:, None, None] + 2 + (Dv + 1) * np.arange(A)[None, :, None] + np.arange(Dv)  # [A, A, Dv]
    inner_sep = base[:, None] + 2 + (Dv + 1) * np.arange(A)[None, :] + Dv  # [A, A]
    number = base[:, None] + 2 + A * (Dv + 1) + np.arange(Dv)  # [A, Dv]
    sep = base + B - 1  # [A]
    equals = 2 + A * B
    W = equals + D + 2  # `=`, the answer, `<eos>`
    template = np.full(W, vocab.pad_id)
    template[1] = template[base + 1] = vocab.id("(")
    template[inner_sep] = template[sep] = vocab.id(",")  # `)` where a list ends, per example
    template[equals], template[W - 1] = vocab.id("="), vocab.eos_id
    return _NestedLayout(template, base, base + 1, inner_digit, inner_sep, number, sep,
                         equals + 1 + np.arange(D), equals, np.array([vocab.id(str(d)) for d in range(10)]),
                         np.array([vocab.id(op) for op in task.operations]), vocab.id(","), vocab.id(")"))  # fmt: skip


def _digits(x: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray]:
    """x [...] non-negative ints (negative ones read as 0) -> digits [..., width] most significant first, and
    [..., width] bool: the digit is written (not a leading zero; 0 itself keeps its last slot)."""
    x = np.maximum(x, 0)
    digits = x[..., None] // 10 ** np.arange(width - 1, -1, -1) % 10
    return digits, np.arange(width) >= width - n_digits(x)[..., None]


def _nested_sequences(exprs: ExpressionSet, vocab: Vocabulary) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`_full_sequences` for a nested task, e.g. `Max ( First ( 2 , 8 ) , 7 ) = 7 <eos>`: every example in the
    fixed slots of `_NestedLayout`, then the slots it does not use squeezed out. Loops over slots, not examples."""
    task, n, A = exprs.task, len(exprs), exprs.task.n_args
    lay = _nested_layout(task, vocab)
    slots = np.repeat(lay.template[None, :], n, axis=0)  # [n, W]
    keep = np.zeros(slots.shape, dtype=bool)  # [n, W]
    keep[:, [0, 1, lay.equals_slot, -1]] = True  # `Op (`, `=`, `<eos>`
    present = np.arange(A) < exprs.lengths[:, None]  # [n, A] outer slots of the list
    inner = exprs.inner_ops >= 0  # [n, A] the slots holding an inner expression
    inner_len = (exprs.inner_values != ABSENT).sum(axis=2)  # [n, A] (0 at a number)
    inner_here = np.arange(A) < inner_len[..., None]  # [n, A, A] inner values present

    slots[:, 0] = lay.op_ids[exprs.ops]
    slots[:, lay.inner_op_cols] = lay.op_ids[np.maximum(exprs.inner_ops, 0)]
    keep[:, lay.inner_op_cols] = keep[:, lay.inner_paren_cols] = inner
    digits, written = _digits(exprs.inner_values, task.value_digits)  # [n, A, A, Dv]
    slots[:, lay.inner_digit_cols] = lay.digit_ids[digits]
    keep[:, lay.inner_digit_cols] = written & inner_here[..., None]
    last = np.arange(A) == inner_len[..., None] - 1  # [n, A, A] the inner list's last value: `)` after it
    slots[:, lay.inner_sep_cols] = np.where(last, lay.close_id, lay.comma_id)
    keep[:, lay.inner_sep_cols] = inner_here
    digits, written = _digits(exprs.values, task.value_digits)  # [n, A, Dv]
    slots[:, lay.number_cols] = lay.digit_ids[digits]
    keep[:, lay.number_cols] = written & (present & ~inner)[..., None]
    slots[:, lay.sep_cols] = np.where(np.arange(A) == exprs.lengths[:, None] - 1, lay.close_id, lay.comma_id)
    keep[:, lay.sep_cols] = present
    digits, written = _digits(exprs.answers, task.max_answer_digits)  # [n, D]
    slots[:, lay.answer_cols] = lay.digit_ids[digits]
    keep[:, lay.answer_cols] = written
    return _squeeze(slots, keep, lay.equals_slot, vocab.pad_id)


def encode(exprs: ExpressionSet, vocab: Vocabulary, causal: bool) -> Batch:
    """Token ids and targets for a batch; T is the longest sequence in this batch.

    causal=False: tokens are the input up to `=`; the only target is the answer token at `=`.
    causal=True: tokens are the sequence minus its last token; from `=` on, each position's
    target is the next token (answer digits, then `<eos>`).
    Values must lie in the task's range (as everything built by this module does).
    """
    check_compatible(exprs.task, causal)
    full, answer_pos, length = _full_sequences(exprs, vocab)  # [n, T + 1], [n], [n]
    n = len(exprs)
    if causal:
        pos = np.arange(full.shape[1] - 1)  # [T]
        last = length[:, None] - 1  # [n, 1] index of <eos>, which is never an input
        tokens = np.where(pos < last, full[:, :-1], vocab.pad_id)
        targets = np.where((pos >= answer_pos[:, None]) & (pos < last), full[:, 1:], IGNORE)
    else:  # one answer digit; T is the task's longest input, so a shorter list reads the same in any batch
        T = exprs.task.input_len
        if full.shape[1] < T:  # a batch of short lists only
            full = np.pad(full, ((0, 0), (0, T - full.shape[1])), constant_values=vocab.pad_id)
        tokens = np.where(np.arange(T) <= answer_pos[:, None], full[:, :T], vocab.pad_id)
        targets = np.full((n, T), IGNORE, dtype=np.int64)
        targets[np.arange(n), answer_pos] = full[np.arange(n), answer_pos + 1]
    return Batch(tokens.astype(np.int64), targets.astype(np.int64), answer_pos.astype(np.int64))


def exact_match(pred: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """[n] bool: every position with a target is predicted right. `pred` is [n, T] ids
    (or [n, T, vocab] logits, which are argmaxed)."""
    pred = np.asarray(pred)
    if pred.ndim == 3:
        pred = pred.argmax(axis=-1)
    return exact_match_at_rows(pred[np.nonzero(targets != IGNORE)], targets)


def exact_match_at_rows(pred: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """`exact_match` from the target rows only: `pred` is [m] ids or [m, vocab] logits at the rows
    `np.nonzero(targets != IGNORE)`, in that order (what `Transformer.forward(rows=...)` returns)."""
    pred = np.asarray(pred)
    if pred.ndim == 2:
        pred = pred.argmax(axis=-1)
    rows = np.nonzero(targets != IGNORE)  # ([m], [m]) example and position
    wrong = np.bincount(rows[0], weights=pred != targets[rows], minlength=len(targets))  # [n]
    return wrong == 0
