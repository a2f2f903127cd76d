"""Every expression of a model's task, answered: how many does it get wrong, and which.

    python benchmarks/exhaustive.py --model digits-0-99            # all 5,000,000 (5 ops x 100^3)
    python benchmarks/exhaustive.py --model digits-0-9 --show 20   # all 5,000
    python benchmarks/exhaustive.py --model runs/x.safetensors --limit 200000
    python benchmarks/exhaustive.py --model lists-0-9 --sample 200000     # too many to list: a random sample

Every operation x every value tuple in min..max is enumerated in chunks (never all token rows at once),
in the order "value tuple, then operation" (so `--limit N` and the progress line cover every operation
alike). An expression counts as right when the model writes exactly its answer: `TaskModel.exact_match`,
one teacher-forced forward pass at the answer rows, which is exactly when greedy generation (`answer_many`)
writes the right tokens and then <eos> (see `TaskModel.evaluate`). The mistakes found are then written
out greedily by `answer_many`, which also checks that each of them is indeed a wrong answer.

Prints the count of expressions and mistakes, accuracy, mistakes per operation, the first `--show`
mistakes as `text -> the model's answer (true answer)`, wall time, expressions/s and the machine's
conditions. Exit code 0 unless an error: it measures, it does not judge.

A task of lists of several lengths is enumerated in id order (length by length, per operation); where that is
too many (lists of 2 to 10 values: 55,555,555,500), `--sample N` answers N random expressions instead, each
operation and length equally likely (seeded), and says how many of them are outside the training split. A nested
task's sample is drawn as its held-out sets are (`--uniform-ids`: uniform over its ids, nearly all of which nest a
full-length expression in every argument: the hard end).

    python benchmarks/exhaustive.py --model nested-0-9 --sample 200000 [--uniform-ids]
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from model_core import ExpressionSet, TaskModel, load_model  # noqa: E402
from model_core import machine as machine_info  # noqa: E402
from model_core.task import TRAIN, make_splits, nested  # noqa: E402
from model_core.task.operations import count_text  # noqa: E402

BATCH = 512  # expressions per forward pass (512-2048 measured fastest on 2 cores; 4096 spills the cache)


@dataclass(frozen=True)
class Mistake:
    """One expression the model gets wrong."""

    id: int  # the expression's id (`ExpressionSet.ids`)
    text: str  # e.g. "Max ( 1 5 6 )"
    written: str  # the tokens the model wrote greedily, e.g. "5 <eos>"
    value: int | None  # what they say as a number (None when they are not one)
    true: int  # the right answer
    greedy_wrong: bool  # greedy generation confirms the mistake (always True unless the two decisions differ)

    def __str__(self) -> str:
        said = str(self.value) if self.value is not None else repr(self.written)
        return f"{self.text} -> {said} ({self.true})"


def order_ids(model: TaskModel, start: int, stop: int) -> np.ndarray:
    """Ids of the expressions at positions [start, stop) of the enumeration order: the value tuple
    (in id order) varies slowest, the operation fastest."""
    task = model.task
    k = np.arange(start, stop, dtype=np.int64)
    if task.variable_length:  # cells of different sizes: id order
        return k
    n_ops, per_op = len(task.operations), task.n_values**task.n_args
    return (k % n_ops) * per_op + k // n_ops


def sample_ids(model: TaskModel, n: int, seed: int, uniform_ids: bool = False) -> np.ndarray:
    """[n] random ids (with replacement), each cell (operation and length) equally likely, uniform within it.

    A nested task's ids are nearly all full-length inner expressions (`nested`'s docstring), so unless
    `uniform_ids`, its sample is drawn as its held-out sets are: `nested.draw`, each operation, length and
    depth equally likely."""
    task, rng = model.task, np.random.default_rng(seed)
    if task.nested and not uniform_ids:
        ops, lengths, depths = nested.cell_parts(task, rng.integers(0, nested.n_balance_cells(task), n))
        return nested.draw(task, ops, lengths, depths, rng).ids()
    cells = rng.integers(0, len(task.cell_sizes), n)
    return task.cell_offsets[cells] + rng.integers(0, task.cell_sizes[cells])


def mistakes(
    model: TaskModel,
    batch: int = BATCH,
    limit: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    keep: int | None = None,
    ids: np.ndarray | None = None,
) -> tuple[int, list[Mistake], dict[str, int]]:
    """Answer every expression of the model's task (the first `limit` of the enumeration order, if given).

    Returns (expressions evaluated, the mistakes in enumeration order, mistakes per operation). `keep` caps
    how many mistakes are described (all are counted in the per-operation figures). `progress(done, total)`
    is called after every chunk. `ids`: these expressions instead of the enumeration."""
    task = model.task
    total = task.space_size if limit is None else min(int(limit), task.space_size)
    total = total if ids is None else len(ids)
    wrong_ids: list[np.ndarray] = []
    per_op_count = np.zeros(len(task.operations), dtype=np.int64)
    for start in range(0, total, batch):
        part = order_ids(model, start, min(start + batch, total)) if ids is None else ids[start : start + batch]
        exprs = ExpressionSet.from_ids(task, part)
        right = model.exact_match(model.encode(exprs))  # [n] bool
        bad = ~right
        if bad.any():
            wrong_ids.append(exprs.ids()[bad])
            per_op_count += np.bincount(exprs.ops[bad], minlength=len(task.operations))
        if progress is not None:
            progress(min(start + batch, total), total)
    ids = np.concatenate(wrong_ids) if wrong_ids else np.empty(0, dtype=np.int64)  # the mistakes, from here on
    if keep is not None:
        ids = ids[:keep]
    found: list[Mistake] = []
    for s in range(0, len(ids), batch):
        part = ExpressionSet.from_ids(task, ids[s : s + batch])
        for i, a in zip(ids[s : s + batch].tolist(), model.answer_many(part), strict=True):
            found.append(Mistake(i, a.expression.text, " ".join(a.answer_tokens), a.value, a.expression.answer,
                                 not a.correct))  # fmt: skip
    return total, found, dict(zip(task.operations, per_op_count.tolist(), strict=True))


def conditions() -> str:
    load = os.getloadavg()
    return (f"{os.cpu_count()} CPUs ({machine_info.cpu_model()}), load average {load[0]:.2f}/{load[1]:.2f}/"
            f"{load[2]:.2f} (1/5/15 min), BLAS {machine_info.blas()} with {machine_info.blas_threads()} thread(s), "
            f"numpy {np.__version__}, Python {platform.python_version()}")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True, help="a shipped model's name or a checkpoint path")
    ap.add_argument("--batch", type=int, default=BATCH, help="expressions per forward pass")
    ap.add_argument("--show", type=int, default=20, help="how many of the first mistakes to list")
    ap.add_argument("--limit", type=int, default=None, help="evaluate only the first N of the enumeration order")
    ap.add_argument("--sample", type=int, default=None, help="answer N random expressions instead of every one")
    ap.add_argument("--seed", type=int, default=0, help="the sample's seed")
    ap.add_argument("--uniform-ids", action="store_true",
                    help="a nested task's sample uniform over ids (nearly all full-length inner expressions)")
    ap.add_argument("--threads", type=int, default=1, help="BLAS threads (default 1: the machine may be shared)")
    args = ap.parse_args(argv)
    if args.batch < 1 or (args.limit is not None and args.limit < 1) or args.show < 0:
        ap.error("--batch and --limit must be positive, --show at least 0")
    model = load_model(args.model)
    task = model.task
    print(f"model {args.model}: {model.transformer.cfg.n_layers} blocks, d_model {model.transformer.cfg.d_model}, "
          f"{'causal' if model.causal else 'bidirectional'}; task {', '.join(task.operations)} of {count_text(task)} "
          f"in {task.min_value}-{task.max_value}: {task.space_size:,} expressions")  # fmt: skip

    last = [-1]

    def progress(done: int, total: int) -> None:
        pct = int(100 * done / total) // 5 * 5
        if pct != last[0] or done == total:
            last[0] = pct
            el = time.perf_counter() - t0
            eta = el / done * (total - done)
            print(f"  {done:>10,}/{total:,} ({100 * done / total:5.1f}%) {el:7.1f} s, ETA {eta:6.1f} s",
                  file=sys.stderr, flush=True)  # fmt: skip

    with threadpool_limits(limits=args.threads, user_api="blas"):
        cond = conditions()
        t0 = time.perf_counter()
        ids = sample_ids(model, args.sample, args.seed, args.uniform_ids) if args.sample else None
        n, found, per_op = mistakes(model, batch=args.batch, limit=args.limit, progress=progress, keep=args.show,
                                    ids=ids)  # fmt: skip
        wall = time.perf_counter() - t0
    n_wrong = sum(per_op.values())
    if ids is not None:
        seed = model.train_config.seed if model.train_config else 0
        outside = int((make_splits(task, seed=seed).split_of_ids(ids) != TRAIN).sum())
        how = ("drawn as the held-out sets are, each depth equally likely; " if task.nested and not args.uniform_ids
               else "uniform over ids; " if task.nested else "")  # fmt: skip
        print(f"expressions evaluated: {n:,} (--sample, seed {args.seed}; {how}{outside:,} outside the training split)")
    else:
        print(f"expressions evaluated: {n:,}{' (--limit)' if n < task.space_size else ' (all)'}")
    print(f"mistakes: {n_wrong:,}   accuracy {1 - n_wrong / n:.6%}")
    print("mistakes per operation: " + ", ".join(f"{op} {k:,}" for op, k in per_op.items()))
    if found:
        print(f"first {len(found)} mistake(s) (text -> the model's answer (true answer)):")
        for m in found:
            print(f"  {m}")
        unconfirmed = [m for m in found if not m.greedy_wrong]
        if unconfirmed:
            print(f"  NOTE: greedy generation writes the right answer for {len(unconfirmed)} of these")
    print(f"wall time {wall:.1f} s, {n / wall:,.0f} expressions/s (batch {args.batch}, greedy write-out of the "
          f"{len(found)} listed mistakes included)")  # fmt: skip
    print(f"conditions: {cond}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
