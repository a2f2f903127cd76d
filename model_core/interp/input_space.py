"""Views over the whole input space (or a stated sample of it), computed once per model by the caller.

- `head_roles`: per head and operation, where the answer position attends: the operation token, the
  answer's slot (the slot its value comes from; every digit of it), the other slots; and the entropy;
- `score_by_digit`: a head's attention score from the answer position to a slot, as a table over
  (operation, slot, the slot's value), and how much of the score's variance the table explains;
- `ablation_matrix`: accuracy per operation with each head and MLP zeroed;
- `lens_by_operation`: per stage of the residual stream, the share of inputs whose answer is already the
  top token at the answer position (the logit lens, aggregated);
- `hard_cases`: the expressions the model gets wrong, and its least confident right answers.

On 0-9 tasks every expression is used (5,000 for three values); larger spaces use a sample of the
held-out split, whose size each result states.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import layers as L
from ..task import ExpressionSet, enumerate_all, exact_match, make_splits
from ..task.operations import MAX_ENUMERABLE
from ..task_model import TaskModel
from .ablation import ablation_hooks, every_component
from .inputs import roles

SAMPLE = 5_000  # expressions from the held-out split when the space is too large to enumerate


def input_space(model: TaskModel, sample: int = SAMPLE) -> ExpressionSet:
    """Every expression of the task if it can be enumerated, else the first `sample` held-out ones."""
    if model.task.space_size <= MAX_ENUMERABLE:
        return enumerate_all(model.task)
    seed = model.train_config.seed if model.train_config else 0
    test = make_splits(model.task, seed=seed).test
    return test.subset(np.arange(min(sample, len(test))))


def _slot_masks(model: TaskModel, exprs: ExpressionSet, tokens: np.ndarray):
    """bool [n, T] masks at the key positions: the op token, the answer's slot, the other slots."""
    n, T = tokens.shape
    op, answer, other = (np.zeros((n, T), dtype=bool) for _ in range(3))
    slot_of_answer = np.argmax(exprs.values == exprs.answers[:, None], axis=1) + 1  # 1-based, first on a tie
    layouts: dict[tuple, list[str]] = {}
    for i in range(n):
        key = tuple(tokens[i] == model.vocab.pad_id) + (tuple(np.char.str_len(exprs.values[i].astype(str))),)
        if key not in layouts:
            layouts[key] = roles(model, tokens[i])
        r = layouts[key]
        for t, role in enumerate(r):
            if role == "op":
                op[i, t] = True
            elif role.startswith("v"):
                (answer if int(role[1:].split(".")[0]) == slot_of_answer[i] else other)[i, t] = True
    return op, answer, other


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


def _patterns(model: TaskModel, exprs: ExpressionSet, batch: int = 2048):
    """Every layer's pattern row at the answer position: [n, layer, head, T], and the tokens [n, T]."""
    net = model.transformer
    enc = model.encode(exprs)
    names = [f"blocks.{i}.attn.hook_pattern" for i in range(net.cfg.n_layers)]
    rows = []
    for s in range(0, len(exprs), batch):
        t = enc.tokens[s : s + batch]
        _, cache = net.run_with_cache(t, names_filter=names)
        at = (np.arange(len(t)), enc.answer_pos[s : s + batch])
        rows.append(np.stack([cache[nm][at[0], :, at[1]] for nm in names], axis=1))  # [b, layer, head, T]
    return np.concatenate(rows), enc


def head_roles(model: TaskModel, exprs: ExpressionSet | None = None) -> HeadRoles:
    exprs = input_space(model) if exprs is None else exprs
    pattern, enc = _patterns(model, exprs)  # [n, L, H, T]
    op, ans, other = _slot_masks(model, exprs, enc.tokens)
    cfg = model.transformer.cfg

    def mass(mask):  # [n, L, H]
        return (pattern * mask[:, None, None, :]).sum(-1)

    ent = -(pattern * np.log(np.where(pattern > 0, pattern, 1.0))).sum(-1)
    parts = [mass(op), mass(ans), mass(other), ent]
    ops = list(model.task.operations)
    per_op = [np.stack([p[exprs.ops == k].mean(0) for k in range(len(ops))], axis=-1).reshape(-1, len(ops))
              for p in parts]  # each [L * H, ops]  # fmt: skip
    heads = [f"L{i}H{h}" for i in range(cfg.n_layers) for h in range(cfg.n_heads)]
    return HeadRoles(heads, ops, *per_op, n=len(exprs))


def score_by_digit(model: TaskModel, layer: int, head: int, exprs: ExpressionSet | None = None):
    """A head's scaled score from the answer position to each slot's last digit, as a table.

    Returns (table [operation, slot, value] of mean scores (NaN where no expression has that value there),
    variance explained by the table: 1 - within-cell variance / total variance).
    """
    exprs = input_space(model) if exprs is None else exprs
    net = model.transformer
    enc = model.encode(exprs)
    name = f"blocks.{layer}.attn.hook_attn_scores"
    _, cache = net.run_with_cache(enc.tokens, names_filter=[name])
    n = len(exprs)
    scores = cache[name][np.arange(n), head, enc.answer_pos]  # [n, T]

    n_ops, n_args, V = len(model.task.operations), model.task.n_args, model.task.n_values
    table_sum = np.zeros((n_ops, n_args, V))
    table_n = np.zeros((n_ops, n_args, V))
    values, cells = [], []
    r: list[str] = []
    for i in range(n):
        if i == 0 or model.task.max_value > 9:  # a 0-9 task has one layout
            r = roles(model, enc.tokens[i])
        for j in range(n_args):
            t = max(k for k, role in enumerate(r) if role.split(".")[0] == f"v{j + 1}")  # the slot's last digit
            v = int(exprs.values[i, j]) - model.task.min_value
            table_sum[exprs.ops[i], j, v] += scores[i, t]
            table_n[exprs.ops[i], j, v] += 1
            values.append(scores[i, t])
            cells.append((exprs.ops[i], j, v))
    with np.errstate(invalid="ignore"):
        table = table_sum / table_n
    values = np.asarray(values, dtype=np.float64)
    fitted = np.array([table[c] for c in cells])
    total = values.var()
    explained = 1.0 - ((values - fitted) ** 2).mean() / total if total > 0 else 1.0
    return table, float(explained)


@dataclass(frozen=True)
class AblationMatrix:
    components: list[str]
    operations: list[str]
    accuracy: np.ndarray  # [component, operation]
    clean: np.ndarray  # [operation]
    n: int


def ablation_matrix(model: TaskModel, exprs: ExpressionSet | None = None, mean: bool = False) -> AblationMatrix:
    exprs = input_space(model) if exprs is None else exprs
    ops = list(model.task.operations)
    clean = model.evaluate(exprs)["per_op"]
    comps = [c[0] for c in every_component(model.transformer)]
    acc = np.full((len(comps), len(ops)), np.nan)
    for i, c in enumerate(comps):
        per_op = model.evaluate(exprs, batch_size=1024, fwd_hooks=ablation_hooks(model, [c], mean=mean))["per_op"]
        acc[i] = [per_op.get(op, np.nan) for op in ops]
    return AblationMatrix(comps, ops, acc, np.array([clean.get(op, np.nan) for op in ops]), len(exprs))


def lens_by_operation(model: TaskModel, exprs: ExpressionSet | None = None):
    """(stages, operations, share [stage, operation]) of inputs whose first answer token is already the top
    token when the stream after that stage is decoded as the output does (logit lens)."""
    exprs = input_space(model) if exprs is None else exprs
    net = model.transformer
    cfg, p = net.cfg, net.params
    names = ["blocks.0.hook_resid_pre"]
    stages = ["embed + pos"]
    for i in range(cfg.n_layers):
        b = f"blocks.{i}."
        names += [b + "hook_resid_mid", b + "hook_resid_post"] if cfg.norm == "pre" else [b + "ln1.hook_out",
                                                                                          b + "ln2.hook_out"]
        stages += [f"block {i} mid", f"block {i} out"]
    enc = model.encode(exprs)
    _, cache = net.run_with_cache(enc.tokens, names_filter=names)
    n = len(exprs)
    at = (np.arange(n), enc.answer_pos)
    true = enc.targets[at]  # [n]
    share = []
    for nm in names:
        x = cache[nm][at]  # [n, d_model]
        if cfg.norm == "pre":
            centred, scale = L.layer_norm_scale(x)
            x = centred / scale * p["ln_final.w"] + p["ln_final.b"]
        top = (x @ p["unembed.W_U"] + p["unembed.b_U"]).argmax(-1)
        share.append([(top == true)[exprs.ops == k].mean() for k in range(len(model.task.operations))])
    return stages, list(model.task.operations), np.array(share)


def hard_cases(model: TaskModel, exprs: ExpressionSet | None = None, k: int = 20):
    """(wrong: [expression text], least confident right: [(text, margin)]) where the margin is the first
    answer token's logit minus the strongest other token's, at `=`."""
    exprs = input_space(model) if exprs is None else exprs
    enc = model.encode(exprs)
    full = model.transformer.forward(enc.tokens)  # [n, T, vocab]: one pass for both
    right = exact_match(full, enc.targets)
    logits = full[np.arange(len(exprs)), enc.answer_pos]
    true = enc.targets[np.arange(len(exprs)), enc.answer_pos]
    others = logits.copy()
    others[np.arange(len(exprs)), true] = -np.inf
    margin = logits[np.arange(len(exprs)), true] - others.max(-1)
    wrong = [exprs.expression(i).text for i in np.flatnonzero(~right)]
    order = [i for i in np.argsort(margin, kind="stable") if right[i]][:k]
    return wrong, [(exprs.expression(i).text, float(margin[i])) for i in order]
