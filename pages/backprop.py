"""Backprop: the loss on the true answer, its gradient at every activation and parameter, one SGD step."""

import numpy as np
import pandas as pd
import streamlit as st

from explainer import charts, state, vega
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

st.title("Backprop")
st.caption(
    f"Example **{expr.text}**, true answer **{expr.answer}**. To learn, the model is scored on the *true* answer, "
    f"not its own (teacher forcing): it reads `{' '.join(train_labels)}` and at each answer position the target "
    "is the next true token."
)
st.markdown(
    "**The loss** is the cross-entropy at the answer positions (here *P* = {"
    f"{', '.join(str(t) for t, _, _ in scored)}}}): minus the log of the probability the model gives the true "
    "next token, averaged."
)
st.latex(r"\mathcal{L} = -\frac{1}{|P|}\sum_{t \in P} \log p_\theta(y_t \mid \text{tokens}_{\le t})")
st.markdown(
    "**Backprop** applies the chain rule stage by stage, from the loss down to the embeddings: the gradient at "
    "each activation is the gradient at the stage above times that stage's derivative. Where the residual "
    "stream branches, the gradients of both branches add."
)
st.latex(
    r"\frac{\partial \mathcal{L}}{\partial x_{\ell}} = \frac{\partial \mathcal{L}}{\partial x_{\ell+1}}"
    r"\,\frac{\partial x_{\ell+1}}{\partial x_{\ell}}, \qquad "
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
c3.metric(f"p(`{vocab.decode([tok0])[0]}`) at position {pos0}", fmt.percent(p0))
c3.caption(f"log p = {fmt.logprob(p0)}")

big_act = max(act_norms, key=lambda item: item[1])
big_par = max(par_norms, key=lambda item: item[1])
small_par = min(par_norms, key=lambda item: item[1])
dlogit = grads["hook_logits_grad"][0, pos0, tok0]
key_bias = (
    f" The smallest is `{small_par[0]}` ({small_par[1]:.1e}): adding the same number to every score of a query "
    "leaves softmax unchanged, so a key bias gets no gradient (only rounding)."
    if small_par[0].endswith("b_K")
    else f" The smallest is `{small_par[0]}` ({small_par[1]:.1e})."
)
st.info(
    f"What to notice: d loss / d logit of the true token `{vocab.decode([tok0])[0]}` at position {pos0} is "
    f"{dlogit:.3e}, negative (raising it lowers the loss); every other token's is positive. "
    f"The activation with the largest gradient is `{big_act[0]}` (norm {big_act[1]:.3e}), the parameter "
    f"`{big_par[0]}` ({big_par[1]:.3e}).{key_bias}",
    icon=":material/lightbulb:",
)

# ---------------------------------------------------------------- norms by layer
st.subheader("Gradient norms by layer")
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

# ---------------------------------------------------------------- one SGD step
st.subheader("One step of gradient descent")
st.markdown("Move every parameter a little against its gradient, on a copy of the model (the real one never changes):")
st.latex(r"\theta \leftarrow \theta - \eta\, \frac{\partial \mathcal{L}}{\partial \theta}, \qquad "
         r"\Delta\mathcal{L} \approx -\eta\, \lVert \nabla_\theta \mathcal{L} \rVert^2")  # fmt: skip
lr = st.slider("Learning rate η", min_value=0.001, max_value=1.0, value=0.1, step=0.001, format="%.3f", key="bp_lr")
step_key = (cur.model_key, cur.text, lr)
if st.button("Take one SGD step on this example", key="bp_step", icon=":material/south:"):
    st.session_state["bp_step_result"] = (step_key, bp.sgd_step(model, run, lr))
stored = st.session_state.get("bp_step_result")
if stored is not None and stored[0] == step_key:
    step = stored[1]
    vega.draw(
        charts.before_after_bars(pd.DataFrame({"label": ["before", "after"],
                                               "value": [step.loss_before, step.loss_after]}),
                                 title=f"Loss on {expr.text} before and after one step (η = {lr:g})"),
        width="stretch",
    )  # fmt: skip
    b1, b2, b3 = st.columns(3)
    b1.metric("Loss before", f"{step.loss_before:.4e}")
    b2.metric("Loss after", f"{step.loss_after:.4e}", delta=f"{-step.drop:.3e}",
              delta_color="inverse")  # fmt: skip
    b3.metric("First-order prediction η‖g‖²", f"{step.predicted_drop:.3e}")
    rows = [
        {"": label, "answer": str(a.value) if a.value is not None else " ".join(a.answer_tokens),
         "correct": a.correct, "confidence": fmt.percent(a.confidence),
         "log confidence": float(np.log(a.step_probs.max(axis=-1)).sum())}
        for label, a in (("before", step.before), ("after", step.after))
    ]  # fmt: skip
    st.dataframe(pd.DataFrame(rows), hide_index=True,
                 column_config={"log confidence": st.column_config.NumberColumn(format="%.4g")})  # fmt: skip
    st.info(
        f"What to notice: the loss went from {step.loss_before:.4e} to {step.loss_after:.4e}, a fall of "
        f"{step.drop:.3e}; to first order it should fall by "
        f"η‖g‖² = {step.predicted_drop:.3e}. "
        "A confident model's gradient is tiny, so one step barely moves it: try a larger η, or a model that is "
        "still learning (Train page). "
        "The step runs in float64 on a copy so such small changes are not lost to rounding.",
        icon=":material/lightbulb:",
    )
else:
    st.caption("Click the button to take the step; the result stays until you change the example, model or η.")
