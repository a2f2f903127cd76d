"""Views over the whole input space (or a stated sample of it), computed once per model by the caller.

- `head_roles`: per head and operation, where the answer position attends: the operation token, the
  answer's slot (the slot its value comes from; every digit of it), the other slots; and the entropy;
- `score_by_digit`: a head's attention score from the answer position to a slot, as a table over
  (operation, slot, the slot's value), and how much of the score's variance the table explains;
- `ablation_matrix`: accuracy per operation with each head and MLP zeroed;
- `lens_by_operation`: per stage of the residual stream, the share of inputs whose answer is already the
  top token at the answer position (the logit lens, aggregated);
- `hard_cases`: the expressions the model gets wrong, and its least confident right answers.

Spaces of up to SAMPLE expressions are used whole (every 0-9 task of three values: 5,000); larger spaces
use a sample of SAMPLE from the held-out split, whose size each result states. Every view reads one clean
pass over the set (`space_run`); pass the same `SpaceRun` to several views to run the model once for all of them.
The ablation matrix adds one pass per component, from the ablated block onward, at the answer rows only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import layers as L
from ..task import OPERATIONS, ExpressionSet, enumerate_all, exact_match_at_rows, make_splits
from ..task.operations import ABSENT
from ..task_model import TaskModel
from .ablation import _rows, ablation_hooks, every_component, mean_activations, parse_component
from .inputs import role_slot, roles

# The whole space when it has at most this many expressions (every 0-9 task of three values), else this many
# held-out ones: the views cost about 12 kB and, on the largest trainable model, 20 ms per expression, so a
# 100,000-expression space (0-9, five values) would take gigabytes and most of an hour.
SAMPLE = 5_000


def input_space(model: TaskModel, sample: int = SAMPLE) -> ExpressionSet:
    """Every expression of the task if it has at most `sample`, else `sample` held-out ones drawn at random (seeded)."""
    if model.task.space_size <= sample:
        return enumerate_all(model.task)
    seed = model.train_config.seed if model.train_config else 0
    return make_splits(model.task, seed=seed).test.sample(sample, seed)  # grouped by operation: across all of it


BATCH = 256  # rows per forward pass: small enough to stay in cache, large enough for BLAS


@dataclass(frozen=True)
class SpaceRun:
    """One clean pass over an expression set, kept as every view needs it.

    Shapes: n expressions, T positions, L layers, H heads, D d_model.
    """

    exprs: ExpressionSet
    tokens: np.ndarray  # [n, T]
    targets: np.ndarray  # [n, T], -1 where no answer token is read
    answer_pos: np.ndarray  # [n] index of `=`
    pattern: np.ndarray  # [n, L, H, T] each head's attention from `=`
    scores: np.ndarray  # [n, L, H, T] the scaled scores before the softmax, from `=`
    stages: list[str]  # the residual stream's stages, as the logit lens names them
    stream: np.ndarray  # [n, stage, D] the stream at `=` after each stage
    logits: np.ndarray  # [m, vocab] at the target rows np.nonzero(targets >= 0), in that order
    right: np.ndarray  # [n] bool: exact match
    components: list[str]  # every head and MLP, as `every_component` names them
    ablated_right: np.ndarray  # [component, n] bool: exact match with that component zeroed


def _stage_hooks(cfg) -> tuple[list[str], list[str]]:
    """(hook names, stage labels) of the stream the output would decode after each stage."""
    names, stages = ["blocks.0.hook_resid_pre"], ["embed + pos"]
    for i in range(cfg.n_layers):
        b = f"blocks.{i}."
        names += [b + "hook_resid_mid", b + "hook_resid_post"] if cfg.norm == "pre" else [b + "ln1.hook_out",
                                                                                          b + "ln2.hook_out"]
        stages += [f"block {i} mid", f"block {i} out"]
    return names, stages


def space_run(model: TaskModel, exprs: ExpressionSet | None = None) -> SpaceRun:
    """The clean pass every view reads, over `exprs` (default: `input_space(model)`), in batches, with the
    zero-ablation runs of the ablation matrix made from the same batches while their cache is at hand."""
    exprs = input_space(model) if exprs is None else exprs
    net, cfg = model.transformer, model.transformer.cfg
    enc = model.encode(exprs)
    stage_names, stages = _stage_hooks(cfg)
    attn = [f"blocks.{i}.attn.hook_{w}" for i in range(cfg.n_layers) for w in ("pattern", "attn_scores")]
    keep = set(stage_names) | set(attn) | set(_ablation_starts(cfg))
    comps = [c[0] for c in every_component(net)]
    parts: dict[str, list] = {"pattern": [], "scores": [], "stream": [], "logits": [], "ablated": []}
    for s in range(0, len(exprs), BATCH):
        t, targets = enc.tokens[s : s + BATCH], enc.targets[s : s + BATCH]
        logits, cache = net.run_with_cache(t, names_filter=keep)
        at = (np.arange(len(t)), enc.answer_pos[s : s + BATCH])
        parts["pattern"].append(np.stack([cache[f"blocks.{i}.attn.hook_pattern"][at[0], :, at[1]]
                                          for i in range(cfg.n_layers)], axis=1))  # fmt: skip
        parts["scores"].append(np.stack([cache[f"blocks.{i}.attn.hook_attn_scores"][at[0], :, at[1]]
                                         for i in range(cfg.n_layers)], axis=1))  # fmt: skip
        parts["stream"].append(np.stack([cache[nm][at] for nm in stage_names], axis=1))
        parts["logits"].append(logits[np.nonzero(targets >= 0)])
        parts["ablated"].append(_ablated_right(model, comps, t, targets, cache))
    logits = np.concatenate(parts["logits"])
    return SpaceRun(
        exprs, enc.tokens, enc.targets, enc.answer_pos,
        np.concatenate(parts["pattern"]), np.concatenate(parts["scores"]), stages, np.concatenate(parts["stream"]),
        logits, exact_match_at_rows(logits, enc.targets), comps, np.concatenate(parts["ablated"], axis=1),
    )  # fmt: skip


def _ablation_starts(cfg) -> list[str]:
    """What an ablation run starts from: each block's stream after attention, and each head's write."""
    return [f"blocks.{i}.{h}" for i in range(cfg.n_layers) for h in ("hook_resid_mid", "attn.hook_result")]


def _ablated_right(model: TaskModel, comps: list[str], tokens, targets, cache, mean: bool = False) -> np.ndarray:
    """[component, n] exact match with each component ablated, from a clean cache of these tokens.

    Every run starts at the ablated block's `hook_resid_mid` (its attention is as in the clean run): a
    head's ablation is that stream minus the head's write (plus its mean, for mean ablation), which is
    the stream the block makes with the head's `hook_result` replaced; an MLP's is a hook on its output.
    The last block runs at the answer rows only."""
    net = model.transformer
    last = net.cfg.n_layers - 1
    rows = np.nonzero(targets >= 0)  # ([m], [m]) example and position of every answer token
    means = mean_activations(model) if mean else None
    out = np.zeros((len(comps), len(tokens)), dtype=bool)
    for k, name in enumerate(comps):
        c = parse_component(net, name)
        b = f"blocks.{c.layer}."
        at = rows if c.layer == last else (slice(None),)  # the start stream: [m, D] or [n, T, D]
        resid = cache[b + "hook_resid_mid"][at]
        hooks = []
        if c.kind == "head":
            resid = resid - cache[b + "attn.hook_result"][at][..., c.index, :]
            if mean:
                ref = _rows(means[b + "attn.hook_result"], tokens.shape[1])[..., c.index, :]  # [T, D]
                resid = resid + (ref[rows[1]] if c.layer == last else ref)
        else:
            hooks = ablation_hooks(model, [name], mean=mean, means=means, row_pos=rows[1] if c.layer == last else None)
        logits = net.run_with_hooks(tokens, hooks, rows=rows, start_at=b + "hook_resid_mid", resid=resid)
        out[k] = exact_match_at_rows(logits, targets)
    return out


def _run(model: TaskModel, exprs: ExpressionSet | None, run: SpaceRun | None) -> SpaceRun:
    if run is not None:
        if exprs is not None and exprs is not run.exprs:
            raise ValueError("give either the expressions or a SpaceRun of them, not both")
        return run
    return space_run(model, exprs)


def _layouts(model: TaskModel, tokens: np.ndarray):
    """Positions by role for every example, one `roles` call per distinct layout.

    Returns (op [n, T] bool, slot [n, T] int: the value slot 1.. a position belongs to or 0,
    last_digit [n, n_args]: the position of each slot's last digit, 0 for a slot past a shorter list's end).
    In a nested task an argument's slot is all of it (`arg2`, or `arg2.op` to `arg2.)` for an inner expression),
    and its last position is its last digit or its inner expression's `)`."""
    digit_ids = [model.vocab.id(str(d)) for d in range(10)]
    kind = np.isin(tokens, digit_ids).astype(np.int8) + 2 * (tokens == model.vocab.pad_id)  # [n, T]
    layouts, which = np.unique(kind, axis=0, return_inverse=True)
    n_args = model.task.n_args
    op = np.zeros((len(layouts), tokens.shape[1]), dtype=bool)
    slot = np.zeros((len(layouts), tokens.shape[1]), dtype=np.int64)
    last = np.zeros((len(layouts), n_args), dtype=np.int64)
    for k in range(len(layouts)):
        r = roles(model, tokens[np.argmax(which == k)])
        for t, role in enumerate(r):
            op[k, t] = role == "op"
            j = role_slot(role)  # "v2" (flat), "arg2..." (nested)
            if j:
                slot[k, t] = j
                last[k, j - 1] = t  # positions come in order: the slot's last one wins
    which = which.reshape(-1)
    return op[which], slot[which], last[which]


@dataclass(frozen=True)
class HeadRoles:
    """Mean attention of each head from the answer position, per operation. [head, operation] arrays."""

    heads: list[str]  # "L0H0", ...
    operations: list[str]
    to_op: np.ndarray
    to_answer_slot: np.ndarray
    to_other_slots: np.ndarray
    entropy: np.ndarray  # in nats; log(T) would be uniform
    n: int  # expressions used


def head_roles(model: TaskModel, exprs: ExpressionSet | None = None, *, run: SpaceRun | None = None) -> HeadRoles:
    run = _run(model, exprs, run)
    exprs, pattern = run.exprs, run.pattern  # [n, L, H, T]
    op, slot, _ = _layouts(model, run.tokens)
    selects = np.array([OPERATIONS[op].selects for op in model.task.operations])[exprs.ops]  # [n]
    is_answer = (exprs.values == exprs.answers[:, None]) & selects[:, None]  # [n, n_args]
    # 1-based, the first on a tie; 0 for an operation that does not pick a value (a Sum, even where it equals one)
    slot_of_answer = np.where(is_answer.any(axis=1), np.argmax(is_answer, axis=1) + 1, 0)
    ans = (slot == slot_of_answer[:, None]) & (slot_of_answer[:, None] > 0)  # [n, T]
    other = (slot > 0) & ~ans
    cfg = model.transformer.cfg

    def mass(mask):  # [n, L, H]
        return (pattern * mask[:, None, None, :]).sum(-1)

    ent = -(pattern * np.log(np.where(pattern > 0, pattern, 1.0))).sum(-1)
    parts = [mass(op), mass(ans), mass(other), ent]
    ops = list(model.task.operations)
    per_op = [np.stack([p[exprs.ops == k].mean(0) for k in range(len(ops))], axis=-1).reshape(-1, len(ops))
              for p in parts]  # each [L * H, ops]  # fmt: skip
    heads = [f"L{i}H{h}" for i in range(cfg.n_layers) for h in range(cfg.n_heads)]
    no_slot = [k for k in range(len(ops)) if not (slot_of_answer[exprs.ops == k] > 0).any()]
    per_op[1][:, no_slot] = np.nan  # an operation whose answer is no value's (Sum) has no answer's slot
    return HeadRoles(heads, ops, *per_op, n=len(exprs))


ROLE_THRESHOLD = 0.5  # a head "attends to X" for an operation when X gets at least this mean attention


def head_role(roles: HeadRoles, head: str, threshold: float = ROLE_THRESHOLD) -> str | None:
    """A head's role in words, only where the numbers show one; None when none of its mean attentions from
    `=` (to the operation token, to the answer's slot) reaches `threshold` for any operation.

    E.g. "attends to the operation token (First 0.99); to the answer's slot (Max 0.81, Min 0.77)"."""
    i = roles.heads.index(head)
    parts = []
    for what, table in (("the operation token", roles.to_op), ("the answer's slot", roles.to_answer_slot)):
        ops = [(op, float(table[i, k])) for k, op in enumerate(roles.operations) if table[i, k] >= threshold]
        if ops:
            parts.append(f"to {what} (" + ", ".join(f"{op} {v:.2f}" for op, v in ops) + ")")
    return "attends " + "; ".join(parts) if parts else None


def argument_values(task) -> int:
    """How many values an argument may have, from min_value up: the task's values, and in a nested task every
    inner answer too (a Sum's reach past max_value)."""
    largest = max(task.max_value, task.flat_task.largest_answer) if task.nested else task.max_value
    return largest - task.min_value + 1


def score_by_digit(model: TaskModel, layer: int, head: int, exprs: ExpressionSet | None = None, *,
                   run: SpaceRun | None = None):  # fmt: skip
    """A head's scaled score from the answer position to each slot's last digit, as a table.

    Returns (table [operation, slot, value] of mean scores (NaN where no expression has that value there),
    variance explained by the table: 1 - within-cell variance / total variance). In a nested task a slot's value
    is its argument's (an inner answer, up to `argument_values` wide) and its last position is an inner
    expression's `)`.
    """
    run = _run(model, exprs, run)
    exprs = run.exprs
    _, _, last = _layouts(model, run.tokens)  # [n, n_args]
    n = len(exprs)
    here = exprs.values != ABSENT  # [n, n_args] the slots a shorter list has
    values = run.scores[np.arange(n)[:, None], layer, head, last].astype(np.float64)[here]  # [m] scores at values
    n_ops, n_args, V = len(model.task.operations), model.task.n_args, argument_values(model.task)
    ops = np.broadcast_to(exprs.ops[:, None], (n, n_args))[here]
    slots = np.broadcast_to(np.arange(n_args), (n, n_args))[here]
    cell = np.ravel_multi_index((ops, slots, exprs.values[here] - model.task.min_value), (n_ops, n_args, V))  # [m]
    total_n = np.bincount(cell, minlength=n_ops * n_args * V)
    total = np.bincount(cell, weights=values, minlength=n_ops * n_args * V)
    with np.errstate(invalid="ignore", divide="ignore"):
        table = (total / total_n).reshape(n_ops, n_args, V)
    fitted = table.reshape(-1)[cell]
    spread = values.var()
    explained = 1.0 - ((values - fitted) ** 2).mean() / spread if spread > 0 else 1.0
    return table, float(explained)


@dataclass(frozen=True)
class AblationMatrix:
    components: list[str]
    operations: list[str]
    accuracy: np.ndarray  # [component, operation]
    clean: np.ndarray  # [operation]
    n: int


def _per_op(model: TaskModel, exprs: ExpressionSet, right: np.ndarray) -> np.ndarray:
    return np.array([right[exprs.ops == k].mean() if (exprs.ops == k).any() else np.nan
                     for k in range(len(model.task.operations))])  # fmt: skip


def ablation_matrix(model: TaskModel, exprs: ExpressionSet | None = None, mean: bool = False, *,
                    run: SpaceRun | None = None) -> AblationMatrix:  # fmt: skip
    """Accuracy per operation with each head and MLP zeroed (or mean-replaced) at every position.

    Zero ablation reads the runs `space_run` made; mean ablation makes its own from a fresh clean pass."""
    run = _run(model, exprs, run)
    exprs = run.exprs
    right = run.ablated_right
    if mean:
        net = model.transformer
        keep = set(_ablation_starts(net.cfg))
        right = np.concatenate([
            _ablated_right(model, run.components, run.tokens[s : s + BATCH], run.targets[s : s + BATCH],
                           net.run_with_cache(run.tokens[s : s + BATCH], names_filter=keep)[1], mean=True)
            for s in range(0, len(exprs), BATCH)], axis=1)  # fmt: skip
    acc = np.stack([_per_op(model, exprs, r) for r in right])
    return AblationMatrix(list(run.components), list(model.task.operations), acc, _per_op(model, exprs, run.right),
                          len(exprs))  # fmt: skip


def lens_by_operation(model: TaskModel, exprs: ExpressionSet | None = None, *, run: SpaceRun | None = None):
    """(stages, operations, share [stage, operation]) of inputs whose first answer token is already the top
    token when the stream after that stage is decoded as the output does (logit lens)."""
    run = _run(model, exprs, run)
    exprs, net = run.exprs, model.transformer
    cfg, p = net.cfg, net.params
    n = len(exprs)
    true = run.targets[np.arange(n), run.answer_pos]  # [n]
    share = []
    for k in range(len(run.stages)):
        x = run.stream[:, k]  # [n, d_model]
        if cfg.norm == "pre":
            centred, scale = L.layer_norm_scale(x)
            x = centred / scale * p["ln_final.w"] + p["ln_final.b"]
        top = (x @ p["unembed.W_U"] + p["unembed.b_U"]).argmax(-1)
        share.append([(top == true)[exprs.ops == k].mean() for k in range(len(model.task.operations))])
    return list(run.stages), list(model.task.operations), np.array(share)


def hard_cases(model: TaskModel, exprs: ExpressionSet | None = None, k: int = 20, *, run: SpaceRun | None = None):
    """(wrong: [expression text], least confident right: [(text, margin)]) where the margin is the first
    answer token's logit minus the strongest other token's, at `=`."""
    run = _run(model, exprs, run)
    exprs, right = run.exprs, run.right
    first = np.flatnonzero(np.diff(np.nonzero(run.targets >= 0)[0], prepend=-1) != 0)  # each example's first row
    logits = run.logits[first]  # [n, vocab] at `=`
    true = run.targets[np.arange(len(exprs)), run.answer_pos]
    others = logits.copy()
    others[np.arange(len(exprs)), true] = -np.inf
    margin = logits[np.arange(len(exprs)), true] - others.max(-1)
    wrong = [exprs.expression(i).text for i in np.flatnonzero(~right)]
    order = [i for i in np.argsort(margin, kind="stable") if right[i]][:k]
    return wrong, [(exprs.expression(i).text, float(margin[i])) for i in order]


# ---------------------------------------------------------------- small read-outs of a SpaceRun (the Heads page's)
def answer_margin(run: SpaceRun) -> np.ndarray:
    """[n] the first answer token's logit minus the strongest other token's, at `=` (the margin `hard_cases`
    ranks by); negative where the first token is wrong."""
    first = np.flatnonzero(np.diff(np.nonzero(run.targets >= 0)[0], prepend=-1) != 0)  # each example's first row
    logits = run.logits[first].astype(np.float64)  # [n, vocab] at `=`
    n = len(logits)
    true = run.targets[np.arange(n), run.answer_pos]
    others = logits.copy()
    others[np.arange(n), true] = -np.inf
    return logits[np.arange(n), true] - others.max(-1)


def example_where_ablation_flips(run: SpaceRun, component: str, op: int) -> int | None:
    """The index of the first expression of operation `op` (its index in the task's operations) that the model
    gets right, and gets wrong with `component` (as `run.components` names it) zeroed; None if there is none."""
    k = run.components.index(component)
    hits = np.flatnonzero((run.exprs.ops == op) & run.right & ~run.ablated_right[k])
    return int(hits[0]) if hits.size else None


def score_trend(table: np.ndarray) -> np.ndarray:
    """[operation, slot] the correlation of a `score_by_digit` table's mean score with the slot's value, over the
    values that have data: +1 rises with the value, -1 falls, near 0 no trend; NaN where it is undefined (fewer
    than two values, or a constant score)."""
    table = np.asarray(table, dtype=np.float64)  # [op, slot, value]
    x = np.broadcast_to(np.arange(table.shape[-1], dtype=np.float64), table.shape)
    ok = np.isfinite(table)
    n = ok.sum(-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mx = np.where(ok, x, 0).sum(-1) / n
        my = np.where(ok, table, 0).sum(-1) / n
        dx, dy = np.where(ok, x - mx[..., None], 0), np.where(ok, table - my[..., None], 0)
        sxy, sxx, syy = (dx * dy).sum(-1), (dx * dx).sum(-1), (dy * dy).sum(-1)
        r = sxy / np.sqrt(sxx * syy)
    flat = syy <= 1e-12 * np.maximum(1.0, (np.where(ok, table, 0) ** 2).sum(-1))
    return np.where((n >= 2) & ~flat, np.clip(r, -1.0, 1.0), np.nan)
