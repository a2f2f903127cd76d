"""The mechanism on one example, in words computed from the numbers: `explain(model, text)`.

It gathers, for the answer read at `=` (a causal model's first answer token), the evidence the
"How it answers" page draws, and writes claims from it:

- which heads move the operation to `=` (where it is used): they attend there to the operation token;
- which heads select and copy the answer: they attend to the answer's slot and write the answer directly;
- what each MLP adds (its direct share of the logit difference, and what zeroing it costs);
- which component matters most (zero ablation), and whether removing it flips the answer;
- when no head shows a clear role, it says so.

Each claim cites its evidence on this example and, given a `SpaceRun` of the model, across all inputs
(every 0-9 expression, or a stated sample). Thresholds are named constants below.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..task_model import TaskModel
from .ablation import AblationResult, ablate, every_component, mean_activations
from .attribution import Attribution, attribute
from .input_space import HeadRoles, SpaceRun, head_roles
from .inputs import batch, role_slot, roles

ATTENDS = 0.5  # a head "attends to" a position when it puts at least this weight on it
WRITES = 0.1  # a component "writes the answer" when its direct share of the logit difference is at least this


@dataclass(frozen=True)
class Claim:
    kind: str  # "answer", "operation", "select", "reads", "mlp", "most", "none"
    component: str | None  # "L0H3", "L1.mlp" or None
    text: str  # the claim with its numbers, on this example
    across: str | None = None  # its evidence over all inputs (None without a SpaceRun, or not applicable)


@dataclass(frozen=True)
class Explanation:
    """Everything measured for the answer at `=` of one example, and the claims written from it.

    `pattern` [layer, head, T]: each head's attention from `=`; `roles` [T] each position's role;
    `answer_slots`: the value slots (1-based) that hold the answer's value (two or more on a tie).
    """

    text: str
    tokens: np.ndarray  # [T] up to `=` (and, for a causal model, the true answer)
    pos: int  # `=`
    roles: list[str]
    answer_token: str  # the model's top token at `=`
    correct: bool  # that token is the true answer's first token
    true_token: str
    attribution: Attribution  # one example
    zero: AblationResult  # every head and MLP zeroed, one at a time
    mean: AblationResult  # the same, mean-ablated
    pattern: np.ndarray
    answer_slots: list[int]
    claims: list[Claim]


def explain(model: TaskModel, text: str, space: SpaceRun | None = None, roles_: HeadRoles | None = None) -> Explanation:
    """Measure and tell. `space` adds the evidence across inputs; `roles_` its head roles, if the caller has them
    (computed from `space` otherwise)."""
    net = model.transformer
    cfg = net.cfg
    b = batch(model, [text])
    tokens, pos = b.tokens[:1], int(b.answer_pos[0])
    _, cache = net.run_with_cache(tokens, names_filter=lambda n: n.endswith("hook_pattern"))
    pattern = np.stack([cache[f"blocks.{i}.attn.hook_pattern"][0, :, pos] for i in range(cfg.n_layers)])
    att = attribute(net, tokens, [pos])
    sweep = every_component(net)
    zero = ablate(model, tokens, [pos], sweep)
    mean = ablate(model, tokens, [pos], sweep, mean=True, means=mean_activations(model))
    r = roles(model, tokens[0])
    e = model.parse(text)
    args = model.expressions([e]).values[0]  # each argument's value (an inner expression's answer, nested)
    slots = [j + 1 for j, v in enumerate(args.tolist()) if v == e.answer]
    vocab = model.vocab
    answer_token = vocab.decode([int(att.answer[0])])[0]
    true_token = vocab.decode([int(b.targets[0, pos])])[0]
    hr = roles_ if roles_ is not None else head_roles(model, run=space) if space is not None else None
    ex = Explanation(e.text, tokens[0], pos, r, answer_token, answer_token == true_token, true_token, att, zero,
                     mean, pattern, slots, [])  # fmt: skip
    claims = _claims(model, ex, e.op, hr, space)
    return Explanation(**{**ex.__dict__, "claims": claims})


def _claims(model: TaskModel, ex: Explanation, op: str, hr: HeadRoles | None, space: SpaceRun | None) -> list[Claim]:
    cfg = model.transformer.cfg
    att, zero = ex.attribution, ex.zero
    total = float(att.diff_total[0])
    share = dict(zip(att.names, att.diff[0] / total if total else np.zeros(len(att.names)), strict=True))
    contrib = dict(zip(att.names, att.diff[0], strict=True))
    wrong = model.vocab.decode([int(att.wrong[0])])[0]
    k_op = list(model.task.operations).index(op)
    n_all = "" if hr is None else (  # a large space's views read a sample of it: not "all" of its inputs
        f"all {hr.n:,} inputs" if hr.n == model.task.space_size else f"the {hr.n:,} sampled inputs")
    out = [Claim("answer", None, _answer_sentence(ex, total, wrong))]

    is_op = np.array([role == "op" for role in ex.roles])
    is_answer = np.array([role_slot(role) in ex.answer_slots for role in ex.roles])  # all of an inner expression
    slot_words = _slot_words(ex)
    clear = False
    readers = []  # heads that attend to the answer's slot but write little of it: one claim for all
    for layer in range(cfg.n_layers):
        for h in range(cfg.n_heads):
            name = f"L{layer}H{h}"
            row = ex.pattern[layer, h]
            to_op, to_ans = float(row[is_op].sum()), float(row[is_answer].sum())
            i = hr.heads.index(name) if hr is not None else None
            if to_op >= ATTENDS:
                clear = True
                rule = None if hr is None else float(hr.to_op[i, k_op])
                across = None if hr is None else (
                    f"Across {n_all}, its mean attention from `=` to the operation token on {op} inputs is {rule:.2f}"
                    + ("." if rule >= ATTENDS else ": on this example only, not the rule for this operation."))
                out.append(Claim("operation", name, f"{name} moves the operation to `=`, where the answer is "
                                 f"read: it puts {to_op:.2f} of its attention there on the operation token `{op}`.",
                                 across))  # fmt: skip
            if to_ans >= ATTENDS:
                clear = True
                across = None if hr is None else (f"Across {n_all}, its mean attention from `=` to the answer's "
                                                  f"slot on {op} inputs is {hr.to_answer_slot[i, k_op]:.2f}.")
                if share[name] >= WRITES:
                    out.append(Claim("select", name, f"{name} selects and copies the answer: it puts {to_ans:.2f} of "
                                     f"its attention on {slot_words} and its write adds {contrib[name]:+.2f} "
                                     f"directly to the logit difference ({share[name]:.0%} of {total:.2f}).",
                                     across))  # fmt: skip
                else:
                    readers.append((name, to_ans, contrib[name], None if hr is None else hr.to_answer_slot[i, k_op]))
    if readers:
        names, one = ", ".join(r[0] for r in readers), len(readers) == 1
        out.append(Claim("reads", None, f"{names} attend{'s' if one else ''} to the answer's slot ("
                         + ", ".join(f"{r[1]:.2f}" for r in readers) + f") but write{'s' if one else ''} little of "
                         "the answer directly (" + ", ".join(f"{r[2]:+.2f}" for r in readers) + f" of {total:.2f}): "
                         f"what {'it reads' if one else 'they read'} is used later, or not at all.",
                         None if hr is None else f"Across {n_all}, {'its' if one else 'their'} mean attention to "
                         f"the answer's slot on {op} inputs: " + ", ".join(f"{r[0]} {r[3]:.2f}" for r in readers)
                         + "."))  # fmt: skip
    if not clear:
        out.append(Claim("none", None, f"No head shows a clear role on this example: none puts {ATTENDS} or more of "
                         "its attention at `=` on the operation token or on the answer's slot."))  # fmt: skip

    for layer in range(cfg.n_layers):
        name = f"L{layer}.mlp"
        k = zero.labels.index(name)
        d, flipped = float(zero.delta_logit_diff[k, 0]), bool(zero.flipped[k, 0])
        effect = (f"zeroing it flips the answer to `{model.vocab.decode([int(zero.top[k, 0])])[0]}`" if flipped else
                  f"zeroing it changes the logit difference by {d:+.2f} and the answer survives")  # fmt: skip
        out.append(Claim("mlp", name, f"{name} adds {contrib[name]:+.2f} directly ({share[name]:.0%} of the logit "
                         f"difference); {effect}.", _ablation_across(space, name, k_op, op)))  # fmt: skip

    k = int(np.argmin(zero.delta_logit_diff[:, 0]))
    name = zero.labels[k]
    d = float(zero.delta_logit_diff[k, 0])
    flips = [zero.labels[j] for j in np.flatnonzero(zero.flipped[:, 0])]
    if d >= 0:
        text = "Zeroing any single head or MLP leaves the logit difference as large or larger: none is needed alone."
    else:
        text = (f"Zeroing {name} costs the most: {d:+.2f} of {total:.2f}. "
                + (f"Components whose removal alone flips the answer: {', '.join(flips)}." if flips else
                   "No single component's removal flips the answer."))  # fmt: skip
    out.append(Claim("most", name if d < 0 else None, text, _ablation_across(space, name, k_op, op) if d < 0 else None))
    return out


def _answer_sentence(ex: Explanation, total: float, wrong: str) -> str:
    verdict = "right" if ex.correct else f"wrong: the true answer starts with `{ex.true_token}`"
    tie = f" (a tie: slots {', '.join(map(str, ex.answer_slots))} hold the answer)" if len(ex.answer_slots) > 1 else ""
    return (f"At `=` the model's top token is `{ex.answer_token}`, {total:.2f} logits above the next strongest "
            f"`{wrong}`; this is {verdict}{tie}.")


def _slot_words(ex: Explanation) -> str:
    slots = ex.answer_slots
    if not slots:
        return "the answer's slot"
    if len(slots) == 1:
        return f"slot {slots[0]}, which holds the answer,"
    return "slots " + " and ".join(str(s) for s in slots) + ", which hold the answer,"


def _ablation_across(space: SpaceRun | None, name: str, k_op: int, op: str) -> str | None:
    if space is None or name not in space.components:
        return None
    sel = space.exprs.ops == k_op
    n, clean = int(sel.sum()), int(space.right[sel].sum())
    without = int(space.ablated_right[space.components.index(name)][sel].sum())
    return f"Across {n:,} {op} inputs, {without:,} are answered right with {name} zeroed ({clean:,} with it)."
