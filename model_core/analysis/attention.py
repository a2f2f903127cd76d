"""Attention read-outs: masks and where a query (or a whole layer of heads) attends most."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def masked_keys(scores: np.ndarray) -> np.ndarray:
    """bool [q_pos, k_pos]: the cells the model masked, i.e. where it set the score to -inf.

    `scores` is one head's `hook_attn_scores` [q_pos, k_pos]; the mask is read from it
    (padding keys, and for a causal model every key after the query).
    """
    return np.isneginf(scores)


def strongest_key(pattern_row: np.ndarray) -> tuple[int, float]:
    """The key one query attends to most, and its weight, from a pattern row [k_pos]."""
    k = int(np.argmax(pattern_row))
    return k, float(pattern_row[k])


def strongest_attention(pattern: np.ndarray, query: int) -> tuple[int, int, float]:
    """(head, key position, weight) of the largest weight in row `query` of pattern [head, q_pos, k_pos]."""
    row = np.asarray(pattern)[:, query, :]  # [head, k_pos]
    head, key = np.unravel_index(int(row.argmax()), row.shape)
    return int(head), int(key), float(row[head, key])


# ---------------------------------------------------------------- where one query's attention goes, in words
# A key with more than half of a row's weight gets more than all the other keys together, so more than half of
# the head's output z (the weighted mix of values) is that key's value: the head is focused on it. Below half,
# z is a blend in which no one value dominates, so the head "spreads its attention" and is described by its top
# few keys instead.
MAJORITY = 0.5
# Two weights closer than this (five hundredths of the row) are reported as a shared top: at two decimals they
# read as about equal, and calling one of them "the" focus would be arbitrary (Max ( 5 5 2 ): 0.50 and 0.50).
# Only a pair is a tie: three or more keys about as large as the top one make a spread row.
TIE_TOLERANCE = 0.05
# A key holding the same token as the top key is named with it when it gets at least this much: the head reads
# that token from both places (the two 5s of Max ( 5 5 2 )); a few hundredths on it would not be worth naming.
SAME_TOKEN_SHARE = 0.1
SPREAD_NAMED = 3  # a spread row names at most this many keys, largest first


@dataclass(frozen=True)
class Focus:
    """Where one query's attention goes (a pattern row [k_pos]).

    kind: "one" (one key has a majority); "same token" (keys that hold the top key's token have it together);
    "shared" (the top key and the one key tied with it, within TIE_TOLERANCE, plus any with the top key's token,
    have it together); "spread" (no such group: the SPREAD_NAMED largest weights are listed).
    `keys` and `weights`: the named keys, largest weight first; `total`: their summed weight."""

    kind: str
    keys: tuple[int, ...]
    weights: tuple[float, ...]
    total: float


def attention_focus(pattern_row: np.ndarray, tokens) -> Focus:
    """Describe one query's attention, pattern_row [k_pos] (sums to 1); tokens [k_pos]: the keys' tokens."""
    row = np.asarray(pattern_row, dtype=np.float64)
    order = [int(k) for k in np.argsort(-row, kind="stable")]  # largest first, ties by position
    top = order[0]
    tied = [k for k in order[1:] if row[top] - row[k] <= TIE_TOLERANCE]
    same = [k for k in order[1:] if tokens[k] == tokens[top] and row[k] >= SAME_TOKEN_SHARE]
    # a tie is two keys: with three or more about equal the row is spread (unless one token holds them all)
    group = [top] + [k for k in order[1:] if k in same or (len(tied) == 1 and k in tied)]
    if row[group].sum() <= MAJORITY:
        kind, group = "spread", order[:SPREAD_NAMED]
    elif len(group) == 1:
        kind = "one"
    else:
        kind = "same token" if all(tokens[k] == tokens[top] for k in group) else "shared"
    weights = tuple(float(row[k]) for k in group)
    return Focus(kind, tuple(group), weights, float(sum(weights)))


def focus_text(focus: Focus, key_name, digits: int = 2) -> str:
    """The focus as a verb phrase ("puts 0.98 of its attention on ..."); key_name(k) names key k (Markdown)."""
    def num(v: float) -> str:
        return f"{v:.{digits}f}"

    if focus.kind == "one":
        return f"puts {num(focus.weights[0])} of its attention on {key_name(focus.keys[0])}"
    named = [f"{num(v)} on {key_name(k)}" for k, v in zip(focus.keys, focus.weights, strict=True)]
    listed = named[0] if len(named) == 1 else ", ".join(named[:-1]) + " and " + named[-1]
    if focus.kind == "same token":
        return f"puts {num(focus.total)} of its attention on {len(named)} keys that hold the same token: {listed}"
    if focus.kind == "shared":
        return f"shares its attention: {listed}, {num(focus.total)} together"
    return f"spreads its attention, no key getting more than half of it: {listed}, {num(focus.total)} together"


# ---------------------------------------------------------------- what the lesson says, per model
def qkv_input_text(norm: str, layer: int, short: bool = False) -> str:
    """What x is in Q = x W_Q (and K, V) for block `layer`, from how the block is wired (model.Transformer._block).

    Pre-norm: LN1 of the block's input (`ln1.hook_out`); post-norm: the block's input itself (`hook_resid_pre`),
    its LayerNorm coming after the attention. `short`: only the first half."""
    if short:
        return "LayerNorm 1 of the block's input" if norm == "pre" else "the block's input itself"
    first = "the embeddings plus positions" if layer == 0 else f"block {layer - 1}'s output"
    if norm == "pre":
        return (f"x is LayerNorm 1 of block {layer}'s input ({first}): in this pre-norm model the attention reads "
                f"the normalised stream, `blocks.{layer}.ln1.hook_out`")  # fmt: skip
    return (f"x is block {layer}'s input itself ({first}), `blocks.{layer}.hook_resid_pre`: in this post-norm "
            "model LayerNorm 1 comes after the attention, on the stream plus the attention's output")  # fmt: skip


def scaling_text(d_head: int) -> str:
    """Why the scores are divided by sqrt(d_head)."""
    root = f"{d_head**0.5:.4g}"
    return (f"If q and k had independent entries of mean 0 and variance 1, their dot product, a sum of {d_head} "
            f"such products, would have variance {d_head} (standard deviation {root}); dividing by √{d_head} = "
            f"{root} brings its standard deviation back to 1 whatever d_head is, so the softmax does not saturate "
            "(put almost all the weight on one key) just because the vectors are long")  # fmt: skip
