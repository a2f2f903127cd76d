"""Expressions as token sequences: the layout the models read, their targets, and exact match."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from .task.vocab import Vocabulary

from .operations import ExpressionSet, TaskConfig, check_compatible, n_digits

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
    order = np.argsort(~keep, axis=1, kind="stable")  # kept slots first, in their order
    tokens = np.take_along_axis(slots, order, axis=1)
    length = keep.sum(axis=1)  # [n]
    T = int(length.max(initial=0))
    tokens = np.where(np.arange(T) < length[:, None], tokens[:, :T], vocab.pad_id)
    return tokens, keep[:, : lay.equals_slot].sum(axis=1), length


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
