"""Attention read-outs: masks and where a query (or a whole layer of heads) attends most."""

from __future__ import annotations

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
