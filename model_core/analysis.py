"""Read-outs of one example's run that the explainer draws: all computed from the cache.

Each function takes the arrays the model really computed (a cache from
`run_with_cache`) and derives the quantity a page shows; none re-runs a stage
with different maths.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import layers as L
from .hooks import Cache
from .model import Transformer
from .task_model import Answer, TaskModel


@dataclass(frozen=True)
class ExampleRun:
    """One example through one model: what every page of the explainer reads."""

    answer: Answer
    tokens: np.ndarray  # [T] the sequence the model last read: input (and its own answer so far)
    labels: list[str]  # [T] token strings
    answer_pos: int  # index of `=`
    cache: Cache  # every hooked activation for `tokens`, batch axis of size 1
    train_tokens: np.ndarray  # [T'] the sequence with the true answer (teacher forcing)
    train_targets: np.ndarray  # [T'] the true next tokens (-1: no loss)
    grad_cache: Cache  # activations and `<name>_grad` for the true answer; .loss, .param_grads


def run_example(model: TaskModel, expr) -> ExampleRun:
    """Answer `expr` (text or Expression), cache the forward pass, and the gradients of its loss."""
    answer = model.answer(expr)
    # A causal model read its own tokens up to the last one it wrote (that one is never fed
    # back); a bidirectional model read the input up to `=` and nothing it wrote.
    tokens = answer.tokens[:-1] if model.causal else answer.tokens[: answer.answer_pos + 1]
    _, cache = model.transformer.run_with_cache(tokens[None])
    batch = model.encode(model.expressions([answer.expression]))
    _, grad_cache = model.transformer.run_with_cache(batch.tokens, targets=batch.targets, grads=True)
    return ExampleRun(answer, tokens, model.vocab.decode(tokens), answer.answer_pos, cache,
                      batch.tokens[0], batch.targets[0], grad_cache)  # fmt: skip


def ablate_heads(model: TaskModel, tokens: np.ndarray, heads: list[tuple[int, int]]) -> tuple[np.ndarray, Cache]:
    """Logits [1, T, vocab] and cache with the listed (layer, head) pairs switched off.

    A head is switched off by zeroing its output z before W_O, so it writes nothing
    into the residual stream (b_O, shared by the heads, still does).
    """
    hooks = []
    for layer in sorted({layer for layer, _ in heads}):
        off = [h for lay, h in heads if lay == layer]

        def zero(z, hook, off=off):
            z = z.copy()
            z[:, :, off] = 0.0
            return z

        hooks.append((f"blocks.{layer}.attn.hook_z", zero))
    return model.transformer.run_with_cache(tokens[None], fwd_hooks=hooks)


def pca_2d(vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Project rows [n, d] onto their top two principal components.

    Returns (points [n, 2], explained variance ratio [2]). Signs are fixed so the
    largest-magnitude loading of each component is positive (stable pictures).
    """
    centred = vectors - vectors.mean(axis=0)
    _, s, vt = np.linalg.svd(centred.astype(np.float64), full_matrices=False)
    signs = np.sign(vt[np.arange(2), np.abs(vt[:2]).argmax(axis=1)])
    comps = vt[:2] * signs[:, None]
    var = s**2
    return centred @ comps.T, var[:2] / max(var.sum(), 1e-30)


def residual_stages(net: Transformer, cache: Cache) -> list[tuple[str, np.ndarray]]:
    """The residual stream at each stage, in order: [(stage name, [T, d_model])]."""
    stages = [("embed + pos", cache["blocks.0.hook_resid_pre"][0])]
    for i in range(net.cfg.n_layers):
        b = f"blocks.{i}."
        if net.cfg.norm == "pre":  # the stream is the sums
            mid, out = b + "hook_resid_mid", b + "hook_resid_post"
        else:  # post-norm: the stream that flows on is each LayerNorm's output (resid_mid|post are the sums)
            mid, out = b + "ln1.hook_out", b + "ln2.hook_out"
        stages.append((f"block {i} mid", cache[mid][0]))
        stages.append((f"block {i} out", cache[out][0]))
    return stages


def logit_lens(net: Transformer, cache: Cache, pos: int) -> list[tuple[str, np.ndarray]]:
    """What each stage of the residual stream would predict at `pos` if decoded there.

    The stream is put through what the model does after its last block (the final
    LayerNorm of a pre-norm model; a post-norm stream is already normalised) and
    the unembedding. Returns [(stage, probabilities [vocab])]; the last stage's
    probabilities are the model's real output.
    """
    p = net.params
    out = []
    for stage, resid in residual_stages(net, cache):
        x = resid[pos]
        if net.cfg.norm == "pre":
            centred, scale = L.layer_norm_scale(x)
            x = centred / scale * p["ln_final.w"] + p["ln_final.b"]
        out.append((stage, L.softmax((x @ p["unembed.W_U"] + p["unembed.b_U"]).astype(np.float64))))
    return out


def sublayer_writes(net: Transformer, cache: Cache) -> list[tuple[int, str, np.ndarray]]:
    """How much each sublayer writes into the residual stream: [(block, sublayer, norm per position [T])]."""
    out = []
    for i in range(net.cfg.n_layers):
        out.append((i, "attention", np.linalg.norm(cache[f"blocks.{i}.hook_attn_out"][0], axis=-1)))
        out.append((i, "FFN", np.linalg.norm(cache[f"blocks.{i}.hook_mlp_out"][0], axis=-1)))
    return out


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
