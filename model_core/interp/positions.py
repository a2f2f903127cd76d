"""Why position matters: accuracy per operation with the positional encoding switched off.

With `hook_pos_embed` zeroed the model still reads every token, but nothing tells it *where* each one is,
except what a causal mask gives away (position t sees t + 1 tokens). Whether an operation needs the places
is measured too, not assumed: an operation depends on order when permuting its values changes its answer.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..task import OPERATIONS, ExpressionSet, TaskConfig
from ..task.operations import ABSENT
from ..task_model import TaskModel
from .input_space import input_space

COLLAPSED = 0.2  # an accuracy drop of at least this many points (as a fraction) counts as a collapse
KEPT = 0.05  # a drop of at most this much counts as kept


def _zero_positions(x: np.ndarray, _hook) -> np.ndarray:
    return np.zeros_like(x)  # [batch, pos, d_model]


def _random_lists(task: TaskConfig, rng: np.random.Generator, n: int) -> np.ndarray:
    """[n, n_args] random value lists of the task, each length equally likely (ABSENT past each list's end)."""
    values = rng.integers(task.min_value, task.max_value + 1, size=(n, task.n_args))
    lengths = rng.integers(task.min_args, task.n_args + 1, size=n)
    return np.where(np.arange(task.n_args) < lengths[:, None], values, ABSENT)


def random_pick_accuracy(op: str, task: TaskConfig, seed: int = 0, n: int = 20_000) -> float:
    """How often one of the values, picked at random, is the operation's answer (on random value lists)."""
    values = _random_lists(task, np.random.default_rng(seed), n)
    hits = (values == OPERATIONS[op].fn(values)[:, None]).sum(axis=1)  # ABSENT is never an answer
    return float((hits / (values != ABSENT).sum(axis=1)).mean())


def order_matters(op: str, task: TaskConfig, seed: int = 0, n: int = 500) -> bool:
    """Whether the operation's answer changes when its values are shuffled (on `n` random lists of the most values)."""
    rng = np.random.default_rng(seed)
    values = rng.integers(task.min_value, task.max_value + 1, size=(n, task.n_args))
    shuffled = rng.permuted(values, axis=1)
    fn = OPERATIONS[op].fn
    return bool((fn(values) != fn(shuffled)).any())


@dataclass(frozen=True)
class WithoutPositions:
    operations: list[str]
    accuracy: np.ndarray  # [op] exact match as trained
    without: np.ndarray  # [op] exact match with the positional encoding zeroed at every position
    order_matters: list[bool]  # [op] whether shuffling the values changes the operation's answer
    chance: np.ndarray  # [op] the accuracy of answering one of the values, picked at random
    n: int  # expressions measured
    causal: bool
    max_value: int

    def sentences(self) -> list[str]:
        """What the numbers show, operation by operation, and why (true for this model)."""
        ops = self.operations
        drop = dict(zip(ops, self.accuracy - self.without, strict=True))
        collapsed = [op for op in ops if drop[op] >= COLLAPSED]
        kept = [op for op in ops if drop[op] <= KEPT]
        middling = [op for op in ops if op not in collapsed and op not in kept]
        out = []
        for group, verb in ((collapsed, "collapse"), (middling, "lose some"), (kept, "keep their accuracy")):
            if group:
                singular = {"collapse": "collapses", "lose some": "loses some", "keep their accuracy":
                            "keeps its accuracy"}[verb] if len(group) == 1 else verb  # fmt: skip
                out.append(f"{_join(group)} {singular}: " + ", ".join(
                    f"{op} {self._acc(op)} → {self._without(op)}" for op in group) + ".")  # fmt: skip
        by_place = [op for op, m in zip(ops, self.order_matters, strict=True) if m]
        by_value = [op for op, m in zip(ops, self.order_matters, strict=True) if not m]
        if by_place:
            guess = ", ".join(f"{op} {self.chance[ops.index(op)]:.0%}" for op in by_place)
            text = (f"{_join(by_place)} pick a value by its place: shuffling the values changes the answer, so the "
                    f"model must know where each value sits (answering one of the values at random would score "
                    f"{guess}).")  # fmt: skip
            gap = {op: self.without[ops.index(op)] - self.chance[ops.index(op)] for op in by_place}
            if all(abs(g) <= KEPT for g in gap.values()):
                versus = "Without positions it scores about what a random pick does"
            elif all(g < -KEPT for g in gap.values()):
                versus = "Without positions it scores below a random pick"
            elif all(g > KEPT for g in gap.values()):
                versus = "Without positions it still beats a random pick"
            else:
                versus = "Without positions it beats a random pick on some of them only"
            if self.causal:
                text += (f" {versus}, although this model is causal (a position sees only the tokens before it, "
                         "which itself says something about order).")  # fmt: skip
            else:
                text += f" {versus}: this bidirectional model then reads the values as an unordered bag."
            out.append(text)
        if by_value:
            lost = [op for op in by_value if drop[op] >= COLLAPSED]
            text = f"{_join(by_value)} pick a value by its size: the order of the values does not change the answer"
            if lost:
                text += (f"; yet {_join(lost)} {'collapses' if len(lost) == 1 else 'collapse'} too, so this model uses "
                         "positions for more than order")  # fmt: skip
                if self.max_value > 9:
                    text += (" (here a value is several digit tokens, and position is how a model can tell a "
                             "value's tens from its units)")  # fmt: skip
            text += "."
            out.append(text)
        return out

    def _acc(self, op: str) -> str:
        return f"{self.accuracy[self.operations.index(op)]:.0%}"

    def _without(self, op: str) -> str:
        return f"{self.without[self.operations.index(op)]:.0%}"


def _join(names: list[str]) -> str:
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def accuracy_without_positions(model: TaskModel, exprs: ExpressionSet | None = None) -> WithoutPositions:
    """Exact match per operation (teacher-forced, as `TaskModel.evaluate`) with and without the positional
    encoding, over the input space (or its stated sample)."""
    exprs = input_space(model) if exprs is None else exprs
    task = model.task
    normal = model.evaluate(exprs)["per_op"]
    without = model.evaluate(exprs, fwd_hooks=[("hook_pos_embed", _zero_positions)])["per_op"]
    ops = [op for op in task.operations if op in normal]
    return WithoutPositions(
        ops,
        np.array([normal[op] for op in ops]),
        np.array([without[op] for op in ops]),
        [order_matters(op, task) for op in ops],
        np.array([random_pick_accuracy(op, task) for op in ops]),
        len(exprs),
        model.causal,
        task.max_value,
    )
