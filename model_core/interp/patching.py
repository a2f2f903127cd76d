"""Activation patching: paste one activation of a clean run into a corrupted run and see how much comes back.

The clean and corrupted inputs differ in one controlled way (same values under another operation; the
answer's slot given another value; the answer's value moved to another slot: see `counterfactuals`).
The metric is the logit difference between the clean answer and the corrupted answer at the read-out
position, and a patch's **recovery** is (patched - corrupted) / (clean - corrupted): 0 = nothing came
back, 1 = all of it. Patching the whole residual stream at the first block's input recovers 1; patching
nothing recovers 0.

`patch_sweep` runs every patch of a sweep (each residual-stream and sublayer hook at each position, and
each head at all positions) as one forward pass: the corrupted input tiled once per patch.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..hooks import Cache
from ..task import Expression
from ..task_model import TaskModel
from .inputs import batch, roles


class PatchError(ValueError):
    """Two inputs that cannot be patched into each other; the message says why."""


@dataclass(frozen=True)
class Patch:
    hook: str
    position: int | None = None  # None: every position
    head: int | None = None  # for hook_z / hook_result / hook_q|k|v: one head


@dataclass(frozen=True)
class PatchSweep:
    """The recovery of every patch of a sweep. `grid` [hooks, positions] for the per-position patches of
    `hooks`; `heads` [layer, head] for each head's z patched at every position."""

    hooks: list[str]
    roles: list[str]  # [positions] the role of each position, up to `=` (the read-out)
    grid: np.ndarray  # [hooks, positions] recovery
    heads: np.ndarray  # [layer, head] recovery
    clean_answer: int
    corrupt_answer: int
    clean_diff: float  # logit(clean answer) - logit(corrupt answer), clean run
    corrupt_diff: float  # the same in the corrupted run


def _tokens(model: TaskModel, clean: str | Expression, corrupt: str | Expression) -> np.ndarray:
    """Both inputs up to `=`, where the answer is read: [2, P]. They must have the same layout."""
    b = batch(model, [clean, corrupt])
    tokens = b.tokens[:, : int(b.answer_pos[0]) + 1]  # what the read-out at `=` depends on
    if b.answer_pos[0] != b.answer_pos[1] or roles(model, tokens[0]) != roles(model, tokens[1]):
        # lists of several lengths: a different number of values is a different layout too
        counts = [len(model.parse(e).values) if isinstance(e, str) else len(e.values) for e in (clean, corrupt)]
        what = "values" if counts[0] == counts[1] else f"as many values ({counts[0]} and {counts[1]} here),"
        raise PatchError("Patching pastes activations position by position, so the two inputs must have the same "
                         f"layout: give {what} with the same numbers of digits.")  # fmt: skip
    return tokens


def _metric(logits: np.ndarray, good: int, bad: int) -> np.ndarray:
    """logit[good] - logit[bad] for logits [..., vocab], in float64."""
    return logits[..., good].astype(np.float64) - logits[..., bad].astype(np.float64)


@dataclass(frozen=True)
class _Pair:
    """A clean and a corrupted input, run once: what every patch of them is measured against."""

    tokens: np.ndarray  # [2, P]: clean, corrupted, up to the read-out `=` (the last position)
    clean: Cache  # the clean run's activations
    good: int  # the clean answer's token
    bad: int  # the corrupted answer's token
    clean_diff: float  # logit[good] - logit[bad] in the clean run
    corrupt_diff: float  # the same in the corrupted run

    @property
    def pos(self) -> int:
        return self.tokens.shape[1] - 1


def _pair(model: TaskModel, clean, corrupt, names_filter=None) -> _Pair:
    net = model.transformer
    tokens = _tokens(model, clean, corrupt)
    pos = tokens.shape[1] - 1
    _, cache = net.run_with_cache(tokens[:1], names_filter=None if names_filter is None else
                                  set(names_filter) | {"hook_logits"})  # fmt: skip
    clean_logits = cache["hook_logits"][0, pos]
    corrupt_logits = net.forward(tokens[1:])[0, pos]
    good, bad = int(clean_logits.argmax()), int(corrupt_logits.argmax())
    if good == bad:
        raise PatchError("The two inputs have the same answer, so there is nothing to recover: pick a "
                         "counterfactual whose answer differs.")  # fmt: skip
    return _Pair(tokens, cache, good, bad, float(_metric(clean_logits, good, bad)),
                 float(_metric(corrupt_logits, good, bad)))  # fmt: skip


def recovery(model: TaskModel, clean, corrupt, patches: list[list[Patch]]) -> np.ndarray:
    """The recovery of each patch set in `patches` (a patch set is applied together), one pass: [len(patches)]."""
    return _recover(model, _pair(model, clean, corrupt), patches)


def patched_logits(model: TaskModel, clean, corrupt, patches: list[Patch]) -> PatchedRun:
    """The corrupted run with one patch set applied, read at `=`: what the model answers then."""
    pair = _pair(model, clean, corrupt)
    logits = _patched(model, pair, [patches])[0].astype(np.float64)
    return PatchedRun(logits, pair.good, pair.bad, float((_metric(logits, pair.good, pair.bad) - pair.corrupt_diff)
                                                         / (pair.clean_diff - pair.corrupt_diff)))  # fmt: skip


@dataclass(frozen=True)
class PatchedRun:
    logits: np.ndarray  # [vocab] at `=`
    clean_answer: int
    corrupt_answer: int
    recovery: float


def _recover(model: TaskModel, pair: _Pair, patches: list[list[Patch]]) -> np.ndarray:
    if not patches:
        return np.zeros(0)
    logits = _patched(model, pair, patches)
    return (_metric(logits, pair.good, pair.bad) - pair.corrupt_diff) / (pair.clean_diff - pair.corrupt_diff)


def _patched(model: TaskModel, pair: _Pair, patches: list[list[Patch]]) -> np.ndarray:
    """Logits at `=` of the corrupted run under each patch set, one pass: [K, vocab]."""
    K = len(patches)
    by_hook: dict[str, list[tuple[int, Patch]]] = {}
    for k, patch_set in enumerate(patches):
        for p in patch_set:
            by_hook.setdefault(p.hook, []).append((k, p))

    def make(hook_name: str):
        clean_act = pair.clean[hook_name][0]  # [T, ...] or [head, T, T] for scores/pattern
        head_first = hook_name.endswith(("hook_attn_scores", "hook_pattern"))  # [batch, head, q, k]

        def hook(x, _hook):
            x = x.copy()  # [K, ...]
            for k, p in by_hook[hook_name]:
                where = slice(None) if p.position is None else p.position
                if head_first:
                    idx = (k, slice(None) if p.head is None else p.head, where)
                else:
                    idx = (k, where) + (() if p.head is None else (p.head,))
                x[idx] = clean_act[idx[1:]]
            return x

        return hook

    tiled = np.repeat(pair.tokens[1:], K, axis=0)  # [K, P]
    return model.transformer.run_with_hooks(tiled, [(h, make(h)) for h in by_hook])[:, pair.pos]  # [K, vocab]


def sweep_hooks(model: TaskModel) -> list[str]:
    """The hooks of a standard sweep, in forward order: each block's input, attention and MLP outputs, and the
    stream after the last block."""
    cfg = model.transformer.cfg
    out = []
    for i in range(cfg.n_layers):
        out += [f"blocks.{i}.hook_resid_pre", f"blocks.{i}.hook_attn_out", f"blocks.{i}.hook_mlp_out"]
    return out + [f"blocks.{cfg.n_layers - 1}.hook_resid_post"]


def patch_sweep(model: TaskModel, clean, corrupt, hooks: list[str] | None = None) -> PatchSweep:
    """Every hook of `hooks` (default `sweep_hooks`) at every position, and every head's z at all positions,
    clean -> corrupted, as one batched pass."""
    cfg = model.transformer.cfg
    hooks = sweep_hooks(model) if hooks is None else hooks
    pair = _pair(model, clean, corrupt)
    T = pair.tokens.shape[1]
    grid_patches = [[Patch(h, t)] for h in hooks for t in range(T)]
    head_patches = [[Patch(f"blocks.{i}.attn.hook_z", None, h)]
                    for i in range(cfg.n_layers) for h in range(cfg.n_heads)]  # fmt: skip
    rec = _recover(model, pair, grid_patches + head_patches)
    return PatchSweep(hooks, roles(model, pair.tokens[0]), rec[: len(grid_patches)].reshape(len(hooks), T),
                      rec[len(grid_patches):].reshape(cfg.n_layers, cfg.n_heads), pair.good, pair.bad,
                      pair.clean_diff, pair.corrupt_diff)  # fmt: skip


def attribution_patch_sweep(model: TaskModel, clean, corrupt, hooks: list[str] | None = None) -> PatchSweep:
    """`patch_sweep` approximated to first order from one forward and one backward pass of the corrupted run.

    A patch's recovery is about grad . (clean activation - corrupted activation) / (clean - corrupted metric),
    where grad is d metric / d activation in the corrupted run (the backward seeded by the metric, not the
    loss). Exact for a component the metric depends on linearly; `tests/interp` reports its agreement with
    real patching on the shipped models.
    """
    net = model.transformer
    cfg = net.cfg
    hooks = sweep_hooks(model) if hooks is None else hooks
    zs = [f"blocks.{i}.attn.hook_z" for i in range(cfg.n_layers)]
    wanted = set(hooks) | set(zs)
    pair = _pair(model, clean, corrupt, names_filter=wanted)
    T, pos, good, bad = pair.tokens.shape[1], pair.pos, pair.good, pair.bad

    def seed(logits):  # d (logit[good] - logit[bad]) at the read-out / d logits
        d = np.zeros_like(logits)
        d[0, pos, good], d[0, pos, bad] = 1.0, -1.0
        return d

    _, c_bad = net.run_with_cache(pair.tokens[1:], names_filter=wanted, grad_of=seed)
    c_clean, lo, hi = pair.clean, pair.corrupt_diff, pair.clean_diff

    def gain(name: str) -> np.ndarray:  # grad * (clean - corrupted), float64: [T, ...]
        g = c_bad[name + "_grad"][0].astype(np.float64)
        return g * (c_clean[name][0].astype(np.float64) - c_bad[name][0].astype(np.float64))

    grid = np.stack([gain(h).reshape(T, -1).sum(-1) for h in hooks]) / (hi - lo)  # [hooks, T]
    heads = np.stack([gain(z).sum(axis=(0, 2)) for z in zs]) / (hi - lo)  # [layer, head]
    return PatchSweep(hooks, roles(model, pair.tokens[0]), grid, heads, good, bad, hi, lo)


# ---------------------------------------------------------------- counterfactuals
def counterfactuals(model: TaskModel, expr: str | Expression) -> dict[str, Expression]:
    """Inputs that differ from `expr` in one controlled way, each whose answer starts with another token (the
    one read at `=`, which patching measures):

    - `other operation`: the same values under the first other operation that answers differently;
    - `answer value changed`: the answer's slot given another value (of the same number of digits) that
      changes the answer;
    - `answer moved`: the answer's value swapped with another slot's (First/Second/Last: the answer then
      changes; Max/Min: it does not, so this kind is left out for them).
    A kind with no such input is left out: patching needs the two answers to differ.
    """
    e = model.parse(expr) if isinstance(expr, str) else expr
    task = model.task
    out: dict[str, Expression] = {}
    for op in task.operations:
        other = Expression(op, e.values)
        if op != e.op and _first_digit_differs(other, e):
            out["other operation"] = other
            break
    slot = _answer_slot(e)
    width = len(str(e.values[slot]))
    for v in range(task.min_value, task.max_value + 1):
        if len(str(v)) != width or v == e.values[slot]:
            continue
        values = list(e.values)
        values[slot] = v
        changed = Expression(e.op, tuple(values))
        if _first_digit_differs(changed, e):
            out["answer value changed"] = changed
            break
    for j in range(len(e.values)):
        if j != slot and len(str(e.values[j])) == width and e.values[j] != e.values[slot]:
            values = list(e.values)
            values[slot], values[j] = values[j], values[slot]
            moved = Expression(e.op, tuple(values))
            if _first_digit_differs(moved, e):
                out["answer moved"] = moved
                break
    return out


def _first_digit_differs(a: Expression, b: Expression) -> bool:
    """The answers' first tokens differ: the token read at `=`, which patching measures."""
    return str(a.answer)[0] != str(b.answer)[0]


def _answer_slot(e: Expression) -> int:
    """The slot the answer is read from (the first one, on a tie)."""
    return list(e.values).index(e.answer) if e.answer in e.values else 0
