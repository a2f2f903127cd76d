"""The transformer's layers as forward/backward function pairs.

Each `*_forward` returns its output and keeps nothing; the model keeps what the
matching `*_backward` needs (the llm.c style: cache exactly what backward uses,
recompute what is cheap). Shapes use one vocabulary:
`[batch, pos, d_model]`, `[batch, head, q_pos, k_pos]`, `[batch, pos, head, d_head]`.
Everything is vectorised over batch and heads.
"""

from __future__ import annotations

import math

import numpy as np

LN_EPS = 1e-5
_GELU_C = math.sqrt(2.0 / math.pi)  # a Python float keeps float32 arrays float32


# ---------------------------------------------------------------- linear
def matmul(x: np.ndarray, W: np.ndarray) -> np.ndarray:
    """x [..., in] @ W [in, out] as one 2-D matrix product.

    numpy multiplies a 3-D x by W one batch row at a time; flattening the leading
    axes makes it a single BLAS call, about twice as fast at these sizes.
    """
    return (x.reshape(-1, x.shape[-1]) @ W).reshape(*x.shape[:-1], W.shape[-1])


def linear_backward(dout: np.ndarray, x: np.ndarray, W: np.ndarray):
    """y = x @ W + b.  dout, x: [..., out], [..., in]; W: [in, out].

    Returns (dx [..., in], dW [in, out], db [out]).
    """
    d2 = dout.reshape(-1, dout.shape[-1])
    x2 = x.reshape(-1, x.shape[-1])
    return (d2 @ W.T).reshape(*dout.shape[:-1], W.shape[0]), x2.T @ d2, d2.sum(axis=0)


# ---------------------------------------------------------------- layer norm
def layer_norm_scale(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Centre x [..., d] and return (centred, scale [..., 1]) with scale = sqrt(var + eps)."""
    centred = x - x.mean(axis=-1, keepdims=True)
    scale = np.sqrt((centred * centred).mean(axis=-1, keepdims=True) + LN_EPS)
    return centred, scale


def layer_norm_backward(dout: np.ndarray, xhat: np.ndarray, scale: np.ndarray, w: np.ndarray):
    """out = xhat * w + b with xhat = (x - mean) / scale.

    Returns (dx, dw, db). The dx formula is the usual one: the gradient of xhat
    projected away from the mean and from xhat itself, divided by the scale.
    """
    d = dout.shape[-1]
    dw = (dout * xhat).reshape(-1, d).sum(axis=0)
    db = dout.reshape(-1, d).sum(axis=0)
    dxhat = dout * w
    dx = (
        dxhat
        - dxhat.mean(axis=-1, keepdims=True)
        - xhat * (dxhat * xhat).mean(axis=-1, keepdims=True)
    ) / scale
    return dx, dw, db


# ---------------------------------------------------------------- activations
def activation_forward(name: str, x: np.ndarray) -> np.ndarray:
    if name == "relu":
        return np.maximum(x, 0)
    # GELU, tanh approximation (as GPT-2): 0.5 x (1 + tanh(c (x + 0.044715 x^3)))
    return 0.5 * x * (1.0 + np.tanh(_GELU_C * (x + 0.044715 * x**3)))


def activation_backward(name: str, dout: np.ndarray, x: np.ndarray) -> np.ndarray:
    """Gradient through the activation, given its *input* x."""
    if name == "relu":
        return dout * (x > 0)  # (np.where here is ten times slower)
    inner = _GELU_C * (x + 0.044715 * x**3)
    t = np.tanh(inner)
    dinner = _GELU_C * (1.0 + 3 * 0.044715 * x * x)
    return dout * (0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * dinner)


# ---------------------------------------------------------------- softmax
def softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """Numerically stable softmax; rows that are entirely -inf never occur here."""
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def softmax_backward(dp: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Gradient w.r.t. the softmax input, given dL/dp and p (last axis)."""
    return p * (dp - (dp * p).sum(axis=-1, keepdims=True))


# ---------------------------------------------------------------- positions
def sinusoidal_positions(max_len: int, d_model: int) -> np.ndarray:
    """The fixed encoding of "Attention is all you need": [max_len, d_model].

    Even dimensions carry sin(pos / 10000^(i/d)), odd ones the matching cos, so each
    pair of dimensions is a clock running at its own speed.
    """
    pos = np.arange(max_len)[:, None]
    i = np.arange(0, d_model, 2)[None, :]
    angle = pos / np.power(10000.0, i / d_model)
    pe = np.zeros((max_len, d_model))
    pe[:, 0::2] = np.sin(angle)
    pe[:, 1::2] = np.cos(angle[:, : d_model // 2])
    return pe


# ---------------------------------------------------------------- masks
def attention_mask(tokens: np.ndarray, pad_id: int, causal: bool) -> np.ndarray:
    """Which keys each query may attend to: bool [batch, 1, q_pos, k_pos].

    Padding keys are never attended to. Padding sits at the end of a sequence,
    so every query (padding queries included) keeps at least key 0.
    """
    B, T = tokens.shape
    allowed = (tokens != pad_id)[:, None, None, :]  # [batch, 1, 1, k_pos]
    if causal:
        allowed = allowed & np.tri(T, dtype=bool)[None, None]  # key <= query
    return np.broadcast_to(allowed, (B, 1, T, T))


# ---------------------------------------------------------------- loss
def cross_entropy(logits: np.ndarray, targets: np.ndarray):
    """Mean cross-entropy over the positions whose target is not -1.

    logits [batch, pos, vocab]; targets [batch, pos] (-1: no loss here).
    Returns (loss, dlogits) with dlogits the gradient of the mean loss.
    """
    keep = targets >= 0
    n = max(int(keep.sum()), 1)
    shifted = logits - logits.max(axis=-1, keepdims=True)
    logsumexp = np.log(np.exp(shifted).sum(axis=-1, keepdims=True))
    logp = shifted - logsumexp  # [batch, pos, vocab]
    safe_t = np.where(keep, targets, 0)
    picked = np.take_along_axis(logp, safe_t[..., None], axis=-1)[..., 0]
    loss = -(picked * keep).sum() / n
    dlogits = np.exp(logp)
    np.put_along_axis(dlogits, safe_t[..., None], np.take_along_axis(dlogits, safe_t[..., None], -1) - 1, -1)
    dlogits *= (keep / n)[..., None]
    return float(loss), dlogits.astype(logits.dtype, copy=False)
