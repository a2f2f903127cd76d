"""The mechanism as it forms: a few numbers per training snapshot, measured on one fixed probe set.

- `probe_set(task, n, seed)`: a fixed set of expressions, balanced over operations, drawn from the
  held-out validation split when it is large enough (else from every expression); on a task with
  two-digit values, mostly expressions whose values are all two-digit, plus some with a one-digit value;
- `mechanism_metrics(model, probe)`: on that set, per head the mean attention from `=` to the operation
  token and to the answer's slot (the definitions of `input_space.head_roles`, per operation), the
  accuracy per operation, and the accuracy with each head and MLP zeroed in turn (from the same clean
  pass, `input_space.space_run`), hence the component whose loss costs the most;
- `describe_history(steps, metrics)`: what a run's snapshots show, in sentences computed from the numbers.

    probe = probe_set(model.task, seed=0)
    m = mechanism_metrics(model, probe)
    m.top_component, m.top_drop        # e.g. ("L1H2", 0.62): zeroing L1H2 costs 62 points of accuracy
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..task import ExpressionSet, Splits, TaskConfig, enumerate_all, make_splits
from ..task.operations import ABSENT, MAX_ENUMERABLE
from ..task.splits import VAL
from ..task_model import TaskModel
from .input_space import ROLE_THRESHOLD, HeadRoles, head_role, head_roles, space_run

# Expressions in the probe set (fewer when the task has fewer). The Train page measures it at every snapshot and the
# cost grows with it (about 15-25 ms a snapshot at 50 for the default model here; twice that at 100).
PROBE_SIZE = 50
TWO_DIGIT_SHARE = 0.8  # on tasks with two-digit values: the share of the probe whose values are all two-digit
TO_OP, TO_ANSWER_SLOT = "to the operation token", "to the answer's slot"
ROLE_MEASURES = (TO_OP, TO_ANSWER_SLOT)


# ---------------------------------------------------------------- the probe set
def probe_set(task: TaskConfig, n: int = PROBE_SIZE, seed: int = 0, *, splits: Splits | None = None) -> ExpressionSet:
    """`n` expressions of `task`, the same for the same arguments, balanced over its operations, ordered by operation.

    Drawn from the validation split of `splits` (default `make_splits(task, seed)`: expressions the model never
    trains on) when it has n / operations of each operation, else (a small task) from every expression. When the
    task has both one- and two-digit values, `TWO_DIGIT_SHARE` of each operation's expressions have only two-digit
    values and the rest at least one one-digit value (as far as the source has them)."""
    ops = task.operations
    per_op = [n // len(ops) + (k < n % len(ops)) for k in range(len(ops))]
    source = (splits if splits is not None else make_splits(task, seed=seed)).val
    if any((source.ops == k).sum() < want for k, want in enumerate(per_op)) and task.space_size <= MAX_ENUMERABLE:
        source = enumerate_all(task)
    rng = np.random.default_rng(seed)
    mixed = task.min_value < 10 <= task.max_value
    chosen = []
    for k, want in enumerate(per_op):
        rows = rng.permutation(np.flatnonzero(source.ops == k))
        if mixed:  # the wanted number of all-two-digit rows first, then the others, then any rows left
            two = _two_digit_only(source.values[rows])
            n_two = int(round(TWO_DIGIT_SHARE * want))
            first = np.concatenate([rows[two][:n_two], rows[~two][: want - min(n_two, int(two.sum()))]])
            rows = np.concatenate([first, rows[~np.isin(rows, first)]])  # the rest, still in random order
        chosen.append(np.sort(rows[:want]))
    return source.subset(np.concatenate(chosen).astype(np.int64))


def _two_digit_only(values: np.ndarray) -> np.ndarray:
    """[n] bool: every value of each list (not the ABSENT slots past a shorter list's end) has two digits or more."""
    return ((values >= 10) | (values == ABSENT)).all(axis=1)


def held_out(probe: ExpressionSet, splits: Splits) -> bool:
    """Whether every expression of the probe is in the validation split of `splits`."""
    return bool((splits.split_of_ids(probe.ids()) == VAL).all())


def describe_probe(probe: ExpressionSet) -> str:
    """E.g. "50 expressions, 10 per operation; 40 with only two-digit values, 10 with a one-digit value"."""
    task = probe.task
    counts = [int((probe.ops == k).sum()) for k in range(len(task.operations))]
    each = f"{counts[0]} per operation" if len(set(counts)) == 1 else \
        ", ".join(f"{c} {op}" for op, c in zip(task.operations, counts, strict=True))  # fmt: skip
    text = f"{len(probe):,} expressions, {each}"
    if task.min_value < 10 <= task.max_value:
        two = int(_two_digit_only(probe.values).sum())
        text += f"; {two} with only two-digit values, {len(probe) - two} with a one-digit value"
    return text


# ---------------------------------------------------------------- the metrics of one snapshot
@dataclass(frozen=True)
class MechanismMetrics:
    """One model's mechanism numbers on a probe set. Heads are "L0H0", ...; components add "L0.mlp", ...

    `roles`: `head_roles` on the probe (per head and operation: mean attention from `=` to the operation token,
    the answer's slot, ...); `ablated_accuracy` [component], `ablated_per_op` [component, operation]: exact
    match with that component zeroed at every position (as the ablation matrix, or `model.evaluate` with
    `ablation_hooks`). Operations missing from the probe are NaN in the per-operation arrays.
    """

    roles: HeadRoles
    accuracy: float  # exact match on the probe
    per_op: dict[str, float]  # exact match on the probe, per operation it has
    components: tuple[str, ...]
    ablated_accuracy: np.ndarray
    ablated_per_op: np.ndarray
    n: int  # expressions in the probe

    @property
    def operations(self) -> list[str]:
        return self.roles.operations

    @property
    def heads(self) -> list[str]:
        return self.roles.heads

    @property
    def to_op(self) -> np.ndarray:
        """[head, operation] mean attention from `=` to the operation token."""
        return self.roles.to_op

    @property
    def to_answer_slot(self) -> np.ndarray:
        """[head, operation] mean attention from `=` to the answer's slot (every digit of it)."""
        return self.roles.to_answer_slot

    @property
    def drop(self) -> np.ndarray:
        """[component] accuracy lost when it is zeroed (negative: the model does better without it)."""
        return self.accuracy - self.ablated_accuracy

    @property
    def top(self) -> int:
        """Index of the component whose zeroing costs the most accuracy (the first one on a tie)."""
        return int(np.argmax(self.drop))

    @property
    def top_component(self) -> str:
        return self.components[self.top]

    @property
    def top_drop(self) -> float:
        return float(self.drop[self.top])

    def role_table(self, measure: str) -> np.ndarray:
        """[head, operation] `to_op` or `to_answer_slot`, by its name in ROLE_MEASURES."""
        return self.to_op if measure == TO_OP else self.to_answer_slot

    def role_mean(self, measure: str) -> np.ndarray:
        """[head] `role_table(measure)` averaged over the operations (those in the probe)."""
        table = self.role_table(measure)
        seen = np.isfinite(table).any(axis=0)
        return table[:, seen].mean(axis=1) if seen.any() else np.full(len(table), np.nan)


def mechanism_metrics(model: TaskModel, probe: ExpressionSet) -> MechanismMetrics:
    """The numbers above for `model` as it is now, from one clean pass over `probe` and its ablations
    (`space_run`), read by `head_roles` and per operation."""
    run = space_run(model, probe)
    with np.errstate(invalid="ignore"), warnings.catch_warnings():  # an operation the probe lacks: NaN
        warnings.simplefilter("ignore", RuntimeWarning)
        roles = head_roles(model, run=run)
    ops = list(model.task.operations)

    def per_op(right: np.ndarray) -> np.ndarray:  # [operation]
        return np.array([right[probe.ops == k].mean() if (probe.ops == k).any() else np.nan
                         for k in range(len(ops))], dtype=np.float64)  # fmt: skip

    clean = per_op(run.right)
    return MechanismMetrics(
        roles=roles,
        accuracy=float(run.right.mean()),
        per_op={op: float(v) for op, v in zip(ops, clean, strict=True) if np.isfinite(v)},
        components=tuple(run.components),
        ablated_accuracy=run.ablated_right.mean(axis=1).astype(np.float64),
        ablated_per_op=np.stack([per_op(r) for r in run.ablated_right]),
        n=len(probe),
    )


# ---------------------------------------------------------------- a run's snapshots in words
def _pct(x: float) -> str:
    return f"{x:.0%}"


def _share(x: float, threshold: float) -> str:
    """An attention share with 2 decimals, or 3 when 2 would put it on the other side of `threshold`."""
    two = round(float(x), 2)
    return f"{x:.3f}" if (x < threshold) != (two < threshold) else f"{x:.2f}"


def describe_history(steps: Sequence[int], metrics: Sequence[MechanismMetrics],
                     threshold: float = ROLE_THRESHOLD) -> list[str]:  # fmt: skip
    """Sentences about a run's snapshots (`metrics[i]` at training step `steps[i]`), each computed from the numbers.

    - each operation's largest rise in probe accuracy between two snapshots;
    - for each role measure, the head with the highest final mean over operations, and the first snapshot at
      which that mean reached `threshold`, tied to an operation's largest rise when that ends within one
      snapshot of it; if no head reaches it, that no head does;
    - at the last snapshot, each head's role by operation where one reaches `threshold` (`head_role`);
    - the component whose zeroing costs the most at the last snapshot, at how many snapshots it is the top one,
      and, if it is a head with a role, when that role reached `threshold` for its strongest operation.
    """
    if not metrics:
        return []
    steps = list(steps)
    out = []
    ops = metrics[-1].operations
    acc = np.array([[m.per_op.get(op, np.nan) for op in ops] for m in metrics])  # [snapshot, op]
    rises: dict[str, tuple[int, float, float]] = {}  # op -> (snapshot its largest rise ends at, before, after)
    if len(metrics) > 1:
        rise = np.diff(acc, axis=0)  # [snapshot - 1, op]
        parts = []
        for k, op in enumerate(ops):
            i = int(np.nanargmax(rise[:, k])) if np.isfinite(rise[:, k]).any() else -1
            if i < 0 or rise[i, k] <= 0:
                parts.append(f"{op} never rose")
                continue
            rises[op] = (i + 1, float(acc[i, k]), float(acc[i + 1, k]))
            parts.append(f"{op} {_pct(acc[i, k])} → {_pct(acc[i + 1, k])} (steps {steps[i]}–{steps[i + 1]})")
        out.append("Each operation's largest rise in probe accuracy between two snapshots: " + "; ".join(parts) + ".")

    def near_rise(i: int, only: str | None = None) -> str:
        """", around when X's accuracy jumps ..." if an operation's (only `only`'s) largest rise ends at i +- 1."""
        found = [(abs(j - i), -(b - a), op, j, a, b) for op, (j, a, b) in rises.items()
                 if abs(j - i) <= 1 and (only is None or op == only)]  # fmt: skip
        if not found or i == 0:
            return ""
        _, _, op, j, a, b = min(found)
        return f", around when {op}'s probe accuracy jumps from {_pct(a)} to {_pct(b)} " \
               f"(steps {steps[j - 1]}–{steps[j]})"  # fmt: skip

    def first_reached(series: np.ndarray) -> int | None:
        hit = np.flatnonzero(series >= threshold)
        return int(hit[0]) if len(hit) else None

    for measure in ROLE_MEASURES:
        means = np.array([m.role_mean(measure) for m in metrics])  # [snapshot, head]
        h = int(np.nanargmax(means[-1])) if np.isfinite(means[-1]).any() else 0
        head = metrics[-1].heads[h]
        i = first_reached(means[:, h])
        if i is None:
            best = float(np.nanmax(means[:, h])) if np.isfinite(means[:, h]).any() else float("nan")
            out.append(f"No head's mean attention from `=` {measure} (over operations) reaches {threshold:.2f}: the "
                       f"highest at the end is {head}'s {means[-1, h]:.2f} (its most: {best:.2f}).")  # fmt: skip
            continue
        text = (f"{head}'s mean attention from `=` {measure} (over operations) first reaches {threshold:.2f} at "
                f"step {steps[i]} ({_share(means[i - 1, h], threshold)} at step {steps[i - 1]})" if i > 0 else
                f"{head}'s mean attention from `=` {measure} (over operations) is already {means[0, h]:.2f} at "
                f"step {steps[0]}")  # fmt: skip
        out.append(text + near_rise(i) + f"; {means[-1, h]:.2f} at the end.")
    last = metrics[-1]
    roles = [f"{head} {role}" for head in last.heads if (role := head_role(last.roles, head, threshold))]
    out.append(f"At the last snapshot (step {steps[-1]}), operation by operation: " + "; ".join(roles) + "."
               if roles else f"At the last snapshot (step {steps[-1]}) no head puts {threshold:.2f} or more of its "
               "attention from `=` on the operation token or on the answer's slot for any operation.")  # fmt: skip
    top = last.top_component
    if last.top_drop <= 0:
        out.append(f"At the last snapshot (step {steps[-1]}) zeroing any one head or MLP costs no probe accuracy.")
        return out
    tops = [i for i, m in enumerate(metrics) if m.top_component == top and m.top_drop > 0]
    text = (f"At the last snapshot (step {steps[-1]}) zeroing {top} costs the most: probe accuracy falls from "
            f"{_pct(last.accuracy)} to {_pct(last.ablated_accuracy[last.top])}. It is the most important component "
            f"at {len(tops)} of the {len(metrics)} snapshots, first at step {steps[tops[0]]}.")  # fmt: skip
    if top in last.heads:
        h = last.heads.index(top)
        for measure in ROLE_MEASURES:
            row = last.role_table(measure)[h]
            if not np.isfinite(row).any() or np.nanmax(row) < threshold:
                continue
            k = int(np.nanargmax(row))
            op = ops[k]
            i = first_reached(np.array([m.role_table(measure)[h, k] for m in metrics]))
            prev = metrics[i - 1].role_table(measure)[h, k] if i else np.nan
            before = f" ({_share(prev, threshold)} at step {steps[i - 1]})" if i else ""
            text += (f" Its attention from `=` {measure} on {op} expressions first reaches {threshold:.2f} at step "
                     f"{steps[i]}{before}{near_rise(i, op)}.")  # fmt: skip
    out.append(text)
    return out
