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

from collections.abc import Callable
from dataclasses import dataclass, field, fields
from functools import cached_property, lru_cache, partial
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # vocab imports this module for the registry; only a type hint goes back
    from model_core.vocab import Vocabulary

MAX_VALUE = 999  # values are at most 3 digit tokens
MAX_ARGS = 8
MAX_ENUMERABLE = 200_000  # spaces up to this size are enumerated; above, split by hash
TRAIN, VAL, TEST = 0, 1, 2
IGNORE = -1  # target id meaning "no loss here"


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


def _n_digits(x: np.ndarray) -> np.ndarray:
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
            dupes = sorted({op for op in ops if ops.count(op) > 1})
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


# ----------------------------------------------------------------------------- splits


# splitmix64's constants as uint64 scalars, made once: building them per call costs more than
# the arithmetic on a training batch.
_GOLDEN, _MIX1, _MIX2 = (
    np.uint64(c) for c in (0x9E3779B97F4A7C15, 0xBF58476D1CE4E5B9, 0x94D049BB133111EB)
)
_S11, _S27, _S30, _S31 = (np.uint64(s) for s in (11, 27, 30, 31))


def _splitmix64(x: np.ndarray) -> np.ndarray:
    """A well-mixed bijection on uint64 arrays (splitmix64's finaliser); products wrap mod 2**64."""
    x = x + _GOLDEN
    x = (x ^ (x >> _S30)) * _MIX1
    x = (x ^ (x >> _S27)) * _MIX2
    return x ^ (x >> _S31)


def _seed_key(seed: int) -> np.uint64:
    # ids are XORed with a hashed seed (not added to the seed) so that neighbouring seeds
    # give unrelated splits rather than the same split shifted by one id.
    return _splitmix64(np.array([seed], dtype=np.uint64))[0]


def _hash_split(
    ids: np.ndarray, key: np.uint64, val_fraction: float, test_fraction: float
) -> np.ndarray:
    """[n] uint8 split of each id: hash (id, seed key) to u in [0, 1); [0, test) is test,
    [test, test + val) is val, the rest is train."""
    h = _splitmix64(np.asarray(ids, dtype=np.int64).astype(np.uint64) ^ key)
    u = (h >> _S11) * 2.0**-53  # top 53 bits -> float64 in [0, 1)
    return TEST - (u >= test_fraction).astype(np.uint8) - (u >= test_fraction + val_fraction)


def _balanced_ops(n: int, n_ops: int, rng: np.random.Generator) -> np.ndarray:
    """[n] op indices, each op n // n_ops times (n % n_ops ops, from a random start, once more),
    in random order."""
    return rng.permutation((np.arange(n) + rng.integers(n_ops)) % n_ops)


@dataclass(frozen=True, eq=False)
class Splits:
    """Train/val/test by distinct expression. `train` is None when the space is hashed."""

    task: TaskConfig
    seed: int
    val_fraction: float
    test_fraction: float
    train: ExpressionSet | None = field(repr=False)
    val: ExpressionSet = field(repr=False)
    test: ExpressionSet = field(repr=False)
    _key: np.uint64 | None = field(default=None, repr=False)  # hashed spaces: the seed's key
    # small spaces: the split of every id, and where each op's rows sit in `train`
    _split_of_id: np.ndarray | None = field(default=None, repr=False)  # [space_size] uint8
    _train_start: np.ndarray | None = field(default=None, repr=False)  # [n_ops]
    _train_count: np.ndarray | None = field(default=None, repr=False)  # [n_ops]

    @property
    def hashed(self) -> bool:
        return self._split_of_id is None

    def split_of_ids(self, ids: np.ndarray) -> np.ndarray:
        """[n] uint8: 0 train, 1 val, 2 test."""
        if self.hashed:
            return _hash_split(ids, self._key, self.val_fraction, self.test_fraction)
        return self._split_of_id[np.asarray(ids, dtype=np.int64)]

    def sample_train(self, n: int, rng: np.random.Generator) -> ExpressionSet:
        """n training expressions (with replacement), balanced across operations, shuffled."""
        task = self.task
        ops = _balanced_ops(n, len(task.operations), rng)  # [n]
        if not self.hashed:
            if (self._train_count[ops] == 0).any():
                raise TaskError(
                    "An operation has no training expressions; lower val/test fractions."
                )
            # op k's train rows are the block [start_k, start_k + count_k) of self.train
            offset = (rng.random(n) * self._train_count[ops]).astype(np.int64)  # [n]
            return self.train.subset(self._train_start[ops] + offset)
        # Hashed: draw candidates uniformly within each slot's op and keep the first one in
        # train. 8 per slot at once: with 70% train, all 8 miss 1 time in 15,000, so one round
        # almost always fills the batch (rounds, not draws, are what cost time).
        per_op = task.n_values**task.n_args
        ids = np.empty(n, dtype=np.int64)
        pending = np.arange(n)
        for _ in range(1000):
            cand = ops[pending, None] * per_op + rng.integers(0, per_op, size=(len(pending), 8))
            ok = self.split_of_ids(cand.ravel()).reshape(cand.shape) == TRAIN  # [pending, 8]
            hit = ok.any(axis=1)
            ids[pending[hit]] = cand[hit, ok[hit].argmax(axis=1)]
            pending = pending[~hit]
            if not len(pending):
                return ExpressionSet.from_ids(task, ids)
        raise TaskError("Could not draw training expressions; lower val/test fractions.")


def _sample_split_ids(
    task: TaskConfig,
    which: int,
    k: int,
    fraction: float,
    rng: np.random.Generator,
    split_fn: Callable[[np.ndarray], np.ndarray],
) -> np.ndarray:
    """[k] distinct ids in split `which` (holding `fraction` of the space), balanced across ops:
    k // n_ops each, one more for the first few."""
    per_op = task.n_values**task.n_args
    n_ops = len(task.operations)
    out = [np.empty(0, dtype=np.int64)]
    if fraction == 0:  # an empty split
        return out[0]
    for op in range(n_ops):
        want = k // n_ops + (op < k % n_ops)
        if want > fraction * per_op / 2:  # rejection sampling of distinct ids would crawl
            raise TaskError(
                f"Asked for {want:,} {('train', 'val', 'test')[which]} expressions per "
                f"operation but the split holds only ~{fraction * per_op:,.0f}; "
                "lower n_eval or raise the fraction."
            )
        got = np.empty(0, dtype=np.int64)
        while len(got) < want:
            cand = op * per_op + rng.integers(0, per_op, size=int(2 * want / fraction) + 16)
            cand = np.concatenate([got, cand[split_fn(cand) == which]])
            _, first = np.unique(cand, return_index=True)
            got = cand[np.sort(first)]  # distinct, in draw order so the cut below is random
        out.append(got[:want])
    return np.concatenate(out)


def make_splits(
    task: TaskConfig,
    seed: int = 0,
    val_fraction: float = 0.1,
    test_fraction: float = 0.2,
    n_eval: int = 5_000,
) -> Splits:
    """Split the task's expressions; `n_eval` caps val and test in hashed (large) spaces."""
    for name, f in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not 0 <= f < 1:
            raise TaskError(f"{name} must be in [0, 1), got {f!r}.")
    if val_fraction + test_fraction >= 1:
        raise TaskError("val_fraction + test_fraction must leave something to train on (< 1).")
    rng = np.random.default_rng(seed)

    if task.space_size > MAX_ENUMERABLE:
        key = _seed_key(seed)
        split_fn = partial(
            _hash_split, key=key, val_fraction=val_fraction, test_fraction=test_fraction
        )
        val = _sample_split_ids(task, VAL, n_eval, val_fraction, rng, split_fn)
        test = _sample_split_ids(task, TEST, n_eval, test_fraction, rng, split_fn)
        return Splits(
            task, seed, val_fraction, test_fraction,
            train=None,
            val=ExpressionSet.from_ids(task, val),
            test=ExpressionSet.from_ids(task, test),
            _key=key,
        )  # fmt: skip

    # Small: enumerate (ids 0..space_size-1, grouped by op), then shuffle and cut each op's block.
    per_op = task.n_values**task.n_args
    split_of_id = np.empty(task.space_size, dtype=np.uint8)
    parts: dict[int, list[np.ndarray]] = {TRAIN: [], VAL: [], TEST: []}
    for op in range(len(task.operations)):
        ids = op * per_op + rng.permutation(per_op)
        n_test, n_val = round(test_fraction * per_op), round(val_fraction * per_op)
        cuts = {TEST: ids[:n_test], VAL: ids[n_test : n_test + n_val], TRAIN: ids[n_test + n_val :]}
        for which, part in cuts.items():
            split_of_id[part] = which
            parts[which].append(part)
    counts = np.array([len(p) for p in parts[TRAIN]])
    sets = {w: ExpressionSet.from_ids(task, np.concatenate(p)) for w, p in parts.items()}
    return Splits(
        task, seed, val_fraction, test_fraction,
        train=sets[TRAIN],
        val=sets[VAL],
        test=sets[TEST],
        _split_of_id=split_of_id,
        _train_start=np.cumsum(counts) - counts,
        _train_count=counts,
    )  # fmt: skip


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
    return _Layout(
        template,
        np.array(digit_cols),
        equals_slot,
        np.array([vocab.id(str(d)) for d in range(10)]),
        np.array([vocab.id(op) for op in task.operations]),
    )


def _full_sequences(
    exprs: ExpressionSet, vocab: Vocabulary
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Whole sequences like `Max ( 5 6 , 7 , 8 ) = 5 6 <eos>`.

    Returns tokens [n, T], answer_pos [n] (index of `=`), length [n]. Every example is laid out
    in the same fixed-width slots, then the slots of leading zeros are squeezed out.
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
    if D == 1:  # one digit each: nothing to squeeze
        return slots, np.full(n, lay.equals_slot), np.full(n, slots.shape[1])

    # A digit slot is kept unless it is a leading zero (0 itself keeps its last slot).
    keep = np.ones(slots.shape, dtype=bool)  # [n, W]
    present = np.arange(D) >= D - _n_digits(numbers)[..., None]  # [n, n_args + 1, D]
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
    else:  # one answer digit, so `=` is at the same place in every example
        T = int(answer_pos.max(initial=-1)) + 1
        tokens = full[:, :T]
        targets = np.full((n, T), IGNORE, dtype=np.int64)
        targets[np.arange(n), answer_pos] = full[np.arange(n), answer_pos + 1]
    return Batch(tokens.astype(np.int64), targets.astype(np.int64), answer_pos.astype(np.int64))


def exact_match(pred: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """[n] bool: every position with a target is predicted right. `pred` is [n, T] ids
    (or [n, T, vocab] logits, which are argmaxed)."""
    pred = np.asarray(pred)
    if pred.ndim == 3:
        pred = pred.argmax(axis=-1)
    return ((pred == targets) | (targets == IGNORE)).all(axis=1)
