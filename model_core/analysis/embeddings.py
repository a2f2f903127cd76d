"""Token and positional embeddings: the tables, their geometry, what an example's stream starts from."""

from __future__ import annotations

import numpy as np

from ..hooks import Cache
from ..task.vocab import DIGITS, SPECIALS, Vocabulary


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
