"""The output: predictions at the answer positions, softmax with temperature, token losses, the logit lens."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import layers as L
from ..hooks import Cache
from ..model import Transformer
from .residual import residual_stages


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
    logp = L.log_softmax(np.asarray(logits))  # [pos, vocab]
    targets = np.asarray(targets)
    keep = targets >= 0
    picked = np.take_along_axis(logp, np.where(keep, targets, 0)[:, None], axis=-1)[:, 0]
    return np.where(keep, -picked.astype(np.float64), np.nan)


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
