"""model_core.interp: inputs and roles without running the model; direct logit attribution that sums to the
real logit (the model's own forward pass is the reference), for pre- and post-norm models."""

import numpy as np
import pytest

from model_core import TaskConfig, TaskModel, interp
from model_core.task import encode

KINDS = {
    "post-norm bidirectional": dict(),
    "post-norm causal": dict(causal=True, positional="learned", activation="gelu"),
    "pre-norm causal": dict(causal=True, norm="pre", positional="learned", activation="gelu", n_layers=3),
    "pre-norm bidirectional": dict(norm="pre", n_layers=1),
}


def random_model(kind: str, max_value: int = 9) -> TaskModel:
    opts = KINDS[kind]
    task = TaskConfig(max_value=max_value)
    return TaskModel.new(task, d_model=16, n_heads=4, d_ff=24, seed=3, **opts)


# ---------------------------------------------------------------- inputs and roles
def test_batch_is_the_training_encoding_and_runs_nothing(shipped):
    model = shipped["digits-0-99"]
    texts = ["Max ( 47 82 19 )", "min(1, 53, 2)"]
    b = interp.batch(model, texts)
    ref = encode(model.expressions([model.parse(t) for t in texts]), model.vocab, causal=True)
    np.testing.assert_array_equal(b.tokens, ref.tokens)
    np.testing.assert_array_equal(b.answer_pos, ref.answer_pos)


def test_roles_on_0_9(shipped):
    model = shipped["digits-0-9"]
    (tokens,) = interp.batch(model, ["Max ( 5 3 9 )"]).tokens
    assert interp.roles(model, tokens) == ["op", "(", "v1", ",", "v2", ",", "v3", ")", "="]


def test_roles_on_0_99_shift_with_the_number_of_digits(shipped):
    model = shipped["digits-0-99"]
    b = interp.batch(model, ["Max ( 47 82 19 )", "Min ( 1 53 2 )"])
    assert interp.roles(model, b.tokens[0]) == [
        "op", "(", "v1.tens", "v1.ones", ",", "v2.tens", "v2.ones", ",", "v3.tens", "v3.ones", ")", "=",
        "ans.0", "ans.1"]  # fmt: skip
    assert interp.roles(model, b.tokens[1]) == [
        "op", "(", "v1.ones", ",", "v2.tens", "v2.ones", ",", "v3.ones", ")", "=", "ans.0", "pad", "pad", "pad"]
    for i, t in enumerate(b.tokens):
        assert interp.roles(model, t)[b.answer_pos[i]] == "="


def test_a_bad_expression_is_a_parse_error(shipped):
    from model_core import ParseError

    with pytest.raises(ParseError, match="Unknown operation"):
        interp.batch(shipped["digits-0-9"], ["Mx ( 1 2 3 )"])


# ---------------------------------------------------------------- direct logit attribution
@pytest.mark.parametrize("name", ["digits-0-9", "digits-0-99"])
def test_the_parts_sum_to_the_real_logit_on_the_shipped_models(shipped, name):
    model = shipped[name]
    b = interp.batch(model, ["Max ( 5 3 9 )", "First ( 3 5 6 )", "Min ( 7 7 2 )", "Last ( 0 9 4 )"])
    att = interp.attribute(model.transformer, b.tokens, b.answer_pos)
    logits = model.transformer.forward(b.tokens)[np.arange(4), b.answer_pos]  # the model's own numbers
    np.testing.assert_array_equal(att.logit_total, logits[np.arange(4), att.answer])
    assert att.residual_error() < 1e-4  # float32
    np.testing.assert_allclose(att.diff.sum(1), att.diff_total, atol=1e-4, rtol=0)
    assert (att.answer == logits.argmax(-1)).all() and (att.wrong != att.answer).all()
    assert att.names[:2] == ["embed", "pos_embed"] and att.names[-1] == "b_U" and len(att.names) == att.logit.shape[1]
    assert "frozen" in att.note


@pytest.mark.parametrize("kind", list(KINDS))
def test_the_parts_sum_to_the_real_logit_in_float64_for_every_kind(kind):
    model = random_model(kind)
    net = model.transformer.astype(np.float64)
    b = interp.batch(model, ["Max ( 5 3 9 )", "Second ( 1 8 2 )", "Min ( 4 4 4 )"])
    positions = b.answer_pos + (1 if net.cfg.causal else 0)  # a causal model: also a later step
    att = interp.attribute(net, b.tokens, positions, answer=np.array([3, 11, 20]))
    np.testing.assert_array_equal(att.answer, [3, 11, 20])
    assert att.residual_error() < 1e-9
    np.testing.assert_allclose(att.diff.sum(1), att.diff_total, atol=1e-9, rtol=0)
    n_ln_biases = 2 * net.cfg.n_layers if net.cfg.norm == "post" else 1
    assert len(att.names) == 2 + net.cfg.n_layers * (net.cfg.n_heads + 2) + n_ln_biases + 1


def test_a_heads_part_is_its_write_through_the_frozen_layer_norms():
    """Pre-norm, by hand: (result - mean) / scale * w @ W_U[:, answer] for one head."""
    model = random_model("pre-norm causal")
    net = model.transformer.astype(np.float64)
    b = interp.batch(model, ["Max ( 5 3 9 )"])
    att = interp.attribute(net, b.tokens, b.answer_pos)
    _, cache = net.run_with_cache(b.tokens)
    p, pos, a = net.params, b.answer_pos[0], att.answer[0]
    r = cache["blocks.1.attn.hook_result"][0, pos, 2]
    scale = cache["ln_final.hook_scale"][0, pos]
    by_hand = (r - r.mean()) / scale * p["ln_final.w"] @ p["unembed.W_U"][:, a]
    assert att.logit[0, att.names.index("L1H2")] == pytest.approx(by_hand, rel=1e-12)


@pytest.mark.parametrize("kind", ["post-norm bidirectional", "pre-norm causal"])
def test_every_neuron_sums_to_the_mlps_part_when_b_out_is_zero(kind):
    model = random_model(kind)
    net = model.transformer.astype(np.float64)
    layer = 0
    net.params[f"blocks.{layer}.mlp.b_out"][:] = 0.0  # then the MLP's write is the neurons' writes alone
    b = interp.batch(model, ["Max ( 5 3 9 )", "Last ( 2 6 1 )"])
    att = interp.attribute(net, b.tokens, b.answer_pos)
    top, contrib = interp.neuron_attribution(net, b.tokens, b.answer_pos, layer, k=net.cfg.d_ff)
    np.testing.assert_allclose(contrib.sum(1), att.diff[:, att.names.index(f"L{layer}.mlp")], rtol=1e-9, atol=1e-12)
    assert (np.abs(contrib[:, :-1]) >= np.abs(contrib[:, 1:])).all()  # largest first
    assert sorted(top[0]) == list(range(net.cfg.d_ff))
