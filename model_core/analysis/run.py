"""One example through one model: the run every page reads, and heads switched off.

Every array here is one the model computed (a cache from `run_with_cache`); none is a re-computation.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..hooks import Cache
from ..task_model import Answer, TaskModel


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
