"""The Output & softmax and Overview pages' sentences (model_core.analysis.output), on the inputs that exposed them.

Every fact a sentence states is recomputed here another way: the logit lens from the cached hooks with a LayerNorm
and softmax written out in float64, "where the answer takes over" and "the largest change" by brute force over the
stages, the answer steps from Answer.step_probs and the teacher-forced run.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from explainer import format as fmt
from model_core import load_model
from model_core.analysis import output as ao
from model_core.analysis import run_example
from model_core.layers import LN_EPS
from tests.fixtures import IMPERFECT_99, ORIGINAL_09


@pytest.fixture(scope="module")
def small():
    return load_model("digits-0-9")  # bidirectional, post-norm, sinusoidal positions


@pytest.fixture(scope="module")
def big():
    return load_model(IMPERFECT_99)  # causal, pre-norm with ln_final, learned positions; with real mistakes


def softmax64(z):
    z = np.asarray(z, dtype=np.float64)
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def lens_by_hand(model, run, pos) -> np.ndarray:
    """[stage, vocab]: each cached stream at `pos` through (pre-norm: a float64 LayerNorm with ln_final's gain and
    bias) W_U + b_U and a float64 softmax. The stages are named hooks, not residual_stages."""
    net, p = model.transformer, model.transformer.params
    pre = net.cfg.norm == "pre"
    names = ["blocks.0.hook_resid_pre"]
    for i in range(net.cfg.n_layers):
        names += [f"blocks.{i}.hook_resid_mid", f"blocks.{i}.hook_resid_post"] if pre else \
                 [f"blocks.{i}.ln1.hook_out", f"blocks.{i}.ln2.hook_out"]  # fmt: skip
    rows = []
    for name in names:
        x = run.cache[name][0, pos].astype(np.float64)
        if pre:
            x = (x - x.mean()) / math.sqrt(x.var() + LN_EPS) * p["ln_final.w"] + p["ln_final.b"]
        rows.append(softmax64(x @ p["unembed.W_U"].astype(np.float64) + p["unembed.b_U"]))
    return np.stack(rows)


def lens(model, run, pos):
    """(stage names, probs [stage, vocab]) as the page gets them, checked against `lens_by_hand`."""
    out = ao.logit_lens(model.transformer, run.cache, pos)
    probs = np.stack([q for _, q in out])
    np.testing.assert_allclose(probs, lens_by_hand(model, run, pos), rtol=2e-4, atol=1e-6)
    return [s for s, _ in out], probs


def tok_of(model):
    return lambda i: fmt.code(model.vocab.decode([int(i)])[0])


def texts(model, reading, stages, probs, true_id):
    return ao.lens_text(reading, stages, probs, true_id, model.transformer.cfg.norm, tok=tok_of(model),
                        pct=fmt.percent, with_log=fmt.with_log)  # fmt: skip


def brute_takeover(tops, winner):
    return min(s for s in range(len(tops)) if all(t == winner for t in tops[s:]))


# ================================================================ the logit lens
def test_lens_flip_on_max_3_0_0(big):
    """digits-0-99 `Max ( 3 0 0 )`: the true 3 is on top after block 1's attention and block 1's FFN takes it away."""
    run = run_example(big, "Max ( 3 0 0 )")
    pos, v = run.answer_pos, big.vocab
    stages, probs = lens(big, run, pos)
    three, zero = v.id("3"), v.id("0")
    assert int(run.train_targets[pos]) == three
    tops = probs.argmax(-1)
    r = ao.read_lens(probs, three)
    # the facts, by brute force
    assert r.winner == zero == run.answer.step_probs[0].argmax()  # the model answers 0: wrong
    assert r.takeover == brute_takeover(tops, zero) == len(stages) - 1
    assert stages[3] == "block 1 mid" and tops[3] == three and probs[3, three] > 0.99  # top after block 1's attention
    assert r.lost_top and r.losses == ((4, zero),)  # ... and block 1's FFN takes it away
    change = np.abs(np.diff(probs[:, three]))
    assert r.jump == int(np.argmax(change)) + 1 == 3
    assert r.input_free == (0,)
    text = texts(big, r, stages, probs, three)
    assert text.startswith(f"The model answers `0` here: it is the top token only at the last stage, **block 1 out** "
                           f"({fmt.percent(probs[4, zero])}).")  # fmt: skip
    assert (f"The true `3` first becomes the top token at stage **block 1 mid** ({fmt.percent(probs[3, three])}), "
            f"loses the top to `0` through block 1's FFN ({fmt.percent(probs[4, three])} against "
            f"{fmt.percent(probs[4, zero])} at **block 1 out**) and ends at {fmt.with_log(probs[4, three])}.") in text
    assert "takes it back" not in text  # it never gets the top back
    assert (f"comes through block 1's attention: it rises from {fmt.percent(probs[2, three])} at **block 0 out** to "
            f"{fmt.percent(probs[3, three])} at **block 1 mid**.") in text


def test_max_6_57_6_keeps_its_answer_from_block_0_mid(big):
    """The brief's `Max ( 6 57 6 )`: on the shipped digits-0-99 the 5 does not flip; the text says where it stays."""
    run = run_example(big, "Max ( 6 57 6 )")
    stages, probs = lens(big, run, run.answer_pos)
    five = big.vocab.id("5")
    r = ao.read_lens(probs, five)
    tops = probs.argmax(-1)
    assert r.winner == five and not r.lost_top
    assert r.takeover == brute_takeover(tops, five) == 1
    text = texts(big, r, stages, probs, five)
    assert text.startswith(f"The model's answer is the true `5`: it is the top token from **block 0 mid** "
                           f"({fmt.percent(probs[1, five])}) on, and ends at {fmt.with_log(probs[-1, five])}.")
    # the largest change: block 1's attention, brute force
    assert r.jump == int(np.argmax(np.abs(np.diff(probs[:, five])))) + 1 == 3
    assert "comes through block 1's attention: it rises" in text


def test_true_token_on_top_only_at_the_input_free_stage_is_marked(small):
    """digits-0-9 `First ( 5 0 0 )`: the 5 is on top at embed + pos (as for every input), loses it, gets it back."""
    run = run_example(small, "First ( 5 0 0 )")
    stages, probs = lens(small, run, run.answer_pos)
    five = small.vocab.id("5")
    tops = probs.argmax(-1).tolist()
    rival = tops[2]  # the token that takes the top from it (the model's own)
    assert tops == [five, five, rival, five, five] and rival != five
    r = ao.read_lens(probs, five)
    assert r.losses == ((2, rival),) and r.takeover == brute_takeover(tops, five) == 3
    text = texts(small, r, stages, probs, five)
    assert (f"first becomes the top token at stage **embed + pos** ({fmt.percent(probs[0, five])}; that stage reads "
            f"only the token at this position), loses the top to `{small.vocab.decode([rival])[0]}` through block 0's "
            "FFN and the LayerNorm after it"
            ) in text  # fmt: skip
    assert f"takes it back at **block 1 mid** ({fmt.percent(probs[3, five])})" in text


def test_answer_on_top_at_every_stage_names_the_input_free_stage(small):
    """digits-0-9 `Max ( 5 5 2 )` (a tie in the input): 5 is on top at every stage, embed + pos included."""
    run = run_example(small, "Max ( 5 5 2 )")
    stages, probs = lens(small, run, run.answer_pos)
    five = small.vocab.id("5")
    assert (probs.argmax(-1) == five).all()
    r = ao.read_lens(probs, five)
    assert r.takeover == 0
    assert texts(small, r, stages, probs, five).startswith(
        f"The model's answer is the true `5`: it is the top token at every stage, from **embed + pos** "
        f"({fmt.percent(probs[0, five])}; that stage reads only the token at this position) on")


def test_read_lens_by_hand():
    probs = np.array([[0.6, 0.3, 0.1],   # top 0 (true)
                      [0.2, 0.7, 0.1],   # top 1: the true 0 loses the top
                      [0.5, 0.4, 0.1],   # top 0 again
                      [0.1, 0.1, 0.8],   # top 2: loses it again
                      [0.15, 0.05, 0.8]])  # fmt: skip
    r = ao.read_lens(probs, 0)
    assert r.winner == 2 and r.takeover == 3 and r.losses == ((1, 1), (3, 2)) and r.lost_top
    assert r.jump == 3 and r.tracked == 0  # |0.1 - 0.5| is the largest change of p(0)
    none = ao.read_lens(probs, None)
    assert none.tracked == 2 and none.jump == 3 and none.losses == () and not none.lost_top
    text = ao.lens_text(none, ["embed + pos", "block 0 mid", "block 0 out", "block 1 mid", "block 1 out"], probs, None,
                        "pre", tok=lambda i: f"`t{i}`", pct=fmt.percent, with_log=fmt.with_log)  # fmt: skip
    assert text.startswith("The model's answer `t2` is the top token from **block 1 mid** (80.0%) on.")
    assert "p(`t2`), the answer's (there is no true token here), from one stage to the next" in text
    assert "comes through block 1's attention: it rises from 10.0% at **block 0 out** to 80.0%" in text
    assert "true" not in text.replace("no true token", "")
    # the winner as the true token: on top from stage 3 and never lost
    r = ao.read_lens(probs, 2)
    assert r.losses == () and r.takeover == 3 and r.jump == 3
    assert ao.sublayer_before(1, "post") == "block 0's attention and the LayerNorm after it"
    assert ao.sublayer_before(4, "pre") == "block 1's FFN"


def test_true_token_never_on_top():
    probs = np.array([[0.6, 0.3, 0.1], [0.7, 0.2, 0.1], [0.9, 0.02, 0.08]])
    r = ao.read_lens(probs, 2)
    assert r.losses == () and r.takeover == 0
    text = ao.lens_text(r, ["embed + pos", "block 0 mid", "block 0 out"], probs, 2, "pre",
                        tok=lambda i: f"`t{i}`", pct=fmt.percent, with_log=fmt.with_log)  # fmt: skip
    assert "The true `t2` is the top token at no stage; it ends at 8.0%" in text
    assert "it falls from 10.0% at **block 0 mid** to 8.0% at **block 0 out**" in text  # |-0.02| > 0


# ================================================================ the embed + pos stage
def test_embedding_stage_is_the_same_for_every_input_with_that_token_and_position(small, big):
    """What embedding_stage_text says the row depends on: its lens row is equal across inputs sharing the token and
    position there, and the next stage (which reads the input) is not."""
    def rows(model, text, pos):
        run = run_example(model, text)
        return lens(model, run, pos)[1], run

    # bidirectional: every input has `=` at position 8
    a, ra = rows(small, "Max ( 7 2 9 )", 8)
    b, rb = rows(small, "Min ( 1 5 3 )", 8)
    assert ra.answer_pos == rb.answer_pos == 8
    np.testing.assert_array_equal(a[0], b[0])
    assert not np.allclose(a[1], b[1])
    text = ao.embedding_stage_text(ra.labels, 8, 8, False, code=fmt.code)
    assert text.startswith("**embed + pos** is the same for every input: at position 8 the stream is still only the "
                           "embedding of `=` plus position 8's positional vector, and every input of this task has "
                           "`=` at position 8.")  # fmt: skip
    # causal, first answer step: the same for inputs with as many digits (`=` at the same position) ...
    a, ra = rows(big, "Max ( 3 0 0 )", 8)
    b, rb = rows(big, "Min ( 4 1 8 )", 8)
    assert ra.answer_pos == rb.answer_pos == 8
    np.testing.assert_array_equal(a[0], b[0])
    assert not np.allclose(a[1], b[1])
    assert ao.embedding_stage_text(ra.labels, 8, 8, True, code=fmt.code).startswith(
        "**embed + pos** is the same for every input whose values have 3 digits in all: at position 8")
    # ... and not for an input with more digits, whose `=` is elsewhere
    c, rc = rows(big, "Max ( 6 57 6 )", 9)
    assert rc.answer_pos == 9
    assert ao.embedding_stage_text(rc.labels, 9, 9, True, code=fmt.code).startswith(
        "**embed + pos** is the same for every input whose values have 4 digits in all: at position 9")
    # causal, later step: the token written there and the position
    assert ra.labels[9] == "0"
    d, rd = rows(big, "Min ( 0 5 7 )", 9)
    assert rd.labels[9] == "0"
    np.testing.assert_array_equal(lens(big, ra, 9)[1][0], d[0])
    assert ao.embedding_stage_text(ra.labels, 9, 8, True, code=fmt.code).startswith(
        "**embed + pos** reads nothing of the input but that one token: at position 9 the stream is still only the "
        "embedding of `0` (the model's answer token 1) plus position 9's positional vector, the same for every "
        "sequence with `0` at position 9.")  # fmt: skip


# ================================================================ the whole answer (Overview)
def answer_text_of(model, run):
    true_ids = run.train_targets[run.train_targets >= 0]
    a = run.answer
    true = (f"{a.expression.answer} ({fmt.code(' '.join(model.vocab.decode(true_ids)))})" if model.causal
            else fmt.code(a.expression.answer))  # fmt: skip
    steps = ao.answer_steps(a.step_probs, true_ids)
    return steps, ao.answer_text(steps, fmt.code(" ".join(a.answer_tokens)), a.correct, true, model.causal,
                                 tok=tok_of(model), pct=fmt.percent, with_log=fmt.with_log)  # fmt: skip


def test_wrong_causal_answer_names_the_step_it_goes_wrong(big):
    run = run_example(big, "Max ( 3 0 0 )")
    a, v = run.answer, big.vocab
    assert not a.correct and a.answer_tokens == ["0", "<eos>"] and a.expression.answer == 3
    steps, text = answer_text_of(big, run)
    # step 1 read exactly the true input: its p(3) is the teacher-forced run's softmax at `=`
    p_true = softmax64(run.grad_cache["hook_logits"][0, run.answer_pos])[v.id("3")]
    assert steps[0].true == v.id("3") and steps[0].p_true == pytest.approx(p_true, rel=1e-5)
    assert steps[1].true is None  # it read its own wrong 0: the true answer's next token is not comparable
    assert ao.first_wrong_step(steps) is steps[0]
    p_written = a.step_probs.max(axis=-1)
    assert ao.weakest_step(steps).step == int(np.argmin(p_written)) == 0
    assert text.startswith("The model writes `0 <eos>` in 2 steps (one token each), which is wrong: the answer is 3 "
                           "(`3 <eos>`).")  # fmt: skip
    assert (f"It goes wrong at step 1: it writes `0` ({fmt.percent(p_written[0])}) where the true token `3` gets "
            f"{fmt.percent(a.step_probs[0, v.id('3')])}.") in text
    assert f"is step 1 (the step where it goes wrong): `0` at {fmt.with_log(p_written[0])}" in text


def test_right_causal_answer_names_its_weakest_step(big):
    run = run_example(big, "Max ( 6 57 6 )")
    steps, text = answer_text_of(big, run)
    p_written = run.answer.step_probs.max(axis=-1)
    weak = int(np.argmin(p_written))
    assert ao.first_wrong_step(steps) is None and all(s.true == s.chosen for s in steps)
    assert text.startswith("The model writes `5 7 <eos>` in 3 steps (one token each), which is right.")
    token = big.vocab.decode([int(run.answer.step_probs[weak].argmax())])[0]
    assert (f"Its weakest step, the one whose written token got the lowest probability, is step {weak + 1}: "
            f"`{token}` at {fmt.with_log(p_written[weak])}.") in text
    assert "goes wrong" not in text and "wrong" not in text


def test_almost_certain_bidirectional_answer_is_not_100_percent():
    small = load_model(ORIGINAL_09)  # more confident than today's digits-0-9 (tests/fixtures)
    run = run_example(small, "Max ( 7 2 9 )")
    p = float(run.answer.step_probs[0].max())
    assert 0.9995 < p < 1.0  # a fixed ":.1%" would write "100.0%"
    steps, text = answer_text_of(small, run)
    assert fmt.percent(run.answer.confidence) == fmt.percent(p) == "99.9933%"
    assert text == (f"The model answers `9`, which is right. At `=` it gives `9` a probability of {fmt.with_log(p)}; "
                    f"every other token shares the rest, {fmt.percent(1 - p)}.")  # fmt: skip
    assert "100" not in text


def test_wrong_bidirectional_answer():
    """digits-0-9 answers every input right, so the wrong branch is checked on made-up probabilities."""
    probs = np.array([[0.1, 0.6, 0.3]])
    steps = ao.answer_steps(probs, [2])
    text = ao.answer_text(steps, "`1`", False, "`2`", False, tok=lambda i: f"`{i}`", pct=fmt.percent,
                          with_log=fmt.with_log)  # fmt: skip
    assert text == (f"The model answers `1`, which is wrong: the answer is `2`. At `=` it gives `1` a probability of "
                    f"{fmt.with_log(0.6)}, and the true `2` {fmt.with_log(0.3)}.")  # fmt: skip


def test_answer_steps_when_the_model_stops_early():
    """Writing <eos> (id 0 here) where the true answer has another digit: wrong at that step, nothing after."""
    probs = np.array([[0.1, 0.9, 0.0], [0.8, 0.05, 0.15]])  # writes 1, then <eos>
    steps = ao.answer_steps(probs, [1, 2, 0])
    assert [(s.chosen, s.true) for s in steps] == [(1, 1), (0, 2)]
    assert ao.first_wrong_step(steps).step == 1 and ao.weakest_step(steps).step == 1  # 0.8 < 0.9
