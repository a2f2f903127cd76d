"""Predict, then reveal: one multiple-choice question per stage page about the example on screen.

Each question is built from the run's own arrays (`ExampleRun.cache`, `.grad_cache`) and the model, so its
answer is what the model really computed on this example: a tie, a wrong answer or a vanishing gradient
included. Markdown; tokens go through the caller's `code` (e.g. `explainer.format.code`), probabilities through
its `pct` (e.g. `explainer.format.percent`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from .. import layers as L
from ..task_model import TaskModel
from .run import ExampleRun

STAGES = ("tokens", "attention", "residual", "output", "backprop")
# Two attention weights closer than this (five hundredths of the row) are a tie: both keys count as the answer
# (the attention page names such a pair together too). Max ( 5 5 2 ): 0.51 and 0.49 on the two 5s.
TIE = 0.05
N_OPTIONS = 4  # the tokens and output questions offer this many choices

Code = Callable[[str], str]


@dataclass(frozen=True)
class Question:
    """A multiple-choice question: `options` (Markdown labels), the indices in `right` are correct (several
    on a tie), `explanation` says what the arrays show (Markdown, one line)."""

    stage: str
    prompt: str
    options: tuple[str, ...]
    right: frozenset[int]
    explanation: str


def verdict(question: Question, choice: int) -> tuple[bool, str]:
    """(right?, a short sentence) for the option `choice` picked."""
    if choice in question.right:
        return True, f"Right: {question.options[choice]}."
    answers = [question.options[i] for i in sorted(question.right)]
    said = answers[0] if len(answers) == 1 else ", ".join(answers[:-1]) + " or " + answers[-1]
    return False, f"Not quite: you chose {question.options[choice]}; the right choice is {said}."


def _largest(printed: list[str], values: list[float]) -> list[int]:
    """The indices of the largest value, with any other that prints the same (a tie as the reader sees it)."""
    best = int(np.argmax(values))
    return [j for j, text in enumerate(printed) if text == printed[best]]


def _listed(items: list[str]) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


# ---------------------------------------------------------------- Tokens & embeddings
def tokens_question(run: ExampleRun, model: TaskModel, code: Code) -> Question:
    """How many tokens the input becomes, up to and including `=` (what the tokenizer made: run.labels)."""
    expr = run.answer.expression
    n = run.answer_pos + 1  # positions 0..answer_pos: the input, `=` last
    seq = run.labels[:n]
    words = len(expr.text.split())  # what was typed: the operation, brackets and values
    commas = seq.count(",")
    options = sorted(_fill({words, words + 1, n, n - commas}, n))
    n_values, digits = len(expr.values), sum(len(str(v)) for v in expr.values)
    explanation = f"{code(expr.text)} becomes {n} tokens, {code(' '.join(seq))}"
    if n == 1 + 2 + digits + commas + 1 and seq[-1] == "=":  # the operation, its brackets, digits, commas, `=`
        values = ("one token per value" if digits == n_values
                  else f"the {n_values} values digit by digit ({digits} digit tokens)")  # fmt: skip
        then = ("after which the model writes its answer, one token at a time" if model.causal
                else "where the model gives its answer")  # fmt: skip
        explanation += (f": the operation and its brackets, {values}, {commas} comma{'' if commas == 1 else 's'} "
                        f"between the values and `=` at the end, {then}")  # fmt: skip
    return Question("tokens", f"How many tokens does {code(expr.text)} become, up to and including `=`?",
                    tuple(str(k) for k in options), frozenset([options.index(n)]), explanation + ".")  # fmt: skip


def _fill(candidates: set[int], n: int) -> set[int]:
    """At least N_OPTIONS distinct positive counts, the right one `n` among them: neighbours of n fill the gaps."""
    out = {c for c in candidates if c > 0}
    for k in (n + step for pair in range(1, N_OPTIONS + 1) for step in (pair, -pair)):
        if len(out) >= N_OPTIONS:
            break
        if k > 0:
            out.add(k)
    return out


# ---------------------------------------------------------------- Attention
def attention_question(run: ExampleRun, layer: int, head: int, code: Code, pct: Callable[[float], str]) -> Question:
    """Which key `=` attends to most with head `head` of layer `layer`: the argmax of the cached pattern row
    (every key within TIE of it counts too). Masked keys (a causal model's future, weight 0) are not offered."""
    row = run.cache[f"blocks.{layer}.attn.hook_pattern"][0, head, run.answer_pos].astype(np.float64)  # [k_pos]
    keys = [k for k in range(len(row)) if not np.isneginf(run.cache[f"blocks.{layer}.attn.hook_attn_scores"]
                                                            [0, head, run.answer_pos, k])]  # fmt: skip
    top = max(keys, key=lambda k: row[k])
    tied = [k for k in keys if row[top] - row[k] <= TIE]  # top itself included
    tied.sort(key=lambda k: -row[k])

    def key_name(k: int) -> str:
        return f"{code(run.labels[k])} (position {k})"

    options = tuple(key_name(k) for k in keys)
    rest = [k for k in keys if k not in tied]
    second = max(rest, key=lambda k: row[k]) if rest else None
    runner = f"; the next largest, {pct(row[second])}, is on {key_name(second)}" if rest else ""
    if len(tied) == 1:
        said = f"puts {pct(row[top])} of its attention on {key_name(top)}{runner}"
    else:
        named = _listed([f"{pct(row[k])} on {key_name(k)}" for k in tied])
        said = (f"gives about the same weight to {len(tied)} keys, {named}, within {100 * TIE:.0f} percentage "
                f"points of the largest, so {'both count' if len(tied) == 2 else 'each counts'} as the answer"
                f"{runner}")  # fmt: skip
    where = f"`=` (position {run.answer_pos})"
    return Question("attention", f"In layer {layer}, which position will {where} attend to most with head {head}?",
                    options, frozenset(keys.index(k) for k in tied),
                    f"From {where}, head {head} of layer {layer} {said}.")  # fmt: skip


# ---------------------------------------------------------------- Residual, LayerNorm & FFN
def residual_question(run: ExampleRun, model: TaskModel, code: Code) -> Question:
    """Which sublayer writes the largest vector into the stream at `=`: the norms of each block's cached
    hook_attn_out and hook_mlp_out [d_model] there."""
    cfg = model.transformer.cfg
    writes, prose = [], []  # (option label, norm), the same sublayer in a sentence
    for i in range(cfg.n_layers):
        for hook, name in (("hook_attn_out", "attention"), ("hook_mlp_out", "FFN")):
            vec = run.cache[f"blocks.{i}.{hook}"][0, run.answer_pos].astype(np.float64)  # [d_model]
            writes.append((f"block {i} {name}", float(np.linalg.norm(vec))))
            prose.append(f"block {i}'s {name}")
    printed = [f"{w:.2f}" for _, w in writes]
    best = _largest(printed, [w for _, w in writes])
    top = _listed([prose[j] for j in best])
    others = _listed([f"{label} {printed[j]}" for j, (label, _) in enumerate(writes) if j not in best])
    how = ("in this post-norm model each write is added to the stream and the sum is then normalised by LayerNorm"
           if cfg.norm == "post" else "in this pre-norm model each write is added to the stream as it is")
    where = f"{code('=')} (position {run.answer_pos})"
    said = (f"{top} writes the largest vector (norm {printed[best[0]]})" if len(best) == 1
            else f"{top} write vectors of the same norm as printed, {printed[best[0]]}, the largest: each counts")
    return Question("residual",
                    f"Which sublayer writes the most into the residual stream at {where}, by the norm of what it adds?",
                    tuple(label for label, _ in writes), frozenset(best),
                    f"At {where}, {said}; the others: {others} ({how}).")  # fmt: skip


# ---------------------------------------------------------------- Output & softmax
def output_question(run: ExampleRun, model: TaskModel, code: Code, pct: Callable[[float], str]) -> Question:
    """Which token the model puts on top at `=`: the argmax of the softmax of its cached logits there. The
    options are the first tokens of the arguments' values, the true first token and the model's top one, filled up
    with the next most probable tokens; in vocabulary order, so their order gives nothing away."""
    vocab = model.vocab
    probs = L.softmax(run.cache["hook_logits"][0, run.answer_pos].astype(np.float64))  # [vocab]
    order = [int(t) for t in np.argsort(-probs, kind="stable")]
    top, runner = order[0], order[1]
    true_ids = run.train_targets[run.train_targets >= 0]  # the true answer's tokens (a causal model's end with <eos>)
    true_first = int(true_ids[0])
    args = model.expressions([run.answer.expression]).values[0]  # each argument's value (an inner answer, nested)
    ids = {vocab.id(str(int(v))[0]) for v in args if v >= 0} | {true_first, top}
    for t in order:
        if len(ids) >= N_OPTIONS:
            break
        ids.add(t)
    ids = sorted(ids)
    name = vocab.decode
    said = (f"The model puts {code(name([top])[0])} on top at `=` with {pct(probs[top])}; the runner-up, "
            f"{code(name([runner])[0])}, gets {pct(probs[runner])}.")  # fmt: skip
    answer, right_tok = run.answer.expression.answer, code(name([true_first])[0])
    if top == true_first and run.answer.correct:
        said += " That is the right answer." if len(true_ids) == 1 else " That is the right first token."
    elif top == true_first:  # a causal model: a later token is off
        said += (f" That is the right first token, but the whole answer it writes, "
                 f"{code(' '.join(run.answer.answer_tokens))}, is wrong (the answer is {answer}).")  # fmt: skip
    else:
        should = f"the answer, {answer}, starts with {right_tok}" if len(str(answer)) > 1 else \
            f"the answer is {right_tok}"  # fmt: skip
        gets = "its runner-up" if runner == true_first else f"which gets {pct(probs[true_first])}"
        said += (f" It is wrong on this example: {should}, {gets}. A wrong answer is a good case to study: look "
                 "at what each stage did with it.")  # fmt: skip
    which = "the first token of its answer" if model.causal else "its answer"
    return Question("output", f"Which token will the model put on top at `=` ({which})?",
                    tuple(code(name([t])[0]) for t in ids), frozenset([ids.index(top)]), said)  # fmt: skip


# ---------------------------------------------------------------- Backprop
def param_groups(names) -> list[tuple[str, list[str]]]:
    """The parameters by part of the model, in forward order: embeddings, each block, the final LayerNorm (pre-norm
    only), the unembedding. [(part, [parameter names])]; parts with no parameters are left out."""
    names = list(names)
    blocks = sorted({int(n.split(".")[1]) for n in names if n.startswith("blocks.")})
    parts = [("the embeddings", [n for n in names if n.startswith(("embed.", "pos_embed."))])]
    parts += [(f"block {i}", [n for n in names if n.startswith(f"blocks.{i}.")]) for i in blocks]
    parts += [("the final LayerNorm", [n for n in names if n.startswith("ln_final.")]),
              ("the unembedding", [n for n in names if n.startswith("unembed.")])]  # fmt: skip
    return [(part, group) for part, group in parts if group]


def backprop_question(run: ExampleRun, model: TaskModel) -> Question | None:
    """Which part's parameters get the largest gradient (the norm of all its parameters' gradients together) for
    this example's loss on the true answer; None when every gradient is exactly 0 (nothing to compare)."""
    grads = run.grad_cache.param_grads
    parts = []  # (part, norm, number of parameters)
    for part, names in param_groups(grads):
        sq = sum(float((grads[n].astype(np.float64) ** 2).sum()) for n in names)
        parts.append((part, sq**0.5, sum(grads[n].size for n in names)))
    norms = [p[1] for p in parts]
    if max(norms) == 0:
        return None
    printed = [f"{g:#.3g}" for g in norms]  # three significant digits, trailing zeros kept
    best = _largest(printed, norms)
    others = _listed([f"{part} {printed[j]} ({k:,} parameters)" for j, (part, _, k) in enumerate(parts)
                      if j not in best])  # fmt: skip
    tops = _listed([f"{parts[j][0]} ({parts[j][2]:,} parameters)" for j in best])
    said = (f"{tops} {'gets' if len(best) == 1 else 'get'} the largest gradient, norm {printed[best[0]]}"
            f"{'' if len(best) == 1 else ' each as printed: each counts'}; {others}. These are the gradients of "
            f"the loss on the true answer, {run.answer.expression.answer}.")
    return Question("backprop", "Which part of the model gets the largest gradient for this example's loss "
                    "(the norm of all its parameters' gradients together)?",
                    tuple(p[0] for p in parts), frozenset(best), said[0].upper() + said[1:])  # fmt: skip


def question_for(stage: str, run: ExampleRun, model: TaskModel, layer: int, head: int, *, code: Code,
                 pct: Callable[[float], str]) -> Question | None:  # fmt: skip
    """The question of page `stage` (one of STAGES) on this run; None if that page has none here."""
    if stage == "tokens":
        return tokens_question(run, model, code)
    if stage == "attention":
        return attention_question(run, layer, head, code, pct)
    if stage == "residual":
        return residual_question(run, model, code)
    if stage == "output":
        return output_question(run, model, code, pct)
    if stage == "backprop":
        return backprop_question(run, model)
    return None
