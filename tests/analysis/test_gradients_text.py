"""The Backprop page's sentences (model_core.analysis.gradients.*_text), on the inputs that exposed fixed text.

Every number a sentence quotes is checked against an independent reference: SGD steps taken by hand on a float64
copy of the model (its own backward pass, params - lr * grads, applied here), gradients from a fresh
`run_with_cache(..., grads=True)`, and the model's greedy answers with the hand-stepped weights.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from model_core import load_model
from model_core.analysis import gradients as bp
from model_core.analysis import run_example
from model_core.model import Transformer
from tests.fixtures import IMPERFECT_99


def code(text) -> str:
    return f"`{text}`"


@pytest.fixture(scope="module")
def m99():
    """A digits-0-99 model with real mistakes (the shipped one has none): see tests/fixtures."""
    return load_model(IMPERFECT_99)


@pytest.fixture(scope="module")
def m9():
    return load_model("digits-0-9")


def hand_steps(model, run, lrs):
    """SGD steps by hand in float64 from the model's own weights: ([loss at the start, after each step], the
    stepped TaskModels, [||g||^2 where each step started])."""
    net = model.transformer.astype(np.float64)
    tokens, targets = run.train_tokens[None], run.train_targets[None]
    losses, models, g2s = [], [], []
    for lr in lrs:
        _, cache = net.run_with_cache(tokens, targets=targets, grads=True)
        losses.append(cache.loss)
        g2s.append(sum(float((g**2).sum()) for g in cache.param_grads.values()))
        net = Transformer(net.cfg, {k: v - lr * cache.param_grads[k] for k, v in net.params.items()})
        models.append(model.with_transformer(net))
    losses.append(net.run_with_cache(tokens, targets=targets)[1].loss)
    return losses, models, g2s


def checked_step(model, text, lr):
    """`sgd_step` on `text`, after checking its numbers against a step by hand."""
    run = run_example(model, text)
    step = bp.sgd_step(model, run, lr)
    (l0, l1), (stepped,), (g2,) = hand_steps(model, run, [lr])
    np.testing.assert_allclose([step.loss_before, step.loss_after], [l0, l1], rtol=1e-9)
    np.testing.assert_allclose(step.predicted_drop, lr * g2, rtol=1e-9)
    assert step.after.answer_tokens == stepped.answer(text).answer_tokens
    assert step.before.answer_tokens == run.answer.answer_tokens
    return step


def numbers_in(text: str, step: bp.SGDStep) -> None:
    """The sentence quotes this step's own numbers."""
    for shown in (f"{step.loss_before:.4e}", f"{step.loss_after:.4e}", f"{step.predicted_drop:.3e}",
                  f"{abs(step.drop):.3e}", f"Step {step.index} (η = {step.lr:g})"):  # fmt: skip
        assert shown in text, shown


# ---------------------------------------------------------------- one step's sentence
def test_a_small_step_that_matches_first_order_suggests_a_larger_eta(m99):
    # digits-0-99, Max ( 6 57 6 ), eta 0.1: the model is confident; the step falls as first order says.
    step = checked_step(m99, "Max ( 6 57 6 )", 0.1)
    assert step.predicted_drop < 0.01 * step.loss_before  # not an overshoot on this model (see the report)
    assert abs(step.drop / step.predicted_drop - 1) <= bp.FIRST_ORDER_TOLERANCE
    text = bp.step_text(step, code, lr_max=1.0)
    numbers_in(text, step)
    assert f"a fall of {step.drop:.3e} ({100 * step.drop / step.loss_before:.3g}% of it)" in text
    assert "matches the first-order prediction" in text and "invisibly small" in text
    assert "try one" in text and "overshoot" not in text
    assert "stays `57`, the right one" in text


def test_a_step_whose_prediction_exceeds_the_loss_overshoots_and_flips_a_wrong_answer(m99):
    # digits-0-99 answers Min ( 8 0 1 ) wrongly (1); at eta 0.1 first order predicts a fall of ~950x the loss.
    run = run_example(m99, "Min ( 8 0 1 )")
    assert run.answer.value == 1 and not run.answer.correct
    step = checked_step(m99, "Min ( 8 0 1 )", 0.1)
    assert step.predicted_drop > step.loss_before and step.drop > 0
    text = bp.step_text(step, code, lr_max=1.0)
    numbers_in(text, step)
    assert f"{step.predicted_drop / step.loss_before:.3g} times the loss itself" in text
    assert "overshoots" in text and f"fell by only {100 * step.drop / step.predicted_drop:.3g}%" in text
    assert "try" not in text and "invisibly" not in text
    assert step.after.value == 0
    assert "before the step it wrote `1` (wrong), after it `0` (right)." in text


def test_a_step_that_removes_nearly_all_of_the_loss_says_so(m99):
    # Min ( 8 0 1 ) at eta 0.001: first order predicts ~9.5x the loss, yet the step removes almost all of it.
    step = checked_step(m99, "Min ( 8 0 1 )", 0.001)
    assert step.predicted_drop > step.loss_before and step.drop >= bp.NEARLY_ALL * step.loss_before
    text = bp.step_text(step, code)
    assert "overshoots the range where the first-order prediction holds, though it still removed nearly all" in text
    assert "fell by only" not in text and "(right)." in text


def test_a_step_that_raises_the_loss_says_so(m99):
    step = checked_step(m99, "Min ( 8 0 1 )", 1.0)
    assert step.loss_after > step.loss_before
    text = bp.step_text(step, code, lr_max=1.0)
    numbers_in(text, step)
    assert f"a rise of {-step.drop:.3e}: the step made it worse" in text
    assert "so far that the loss rose" in text and "A small enough η always lowers it" in text
    shown = " ".join(step.after.answer_tokens)
    assert step.after.value is None and f"after it `{shown}` (not a number); the true answer is `0`." in text
    assert "fall of" not in text and "try one" not in text


def test_a_right_answer_that_a_large_step_breaks(m99):
    step = checked_step(m99, "Min ( 6 0 1 )", 1.0)
    assert step.before.correct and step.after.value is None and step.drop < 0
    text = bp.step_text(step, code)
    assert "before the step it wrote `0` (right), after it" in text and "(not a number)" in text


def test_a_confident_model_takes_an_invisibly_small_step(m9):
    step = checked_step(m9, "Max ( 7 2 9 )", 0.1)
    rel = step.drop / step.loss_before
    assert 0 < rel < bp.INVISIBLE
    text = bp.step_text(step, code, lr_max=1.0)
    numbers_in(text, step)
    assert f"‖g‖² = {step.predicted_drop / step.lr:.3e}" in text
    assert f"only {100 * step.predicted_drop / step.loss_before:.3g}% of the loss" in text
    assert "invisibly small" in text and "try one" in text
    at_max = bp.step_text(replace(step, lr=1.0), code, lr_max=1.0)
    assert "η is already the largest this page offers" in at_max and "try one" not in at_max


@pytest.mark.parametrize(
    ("drop", "pred", "says", "not_says"),
    [
        (0.7e-3, 1e-3, "curves upward", "overshoot"),  # between half and 90% of first order
        (0.3e-3, 1e-3, "overshoots (to second order", "curves"),  # under half, prediction below the loss
        (1.3e-3, 1e-3, "curves downward", "overshoot"),
        (-0.2e-3, 1e-3, "it rose instead", "fell by"),
        (0.0, 0.0, "The gradient is exactly 0", "first-order prediction"),
        (0.05, 0.051, "matches the first-order prediction", "try"),  # matched, but half the loss: not small
    ],
)
def test_each_comparison_with_first_order(m9, drop, pred, says, not_says):
    run = run_example(m9, "Max ( 7 2 9 )")
    step = bp.SGDStep(0.1, 0.1, 0.1 - drop, pred, run.answer, run.answer)
    text = bp.step_text(step, code)
    assert says in text and not_says not in text


def test_a_wrong_answer_that_stays_wrong(m99):
    run = run_example(m99, "Min ( 8 0 1 )")
    step = bp.SGDStep(1e-6, 0.6, 0.59, 0.011, run.answer, run.answer)
    assert bp.answer_change_text(step.before, step.after, code) == (
        "The model's answer stays `1` (wrong); the true answer is `0`."
    )


# ---------------------------------------------------------------- steps from where the last one left
def test_a_further_step_starts_from_the_last_ones_weights(m99):
    run = run_example(m99, "Min ( 8 0 1 )")
    first = bp.sgd_step(m99, run, 0.1)
    kept = {k: v.copy() for k, v in first.params.items()}
    second = bp.sgd_step(m99, run, 0.01, start=first.params, index=2)
    for k, v in first.params.items():
        np.testing.assert_array_equal(v, kept[k])  # the start is not modified
    losses, models, g2s = hand_steps(m99, run, [0.1, 0.01])
    np.testing.assert_allclose([first.loss_before, first.loss_after, second.loss_after], losses, rtol=1e-9)
    assert second.loss_before == first.loss_after and second.index == 2
    np.testing.assert_allclose(second.predicted_drop, 0.01 * g2s[1], rtol=1e-9)
    assert second.before.answer_tokens == first.after.answer_tokens
    assert second.after.answer_tokens == models[1].answer("Min ( 8 0 1 )").answer_tokens
    assert "Step 2 (η = 0.01)" in bp.step_text(second, code)


def test_precision_text_compares_the_change_with_float32s_error(m99, m9):
    run = run_example(m99, "Max ( 6 57 6 )")
    step = bp.sgd_step(m99, run, 0.1)
    loss64 = bp.float64_loss(m99, run)
    np.testing.assert_allclose(loss64, hand_steps(m99, run, [0.1])[0][0], rtol=1e-12)
    err = abs(run.grad_cache.loss - loss64)
    assert abs(step.drop) < err  # float32's own error in the loss is larger than the step
    text = bp.precision_text(run.grad_cache.loss, loss64, step.drop)
    assert f"{run.grad_cache.loss:.4e} against {loss64:.4e}" in text and f"{err:.1e}" in text
    assert "float32 could not show it" in text
    run = run_example(m99, "Min ( 8 0 1 )")
    step = bp.sgd_step(m99, run, 0.1)
    assert "could not show" not in bp.precision_text(run.grad_cache.loss, step.loss_before, step.drop)


# ---------------------------------------------------------------- the gradients' sentences
def fresh_grads(model, text):
    run = run_example(model, text)
    _, cache = model.transformer.run_with_cache(run.train_tokens[None], targets=run.train_targets[None], grads=True)
    return run, cache


@pytest.mark.parametrize(("name", "text"), [("digits-0-9", "Max ( 7 2 9 )"), ("digits-0-99", "Max ( 6 57 6 )"),
                                            ("digits-0-99", "Min ( 8 0 1 )")])  # fmt: skip
def test_the_stream_comparison_is_like_with_like(name, text):
    model = load_model(name)
    run, cache = fresh_grads(model, text)
    norms = bp.stream_grad_norms(model.transformer, run.grad_cache)
    resid = [n for n in model.transformer.hook_names() if n.startswith("blocks.") and ".hook_resid_" in n]
    assert [n for n, _ in norms] == resid
    assert {cache[n + "_grad"].shape for n in resid} == {(1, len(run.train_tokens), model.transformer.cfg.d_model)}
    ref = {n: np.linalg.norm(cache[n + "_grad"].astype(np.float64)) for n in resid}
    big, small = max(ref, key=ref.get), min(ref, key=ref.get)
    text_ = bp.stream_text(norms)
    assert f"largest at `{big}` (norm {ref[big]:.3e})" in text_ and f"smallest at `{small}`" in text_
    assert "hook_scale" not in text_ and "pattern`" not in text_


@pytest.mark.parametrize("name", ["digits-0-9", "digits-0-99"])
def test_param_text_shares_and_key_biases(name):
    model = load_model(name)
    run, cache = fresh_grads(model, "Max ( 7 2 9 )")
    norms = bp.param_grad_norms(model.transformer, run.grad_cache.param_grads)
    g = {k: v.astype(np.float64) for k, v in cache.param_grads.items()}
    total = sum((v**2).sum() for v in g.values())
    big = max(g, key=lambda k: (g[k] ** 2).sum())
    text = bp.param_text(norms)
    assert f"`{big}` ({np.sqrt((g[big] ** 2).sum()):.3e}, {100 * (g[big] ** 2).sum() / total:.3g}% of ‖g‖²" in text
    # The claim "a key bias's exact gradient is 0": in float64 it is rounding-small next to the others.
    net64 = model.transformer.astype(np.float64)
    _, c64 = net64.run_with_cache(run.train_tokens[None], targets=run.train_targets[None], grads=True)
    scale = max(np.abs(v).max() for v in c64.param_grads.values())
    for k, v in c64.param_grads.items():
        if k.endswith("attn.b_K"):
            assert np.abs(v).max() < 1e-12 * scale
    worst = max(v for n, v in norms if n.endswith("b_K"))
    assert f"the {worst:.1e} they get here is float32 rounding, the smallest of all the parameters." in text


def test_logit_grad_text_names_the_wrong_top_token(m99, m9):
    run, _ = fresh_grads(m99, "Min ( 8 0 1 )")
    g, pos = run.grad_cache, run.answer_pos
    true = int(run.train_targets[pos])

    def tok(i):
        return code(m99.vocab.decode([i])[0])

    text = bp.logit_grad_text(g["hook_logits_grad"][0, pos], g["hook_logits"][0, pos], true, pos, tok)
    top = int(np.argmax(g["hook_logits"][0, pos]))
    assert m99.vocab.decode([top]) == ["1"] and m99.vocab.decode([true]) == ["0"]
    assert f"{g['hook_logits_grad'][0, pos, true]:.3e}, negative" in text
    assert f"The largest is on `1` ({g['hook_logits_grad'][0, pos, top]:.3e})" in text
    run = run_example(m9, "Max ( 7 2 9 )")
    g, pos = run.grad_cache, run.answer_pos
    text = bp.logit_grad_text(g["hook_logits_grad"][0, pos], g["hook_logits"][0, pos], 20, pos, tok)
    assert "every other token's is positive" in text and "The largest" not in text
    # A probability that rounds to 1 (true token) or to 0 (others) in float32: said, not "negative" / "positive".
    row, logits = np.zeros(21, np.float32), np.zeros(21)
    logits[3], row[5] = 50.0, 1e-9
    text = bp.logit_grad_text(row, logits, 3, 0, tok)
    assert "probability 1" in text and "1 other tokens' are positive and 19 exactly 0" in text


def test_loss_formula_conditions_on_what_each_model_sees(m99, m9):
    causal, bidir = bp.loss_formula(True), bp.loss_formula(False)
    assert r"\mid x_{\le t})" in causal.latex and r"\mid x)" in bidir.latex
    assert "causal mask" in causal.reads and "no causal mask" in bidir.reads
    # The claims, on the models: change the first value; a causal model's logits before it stay, a
    # bidirectional model's at position 0 change (it sees the whole input).
    for model, say in ((m99, causal), (m9, bidir)):
        run = run_example(model, "Max ( 7 2 9 )")
        tokens = run.train_tokens.copy()
        base = model.transformer.forward(tokens[None])[0]
        tokens[2] = model.vocab.id("3")  # the first value
        moved = np.abs(model.transformer.forward(tokens[None])[0, :2] - base[:2]).max()
        assert (moved == 0) == model.causal, say
    assert m9.transformer.cfg.causal is False and m99.transformer.cfg.causal is True


def test_percentages_never_round_to_100():
    assert bp._pct(0.0356) == "3.56%" and bp._pct(1.0) == "100%" and bp._pct(0.5) == "50%"
    assert bp._pct(0.9999987) == "99.99987%" and bp._pct(1.0004) == "100.040%"
    assert bp._pct(0.99951) == "99.951%"
