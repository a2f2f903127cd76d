"""Analytic gradients against central finite differences, in float64.

Every parameter of every layer is checked, element by element, on small models of
each kind (bidirectional/causal, post/pre-norm, ReLU/GELU, sinusoidal/learned
positions), with padding in the batch.
"""

import numpy as np
import pytest

from model_core import layers as L
from model_core.config import ModelConfig
from model_core.model import Transformer

EPS = 1e-6
TOL = 1e-6


def rel_error(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(a) + np.linalg.norm(b), 1e-300))


def numeric_grad(f, x: np.ndarray) -> np.ndarray:
    """Central differences of the scalar f() with respect to every element of x (in place)."""
    grad = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        old = x[i]
        x[i] = old + EPS
        plus = f()
        x[i] = old - EPS
        minus = f()
        x[i] = old
        grad[i] = (plus - minus) / (2 * EPS)
    return grad


def batch(rng, vocab=21, B=3, T=7):
    tokens = rng.integers(1, vocab, (B, T))
    tokens[0, 5:] = 0  # padding at the end of the first sequence
    targets = rng.integers(0, vocab, (B, T))
    targets[:, :3] = -1  # no loss on the first positions
    targets[0, 5:] = -1  # nor on padding
    return tokens, targets


KINDS = [
    dict(),  # the original: bidirectional, post-norm, ReLU, sinusoidal
    dict(causal=True, norm="pre", activation="gelu", positional="learned"),
    dict(causal=True, norm="post", activation="gelu", positional="sinusoidal"),
    dict(causal=False, norm="pre", activation="relu", positional="learned"),
]


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: ",".join(f"{a}={b}" for a, b in k.items()) or "default")
def test_every_parameter_matches_finite_differences(kind):
    cfg = ModelConfig(d_model=8, n_heads=2, d_ff=12, n_layers=2, max_len=10, seed=3, **kind)
    model = Transformer(cfg, dtype=np.float64)
    tokens, targets = batch(np.random.default_rng(1))
    _, grads, _ = model.loss_and_grads(tokens, targets)

    def loss():  # the plain full forward pass: an independent path from loss_and_grads
        return model.run_with_cache(tokens, targets=targets, names_filter=[])[1].loss

    assert set(grads) == set(model.params)
    for name, param in model.params.items():
        num = numeric_grad(loss, param)
        if name.endswith("attn.b_K"):
            # A key bias adds q.b_K to every score of a query row; softmax ignores a
            # constant shift, so this gradient is exactly zero.
            assert np.abs(grads[name]).max() < 1e-12 and np.abs(num).max() < 1e-8
            continue
        assert rel_error(grads[name], num) < TOL, name


def test_activation_gradients_match_finite_differences():
    """`<name>_grad` in the cache is d loss / d activation: perturb the activation through a hook."""
    cfg = ModelConfig(d_model=8, n_heads=2, d_ff=12, n_layers=2, max_len=10, seed=5, activation="gelu")
    model = Transformer(cfg, dtype=np.float64)
    tokens, targets = batch(np.random.default_rng(2), B=1)
    _, cache = model.run_with_cache(tokens, targets=targets, grads=True)
    rng = np.random.default_rng(0)
    for name in model.hook_names():
        grad = cache[name + "_grad"]
        assert grad.shape == cache[name].shape, name
        for _ in range(3):
            idx = tuple(int(rng.integers(s)) for s in grad.shape)
            if name.endswith("hook_attn_scores") and not np.isfinite(cache[name][idx]):
                continue  # a masked score is -inf: no gradient flows there

            def loss_with(delta, idx=idx, name=name):
                def bump(act, hook):
                    act = act.copy()
                    act[idx] += delta
                    return act
                return model.run_with_cache(tokens, targets=targets, fwd_hooks=[(name, bump)], names_filter=[])[1].loss

            num = (loss_with(EPS) - loss_with(-EPS)) / (2 * EPS)
            assert abs(num - grad[idx]) <= 1e-6 * max(1.0, abs(num)), (name, idx, num, grad[idx])


def test_layer_functions_match_finite_differences():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 3, 5))
    dout = rng.normal(size=(2, 3, 5))
    w = rng.normal(size=5)

    def ln(x):
        centred, scale = L.layer_norm_scale(x)
        return centred / scale * w

    centred, scale = L.layer_norm_scale(x)
    dx, dw, _ = L.layer_norm_backward(dout, centred / scale, scale, w)
    assert rel_error(dx, numeric_grad(lambda: (ln(x) * dout).sum(), x)) < TOL
    assert rel_error(dw, numeric_grad(lambda: (ln(x) * dout).sum(), w)) < TOL

    for act in ("relu", "gelu"):
        got = L.activation_backward(act, dout, x)
        assert rel_error(got, numeric_grad(lambda a=act: (L.activation_forward(a, x) * dout).sum(), x)) < TOL

    got = L.softmax_backward(dout, L.softmax(x))
    assert rel_error(got, numeric_grad(lambda: (L.softmax(x) * dout).sum(), x)) < TOL

    logits = rng.normal(size=(2, 3, 4))
    targets = np.array([[0, -1, 3], [-1, -1, 2]])
    _, dlogits = L.cross_entropy(logits, targets)
    assert rel_error(dlogits, numeric_grad(lambda: L.cross_entropy(logits, targets)[0], logits)) < TOL


def test_cross_entropy_is_stable_and_ignores_padding():
    logits = np.array([[[1000.0, 0.0, -1000.0], [5.0, 5.0, 5.0]]])
    loss, _ = L.cross_entropy(logits, np.array([[0, -1]]))
    assert loss == pytest.approx(0.0, abs=1e-12)  # log-softmax of a dominant logit, no overflow
    assert f"{loss:.4g}" == "0"  # exactly certain: 0, never "-0" on screen
    loss, _ = L.cross_entropy(logits, np.array([[-1, 1]]))
    assert loss == pytest.approx(np.log(3.0))  # uniform over three tokens
