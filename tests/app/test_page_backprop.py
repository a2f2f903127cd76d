"""The Backprop page (AppTest) and its read-outs in model_core.analysis.gradients.

The page's numbers are compared with the arrays of an independent run of the same model
on the same example (`run_example` on a freshly loaded model), and the SGD step with one
taken by hand (the model's own backward pass, params - lr * grads).
"""

from __future__ import annotations

import numpy as np
import pytest
from app_helpers import IMPERFECT, charts, open_app, select_imperfect_99, set_example, shown_text

from explainer import format as fmt
from model_core import TaskConfig, TaskModel, load_model
from model_core.analysis import gradients as bp
from model_core.analysis import run_example
from model_core.params import param_shapes
from tests.fixtures import IMPERFECT_99

PAGE = "../pages/backprop.py"
MODEL = "digits-0-9"


@pytest.fixture(scope="module")
def shipped():
    return load_model(MODEL)


def reference(text: str):
    model = load_model(MODEL)
    return model, run_example(model, text)


def chart(at, title_start: str):
    """(spec, main dataset) of the one chart whose title starts with `title_start`."""
    found = [(s, f) for s, f in charts(at) if str(s.get("title", "")).startswith(title_start)]
    assert len(found) == 1, [s.get("title") for s, _ in charts(at)]
    spec, frames = found[0]
    return spec, frames[0]


def metric(at, label: str) -> str:
    return next(m.value for m in at.metric if m.label == label)


def hand_sgd(model: TaskModel, run, lr: float) -> tuple[float, float]:
    """One SGD step taken by hand on a float64 copy: (loss before, loss after)."""
    net = model.transformer.astype(np.float64)
    tokens, targets = run.train_tokens[None], run.train_targets[None]
    _, cache = net.run_with_cache(tokens, targets=targets, grads=True)
    stepped = type(net)(net.cfg, {k: v - lr * cache.param_grads[k] for k, v in net.params.items()})
    return cache.loss, stepped.run_with_cache(tokens, targets=targets)[1].loss


def causal_model() -> TaskModel:
    return TaskModel.new(TaskConfig(max_value=99), causal=True, norm="pre", d_model=32, n_heads=4, d_ff=64)


# ================================================================ analysis.gradients
def test_gradient_norms_in_forward_and_layer_order(shipped):
    run = run_example(shipped, "Max ( 7 2 9 )")
    net, g = shipped.transformer, run.grad_cache
    acts = bp.activation_grad_norms(net, g)
    assert [n for n, _ in acts] == net.hook_names()
    for name, norm in acts:
        np.testing.assert_allclose(norm, np.sqrt((g[name + "_grad"].astype(np.float64) ** 2).sum()), rtol=1e-6)
    pars = bp.param_grad_norms(net, g.param_grads)
    names = [n for n, _ in pars]
    assert names == list(param_shapes(net.cfg)) and set(names) == set(g.param_grads)
    layer = [int(n.split(".")[1]) if n.startswith("blocks.") else (-1 if n.startswith("embed") else 99) for n in names]
    assert layer == sorted(layer)  # embeddings, block 0, block 1, unembedding
    for name, norm in pars:
        np.testing.assert_allclose(norm, np.sqrt((g.param_grads[name].astype(np.float64) ** 2).sum()), rtol=1e-6)
    np.testing.assert_allclose(bp.grad_sq_norm(g.param_grads), sum(n**2 for _, n in pars), rtol=1e-6)


@pytest.mark.parametrize("causal", [False, True])
def test_target_probs_give_the_loss(shipped, causal):
    model = causal_model() if causal else shipped
    run = run_example(model, "Max ( 47 82 19 )" if causal else "Max ( 7 2 9 )")
    scored = bp.target_probs(run.grad_cache, run.train_targets)
    assert [t for t, _, _ in scored] == list(np.flatnonzero(run.train_targets >= 0))
    assert [tok for _, tok, _ in scored] == [int(run.train_targets[t]) for t, _, _ in scored]
    np.testing.assert_allclose(-np.mean(np.log([p for _, _, p in scored])), run.grad_cache.loss, rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize("causal", [False, True])
def test_view_2d_of_every_activation_and_parameter(shipped, causal):
    model = causal_model() if causal else shipped
    run = run_example(model, "Max ( 7 2 9 )")
    net, g = model.transformer, run.grad_cache
    cfg, T, head = net.cfg, len(run.train_tokens), 2
    positions = [f"{i}: {t}" for i, t in enumerate(model.vocab.decode(run.train_tokens))]
    vocab = model.vocab.to_list()
    arrays = {n: g[n + "_grad"] for n in net.hook_names()} | g.param_grads
    for name, array in arrays.items():
        view = bp.view_2d(name, array, head, positions, vocab)
        assert view.values.ndim == 2, name
        assert len(view.row_labels) == view.values.shape[0], name
        assert view.col_labels is None or len(view.col_labels) == view.values.shape[1], name
        if name in net.hook_names():
            assert view.values.shape[0] == T or name.endswith(("hook_attn_scores", "hook_pattern"))
    # The slices themselves.
    for name in ("blocks.0.attn.hook_q", "blocks.1.attn.hook_z"):
        view = bp.view_2d(name, g[name + "_grad"], head, positions, vocab)
        np.testing.assert_array_equal(view.values, g[name + "_grad"][0, :, head, :])
        assert view.sliced == f"head {head}" and view.row_labels == positions
    view = bp.view_2d("blocks.1.attn.hook_pattern", g["blocks.1.attn.hook_pattern_grad"], head, positions, vocab)
    np.testing.assert_array_equal(view.values, g["blocks.1.attn.hook_pattern_grad"][0, head])
    assert view.row_labels == positions and view.col_labels == positions
    view = bp.view_2d("hook_logits", g["hook_logits_grad"], head, positions, vocab)
    np.testing.assert_array_equal(view.values, g["hook_logits_grad"][0])
    assert view.col_labels == vocab
    view = bp.view_2d("blocks.0.mlp.hook_post", g["blocks.0.mlp.hook_post_grad"], head, positions, vocab)
    assert view.values.shape == (T, cfg.d_ff) and view.x_title == "neuron"
    p = g.param_grads
    for leaf in ("W_Q", "W_K", "W_V", "W_O", "b_Q"):
        view = bp.view_2d(f"blocks.1.attn.{leaf}", p[f"blocks.1.attn.{leaf}"], head, positions, vocab)
        np.testing.assert_array_equal(view.values, np.atleast_2d(p[f"blocks.1.attn.{leaf}"][head]))
    for name in ("blocks.0.mlp.W_in", "blocks.0.mlp.W_out", "unembed.W_U", "embed.W_E"):
        np.testing.assert_array_equal(bp.view_2d(name, p[name], head, positions, vocab).values, p[name])
    assert bp.view_2d("embed.W_E", p["embed.W_E"], head, positions, vocab).row_labels == vocab
    view = bp.view_2d("blocks.0.ln1.w", p["blocks.0.ln1.w"], head, positions, vocab)
    np.testing.assert_array_equal(view.values, p["blocks.0.ln1.w"][None])
    with pytest.raises(ValueError):
        bp.view_2d("blocks.0.attn.W_X", np.zeros((2, 2, 2)), 0, positions, vocab)


def test_sgd_step_matches_a_step_by_hand_and_leaves_the_model_alone(shipped):
    run = run_example(shipped, "Min ( 4 8 1 )")
    params = {k: v.copy() for k, v in shipped.transformer.params.items()}
    step = bp.sgd_step(shipped, run, 0.1)
    before, after = hand_sgd(shipped, run, 0.1)
    np.testing.assert_allclose([step.loss_before, step.loss_after], [before, after], rtol=1e-9)
    assert step.loss_after < step.loss_before
    assert step.drop == step.loss_before - step.loss_after
    # the first-order prediction (lr x |g|^2) is the true drop's limit as the step shrinks: closer at a smaller lr
    small = bp.sgd_step(shipped, run, 0.01)
    np.testing.assert_allclose(small.drop, small.predicted_drop, rtol=0.05)
    assert abs(small.drop / small.predicted_drop - 1) < abs(step.drop / step.predicted_drop - 1)
    np.testing.assert_allclose(step.loss_before, run.grad_cache.loss, rtol=1e-2)  # float64 vs float32
    assert step.before.value == 1 and step.after.value == 1
    for k, v in shipped.transformer.params.items():
        np.testing.assert_array_equal(v, params[k])


# ================================================================ the page
def test_page_shows_loss_lesson_and_every_chart():
    at = open_app(PAGE)
    model, run = reference("Max ( 7 2 9 )")
    assert at.title[0].value == "Backprop"
    assert metric(at, "Loss") == f"{run.grad_cache.loss:.4e}"
    assert metric(at, "Answer positions scored") == "1"
    assert "finite differences" in " ".join(c.value for c in at.caption)
    assert at.latex and "log" in at.latex[0].value
    notice = at.info[0].value
    dlogit = run.grad_cache["hook_logits_grad"][0, 8, model.vocab.id("9")]
    assert "What to notice" in notice and f"{dlogit:.3e}" in notice
    assert not at.warning


def test_norm_bars_are_the_cached_gradient_norms():
    at = open_app(PAGE)
    model, run = reference("Max ( 7 2 9 )")
    g = run.grad_cache

    def short(name):
        return name.replace("blocks.", "").replace("hook_", "")

    spec, df = chart(at, "‖d loss / d activation‖")
    assert spec["mark"]["type"] == "bar"
    assert spec["encoding"]["x"]["scale"]["type"] == "log" and spec["encoding"]["x"]["stack"] is None
    hooks = model.transformer.hook_names()
    assert list(df["name"]) == [short(n) for n in hooks]
    np.testing.assert_allclose(df["norm"], [np.linalg.norm(g[n + "_grad"]) for n in hooks], rtol=1e-6)
    spec, df = chart(at, "‖d loss / d parameter‖")
    params = list(model.transformer.params)  # parameter order: by layer
    assert list(df["name"]) == [short(n) for n in params]
    np.testing.assert_allclose(df["norm"], [np.linalg.norm(g.param_grads[n]) for n in params], rtol=1e-6)
    at.toggle(key="bp_log").set_value(False).run()
    spec, _ = chart(at, "‖d loss / d parameter‖")
    assert spec["encoding"]["x"]["scale"].get("type") != "log"


def test_heatmaps_are_the_chosen_gradients_for_the_sidebar_head():
    at = open_app(PAGE)
    _, run = reference("Max ( 7 2 9 )")
    g = run.grad_cache
    _, df = chart(at, "d loss / d hook_embed")
    np.testing.assert_allclose(df["value"], g["hook_embed_grad"][0].ravel(), rtol=1e-6)
    assert list(df["row_label"].unique()) == [f"{i}: {t}" for i, t in enumerate(run.labels[:9])]
    _, df = chart(at, "d loss / d embed.W_E")
    np.testing.assert_allclose(df["value"], g.param_grads["embed.W_E"].ravel(), rtol=1e-6)
    at.selectbox(key="head").select(3).run()
    at.selectbox(key="bp_activation").select("blocks.1.attn.hook_pattern").run()
    at.selectbox(key="bp_param").select("blocks.0.attn.W_Q").run()
    spec, df = chart(at, "d loss / d blocks.1.attn.hook_pattern (head 3)")
    np.testing.assert_allclose(df["value"], g["blocks.1.attn.hook_pattern_grad"][0, 3].ravel(), rtol=1e-6)
    assert spec["encoding"]["color"]["scale"]["domainMid"] == 0  # signed
    _, df = chart(at, "d loss / d blocks.0.attn.W_Q (head 3)")
    np.testing.assert_allclose(df["value"], g.param_grads["blocks.0.attn.W_Q"][3].ravel(), rtol=1e-6)
    at.selectbox(key="bp_activation").select("blocks.0.attn.hook_v").run()
    at.selectbox(key="bp_param").select("blocks.1.mlp.W_in").run()
    _, df = chart(at, "d loss / d blocks.0.attn.hook_v (head 3)")
    np.testing.assert_allclose(df["value"], g["blocks.0.attn.hook_v_grad"][0, :, 3].ravel(), rtol=1e-6)
    _, df = chart(at, "d loss / d blocks.1.mlp.W_in")
    np.testing.assert_allclose(df["value"], g.param_grads["blocks.1.mlp.W_in"].ravel(), rtol=1e-6)
    assert not at.exception


def test_editing_the_example_updates_everything_and_an_invalid_one_keeps_it():
    at = open_app(PAGE)
    at.selectbox(key="bp_activation").select("blocks.0.hook_resid_mid").run()
    before = [f.copy() for _, (f, *_) in charts(at)]
    set_example(at, "Min ( 4 8 1 )")
    assert not at.exception
    _, run = reference("Min ( 4 8 1 )")
    g = run.grad_cache
    assert metric(at, "Loss") == f"{g.loss:.4e}"
    assert metric(at, "p(`1`) at position 8").endswith("%")
    _, df = chart(at, "d loss / d blocks.0.hook_resid_mid")
    np.testing.assert_allclose(df["value"], g["blocks.0.hook_resid_mid_grad"][0].ravel(), rtol=1e-6)
    assert list(df["row_label"].unique())[2] == "2: 4"
    _, df = chart(at, "‖d loss / d activation‖")
    hooks = load_model(MODEL).transformer.hook_names()
    np.testing.assert_allclose(df["norm"], [np.linalg.norm(g[n + "_grad"]) for n in hooks], rtol=1e-6)
    after = [f.copy() for _, (f, *_) in charts(at)]
    assert not all(a.equals(b) for a, b in zip(before, after, strict=True))
    set_example(at, "Mx ( 1 2 3 )")
    assert not at.exception and at.error  # the sidebar says what is wrong
    kept = [f for _, (f, *_) in charts(at)]
    assert all(a.equals(b) for a, b in zip(after, kept, strict=True))
    assert metric(at, "Loss") == f"{g.loss:.4e}"


def hand_steps(model: TaskModel, run, lrs) -> list[float]:
    """Losses at the start and after each of the SGD steps `lrs`, taken by hand in float64 from the model's weights."""
    net = model.transformer.astype(np.float64)
    tokens, targets = run.train_tokens[None], run.train_targets[None]
    losses = []
    for lr in lrs:
        _, cache = net.run_with_cache(tokens, targets=targets, grads=True)
        losses.append(cache.loss)
        net = type(net)(net.cfg, {k: v - lr * cache.param_grads[k] for k, v in net.params.items()})
    return losses + [net.run_with_cache(tokens, targets=targets)[1].loss]


def loss_chart(at, text: str):
    return chart(at, f"Loss on {text}, step by step")


def no_loss_chart(at) -> bool:
    return not [s for s, _ in charts(at) if str(s.get("title", "")).startswith("Loss on")]


def step_notice(at) -> str:
    found = [shown_text(i.value) for i in at.info if "Step " in i.value and "the loss went from" in i.value]
    assert len(found) == 1, [i.value for i in at.info]
    return found[0]


def test_sgd_step_shows_before_and_after_and_never_touches_the_model():
    at = open_app(PAGE)
    model, run = reference("Min ( 4 8 1 )")
    set_example(at, "Min ( 4 8 1 )")
    assert no_loss_chart(at) and metric(at, "Steps taken") == "0"
    at.slider(key="bp_lr").set_value(0.5).run()
    at.button(key="bp_step").click().run()
    assert not at.exception
    before, after = hand_sgd(model, run, 0.5)
    spec, df = loss_chart(at, "Min ( 4 8 1 )")
    assert list(df["label"]) == ["start", "1"]
    np.testing.assert_allclose(df["value"], [before, after], rtol=1e-9)
    assert after < before
    assert metric(at, "Loss now") == f"{after:.4e}" and metric(at, "Steps taken") == "1"
    table = at.dataframe[0].value
    assert list(table["answer"]) == ["1", "1"] and list(table["step"]) == ["start", "1"]
    np.testing.assert_allclose(table["loss"], [before, after], rtol=1e-9)
    # a confident model's confidence moves in its 5th decimal: the table shows it, and its log beside it
    assert table["log confidence"].iloc[1] > table["log confidence"].iloc[0]
    conf = [float(np.log(a.step_probs.max(axis=-1)).sum()) for a in (run.answer, model.answer("Min ( 4 8 1 )"))]
    assert table["log confidence"].iloc[0] == pytest.approx(conf[0], rel=1e-6)
    assert table["confidence"].iloc[0] == fmt.percent(run.answer.confidence) != "100.0%"
    assert f"a fall of {before - after:.3e}" in step_notice(at)
    # The result stays on reruns and when η changes (the next step would use the new η) ...
    at.run()
    assert loss_chart(at, "Min ( 4 8 1 )")
    at.slider(key="bp_lr").set_value(0.25).run()
    _, df = loss_chart(at, "Min ( 4 8 1 )")
    assert len(df) == 2
    # The shipped model is unchanged: same params as on disk, same answer on the Overview.
    current = at.session_state["_current"]
    for name, value in load_model(MODEL).transformer.params.items():
        np.testing.assert_array_equal(current.model.transformer.params[name], value)
    at.switch_page("../pages/overview.py").run()
    assert metric(at, "Model's answer") == "1"
    assert metric(at, "Confidence") == fmt.percent(run.answer.confidence)
    # ... and goes when the example changes, with a note saying so.
    set_example(at, "Max ( 7 2 9 )")
    at.switch_page(PAGE).run()
    assert no_loss_chart(at) and metric(at, "Steps taken") == "0"
    note = [shown_text(c.value) for c in at.caption if "were for another model or example" in c.value]
    assert note == ["The 1 step taken on Min ( 4 8 1 ) (digits-0-9) were for another model or example: the "
                    "steps start again from this model's own weights."]  # fmt: skip


def open_99(text: str):
    """The page on a digits-0-99 model with real mistakes (tests/fixtures: the shipped one makes none)."""
    at = select_imperfect_99(open_app(PAGE))
    set_example(at, text)
    assert not at.exception
    return at, load_model(IMPERFECT_99)


def test_step_sentence_on_a_small_matched_step():
    # digits-0-99, Max ( 6 57 6 ), η 0.1: confident, the fall is what first order says: a larger η is the advice.
    at, model = open_99("Max ( 6 57 6 )")
    run = run_example(model, "Max ( 6 57 6 )")
    at.button(key="bp_step").click().run()
    l0, l1 = hand_steps(model, run, [0.1])
    text = step_notice(at)
    assert f"Step 1 (η = 0.1): the loss went from {l0:.4e} to {l1:.4e}, a fall of {l0 - l1:.3e}" in text
    assert "matches the first-order prediction" in text and "invisibly small" in text and "try one" in text
    assert "overshoot" not in text
    # float32's own error in this loss is larger than the step: the caption says so, with both losses
    prec = [shown_text(c.value) for c in at.caption if "The steps run in float64" in c.value]
    assert len(prec) == 1 and f"{run.grad_cache.loss:.4e} against {l0:.4e}" in prec[0]
    assert "float32 could not show it" in prec[0]


def test_step_sentences_on_a_wrong_answer_overshoot_flip_and_rise():
    # digits-0-99 answers Min ( 8 0 1 ) with 1 (the true answer is 0).
    at, model = open_99("Min ( 8 0 1 )")
    run = run_example(model, "Min ( 8 0 1 )")
    assert run.answer.value == 1
    at.button(key="bp_step").click().run()  # η 0.1
    text = step_notice(at)
    assert "times the loss itself, which no step can remove" in text and "overshoots" in text
    assert "before the step it wrote 1 (wrong), after it 0 (right)." in text and "try" not in text
    assert list(at.dataframe[0].value["answer"]) == ["1", "0"]
    at.button(key="bp_reset").click().run()
    at.slider(key="bp_lr").set_value(1.0).run()
    at.button(key="bp_step").click().run()
    l0, l1 = hand_steps(model, run, [1.0])
    assert l1 > l0
    text = step_notice(at)
    assert f"a rise of {l1 - l0:.3e}: the step made it worse" in text and "A small enough η always lowers it" in text
    assert "(not a number)" in text and "fall of" not in text


def test_a_second_press_takes_a_further_step_and_reset_goes_back():
    at, model = open_99("Min ( 8 0 1 )")
    run = run_example(model, "Min ( 8 0 1 )")
    at.button(key="bp_step").click().run()  # η 0.1
    at.slider(key="bp_lr").set_value(0.01).run()  # η may change between steps
    at.button(key="bp_step").click().run()
    assert not at.exception
    losses = hand_steps(model, run, [0.1, 0.01])
    assert metric(at, "Steps taken") == "2" and metric(at, "Loss now") == f"{losses[2]:.4e}"
    _, df = loss_chart(at, "Min ( 8 0 1 )")
    assert list(df["label"]) == ["start", "1", "2"]
    np.testing.assert_allclose(df["value"], losses, rtol=1e-9)
    table = at.dataframe[0].value
    assert list(table["η"]) == ["", "0.1", "0.01"]
    assert step_notice(at).startswith(f"What to notice: Step 2 (η = 0.01): the loss went from {losses[1]:.4e}")
    # Reset: back to the model's own weights, whose loss (float64) the page shows again.
    at.button(key="bp_reset").click().run()
    assert metric(at, "Steps taken") == "0" and metric(at, "Loss now") == f"{losses[0]:.4e}"
    assert no_loss_chart(at) and not at.dataframe
    at.button(key="bp_step").click().run()  # the next step starts from the model's weights again
    _, df = loss_chart(at, "Min ( 8 0 1 )")
    np.testing.assert_allclose(df["value"], hand_steps(model, run, [0.01]), rtol=1e-9)


def test_a_confident_model_takes_an_invisibly_small_step():
    at = open_app(PAGE)
    model, run = reference("Max ( 7 2 9 )")
    at.slider(key="bp_lr").set_value(1.0).run()
    at.button(key="bp_step").click().run()
    l0, l1 = hand_steps(model, run, [1.0])
    text = step_notice(at)
    assert f"the loss went from {l0:.4e} to {l1:.4e}" in text and "matches the first-order prediction" in text
    assert "η is already the largest this page offers" in text and "try one" not in text


@pytest.mark.parametrize(("name", "text"), [(MODEL, "Max ( 7 2 9 )"), (IMPERFECT, "Min ( 8 0 1 )")])
def test_notice_compares_like_with_like_and_formula_matches_the_model(name, text):
    at = open_app(PAGE) if name == MODEL else select_imperfect_99(open_app(PAGE))  # a wrong answer: Min ( 8 0 1 )
    set_example(at, text)
    model = load_model(name if name == MODEL else IMPERFECT_99)
    run = run_example(model, text)
    g = run.grad_cache
    resid = [n for n in model.transformer.hook_names() if ".hook_resid_" in n]
    norms = {n: np.linalg.norm(g[n + "_grad"].astype(np.float64)) for n in resid}
    big = max(norms, key=norms.get)
    notice = shown_text(at.info[0].value)
    assert "Compared like with like, along the residual stream" in notice
    assert f"the gradient is largest at {big} (norm {norms[big]:.3e})" in notice
    assert "hook_scale" not in notice and "hook_pattern" not in notice  # other kinds of arrays
    latex = at.latex[0].value
    reads = " ".join(c.value for c in at.caption)
    if model.causal:
        assert r"x_{\le t}" in latex and "the causal mask lets position" in reads
        assert "The largest is on 1" in notice  # the model's own, wrong, top token
    else:
        assert r"\mid x)" in latex and "no causal mask" in reads and "(teacher forcing)" not in reads


def test_causal_pre_norm_model():
    at = open_app(PAGE)
    model = causal_model()
    at.session_state["session_models"] = {"tiny causal": ("session:test-causal-backprop", model)}
    at.run()
    at.selectbox(key="bp_activation").select("blocks.1.hook_resid_post").run()
    at.selectbox(key="model_name").select("tiny causal").run()
    assert not at.exception
    run = run_example(model, "Max ( 7 2 9 )")  # still valid for 0-99: the example stays
    g = run.grad_cache
    assert metric(at, "Answer positions scored") == "2"  # `9`, then <eos>
    assert metric(at, "Loss") == f"{g.loss:.4e}"
    _, df = chart(at, "‖d loss / d activation‖")
    assert len(df) == len(model.transformer.hook_names()) and "ln_final.normalized" in set(df["name"])
    np.testing.assert_allclose(
        df["norm"], [np.linalg.norm(g[n + "_grad"]) for n in model.transformer.hook_names()], rtol=1e-6
    )
    _, df = chart(at, "d loss / d blocks.1.hook_resid_post")
    np.testing.assert_allclose(df["value"], g["blocks.1.hook_resid_post_grad"][0].ravel(), rtol=1e-6)
    at.selectbox(key="head").select(1).run()
    at.selectbox(key="bp_activation").select("ln_final.hook_normalized").run()
    at.selectbox(key="bp_param").select("blocks.0.attn.W_O").run()
    _, df = chart(at, "d loss / d ln_final.hook_normalized")
    np.testing.assert_allclose(df["value"], g["ln_final.hook_normalized_grad"][0].ravel(), rtol=1e-6)
    _, df = chart(at, "d loss / d blocks.0.attn.W_O (head 1)")
    np.testing.assert_allclose(df["value"], g.param_grads["blocks.0.attn.W_O"][1].ravel(), rtol=1e-6)
    at.button(key="bp_step").click().run()
    before, after = hand_sgd(model, run, 0.1)
    _, df = loss_chart(at, "Max ( 7 2 9 )")
    np.testing.assert_allclose(df["value"], [before, after], rtol=1e-9)
    set_example(at, "Max ( 47 82 19 )")
    run = run_example(model, "Max ( 47 82 19 )")
    assert metric(at, "Answer positions scored") == "3"  # `8`, `2`, <eos>
    _, df = chart(at, "d loss / d ln_final.hook_normalized")
    np.testing.assert_allclose(df["value"], run.grad_cache["ln_final.hook_normalized_grad"][0].ravel(), rtol=1e-6)
    # Back to the post-norm model: a name it lacks falls back to the default.
    at.selectbox(key="model_name").select(MODEL).run()
    assert not at.exception
    assert at.selectbox(key="bp_activation").value == "hook_embed"
    assert chart(at, "d loss / d hook_embed")
