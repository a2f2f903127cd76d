"""Residual stream, LayerNorm & FFN: the stream through the blocks, one LayerNorm, one FFN, sublayer writes."""

import altair as alt
import numpy as np
import pandas as pd
import streamlit as st

from explainer import charts, compare, links, path, state, vega
from explainer import format as fmt
from model_core.analysis import residual as res

TOP_K = 10
ACTIVATION = {"relu": "ReLU", "gelu": "GELU"}

cur = state.current()
model, run, layer = cur.model, cur.run, cur.layer
net, cache = model.transformer, cur.run.cache
cfg, params = net.cfg, net.params
labels = charts.position_labels(run.labels)
answer_at = run.answer_pos
pre = cfg.norm == "pre"

st.title("Residual stream, LayerNorm & FFN")
path.quiz_here()  # predict, then reveal
st.caption(
    f"Model **{fmt.literal(cur.model_name)}** ({'pre' if pre else 'post'}-norm, {ACTIVATION[cfg.activation]} FFN) on "
    f"**{cur.text}**; block **{layer}** (choose it in the sidebar)."
)

if compare.on(cur):
    compare.header(cur)
    other = cur.compare_run
    norms_a = res.stage_norms(res.residual_stages(net, cache))
    norms_b = res.stage_norms(res.residual_stages(net, other.cache))
    compare.heatmaps(cur, "Stream norms", np.stack([n for _, n in norms_a]),
                     np.stack([n for _, n in norms_b]), [s for s, _ in norms_a], [s for s, _ in norms_b], labels,
                     charts.position_labels(other.labels), x_title="position", y_title="after",
                     value_title="norm", kind="magnitude", key="resid_compare")  # fmt: skip

# ---------------------------------------------------------------- the lesson
st.markdown(
    "Every position carries one vector of d_model = "
    f"{cfg.d_model} numbers, the **residual stream**. Each sublayer (attention, then the FFN) reads it and "
    "**adds** what it computes back onto it. "
    + ("In this pre-norm model nothing rescales the sum, so information is accumulated, not replaced. " if pre else
       "In this post-norm model a LayerNorm then rescales the sum (Add & Norm), so what the stream carried is kept "
       "only as far as its direction survives: the cosines below measure how much. ")
    + "**LayerNorm** rescales each position's vector to mean 0 and standard deviation 1, then applies a learned "
    "gain $w$ and bias $b$. The **FFN** is the same two-layer network applied to every position on its own."
)
# one short formula a line, so that each fits a phone's width
if pre:
    st.latex(r"\begin{gathered} x \leftarrow x + \mathrm{Attn}(\mathrm{LN}_1(x)) \\ x \leftarrow x + "
             r"\mathrm{FFN}(\mathrm{LN}_2(x)) \\ \text{(pre-norm; a final LN at the end)} \end{gathered}")  # fmt: skip
else:
    st.latex(r"\begin{gathered} x \leftarrow \mathrm{LN}_1(x + \mathrm{Attn}(x)) \\ x \leftarrow "
             r"\mathrm{LN}_2(x + \mathrm{FFN}(x)) \\ \text{(post-norm: Add \& Norm)} \end{gathered}")  # fmt: skip
act = r"\mathrm{ReLU}" if cfg.activation == "relu" else r"\mathrm{GELU}"
st.latex(
    r"\begin{gathered} \mathrm{LN}(x) = w \odot \frac{x - \mu}{\sqrt{\sigma^2 + \epsilon}} + b \\ "
    rf"\mathrm{{FFN}}(x) = {act}(x W_{{in}} + b_{{in}})\, W_{{out}} + b_{{out}} \end{{gathered}}"
)

stages = res.stage_norms(res.residual_stages(net, cache))
writes = res.sublayer_writes(net, cache)
post = cache[f"blocks.{layer}.mlp.hook_post"][0]  # [pos, d_ff]
active = res.active_fraction(post)
top_idx, top_val = res.top_neurons(post[answer_at], TOP_K)
first_norm, last_norm = stages[0][1][answer_at], stages[-1][1][answer_at]
biggest = max(writes, key=lambda w: w[2][answer_at])
st.info(
    f"What to notice: at {fmt.code(run.labels[answer_at])} (position {answer_at}) the stream's norm goes from "
    f"{first_norm:.3f} ({stages[0][0]}) to {last_norm:.3f} ({stages[-1][0]}); the largest write into it there is "
    f"block {biggest[0]}'s {biggest[1]} (norm {biggest[2][answer_at]:.3f}). In block {layer}'s FFN, "
    f"{active[answer_at]:.1%} of the {cfg.d_ff} neurons are active at this position; the strongest is neuron "
    f"{top_idx[0]} at {top_val[0]:.3f}.",
    icon=":material/lightbulb:",
)

# ---------------------------------------------------------------- the stream through the blocks
st.subheader("The residual stream through the " + ("blocks" if cfg.n_layers > 1 else "block"))
st.markdown(
    "The norm (length) of each position's vector at each stage: how much it carries. "
    + (
        "In this post-norm model every stage after the embedding is a LayerNorm output, so the norms are pulled "
        f"back to a similar size (√d_model = {cfg.d_model**0.5:.4g} before the learned gains w and biases b)."
        if not pre
        else "In this pre-norm model nothing rescales the stream between blocks: every sublayer's "
        "write is simply added to it (the final LayerNorm acts only on the way out)."
    )
)
vega.draw(
    charts.stage_norms(
        pd.DataFrame([{"stage": name, "position_label": labels[i], "norm": float(n[i])}
                      for name, n in stages for i in range(len(labels))]),
        title="Residual-stream norm per position and stage"),
    width="stretch",
)  # fmt: skip
vega.draw(
    charts.sublayer_contributions(
        pd.DataFrame([{"block": b, "sublayer": s, "position_label": labels[i], "norm": float(n[i])}
                      for b, s, n in writes for i in range(len(labels))]),
        title="How much each sublayer writes (its output's norm)"),
    width="stretch",
)  # fmt: skip
st.subheader("How much of its direction the stream keeps")
cosines = res.stream_cosines(net, cache)
st.markdown(res.direction_text(cfg.norm, cosines, answer_at, f"{fmt.code(run.labels[answer_at])} (position "
                                                             f"{answer_at})"))  # fmt: skip
st.dataframe(
    pd.DataFrame({"position": labels} | {f"block {b} {s}": c for b, s, c in cosines}),
    hide_index=True, column_config={f"block {b} {s}": st.column_config.NumberColumn(
        format="%.3f", help=f"cosine between the stream before and after block {b}'s {s}") for b, s, _ in cosines},
)  # fmt: skip

# ---------------------------------------------------------------- LayerNorm
st.subheader(f"LayerNorm in block {layer}")
norms = dict(res.layer_norms(cfg))
ln_names = ["ln1", "ln2", "ln_final"] if pre else ["ln1", "ln2"]
ln_words = {"ln1": f"LayerNorm 1 ({'before' if pre else 'after'} attention)",
            "ln2": f"LayerNorm 2 ({'before' if pre else 'after'} the FFN)", "ln_final": "final LayerNorm"}
# required: clicking the selected option again keeps it (without it the control would return None); a value that
# is not an option (None set through the session state, ln_final after a switch to a post-norm model) falls back
# on the last choice, if this model has it
last = st.session_state.get("resid_ln_last")
last = last if last in ln_names else "ln1"
state.keep_valid("resid_ln", ln_names, default=last)
links.bind("ln", "resid_ln", "ln1", options=ln_names)
which = st.segmented_control("LayerNorm", ln_names, default="ln1", required=True, format_func=ln_words.get,
                             key="resid_ln") or last  # fmt: skip
st.session_state["resid_ln_last"] = which
prefix = which if which == "ln_final" else f"blocks.{layer}.{which}"
ln_title = "the final LayerNorm" if which == "ln_final" else f"LayerNorm {which[-1]} of block {layer}"
ln_in = cache[f"{prefix}.hook_in"][0]  # [pos, d_model]
ln_out = cache[f"{prefix}.hook_out"][0]  # [pos, d_model]: after the gain w and bias b
scale = cache[f"{prefix}.hook_scale"][0, :, 0]  # [pos]
mean_in, std_in = res.row_mean_std(ln_in)
mean_out, std_out = res.row_mean_std(ln_out)
st.markdown(
    f"`{prefix}` normalises {norms[prefix]}. At {fmt.code(run.labels[answer_at])} its input has mean "
    f"{mean_in[answer_at]:.4f} and standard deviation {std_in[answer_at]:.4f} (the model's `hook_scale`, "
    f"√(σ²+ε) = {scale[answer_at]:.4f}); after it, mean {mean_out[answer_at]:.4f} and std {std_out[answer_at]:.4f}. "
    "The normalisation alone gives mean 0 and std just under 1 (ε); the learned gain w and bias b then stretch and "
    "shift each dimension."
)
c1, c2 = st.columns(2)
vega.draw(
    charts.matrix_heatmap(ln_in, labels, x_title="d_model dimension", value_title="LN input",
                          title=alt.TitleParams(f"Before {ln_title}", subtitle=f"{prefix}.hook_in")),
    width="stretch",
where=c1)  # fmt: skip
vega.draw(
    charts.matrix_heatmap(ln_out, labels, x_title="d_model dimension", value_title="LN output",
                          title=alt.TitleParams(f"After {ln_title} (gain and bias applied)",
                                                subtitle=f"{prefix}.hook_out")),
    width="stretch",
where=c2)  # fmt: skip
st.dataframe(
    pd.DataFrame({"position": labels, "mean before": mean_in, "std before": std_in, "hook_scale": scale,
                  "mean after": mean_out, "std after": std_out}),
    hide_index=True, column_config={c: st.column_config.NumberColumn(format="%.4f") for c in
                                    ("mean before", "std before", "hook_scale", "mean after", "std after")},
)  # fmt: skip

# ---------------------------------------------------------------- FFN
st.subheader(f"The FFN of block {layer}")
if cfg.activation == "relu":
    zero_note = "ReLU sets every negative pre-activation to exactly 0: those neurons are off."
else:
    st.latex(r"\begin{gathered} \mathrm{GELU}(x) = \tfrac12\, x \left(1 + \tanh u\right), \\ "
             r"u = \sqrt{2/\pi}\,(x + 0.044715\,x^3) \end{gathered}")  # fmt: skip
    zero_note = "This GELU is the tanh approximation (as GPT-2's). " + res.gelu_text(post, f"block {layer}'s")
st.markdown(
    f"{cfg.d_ff} hidden neurons per position (`mlp.hook_post`, after the activation). {zero_note} "
    f"At {fmt.code(run.labels[answer_at])}, {active[answer_at]:.1%} of them are > 0."
)
vega.draw(
    charts.matrix_heatmap(post, labels, x_title="neuron", value_title="activation",
                          title=f"FFN hidden activations, block {layer}"),
    width="stretch",
)  # fmt: skip
c1, c2, c3 = st.columns([2, 1, 1])
vega.draw(
    charts.neuron_histogram(post, title=f"All {post.size} activations of block {layer} ({len(labels)} positions)"),
    width="stretch",
where=c1)
c2.dataframe(
    pd.DataFrame({"position": labels, "active (> 0)": active}), hide_index=True,
    column_config={"active (> 0)": st.column_config.ProgressColumn(format="%.3f", min_value=0, max_value=1)},
)  # fmt: skip
c3.dataframe(
    pd.DataFrame({"neuron": top_idx, "activation": top_val}), hide_index=True,
    column_config={"activation": st.column_config.NumberColumn(format="%.4f")},
)  # fmt: skip
c3.caption(f"Top {len(top_idx)} neurons at {fmt.code(run.labels[answer_at])} (position {answer_at}).")
