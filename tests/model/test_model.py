"""Masks, hook points and the cache of the NumPy transformer."""

import numpy as np
import pytest

from model_core.config import ConfigError, ModelConfig
from model_core.layers import LN_EPS
from model_core.model import Transformer
from model_core.params import param_shapes

B, T = 2, 9


def expected_shape(name: str, cfg: ModelConfig, B: int, T: int) -> tuple:
    """The documented shape of each hook point."""
    D, H, dh, F, V = cfg.d_model, cfg.n_heads, cfg.d_head, cfg.d_ff, cfg.vocab_size
    if name.endswith(("hook_q", "hook_k", "hook_v", "hook_z")):
        return (B, T, H, dh)
    if name.endswith(("hook_attn_scores", "hook_pattern")):
        return (B, H, T, T)
    if name.endswith("hook_result"):
        return (B, T, H, D)
    if name.startswith("blocks") and ".mlp.hook_" in name:
        return (B, T, F)
    if name.endswith("hook_scale"):
        return (B, T, 1)
    if name == "hook_logits":
        return (B, T, V)
    return (B, T, D)


@pytest.fixture(params=[(False, "post"), (True, "post"), (True, "pre")], ids=["bidirectional", "causal", "pre-norm"])
def model(request):
    causal, norm = request.param
    return Transformer(ModelConfig(causal=causal, norm=norm, seed=1), dtype=np.float64)


def tokens(rng, pad_from=None):
    t = rng.integers(1, 21, (B, T))
    if pad_from is not None:
        t[0, pad_from:] = 0
    return t


def test_default_config_is_the_original_model():
    cfg = ModelConfig()
    assert (cfg.n_layers, cfg.n_heads, cfg.d_model, cfg.d_ff, cfg.max_len) == (2, 4, 64, 256, 50)
    assert not cfg.causal and cfg.norm == "post" and cfg.positional == "sinusoidal"
    assert 100_000 < Transformer(cfg).n_params < 106_000
    assert Transformer(cfg).n_params == sum(int(np.prod(s)) for s in param_shapes(cfg).values())


@pytest.mark.parametrize(
    "kwargs, phrase",
    [
        (dict(d_model=64, n_heads=5), "divisible by n_heads"),
        (dict(d_model=0), "positive"),
        (dict(n_layers=-1), "positive"),
        (dict(activation="tanh"), "activation"),
        (dict(norm="middle"), "norm"),
        (dict(positional="rope"), "positional"),
        (dict(seed=-3), "seed"),
    ],
)
def test_bad_configs_say_what_to_change(kwargs, phrase):
    with pytest.raises(ConfigError, match=phrase):
        ModelConfig(**kwargs)


def test_cache_holds_every_hook_with_its_documented_shape(model):
    _, cache = model.run_with_cache(tokens(np.random.default_rng(0), pad_from=6))
    names = model.hook_names()
    assert set(cache) == set(names)
    for name in names:
        assert cache[name].shape == expected_shape(name, model.cfg, B, T), name
    assert "blocks.1.attn.hook_pattern" in names and "blocks.0.ln2.hook_normalized" in names


def test_attention_patterns_sum_to_one_and_respect_masks(model):
    t = tokens(np.random.default_rng(0), pad_from=6)
    _, cache = model.run_with_cache(t)
    for i in range(model.cfg.n_layers):
        pattern = cache[f"blocks.{i}.attn.hook_pattern"]
        np.testing.assert_allclose(pattern.sum(-1), 1.0, atol=1e-12)
        assert np.all(pattern[0, :, :, 6:] == 0)  # nobody attends to padding
        if model.cfg.causal:
            assert np.all(np.triu(pattern, k=1) == 0)  # nor to a later token


def test_padding_never_changes_real_positions(model):
    rng = np.random.default_rng(3)
    t = tokens(rng, pad_from=5)
    other = t.copy()
    other[0, 5:] = 0
    longer = np.concatenate([t, np.zeros((B, 4), dtype=t.dtype)], axis=1)  # more padding
    base = model.forward(t)
    np.testing.assert_allclose(model.forward(longer)[:, :T], base, atol=1e-12)
    np.testing.assert_allclose(model.forward(other)[0, :5], base[0, :5], atol=1e-12)


def test_causal_model_never_looks_ahead():
    model = Transformer(ModelConfig(causal=True, seed=2), dtype=np.float64)
    rng = np.random.default_rng(4)
    t = tokens(rng)
    changed = t.copy()
    changed[:, 6] = (t[:, 6] % 20) + 1  # a different, non-padding token
    a, b = model.forward(t), model.forward(changed)
    np.testing.assert_allclose(a[:, :6], b[:, :6], atol=1e-12)
    assert np.abs(a[:, 6:] - b[:, 6:]).max() > 1e-6


def test_bidirectional_model_does_look_ahead():
    model = Transformer(ModelConfig(causal=False, seed=2), dtype=np.float64)
    t = tokens(np.random.default_rng(4))
    changed = t.copy()
    changed[:, 6] = (t[:, 6] % 20) + 1
    assert np.abs(model.forward(t)[:, :6] - model.forward(changed)[:, :6]).max() > 1e-6


def test_ablating_a_head_matches_recomputing_by_hand(model):
    """Zero head 2's z in block 1: attn_out must be the hand-made z @ W_O + b_O."""
    t = tokens(np.random.default_rng(5))
    _, clean = model.run_with_cache(t)

    def ablate(z, hook):
        z = z.copy()
        z[:, :, 2] = 0.0
        return z

    _, cache = model.run_with_cache(t, fwd_hooks=[("blocks.1.attn.hook_z", ablate)])
    z = clean["blocks.1.attn.hook_z"].copy()  # block 1's input is untouched by the hook
    z[:, :, 2] = 0.0
    W_O, b_O = model.params["blocks.1.attn.W_O"], model.params["blocks.1.attn.b_O"]
    by_hand = np.einsum("bphd,hdm->bpm", z, W_O) + b_O
    np.testing.assert_allclose(cache["blocks.1.hook_attn_out"], by_hand, atol=1e-12)
    np.testing.assert_allclose(cache["blocks.0.hook_resid_post"], clean["blocks.0.hook_resid_post"])
    assert np.abs(cache["hook_logits"] - clean["hook_logits"]).max() > 1e-6


def test_replacing_the_last_stream_sets_the_logits_by_hand():
    """Post-norm: the block's output is ln2.hook_out (no final LN); hook_resid_post is the sum before ln2."""
    model = Transformer(ModelConfig(seed=6), dtype=np.float64)
    p = model.params
    t = tokens(np.random.default_rng(6))
    new = np.random.default_rng(7).normal(size=(B, T, 64))
    logits = model.run_with_hooks(t, [("blocks.1.ln2.hook_out", lambda x, hook: new)])
    np.testing.assert_allclose(logits, new @ p["unembed.W_U"] + p["unembed.b_U"], rtol=1e-12)
    logits = model.run_with_hooks(t, [("blocks.1.hook_resid_post", lambda x, hook: new)])
    normed = (new - new.mean(-1, keepdims=True)) / np.sqrt(new.var(-1, keepdims=True) + LN_EPS)
    by_hand = (normed * p["blocks.1.ln2.w"] + p["blocks.1.ln2.b"]) @ p["unembed.W_U"] + p["unembed.b_U"]
    np.testing.assert_allclose(logits, by_hand, rtol=1e-10)


def ln_inputs(cfg: ModelConfig, cache) -> dict[str, np.ndarray]:
    """What each LayerNorm reads, from the residual-stream hooks (docs/hooks.md)."""
    out = {}
    for i in range(cfg.n_layers):
        b = f"blocks.{i}."
        if cfg.norm == "pre":  # x + f(LN(x)): LN1 reads the block's input, LN2 the stream after attention
            out[b + "ln1"], out[b + "ln2"] = cache[b + "hook_resid_pre"], cache[b + "hook_resid_mid"]
        else:  # LN(x + f(x)): each LN reads a sum, and its output is the stream after it
            out[b + "ln1"], out[b + "ln2"] = cache[b + "hook_resid_mid"], cache[b + "hook_resid_post"]
    if cfg.norm == "pre":
        out["ln_final"] = cache[f"blocks.{cfg.n_layers - 1}.hook_resid_post"]
    return out


def test_layer_norm_hooks_are_the_real_numbers(model):
    """hook_in, hook_scale, hook_normalized (before the gain, as in TransformerLens) and hook_out, by hand."""
    cfg, p = model.cfg, model.params
    _, cache = model.run_with_cache(tokens(np.random.default_rng(8), pad_from=5))
    for prefix, x in ln_inputs(cfg, cache).items():
        np.testing.assert_array_equal(cache[prefix + ".hook_in"], x, err_msg=prefix)
        scale = np.sqrt(x.var(-1, keepdims=True) + LN_EPS)
        normalized = (x - x.mean(-1, keepdims=True)) / scale
        np.testing.assert_allclose(cache[prefix + ".hook_scale"], scale, rtol=1e-12, err_msg=prefix)
        np.testing.assert_allclose(cache[prefix + ".hook_normalized"], normalized, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(cache[prefix + ".hook_out"], normalized * p[prefix + ".w"] + p[prefix + ".b"],
                                   rtol=1e-10, atol=1e-12, err_msg=prefix)  # fmt: skip
    for i in range(cfg.n_layers):
        b = f"blocks.{i}."
        mid, post = cache[b + "hook_resid_mid"], cache[b + "hook_resid_post"]
        if cfg.norm == "post":  # the sums, and the normalised stream that flows on
            np.testing.assert_array_equal(mid, cache[b + "hook_resid_pre"] + cache[b + "hook_attn_out"])
            np.testing.assert_array_equal(post, cache[b + "ln1.hook_out"] + cache[b + "hook_mlp_out"])
            if i + 1 < cfg.n_layers:
                np.testing.assert_array_equal(cache[f"blocks.{i + 1}.hook_resid_pre"], cache[b + "ln2.hook_out"])
        else:
            np.testing.assert_array_equal(mid, cache[b + "hook_resid_pre"] + cache[b + "hook_attn_out"])
            np.testing.assert_array_equal(post, mid + cache[b + "hook_mlp_out"])


def test_hooks_never_outlive_their_call(model):
    t = tokens(np.random.default_rng(9))
    base = model.forward(t)
    seen = []
    model.run_with_hooks(t, [("hook_embed", lambda x, hook: seen.append(hook.name) or x * 0)])
    assert seen == ["hook_embed"]
    np.testing.assert_array_equal(model.forward(t), base)
    with pytest.raises(KeyError, match="no hook point"):
        model.run_with_hooks(t, [("blocks.9.hook_nothing", lambda x, h: None)])


def test_names_filter_limits_the_cache(model):
    _, cache = model.run_with_cache(tokens(np.random.default_rng(0)), names_filter=["hook_embed"])
    assert list(cache) == ["hook_embed"]


def test_float32_stays_float32():
    model = Transformer(ModelConfig())
    _, grads, logits = model.loss_and_grads(tokens(np.random.default_rng(0)), np.full((B, T), 3))
    assert logits.dtype == np.float32 and all(g.dtype == np.float32 for g in grads.values())


def test_bad_tokens_are_refused(model):
    with pytest.raises(ValueError, match="max_len"):
        model.forward(np.ones((1, 51), dtype=int))
    with pytest.raises(ValueError, match="token ids"):
        model.forward(np.array([[1, 99]]))


def test_qk_init_scales_only_the_query_and_key_weights_of_the_same_draw():
    base, half = Transformer(ModelConfig(seed=3)).params, Transformer(ModelConfig(seed=3, qk_init=0.5)).params
    for name in base:
        leaf = name.rsplit(".", 1)[-1]
        want = base[name] * np.float32(0.5) if leaf in ("W_Q", "W_K") else base[name]  # x0.5 is exact in float32
        np.testing.assert_array_equal(half[name], want, err_msg=name)
    # the usual scale is left out of the dict (a model initialised as usual keeps the dict it always had)
    assert "qk_init" not in ModelConfig().to_dict()
    assert ModelConfig.from_dict(ModelConfig(qk_init=0.5).to_dict()).qk_init == 0.5
    assert ModelConfig(qk_init=2).qk_init == 2.0 and isinstance(ModelConfig(qk_init=2).qk_init, float)


@pytest.mark.parametrize("bad", [0, -1, 4.5, float("nan"), float("inf"), True, "0.5", None])
def test_qk_init_must_be_a_positive_number_up_to_the_limit(bad):
    with pytest.raises(ConfigError, match="qk_init must be a number above 0"):
        ModelConfig(qk_init=bad)
