"""model_core.interp.ablate: many ablations in one pass, each the same as its own hand-written hook."""

import numpy as np
import pytest

from model_core import interp
from model_core.task import make_splits

TEXTS = ["First ( 3 5 6 )", "Max ( 5 3 9 )", "Min ( 7 7 2 )"]


def measures(logits, answer):
    """(logit diff against the strongest other token, log-prob) of answer [n] in logits [n, vocab], float64."""
    z = logits.astype(np.float64)
    rows = np.arange(len(answer))
    others = z.copy()
    others[rows, answer] = -np.inf
    logp = z - z.max(-1, keepdims=True)
    logp -= np.log(np.exp(logp).sum(-1, keepdims=True))
    return z[rows, answer] - others.max(-1), logp[rows, answer]


@pytest.mark.parametrize("name", ["digits-0-9", "digits-0-99"])
def test_zeroing_a_head_is_the_hand_written_hook_on_z(shipped, name):
    model = shipped[name]
    net = model.transformer
    b = interp.batch(model, TEXTS)
    rows = np.arange(len(TEXTS))

    def z_off(z, hook):
        z = z.copy()
        z[:, :, 3] = 0.0
        return z

    clean = net.forward(b.tokens)[rows, b.answer_pos]
    answer = clean.argmax(-1)
    by_hand = net.run_with_hooks(b.tokens, [("blocks.0.attn.hook_z", z_off)])[rows, b.answer_pos]
    res = interp.ablate(model, b.tokens, b.answer_pos, [["L0H3"]])
    np.testing.assert_array_equal(res.answer, answer)
    diff, logp = measures(by_hand, answer)
    np.testing.assert_allclose(res.logit_diff[0], diff, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(res.logprob[0], logp, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(res.top[0], by_hand.argmax(-1))


@pytest.mark.parametrize("mean", [False, True])
def test_the_batched_sweep_equals_its_one_at_a_time_loop(shipped, mean):
    """To float32 rounding, not bit for bit: BLAS rounds the products of K * n rows differently from n rows."""
    model = shipped["digits-0-9"]
    b = interp.batch(model, TEXTS)
    sweep = interp.every_component(model.transformer) + [["L0H1", "L1H2"], ["L1.mlp.n7"]]
    res = interp.ablate(model, b.tokens, b.answer_pos, sweep, mean=mean)
    assert res.labels[-2:] == ["L0H1,L1H2", "L1.mlp.n7"] and res.logit_diff.shape == (len(sweep), len(TEXTS))
    for k, ab in enumerate(sweep):
        one = interp.ablate(model, b.tokens, b.answer_pos, [ab], mean=mean)
        np.testing.assert_allclose(res.logit_diff[k], one.logit_diff[0], rtol=0, atol=1e-5)
        np.testing.assert_allclose(res.logprob[k], one.logprob[0], rtol=0, atol=1e-5)
        np.testing.assert_array_equal(res.top[k], one.top[0])


def test_the_crucial_head_flips_a_first_answer(shipped):
    """On the shipped 0-9 model some single head's removal flips a First answer (found, not named)."""
    model = shipped["digits-0-9"]
    b = interp.batch(model, ["First ( 3 5 6 )", "First ( 6 9 2 )", "First ( 1 4 7 )", "First ( 8 0 5 )"])
    res = interp.ablate(model, b.tokens, b.answer_pos, interp.every_component(model.transformer))
    heads = [k for k, label in enumerate(res.labels) if "mlp" not in label]
    assert res.flipped[heads].any()
    assert (res.delta_logit_diff[res.flipped] < 0).all()  # a flip always lowers the answer's margin below 0
    assert (res.logit_diff[res.flipped] < 0).all()


def test_mean_over_the_example_itself_changes_nothing(shipped):
    """Mean-ablating with a reference set of just this example puts its own activations back."""
    model = shipped["digits-0-99"]
    exprs = model.expressions([model.parse("Max ( 47 82 19 )")])
    means = interp.mean_activations(model, exprs)
    b = interp.batch(model, ["Max ( 47 82 19 )"])
    res = interp.ablate(model, b.tokens, b.answer_pos, [["L0.mlp"], ["L1H2"], ["L1.mlp.n3"]], mean=True, means=means)
    np.testing.assert_allclose(res.delta_logit_diff, 0.0, atol=1e-4)


def test_a_causal_model_ignores_ablations_after_the_read_out(shipped):
    model = shipped["digits-0-99"]
    b = interp.batch(model, ["Max ( 47 82 19 )", "Min ( 1 53 2 )"])
    later = list(range(int(b.answer_pos.max()) + 1, b.tokens.shape[1]))
    res = interp.ablate(model, b.tokens, b.answer_pos, [["L0H0", "L1.mlp"]], at_positions=later)
    np.testing.assert_allclose(res.delta_logit_diff, 0.0, atol=1e-5)
    res = interp.ablate(model, b.tokens, b.answer_pos, [["L0H0", "L1.mlp"]])
    assert np.abs(res.delta_logit_diff).max() > 0.1


def test_the_default_means_are_cached_per_model(shipped):
    model = shipped["digits-0-9"]
    assert interp.mean_activations(model) is interp.mean_activations(model)


@pytest.mark.parametrize("name, phrase", [
    ("L2H0", "this model has 2 layer(s), L0-L1"), ("L0H4", "4 heads per layer, H0-H3"),
    ("L1.mlp.n256", "256 neurons"), ("head3", "Unknown component 'head3'"),
])  # fmt: skip
def test_unknown_components_are_refused_with_what_the_model_has(shipped, name, phrase):
    with pytest.raises(interp.ComponentError, match=phrase.replace("(", r"\(").replace(")", r"\)")):
        interp.parse_component(shipped["digits-0-9"].transformer, name)


def test_accuracy_under_an_ablation_is_the_share_of_answers_it_does_not_flip(shipped):
    """0-9 (every clean answer right): evaluate under ablation_hooks == 1 - the flip rate of `ablate`."""
    from model_core import enumerate_all

    model = shipped["digits-0-9"]
    every = enumerate_all(model.task)
    first = every.subset(np.flatnonzero(every.ops == 0))  # First, 1,000 expressions
    b = model.encode(first)
    for components in (["L0H3"], ["L1.mlp"], ["L0H1", "L1H2"]):
        for mean in (False, True):
            hooks = interp.ablation_hooks(model, components, mean=mean)
            acc = model.evaluate(first, fwd_hooks=hooks)["per_op"]["First"]
            flips = interp.ablate(model, b.tokens, b.answer_pos, [components], mean=mean).flipped[0]
            assert acc == pytest.approx(1.0 - flips.mean(), abs=2e-3)  # float32 rounding may tip a near tie
    assert model.evaluate(first)["accuracy"] == 1.0


def test_means_in_chunks_match_one_pass_over_the_whole_set(shipped, monkeypatch):
    from model_core.interp import ablation

    model = shipped["digits-0-99"]
    exprs = make_splits(model.task, seed=0).val.subset(slice(0, 50))  # lengths (digit counts) vary: padding
    monkeypatch.setattr(ablation, "MEAN_CHUNK", 7)  # 8 chunks, the last one short
    means = interp.mean_activations(model, exprs)
    tokens = model.encode(exprs).tokens
    _, cache = model.transformer.run_with_cache(tokens)
    real = (tokens != model.vocab.pad_id).astype(np.float64)  # [n, T]
    for name in ("blocks.0.attn.hook_result", "blocks.1.mlp.hook_post"):
        x = cache[name].astype(np.float64)
        want = np.einsum("nt,nt...->t...", real, x) / np.maximum(real.sum(0), 1).reshape((-1,) + (1,) * (x.ndim - 2))
        np.testing.assert_allclose(means[name], want, rtol=1e-5, atol=1e-6)
