"""The "Tokens & embeddings" and "Output & softmax" pages and their read-outs (model_core.analysis.embeddings, .output).

Unit tests hold each read-out against an independent reference (closed forms, plain-math
re-derivations, the model's own loss); AppTest tests check that every chart's data is the
array the model computed for the current example, and that it follows edits.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from app_helpers import chart_titles, charts, open_app, select_imperfect_99, set_example, titles_and_subtitles

from explainer import format as fmt
from model_core import TaskConfig, TaskModel, load_model
from model_core.analysis import embeddings as emb
from model_core.analysis import output as ao
from model_core.analysis import run_example
from model_core.layers import cross_entropy
from model_core.task.vocab import DEFAULT_VOCAB

TOKENS_PAGE, OUTPUT_PAGE = "../pages/tokens.py", "../pages/output.py"
CAUSAL_NAME = "causal test model"


@pytest.fixture(scope="module")
def shipped():
    return load_model("digits-0-9")


@pytest.fixture(scope="module")
def causal():
    """An untrained causal, pre-norm, learned-position model on values 0-99 (the digits-0-99 kind)."""
    return TaskModel.new(TaskConfig(max_value=99), name=CAUSAL_NAME, causal=True, norm="pre", positional="learned",
                         activation="gelu", d_model=32, n_heads=2, d_ff=64, seed=3)  # fmt: skip


def ref_softmax(z, T=1.0):
    """Softmax in plain Python floats: the reference for the vectorised one."""
    z = [float(v) for v in z]  # Python floats: float64 maths whatever the input dtype
    e = [math.exp((v - max(z)) / T) for v in z]
    return np.array([v / sum(e) for v in e])


# ================================================================ read-outs (no Streamlit)
def test_positional_table_sinusoidal_is_the_closed_form_and_the_cached_rows(shipped):
    net = shipped.transformer
    table = net.positional_table()
    d = net.cfg.d_model
    assert table.shape == (net.cfg.max_len, d) and table.dtype == net.dtype
    for p, k in [(0, 0), (3, 0), (7, 5), (20, 15), (49, 31)]:
        angle = p / 10000 ** (2 * k / d)
        assert table[p, 2 * k] == pytest.approx(math.sin(angle), abs=1e-6)
        assert table[p, 2 * k + 1] == pytest.approx(math.cos(angle), abs=1e-6)
    run = run_example(shipped, "Max ( 7 2 9 )")
    np.testing.assert_array_equal(table[: len(run.tokens)], run.cache["hook_pos_embed"][0])


def test_positional_table_learned_is_w_pos_and_the_cached_rows(causal):
    table = causal.transformer.positional_table()
    assert table is causal.transformer.params["pos_embed.W_pos"]
    run = run_example(causal, "Max ( 47 82 19 )")
    np.testing.assert_array_equal(table[: len(run.tokens)], run.cache["hook_pos_embed"][0])


def test_embedding_summary_against_numpy(shipped):
    cache = run_example(shipped, "Min ( 4 8 1 )").cache
    s = emb.embedding_summary(cache)
    e, p = cache["hook_embed"][0].astype(float), cache["hook_pos_embed"][0].astype(float)
    assert s["embed_norm"] == pytest.approx(np.mean([math.sqrt(sum(v * v for v in row)) for row in e]), rel=1e-5)
    assert s["pos_norm"] == pytest.approx(np.mean([math.sqrt(sum(v * v for v in row)) for row in p]), rel=1e-5)
    assert s["sum_error"] == 0.0  # the residual stream starts as exactly embed + pos


def test_token_groups():
    groups = emb.token_groups(DEFAULT_VOCAB)
    by_token = dict(zip(DEFAULT_VOCAB.tokens, groups, strict=True))
    assert [by_token[str(d)] for d in range(10)] == ["digit"] * 10
    assert {by_token[t] for t in ("Max", "Min", "First", "Second", "Last")} == {"operation"}
    assert {by_token[t] for t in ("(", ")", ",", "=", "<pad>", "<eos>")} == {"symbol"}


def test_rank_correlation_matches_spearman_closed_form():
    rng = np.random.default_rng(0)
    for n in (5, 10, 30):
        x, y = rng.permutation(n), rng.permutation(n)  # no ties: rho = 1 - 6 sum d^2 / (n (n^2 - 1))
        d2 = float(((x - y) ** 2).sum())
        assert emb.rank_correlation(x, y) == pytest.approx(1 - 6 * d2 / (n * (n * n - 1)))
    x = np.arange(10.0)
    assert emb.rank_correlation(x, x**3 - 5) == pytest.approx(1.0)  # monotone, not linear
    assert emb.rank_correlation(x, -np.exp(x)) == pytest.approx(-1.0)
    assert math.isnan(emb.rank_correlation(x, np.ones(10)))


def test_rank_correlation_with_ties_uses_average_ranks():
    # y ranks: 1, 2.5, 2.5, 4 (the tie shares ranks 2 and 3); x ranks 1..4
    rx, ry = np.array([1, 2, 3, 4.0]), np.array([1, 2.5, 2.5, 4])
    expected = float(np.corrcoef(rx, ry)[0, 1])
    assert emb.rank_correlation([10, 20, 30, 40], [0.1, 0.5, 0.5, 0.9]) == pytest.approx(expected)


def test_digit_order_reads_the_digit_rows():
    vocab = DEFAULT_VOCAB
    points = np.zeros((len(vocab), 2))
    for d in range(10):
        points[vocab.id(str(d))] = [d**2, -d]  # PC 1 rises with the digit, PC 2 falls
    points[vocab.id("Max")] = [-100, 100]  # other tokens do not count
    assert emb.digit_order(points, vocab) == (pytest.approx(1.0), pytest.approx(-1.0))


def test_softmax_with_temperature_against_closed_form(shipped):
    rng = np.random.default_rng(1)
    z = rng.normal(0, 3, 21)
    for T in (0.1, 0.5, 1.0, 2.0, 5.0):
        p = ao.softmax_with_temperature(z, T)
        np.testing.assert_allclose(p, ref_softmax(z, T), rtol=1e-12, atol=1e-300)
        assert p.argmax() == z.argmax()
    assert np.abs(ao.softmax_with_temperature(z, 1e6) - 1 / 21).max() < 1e-5  # T -> inf: uniform
    with pytest.raises(ValueError):
        ao.softmax_with_temperature(z, 0.0)
    # T = 1 is the model's own softmax: the probabilities it answered with.
    run = run_example(shipped, "Max ( 7 2 9 )")
    p = ao.softmax_with_temperature(run.cache["hook_logits"][0, run.answer_pos], 1.0)
    np.testing.assert_allclose(p, run.answer.step_probs[0], atol=1e-5)


def test_token_losses_closed_form_and_model_loss(shipped, causal):
    rng = np.random.default_rng(2)
    logits, targets = rng.normal(0, 2, (4, 7)), np.array([3, -1, 0, 6])
    out = ao.token_losses(logits, targets)
    for i, t in enumerate(targets):
        if t < 0:
            assert math.isnan(out[i])
        else:
            assert out[i] == pytest.approx(-math.log(math.exp(logits[i, t]) / sum(math.exp(v) for v in logits[i])))
    # The mean over the answer positions is the loss the model reports for the teacher-forced run.
    for model, text in ((shipped, "Max ( 7 2 9 )"), (causal, "Max ( 47 82 19 )"), (causal, "Min ( 5 60 7 )")):
        run = run_example(model, text)
        losses = ao.token_losses(run.grad_cache["hook_logits"][0], run.train_targets)
        answer_rows = run.train_targets >= 0  # causal: each answer digit and <eos>; bidirectional: `=` only
        assert answer_rows.sum() == (len(str(run.answer.expression.answer)) + 1 if model.causal else 1)
        assert np.nanmean(losses) == pytest.approx(run.grad_cache.loss, rel=1e-6)
        assert np.isnan(losses[~answer_rows]).all()
        # each position's number is the model's own loss on that position alone
        for i in np.flatnonzero(answer_rows):
            one, _ = cross_entropy(run.grad_cache["hook_logits"][:, i : i + 1], run.train_targets[None, i : i + 1])
            assert losses[i] == pytest.approx(float(one), rel=1e-6)


def test_lens_candidates_and_first_top_stage():
    probs = np.array(
        [
            [0.7, 0.1, 0.1, 0.05, 0.05],  # top: 0
            [0.2, 0.5, 0.1, 0.1, 0.1],  # top: 1
            [0.1, 0.2, 0.6, 0.05, 0.05],  # top: 2
        ]
    )
    # every stage's top (0, 1, 2) + output top-1 (2) + the answer (4), by final probability
    np.testing.assert_array_equal(ao.lens_candidates(probs, k=1, include=4), [2, 1, 0, 4])
    np.testing.assert_array_equal(ao.lens_candidates(probs, k=2), [2, 1, 0])
    assert ao.first_top_stage(probs, 1) == 1
    assert ao.first_top_stage(probs, 2) == 2
    assert ao.first_top_stage(probs, 4) is None


def test_same_context():
    a, b = np.array([1, 2, 3, 4]), np.array([1, 2, 9, 4])
    assert ao.same_context(a, b, 1, causal=True)
    assert not ao.same_context(a, b, 2, causal=True)
    assert not ao.same_context(a, b, 1, causal=False)
    assert ao.same_context(a, a.copy(), 3, causal=False)


@pytest.mark.parametrize("which", ["shipped", "causal"])
def test_logit_lens_last_stage_is_the_real_output(which, request):
    model = request.getfixturevalue(which)
    run = run_example(model, "Max ( 7 2 9 )")
    for step in range(len(run.answer.step_probs)):
        pos = run.answer_pos + step
        lens = ao.logit_lens(model.transformer, run.cache, pos)
        assert len(lens) == 1 + 2 * model.transformer.cfg.n_layers
        final = lens[-1][1]
        np.testing.assert_allclose(final, ref_softmax(run.cache["hook_logits"][0, pos]), rtol=1e-5, atol=1e-9)
        np.testing.assert_allclose(final, run.answer.step_probs[step], atol=1e-5)  # what it answered with


# ================================================================ AppTest helpers
def current(at):
    return at.session_state["_current"]


def chart_by_title(at, prefix: str):
    """(spec, frames) of the one chart whose title (or a sub-title) starts with `prefix`."""
    found = []
    for spec, frames in charts(at):
        titles = []

        def walk(s, titles=titles):
            t = s.get("title")
            t = t.get("text") if isinstance(t, dict) else t
            if t:
                titles.append(t)
            for key in ("layer", "hconcat", "vconcat", "concat"):
                for sub in s.get(key, []):
                    walk(sub)

        walk(spec)
        if any(t.startswith(prefix) for t in titles):
            found.append((spec, frames))
    assert len(found) == 1, f"{len(found)} charts titled {prefix!r}: {chart_titles(at)}"
    return found[0]


def frame_with(frames, *cols):
    hits = [f for f in frames if set(cols) <= set(f.columns)]
    assert len(hits) == 1, [list(f.columns) for f in frames]
    return hits[0]


def heatmap_values(at, prefix: str) -> np.ndarray:
    """A matrix heatmap's cells back as [rows, cols]."""
    _, frames = chart_by_title(at, prefix)
    df = frame_with(frames, "row", "col", "value").sort_values(["row", "col"])
    return df["value"].to_numpy().reshape(df["row"].max() + 1, df["col"].max() + 1)


def use_causal(at, model):
    at.session_state["session_models"] = {CAUSAL_NAME: (f"session:{CAUSAL_NAME}", model)}
    at.run()
    at.selectbox(key="model_name").select(CAUSAL_NAME).run()
    assert not at.exception, at.exception
    assert current(at).model is model
    return at


# ================================================================ Tokens & embeddings page
def test_tokens_page_charts_are_the_cached_arrays(shipped):
    at = open_app(TOKENS_PAGE)
    assert not at.exception
    assert at.title[0].value == "Tokens & embeddings"
    run = current(at).run
    titles = chart_titles(at)
    for prefix in ("Token embeddings: one row of W_E", "Positional encoding added", "Sinusoids of",
                   "The residual stream entering block 0", "What training changed in W_E"):  # fmt: skip
        assert any(t.startswith(prefix) for t in titles), titles
    # the tokenisation table: token and id per position
    table = at.dataframe[0].value
    assert list(table.loc["token"]) == run.labels
    assert run.labels[: run.answer_pos + 1] == ["Max", "(", "7", ",", "2", ",", "9", ")", "="]
    assert list(table.loc["id"]) == [str(int(t)) for t in run.tokens]
    # the three heatmaps
    np.testing.assert_array_equal(heatmap_values(at, "Token embeddings: one row"), run.cache["hook_embed"][0])
    np.testing.assert_array_equal(heatmap_values(at, "Positional encoding"), run.cache["hook_pos_embed"][0])
    resid = heatmap_values(at, "The residual stream entering block 0")
    np.testing.assert_array_equal(resid, run.cache["blocks.0.hook_resid_pre"][0])
    np.testing.assert_array_equal(resid, run.cache["hook_embed"][0] + run.cache["hook_pos_embed"][0])
    # the sinusoids: the model's own table, default dimensions
    spec, frames = chart_by_title(at, "Sinusoids of")
    df = frame_with(frames, "position", "dim", "value")
    table_pos = shipped.transformer.positional_table()
    assert sorted(df["dim"].unique()) == [0, 1, 10, 11, 30]
    np.testing.assert_array_equal(df["value"], table_pos[df["position"], df["dim"]])
    assert df["position"].max() == shipped.transformer.cfg.max_len - 1
    # the PCA scatter of W_E as it is (the page opens on its change since initialisation: test_page_tokens_init.py)
    at.radio(key="tokens_pca_view").set_value("W_E as it is").run()
    spec, frames = chart_by_title(at, "W_E as it is")
    df = frame_with(frames, "x", "y", "label", "group", "highlighted")
    points, var = emb.pca_2d(shipped.transformer.params["embed.W_E"])
    assert list(df["label"]) == shipped.vocab.to_list()
    np.testing.assert_allclose(df[["x", "y"]].to_numpy(), points, rtol=1e-12)
    assert set(df.loc[df["highlighted"], "label"]) == set(run.labels)
    assert set(df["group"]) == {"digit", "operation", "symbol"}
    assert f"{var[0]:.0%} of variance" in spec["layer"][0]["encoding"]["x"]["title"]
    # the digit-order notice cites the rank correlation of this model
    rho1, rho2 = emb.digit_order(points, shipped.vocab)
    assert any(f"**{rho1:+.2f}**" in el.value and f"**{rho2:+.2f}**" in el.value for el in at.info)


def test_tokens_page_follows_edits_and_keeps_charts_on_invalid_input():
    at = open_app(TOKENS_PAGE)
    before = heatmap_values(at, "Token embeddings: one row")
    set_example(at, "Min ( 4 8 1 )")
    assert not at.exception
    run = current(at).run
    assert run.answer.value == 1 and run.labels[:3] == ["Min", "(", "4"]
    after = heatmap_values(at, "Token embeddings: one row")
    assert not np.array_equal(before, after)
    np.testing.assert_array_equal(after, run.cache["hook_embed"][0])
    np.testing.assert_array_equal(heatmap_values(at, "The residual stream entering block 0"),
                                  run.cache["blocks.0.hook_resid_pre"][0])  # fmt: skip
    assert list(at.dataframe[0].value.loc["token"]) == run.labels
    data_before = [frames for _, frames in charts(at)]
    set_example(at, "Mx ( 1 2 3 )")
    assert not at.exception
    assert at.error, "the invalid example shows an error"
    assert current(at).run is run
    for old, new in zip(data_before, [frames for _, frames in charts(at)], strict=True):
        for a, b in zip(old, new, strict=True):
            assert a.equals(b)


def test_tokens_page_dimension_picker(shipped):
    at = open_app(TOKENS_PAGE)
    at.multiselect(key="tokens_dims").set_value([2, 3, 63]).run()
    assert not at.exception
    df = frame_with(chart_by_title(at, "Sinusoids of")[1], "position", "dim", "value")
    assert sorted(df["dim"].unique()) == [2, 3, 63]
    np.testing.assert_array_equal(df["value"], shipped.transformer.positional_table()[df["position"], df["dim"]])


def test_tokens_page_learned_positions(causal):
    at = use_causal(open_app(TOKENS_PAGE), causal)
    run = current(at).run
    titles = chart_titles(at)
    assert not any(t.startswith("Sinusoids") for t in titles)
    assert not at.multiselect  # no dimension picker for a learned table
    np.testing.assert_array_equal(heatmap_values(at, "Learned positions"),
                                  causal.transformer.params["pos_embed.W_pos"])  # fmt: skip
    np.testing.assert_array_equal(heatmap_values(at, "Positional encoding"), run.cache["hook_pos_embed"][0])
    # a causal model also reads the answer tokens it wrote; values are digits separated by ","
    assert list(at.dataframe[0].value.loc["token"]) == run.labels
    assert len(run.labels) == run.answer_pos + len(run.answer.step_probs)


# ================================================================ Output & softmax page
def bars(at, prefix: str, field: str) -> np.ndarray:
    df = frame_with(chart_by_title(at, prefix)[1], "token_id", field).sort_values("token_id")
    return df[field].to_numpy()


def highlighted(at, prefix: str) -> list[str]:
    df = frame_with(chart_by_title(at, prefix)[1], "token", "highlighted")
    return list(df.loc[df["highlighted"], "token"])


def metric(at, label_start: str) -> str:
    hits = [m.value for m in at.metric if m.label.startswith(label_start)]
    assert len(hits) == 1, [m.label for m in at.metric]
    return hits[0]


def test_output_page_bidirectional(shipped):
    at = open_app(OUTPUT_PAGE)
    assert not at.exception
    assert at.title[0].value == "Output & softmax"
    assert "out_step" not in [box.key for box in at.selectbox]  # one answer step: nothing to pick
    run = current(at).run
    pos = run.answer_pos
    z = run.cache["hook_logits"][0, pos]
    np.testing.assert_array_equal(bars(at, "Logits at position", "logit"), z)
    p = bars(at, "Probabilities at position", "probability")
    np.testing.assert_allclose(p, ref_softmax(z), rtol=1e-9, atol=1e-300)
    assert highlighted(at, "Probabilities at position") == ["9"] == highlighted(at, "Logits at position")
    # loss: -log p(true) on the teacher-forced run, and the training loss
    true_id = shipped.vocab.id("9")
    tf_logits = run.grad_cache["hook_logits"][0, pos]
    assert float(metric(at, "Loss at position")) == pytest.approx(-math.log(ref_softmax(tf_logits)[true_id]), rel=1e-2)
    assert metric(at, "Loss at position") == f"{ao.token_losses(tf_logits[None], [true_id])[0]:.4g}"
    assert metric(at, "Training loss") == f"{run.grad_cache.loss:.4g}"
    assert metric(at, "p(true token)") == fmt.percent(ref_softmax(z)[true_id])
    # a warning says so exactly when the bars' run and the loss's run read different tokens at `=`
    assert bool(at.warning) == (not np.array_equal(run.tokens, run.train_tokens))
    # the logit lens: stage x candidate, last stage = the real output
    df = frame_with(chart_by_title(at, "Logit lens at position")[1], "stage", "token", "probability")
    lens = ao.logit_lens(shipped.transformer, run.cache, pos)
    stages = [s for s, _ in lens]
    assert list(dict.fromkeys(df["stage"])) == stages
    assert "9" in set(df["token"])
    for s, probs in lens:
        rows = df[df["stage"] == s]
        np.testing.assert_allclose(rows["probability"], probs[shipped.vocab.encode(rows["token"])], rtol=1e-12)
    last = df[df["stage"] == stages[-1]]
    np.testing.assert_allclose(last["probability"], ref_softmax(z)[shipped.vocab.encode(last["token"])], rtol=1e-5)
    tops = np.stack([p for _, p in lens]).argmax(-1)
    first = ao.first_top_stage(np.stack([p for _, p in lens]), true_id)
    assert first is not None
    # on top from that stage on, or it loses the top again later: the sentence says which (tops read here)
    said = ("it is the top token at every stage" if first == 0 else f"it is the top token from **{stages[first]}**") \
        if (tops[first:] == true_id).all() else f"first becomes the top token at stage **{stages[first]}**"
    assert any(said in el.value for el in at.info), [el.value for el in at.info]


def test_output_page_temperature():
    at = open_app(OUTPUT_PAGE)
    z = current(at).run.cache["hook_logits"][0, current(at).run.answer_pos]
    for T in (2.0, 0.5):
        at.slider(key="out_temperature").set_value(T).run()
        assert not at.exception
        np.testing.assert_allclose(bars(at, "Probabilities at position", "probability"), ref_softmax(z, T),
                                   rtol=1e-9, atol=1e-300)  # fmt: skip
        assert any(t.endswith(f"softmax(logits / {T:g})") for t in chart_titles(at))
        # the logits and the loss do not depend on the display temperature
        np.testing.assert_array_equal(bars(at, "Logits at position", "logit"), z)
    assert "T = 1 is what the model uses" in " ".join(m.value for m in at.markdown)


def test_output_page_follows_edits_and_keeps_charts_on_invalid_input():
    at = open_app(OUTPUT_PAGE)
    before = bars(at, "Logits at position", "logit")
    set_example(at, "Min ( 4 8 1 )")
    assert not at.exception
    run = current(at).run
    assert run.answer.value == 1
    after = bars(at, "Logits at position", "logit")
    assert not np.array_equal(before, after)
    np.testing.assert_array_equal(after, run.cache["hook_logits"][0, run.answer_pos])
    assert highlighted(at, "Probabilities at position") == ["1"]
    assert bars(at, "Probabilities at position", "probability").argmax() == run.answer.tokens[run.answer_pos + 1]
    data_before = [frames for _, frames in charts(at)]
    metrics_before = [m.value for m in at.metric]
    set_example(at, "Mx ( 1 2 3 )")
    assert not at.exception and at.error
    assert current(at).run is run
    assert [m.value for m in at.metric] == metrics_before
    for old, new in zip(data_before, [frames for _, frames in charts(at)], strict=True):
        for a, b in zip(old, new, strict=True):
            assert a.equals(b)


def test_output_page_causal_steps_and_loss(causal):
    at = use_causal(open_app(OUTPUT_PAGE), causal)
    set_example(at, "Max ( 47 82 19 )")
    run = current(at).run
    n_steps = len(run.answer.step_probs)
    assert len(at.selectbox(key="out_step").options) == n_steps
    losses = ao.token_losses(run.grad_cache["hook_logits"][0], run.train_targets)
    for step in range(n_steps):
        at.selectbox(key="out_step").set_value(step).run()
        assert not at.exception
        pos = run.answer_pos + step
        z = run.cache["hook_logits"][0, pos]
        np.testing.assert_array_equal(bars(at, f"Logits at position {pos}", "logit"), z)
        np.testing.assert_allclose(bars(at, f"Probabilities at position {pos}", "probability"), ref_softmax(z),
                                   rtol=1e-9, atol=1e-300)  # fmt: skip
        true_tok = causal.vocab.decode([run.train_targets[pos]])[0]  # "8", "2", "<eos>"
        assert highlighted(at, f"Probabilities at position {pos}") == [true_tok]
        assert metric(at, "Loss at position") == f"{losses[pos]:.4g}"
        lens = ao.logit_lens(causal.transformer, run.cache, pos)
        df = frame_with(chart_by_title(at, f"Logit lens at position {pos}")[1], "stage", "token", "probability")
        last = df[df["stage"] == lens[-1][0]]
        np.testing.assert_allclose(last["probability"], ref_softmax(z)[causal.vocab.encode(last["token"])],
                                   rtol=1e-5)  # fmt: skip
    assert [causal.vocab.decode([t])[0] for t in run.train_targets[run.train_targets >= 0]] == ["8", "2", "<eos>"]
    # the training loss is the mean of the per-position losses the page lists
    assert metric(at, "Training loss") == f"{run.grad_cache.loss:.4g}"
    assert np.nanmean(losses) == pytest.approx(run.grad_cache.loss, rel=1e-5)
    text = " ".join(m.value for m in at.markdown)
    assert f"mean of ({', '.join(f'{v:.4g}' for v in losses[run.train_targets >= 0])})" in text
    # at the first answer step both runs read the same input: -log(bar) is the loss there
    at.selectbox(key="out_step").set_value(0).run()
    pos = run.answer_pos
    p_true = ref_softmax(run.cache["hook_logits"][0, pos])[run.train_targets[pos]]
    assert float(metric(at, "Loss at position")) == pytest.approx(-math.log(p_true), rel=1e-3)
    assert not at.warning


def test_output_page_causal_step_follows_the_number_of_answer_steps(causal):
    at = use_causal(open_app(OUTPUT_PAGE), causal)
    set_example(at, "Max ( 47 82 19 )")
    at.selectbox(key="out_step").set_value(2).run()
    # The untrained model writes 3 tokens for "Min ( 4 50 60 )", whose true answer "4 <eos>" has 2:
    # its third step has no true token. It writes 1 token for "Min ( 1 2 3 )": the step resets to 0.
    for text, step, true_tok in (("Min ( 4 50 60 )", 2, None), ("Min ( 1 2 3 )", 0, "1")):
        set_example(at, text)
        assert not at.exception
        run = current(at).run
        assert at.selectbox(key="out_step").value == step
        assert len(at.selectbox(key="out_step").options) == len(run.answer.step_probs)
        pos = run.answer_pos + step
        np.testing.assert_array_equal(bars(at, f"Logits at position {pos}", "logit"), run.cache["hook_logits"][0, pos])
        assert highlighted(at, "Probabilities at position") == ([true_tok] if true_tok else [])
        if true_tok is None:
            assert metric(at, "Loss at position") == "—" and metric(at, "p(true token)") == "—"
            assert "the model wrote more tokens than the true answer has" in at.caption[0].value


# ================================================================ Output & softmax: the sentences (issue 13)
def lens_by_hand(model, run, pos) -> np.ndarray:
    """[stage, vocab]: the cached pre-norm streams at `pos` through a float64 LayerNorm (ln_final's gain and bias),
    W_U + b_U and softmax."""
    from model_core.layers import LN_EPS

    p = model.transformer.params
    names = ["blocks.0.hook_resid_pre"] + [f"blocks.{i}.hook_resid_{k}" for i in range(model.transformer.cfg.n_layers)
                                           for k in ("mid", "post")]  # fmt: skip
    rows = []
    for name in names:
        x = run.cache[name][0, pos].astype(np.float64)
        x = (x - x.mean()) / math.sqrt(x.var() + LN_EPS) * p["ln_final.w"] + p["ln_final.b"]
        rows.append(ref_softmax(x @ p["unembed.W_U"].astype(np.float64) + p["unembed.b_U"]))
    return np.stack(rows)


def test_output_page_lens_flip_and_input_free_stage():
    """digits-0-99 `Max ( 3 0 0 )`: the true 3 is on top after block 1's attention and block 1's FFN takes it away
    (the model answers 0, wrong); the embed + pos stage is marked as reading only the token at `=`."""
    from app_helpers import shown_text

    at = select_imperfect_99(open_app(OUTPUT_PAGE))  # a model with real mistakes: the shipped one has none
    set_example(at, "Max ( 3 0 0 )")
    assert not at.exception
    cur = current(at)
    run, v = cur.run, cur.model.vocab
    pos = run.answer_pos
    assert pos == 8 and run.answer.answer_tokens == ["0", "<eos>"]
    probs = lens_by_hand(cur.model, run, pos)
    three, zero = v.id("3"), v.id("0")
    tops = probs.argmax(-1)
    assert list(tops[3:]) == [three, zero] and probs[3, three] > 0.99  # the flip, recomputed
    # the chart's cells are these probabilities
    df = frame_with(chart_by_title(at, f"Logit lens at position {pos}")[1], "stage", "token", "probability")
    stages = list(dict.fromkeys(df["stage"]))
    for i, s in enumerate(stages):
        rows = df[df["stage"] == s]
        np.testing.assert_allclose(rows["probability"], probs[i, v.encode(rows["token"])], rtol=2e-4, atol=1e-6)
    infos = [shown_text(el.value) for el in at.info]
    lens_notice = [t for t in infos if "top token only at the last stage" in t]
    assert len(lens_notice) == 1, infos
    text = lens_notice[0]
    assert text.startswith(f"What to notice: the model answers 0 here: it is the top token only at the last stage, "
                           f"block 1 out ({fmt.percent(probs[4, zero])}).")  # fmt: skip
    assert (f"The true 3 first becomes the top token at stage block 1 mid ({fmt.percent(probs[3, three])}), loses the "
            f"top to 0 through block 1's FFN ({fmt.percent(probs[4, three])} against {fmt.percent(probs[4, zero])} "
            f"at block 1 out) and ends at {fmt.with_log(probs[4, three])}.") in text
    assert "takes it back" not in text
    biggest = int(np.argmax(np.abs(np.diff(probs[:, three])))) + 1
    assert stages[biggest] == "block 1 mid" and "comes through block 1's attention: it rises from" in text
    # the input-free stage: in the chart's subtitle and spelled out below it
    subtitles = dict(titles_and_subtitles(at))
    lens_title = next(t for t in subtitles if t.startswith("Logit lens at position"))
    assert subtitles[lens_title] == ("each candidate's probability, stage by stage embed + pos reads only the token "
                                     "at position 8 (see below)")  # two lines
    captions = [shown_text(c.value) for c in at.caption]
    assert ("embed + pos is the same for every input whose values have 3 digits in all: at position 8 the stream is "
            "still only the embedding of = plus position 8's positional vector") in " ".join(captions)
    # titles: words, no Markdown; the hook name only as a subtitle
    logits_title = next(t for t in subtitles if t.startswith("Logits at position"))
    assert logits_title == "Logits at position 8"
    assert subtitles[logits_title] == "one score per token, the true answer outlined hook_logits"  # two lines
    assert not any("`" in t or "`" in s for t, s in titles_and_subtitles(at))


def test_output_page_loss_of_zero_is_not_minus_zero():
    """digits-0-99 `Max ( 3 0 0 )`: float32 gives the teacher-forced <eos> after 3 a loss of -0.0; it reads 0."""
    at = select_imperfect_99(open_app(OUTPUT_PAGE))
    set_example(at, "Max ( 3 0 0 )")
    at.selectbox(key="out_step").set_value(1).run()
    assert not at.exception
    run = current(at).run
    losses = ao.token_losses(run.grad_cache["hook_logits"][0], run.train_targets)
    # each loss against the model's own cross-entropy on that position alone
    for i in (8, 9):
        one, _ = cross_entropy(run.grad_cache["hook_logits"][:, i : i + 1], run.train_targets[None, i : i + 1])
        assert losses[i] == pytest.approx(float(one), abs=1e-7)
    assert losses[9] == 0 and f"{losses[9]:.4g}" == "-0"  # the old format's "-0"
    assert metric(at, "Loss at position 9") == "0"
    text = " ".join(m.value for m in at.main.markdown)  # the page's (the sidebar's model card names digits-0-99)
    assert f"mean of ({losses[8]:.4g}, 0) over positions 8, 9 = {run.grad_cache.loss:.4g}" in text
    assert "-0" not in text and "−0," not in text
    assert "A loss of 0 is float32 rounding, not certainty" in text
    # a step whose loss is not 0 has no such sentence
    set_example(at, "Max ( 6 57 6 )")
    assert not (ao.token_losses(current(at).run.grad_cache["hook_logits"][0], current(at).run.train_targets) == 0).any()
    assert "A loss of 0" not in " ".join(m.value for m in at.markdown)
