"""Train, validation and test splits by distinct expression, and balanced sampling from them.

A nested task (`max_depth=2`) is always split by hash (its space is huge), and is balanced over cells of
(operation, length, depth); its expressions are drawn as `nested.draw` does, not uniformly over ids.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import partial

import numpy as np

from . import nested
from .operations import ABSENT, MAX_ENUMERABLE, ExpressionSet, TaskConfig, TaskError

SPLIT_IDS = (TRAIN, VAL, TEST) = (0, 1, 2)  # an expression's split, as stored in arrays


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


def _balanced_cells(n: int, n_cells: int, rng: np.random.Generator) -> np.ndarray:
    """[n] cell indices, each cell n // n_cells times (n % n_cells cells, from a random start, once more),
    in random order. Cells are op-major, so the operations are balanced, and so are the lengths."""
    return rng.permutation((np.arange(n) + rng.integers(n_cells)) % n_cells)


def hard_values(task: TaskConfig, n: int, rng: np.random.Generator, lengths: np.ndarray | None = None) -> np.ndarray:
    """[n, n_args] values drawn where a uniform draw rarely goes: each value's digit count is equally likely
    (then the value is uniform among those of that many digits in the range), so every layout of the tokens
    (which values are short) is as common as any other; and in a third of the rows one value is replaced by
    another's, or by one more or less than it (a tie or a near tie, e.g. 49 and 50), within the range.
    `lengths` [n] (a task whose lists vary): the values past each list's end are ABSENT, and a third of the rows
    have a tie of 2 to all of the list's values (half of them exact, half near: each tied value one more, one less
    or the same), so that lists of one repeated value, like `Max ( 0 0 0 )`, are drawn at every length."""
    lo, hi = task.min_value, task.max_value
    bands = [(max(lo, 10 ** (d - 1) if d > 1 else 0), min(hi, 10**d - 1)) for d in range(1, len(str(hi)) + 1)]
    bands = np.array([b for b in bands if b[0] <= b[1]])  # [bands, 2]
    band = bands[rng.integers(0, len(bands), size=(n, task.n_args))]  # [n, n_args, 2]
    values = band[..., 0] + (rng.random((n, task.n_args)) * (band[..., 1] - band[..., 0] + 1)).astype(np.int64)
    if lengths is not None:  # lists of several lengths: a tie of any size, up to the whole list
        rows = np.flatnonzero((rng.random(n) < 1 / 3) & (lengths >= 2))
        size = lengths[rows]  # [m]
        k = 2 + (rng.random(len(rows)) * (size - 1)).astype(np.int64)  # [m] tied slots, 2 to the whole list
        order = np.argsort(np.where(np.arange(task.n_args) < size[:, None], rng.random((len(rows), task.n_args)),
                                    2.0), axis=1)  # [m, n_args] the list's slots in random order, then the rest
        tied = np.zeros((len(rows), task.n_args), dtype=bool)
        np.put_along_axis(tied, order, np.arange(task.n_args) < k[:, None], axis=1)
        exact = rng.random((len(rows), 1)) < 0.5  # [m, 1] half the ties exact, half near (one more or less too)
        near = values[rows, order[:, 0], None] + np.where(exact, 0, rng.integers(-1, 2, size=tied.shape))
        near[:, 0] = values[rows, order[:, 0]]  # the first tied slot keeps its own value: the others copy it
        source = np.take_along_axis(near, np.argsort(order, axis=1), axis=1)  # back in slot order
        values[rows] = np.where(tied, np.clip(source, lo, hi), values[rows])
        return np.where(np.arange(task.n_args) < lengths[:, None], values, ABSENT)
    if task.n_args > 1:
        rows = np.flatnonzero(rng.random(n) < 1 / 3)
        src = rng.integers(0, task.n_args, len(rows))
        dst = (src + rng.integers(1, task.n_args, len(rows))) % task.n_args  # another slot
        near = values[rows, src] + rng.integers(-1, 2, len(rows))  # -1, 0 or +1
        values[rows, dst] = np.clip(near, lo, hi)
    return values


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
    # small spaces: the split of every id, and where each cell's rows sit in `train`
    _split_of_id: np.ndarray | None = field(default=None, repr=False)  # [space_size] uint8
    _train_start: np.ndarray | None = field(default=None, repr=False)  # [n_cells]
    _train_count: np.ndarray | None = field(default=None, repr=False)  # [n_cells]

    @property
    def hashed(self) -> bool:
        return self._split_of_id is None

    def split_of_ids(self, ids: np.ndarray) -> np.ndarray:
        """[n] uint8: 0 train, 1 val, 2 test."""
        if self.hashed:
            return _hash_split(ids, self._key, self.val_fraction, self.test_fraction)
        return self._split_of_id[np.asarray(ids, dtype=np.int64)]

    def with_train(self, train: ExpressionSet) -> Splits:
        """These splits with `train` (training expressions grouped by cell, every cell present) as
        the training split that `sample_train` draws from; validation and held-out stay as they are.
        (Nested tasks: the cells are (operation, length, depth), and `train` is grouped by them here.)"""
        if self.task.nested:
            train = train.subset(np.argsort(train.balance_cells, kind="stable"))
            counts = np.bincount(train.balance_cells, minlength=nested.n_balance_cells(self.task))
        else:
            counts = np.bincount(train.cells, minlength=len(self.task.cell_sizes))  # [n_cells]
        return replace(self, train=train, _train_start=np.cumsum(counts) - counts, _train_count=counts)

    def sample_train(self, n: int, rng: np.random.Generator, hard_fraction: float = 0.0) -> ExpressionSet:
        """n training expressions (with replacement), balanced across operations (and lengths), shuffled: from
        the listed training split, or (hashed spaces) drawn by hash.

        With `hard_fraction`, that share of them (the first rows) come from the training split's hard cases
        (`hard_values`: one-digit values as common as two-digit ones, ties and near ties); the rest as above.
        (The hard cases are drawn from the whole training split, not from a `with_train` subset.)

        Nested tasks: balanced across operations, lengths and depths (1 and 2), each drawn as `nested.draw`
        does. Their hard cases are all of depth 2 (the few numbers-only expressions are learnt from the rest),
        spread over operations and lengths, and where the task has `Sum`, a third of them an outer Sum (its
        answer takes every argument's value, so it is the last to be learnt): `hard_values` for the outer list's
        numbers and for every inner list (ties and near ties within each list, every digit count as common),
        with `nested.draw`'s `hard` (more inner expressions, inner Sums, near ties between a number and an inner
        answer)."""
        task = self.task
        if task.max_depth > 1:
            return self._sample_nested(n, rng, hard_fraction)
        cells = _balanced_cells(n, len(task.cell_sizes), rng)  # [n]
        n_hard = round(n * hard_fraction)
        if n_hard:
            hard = self._sample_hard(cells[:n_hard], rng)
            rest = self._sample_uniform(cells[n_hard:], rng)
            return ExpressionSet(task, np.concatenate([hard.ops, rest.ops]), np.concatenate([hard.values, rest.values]))
        return self._sample_uniform(cells, rng)

    def _sample_hard(self, cells: np.ndarray, rng: np.random.Generator) -> ExpressionSet:
        """One training expression of each cell in `cells` with `hard_values`: 8 candidates per slot, the first
        in the training split kept (as the hashed draw below)."""
        task, n = self.task, len(cells)
        n_lengths = len(task.lengths)
        ops, lengths = cells // n_lengths, task.min_args + cells % n_lengths
        ids = np.empty(n, dtype=np.int64)
        pending = np.arange(n)
        for _ in range(1000):
            k = len(pending)
            at = np.repeat(lengths[pending], 8) if task.variable_length else None
            cand = ExpressionSet(task, np.repeat(ops[pending], 8), hard_values(task, k * 8, rng, at))
            ok = (self.split_of_ids(cand.ids()) == TRAIN).reshape(k, 8)
            hit = ok.any(axis=1)
            ids[pending[hit]] = cand.ids().reshape(k, 8)[hit, ok[hit].argmax(axis=1)]
            pending = pending[~hit]
            if not len(pending):
                return ExpressionSet.from_ids(task, ids)
        raise TaskError("Could not draw hard training expressions; lower val/test fractions.")

    def _sample_nested(self, n: int, rng: np.random.Generator, hard_fraction: float) -> ExpressionSet:
        """`sample_train` for a nested task: cells of (operation, length, depth), first `hard_fraction` of them
        hard; the rest from the listed training set (`with_train`) or drawn."""
        task = self.task
        cells = _balanced_cells(n, nested.n_balance_cells(task), rng)  # [n]
        n_hard = round(n * hard_fraction)
        parts = [self._draw_nested(nested.hard_cells(task, cells[:n_hard]), rng, hard=True)] if n_hard else []
        rest = cells[n_hard:]
        parts.append(self._sample_uniform(rest, rng) if self.train is not None else self._draw_nested(rest, rng))
        return parts[0] if len(parts) == 1 else nested.concatenate(task, parts)

    def _draw_nested(self, cells: np.ndarray, rng: np.random.Generator, hard: bool = False) -> ExpressionSet:
        """One training expression of each balance cell in `cells`, as `nested.draw` draws them (hard: with
        `hard_values` and near ties): 8 candidates per row, the first in the training split kept."""
        task, n = self.task, len(cells)
        ops, lengths, depths = nested.cell_parts(task, cells)
        values_fn = hard_values if hard else nested.uniform_values
        if not n:
            return ExpressionSet.from_ids(task, np.empty(0, dtype=np.int64))
        rows, found = [], []  # the rows filled in each round, and their expressions
        pending = np.arange(n)
        for _ in range(1000):
            k = len(pending)
            cand = nested.draw(task, np.repeat(ops[pending], 8), np.repeat(lengths[pending], 8),
                               np.repeat(depths[pending], 8), rng, values_fn, hard=hard)  # fmt: skip
            ok = (self.split_of_ids(cand.ids()) == TRAIN).reshape(k, 8)  # [k, 8]
            hit = ok.any(axis=1)
            rows.append(pending[hit])
            found.append(cand.subset(np.flatnonzero(hit) * 8 + ok[hit].argmax(axis=1)))
            pending = pending[~hit]
            if not len(pending):
                break
        else:
            raise TaskError("Could not draw training expressions; lower val/test fractions.")
        order = np.argsort(np.concatenate(rows), kind="stable")  # back in the order of `cells`
        return nested.concatenate(task, found).subset(order)

    def _sample_uniform(self, cells: np.ndarray, rng: np.random.Generator) -> ExpressionSet:
        task, n = self.task, len(cells)
        if self.train is not None:
            if (self._train_count[cells] == 0).any():
                if task.nested:  # e.g. a train_size below the number of (operation, length, depth) cells
                    raise TaskError(f"An operation, length or depth has no training expressions; train on at least "
                                    f"{nested.n_balance_cells(task)} (one per cell), or lower val/test fractions.")
                raise TaskError(
                    "An operation (or a length) has no training expressions; lower val/test fractions."
                )
            # cell k's train rows are the block [start_k, start_k + count_k) of self.train
            offset = (rng.random(n) * self._train_count[cells]).astype(np.int64)  # [n]
            return self.train.subset(self._train_start[cells] + offset)
        # Hashed: draw candidates uniformly within each slot's cell and keep the first one in
        # train. 8 per slot at once: with 70% train, all 8 miss 1 time in 15,000, so one round
        # almost always fills the batch (rounds, not draws, are what cost time).
        ids = np.empty(n, dtype=np.int64)
        pending = np.arange(n)
        for _ in range(1000):
            c = cells[pending, None]  # [pending, 1]
            size = task.cell_sizes[c] if task.variable_length else int(task.cell_sizes[0])  # a scalar draws as it did
            cand = task.cell_offsets[c] + rng.integers(0, size, size=(len(pending), 8))
            ok = self.split_of_ids(cand.ravel()).reshape(cand.shape) == TRAIN  # [pending, 8]
            hit = ok.any(axis=1)
            ids[pending[hit]] = cand[hit, ok[hit].argmax(axis=1)]
            pending = pending[~hit]
            if not len(pending):
                return ExpressionSet.from_ids(task, ids)
        raise TaskError("Could not draw training expressions; lower val/test fractions.")


def _allocate(k: int, capacity: np.ndarray) -> np.ndarray:
    """[cells] how many of `k` each cell gives: equal shares (k // cells, one more for the first few), where a
    cell holds fewer it gives all it holds and the rest is shared among the others."""
    want = np.zeros(len(capacity), dtype=np.int64)
    open_, left = np.arange(len(capacity)), k
    while len(open_) and left > 0:
        share = left // len(open_) + (np.arange(len(open_)) < left % len(open_))
        short = capacity[open_] < share
        if not short.any():
            want[open_] = share
            return want
        want[open_[short]] = capacity[open_[short]]
        left -= int(capacity[open_[short]].sum())
        open_ = open_[~short]
    return want


def _sample_split_ids(
    task: TaskConfig,
    which: int,
    k: int,
    fraction: float,
    rng: np.random.Generator,
    split_fn: Callable[[np.ndarray], np.ndarray],
) -> np.ndarray:
    """[k] distinct ids in split `which` (holding `fraction` of the space), balanced across cells (operations,
    and lengths): k // cells each, one more for the first few. A cell too small for its share (the few lists
    of two values, say) is listed and gives every one it holds; the others share the rest.
    (Nested tasks: `_sample_nested_split_ids`.)"""
    if task.nested:
        return _sample_nested_split_ids(task, which, k, fraction, rng, split_fn)
    sizes, offsets = task.cell_sizes, task.cell_offsets
    out = [np.empty(0, dtype=np.int64)]
    if fraction == 0:  # an empty split
        return out[0]
    # A cell is listed when it may be asked for more than half its split (where drawing distinct ids would crawl).
    listed = {c: ids[split_fn(ids) == which]
              for c in np.flatnonzero(fraction * sizes / 2 < k) if sizes[c] <= MAX_ENUMERABLE
              for ids in [offsets[c] + np.arange(sizes[c])]}  # fmt: skip
    capacity = np.array([len(listed[c]) if c in listed else int(fraction * sizes[c] / 2) + 1
                         for c in range(len(sizes))], dtype=np.int64)  # fmt: skip
    for c, want in enumerate(_allocate(k, capacity)):
        def draw(m: int, c: int = c) -> np.ndarray:
            return offsets[c] + rng.integers(0, sizes[c], size=m)

        out.append(_cell_ids(listed.get(c), want, int(sizes[c]), fraction, which, rng, split_fn, draw,
                             "per operation"))  # fmt: skip
    return np.concatenate(out)


def _cell_ids(listed: np.ndarray | None, want: int, size: int, fraction: float, which: int,
              rng: np.random.Generator, split_fn: Callable[[np.ndarray], np.ndarray],
              draw: Callable[[int], np.ndarray], each: str) -> np.ndarray:  # fmt: skip
    """[want] distinct ids of one cell in split `which`: a random choice of the cell's `listed` ids (in their order),
    or `draw(m)` (m candidate ids of the cell) until `want` distinct ones are in the split, in draw order so the cut
    is random. `each` names the cell in the error ("per operation")."""
    if listed is not None:
        return listed[np.sort(rng.permutation(len(listed))[:want])]
    split = ("train", "val", "test")[which]
    if want > fraction * size / 2:  # rejection sampling of distinct ids would crawl
        raise TaskError(f"Asked for {want:,} {split} expressions {each} but the split holds only "
                        f"~{fraction * size:,.0f}; lower n_eval or raise the fraction.")  # fmt: skip
    got = np.empty(0, dtype=np.int64)
    for _ in range(200):  # each round gets about half of what is missing: far fewer rounds than this
        if len(got) >= want:
            return got[:want]
        cand = draw(int(2 * want / fraction) + 16)
        cand = np.concatenate([got, cand[split_fn(cand) == which]])
        _, first = np.unique(cand, return_index=True)
        got = cand[np.sort(first)]  # distinct, in draw order so the cut is random
    raise TaskError(f"Could not draw {want:,} distinct {split} expressions {each}; lower n_eval.")


def _sample_nested_split_ids(
    task: TaskConfig,
    which: int,
    k: int,
    fraction: float,
    rng: np.random.Generator,
    split_fn: Callable[[np.ndarray], np.ndarray],
) -> np.ndarray:
    """`_sample_split_ids` for a nested task: [k] distinct ids in split `which`, balanced across the cells of
    (operation, length, depth), each drawn as `nested.draw` draws them (not uniformly over ids). A cell too small
    for its share (the depth-1 lists of two values 0-9: 100 per operation) is listed and gives every one it
    holds, as in a flat task; the others share the rest. Grouped by cell, in cell order."""
    out = [np.empty(0, dtype=np.int64)]
    if fraction == 0:  # an empty split
        return out[0]
    n_cells = nested.n_balance_cells(task)
    ops, lengths, depths = (a.tolist() for a in nested.cell_parts(task, np.arange(n_cells)))
    R, nv = task.slot_radix, task.n_values
    # distinct expressions in each cell, as Python ints (R ** length may be near 2 ** 63)
    sizes = [nv**L if d == 1 else R**L - nv**L for L, d in zip(lengths, depths, strict=True)]
    listed = {}
    for c in range(n_cells):
        op, L, d = ops[c], lengths[c], depths[c]
        if fraction * sizes[c] / 2 >= k:  # never asked for more than half its split: drawn
            continue
        if d == 1 and sizes[c] <= MAX_ENUMERABLE:
            ids = nested.numbers_only_ids(task, op, L)
        elif d == 2 and R**L <= MAX_ENUMERABLE:  # tiny tasks only: list the whole (op, length) cell
            every = task.cell_offsets[op * len(task.lengths) + L - task.min_args] + np.arange(R**L, dtype=np.int64)
            ids = every[ExpressionSet.from_ids(task, every).depths == 2]
        else:
            continue
        listed[c] = ids[split_fn(ids) == which]
    capacity = np.array([len(listed[c]) if c in listed else int(fraction * sizes[c] / 2) + 1
                         for c in range(n_cells)], dtype=np.int64)  # fmt: skip
    for c, want in enumerate(_allocate(k, capacity).tolist()):
        def draw(m: int, c: int = c) -> np.ndarray:
            return nested.draw(task, np.full(m, ops[c]), np.full(m, lengths[c]), np.full(m, depths[c]), rng).ids()

        out.append(_cell_ids(listed.get(c), want, sizes[c], fraction, which, rng, split_fn, draw,
                             "of one operation, length and depth"))  # fmt: skip
    return np.concatenate(out)


def make_splits(
    task: TaskConfig,
    seed: int = 0,
    val_fraction: float = 0.1,
    test_fraction: float = 0.2,
    n_eval: int = 5_000,
) -> Splits:
    """Split the task's expressions; `n_eval` caps val and test in hashed (large) spaces, per length of list
    (a task of lists of 2 to 10 values holds up to 9 * n_eval in each, spread over the lengths).

    A nested task is always hashed, and `n_eval` is per (length, depth): val and test hold up to
    2 * n_lengths * n_eval each, balanced over (operation, length, depth) cells, drawn as training draws."""
    for name, f in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not 0 <= f < 1:
            raise TaskError(f"{name} must be in [0, 1), got {f!r}.")
    if val_fraction + test_fraction >= 1:
        raise TaskError("val_fraction + test_fraction must leave something to train on (< 1).")
    rng = np.random.default_rng(seed)

    if task.space_size > MAX_ENUMERABLE or task.nested:
        key = _seed_key(seed)
        split_fn = partial(
            _hash_split, key=key, val_fraction=val_fraction, test_fraction=test_fraction
        )
        k = n_eval * len(task.lengths) * (2 if task.nested else 1)  # nested: per length and depth
        val = _sample_split_ids(task, VAL, k, val_fraction, rng, split_fn)
        test = _sample_split_ids(task, TEST, k, test_fraction, rng, split_fn)
        return Splits(
            task, seed, val_fraction, test_fraction,
            train=None,
            val=ExpressionSet.from_ids(task, val),
            test=ExpressionSet.from_ids(task, test),
            _key=key,
        )  # fmt: skip

    # Small: enumerate (ids 0..space_size-1, grouped by cell), then shuffle and cut each cell's block.
    split_of_id = np.empty(task.space_size, dtype=np.uint8)
    parts: dict[int, list[np.ndarray]] = {TRAIN: [], VAL: [], TEST: []}
    for size, offset in zip(task.cell_sizes.tolist(), task.cell_offsets.tolist(), strict=True):
        ids = offset + rng.permutation(size)
        n_test, n_val = round(test_fraction * size), round(val_fraction * size)
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


