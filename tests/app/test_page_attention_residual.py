"""The Attention and Residual/LayerNorm/FFN pages, and their read-outs (model_core.analysis: attention, residual).

Unit tests hold each read-out against an independent reference (the model's own cached
output, a closed form, a plain-Python loop); AppTest tests check that every chart's data
is the cached array of the current example, and that it follows the sidebar.
"""

from __future__ import annotations

import math
import statistics

import numpy as np
import pytest
from app_helpers import chart_titles, charts, open_app, set_example

from model_core import ModelConfig, TaskConfig, TaskModel, Transformer, enumerate_all, load_model
from model_core.analysis import ablate_heads, run_example
from model_core.analysis import attention as aa
from model_core.analysis import output as ao
from model_core.analysis import residual as res
from model_core.layers import LN_EPS

ATTENTION, RESIDUAL = "../pages/attention.py", "../pages/residual.py"
DEFAULT = "Max ( 7 2 9 )"
@pytest.fixture(scope="module")
def shipped():
    return load_model("digits-0-9")


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
    _, df = chart(at, f"L{layer} H{(head + 1) % net.cfg.n_heads}")
    np.testing.assert_array_equal(
        grid(df.assign(hq=df["head"] * T + df["query_pos"]), "hq", "key_pos", "weight", (net.cfg.n_heads * T, T)),
        c[a + "hook_pattern"][0].reshape(-1, T),
    )
    np.testing.assert_array_equal(matrix(at, f"z, {name}", (T, dh)), c[a + "hook_z"][0, :, head])
    write = matrix(at, f"Written into the stream: z·W_O (hook_result), {name}", (T, net.cfg.d_model))
    np.testing.assert_array_equal(write, c[a + "hook_result"][0, :, head])
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
    k, w = aa.strongest_key(run.cache["blocks.0.attn.hook_pattern"][0, 0, run.answer_pos])
    assert f"**{w:.2f}** of its attention on `{run.labels[k]}` (position {k})" in at.info[0].value
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
    assert predictions_table(at)["probability"].iloc[0] == pytest.approx(run.answer.step_probs[0].max(), abs=1e-4)
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


def test_switching_off_a_crucial_head_changes_the_answer_and_back(shipped, crucial):
    CRUCIAL_EXAMPLE, CRUCIAL_HEAD, ANSWER, ABLATED_ANSWER = crucial
    at = open_app(ATTENTION)
    set_example(at, CRUCIAL_EXAMPLE)
    table = predictions_table(at)
    assert table["all heads predict"].tolist() == [ANSWER] and "heads off predict" not in table
    original = table.copy()
    assert not at.warning and not [c for c in chart_titles(at) if c.startswith("Probability of")]

    lay, h = CRUCIAL_HEAD
    at.toggle(key=f"attn_on_{lay}_{h}").set_value(False).run()
    assert not at.exception
    table = predictions_table(at)
    assert table["all heads predict"].tolist() == [ANSWER]
    assert table["heads off predict"].tolist() == [ABLATED_ANSWER]
    run = run_of(shipped, CRUCIAL_EXAMPLE)
    logits, _ = ablate_heads(shipped, run.tokens, [CRUCIAL_HEAD])
    ref = ao.predictions_at(logits[0], [run.answer_pos])[0]
    assert table["probability (heads off)"].iloc[0] == pytest.approx(ref.prob, rel=1e-9)
    assert f"the model now predicts `{ABLATED_ANSWER}`" in at.warning[0].value
    _, df = chart(at, f'Probability of "{ANSWER}" at position {run.answer_pos} (=)')
    assert df["value"].iloc[0] == pytest.approx(original["probability"].iloc[0], rel=1e-9)
    assert (
        df["value"].iloc[1] == pytest.approx(ref.probs[shipped.vocab.id(ANSWER)], rel=1e-9)
        and df["value"].iloc[1] < 0.05  # the right answer loses nearly all its probability
    )

    at.toggle(key=f"attn_on_{lay}_{h}").set_value(True).run()
    assert not at.exception and not at.warning
    assert predictions_table(at).equals(original)


def test_switching_off_a_minor_head_changes_only_the_probability(shipped):
    at = open_app(ATTENTION)
    p_before = predictions_table(at)["probability"].iloc[0]
    at.toggle(key="attn_on_1_3").set_value(False).run()
    table = predictions_table(at)
    assert table["heads off predict"].tolist() == ["9"]
    assert table["probability (heads off)"].iloc[0] != p_before
    assert at.success and "still wins" in at.success[0].value


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


# ================================================================ Residual page


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
    _, df = chart(at, "How much each sublayer writes into the stream (norm of its output)")
    for b, s, norm in res.sublayer_writes(net, c):
        got = df[(df["block"] == b) & (df["sublayer"] == s)].set_index("position_label").loc[labels, "norm"]
        np.testing.assert_array_equal(got.to_numpy(), norm)
    D, F = net.cfg.d_model, net.cfg.d_ff
    np.testing.assert_array_equal(matrix(at, f"Before {prefix}", (T, D)), c[f"{prefix}.hook_in"][0])
    np.testing.assert_allclose(matrix(at, f"Before {prefix}", (T, D)), ln_input_by_hand(c, net.cfg, prefix), atol=1e-5)
    np.testing.assert_array_equal(matrix(at, f"After {prefix} (hook_out)", (T, D)), c[f"{prefix}.hook_out"][0])
    stats = at.dataframe[0].value
    np.testing.assert_array_equal(stats["hook_scale"], c[f"{prefix}.hook_scale"][0, :, 0])
    np.testing.assert_allclose(stats["std before"], c[f"{prefix}.hook_scale"][0, :, 0], rtol=1e-4)
    post = c[f"blocks.{layer}.mlp.hook_post"][0]
    np.testing.assert_array_equal(matrix(at, f"FFN hidden activations, block {layer}", (T, F)), post)
    _, df = chart(at, f"All {post.size} activations of block {layer} ({T} positions)")
    np.testing.assert_array_equal(df["activation"], post.ravel())
    np.testing.assert_array_equal(at.dataframe[1].value["active (> 0)"], (post > 0).mean(-1))
    top = at.dataframe[2].value
    assert top["activation"].tolist() == sorted(post[run.answer_pos].tolist(), reverse=True)[:10]
    return run


def test_residual_page_shows_the_cached_arrays(shipped):
    at = open_app(RESIDUAL)
    assert chart_titles(at) == [
        "Residual-stream norm per position and stage",
        "How much each sublayer writes into the stream (norm of its output)",
        "Before blocks.0.ln1", "After blocks.0.ln1 (hook_out)",
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
    assert at.segmented_control(key="resid_ln").options == ["ln1", "ln2", "ln_final"]
    at.segmented_control(key="resid_ln").set_value("ln_final").run()
    check_residual_page(at, causal_model, text, 0, "ln_final")
    assert "GELU is never exactly 0" in " ".join(m.value for m in at.markdown)
