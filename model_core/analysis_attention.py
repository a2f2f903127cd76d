"""Read-outs for the Attention and the Residual / LayerNorm / FFN pages, all from one run's cache.

Every function takes the arrays the model computed (a cache from `run_with_cache`,
batch axis of size 1) and the model's own parameters; none re-runs a stage with
different maths. The tests check each one against the model's own cached output.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import layers as L
from .config import ModelConfig

# ---------------------------------------------------------------- attention


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


def answer_positions(n_tokens: int, answer_pos: int, causal: bool) -> list[int]:
    """The positions whose next-token prediction is the answer.

    A bidirectional model answers at `=` only; a causal model reads its own answer
    and predicts the next token at `=` and at every answer token it has written.
    """
    return list(range(answer_pos, n_tokens)) if causal else [answer_pos]


@dataclass(frozen=True)
class Prediction:
    """The model's next-token prediction at one position."""

    position: int
    token: int  # the most likely next token
    prob: float  # its probability
    probs: np.ndarray  # [vocab] the whole distribution (float64)


def predictions_at(logits: np.ndarray, positions: list[int]) -> list[Prediction]:
    """Softmax of `logits` [pos, vocab] at each position, and its most likely token."""
    out = []
    for pos in positions:
        probs = L.softmax(logits[pos].astype(np.float64))  # [vocab]
        top = int(np.argmax(probs))
        out.append(Prediction(pos, top, float(probs[top]), probs))
    return out


# ---------------------------------------------------------------- residual stream, LayerNorm, FFN


def stage_norms(stages: list[tuple[str, np.ndarray]]) -> list[tuple[str, np.ndarray]]:
    """The L2 norm per position [pos] of each residual-stream stage [(name, [pos, d_model])]."""
    return [(name, np.linalg.norm(x, axis=-1)) for name, x in stages]


def layer_norms(cfg: ModelConfig) -> list[tuple[str, str]]:
    """Every LayerNorm of the model, in computation order: [(hook prefix, what it normalises)]."""
    out = []
    for i in range(cfg.n_layers):
        if cfg.norm == "pre":
            out += [(f"blocks.{i}.ln1", f"block {i}: the stream before attention"),
                    (f"blocks.{i}.ln2", f"block {i}: the stream before the FFN")]  # fmt: skip
        else:
            out += [(f"blocks.{i}.ln1", f"block {i}: stream + attention output (Add & Norm)"),
                    (f"blocks.{i}.ln2", f"block {i}: stream + FFN output (Add & Norm)")]  # fmt: skip
    if cfg.norm == "pre":
        out.append(("ln_final", "the stream after the last block, before the unembedding"))
    return out


def row_mean_std(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and (population) standard deviation of each row of x [pos, d]: ([pos], [pos])."""
    x = x.astype(np.float64)
    return x.mean(axis=-1), x.std(axis=-1)


def active_fraction(post: np.ndarray) -> np.ndarray:
    """Fraction of FFN neurons with activation > 0 at each position: post [pos, d_ff] -> [pos]."""
    return (post > 0).mean(axis=-1)


def top_neurons(activations: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The k most active neurons of one position [d_ff]: (indices [k], values [k]), largest first."""
    idx = np.argsort(activations, kind="stable")[::-1][:k]
    return idx, activations[idx]
