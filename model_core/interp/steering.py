"""Attention steering: force heads, at one query position, to attend fully to a chosen key; see the answer follow.

The direct test of a "select and copy" head: if a head reads the answer's slot and copies it, steering it
to slot s makes the model answer slot s's value.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..task_model import TaskModel
from .ablation import parse_component


def steering_hooks(model: TaskModel, heads: Sequence[str], query: int | np.ndarray, key: int | np.ndarray) -> list:
    """Hooks that set `hook_pattern` of each head (`L1H2`) at row `query` to put weight 1 on `key`.

    `query` and `key` are positions, one for all examples or one per example ([n] arrays).
    """
    net = model.transformer
    comps = [parse_component(net, h) for h in heads]
    if any(c.kind != "head" for c in comps):
        raise ValueError("Only heads can be steered: name them like L1H2.")
    by_layer: dict[int, list[int]] = {}
    for c in comps:
        by_layer.setdefault(c.layer, []).append(c.index)

    def make(layer_heads: list[int]):
        def hook(pattern, _hook):
            pattern = pattern.copy()  # [batch, head, q_pos, k_pos]
            n = len(pattern)
            rows = np.arange(n)
            q = np.broadcast_to(np.asarray(query), (n,))
            k = np.broadcast_to(np.asarray(key), (n,))
            for h in layer_heads:
                pattern[rows, h, q, :] = 0.0
                pattern[rows, h, q, k] = 1.0
            return pattern

        return hook

    return [(f"blocks.{layer}.attn.hook_pattern", make(hs)) for layer, hs in by_layer.items()]


def steer(model: TaskModel, tokens: np.ndarray, query, heads: Sequence[str], key) -> np.ndarray:
    """The model's top token at `query` [n] with `heads` steered to `key` there: [n] token ids."""
    return steered_logits(model, tokens, query, heads, key).argmax(-1)


def steered_logits(model: TaskModel, tokens: np.ndarray, query, heads: Sequence[str], key) -> np.ndarray:
    """The logits at `query` [n] with `heads` steered to `key` there: [n, vocab]."""
    tokens = np.asarray(tokens)
    n = len(tokens)
    q = np.broadcast_to(np.asarray(query), (n,))
    logits = model.transformer.run_with_hooks(tokens, steering_hooks(model, heads, q, key))
    return logits[np.arange(n), q]


def follow_rate(model: TaskModel, exprs, heads: Sequence[str], slot: int) -> tuple[float, int]:
    """Over an ExpressionSet: the share of inputs whose first answer token, with `heads` steered at `=` onto
    slot `slot`'s first digit (1-based slot; an inner expression's closing `)`), becomes that digit (of the inner
    answer). Returns (share, inputs used).

    Inputs whose answer already starts with that digit are left out: following could not be told apart
    from ignoring the steer."""
    from .input_space import _layouts  # the slot positions of every layout, one `roles` call each

    exprs = exprs.subset(exprs.lengths >= slot)  # the lists that have that slot
    enc = model.encode(exprs)
    _, _, last = _layouts(model, enc.tokens)  # [n, n_args] each slot's last digit
    value = exprs.values[:, slot - 1]  # an inner expression's answer, where the slot holds one
    width = np.char.str_len(value.astype(str))
    key = last[:, slot - 1] - (width - 1)  # its first digit
    if exprs.inner_ops is not None:  # an inner expression: its closing `)` (interp.inputs.slot_key)
        key = np.where(exprs.inner_ops[:, slot - 1] >= 0, last[:, slot - 1], key)
    digit_ids = np.array([model.vocab.id(str(v)[0]) for v in value])
    keep = enc.targets[np.arange(len(exprs)), enc.answer_pos] != digit_ids
    if not keep.any():
        return float("nan"), 0
    top = steer(model, enc.tokens[keep], enc.answer_pos[keep], heads, key[keep])
    return float((top == digit_ids[keep]).mean()), int(keep.sum())
