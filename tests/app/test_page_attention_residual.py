"""The Attention and Residual/LayerNorm/FFN pages, and their read-outs (model_core.analysis: attention, residual).

Unit tests hold each read-out against an independent reference (the model's own cached
output, a closed form, a plain-Python loop); AppTest tests check that every chart's data
is the cached array of the current example, and that it follows the sidebar.
"""

from __future__ import annotations

import logging
import math
import re
import statistics

import numpy as np
import pytest
from app_helpers import chart_titles, charts, open_app, set_example, shown_text
from streamlit.elements.lib import policies
from streamlit.testing.v1 import AppTest
from streamlit.testing.v1.util import patch_config_options

from explainer import format as fmt
from explainer import state
from model_core import ModelConfig, TaskConfig, TaskModel, Transformer, enumerate_all, interp, load_model
from model_core.analysis import ablate_heads, run_example
from model_core.analysis import attention as aa
from model_core.analysis import output as ao
from model_core.analysis import residual as res
from model_core.layers import LN_EPS
from tests.fixtures import cases

ATTENTION, RESIDUAL = "../pages/attention.py", "../pages/residual.py"
DEFAULT = "Max ( 7 2 9 )"
@pytest.fixture(scope="module")
def shipped():
    return load_model("digits-0-9")


@pytest.fixture(scope="module")
def shipped_99():
    return load_model("digits-0-99")


@pytest.fixture(scope="module")
def crucial(shipped):
    """(example, (layer, head), answer, answer without that head): the single head whose removal flips a First
    answer and leaves the right answer the least probability, found by switching every head off on every First
    expression (batched), so it holds for whatever the shipped model learned."""
    net = shipped.transformer
    every = enumerate_all(shipped.task)
    exprs = every.subset(np.flatnonzero(every.ops == shipped.task.operations.index("First")))
    batch = shipped.encode(exprs)
    at = batch.answer_pos  # [n]: `=`, where the bidirectional model answers
    right = batch.targets[np.arange(len(exprs)), at]  # [n] the true answer's token
    best = None
    for layer in range(net.cfg.n_layers):
        for head in range(net.cfg.n_heads):
            def off(z, hook, head=head):
                z = z.copy()
                z[:, :, head] = 0.0
                return z

            logits = net.run_with_hooks(batch.tokens, [(f"blocks.{layer}.attn.hook_z", off)])
            rows = logits[np.arange(len(exprs)), at].astype(np.float64)  # [n, vocab]
            probs = np.exp(rows - rows.max(-1, keepdims=True))
            probs /= probs.sum(-1, keepdims=True)
            flipped = rows.argmax(-1) != right
            for i in np.flatnonzero(flipped):
                p = probs[i, right[i]]
                if best is None or p < best[0]:
                    best = (p, exprs.expression(i).text, (layer, head), shipped.vocab.decode([int(right[i])])[0],
                            shipped.vocab.decode([int(rows[i].argmax())])[0])
    assert best is not None, "no single head flips any First answer of the shipped model"
    return best[1:]


@pytest.fixture(scope="module")
def causal_model():
    """An untrained causal pre-norm GELU model (the shape of the 0-99 preset), 2 blocks."""
    options = dict(causal=True, norm="pre", positional="learned", activation="gelu", n_layers=2, d_model=32, d_ff=64)
    return TaskModel.new(TaskConfig(max_value=99), name="causal-test", **options)


def run_of(model, text):
    return run_example(model, text)


# ================================================================ analysis read-outs


@pytest.mark.parametrize("kind", ["shipped", "causal"])
def test_head_writes_plus_bias_are_the_attention_output(kind, shipped, causal_model):
    model = shipped if kind == "shipped" else causal_model
    net, cache = model.transformer, run_of(model, "Min ( 4 8 1 )").cache
    for layer in range(net.cfg.n_layers):
        result = cache[f"blocks.{layer}.attn.hook_result"][0]  # [pos, head, d_model]
        total = result.astype(np.float64).sum(1) + net.params[f"blocks.{layer}.attn.b_O"]
        np.testing.assert_allclose(total, cache[f"blocks.{layer}.hook_attn_out"][0], atol=1e-5, rtol=0)
        # and one head's write is its own z times its own slice of W_O, nothing else
        z = cache[f"blocks.{layer}.attn.hook_z"][0, :, 1].astype(np.float64)
        ref = np.einsum("td,dm->tm", z, net.params[f"blocks.{layer}.attn.W_O"][1].astype(np.float64))
        np.testing.assert_allclose(result[:, 1], ref, atol=1e-5)


def test_masked_keys_are_the_causal_and_padding_cells():
    for causal in (False, True):
        net = Transformer(ModelConfig(causal=causal, n_layers=1))
        tokens = np.array([[5, 6, 7, 8, 0, 0]])  # two padding tokens (pad_id 0) at the end
        _, cache = net.run_with_cache(tokens)
        scores = cache["blocks.0.attn.hook_attn_scores"][0, 2]
        q, k = np.indices((6, 6))
        expected = (k >= 4) | ((k > q) if causal else False)
        np.testing.assert_array_equal(aa.masked_keys(scores), expected)
        # a masked cell gets exactly zero weight, an allowed one never does here
        pattern = cache["blocks.0.attn.hook_pattern"][0, 2]
        assert (pattern[expected] == 0).all() and (pattern[~expected] > 0).all()


def test_strongest_key_and_predictions_closed_form():
    rng = np.random.default_rng(0)
    row = rng.dirichlet(np.ones(7))
    k, w = aa.strongest_key(row)
    assert w == max(row) and row[k] == w
    logits = rng.normal(size=(5, 9)).astype(np.float32)
    preds = ao.predictions_at(logits, [1, 4])
    for p in preds:
        ref = [math.exp(v) for v in logits[p.position].astype(float)]
        ref = np.array(ref) / sum(ref)
        np.testing.assert_allclose(p.probs, ref, rtol=1e-12)
        assert p.token == int(np.argmax(ref)) and p.prob == pytest.approx(ref.max(), rel=1e-12)
    assert [p.position for p in preds] == [1, 4]


def test_answer_positions():
    assert ao.answer_positions(10, 8, causal=False) == [8]
    assert ao.answer_positions(12, 9, causal=True) == [9, 10, 11]


def test_layer_norms_list_every_norm_in_order():
    post = res.layer_norms(ModelConfig(n_layers=2, norm="post"))
    assert [p for p, _ in post] == ["blocks.0.ln1", "blocks.0.ln2", "blocks.1.ln1", "blocks.1.ln2"]
    pre = res.layer_norms(ModelConfig(n_layers=1, norm="pre"))
    assert [p for p, _ in pre] == ["blocks.0.ln1", "blocks.0.ln2", "ln_final"]


def ln_input_by_hand(cache, cfg, prefix: str) -> np.ndarray:
    """What a LayerNorm reads, rebuilt from the stream and the sublayer outputs: [pos, d_model]."""
    c = {k: v[0].astype(np.float64) for k, v in cache.items()}
    if prefix == "ln_final":
        return c[f"blocks.{cfg.n_layers - 1}.hook_resid_post"]
    block, which = prefix.rsplit(".", 1)
    if cfg.norm == "pre":
        return c[f"{block}.hook_resid_pre"] if which == "ln1" else c[f"{block}.hook_resid_pre"] + c[
            f"{block}.hook_attn_out"]  # fmt: skip
    if which == "ln1":  # Add & Norm: the stream plus the attention output
        return c[f"{block}.hook_resid_pre"] + c[f"{block}.hook_attn_out"]
    return c[f"{block}.ln1.hook_out"] + c[f"{block}.hook_mlp_out"]


@pytest.mark.parametrize("kind", ["shipped", "causal"])
def test_layer_norms_by_hand_are_the_hooks(kind, shipped, causal_model):
    model = shipped if kind == "shipped" else causal_model
    net, cache = model.transformer, run_of(model, "Second ( 4 8 1 )").cache
    prefixes = [p for p, _ in res.layer_norms(net.cfg)]
    assert len(prefixes) == 2 * net.cfg.n_layers + (net.cfg.norm == "pre")
    for prefix in prefixes:
        x = ln_input_by_hand(cache, net.cfg, prefix)  # [pos, d]
        np.testing.assert_allclose(cache[f"{prefix}.hook_in"][0], x, atol=1e-5, rtol=0)
        mu = x.mean(axis=-1, keepdims=True)
        sd = np.sqrt(((x - mu) ** 2).mean(axis=-1, keepdims=True) + LN_EPS)
        np.testing.assert_allclose((x - mu) / sd, cache[f"{prefix}.hook_normalized"][0], atol=1e-4, rtol=0)
        out = (x - mu) / sd * net.params[f"{prefix}.w"] + net.params[f"{prefix}.b"]
        np.testing.assert_allclose(out, cache[f"{prefix}.hook_out"][0], atol=1e-4, rtol=0)
        np.testing.assert_allclose(sd, cache[f"{prefix}.hook_scale"][0], rtol=1e-5)


def test_row_stats_sparsity_top_neurons_stage_norms():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(4, 11))
    mean, std = res.row_mean_std(x)
    for i, row in enumerate(x.tolist()):
        assert mean[i] == pytest.approx(statistics.fmean(row), abs=1e-12)
        assert std[i] == pytest.approx(statistics.pstdev(row), abs=1e-12)
    post = np.maximum(x, 0)
    frac = res.active_fraction(post)
    assert frac.tolist() == [sum(v > 0 for v in row) / 11 for row in post.tolist()]
    idx, val = res.top_neurons(x[0], 3)
    assert val.tolist() == sorted(x[0].tolist(), reverse=True)[:3] and (x[0][idx] == val).all()
    norms = res.stage_norms([("a", x), ("b", 2 * x)])
    assert [n for n, _ in norms] == ["a", "b"]
    np.testing.assert_allclose(norms[1][1], [2 * math.sqrt(sum(v * v for v in row)) for row in x.tolist()])


# ================================================================ AppTest helpers


def titles_in(spec) -> list:
    """The titles of a spec and of all its sub-charts."""
    t = spec.get("title")
    out = [t.get("text") if isinstance(t, dict) else t]
    for key in ("hconcat", "vconcat", "concat", "layer"):
        for sub in spec.get(key, []):
            out += titles_in(sub)
    return out


def chart(at, title):
    """(spec, first dataset) of the chart whose title (or a sub-chart's title) is `title`."""
    for spec, frames in charts(at):
        if title in titles_in(spec):
            return spec, frames[0]
    raise AssertionError(f"no chart titled {title!r} in {chart_titles(at)}")


def grid(df, row, col, value, shape):
    out = np.full(shape, np.nan)
    out[df[row].to_numpy(), df[col].to_numpy()] = df[value].to_numpy()
    return out


def matrix(at, title, shape):
    return grid(chart(at, title)[1], "row", "col", "value", shape)


def predictions_table(at):
    return at.dataframe[0].value


def select(at, layer, head):
    at.selectbox(key="layer").select(layer).run()
    at.selectbox(key="head").select(head).run()
    assert not at.exception, at.exception


def add_session_model(at, model):
    at.session_state["session_models"] = {model.name: ("session:test-causal-attention", model)}
    at.run()
    at.selectbox(key="model_name").select(model.name).run()
    assert not at.exception, at.exception


# ================================================================ Attention page


def check_attention_page(at, model, text, layer, head):
    """Every chart of the Attention page shows this example's cached arrays for (layer, head)."""
    run = run_of(model, text)
    c, T = run.cache, len(run.tokens)
    net = model.transformer
    dh = net.cfg.d_head
    a = f"blocks.{layer}.attn."
    name = f"L{layer} H{head}"
    np.testing.assert_array_equal(matrix(at, f"Q of {name}", (T, dh)), c[a + "hook_q"][0, :, head])
    scores = grid(chart(at, f"Scaled scores, {name}")[1], "query_pos", "key_pos", "score", (T, T))
    np.testing.assert_array_equal(scores, np.where(np.isinf(c[a + "hook_attn_scores"][0, head]), np.nan,
                                                   c[a + "hook_attn_scores"][0, head]))  # fmt: skip
    mask = matrix(at, "Mask (read from the −∞ scores)", (T, T))
    np.testing.assert_array_equal(mask == 0, np.isneginf(c[a + "hook_attn_scores"][0, head]))
    spec, df = chart(at, f"Attention pattern, {name}")
    np.testing.assert_array_equal(grid(df, "query_pos", "key_pos", "weight", (T, T)), c[a + "hook_pattern"][0, head])
    assert spec["params"][0]["select"]["fields"] == ["query_pos"]
    for h in range(net.cfg.n_heads):  # "All heads": one panel per head, the current one outlined
        spec, df = chart(at, f"L{layer} H{h}")
        assert (df["head"] == h).all()
        np.testing.assert_array_equal(grid(df, "query_pos", "key_pos", "weight", (T, T)), c[a + "hook_pattern"][0, h])
        assert ("view" in spec) == (h == head)
    np.testing.assert_array_equal(matrix(at, f"z, {name}", (T, dh)), c[a + "hook_z"][0, :, head])
    write = matrix(at, f"What {name} writes into the stream, z·W_O", (T, net.cfg.d_model))
    np.testing.assert_array_equal(write, c[a + "hook_result"][0, :, head])
    assert chart(at, f"What {name} writes into the stream, z·W_O")[0]["title"]["subtitle"] == a + "hook_result"
    return run


def test_attention_page_shows_the_cached_arrays(shipped):
    at = open_app(ATTENTION)
    titles = chart_titles(at)
    assert titles[:4] == ["Q of L0 H0", "Scaled scores, L0 H0", "Mask (read from the −∞ scores)",
                          "Attention pattern, L0 H0"]  # fmt: skip
    run = check_attention_page(at, shipped, DEFAULT, 0, 0)
    # the query bars default to the answer position
    _, df = chart(at, f"Attention from query {run.answer_pos}: =")
    np.testing.assert_array_equal(df["weight"], run.cache["blocks.0.attn.hook_pattern"][0, 0, run.answer_pos])
    # a head of layer 0 that reads one key (found on this model): the sentence names that key and its weight
    head = cases.one_key(shipped, DEFAULT)
    select(at, 0, head)
    k, w = aa.strongest_key(run.cache["blocks.0.attn.hook_pattern"][0, head, run.answer_pos])
    assert f"puts {w:.2f} of its attention on `{run.labels[k]}` (position {k})" in at.info[0].value
    select(at, 0, 0)
    # K and V on demand
    at.segmented_control(key="attn_qkv").set_value("V").run()
    np.testing.assert_array_equal(matrix(at, "V of L0 H0", (len(run.tokens), 16)),
                                  run.cache["blocks.0.attn.hook_v"][0, :, 0])  # fmt: skip
    # the sidebar's layer and head
    at.segmented_control(key="attn_qkv").set_value("Q").run()
    select(at, 1, 2)
    check_attention_page(at, shipped, DEFAULT, 1, 2)
    assert "L1 H2" in at.info[0].value


def test_attention_click_selects_a_query_and_stale_clicks_fall_back(shipped):
    at = open_app(ATTENTION)
    run = run_of(shipped, DEFAULT)
    at.session_state["attn_pattern_click"] = {"selection": {"query": [{"query_pos": 3}]}}
    at.run()
    assert not at.exception
    spec, df = chart(at, "Attention from query 3: ,")
    np.testing.assert_array_equal(df["weight"], run.cache["blocks.0.attn.hook_pattern"][0, 0, 3])
    pattern_spec, _ = chart(at, "Attention pattern, L0 H0")
    assert "datum.query_pos == 3" in str(pattern_spec["encoding"]["stroke"])
    # a selection left over from a longer example (or garbage) falls back to the answer position
    at.session_state["attn_pattern_click"] = {"selection": {"query": [{"query_pos": 40}]}}
    at.run()
    chart(at, f"Attention from query {run.answer_pos}: =")
    at.session_state["attn_pattern_click"] = {"selection": {"query": []}}
    at.run()
    chart(at, f"Attention from query {run.answer_pos}: =")


def test_attention_page_follows_edits_and_keeps_charts_on_invalid_input(shipped):
    at = open_app(ATTENTION)
    assert predictions_table(at)["all heads predict"].tolist() == ["9"]
    set_example(at, "Min ( 4 8 1 )")
    assert not at.exception
    assert predictions_table(at)["all heads predict"].tolist() == ["1"]
    run = check_attention_page(at, shipped, "Min ( 4 8 1 )", 0, 0)
    p = run.answer.step_probs[0].max()
    assert predictions_table(at)["log-prob"].iloc[0] == pytest.approx(math.log(p), rel=1e-4)
    assert predictions_table(at)["probability"].iloc[0] == fmt.percent(p)
    before = charts(at)
    set_example(at, "Mx ( 1 2 3 )")
    assert not at.exception
    assert at.sidebar.error and "Min ( 4 8 1 )" in at.sidebar.caption[0].value
    after = charts(at)
    assert len(after) == len(before)
    for (s1, f1), (s2, f2) in zip(before, after, strict=True):
        assert s1 == s2
        for a, b in zip(f1, f2, strict=True):
            assert a.equals(b)


# ---------------------------------------------------------------- switching heads off
def measures(logits_at: np.ndarray, answer: int) -> tuple[float, float]:
    """(logit difference, log-probability) of `answer` in one position's logits, in float64 by hand."""
    z = logits_at.astype(np.float64)
    top = z.max()
    logp = z[answer] - (top + math.log(sum(math.exp(v - top) for v in z)))
    return float(z[answer] - np.delete(z, answer).max()), float(logp)


def by_zeroing_z(model, text, heads):
    """[(clean (diff, logp), ablated (diff, logp), answer, ablated top)] per answer position: the page's former
    computation (ablate_heads: z zeroed before W_O), measured by hand."""
    run = run_of(model, text)
    logits, _ = ablate_heads(model, run.tokens, list(heads))
    clean = run.cache["hook_logits"][0]
    out = []
    for p in ao.answer_positions(len(run.tokens), run.answer_pos, model.causal):
        answer = int(clean[p].argmax())
        out.append((measures(clean[p], answer), measures(logits[0, p], answer), answer, int(logits[0, p].argmax())))
    return out


def by_interp(model, text, ablations):
    """model_core.interp.ablate of `text` read at each answer position."""
    run = run_of(model, text)
    positions = ao.answer_positions(len(run.tokens), run.answer_pos, model.causal)
    return interp.ablate(model, np.tile(run.tokens, (len(positions), 1)), positions, ablations), positions


def switch_off(at, heads, on=False):
    for lay, h in heads:
        at.toggle(key=f"attn_on_{lay}_{h}").set_value(on).run()
        assert not at.exception, at.exception


@pytest.mark.parametrize("kind", ["digits-0-9", "digits-0-99"])
def test_toggles_report_the_logit_difference_and_log_prob_of_interp_ablate(kind, shipped, shipped_99):
    model = shipped if kind == "digits-0-9" else shipped_99
    text = state.DEFAULT_EXAMPLES[model.task.max_value]
    heads = [(0, 3), (1, 2)]
    at = open_app(ATTENTION)
    if kind == "digits-0-99":
        at.selectbox(key="model_name").select(kind).run()
    set_example(at, text)
    table = predictions_table(at)
    assert "Δ logit diff" not in table and "heads off predict" not in table
    switch_off(at, heads)
    table = predictions_table(at)
    res, positions = by_interp(model, text, [["L0H3", "L1H2"]])
    run = run_of(model, text)
    assert table["position"].tolist() == [f"{p}: {run.labels[p]}" for p in positions]
    assert len(positions) == (3 if model.causal else 1)  # `=` and the two answer tokens it wrote, for 0-99
    np.testing.assert_allclose(table["Δ logit diff"], res.delta_logit_diff[0], rtol=1e-6)
    np.testing.assert_allclose(table["Δ log-prob"], res.delta_logprob[0], rtol=1e-6)
    np.testing.assert_allclose(table["logit diff"], res.clean_logit_diff, rtol=1e-6)
    np.testing.assert_allclose(table["logit diff, heads off"], res.logit_diff[0], rtol=1e-6)
    np.testing.assert_allclose(table["log-prob"], res.clean_logprob, rtol=1e-6)
    np.testing.assert_allclose(table["log-prob, heads off"], res.logprob[0], rtol=1e-6)
    assert table["probability, heads off"].tolist() == [fmt.percent(math.exp(v)) for v in res.logprob[0]]
    # ... and these are the numbers the page showed before (z zeroed, ablate_heads), measured by hand
    old = by_zeroing_z(model, text, heads)
    assert table["all heads predict"].tolist() == [model.vocab.decode([a])[0] for _, _, a, _ in old]
    assert table["heads off predict"].tolist() == [model.vocab.decode([t])[0] for _, _, _, t in old]
    np.testing.assert_allclose(table["logit diff"], [c[0] for c, _, _, _ in old], atol=1e-4)
    np.testing.assert_allclose(table["logit diff, heads off"], [a[0] for _, a, _, _ in old], atol=1e-4)
    np.testing.assert_allclose(table["log-prob"], [c[1] for c, _, _, _ in old], rtol=1e-3, atol=1e-9)
    np.testing.assert_allclose(table["log-prob, heads off"], [a[1] for _, a, _, _ in old], rtol=1e-3, atol=1e-9)
    # the before/after chart shows the same logit differences
    where = "each answer position" if model.causal else f"position {run.answer_pos} (=)"
    _, df = chart(at, f"Logit difference at {where}")
    np.testing.assert_allclose(df[df["run"] == "all heads"]["logit_diff"], res.clean_logit_diff, rtol=1e-6)
    np.testing.assert_allclose(df[df["run"] == "without L0H3, L1H2"]["logit_diff"], res.logit_diff[0], rtol=1e-6)
    # the message quotes them
    msg = (at.warning or at.success)[0].value
    for i in range(len(positions)):
        if not res.flipped[0, i]:
            assert f"{fmt.logit(res.clean_logit_diff[i])} → {fmt.logit(res.logit_diff[0, i])}" in msg
    switch_off(at, heads, on=True)
    assert "Δ logit diff" not in predictions_table(at)


def test_switching_off_a_crucial_head_changes_the_answer_and_back(shipped, crucial):
    CRUCIAL_EXAMPLE, CRUCIAL_HEAD, ANSWER, ABLATED_ANSWER = crucial
    at = open_app(ATTENTION)
    set_example(at, CRUCIAL_EXAMPLE)
    table = predictions_table(at)
    assert table["all heads predict"].tolist() == [ANSWER] and "heads off predict" not in table
    original = table.copy()
    assert not at.warning and not [c for c in chart_titles(at) if c.startswith("Logit difference at")]

    switch_off(at, [CRUCIAL_HEAD])
    table = predictions_table(at)
    assert table["all heads predict"].tolist() == [ANSWER]
    assert table["heads off predict"].tolist() == [ABLATED_ANSWER]
    (clean, off, _, _), = by_zeroing_z(shipped, CRUCIAL_EXAMPLE, [CRUCIAL_HEAD])
    assert table["logit diff, heads off"].iloc[0] == pytest.approx(off[0], abs=1e-4) and off[0] < 0
    assert table["log-prob, heads off"].iloc[0] == pytest.approx(off[1], rel=1e-4)
    assert math.exp(off[1]) < 0.05  # the right answer loses nearly all its probability
    warning = at.warning[0].value
    assert f"the model now predicts `{ABLATED_ANSWER}`" in warning
    assert f"`{ANSWER}` is now {fmt.logit(-table['logit diff, heads off'].iloc[0])} logits behind it" in warning
    run = run_of(shipped, CRUCIAL_EXAMPLE)
    _, df = chart(at, f"Logit difference at position {run.answer_pos} (=)")
    assert df["logit_diff"].tolist() == pytest.approx([clean[0], off[0]], abs=1e-4)

    switch_off(at, [CRUCIAL_HEAD], on=True)
    assert not at.warning
    assert predictions_table(at).equals(original)


def test_switching_off_a_minor_head_keeps_the_answer_and_says_by_how_much(shipped):
    at = open_app(ATTENTION)
    switch_off(at, [(1, 3)])
    table = predictions_table(at)
    assert table["heads off predict"].tolist() == ["9"]
    res, _ = by_interp(shipped, DEFAULT, [["L1H3"]])
    assert table["Δ logit diff"].iloc[0] == pytest.approx(float(res.delta_logit_diff[0, 0]), rel=1e-6)
    assert res.delta_logit_diff[0, 0] < 0
    success = at.success[0].value
    assert "`9` still comes first at `=`" in success
    assert f"logit difference {fmt.logit(res.clean_logit_diff[0])} → {fmt.logit(res.logit_diff[0, 0])}" in success
    assert f"log-prob {fmt.log_prob(res.clean_logprob[0])} → {fmt.log_prob(res.logprob[0, 0])}" in success
    assert "100.0%" not in success


def hint_of(at) -> str:
    """The "Every head switched off alone" hint: the page's last info box."""
    return at.info[-1].value


def ranked_charts(at, positions, labels):
    """{position: that position's "Each head off alone" chart data, indexed by head}."""
    return {p: chart(at, f"Each head off alone, at {p}: {labels[p]}")[1].set_index("head") for p in positions}


@pytest.mark.parametrize("kind", ["digits-0-9", "digits-0-99"])
def test_every_head_alone_is_a_loop_of_single_ablations_and_the_hint_names_the_largest(kind, shipped, shipped_99):
    model = shipped if kind == "digits-0-9" else shipped_99
    at = open_app(ATTENTION)
    if kind == "digits-0-99":
        at.selectbox(key="model_name").select(kind).run()
    cfg = model.transformer.cfg
    examples = [state.DEFAULT_EXAMPLES[model.task.max_value], "First ( 3 5 6 )"]
    named = []
    for text in examples:
        set_example(at, text)
        assert not at.exception
        run = run_of(model, text)
        positions = ao.answer_positions(len(run.tokens), run.answer_pos, model.causal)
        ranked = ranked_charts(at, positions, run.labels)
        loop = {}  # one head at a time, each its own run (z zeroed): {(head, position index): (Δ diff, Δ logp)}
        for lay in range(cfg.n_layers):
            for h in range(cfg.n_heads):
                for i, (clean, off, answer, top) in enumerate(by_zeroing_z(model, text, [(lay, h)])):
                    loop[f"L{lay}H{h}", i] = (off[0] - clean[0], off[1] - clean[1], top != answer, top)
        for i, p in enumerate(positions):
            df = ranked[p]
            assert sorted(df.index) == sorted(name for name, j in loop if j == i)
            for name, row in df.iterrows():
                d_diff, d_logp, flipped, top = loop[name, i]
                assert row["delta_logit_diff"] == pytest.approx(d_diff, abs=1e-4)
                assert row["delta_logprob"] == pytest.approx(d_logp, rel=1e-3, abs=1e-9)
                assert bool(row["flipped"]) == flipped and row["top"] == model.vocab.decode([top])[0]
        # the hint names the head (and the position) with the largest |Δ logit difference|
        (name, i), (d_diff, _, flipped, top) = max(loop.items(), key=lambda kv: abs(kv[1][0]))
        runner_up = sorted((abs(v[0]) for v in loop.values()), reverse=True)[1]
        assert abs(d_diff) - runner_up > 1e-3  # a clear winner: float noise cannot swap it
        hint = hint_of(at)
        assert f"switching off {name} alone costs" in hint and fmt.logit(-d_diff) in hint
        if model.causal:
            assert f"at position {positions[i]} (`{run.labels[positions[i]]}`)" in hint
        flips = [n for (n, _), v in loop.items() if v[2]]
        if flipped:
            assert f"the model then predicts `{model.vocab.decode([top])[0]}` there" in hint
        if not flips:
            assert "No single head flips" in hint
        elif flips == [name]:
            assert "No other head flips" in hint
        named.append(name)
    assert named[0] != named[1], "the two examples should need different heads"  # the hint follows the example


def test_hint_for_a_wrong_answer_and_untrained_model(causal_model):
    at = open_app(ATTENTION)
    add_session_model(at, causal_model)
    set_example(at, "Max ( 47 82 19 )")
    run = run_of(causal_model, "Max ( 47 82 19 )")
    assert not run.answer.correct  # an untrained model
    hint = hint_of(at)
    assert f"wrong here (the true answer is {run.answer.expression.answer})" in hint
    positions = ao.answer_positions(len(run.tokens), run.answer_pos, True)
    assert len(ranked_charts(at, positions, run.labels)) == len(positions)


def test_a_tie_is_called_a_tie(shipped):
    """A model whose unembedding is zero: every logit is 0, the prediction wins only by vocabulary order and no
    head changes anything. The page must say so, not invent a margin."""
    tie = TaskModel.new(TaskConfig(max_value=9), name="tie-test", n_layers=2, d_model=32, d_ff=64)
    tie.transformer.params["unembed.W_U"][:] = 0.0
    tie.transformer.params["unembed.b_U"][:] = 0.0
    at = open_app(ATTENTION)
    at.session_state["session_models"] = {tie.name: ("session:test-tie", tie)}  # its own key: caches are by key
    at.run()
    at.selectbox(key="model_name").select(tie.name).run()
    assert not at.exception, at.exception
    hint = hint_of(at)
    assert "no single head changes `<pad>`'s logit difference (0.00) at all" in hint
    assert "is tied with the strongest other token: it comes first only by its place in the vocabulary" in hint
    assert "No single head flips it" in hint and "wrong here" in hint
    switch_off(at, [(0, 0)])
    success = at.success[0].value
    assert "logit difference 0.00 → 0.00 (0.00)" in success and "(tied with the strongest other token)" in success


def test_heads_off_set_through_session_state_draw_no_warning(shipped):
    records = []

    class Catch(logging.Handler):
        def emit(self, record):
            records.append(record.getMessage())

    logger = logging.getLogger("streamlit.elements.lib.policies")
    handler = Catch()
    logger.addHandler(handler)
    # the app's config turns the warning off (links set widgets' values on purpose); on here, the toggles still
    # must not cause it
    config = patch_config_options({"global.disableWidgetStateDuplicationWarning": False})
    config.__enter__()
    try:
        # the check catches the warning (it is logged once per process: reset it)
        policies._shown_default_value_warning = False
        control = 'import streamlit as st\nst.session_state["k"] = False\nst.toggle("t", value=True, key="k")'
        AppTest.from_string(control).run()
        assert any("default value but also had its value set via the Session State" in r for r in records)
        records.clear()
        policies._shown_default_value_warning = False
        at = open_app(ATTENTION)
        # another page links here with heads switched off (state.open_view)
        at.session_state[state.PENDING] = {"example": "Min ( 4 8 1 )", "heads_off": [(1, 3), (0, 1)],
                                           "layer": None, "head": None}  # fmt: skip
        at.run()
        assert not at.exception
        assert at.toggle(key="attn_on_1_3").value is False and at.toggle(key="attn_on_0_1").value is False
        assert at.toggle(key="attn_on_0_0").value is True
        res, _ = by_interp(shipped, "Min ( 4 8 1 )", [["L0H1", "L1H3"]])
        np.testing.assert_allclose(predictions_table(at)["Δ logit diff"], res.delta_logit_diff[0], rtol=1e-6)
        # and a key set directly
        at.session_state["attn_on_0_2"] = False
        at.run()
        assert at.toggle(key="attn_on_0_2").value is False
        assert not [r for r in records if "Session State" in r], records
    finally:
        config.__exit__(None, None, None)
        logger.removeHandler(handler)


def click_head(at, h):
    """What the browser sends when head `h`'s panel in "All heads" is clicked (see the Streamlit notes)."""
    gen = at.session_state["attn_heads_click_gen"] if "attn_heads_click_gen" in at.session_state else 0
    at.session_state[f"attn_head_click_{h}" + (f"_{gen}" if gen else "")] = {"selection": {"head": [{"head": h}]}}
    at.run()
    assert not at.exception, at.exception


def test_clicking_a_head_in_all_heads_selects_it_and_stale_clicks_are_ignored(shipped):
    at = open_app(ATTENTION)
    spec, _ = chart(at, "L0 H2")
    assert spec["params"] == [{"name": "head", "select": {"type": "point", "fields": ["head"], "on": "click"}}]
    click_head(at, 2)
    assert at.selectbox(key="head").value == 2
    check_attention_page(at, shipped, DEFAULT, 0, 2)
    assert "L0 H2" in at.info[0].value
    # the click was acted on once: another head chosen in the sidebar stays, whatever the old panel still holds
    at.session_state["attn_head_click_2"] = {"selection": {"head": [{"head": 2}]}}
    select(at, 0, 1)
    at.run()
    assert at.selectbox(key="head").value == 1
    # a click on the head already shown, or garbage, changes nothing
    click_head(at, 1)
    assert at.selectbox(key="head").value == 1
    gen = at.session_state["attn_heads_click_gen"]
    for junk in ({"selection": {"head": [{"head": 7}]}}, {"selection": {"head": [{"head": float("nan")}]}},
                 {"selection": {"head": [{"head": "x"}]}}, {"selection": {"head": []}}, {"selection": {}}, {}):
        at.session_state[f"attn_head_click_0_{gen}"] = junk
        at.run()
        assert at.selectbox(key="head").value == 1 and not at.exception
    # a click in layer 1's panels
    select(at, 1, 1)
    click_head(at, 3)
    assert (at.selectbox(key="layer").value, at.selectbox(key="head").value) == (1, 3)
    check_attention_page(at, shipped, DEFAULT, 1, 3)


def test_attention_page_for_a_causal_pre_norm_model(causal_model):
    at = open_app(ATTENTION)
    add_session_model(at, causal_model)
    text = at.session_state["example"]
    check_attention_page(at, causal_model, text, 0, 0)
    select(at, 1, 1)
    run = check_attention_page(at, causal_model, text, 1, 1)
    T = len(run.tokens)
    assert T > run.answer_pos + 1  # the causal model reads its own answer
    assert "are masked" in " ".join(m.value for m in at.markdown)
    # one next-token prediction per answer position, as the model made them while answering
    table = predictions_table(at)
    assert len(table) == T - run.answer_pos
    wrote = run.answer.answer_tokens
    assert table["all heads predict"].tolist() == wrote[: len(table)]
    at.toggle(key="attn_on_0_0").set_value(False).run()
    assert not at.exception and len(predictions_table(at)) == T - run.answer_pos
    res, _ = by_interp(causal_model, text, [["L0H0"]])
    np.testing.assert_allclose(predictions_table(at)["Δ logit diff"], res.delta_logit_diff[0], rtol=1e-6)


# ================================================================ Residual page


def ln_words(prefix: str) -> str:
    """How the Residual page names a LayerNorm in its chart titles."""
    if prefix == "ln_final":
        return "the final LayerNorm"
    _, block, which = prefix.split(".")
    return f"LayerNorm {which[-1]} of block {block}"


def table_with(at, column: str):
    """The one table of the page with this column."""
    found = [d.value for d in at.dataframe if column in d.value.columns]
    assert len(found) == 1, [list(d.value.columns) for d in at.dataframe]
    return found[0]


def check_residual_page(at, model, text, layer, prefix):
    run = run_of(model, text)
    net, c, T = model.transformer, run.cache, len(run.tokens)
    labels = [f"{i}: {t}" for i, t in enumerate(run.labels)]
    _, df = chart(at, "Residual-stream norm per position and stage")
    stages = res.residual_stages(net, c)
    for name, x in stages:
        got = df[df["stage"] == name].set_index("position_label").loc[labels, "norm"].to_numpy()
        np.testing.assert_allclose(got, np.sqrt((x.astype(np.float64) ** 2).sum(-1)), rtol=1e-5)
    assert df["stage"].unique().tolist() == [n for n, _ in stages]
    _, df = chart(at, "How much each sublayer writes (its output's norm)")
    for b, s, norm in res.sublayer_writes(net, c):
        got = df[(df["block"] == b) & (df["sublayer"] == s)].set_index("position_label").loc[labels, "norm"]
        np.testing.assert_array_equal(got.to_numpy(), norm)
    D, F = net.cfg.d_model, net.cfg.d_ff
    words = ln_words(prefix)
    np.testing.assert_array_equal(matrix(at, f"Before {words}", (T, D)), c[f"{prefix}.hook_in"][0])
    np.testing.assert_allclose(matrix(at, f"Before {words}", (T, D)), ln_input_by_hand(c, net.cfg, prefix), atol=1e-5)
    assert chart(at, f"Before {words}")[0]["title"]["subtitle"] == f"{prefix}.hook_in"
    after = f"After {words} (gain and bias applied)"
    np.testing.assert_array_equal(matrix(at, after, (T, D)), c[f"{prefix}.hook_out"][0])
    assert chart(at, after)[0]["title"]["subtitle"] == f"{prefix}.hook_out"
    stats = table_with(at, "hook_scale")
    np.testing.assert_array_equal(stats["hook_scale"], c[f"{prefix}.hook_scale"][0, :, 0])
    np.testing.assert_allclose(stats["std before"], c[f"{prefix}.hook_scale"][0, :, 0], rtol=1e-4)
    post = c[f"blocks.{layer}.mlp.hook_post"][0]
    np.testing.assert_array_equal(matrix(at, f"FFN hidden activations, block {layer}", (T, F)), post)
    _, df = chart(at, f"All {post.size} activations of block {layer} ({T} positions)")
    np.testing.assert_array_equal(df["activation"], post.ravel())
    np.testing.assert_array_equal(table_with(at, "active (> 0)")["active (> 0)"], (post > 0).mean(-1))
    top = table_with(at, "neuron")
    assert top["activation"].tolist() == sorted(post[run.answer_pos].tolist(), reverse=True)[:10]
    return run


def test_residual_page_shows_the_cached_arrays(shipped):
    at = open_app(RESIDUAL)
    assert chart_titles(at) == [
        "Residual-stream norm per position and stage",
        "How much each sublayer writes (its output's norm)",
        "Before LayerNorm 1 of block 0", "After LayerNorm 1 of block 0 (gain and bias applied)",
        "FFN hidden activations, block 0", "All 2304 activations of block 0 (9 positions)",
    ]  # fmt: skip
    run = check_residual_page(at, shipped, DEFAULT, 0, "blocks.0.ln1")
    active = (run.cache["blocks.0.mlp.hook_post"][0, run.answer_pos] > 0).mean()
    assert f"{active:.1%} of the 256 neurons are active" in at.info[0].value
    at.segmented_control(key="resid_ln").set_value("ln2").run()
    check_residual_page(at, shipped, DEFAULT, 0, "blocks.0.ln2")
    at.selectbox(key="layer").select(1).run()
    check_residual_page(at, shipped, DEFAULT, 1, "blocks.1.ln2")


def test_residual_page_follows_edits_and_keeps_charts_on_invalid_input(shipped):
    at = open_app(RESIDUAL)
    info = at.info[0].value
    set_example(at, "Min ( 4 8 1 )")
    assert not at.exception and at.info[0].value != info
    check_residual_page(at, shipped, "Min ( 4 8 1 )", 0, "blocks.0.ln1")
    before = charts(at)
    set_example(at, "Mx ( 1 2 3 )")
    assert not at.exception and at.sidebar.error
    after = charts(at)
    assert [s for s, _ in before] == [s for s, _ in after]
    assert all(a.equals(b) for (_, f1), (_, f2) in zip(before, after, strict=True) for a, b in zip(f1, f2, strict=True))


def test_residual_page_for_a_causal_pre_norm_model(causal_model):
    at = open_app(RESIDUAL)
    add_session_model(at, causal_model)
    text = at.session_state["example"]
    check_residual_page(at, causal_model, text, 0, "blocks.0.ln1")
    options = ["LayerNorm 1 (before attention)", "LayerNorm 2 (before the FFN)", "final LayerNorm"]
    assert at.segmented_control(key="resid_ln").options == options
    at.segmented_control(key="resid_ln").set_value("ln_final").run()
    check_residual_page(at, causal_model, text, 0, "ln_final")
    assert "GELU is never exactly 0" not in " ".join(m.value for m in at.markdown)


# ================================================================ issue 13: every sentence true for this example
def page_text(at) -> str:
    """Everything the page writes in prose (rendered: code spans shown as their text), one string."""
    parts = [e.value for kind in ("caption", "markdown", "info", "subheader") for e in getattr(at, kind)]
    return "\n".join(shown_text(p) for p in parts)


def open_on(model_name: str, page: str, text: str, layer: int | None = None, head: int | None = None):
    at = open_app(page)
    if model_name != "digits-0-9":
        at.selectbox(key="model_name").select(model_name).run()
    set_example(at, text)
    if layer is not None:
        select(at, layer, head)
    assert not at.exception, at.exception
    return at


def test_attention_tie_of_two_equal_values_names_both(shipped):
    text, layer, head = cases.same_token_tie(shipped, tolerance=0.05, total=0.5)  # e.g. both pair of Max ( 5 5 2 )
    at = open_on("digits-0-9", ATTENTION, text, layer, head)
    run = run_of(shipped, text)
    row = run.cache[f"blocks.{layer}.attn.hook_pattern"][0, head, run.answer_pos].astype(np.float64)
    tied = run.labels[int(np.argmax(row))]
    pair = sorted((k for k, t in enumerate(run.labels) if t == tied), key=lambda k: -row[k])
    assert len(pair) == 2 and abs(row[pair[0]] - row[pair[1]]) < 0.05  # the tie
    info = shown_text(at.info[0].value)
    assert (f"the answer position = ({run.answer_pos}) puts {row[pair].sum():.2f} of its attention on 2 keys that "
            f"hold the same token: {row[pair[0]]:.2f} on {tied} (position {pair[0]}) and {row[pair[1]]:.2f} on "
            f"{tied} (position {pair[1]})") in info  # fmt: skip
    # the bars' caption (the answer position by default) says the same, to four decimals
    caption = next(shown_text(c.value) for c in at.caption if c.value.startswith("Query"))
    assert f"{row[pair[0]]:.4f} on {tied} (position {pair[0]}) and {row[pair[1]]:.4f} on {tied}" in caption


@pytest.mark.parametrize("model_name, case", [("digits-0-9", None),  # a diffuse head found on the model
                                              ("digits-0-99", ("Min ( 47 82 19 )", 0, 0))])  # fmt: skip
def test_attention_a_diffuse_head_spreads_its_attention(model_name, case, shipped, shipped_99):
    model = shipped if model_name == "digits-0-9" else shipped_99
    text, layer, head = case or cases.diffuse(model)
    at = open_on(model_name, ATTENTION, text, layer, head)
    run = run_of(model, text)
    row = run.cache[f"blocks.{layer}.attn.hook_pattern"][0, head, run.answer_pos].astype(np.float64)
    assert row.max() < 0.3  # diffuse
    top = np.argsort(-row, kind="stable")[:3]
    info = shown_text(at.info[0].value)
    listed = f"{row[top[0]]:.2f} on {run.labels[top[0]]} (position {top[0]}), {row[top[1]]:.2f} on " \
             f"{run.labels[top[1]]} (position {top[1]}) and {row[top[2]]:.2f} on {run.labels[top[2]]} (position " \
             f"{top[2]}), {row[top].sum():.2f} together"  # fmt: skip
    assert f"spreads its attention, no key getting more than half of it: {listed}" in info
    assert "puts" not in info.split(". ")[0]
    caption = next(shown_text(c.value) for c in at.caption if c.value.startswith("Query"))
    assert "spreads its attention" in caption and f"{row[top[0]]:.4f} on {run.labels[top[0]]}" in caption


@pytest.mark.parametrize("model_name", ["digits-0-9", "digits-0-99"])
def test_attention_says_what_q_k_v_are_computed_from_and_why_the_scores_are_divided(model_name):
    at = open_on(model_name, ATTENTION, "Min ( 4 8 1 )", 1, 0)
    text = page_text(at)
    if model_name == "digits-0-9":  # post-norm: the block's input itself
        assert "x is block 1's input itself (block 0's output), blocks.1.hook_resid_pre: in this post-norm" in text
        assert "computed from $x$, the block's input itself." in text
    else:  # pre-norm: its LayerNorm 1
        assert "x is LayerNorm 1 of block 1's input (block 0's output): in this pre-norm model the attention reads " \
               "the normalised stream, blocks.1.ln1.hook_out" in text  # fmt: skip
        assert "computed from $x$, LayerNorm 1 of the block's input." in text
    assert "divided by $\\sqrt{d_{head}}$" in text and "scaled by" not in text
    assert "would have variance 16 (standard deviation 4); dividing by √16 = 4 brings its standard deviation back " \
           "to 1" in text and "does not saturate" in text  # fmt: skip


def test_attention_qkv_control_cannot_be_deselected(shipped):
    at = open_app(ATTENTION)
    assert at.segmented_control(key="attn_qkv").proto.required  # the browser cannot send "nothing selected"
    at.segmented_control(key="attn_qkv").set_value("K").run()
    at.segmented_control(key="attn_qkv").set_value(None).run()  # and if None arrives, the last choice stays
    assert not at.exception, at.exception
    run = run_of(shipped, DEFAULT)
    np.testing.assert_array_equal(matrix(at, "K of L0 H0", (len(run.tokens), 16)),
                                  run.cache["blocks.0.attn.hook_k"][0, :, 0])  # fmt: skip


@pytest.fixture(scope="module")
def one_head():
    """One block of one head: every count on the pages is 1."""
    return TaskModel.new(TaskConfig(max_value=9), name="one-head", n_layers=1, n_heads=1, d_model=16, d_ff=32, seed=2)


def test_counts_of_one_are_singular(one_head):
    at = open_app(ATTENTION)
    at.session_state["session_models"] = {one_head.name: ("session:test-one-head", one_head)}
    at.run()
    at.selectbox(key="model_name").select(one_head.name).run()
    assert not at.exception, at.exception
    text = page_text(at)
    assert "The one head of layer 0" in text and "All 1 heads" not in text
    assert "Compare the other heads" not in text
    assert "Switch the head off at the bottom of the page to see whether the answer needs it." in text
    assert "The head's write plus $b_O$ is exactly the layer's attention output." in text
    assert "The model's one head switched off (1 copy of the example in one batched run)" in text
    assert not re.search(r"\b1 (heads|copies|blocks|cells are)\b", text), text
    at.switch_page(RESIDUAL).run()
    assert not at.exception, at.exception
    text = page_text(at)
    assert "The residual stream through the block" in text and "through the blocks" not in text
    assert not re.search(r"\b1 (heads|copies|blocks|are)\b", text), text


def cosines_from_hooks(net, cache) -> dict[str, np.ndarray]:
    """{column: cosine per position}: the stream before and after each sublayer, from the hooks, in float64."""
    c = {k: v[0].astype(np.float64) for k, v in cache.items()}
    out = {}
    for i in range(net.cfg.n_layers):
        b = f"blocks.{i}."
        mid = b + ("hook_resid_mid" if net.cfg.norm == "pre" else "ln1.hook_out")
        end = b + ("hook_resid_post" if net.cfg.norm == "pre" else "ln2.hook_out")
        for name, x, y in ((f"block {i} attention", c[b + "hook_resid_pre"], c[mid]), (f"block {i} FFN", c[mid],
                                                                                       c[end])):  # fmt: skip
            out[name] = np.einsum("td,td->t", x, y) / np.sqrt(np.einsum("td,td->t", x, x) * np.einsum("td,td->t", y, y))
    return out


@pytest.mark.parametrize("model_name", ["digits-0-9", "digits-0-99"])
def test_residual_says_how_much_direction_each_sublayer_keeps(model_name, shipped, shipped_99):
    model = shipped if model_name == "digits-0-9" else shipped_99
    at = open_on(model_name, RESIDUAL, "Max ( 5 5 2 )")
    run = run_of(model, "Max ( 5 5 2 )")
    ref = cosines_from_hooks(model.transformer, run.cache)
    table = table_with(at, "block 0 attention")
    assert list(table.columns) == ["position"] + list(ref)
    for col, cos in ref.items():
        np.testing.assert_allclose(table[col], cos, atol=1e-9)
    text = page_text(at)
    def said(col):  # "block 0 attention" -> "block 0's attention"
        return re.sub(r"^block (\d+) ", r"block \1's ", col)

    at_answer = ", ".join(f"{cos[run.answer_pos]:.3f} through {said(col)}" for col, cos in ref.items())
    assert f"At = (position {run.answer_pos}) the cosine between the stream before and after each sublayer (1: the " \
           f"same direction, 0: orthogonal) is {at_answer}." in text  # fmt: skip
    worst = min(ref, key=lambda col: ref[col][run.answer_pos])
    assert f"B{said(worst)[1:]} turns it most (cosine {ref[worst][run.answer_pos]:.3f}" in text
    if model.transformer.cfg.norm == "post":
        assert "accumulated, not replaced" not in text
        assert "In this post-norm model a LayerNorm then rescales the sum (Add & Norm)" in text
        assert "rescales the whole stream, so earlier information is kept only as far as its direction survives" in text
    else:
        assert "In this pre-norm model nothing rescales the sum, so information is accumulated, not replaced." in text
        assert "each sublayer's output is only added to it" in text


def test_residual_gelu_text_is_measured(shipped_99):
    at = open_on("digits-0-99", RESIDUAL, "Max ( 5 5 2 )")
    text = page_text(at)
    assert "never exactly 0" not in text
    assert any(r"\tanh u" in e.value and r"u = \sqrt{2/\pi}\,(x + 0.044715\,x^3)" in e.value for e in at.latex)
    # the minimum, on a fine grid of the formula written out again
    grid = np.arange(-1.5, 0, 1e-5)
    values = 0.5 * grid * (1 + np.tanh(math.sqrt(2 / math.pi) * (grid + 0.044715 * grid**3)))
    i = int(np.argmin(values))
    assert f"reaching its minimum, ≈ {fmt.MINUS}{-values[i]:.4f}, at x ≈ {fmt.MINUS}{-grid[i]:.4f}" in text
    # the float32 zeros: every x at or below the printed threshold gives exactly 0, a bit above it does not
    t = -float(re.search(r"exactly 0 for every x ≤ −(\d+\.\d+)", text).group(1))
    x = np.float32(t) - np.arange(0, 50, 1e-3, dtype=np.float32)
    gelu32 = np.float32(0.5) * x * (np.float32(1) + np.tanh(np.float32(math.sqrt(2 / math.pi)) * (x + np.float32(
        0.044715) * x * x * x)))  # fmt: skip
    assert (gelu32 == 0).all()
    assert model_gelu(np.float32(t + 2e-5)) != 0
    # and the counts of this block's activations
    post = run_of(shipped_99, "Max ( 5 5 2 )").cache["blocks.0.mlp.hook_post"][0]
    pos, neg = int((post > 0).sum()), int((post < 0).sum())
    assert f"of block 0's {post.size} activations, {pos} are > 0, {neg} < 0 and {post.size - pos - neg} exactly 0." \
           in text  # fmt: skip


def model_gelu(x):
    from model_core.layers import activation_forward

    return activation_forward("gelu", np.array([x], np.float32))[0]


def test_residual_page_names_charts_in_words_and_leaves_the_head_aside(shipped):
    at = open_app(RESIDUAL)
    assert "choose it in the sidebar" in shown_text(at.caption[0].value)
    assert [s.key for s in at.sidebar.selectbox if s.key in ("layer", "head")] == ["layer"]  # no head here
    assert not [t for t in chart_titles(at) if "hook_" in t or t.startswith("blocks.")]
    # the LayerNorm control cannot be deselected either; a None that arrives keeps the last choice
    assert at.segmented_control(key="resid_ln").proto.required
    at.segmented_control(key="resid_ln").set_value("ln2").run()
    at.segmented_control(key="resid_ln").set_value(None).run()
    assert not at.exception, at.exception
    check_residual_page(at, shipped, DEFAULT, 0, "blocks.0.ln2")


def test_attention_chart_titles_are_words():
    at = open_app(ATTENTION)
    assert not [t for t in chart_titles(at) if "hook_" in t or t.startswith("blocks.")]
