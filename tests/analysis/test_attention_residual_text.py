"""The sentences of the Attention and Residual pages (model_core.analysis: attention, residual) against the numbers.

Each sentence is built on the inputs that exposed a false one: a tie (digits-0-9 `Max ( 5 5 2 )`, and the other ties
of tests/fixtures/cases.py), a diffuse head (largest weight < 0.3), a post-norm and a pre-norm model. The numbers
it quotes are recomputed here another way: the pattern from the cache in float64, the cosines from the hooks with
numpy, GELU's minimum on a fine grid of an independent formula, and its float32 zeros by evaluating every float32
number around them.
"""

from __future__ import annotations

import math
import re

import numpy as np
import pytest

from model_core import ModelConfig, TaskConfig, TaskModel, Transformer, load_model
from model_core import layers as L
from model_core.analysis import attention as aa
from model_core.analysis import residual as res
from model_core.analysis import run_example
from tests.fixtures import IMPERFECT_99, cases


@pytest.fixture(scope="module")
def post_model():
    return load_model("digits-0-9")  # bidirectional, post-norm, ReLU


@pytest.fixture(scope="module")
def pre_model():
    return load_model(IMPERFECT_99)  # causal, pre-norm, GELU (the earlier digits-0-99: its L0H3 is diffuse here)


@pytest.fixture(scope="module")
def random_pre():
    """A pre-norm model with random weights, its own task (not a shipped one)."""
    return TaskModel.new(TaskConfig(max_value=9), name="random-pre", norm="pre", activation="gelu", n_layers=3,
                         d_model=32, d_ff=64, seed=3)  # fmt: skip


def name(labels):
    return lambda k: f"`{labels[k]}` (position {k})"


def row_at(model, text, layer, head):
    """(pattern row at the answer position in float64 [k_pos], the run)."""
    run = run_example(model, text)
    return run.cache[f"blocks.{layer}.attn.hook_pattern"][0, head, run.answer_pos].astype(np.float64), run


# ================================================================ where a query's attention goes
def test_a_tie_of_two_equal_values_names_both(post_model):
    """Where a head's largest key holds a value that a second key holds too (both fives of `Max ( 5 5 2 )`), the
    sentence counts them together; found on every tie of cases.TIES and every head, not assumed of one head."""
    seen = set()
    for text, layer, head, row, run in cases.answer_rows(post_model, cases.TIES):
        labels = run.labels
        top = int(np.argmax(row))
        pair = [k for k, t in enumerate(labels) if t == labels[top] and t.isdigit()]
        if len(pair) != 2 or row[pair].sum() <= 0.5 or min(row[pair]) < aa.SAME_TOKEN_SHARE:
            continue  # this head's largest key is not one of two equal values, or it does not read both
        focus = aa.attention_focus(row, labels)
        seen.add((text, layer, head))
        assert focus.kind == "same token" and sorted(focus.keys) == pair
        sentence = aa.focus_text(focus, name(labels))
        assert sentence.startswith(f"puts {row[pair].sum():.2f} of its attention on 2 keys that hold the same token")
        for k in sorted(pair, key=lambda k: -row[k]):  # largest first, each with its own weight
            assert f"{row[k]:.2f} on `{labels[k]}` (position {k})" in sentence
        assert "spreads" not in sentence
    assert len(seen) >= 2, "the shipped model should read both equal values of some ties"


def test_two_keys_within_the_tolerance_share_the_attention():
    tokens = ["a", "b", "c", "d"]
    focus = aa.attention_focus(np.array([0.02, 0.49, 0.47, 0.02]), tokens)
    assert focus.kind == "shared" and focus.keys == (1, 2) and focus.total == pytest.approx(0.96)
    text = aa.focus_text(focus, name(tokens))
    assert text == "shares its attention: 0.49 on `b` (position 1) and 0.47 on `c` (position 2), 0.96 together"
    # just outside the tolerance: one key has the majority
    focus = aa.attention_focus(np.array([0.0, 0.52, 0.46, 0.02]), tokens)
    assert focus.kind == "one" and focus.keys == (1,)
    assert aa.focus_text(focus, name(tokens)) == "puts 0.52 of its attention on `b` (position 1)"
    # three about equal is no tie: a spread row, the three named
    focus = aa.attention_focus(np.array([0.34, 0.33, 0.32, 0.01]), tokens)
    assert focus.kind == "spread" and focus.keys == (0, 1, 2)


@pytest.mark.parametrize("kind, case", [("post", None),  # a diffuse head found on the model
                                        ("pre", ("Max ( 47 82 19 )", 0, 3))])  # fmt: skip
def test_a_diffuse_head_spreads_its_attention(kind, case, post_model, pre_model):
    model = post_model if kind == "post" else pre_model
    text, layer, head = case or cases.diffuse(model)
    row, run = row_at(model, text, layer, head)
    assert row.max() < 0.3, "the exposing head should be diffuse on this example"
    focus = aa.attention_focus(row, run.labels)
    assert focus.kind == "spread"
    sentence = aa.focus_text(focus, name(run.labels))
    assert sentence.startswith("spreads its attention, no key getting more than half of it: ")
    top = np.argsort(-row, kind="stable")[:3]
    quoted = re.findall(r"(\d\.\d\d) on `([^`]*)` \(position (\d+)\)", sentence)
    assert [(float(w), t, int(k)) for w, t, k in quoted] == [(round(row[k], 2), run.labels[k], k) for k in top]
    assert sentence.endswith(f", {row[top].sum():.2f} together")
    assert "puts" not in sentence


def test_a_focused_head_puts_its_attention_on_one_key(post_model):
    row, run = row_at(post_model, "First ( 3 5 6 )", 1, 0)  # the head that reads the first value
    k = int(row.argmax())
    assert row[k] > 0.5
    focus = aa.attention_focus(row, run.labels)
    assert focus.kind == "one"
    assert aa.focus_text(focus, name(run.labels)) == f"puts {row[k]:.2f} of its attention on `3` (position {k})"


# ================================================================ what Q, K and V are computed from
@pytest.mark.parametrize("kind", ["post", "pre", "random-pre"])
def test_qkv_text_names_the_array_the_queries_are_computed_from(kind, post_model, pre_model, random_pre):
    model = {"post": post_model, "pre": pre_model, "random-pre": random_pre}[kind]
    net = model.transformer
    cache = run_example(model, "Min ( 4 8 1 )" if model.task.max_value == 9 else "Min ( 4 38 1 )").cache
    for layer in range(net.cfg.n_layers):
        text = aa.qkv_input_text(net.cfg.norm, layer)
        hook = re.findall(r"`([^`]+)`", text)
        candidates = {f"blocks.{layer}.hook_resid_pre", f"blocks.{layer}.ln1.hook_out"}
        assert len(hook) == 1 and hook[0] in candidates
        p = {n: net.params[f"blocks.{layer}.attn.{n}"].astype(np.float64) for n in ("W_Q", "b_Q")}
        q = cache[f"blocks.{layer}.attn.hook_q"][0].astype(np.float64)  # [pos, head, d_head]
        for other in candidates:
            x = cache[other][0].astype(np.float64)  # [pos, d_model]
            q_from = np.einsum("td,hde->the", x, p["W_Q"]) + p["b_Q"]
            assert np.allclose(q_from, q, atol=1e-4) == (other == hook[0]), other
        short = aa.qkv_input_text(net.cfg.norm, layer, short=True)
        assert ("LayerNorm 1" in short and "pre-norm" in text) == (net.cfg.norm == "pre")
        assert ("itself" in short and "post-norm" in text) == (net.cfg.norm == "post")


def test_scaling_text_is_a_division_and_its_variance_argument_holds(post_model):
    net = post_model.transformer
    dh = net.cfg.d_head
    text = aa.scaling_text(dh)
    assert f"variance {dh} (standard deviation {math.sqrt(dh):.4g})" in text
    assert f"dividing by √{dh} = {math.sqrt(dh):.4g}" in text and "saturate" in text
    # the claim: unit-variance independent entries give dot products of variance d_head ...
    rng = np.random.default_rng(0)
    q, k = rng.normal(size=(2, 200_000, dh))
    dots = (q * k).sum(-1)
    assert dots.var() == pytest.approx(dh, rel=0.02) and (dots / math.sqrt(dh)).std() == pytest.approx(1, rel=0.01)
    # ... and the model divides: its scores are q . k / sqrt(d_head)
    cache = run_example(post_model, "Max ( 5 5 2 )").cache
    qh, kh = (cache[f"blocks.1.attn.hook_{n}"][0].astype(np.float64) for n in "qk")  # [pos, head, d_head]
    scores = np.einsum("qhd,khd->hqk", qh, kh) / math.sqrt(dh)
    np.testing.assert_allclose(scores, cache["blocks.1.attn.hook_attn_scores"][0], atol=1e-4)


# ================================================================ how much direction each sublayer keeps
def cosines_by_hand(net, cache) -> list[np.ndarray]:
    """[cos per position [T]] per sublayer, in order, from the hooks (not from residual_stages)."""
    c = {k: v[0].astype(np.float64) for k, v in cache.items()}

    def cos(a, b):
        return np.array([float(x @ y) / math.sqrt(float(x @ x) * float(y @ y)) for x, y in zip(a, b, strict=True)])

    out = []
    for i in range(net.cfg.n_layers):
        b = f"blocks.{i}."
        if net.cfg.norm == "pre":  # x + f(LN(x)): the stream is the sums
            out += [cos(c[b + "hook_resid_pre"], c[b + "hook_resid_mid"]),
                    cos(c[b + "hook_resid_mid"], c[b + "hook_resid_post"])]  # fmt: skip
        else:  # LN(x + f(x)): the stream that flows on is each LayerNorm's output
            out += [cos(c[b + "hook_resid_pre"], c[b + "ln1.hook_out"]),
                    cos(c[b + "ln1.hook_out"], c[b + "ln2.hook_out"])]  # fmt: skip
    return out


@pytest.mark.parametrize("kind", ["post", "pre", "random-pre"])
def test_stream_cosines_and_their_sentence(kind, post_model, pre_model, random_pre):
    model = {"post": post_model, "pre": pre_model, "random-pre": random_pre}[kind]
    net = model.transformer
    run = run_example(model, "Max ( 5 5 2 )")
    got = res.stream_cosines(net, run.cache)
    ref = cosines_by_hand(net, run.cache)
    assert [(b, s) for b, s, _ in got] == [(i, s) for i in range(net.cfg.n_layers) for s in ("attention", "FFN")]
    for (_, _, c), r in zip(got, ref, strict=True):
        np.testing.assert_allclose(c, r, atol=1e-9)
    if net.cfg.norm == "post":  # the normalisation turns the stream: it is not only added to
        assert min(float(c.min()) for c in ref) < 0.99
    pos = run.answer_pos
    text = res.direction_text(net.cfg.norm, got, pos, "`=`")
    quoted = re.findall(r"(-?\d\.\d{3}) through block (\d+)'s (attention|FFN)", text)
    assert [(float(v), int(b), s) for v, b, s in quoted] == [
        (round(r[pos], 3), i // 2, "attention" if i % 2 == 0 else "FFN") for i, r in enumerate(ref)]  # fmt: skip
    j = int(np.argmin([r[pos] for r in ref]))
    angle = math.degrees(math.acos(ref[j][pos]))
    assert (f"Block {j // 2}'s {'attention' if j % 2 == 0 else 'FFN'} turns it most (cosine {ref[j][pos]:.3f}, "
            f"an angle of {angle:.0f}°)") in text  # fmt: skip
    if net.cfg.norm == "pre":
        assert "nothing rescales the stream" in text and "only added" in text
    else:
        assert "rescales the whole stream" in text and "only as far as its direction survives" in text


def test_pre_norm_additions_keep_what_the_stream_carried(random_pre):
    """The pre-norm sentence says the stream is only added to: resid_post - resid_pre is exactly the two writes."""
    cache = run_example(random_pre, "Min ( 4 8 1 )").cache
    for i in range(random_pre.transformer.cfg.n_layers):
        b = f"blocks.{i}."
        diff = cache[b + "hook_resid_post"][0].astype(np.float64) - cache[b + "hook_resid_pre"][0]
        np.testing.assert_allclose(diff, cache[b + "hook_attn_out"][0] + cache[b + "hook_mlp_out"][0].astype(
            np.float64), atol=1e-5)  # fmt: skip


def test_stream_cosines_of_a_random_pre_norm_transformer():
    net = Transformer(ModelConfig(norm="pre", n_layers=2, d_model=16, n_heads=2, d_ff=32))
    _, cache = net.run_with_cache(np.array([[5, 6, 7, 8, 9]]))
    for (_, _, c), r in zip(res.stream_cosines(net, cache), cosines_by_hand(net, cache), strict=True):
        np.testing.assert_allclose(c, r, atol=1e-9)


# ================================================================ GELU
def gelu64(x: float) -> float:
    """The tanh approximation, written out again: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))."""
    return 0.5 * x * (1 + math.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))


def test_gelu_is_the_tanh_approximation():
    x = np.linspace(-6, 6, 1201)
    np.testing.assert_allclose(L.activation_forward("gelu", x), [gelu64(v) for v in x], rtol=1e-12, atol=1e-15)


def test_gelu_minimum_against_a_fine_grid():
    f = res.gelu_facts()
    grid = np.arange(-1.5, 0.0, 1e-5)
    values = [gelu64(v) for v in grid]
    i = int(np.argmin(values))
    assert f.min_x == pytest.approx(grid[i], abs=2e-5)
    assert f.min_value == pytest.approx(values[i], abs=1e-9)
    assert f.min_value <= min(values) + 1e-12  # nothing on the grid is lower
    assert round(f.min_value, 2) == -0.17 and round(f.min_x, 2) == -0.75


def test_gelu_float32_zeros_by_direct_evaluation():
    f = res.gelu_facts()
    t = np.float32(f.zero_below)
    assert float(t) == f.zero_below and t < 0
    # every float32 number within 2^18 steps either side of the threshold, evaluated by the code's own GELU
    bits = np.arange(-(2**18), 2**18 + 1, dtype=np.int64) + int(np.array([-t], np.float32).view(np.int32)[0])
    x = -bits.astype(np.int32).view(np.float32)  # ascending bits of |x|: x goes from -|t| + ... down to below t
    y = L.activation_forward("gelu", x)
    np.testing.assert_array_equal(y == 0, x <= t)
    # and far below it, down to -1e4, all exactly 0; above it, on to 0, none
    below = np.linspace(-1e4, float(t), 1_000_001, dtype=np.float32)
    assert (L.activation_forward("gelu", below) == 0).all()
    above = np.linspace(np.nextafter(t, np.float32(0)), -1e-30, 1_000_001, dtype=np.float32)
    assert (L.activation_forward("gelu", above) != 0).all()
    assert L.activation_forward("gelu", np.zeros(1, np.float32))[0] == 0


def test_gelu_text_quotes_the_measured_numbers():
    f = res.gelu_facts()
    post = np.array([[0.5, -0.1, 0.0, 2.0], [0.0, -0.17, 3.0, 1e-3]], np.float32)
    text = res.gelu_text(post, "block 0's")
    assert "GELU(0) = 0." in text and "never" not in text
    assert f"minimum, ≈ −{-f.min_value:.4f}, at x ≈ −{-f.min_x:.4f}" in text
    printed = float(re.search(r"exactly 0 for every x ≤ −(\d+\.\d+)", text).group(1))
    assert printed == pytest.approx(-f.zero_below, abs=1e-5)
    # everything at or below the printed number is zero in float32 (it is rounded away from 0)
    x = np.linspace(-printed, -printed - 1, 10_001).astype(np.float32)
    assert (L.activation_forward("gelu", x) == 0).all()
    assert "of block 0's 8 activations, 4 are > 0, 2 < 0 and 2 exactly 0." in text
    assert "1 is > 0, 0 < 0 and 0 exactly 0." in res.gelu_text(np.ones(1), "these")
