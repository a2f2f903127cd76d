"""model_core.interp.steer: forcing heads onto one key is exactly a one-hot pattern row, and on the shipped
0-9 model some layer's heads select and copy: steered to slot s, the answer becomes slot s's value."""

import numpy as np
import pytest

from model_core import enumerate_all, interp, load_model


@pytest.fixture(scope="module")
def model():
    return load_model("digits-0-9")


def test_a_steered_row_is_one_hot_and_nothing_else_changes(model):
    b = interp.batch(model, ["Max ( 5 3 9 )", "First ( 2 7 1 )"])
    q = b.answer_pos
    _, clean = model.transformer.run_with_cache(b.tokens)
    _, steered = model.transformer.run_with_cache(b.tokens, fwd_hooks=interp.steering_hooks(model, ["L1H2"], q, 4))
    pattern = steered["blocks.1.attn.hook_pattern"]  # [batch, head, q, k]
    np.testing.assert_array_equal(pattern[np.arange(2), 2, q], np.eye(pattern.shape[-1])[[4, 4]])
    np.testing.assert_array_equal(np.delete(pattern, 2, axis=1), np.delete(clean["blocks.1.attn.hook_pattern"], 2, 1))
    np.testing.assert_array_equal(steered["blocks.1.attn.hook_z"][:, :, 2][np.arange(2), q],
                                  clean["blocks.1.attn.hook_v"][:, 4, 2])  # z = the value at key 4  # fmt: skip


def test_some_layer_selects_and_copies(model):
    """Steering a whole layer's heads at `=` to slot s gives slot s's value on most inputs (rate printed)."""
    every = enumerate_all(model.task)
    distinct = np.flatnonzero([len(set(v)) == 3 for v in every.values])
    exprs = every.subset(np.random.default_rng(0).permutation(distinct)[:300])
    b = model.encode(exprs)
    slots = [i for i, r in enumerate(interp.roles(model, b.tokens[0])) if r.startswith("v")]
    cfg = model.transformer.cfg
    rates = {}
    for layer in range(cfg.n_layers):
        heads = [f"L{layer}H{h}" for h in range(cfg.n_heads)]
        follows = [interp.steer(model, b.tokens, b.answer_pos, heads, k) == model.vocab.encode(
            [str(v) for v in exprs.values[:, j]]) for j, k in enumerate(slots)]  # fmt: skip
        rates[layer] = float(np.mean(follows))
    print(f"answer follows the steered slot: {rates}")
    assert max(rates.values()) >= 0.8
    with pytest.raises(ValueError, match="Only heads"):
        interp.steering_hooks(model, ["L1.mlp"], 8, 2)
