"""Backprop: the loss on the true answer, its gradient at every activation and parameter, SGD steps on a copy."""

from dataclasses import replace

import numpy as np
import pandas as pd
import streamlit as st

from explainer import charts, compare, links, path, state, vega
from explainer import format as fmt
from model_core.analysis import gradients as bp

cur = state.current()
model, run = cur.model, cur.run
net, vocab = model.transformer, model.vocab
grads = run.grad_cache  # teacher-forced with the true answer: `<name>_grad`, .loss, .param_grads
expr = run.answer.expression
train_labels = vocab.decode(run.train_tokens)
scored = bp.target_probs(grads, run.train_targets)  # [(position, true token, probability)]
act_norms = bp.activation_grad_norms(net, grads)
par_norms = bp.param_grad_norms(net, grads.param_grads)
formula = bp.loss_formula(net.cfg.causal)


def token(i: int) -> str:
    return fmt.code(vocab.decode([i])[0])


st.title("Backprop")
path.quiz_here()  # predict, then reveal
reads = fmt.code(" ".join(train_labels))
st.caption(
    f"Example **{fmt.literal(expr.text)}**, true answer **{expr.answer}**. To learn, the model is scored on the "
    + (f"*true* answer, not its own (teacher forcing): it reads {reads} and at each answer position the target is "
       "the next true token." if net.cfg.causal else
       f"*true* answer: it reads the input {reads} (no answer tokens) and the target at `=` is the true answer.")
)  # fmt: skip
st.markdown(
    "**The loss** is the cross-entropy at the answer positions (here *P* = {"
    f"{', '.join(str(t) for t, _, _ in scored)}}}): minus the log of the probability the model gives the true "
    "next token, averaged."
)
st.latex(formula.latex)
st.caption(formula.reads)
if compare.on(cur):
    compare.header(cur)
    other = cur.compare_run
    names = ["blocks.0.hook_resid_pre"] + [f"blocks.{i}.{h}" for i in range(net.cfg.n_layers)
                                            for h in ("hook_resid_mid", "hook_resid_post")]  # fmt: skip
    norm = lambda g: np.stack([np.linalg.norm(g[n + "_grad"][0], axis=-1) for n in names])  # noqa: E731 [hooks, T']
    compare.heatmaps(cur, "Gradient norms", norm(grads), norm(other.grad_cache), names,
                     names, charts.position_labels(train_labels),
                     charts.position_labels(vocab.decode(other.train_tokens)), x_title="position (teacher-forced)",
                     y_title="gradient at", value_title="|∂L/∂x|", kind="magnitude", key="bp_compare")  # fmt: skip
st.markdown(
    "**Backprop** applies the chain rule stage by stage, from the loss down to the embeddings: the gradient at "
    "each activation is the gradient at the stage above times that stage's derivative. Where the residual "
    "stream branches, the gradients of both branches add."
)
# two formulas, one per line: side by side they do not fit a phone
st.latex(
    r"\frac{\partial \mathcal{L}}{\partial x_{\ell}} = \frac{\partial \mathcal{L}}{\partial x_{\ell+1}}"
    r"\,\frac{\partial x_{\ell+1}}{\partial x_{\ell}}"
)
st.latex(
    r"\frac{\partial \mathcal{L}}{\partial \text{logits}_t} = \frac{\operatorname{softmax}(\text{logits}_t)"
    r" - \text{onehot}(y_t)}{|P|}"
)
st.caption(
    "Each number below is d loss / d that activation (or parameter) exactly as the model's backward pass "
    "computed it; the test suite checks every one against finite differences (`tests/model/test_gradients.py`)."
)

c1, c2, c3 = st.columns(3)
c1.metric("Loss", f"{grads.loss:.4e}", help="Cross-entropy on the true answer (float32, as the model computes it).")
c2.metric("Answer positions scored", len(scored))
pos0, tok0, p0 = scored[0]
c3.metric(f"p({token(tok0)}) at position {pos0}", fmt.percent(p0))
c3.caption(f"log p = {fmt.logprob(p0)}")

st.info(
    "What to notice:\n"
    f"- {bp.logit_grad_text(grads['hook_logits_grad'][0, pos0], grads['hook_logits'][0, pos0], tok0, pos0, token)}\n"
    f"- {bp.stream_text(bp.stream_grad_norms(net, grads))}\n"
    f"- {bp.param_text(par_norms)}",
    icon=":material/lightbulb:",
)

# ---------------------------------------------------------------- norms by layer
st.subheader("Gradient norms by layer")
links.bind("log", "bp_log", True)
log_scale = st.toggle("Log scale", value=True, key="bp_log", help="The norms span many decades.")


def short(name: str) -> str:
    """`blocks.1.attn.hook_pattern` -> `1.attn.pattern`: fits the chart's labels."""
    return name.replace("blocks.", "").replace("hook_", "")


def norm_bars(norms: list[tuple[str, float]], title: str):
    df = pd.DataFrame({"name": [short(n) for n, _ in norms], "norm": [v for _, v in norms], "kind": "gradient"})
    return charts.norms_by_layer_bars(df, title=title, log_scale=log_scale)


left, right = st.columns(2)
vega.draw(norm_bars(act_norms, "‖d loss / d activation‖, in forward order"), width="stretch", where=left)
vega.draw(norm_bars(par_norms, "‖d loss / d parameter‖, by layer"), width="stretch", where=right)
st.caption("Labels drop `blocks.` and `hook_`: `1.attn.pattern` is `blocks.1.attn.hook_pattern`.")

# ---------------------------------------------------------------- one gradient in full
st.subheader("One gradient in full")
st.caption(f"Red: increasing that number raises the loss; blue: lowers it. Arrays with heads show head {cur.head} "
           "(the sidebar's).")  # fmt: skip
positions = charts.position_labels(train_labels)
hooks = net.hook_names()
params = [name for name, _ in par_norms]
state.keep_valid("bp_activation", hooks, "hook_embed")  # another model: its names differ
state.keep_valid("bp_param", params, "embed.W_E")
links.bind("act", "bp_activation", "hook_embed", options=hooks)
links.bind("param", "bp_param", "embed.W_E", options=params)
left, right = st.columns(2)
act_name = left.selectbox("Activation", hooks, key="bp_activation")
par_name = right.selectbox("Parameter", params, key="bp_param")
for col, name, array in (
    (left, act_name, grads[act_name + "_grad"]),
    (right, par_name, grads.param_grads[par_name]),
):
    view = bp.view_2d(name, array, cur.head, positions, vocab.to_list())
    vega.draw(
        charts.matrix_heatmap(view.values, view.row_labels, view.col_labels,
                              title=f"d loss / d {name}" + (f" ({view.sliced})" if view.sliced else ""),
                              x_title=view.x_title, y_title=view.y_title, value_title="gradient", kind="signed"),
        width="stretch",
    where=col)  # fmt: skip

# ---------------------------------------------------------------- SGD steps
st.subheader("Gradient descent, one step at a time")
st.markdown("Move every parameter a little against its gradient, on a copy of the model (the real one never changes):")
st.latex(r"\theta \leftarrow \theta - \eta\, \frac{\partial \mathcal{L}}{\partial \theta}, \qquad "
         r"\Delta\mathcal{L} \approx -\eta\, \lVert \nabla_\theta \mathcal{L} \rVert^2")  # fmt: skip
LR_MAX = 1.0
MAX_STEPS = 25  # a walk of this many steps is kept; its chart and table still fit a phone
STEPS = "bp_steps"  # {"at": (model key, example), "model": name, "steps": [SGDStep]}; the last holds its parameters
links.bind("lr", "bp_lr", 0.1, low=0.001, high=LR_MAX)
lr = st.slider("Learning rate η", min_value=0.001, max_value=LR_MAX, value=0.1, step=0.001, format="%.3f",
               key="bp_lr")  # fmt: skip
here = (cur.model_key, cur.text)
walk = st.session_state.get(STEPS)
if walk is not None and walk["at"] != here:  # another model or example: its steps do not apply here
    n = len(walk["steps"])
    st.caption(f"The {n} step{'s' if n != 1 else ''} taken on {fmt.literal(walk['at'][1])} "
               f"({fmt.literal(walk['model'])}) were for another model or example: the steps start again from "
               "this model's own weights.")  # fmt: skip
    del st.session_state[STEPS]
    walk = None
steps = walk["steps"] if walk is not None else []
left, right = st.columns(2)
if left.button("Take an SGD step on this example", key="bp_step", icon=":material/south:",
               disabled=len(steps) >= MAX_STEPS):  # fmt: skip
    last = steps[-1] if steps else None
    new = bp.sgd_step(model, run, lr, start=last.params if last else None, index=len(steps) + 1)
    steps = [*steps[:-1], replace(last, params=None)] if last else []  # only the newest step's weights are kept
    steps.append(new)
    st.session_state[STEPS] = {"at": here, "model": cur.model_name, "steps": steps}
if right.button("Reset to the model's own weights", key="bp_reset", icon=":material/restart_alt:",
                disabled=not steps):  # fmt: skip
    st.session_state.pop(STEPS, None)
    steps = []
st.caption(
    "Each press takes a further step from where the last one left, with the η set at that moment (η may change "
    "between steps). Changing the model or the example, or Reset, starts again from the model's own weights."
    + (f" {MAX_STEPS} steps is the most kept: Reset to start again." if len(steps) >= MAX_STEPS else "")
)
loss64 = steps[0].loss_before if steps else bp.float64_loss(model, run)
b1, b2, b3 = st.columns(3)
b1.metric("Steps taken", len(steps))
if steps:
    last = steps[-1]
    b2.metric("Loss now", f"{last.loss_after:.4e}", delta=f"{-last.drop:.3e}", delta_color="inverse",
              help=f"After step {last.index}; the arrow is this step's change (float64).")  # fmt: skip
    b3.metric(f"Step {last.index}'s first-order prediction η‖g‖²", f"{last.predicted_drop:.3e}")
    labels = ["start"] + [str(s.index) for s in steps]
    losses = [steps[0].loss_before] + [s.loss_after for s in steps]
    vega.draw(
        charts.before_after_bars(pd.DataFrame({"label": labels, "value": losses}),
                                 title=f"Loss on {expr.text}, step by step"),
        width="stretch",
    )  # fmt: skip
    answers = [steps[0].before] + [s.after for s in steps]
    rows = [
        {"step": label, "η": f"{s.lr:g}" if s is not None else "", "loss": loss,
         "answer": str(a.value) if a.value is not None else " ".join(a.answer_tokens),
         "correct": a.correct, "confidence": fmt.percent(a.confidence),
         "log confidence": float(np.log(a.step_probs.max(axis=-1)).sum())}
        for label, s, loss, a in zip(labels, [None, *steps], losses, answers, strict=True)
    ]  # fmt: skip
    st.dataframe(pd.DataFrame(rows), hide_index=True,
                 column_config={"loss": st.column_config.NumberColumn(format="%.4e"),
                                "log confidence": st.column_config.NumberColumn(format="%.4g")})  # fmt: skip
    st.caption("*start*: the model's own weights; *1*, *2*, …: after each step (float64).")
    st.info("What to notice: " + bp.step_text(last, fmt.code, LR_MAX), icon=":material/lightbulb:")
else:
    b2.metric("Loss now", f"{loss64:.4e}", help="The model's own weights, in float64.")
    st.caption("Press the button to take the first step from the model's own weights.")
st.caption(bp.precision_text(grads.loss, loss64, steps[-1].drop if steps else None))
