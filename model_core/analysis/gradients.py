"""Read-outs for the Backprop page: gradient norms, 2-D views of gradients, SGD steps, and what they say.

Everything here reads the arrays `run_with_cache(..., grads=True)` returned (the
`<name>_grad` entries and `param_grads` of an `ExampleRun.grad_cache`); nothing
re-derives a gradient. The `*_text` functions write the page's sentences from those numbers
(Markdown; names of tokens and answers go through the caller's `code`, e.g. `explainer.format.code`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from .. import layers as L
from ..hooks import Cache
from ..model import Transformer
from ..params import param_shapes
from ..task_model import Answer, TaskModel
from .run import ExampleRun

_HEAD_ACTIVATIONS = ("attn.hook_q", "attn.hook_k", "attn.hook_v", "attn.hook_z")  # [batch, pos, head, d_head]
_HEAD_PATTERNS = ("attn.hook_attn_scores", "attn.hook_pattern")  # [batch, head, q_pos, k_pos]


def activation_grad_norms(net: Transformer, cache: Cache) -> list[tuple[str, float]]:
    """[(hook name, ||d loss / d activation||)] in the order the forward pass reaches the hooks."""
    return [(name, float(np.linalg.norm(cache[name + "_grad"]))) for name in net.hook_names()]


def param_grad_norms(net: Transformer, param_grads: dict[str, np.ndarray]) -> list[tuple[str, float]]:
    """[(parameter, ||d loss / d parameter||)] grouped by layer: embeddings, block 0, 1, ..., unembedding."""
    return [(name, float(np.linalg.norm(param_grads[name]))) for name in param_shapes(net.cfg)]


def grad_sq_norm(param_grads: dict[str, np.ndarray]) -> float:
    """||g||^2 over every parameter: one SGD step of size lr lowers the loss by about lr * ||g||^2."""
    return float(sum((g.astype(np.float64) ** 2).sum() for g in param_grads.values()))


def target_probs(cache: Cache, targets: np.ndarray) -> list[tuple[int, int, float]]:
    """[(position, true token id, its probability)] at every scored position of a teacher-forced run.

    The probabilities are the softmax of the cached logits; the loss is minus the mean of their logs.
    `targets` [T] (-1: no loss) belong to the single sequence in `cache`.
    """
    logp = L.log_softmax(cache["hook_logits"][0].astype(np.float64))  # [T, vocab]
    return [(int(t), int(targets[t]), float(np.exp(logp[t, targets[t]]))) for t in np.flatnonzero(targets >= 0)]


@dataclass(frozen=True)
class View2D:
    """A 2-D slice of an activation or parameter (gradient), with what its axes are."""

    values: np.ndarray  # [rows, cols]
    row_labels: list[str]
    col_labels: list[str] | None  # None: column indices
    y_title: str
    x_title: str
    sliced: str  # what was picked to get 2-D, e.g. "head 2"; "" when nothing was


def view_2d(name: str, array: np.ndarray, head: int, positions: Sequence[str], vocab: Sequence[str]) -> View2D:
    """A 2-D view of the activation or parameter `name` (or its gradient, same shape) for a heatmap.

    Activations carry a batch axis of 1, which is dropped: [1, T, d] -> [T, d];
    q/k/v/z [1, T, head, d_head] and scores/pattern [1, head, q, k] -> that `head`'s [T, d_head] / [q, k].
    Parameters: W_Q/K/V [head, d_model, d_head], W_O [head, d_head, d_model] and b_Q/K/V [head, d_head]
    -> that head's slice; matrices [in, out] as they are; vectors [n] -> one row [1, n].
    `positions` label the example's positions, `vocab` the token ids.
    """
    array = np.asarray(array)
    if name.startswith("hook_") or ".hook_" in name:
        x = array[0]  # drop the batch axis
        pos = list(positions)
        if name.endswith(_HEAD_ACTIVATIONS):  # [pos, head, d_head]
            return View2D(x[:, head, :], pos, None, "position", "head dimension", f"head {head}")
        if name.endswith("attn.hook_result"):  # [pos, head, d_model]
            return View2D(x[:, head, :], pos, None, "position", "model dimension", f"head {head}")
        if name.endswith(_HEAD_PATTERNS):  # [head, q_pos, k_pos]
            return View2D(x[head], pos, pos, "query position", "key position", f"head {head}")
        if name == "hook_logits":
            return View2D(x, pos, list(vocab), "position", "token", "")
        if name.endswith("hook_scale"):  # [pos, 1]
            return View2D(x, pos, ["scale"], "position", "", "")
        if ".mlp." in name:
            return View2D(x, pos, None, "position", "neuron", "")
        return View2D(x, pos, None, "position", "dimension", "")
    leaf = name.rsplit(".", 1)[1]
    x = array
    if leaf in ("W_Q", "W_K", "W_V"):  # [head, d_model, d_head]
        return View2D(x[head], _indices(x.shape[1]), None, "model dimension", "head dimension", f"head {head}")
    if leaf == "W_O":  # [head, d_head, d_model]
        return View2D(x[head], _indices(x.shape[1]), None, "head dimension", "model dimension", f"head {head}")
    if leaf in ("b_Q", "b_K", "b_V"):  # [head, d_head]
        return View2D(x[head][None], [leaf], None, "", "head dimension", f"head {head}")
    if leaf == "W_E":  # [vocab, d_model]
        return View2D(x, list(vocab), None, "token", "model dimension", "")
    if leaf == "W_pos":  # [max_len, d_model]
        return View2D(x, _indices(x.shape[0]), None, "position", "model dimension", "")
    if leaf == "W_U":  # [d_model, vocab]
        return View2D(x, _indices(x.shape[0]), list(vocab), "model dimension", "token", "")
    if leaf == "W_in":  # [d_model, d_ff]
        return View2D(x, _indices(x.shape[0]), None, "model dimension", "neuron", "")
    if leaf == "W_out":  # [d_ff, d_model]
        return View2D(x, _indices(x.shape[0]), None, "neuron", "model dimension", "")
    if x.ndim == 1:  # biases and LayerNorm gains: one row
        cols = "token" if leaf == "b_U" else "neuron" if leaf == "b_in" else "model dimension"
        return View2D(x[None], [leaf], list(vocab) if leaf == "b_U" else None, "", cols, "")
    raise ValueError(f"no 2-D view for {name!r} of shape {x.shape}")


def _indices(n: int) -> list[str]:
    return [str(i) for i in range(n)]


# ---------------------------------------------------------------- what the loss conditions on
@dataclass(frozen=True)
class LossFormula:
    latex: str  # the loss as the model computes it
    reads: str  # one sentence: what each scored position sees


def loss_formula(causal: bool) -> LossFormula:
    """The cross-entropy as `run.train_tokens` / `train_targets` feed it (task.encode, model.Transformer._forward).

    Causal: x is the input and the true answer minus its last token; position t is scored on the next true token
    y_t and, under the causal mask, sees x_0 .. x_t only. Bidirectional: x is the input up to `=`, every position
    sees all of it (no mask), and only `=` is scored, on the true answer.
    """
    if causal:
        return LossFormula(
            r"\mathcal{L} = -\frac{1}{|P|}\sum_{t \in P} \log p_\theta(y_t \mid x_{\le t})",
            "$x$ is the input followed by the true answer (teacher forcing), $y_t$ the true token after position "
            "$t$ (the next answer digit, or `<eos>` after the last); the causal mask lets position $t$ see "
            "$x_0, \\dots, x_t$ only.",
        )
    return LossFormula(
        r"\mathcal{L} = -\frac{1}{|P|}\sum_{t \in P} \log p_\theta(y_t \mid x)",
        "$x$ is the whole input up to `=`, read at once: with no causal mask every position sees every other, so "
        "the prediction at `=` depends on all of $x$; $y_t$ is the true answer.",
    )


# ---------------------------------------------------------------- what the gradients say
def logit_grad_text(dlogits: np.ndarray, logits: np.ndarray, true_id: int, position: int,
                    code: Callable[[int], str]) -> str:  # fmt: skip
    """What d loss / d logits at one scored position, `dlogits` [vocab] (the model's float32 array), shows;
    `logits` [vocab] are the logits there.

    The exact gradient is (softmax - onehot(true)) / |P|: negative for the true token, p_j / |P| >= 0 for every
    other, largest on the model's own top choice among them. In float32 a probability can round to 1 (the true
    token's gradient is then 0) or to 0 (another token's). `code(id)` names a token (Markdown)."""
    g = np.asarray(dlogits, dtype=np.float64)
    gt = g[true_id]
    others = np.delete(g, true_id)
    text = f"d loss / d logit of the true token {code(true_id)} at position {position} is {gt:.3e}"
    if gt < 0:
        text += ", negative (raising it lowers the loss)"
    elif gt == 0:
        text += " (in float32 the model gives it probability 1 here: nothing is left to learn at this position)"
    n_pos, n_zero = int((others > 0).sum()), int((others == 0).sum())
    if n_pos == len(others):
        text += "; every other token's is positive (lowering it lowers the loss)."
    else:
        text += (f"; {n_pos} other tokens' are positive and {n_zero} exactly 0 (their probability is 0 in "
                 "float32).")  # fmt: skip
    top = int(np.argmax(logits))
    if top != true_id:  # then the largest p_j / |P|, the largest gradient, is on the model's own choice
        text += (f" The largest is on {code(top)} ({g[top]:.3e}), the model's own top choice here instead of the "
                 "true token.")  # fmt: skip
    return text


_STREAM = re.compile(r"blocks\.\d+\.hook_resid_(pre|mid|post)")


def stream_grad_norms(net: Transformer, cache: Cache) -> list[tuple[str, float]]:
    """[(hook, ||d loss / d stream||)] at the residual stream down the depth: each block's resid_pre, resid_mid and
    resid_post, in forward order. Every one is a [1, T, d_model] array of the stream itself, so their norms compare;
    other activations (an attention pattern [1, head, T, T], a LayerNorm scale [1, T, 1]) are other quantities."""
    names = [name for name in net.hook_names() if _STREAM.fullmatch(name)]
    return [(name, float(np.linalg.norm(cache[name + "_grad"]))) for name in names]


def stream_text(norms: list[tuple[str, float]]) -> str:
    """The largest and smallest gradient along the residual stream (`stream_grad_norms`), and its change from the
    last block's output back to the first block's input."""
    big, small = max(norms, key=lambda n: n[1]), min(norms, key=lambda n: n[1])
    (first, g_in), (last, g_out) = norms[0], norms[-1]
    change = f" ({g_in / g_out:.3g}×)" if g_out > 0 else ""
    return (f"Compared like with like, along the residual stream (each block's `hook_resid_pre`, `_mid` and "
            f"`_post`, all [1, T, d_model]; the other activations are other kinds of arrays, whose norms do not "
            f"compare): the gradient is largest at `{big[0]}` (norm {big[1]:.3e}) and smallest at `{small[0]}` "
            f"({small[1]:.3e}); from the last block's output `{last}` back to the first block's input `{first}` it "
            f"goes from {g_out:.3e} to {g_in:.3e}{change}.")  # fmt: skip


def param_text(norms: list[tuple[str, float]]) -> str:
    """The parameter whose gradient is largest, as its share of ||g||^2 (its part of an SGD step's first-order fall
    lr * ||g||^2, which is why parameters of different shapes compare here), the smallest, and the key biases.

    A key bias adds q . b_K to every score of a query, the same for every key, which softmax ignores: its exact
    gradient is 0, so whatever the float32 backward pass gives it is rounding."""
    total = sum(v**2 for _, v in norms)
    big, small = max(norms, key=lambda n: n[1]), min(norms, key=lambda n: n[1])
    share = f", {100 * big[1] ** 2 / total:.3g}% of ‖g‖²" if total > 0 else ""
    text = (f"The parameter with the largest gradient is `{big[0]}` ({big[1]:.3e}{share}: the largest part of an SGD "
            "step's first-order fall η‖g‖²).")  # fmt: skip
    keys = [(n, v) for n, v in norms if n.endswith("attn.b_K")]
    rest = [v for n, v in norms if not n.endswith("attn.b_K")]
    if keys:
        worst = max(v for _, v in keys)
        got = f"the {worst:.1e} they get here is float32 rounding" if worst > 0 else "here they get exactly 0"
        text += (" A key bias adds the same number to every score of a query, which softmax ignores, so its exact "
                 f"gradient is 0: {got}")  # fmt: skip
        text += ", the smallest of all the parameters." if rest and worst < min(rest) else "."
    if not small[0].endswith("attn.b_K") or not keys:
        text += f" The smallest is `{small[0]}` ({small[1]:.1e})."
    return text


# ---------------------------------------------------------------- SGD steps
@dataclass(frozen=True)
class SGDStep:
    """One plain SGD step on one example, and what it changed."""

    lr: float
    loss_before: float
    loss_after: float
    predicted_drop: float  # lr * ||g||^2, g the gradient where this step started: the first-order fall
    before: Answer  # the model's answer before the step
    after: Answer  # and after
    index: int = 1  # how many steps from the model's own weights this one ends at
    params: dict[str, np.ndarray] | None = field(default=None, repr=False, compare=False)  # float64, after it

    @property
    def drop(self) -> float:
        """How much the loss fell (negative if it rose)."""
        return self.loss_before - self.loss_after


def sgd_step(model: TaskModel, run: ExampleRun, lr: float, start: dict[str, np.ndarray] | None = None,
             index: int = 1) -> SGDStep:  # fmt: skip
    """One SGD step on `run`'s teacher-forced example (its true answer), on a float64 copy of `model`.

    It starts from `start` (float64 parameters, e.g. the last step's `.params`) or, without it, from the model's
    own weights, copied exactly (float32 -> float64 is exact); `index` numbers the step. float64 keeps the
    change visible: a confident model's loss moves by less than float32 can resolve. Neither `model` nor
    `start` is modified.
    """
    net = model.transformer.astype(np.float64) if start is None else Transformer(model.transformer.cfg, start)
    exact = model.with_transformer(net)
    before, after, stepped, g2 = _step(exact, run.train_tokens, run.train_targets, lr)
    expr = run.answer.expression
    return SGDStep(lr, float(before), float(after), lr * g2, exact.answer(expr), stepped.answer(expr), index,
                   stepped.transformer.params)  # fmt: skip


def float64_loss(model: TaskModel, run: ExampleRun) -> float:
    """The loss of `run`'s teacher-forced example with the model's own weights, computed in float64."""
    net = model.transformer.astype(np.float64)
    return float(net.run_with_cache(run.train_tokens[None], targets=run.train_targets[None], names_filter=[])[1].loss)


def sgd_step_on_copy(model: TaskModel, tokens: np.ndarray, targets: np.ndarray, lr: float):
    """Take one plain SGD step on this example, on a copy of the model.

    Returns (loss before, loss after, the updated copy). The original is untouched.
    """
    return _step(model, tokens, targets, lr)[:3]


def _step(model: TaskModel, tokens: np.ndarray, targets: np.ndarray, lr: float):
    """`sgd_step_on_copy`'s (loss before, loss after, updated copy), and ||g||^2 of the gradient it stepped along."""
    net = model.transformer.copy()
    loss, grads, _ = net.loss_and_grads(tokens[None], targets[None])
    for name, g in grads.items():
        net.params[name] -= lr * g
    after = net.run_with_cache(tokens[None], targets=targets[None], names_filter=[])[1].loss
    return loss, after, model.with_transformer(net), grad_sq_norm(grads)


# How a step's real fall compares with its first-order prediction lr * ||g||^2. Along the step the loss is, to
# second order, L - lr * a + lr^2 * b / 2 (a = ||g||^2, b = g . H g), so fall / prediction = 1 - lr / (2 lr*),
# lr* = a / b being the lowest point along that line.
OVERSHOOT_RATIO = 0.5  # below half the prediction: lr > lr*, the step went past the lowest point along its line
FIRST_ORDER_TOLERANCE = 0.1  # within 10%: the lr^2 term is under a tenth of the lr term, first order holds
# A fall under 1% of the loss changes its bar on the page's loss chart by under 1% of the bar's height (about a
# pixel), and a fall under a tenth of it leaves most of the loss for a larger step to remove.
INVISIBLE = 0.01
SMALL = 0.1
NEARLY_ALL = 0.99  # a step that removed 99% of the loss did its job, however far off the prediction was


def step_text(step: SGDStep, code: Callable[[str], str], lr_max: float | None = None) -> str:
    """What one SGD step did, from its numbers: the fall (or rise) against its first-order prediction, whether it
    overshot, whether it was too small to see, and whether the model's answer changed. `code(text)` writes an
    answer as Markdown; `lr_max`, the largest lr the page offers, stops it suggesting a larger one there."""
    before, after, drop, pred = step.loss_before, step.loss_after, step.drop, step.predicted_drop
    text = f"Step {step.index} (η = {step.lr:g}): the loss went from {before:.4e} to {after:.4e}"
    rel = drop / before if before > 0 else 0.0
    if drop > 0:
        text += f", a fall of {drop:.3e} ({_pct(rel)} of it)."
    elif drop < 0:
        text += f", a rise of {-drop:.3e}: the step made it worse."
    else:
        text += ": no change at all."
    ratio = drop / pred if pred > 0 else None
    if ratio is None:
        text += " The gradient is exactly 0 here, so the step moves nothing."
    elif pred > before:
        text += (f" To first order it should fall by η‖g‖² = {pred:.3e}, {pred / before:.3g} times the loss itself, "
                 "which no step can remove (the loss is never negative): the step overshoots the range where the "
                 "first-order prediction holds")  # fmt: skip
        if drop < 0:
            text += ", so far that the loss rose."
        elif rel >= NEARLY_ALL:
            text += ", though it still removed nearly all of the loss."
        else:
            text += f"; it fell by only {_pct(ratio)} of the prediction."
    elif ratio < OVERSHOOT_RATIO:
        got = "it rose instead" if drop < 0 else f"it fell by only {_pct(ratio)} of that"
        text += (f" To first order it should fall by η‖g‖² = {pred:.3e}; {got}: the step overshoots (to second "
                 "order, a fall under half the prediction means it went past the lowest point along its "
                 "direction).")  # fmt: skip
    elif abs(ratio - 1) <= FIRST_ORDER_TOLERANCE:
        text += f" That matches the first-order prediction η‖g‖² = {pred:.3e} ({_pct(ratio)} of it)."
    elif ratio < 1:
        text += (f" That is {_pct(ratio)} of the first-order prediction η‖g‖² = {pred:.3e}: the loss curves upward "
                 "along the step, but the step has not gone past the lowest point along its direction (to second "
                 "order that would leave under half the prediction).")  # fmt: skip
    else:
        text += (f" That is more than the first-order prediction η‖g‖² = {pred:.3e} ({_pct(ratio)} of it): along "
                 "this step the loss curves downward.")  # fmt: skip
    if drop < 0 and pred > 0:
        text += " A small enough η always lowers it: to first order the fall is η‖g‖², never negative."
    elif ratio is not None and abs(ratio - 1) <= FIRST_ORDER_TOLERANCE and pred <= before and rel < SMALL:
        seen = ("the step is invisibly small (under 1% of the loss, it does not show on the chart)"
                if rel < INVISIBLE else "the step removed under a tenth of the loss")  # fmt: skip
        text += (f" The gradient is small: with ‖g‖² = {pred / step.lr:.3e}, η‖g‖² is only {_pct(pred / before)} "
                 f"of the loss, so {seen}. First order held, so a larger η should lower the loss about in "
                 "proportion: ")  # fmt: skip
        text += ("η is already the largest this page offers, so take further steps." if lr_max is not None
                 and step.lr >= lr_max else "try one, or take further steps.")  # fmt: skip
    return text + " " + answer_change_text(step.before, step.after, code)


def answer_change_text(before: Answer, after: Answer, code: Callable[[str], str]) -> str:
    """Whether one step changed the model's (greedy) answer, and whether it is right before and after."""
    true = code(str(before.expression.answer))

    def said(a: Answer) -> str:
        if a.value is None:
            return f"{code(' '.join(a.answer_tokens))} (not a number)"
        return f"{code(str(a.value))} ({'right' if a.correct else 'wrong'})"

    if before.answer_tokens != after.answer_tokens:
        text = f"The model's answer changed: before the step it wrote {said(before)}, after it {said(after)}"
        return text + ("." if after.correct else f"; the true answer is {true}.")
    if before.correct:
        return f"The model's answer stays {code(str(before.value))}, the right one."
    return f"The model's answer stays {said(before)}; the true answer is {true}."


def precision_text(loss32: float, loss64: float, change: float | None = None) -> str:
    """Why the steps run in float64: the float32 loss of the model's own weights (`loss32`, as the model runs) against
    the same weights' float64 loss, and whether a step's `change` of the loss is smaller than that error."""
    text = "The steps run in float64 on a copy of the model; the model itself never changes."
    err = abs(loss32 - loss64)
    if err == 0:
        return text
    text += (f" In float32, as the model runs, this example's loss is {loss32:.4e} against {loss64:.4e} in "
             f"float64, an error of {err:.1e}")  # fmt: skip
    if change is not None and abs(change) < err:
        return text + f": the last step's change, {abs(change):.1e}, is smaller, so float32 could not show it."
    return text + "."


def _pct(x: float) -> str:
    """A fraction as a percentage with three significant digits, 0.0356 -> "3.56%", but never "100%" unless it is
    exactly 1: near 1, decimals until the distance shows with two significant digits (0.9999987 -> "99.99987%")."""
    text = f"{100 * x:.3g}"
    if float(text) == 100 and x != 1:
        distance = abs(1 - x) * 100
        text = f"{100 * x:.{max(1, math.floor(-math.log10(distance)) + 2)}f}"
    return text + "%"
