"""The training step gives the same numbers as the full, hooked pass, and the small helpers it uses.

`loss_and_grads` (and `forward(rows=...)`) stop computing the rows without a target after the
last block's attention pattern; `run_with_cache` computes every row. The two are held here, in
float64, against each other (test_gradients holds the hooked pass against finite differences).
"""

import threading

import numpy as np
import pytest

from model_core import layers as L
from model_core.config import ModelConfig
from model_core.model import Transformer
from model_core.training import _alloc

KINDS = [
    dict(),  # the original: bidirectional, post-norm, ReLU, sinusoidal
    dict(positional="learned"),  # post-norm with learned positions
    dict(n_layers=1),  # block 0 is also the last, rows-only block
    dict(n_layers=3, causal=True, activation="gelu"),  # several rows per example
    dict(causal=True, norm="pre", positional="learned"),
    dict(norm="pre", n_layers=1),
]


def ids(kind):
    return ",".join(f"{a}={b}" for a, b in kind.items()) or "default"


def batch(rng, B=6, T=8, vocab=21):
    tokens = rng.integers(1, vocab, (B, T))
    tokens[0, 5:] = 0  # padding
    tokens[3, 7:] = 0
    targets = np.full((B, T), -1)
    targets[:, 4] = rng.integers(0, vocab, B)  # one answer row in every example ...
    targets[1, 5:7] = rng.integers(0, vocab, 2)  # ... and more in some
    targets[4, 2] = rng.integers(0, vocab)
    return tokens, targets


@pytest.mark.parametrize("kind", KINDS, ids=ids)
def test_loss_and_grads_match_the_hooked_pass(kind):
    cfg = ModelConfig(d_model=16, n_heads=4, d_ff=24, max_len=12, seed=2, **kind)
    model = Transformer(cfg, dtype=np.float64)
    tokens, targets = batch(np.random.default_rng(0))
    loss, grads, logits = model.loss_and_grads(tokens, targets)
    full, cache = model.run_with_cache(tokens, targets=targets, grads=True, names_filter=[])
    rows = np.nonzero(targets >= 0)
    assert loss == pytest.approx(cache.loss, rel=1e-12)
    np.testing.assert_allclose(logits, full[rows], rtol=1e-12, atol=1e-12)
    for name, g in cache.param_grads.items():
        np.testing.assert_allclose(grads[name], g, rtol=1e-9, atol=1e-12, err_msg=name)


def test_float32_grads_stay_float32_and_close_to_float64():
    cfg = ModelConfig(seed=1)
    tokens, targets = batch(np.random.default_rng(2))
    model64 = Transformer(cfg, dtype=np.float64)
    model32 = model64.astype(np.float32)
    _, g32, logits = model32.loss_and_grads(tokens, targets)
    _, g64, _ = model64.loss_and_grads(tokens, targets)
    assert logits.dtype == np.float32
    for name in g64:
        assert g32[name].dtype == np.float32, name
        if name.endswith("attn.b_K"):
            continue  # exactly zero in exact arithmetic (see test_gradients): float32 leaves ~1e-9
        scale = np.abs(g64[name]).max()
        assert np.abs(g32[name] - g64[name]).max() / scale < 1e-3, name


def test_row_and_column_reductions_match_numpy():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(3, 5, 7))
    np.testing.assert_allclose(L.row_mean(x), x.mean(-1, keepdims=True), rtol=1e-12)
    np.testing.assert_allclose(L.row_sum(x), x.sum(-1, keepdims=True), rtol=1e-12)
    np.testing.assert_array_equal(L.row_max(x), x.max(-1, keepdims=True))
    x[0, 0, :3] = -np.inf  # masked attention scores
    np.testing.assert_array_equal(L.row_max(x), x.max(-1, keepdims=True))
    np.testing.assert_allclose(L.col_sum(x.reshape(-1, 7)), x.reshape(-1, 7).sum(0), rtol=1e-12)
    np.testing.assert_allclose(L.softmax(x, axis=1).sum(axis=1), 1.0, rtol=1e-12)


def test_cross_entropy_matches_the_textbook_formula():
    rng = np.random.default_rng(5)
    logits = rng.normal(size=(2, 4, 6))
    targets = np.array([[0, -1, 5, 2], [-1, -1, 3, 1]])
    loss, dlogits = L.cross_entropy(logits, targets)
    keep = targets >= 0
    p = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    picked = np.take_along_axis(np.log(p), np.where(keep, targets, 0)[..., None], -1)[..., 0]
    assert loss == pytest.approx(-(picked * keep).sum() / keep.sum(), rel=1e-12)
    onehot = np.eye(6)[np.where(keep, targets, 0)]
    np.testing.assert_allclose(dlogits, (p - onehot) * keep[..., None] / keep.sum(), atol=1e-15)
    assert L.cross_entropy(logits.astype(np.float32), targets)[1].dtype == np.float32


def test_a_shared_model_is_safe_across_threads():
    model = Transformer(ModelConfig(seed=3), dtype=np.float64)
    batches = [batch(np.random.default_rng(s)) for s in range(4)]
    expected = [model.loss_and_grads(t, y) for t, y in batches]
    got = [None] * len(batches)

    def work(i):
        for _ in range(5):
            got[i] = model.loss_and_grads(*batches[i])

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(batches))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for (loss, grads, _), (loss2, grads2, _) in zip(expected, got, strict=True):
        assert loss == loss2
        assert all(np.array_equal(grads[n], grads2[n]) for n in grads)


def test_process_settings_are_idempotent():
    first = _alloc.keep_freed_memory()
    assert _alloc.keep_freed_memory() == first
    _alloc.warm_up_blas()
    _alloc.warm_up_blas()  # only the first call does work
