"""Read-outs for the Backprop page: gradient norms, 2-D views of gradients, one SGD step.

Everything here reads the arrays `run_with_cache(..., grads=True)` returned (the
`<name>_grad` entries and `param_grads` of an `ExampleRun.grad_cache`); nothing
re-derives a gradient.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

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


@dataclass(frozen=True)
class SGDStep:
    """One plain SGD step on one example, and what it changed."""

    lr: float
    loss_before: float
    loss_after: float
    predicted_drop: float  # lr * ||g||^2: the first-order change
    before: Answer  # the model's answer before the step
    after: Answer  # and after

    @property
    def drop(self) -> float:
        """How much the loss fell (negative if it rose)."""
        return self.loss_before - self.loss_after


def sgd_step(model: TaskModel, run: ExampleRun, lr: float) -> SGDStep:
    """One SGD step on `run`'s teacher-forced example (its true answer), on a float64 copy of `model`.

    The copy holds the same weights exactly (float32 -> float64 is exact); float64 keeps the
    change visible: a confident model's loss moves by less than float32 can resolve.
    `model` is never modified.
    """
    exact = model.with_transformer(model.transformer.astype(np.float64))
    before, after, stepped = sgd_step_on_copy(exact, run.train_tokens, run.train_targets, lr)
    expr = run.answer.expression
    return SGDStep(lr, float(before), float(after), lr * grad_sq_norm(run.grad_cache.param_grads),
                   exact.answer(expr), stepped.answer(expr))  # fmt: skip


def sgd_step_on_copy(model: TaskModel, tokens: np.ndarray, targets: np.ndarray, lr: float):
    """Take one plain SGD step on this example, on a copy of the model.

    Returns (loss before, loss after, the updated copy). The original is untouched.
    """
    net = model.transformer.copy()
    loss, grads, _ = net.loss_and_grads(tokens[None], targets[None])
    for name, g in grads.items():
        net.params[name] -= lr * g
    after = net.run_with_cache(tokens[None], targets=targets[None], names_filter=[])[1].loss
    return loss, after, model.with_transformer(net)
