"""model_core.analysis against independent references.

PCA against numpy's covariance eigen-decomposition; the logit lens against the cached
logits; ablation against zeroing z and recomputing attn_out by hand; the SGD step
against `params - lr * grads` and the first-order change lr * ||g||^2.
"""

import numpy as np
import pytest

from model_core import TaskConfig, TaskModel, load_model
from model_core.analysis import ablate_heads, run_example
from model_core.analysis import embeddings as emb
from model_core.analysis import gradients as grads
from model_core.analysis import output as ao
from model_core.analysis import residual as res


def softmax64(x: np.ndarray) -> np.ndarray:
    """An independent softmax in float64."""
    x = np.asarray(x, dtype=np.float64)
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


@pytest.fixture(scope="module")
def shipped():
    return load_model("digits-0-9")  # bidirectional, post-norm


@pytest.fixture(scope="module")
def shipped_run(shipped):
    return run_example(shipped, "Max ( 7 2 9 )")


@pytest.fixture(scope="module")
def causal_pre():
    """A small pre-norm causal model on 0-99 (answers of several tokens); untrained."""
    return TaskModel.new(TaskConfig(max_value=99), causal=True, norm="pre", d_model=32, n_heads=4, d_ff=64)


@pytest.fixture(scope="module")
def causal_run(causal_pre):
    return run_example(causal_pre, "Max ( 47 82 19 )")


# ---------------------------------------------------------------- pca_2d
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_pca_matches_the_covariance_eigendecomposition(seed):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(40, 6)) @ rng.normal(size=(6, 6)) + rng.normal(size=6)  # correlated, off-centre
    points, ratio = emb.pca_2d(X)
    centred = X - X.mean(axis=0)
    evals, evecs = np.linalg.eigh(np.cov(X, rowvar=False))  # ascending
    top = np.argsort(evals)[::-1][:2]
    ref = centred @ evecs[:, top]  # [n, 2], each column up to sign
    assert points.shape == (40, 2)
    for k in range(2):
        same = np.allclose(points[:, k], ref[:, k], atol=1e-9)
        flipped = np.allclose(points[:, k], -ref[:, k], atol=1e-9)
        assert same or flipped
    np.testing.assert_allclose(ratio, evals[top] / evals.sum(), rtol=1e-9)
    # Sign convention: each component's largest-magnitude loading is positive.
    for k, i in enumerate(top):
        v = evecs[:, i]
        v = v * np.sign(v[np.abs(v).argmax()])
        np.testing.assert_allclose(points[:, k], centred @ v, atol=1e-9)


def test_pca_of_the_shipped_embeddings_explains_part_of_the_variance(shipped):
    W_E = shipped.transformer.params["embed.W_E"]
    points, ratio = emb.pca_2d(W_E)
    assert points.shape == (W_E.shape[0], 2)
    assert ratio[0] >= ratio[1] > 0 and ratio.sum() <= 1 + 1e-12
    np.testing.assert_allclose(points.mean(axis=0), 0, atol=1e-6)  # centred (in float32)


# ---------------------------------------------------------------- residual stages, sublayer writes
@pytest.mark.parametrize("which", ["shipped_run", "causal_run"])
def test_residual_stages_are_the_cached_arrays_in_order(which, request):
    run = request.getfixturevalue(which)
    net = request.getfixturevalue("shipped") if which == "shipped_run" else request.getfixturevalue("causal_pre")
    stages = res.residual_stages(net.transformer, run.cache)
    n = net.transformer.cfg.n_layers
    expected = ["blocks.0.hook_resid_pre"]
    for i in range(n):  # post-norm: the stream after each LayerNorm; pre-norm: the sums
        if net.transformer.cfg.norm == "post":
            expected += [f"blocks.{i}.ln1.hook_out", f"blocks.{i}.ln2.hook_out"]
        else:
            expected += [f"blocks.{i}.hook_resid_mid", f"blocks.{i}.hook_resid_post"]
    assert [s for s, _ in stages] == ["embed + pos"] + [f"block {i} {w}" for i in range(n) for w in ("mid", "out")]
    for (_, arr), name in zip(stages, expected, strict=True):
        np.testing.assert_array_equal(arr, run.cache[name][0])
    # The first stage really is token + position embedding.
    np.testing.assert_allclose(stages[0][1], run.cache["hook_embed"][0] + run.cache["hook_pos_embed"][0], rtol=1e-6)


def test_sublayer_writes_are_the_norms_of_the_cached_outputs(shipped, shipped_run):
    writes = res.sublayer_writes(shipped.transformer, shipped_run.cache)
    n = shipped.transformer.cfg.n_layers
    assert [(b, s) for b, s, _ in writes] == [(i, s) for i in range(n) for s in ("attention", "FFN")]
    for block, sub, norms in writes:
        out = shipped_run.cache[f"blocks.{block}.hook_{'attn' if sub == 'attention' else 'mlp'}_out"][0]
        ref = np.sqrt((out.astype(np.float64) ** 2).sum(axis=-1))
        np.testing.assert_allclose(norms, ref, rtol=1e-6)


# ---------------------------------------------------------------- logit lens
@pytest.mark.parametrize("which", ["shipped", "causal_pre"])
def test_logit_lens_last_stage_is_the_models_output(which, request):
    model = request.getfixturevalue(which)
    run = request.getfixturevalue("shipped_run" if which == "shipped" else "causal_run")
    net = model.transformer
    for pos in range(len(run.tokens)):
        lens = ao.logit_lens(net, run.cache, pos)
        assert [s for s, _ in lens] == [s for s, _ in res.residual_stages(net, run.cache)]
        for _, probs in lens:
            assert probs.shape == (net.cfg.vocab_size,)
            np.testing.assert_allclose(probs.sum(), 1.0, rtol=1e-12)
        np.testing.assert_allclose(lens[-1][1], softmax64(run.cache["hook_logits"][0, pos]), atol=2e-6)


def test_post_norm_last_residual_is_the_input_to_the_unembedding(shipped, shipped_run):
    p, cache = shipped.transformer.params, shipped_run.cache
    last = cache[f"blocks.{shipped.transformer.cfg.n_layers - 1}.ln2.hook_out"][0]
    np.testing.assert_allclose(last @ p["unembed.W_U"] + p["unembed.b_U"], cache["hook_logits"][0], atol=1e-4)


def test_pre_norm_logit_lens_applies_the_final_layer_norm(causal_pre, causal_run):
    """Every stage decoded through the model's own ln_final (an independent LayerNorm here)."""
    net, cache = causal_pre.transformer, causal_run.cache
    p = net.params
    pos = causal_run.answer_pos
    for (_, probs), (_, resid) in zip(ao.logit_lens(net, cache, pos), res.residual_stages(net, cache), strict=True):
        x = resid[pos].astype(np.float64)
        xhat = (x - x.mean()) / np.sqrt(x.var() + 1e-5)
        ref = softmax64((xhat * p["ln_final.w"] + p["ln_final.b"]) @ p["unembed.W_U"] + p["unembed.b_U"])
        np.testing.assert_allclose(probs, ref, atol=1e-5)


# ---------------------------------------------------------------- ablation
def test_ablating_no_head_is_the_clean_run(shipped, shipped_run):
    logits, cache = ablate_heads(shipped, shipped_run.tokens, [])
    np.testing.assert_array_equal(logits, shipped_run.cache["hook_logits"])
    for name in shipped.transformer.hook_names():
        np.testing.assert_array_equal(cache[name], shipped_run.cache[name])


@pytest.mark.parametrize("layer, head", [(0, 1), (1, 2)])
def test_ablating_a_head_zeroes_its_z_and_attn_out_follows(shipped, shipped_run, layer, head):
    net, clean = shipped.transformer, shipped_run.cache
    p = net.params
    logits, cache = ablate_heads(shipped, shipped_run.tokens, [(layer, head)])
    b = f"blocks.{layer}."
    # Everything before the ablated layer's z is untouched.
    np.testing.assert_array_equal(cache[b + "attn.hook_pattern"], clean[b + "attn.hook_pattern"])
    z = clean[b + "attn.hook_z"].astype(np.float64).copy()  # [1, T, H, dh]
    z[:, :, head] = 0.0
    np.testing.assert_array_equal(cache[b + "attn.hook_z"][:, :, head], 0.0)
    by_hand = np.einsum("bphd,hdm->bpm", z, p[b + "attn.W_O"].astype(np.float64)) + p[b + "attn.b_O"]
    np.testing.assert_allclose(cache[b + "hook_attn_out"], by_hand, atol=1e-5)
    assert not np.allclose(cache[b + "hook_attn_out"], clean[b + "hook_attn_out"])
    np.testing.assert_array_equal(logits, cache["hook_logits"])


def test_ablating_heads_in_two_layers_at_once(shipped, shipped_run):
    _, cache = ablate_heads(shipped, shipped_run.tokens, [(0, 0), (0, 3), (1, 1)])
    for layer, heads in ((0, [0, 3]), (1, [1])):
        z = cache[f"blocks.{layer}.attn.hook_z"]
        np.testing.assert_array_equal(z[:, :, heads], 0.0)
        assert np.abs(z[:, :, [h for h in range(4) if h not in heads]]).max() > 0


# ---------------------------------------------------------------- one SGD step
def test_sgd_step_updates_a_copy_by_lr_times_the_gradient(shipped, shipped_run):
    before = {k: v.copy() for k, v in shipped.transformer.params.items()}
    tokens, targets = shipped_run.train_tokens, shipped_run.train_targets
    _, ref = shipped.transformer.run_with_cache(tokens[None], targets=targets[None], grads=True)
    lr = 0.5
    loss, after, stepped = grads.sgd_step_on_copy(shipped, tokens, targets, lr)
    for name, value in shipped.transformer.params.items():
        np.testing.assert_array_equal(value, before[name])  # the original is untouched
        expected = before[name] - lr * ref.param_grads[name]
        np.testing.assert_allclose(stepped.transformer.params[name], expected, rtol=1e-6, atol=1e-9)
    assert stepped.transformer is not shipped.transformer
    np.testing.assert_allclose(loss, ref.loss, rtol=1e-3)
    np.testing.assert_allclose(loss, shipped_run.grad_cache.loss, rtol=1e-3)


@pytest.mark.parametrize("causal", [False, True])
def test_sgd_step_lowers_the_loss_by_lr_times_grad_squared(causal):
    task = TaskConfig(max_value=99) if causal else TaskConfig()
    model = TaskModel.new(task, causal=causal, norm="pre" if causal else "post", d_model=16, n_heads=2, d_ff=32)
    model = model.with_transformer(model.transformer.astype(np.float64))
    run = run_example(model, "Min ( 40 8 61 )" if causal else "Min ( 4 8 1 )")
    g2 = sum((g**2).sum() for g in run.grad_cache.param_grads.values())
    for lr in (1e-3, 5e-4):
        loss, after, _ = grads.sgd_step_on_copy(model, run.train_tokens, run.train_targets, lr)
        np.testing.assert_allclose(loss, run.grad_cache.loss, rtol=1e-12)
        drop = loss - after
        assert drop > 0
        np.testing.assert_allclose(drop, lr * g2, rtol=0.02)  # first order; the error is O(lr^2)


# ---------------------------------------------------------------- run_example
def test_run_example_bidirectional(shipped, shipped_run):
    run, vocab = shipped_run, shipped.vocab
    assert run.labels == vocab.decode(run.tokens)
    assert run.labels[run.answer_pos] == "="
    assert run.answer.value == 9 and run.answer.answer_tokens == ["9"] and run.answer.correct
    assert vocab.decode(run.answer.tokens[run.answer_pos + 1 :]) == run.answer.answer_tokens
    # Teacher forcing: the input up to `=`, one target (the true answer) at `=`.
    assert vocab.decode(run.train_tokens) == ["Max", "(", "7", ",", "2", ",", "9", ")", "="]
    assert [(int(t), vocab.decode([run.train_targets[t]])[0]) for t in np.flatnonzero(run.train_targets >= 0)] == [
        (run.answer_pos, "9")
    ]
    assert set(run.cache) == set(shipped.transformer.hook_names())
    assert run.cache["hook_embed"].shape == (1, len(run.tokens), 64)
    for name in shipped.transformer.hook_names():
        assert run.grad_cache[name + "_grad"].shape == run.grad_cache[name].shape
    logp = np.log(softmax64(run.grad_cache["hook_logits"][0, run.answer_pos]))
    np.testing.assert_allclose(run.grad_cache.loss, -logp[vocab.id("9")], rtol=1e-3)


def test_bidirectional_cache_is_the_pass_that_answered():
    """The cached logits at `=` are the ones the model answered from (regression: the cache once also read
    the answer token, which an untrained model's logits at `=` then depended on)."""
    model = TaskModel.new(TaskConfig())
    run = run_example(model, "Max ( 7 2 9 )")
    assert len(run.tokens) == run.answer_pos + 1  # the model read up to `=`
    np.testing.assert_array_equal(run.tokens, run.train_tokens)
    np.testing.assert_allclose(softmax64(run.cache["hook_logits"][0, run.answer_pos]), run.answer.step_probs[0],
                               atol=1e-6)  # fmt: skip


def test_run_example_causal(causal_pre, causal_run):
    run, vocab = causal_run, causal_pre.vocab
    answer = run.answer
    np.testing.assert_array_equal(run.tokens, answer.tokens[:-1])  # the last written token is never read
    assert run.labels == vocab.decode(run.tokens)
    assert run.labels[run.answer_pos] == "="
    assert vocab.decode(answer.tokens[run.answer_pos + 1 :]) == answer.answer_tokens
    # The cache is the pass that wrote every answer token: its probabilities are the answer's.
    for step, probs in enumerate(answer.step_probs):
        np.testing.assert_allclose(softmax64(run.cache["hook_logits"][0, run.answer_pos + step]), probs, atol=1e-6)
        assert int(answer.tokens[run.answer_pos + 1 + step]) == int(probs.argmax())
    # Teacher forcing: the true answer's tokens (then <eos>) are the targets from `=` on.
    scored = run.train_targets >= 0
    assert np.flatnonzero(scored)[0] == run.answer_pos
    assert vocab.decode(run.train_targets[scored]) == ["8", "2", "<eos>"]
    assert vocab.decode(run.train_tokens)[run.answer_pos :] == ["=", "8", "2"]
    logp = np.log(softmax64(run.grad_cache["hook_logits"][0]))
    ref = -np.mean([logp[t, run.train_targets[t]] for t in np.flatnonzero(scored)])
    np.testing.assert_allclose(run.grad_cache.loss, ref, rtol=1e-4)
