"""Read-outs for the "Tokens & embeddings" and "Output & softmax" pages.

Small pure functions over the arrays the model computed (its cache and its
parameters); the pages draw what these return and compute nothing themselves.
"""

from __future__ import annotations

import numpy as np

from . import layers as L
from .hooks import Cache
from .model import Transformer
from .vocab import DIGITS, SPECIALS, Vocabulary


# ---------------------------------------------------------------- embeddings and positions
def positional_table(net: Transformer) -> np.ndarray:
    """The positional table the model adds to its token embeddings: [max_len, d_model].

    Learned positions: the parameter `pos_embed.W_pos`. Sinusoidal: the fixed table of
    `layers.sinusoidal_positions`, in the model's dtype (the rows `hook_pos_embed` holds).
    """
    cfg = net.cfg
    if cfg.positional == "learned":
        return net.params["pos_embed.W_pos"]
    return L.sinusoidal_positions(cfg.max_len, cfg.d_model).astype(net.dtype)


def embedding_summary(cache: Cache) -> dict[str, float]:
    """How big the two inputs of the residual stream are, and how exactly they add up.

    Returns the mean L2 norm of the token-embedding rows and of the positional rows
    (over the positions of this example), and max |resid_pre - (embed + pos)|.
    """
    embed = cache["hook_embed"][0]  # [pos, d_model]
    pos = cache["hook_pos_embed"][0]  # [pos, d_model]
    resid = cache["blocks.0.hook_resid_pre"][0]  # [pos, d_model]
    return {
        "embed_norm": float(np.linalg.norm(embed, axis=-1).mean()),
        "pos_norm": float(np.linalg.norm(pos, axis=-1).mean()),
        "sum_error": float(np.abs(resid - (embed + pos)).max()),
    }


def token_groups(vocab: Vocabulary) -> list[str]:
    """Each vocabulary token's kind: "digit", "symbol" (brackets, `,`, `=`, <pad>, <eos>) or "operation"."""
    return ["digit" if t in DIGITS else "symbol" if t in SPECIALS else "operation" for t in vocab.tokens]


def rank_correlation(x: np.ndarray, y: np.ndarray) -> float:
    """Spearman's rank correlation of x [n] and y [n]: Pearson's correlation of their ranks.

    Ties get their average rank. 1: y rises with x in the same order; -1: reversed order;
    near 0: no monotone relation. NaN when either has no spread.
    """
    rx, ry = _ranks(np.asarray(x, dtype=np.float64)), _ranks(np.asarray(y, dtype=np.float64))
    rx, ry = rx - rx.mean(), ry - ry.mean()
    denom = np.sqrt((rx * rx).sum() * (ry * ry).sum())
    return float((rx * ry).sum() / denom) if denom > 0 else float("nan")


def _ranks(a: np.ndarray) -> np.ndarray:
    """1-based ranks of a [n]; tied values share the mean of their ranks."""
    order = np.argsort(a, kind="stable")
    ranks = np.empty(len(a))
    ranks[order] = np.arange(1, len(a) + 1)
    _, inverse, counts = np.unique(a, return_inverse=True, return_counts=True)
    sums = np.bincount(inverse, weights=ranks)
    return sums[inverse] / counts[inverse]


def digit_order(points: np.ndarray, vocab: Vocabulary) -> tuple[float, float]:
    """Do the digits order themselves in the embedding plane?

    `points` [vocab, 2] are the PCA coordinates of every row of `embed.W_E`. Returns the
    rank correlation of digit value (0-9) with the digits' position along PC 1 and along PC 2.
    """
    rows = [vocab.id(d) for d in DIGITS]
    values = np.arange(len(DIGITS))
    return rank_correlation(values, points[rows, 0]), rank_correlation(values, points[rows, 1])


# ---------------------------------------------------------------- output
def softmax_with_temperature(logits: np.ndarray, temperature: float) -> np.ndarray:
    """softmax(logits / T) over the last axis, in float64.

    Display maths only: the model itself always uses T = 1. T < 1 sharpens the
    distribution towards the top logit, T > 1 flattens it towards uniform.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be positive, got {temperature}")
    return L.softmax(np.asarray(logits, dtype=np.float64) / temperature)


def token_losses(logits: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Cross-entropy at each position: -log softmax(logits)[target]; NaN where target is -1.

    logits [pos, vocab]; targets [pos]. Computed in the logits' dtype with the same
    shifted log-sum-exp as the model's loss (`layers.cross_entropy`), so the mean over
    the positions with a target is the loss `run_with_cache(..., targets=...)` reports.
    """
    z = np.asarray(logits)
    shifted = z - z.max(axis=-1, keepdims=True)
    logp = shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))  # [pos, vocab]
    targets = np.asarray(targets)
    keep = targets >= 0
    picked = np.take_along_axis(logp, np.where(keep, targets, 0)[:, None], axis=-1)[:, 0]
    return np.where(keep, -picked.astype(np.float64), np.nan)


def lens_candidates(probs: np.ndarray, k: int, include: int | None = None) -> np.ndarray:
    """Token ids worth a column in the logit-lens heatmap, most probable at the output first.

    probs [stage, vocab]. Every stage's top token, the output's top `k`, and `include`
    (the true answer) when given; ordered by the last stage's probability.
    """
    wanted = set(probs.argmax(axis=-1).tolist()) | set(np.argsort(-probs[-1], kind="stable")[:k].tolist())
    if include is not None:
        wanted.add(int(include))
    ids = np.array(sorted(wanted))
    return ids[np.argsort(-probs[-1, ids], kind="stable")]


def first_top_stage(probs: np.ndarray, token: int) -> int | None:
    """Index of the first stage whose most probable token is `token` (probs [stage, vocab]); None if none."""
    hits = np.flatnonzero(probs.argmax(axis=-1) == token)
    return int(hits[0]) if hits.size else None


def same_context(tokens: np.ndarray, other: np.ndarray, pos: int, causal: bool) -> bool:
    """Did position `pos` read the same tokens in both sequences?

    A causal position reads tokens 0..pos; a bidirectional one reads the whole sequence.
    """
    if causal:
        return len(tokens) > pos and len(other) > pos and np.array_equal(tokens[: pos + 1], other[: pos + 1])
    return np.array_equal(tokens, other)
