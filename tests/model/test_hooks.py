"""The hook contract (model_core/hooks.py, docs/hooks.md): one forward computation, hooks that only observe or
replace, replacements checked, hook names in forward order, and each head's write."""

import numpy as np
import pytest

from model_core import load_model
from model_core.config import ModelConfig
from model_core.hooks import HookError
from model_core.model import Transformer

KINDS = {
    "post-norm bidirectional": dict(),
    "post-norm causal learned": dict(causal=True, positional="learned", activation="gelu"),
    "pre-norm causal": dict(causal=True, norm="pre", positional="learned", activation="gelu", n_layers=3),
    "pre-norm bidirectional": dict(norm="pre", n_layers=1),
}


def batch_of(n: int, T: int, seed: int = 0, vocab: int = 21) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = rng.integers(1, vocab, (n, T))
    t[::3, T - 2 :] = 0  # some padding
    return t


@pytest.fixture(scope="module")
def shipped():
    return {name: load_model(name).transformer for name in ("digits-0-9", "digits-0-99")}


@pytest.mark.parametrize("name", ["digits-0-9", "digits-0-99"])
@pytest.mark.parametrize("n", [1, 2, 3, 7, 16, 64, 65, 200])
def test_plain_and_hooked_runs_are_bit_identical(shipped, name, n):
    net = shipped[name]
    t = batch_of(n, 12, seed=n)
    plain = net.forward(t)
    logits, cache = net.run_with_cache(t)
    assert np.array_equal(plain, logits)
    assert np.array_equal(plain, cache["hook_logits"])
    observed = net.run_with_hooks(t, [(h, lambda x, hook: None) for h in net.hook_names()])
    assert np.array_equal(plain, observed)
    copied = net.run_with_hooks(t, [(h, lambda x, hook: x.copy()) for h in net.hook_names()])
    assert np.array_equal(plain, copied)


@pytest.mark.parametrize("kind", list(KINDS))
def test_plain_and_hooked_runs_are_bit_identical_for_every_kind(kind):
    net = Transformer(ModelConfig(d_model=16, n_heads=4, d_ff=24, seed=3, **KINDS[kind]))
    for n in (1, 5, 64):
        t = batch_of(n, 10, seed=n)
        assert np.array_equal(net.forward(t), net.run_with_cache(t)[0])


@pytest.mark.parametrize("kind", list(KINDS))
def test_hook_names_are_in_forward_order(kind):
    net = Transformer(ModelConfig(d_model=16, n_heads=4, d_ff=24, seed=3, **KINDS[kind]))
    seen = []
    net.run_with_hooks(batch_of(2, 8), [(h, lambda x, hook: seen.append(hook.name)) for h in net.hook_names()])
    assert seen == net.hook_names()
    _, cache = net.run_with_cache(batch_of(2, 8))
    assert list(cache) == net.hook_names()


def test_a_replacement_of_the_wrong_shape_names_the_hook_and_both_shapes(shipped):
    net = shipped["digits-0-9"]  # 4 heads of 16: a transposed z has the same size, not the same shape
    t = batch_of(2, 10)
    with pytest.raises(HookError, match=r"hook blocks\.0\.attn\.hook_z: the replacement has shape "
                                        r"\(2, 10, 16, 4\), the activation \(2, 10, 4, 16\)"):  # fmt: skip
        net.run_with_hooks(t, [("blocks.0.attn.hook_z", lambda z, hook: z.transpose(0, 1, 3, 2))])
    with pytest.raises(HookError, match=r"hook hook_embed: the replacement has shape \(20, 64\)"):
        net.run_with_hooks(t, [("hook_embed", lambda x, hook: x.reshape(20, 64))])


def test_a_replacement_of_the_wrong_dtype_or_kind_is_refused(shipped):
    net = shipped["digits-0-9"]
    t = batch_of(2, 10)
    with pytest.raises(HookError, match="hook blocks.1.hook_mlp_out: the replacement has dtype float64, the "
                                        "activation float32"):  # fmt: skip
        net.run_with_hooks(t, [("blocks.1.hook_mlp_out", lambda x, hook: x.astype(np.float64))])
    with pytest.raises(HookError, match="must be a NumPy array, got list"):
        net.run_with_hooks(t, [("hook_pos_embed", lambda x, hook: x.tolist())])


def test_an_in_place_edit_is_refused_and_changes_nothing(shipped):
    net = shipped["digits-0-99"]
    t = batch_of(2, 10)
    before = net.forward(t)

    def zero_head(z, hook):
        z[:, :, 1] = 0.0

    with pytest.raises(HookError, match="hook blocks.0.attn.hook_z: the activation is read-only; return a "
                                        "replacement"):  # fmt: skip
        net.run_with_hooks(t, [("blocks.0.attn.hook_z", zero_head)])
    assert np.array_equal(net.forward(t), before)


def test_hooks_at_one_name_run_in_order_and_the_cache_keeps_the_last_replacement(shipped):
    net = shipped["digits-0-9"]
    t = batch_of(1, 10)
    seen = []
    hooks = [("blocks.0.hook_mlp_out", lambda x, hook: x + 1), ("blocks.0.hook_mlp_out", lambda x, h: seen.append(x))]
    _, cache = net.run_with_cache(t, fwd_hooks=hooks)
    _, clean = net.run_with_cache(t)
    np.testing.assert_array_equal(seen[0], clean["blocks.0.hook_mlp_out"] + 1)
    np.testing.assert_array_equal(cache["blocks.0.hook_mlp_out"], seen[0])


@pytest.mark.parametrize("kind", list(KINDS))
def test_hook_result_is_each_heads_write(kind):
    """hook_result[..., h, :] = z_h @ W_O[h]; their sum over heads plus b_O is hook_attn_out."""
    net = Transformer(ModelConfig(d_model=16, n_heads=4, d_ff=24, seed=5, **KINDS[kind]), dtype=np.float64)
    _, cache = net.run_with_cache(batch_of(3, 9))
    for i in range(net.cfg.n_layers):
        a = f"blocks.{i}.attn."
        z, W_O = cache[a + "hook_z"], net.params[a + "W_O"]
        by_hand = np.einsum("bphd,hdm->bphm", z, W_O)
        np.testing.assert_allclose(cache[a + "hook_result"], by_hand, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(cache[a + "hook_result"].sum(2) + net.params[a + "b_O"],
                                   cache[f"blocks.{i}.hook_attn_out"], rtol=1e-12, atol=1e-14)  # fmt: skip


def test_replacing_one_heads_result_is_that_head_switched_off(shipped):
    net = shipped["digits-0-9"]
    t = batch_of(4, 10)

    def off(x, hook):
        x = x.copy()
        x[:, :, 2] = 0.0
        return x

    def z_off(z, hook):
        z = z.copy()
        z[:, :, 2] = 0.0
        return z

    by_result = net.run_with_hooks(t, [("blocks.1.attn.hook_result", off)])
    by_z = net.run_with_hooks(t, [("blocks.1.attn.hook_z", z_off)])
    np.testing.assert_array_equal(by_result, by_z)  # z_h = 0 gives a write of exactly 0
    assert np.abs(by_result - net.forward(t)).max() > 1e-3


@pytest.mark.parametrize("kind", list(KINDS))
def test_the_loss_rows_shortcut_is_the_full_run_at_those_rows(kind):
    """forward(rows=...) skips the other rows after the last attention pattern; the numbers agree (float64)."""
    net = Transformer(ModelConfig(d_model=16, n_heads=4, d_ff=24, seed=7, **KINDS[kind]), dtype=np.float64)
    t = batch_of(6, 9)
    rows = (np.array([5, 0, 2, 2, 0]), np.array([1, 4, 7, 0, 3]))  # unsorted, an example twice
    np.testing.assert_allclose(net.forward(t, rows=rows), net.forward(t)[rows], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("kind", list(KINDS))
def test_starting_at_a_blocks_input_or_middle_from_a_cached_stream_is_the_full_run(kind):
    """run_with_hooks(start_at=..., resid=...) runs only what follows; it agrees with the whole run, with
    and without rows, and a hook after the start still acts."""
    net = Transformer(ModelConfig(d_model=16, n_heads=4, d_ff=24, seed=5, **KINDS[kind]), dtype=np.float64)
    t = batch_of(5, 9)
    full, cache = net.run_with_cache(t)
    last = net.cfg.n_layers - 1
    rows = (np.array([4, 0, 2]), np.array([8, 1, 5]))
    zero = [(f"blocks.{last}.hook_mlp_out", lambda x, hook: np.zeros_like(x))]
    for layer in range(net.cfg.n_layers):
        for point in ("pre", "mid"):
            start = f"blocks.{layer}.hook_resid_{point}"
            if start == "blocks.0.hook_resid_pre":
                continue
            x = cache[start]
            np.testing.assert_allclose(net.run_with_hooks(t, [], start_at=start, resid=x), full, atol=1e-12)
            x_rows = x[rows] if (layer, point) == (last, "mid") else x  # the last block's middle, at rows
            np.testing.assert_allclose(net.run_with_hooks(t, [], rows=rows, start_at=start, resid=x_rows),
                                       full[rows], atol=1e-12)  # fmt: skip
            np.testing.assert_allclose(net.run_with_hooks(t, zero, start_at=start, resid=x),
                                       net.run_with_hooks(t, zero), atol=1e-12)  # fmt: skip
            assert np.abs(net.run_with_hooks(t, zero, start_at=start, resid=x) - full).max() > 1e-6


def test_starting_mid_run_refuses_hooks_before_it_a_wrong_stream_and_other_points(shipped):
    net = shipped["digits-0-9"]
    t = batch_of(2, 9)
    pre = net.run_with_cache(t)[1]["blocks.1.hook_resid_pre"]
    start = "blocks.1.hook_resid_pre"
    with pytest.raises(KeyError, match="before blocks.1.hook_resid_pre"):
        net.run_with_hooks(t, [("blocks.0.hook_mlp_out", lambda x, h: None)], start_at=start, resid=pre)
    with pytest.raises(ValueError, match="resid shaped"):
        net.run_with_hooks(t, [], start_at=start, resid=pre[:1])
    for bad in ("blocks.2.hook_resid_pre", "blocks.1.hook_mlp_out", "hook_embed"):
        with pytest.raises(ValueError, match="start_at must be"):
            net.run_with_hooks(t, [], start_at=bad, resid=pre)
