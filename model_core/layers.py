"""The transformer's layers as forward/backward function pairs.

Each `*_forward` returns its output and keeps nothing; the model keeps what the
matching `*_backward` needs (the llm.c style: cache exactly what backward uses,
recompute what is cheap). Shapes use one vocabulary:
`[batch, pos, d_model]`, `[batch, head, q_pos, k_pos]`, `[batch, pos, head, d_head]`.
Everything is vectorised over batch and heads.

Speed notes that apply throughout (benchmarks/step_time.py shows their effect):
- a NumPy call has a fixed cost whatever its size, so fewer, larger calls win;
- a sum or mean over a short last axis (64 features, 9 keys) is slower than the same
  sum as a matrix-vector product with a vector of ones (one BLAS call);
- `np.maximum(x, 0)` and `np.where` on float32 are slower than `x * (x > 0)`.
"""

from __future__ import annotations

import math

import numpy as np

LN_EPS = 1e-5
_GELU_C = math.sqrt(2.0 / math.pi)  # a Python float keeps float32 arrays float32


# ---------------------------------------------------------------- reductions
def row_mean(x: np.ndarray) -> np.ndarray:
    """Mean over the last axis, kept: [..., d] -> [..., 1]. A matrix-vector product (see above)."""
    d = x.shape[-1]
    return (x.reshape(-1, d) @ np.full(d, 1.0 / d, x.dtype)).reshape(*x.shape[:-1], 1)


def row_sum(x: np.ndarray) -> np.ndarray:
    """Sum over the last axis, kept: [..., d] -> [..., 1]. A matrix-vector product (see above)."""
    d = x.shape[-1]
    return (x.reshape(-1, d) @ np.ones(d, x.dtype)).reshape(*x.shape[:-1], 1)


def row_max(x: np.ndarray) -> np.ndarray:
    """Max over the last axis, kept: [..., d] -> [..., 1].

    numpy takes the max of a short last axis one row at a time; the max over the
    *first* axis of a contiguous [d, rows] copy runs as whole-vector operations,
    so copy plus max is faster for the few keys of an attention row.
    """
    d = x.shape[-1]
    return x.reshape(-1, d).T.copy().max(axis=0).reshape(*x.shape[:-1], 1)


def col_sum(x2: np.ndarray) -> np.ndarray:
    """Sum over the rows of a 2-D [n, d] array: [d]. A vector-matrix product (see above)."""
    return np.ones(x2.shape[0], x2.dtype) @ x2


# ---------------------------------------------------------------- linear
def matmul(x: np.ndarray, W: np.ndarray) -> np.ndarray:
    """x [..., in] @ W [in, out] as one 2-D matrix product.

    numpy multiplies a 3-D x by W one batch row at a time; flattening the leading
    axes makes it a single BLAS call, about twice as fast at these sizes.
    """
    return (x.reshape(-1, x.shape[-1]) @ W).reshape(*x.shape[:-1], W.shape[-1])


def linear(x: np.ndarray, W: np.ndarray, b: np.ndarray) -> np.ndarray:
    """x [..., in] @ W [in, out] + b [out], the bias added in place (no second temporary)."""
    y = matmul(x, W)
    y += b
    return y


def linear_backward(dout: np.ndarray, x: np.ndarray, W: np.ndarray):
    """y = x @ W + b.  dout, x: [..., out], [..., in]; W: [in, out].

    Returns (dx [..., in], dW [in, out], db [out]).
    """
    d2 = dout.reshape(-1, dout.shape[-1])
    x2 = x.reshape(-1, x.shape[-1])
    return (d2 @ W.T).reshape(*dout.shape[:-1], W.shape[0]), x2.T @ d2, col_sum(d2)


# ---------------------------------------------------------------- layer norm
def layer_norm_scale(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Centre x [..., d] and return (centred, scale [..., 1]) with scale = sqrt(var + eps)."""
    centred = x - row_mean(x)
    var = row_mean(centred * centred)
    var += LN_EPS
    return centred, np.sqrt(var, out=var)


def layer_norm_backward(dout: np.ndarray, xhat: np.ndarray, scale: np.ndarray, w: np.ndarray):
    """out = xhat * w + b with xhat = (x - mean) / scale.

    Returns (dx, dw, db). The dx formula is the usual one: the gradient of xhat
    (dxhat = dout * w) projected away from the mean and from xhat itself, divided
    by the scale. Both row means come from one product dout * xhat and two
    matrix-vector products with w / d: mean(dxhat) = dout @ (w / d) and
    mean(dxhat * xhat) = (dout * xhat) @ (w / d).
    """
    d = dout.shape[-1]
    d2, x2 = dout.reshape(-1, d), xhat.reshape(-1, d)  # [rows, d]
    dout_xhat = d2 * x2
    dw, db = col_sum(dout_xhat), col_sum(d2)
    w_mean = w / d
    dx = d2 * w
    dx -= (d2 @ w_mean)[:, None]  # mean(dxhat)
    dx -= x2 * (dout_xhat @ w_mean)[:, None]  # xhat * mean(dxhat * xhat)
    dx /= scale.reshape(-1, 1)
    return dx.reshape(dout.shape), dw, db


# ---------------------------------------------------------------- activations
def activation_forward(name: str, x: np.ndarray) -> np.ndarray:
    if name == "relu":
        return x * (x > 0)  # (np.maximum(x, 0) is twice as slow)
    return gelu_parts(x)[0]


def gelu_parts(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """GELU, tanh approximation (as GPT-2): 0.5 x (1 + tanh(c (x + 0.044715 x^3))), and that tanh, which the
    backward pass takes again (training keeps it rather than compute it twice)."""
    t = np.tanh(_gelu_inner(x))
    return 0.5 * x * (1.0 + t), t


def _gelu_inner(x: np.ndarray) -> np.ndarray:
    """c (x + 0.044715 x^3); x * x * x, because float32 `x**3` goes through the much slower pow()."""
    return _GELU_C * (x + 0.044715 * (x * x * x))


def activation_backward(name: str, dout: np.ndarray, x: np.ndarray, t: np.ndarray | None = None) -> np.ndarray:
    """Gradient through the activation, given its *input* x (and, for GELU, `gelu_parts`'s tanh if kept).

    GELU: dout * (0.5 (1 + t) + 0.5 x (1 - t^2) c (1 + 3 * 0.044715 x^2)), worked in place in that order (the
    same float32 roundings as the expression written out, with three temporaries instead of ten)."""
    if name == "relu":
        return dout * (x > 0)  # (np.where here is ten times slower)
    if t is None:
        t = np.tanh(_gelu_inner(x))
    dinner = (3 * 0.044715) * x
    dinner *= x
    dinner += 1.0
    dinner *= _GELU_C  # c (1 + 3 * 0.044715 x^2)
    slope = t * t
    np.subtract(1.0, slope, out=slope)
    half_x = 0.5 * x
    half_x *= slope
    half_x *= dinner  # 0.5 x (1 - t^2) dinner
    out = 1.0 + t
    out *= 0.5
    out += half_x
    out *= dout
    return out


# ---------------------------------------------------------------- softmax
def softmax(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """Numerically stable softmax; rows that are entirely -inf never occur here."""
    if axis not in (-1, x.ndim - 1):
        return np.moveaxis(softmax(np.moveaxis(x, axis, -1)), -1, axis)
    e = x - row_max(x)
    np.exp(e, out=e)
    e /= row_sum(e)
    return e


def log_softmax(x: np.ndarray) -> np.ndarray:
    """log softmax over the last axis: x - max - log(sum(exp(x - max))), the loss's own arithmetic."""
    shifted = x - x.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def softmax_backward(dp: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Gradient w.r.t. the softmax input, given dL/dp and p (last axis)."""
    d = dp - row_sum(dp * p)
    d *= p
    return d


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

    logits [..., vocab]; targets [...] (-1: no loss here).
    Returns (loss, dlogits) with dlogits the gradient of the mean loss.
    """
    V = logits.shape[-1]
    keep = (targets >= 0).reshape(-1)  # [rows]
    n = max(int(keep.sum()), 1)
    shifted = logits.reshape(-1, V) - logits.reshape(-1, V).max(axis=-1, keepdims=True)  # [rows, vocab]
    e = np.exp(shifted)
    sum_e = e.sum(axis=-1, keepdims=True)
    rows, t = np.arange(len(keep)), np.where(keep, targets.reshape(-1), 0)
    picked = shifted[rows, t] - np.log(sum_e[:, 0])  # log p(target) per row
    loss = (0.0 - float(picked @ keep)) / n  # not -x: a certain answer (log p = 0 in float32) is 0, not -0
    dlogits = e / sum_e  # softmax
    dlogits[rows, t] -= 1.0
    dlogits *= keep[:, None]
    dlogits *= 1.0 / n  # a Python float: stays float32
    return loss, dlogits.reshape(logits.shape).astype(logits.dtype, copy=False)
