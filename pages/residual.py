"""Residual stream, LayerNorm & FFN: the stream through the blocks, one LayerNorm, one FFN, sublayer writes."""

import pandas as pd
import streamlit as st

from explainer import charts, state, vega
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
st.caption(
    f"Model **{fmt.literal(cur.model_name)}** ({'pre' if pre else 'post'}-norm, {ACTIVATION[cfg.activation]} FFN) on "
    f"**{cur.text}**; block **{layer}** (choose it in the sidebar)."
)

# ---------------------------------------------------------------- the lesson
st.markdown(
    "Every position carries one vector of d_model = "
    f"{cfg.d_model} numbers, the **residual stream**. Each sublayer (attention, then the FFN) reads it and "
    "**adds** what it computes back onto it, so information is accumulated, not replaced. **LayerNorm** "
    "rescales each position's vector to mean 0 and standard deviation 1, then applies a learned gain $w$ and "
    "bias $b$. The **FFN** is the same two-layer network applied to every position on its own."
)
if pre:
    st.latex(r"x \leftarrow x + \mathrm{Attn}(\mathrm{LN}_1(x)) \qquad x \leftarrow x + \mathrm{FFN}(\mathrm{LN}_2(x))"
             r"\qquad \text{(pre-norm; a final LN before the unembedding)}")  # fmt: skip
else:
    st.latex(r"x \leftarrow \mathrm{LN}_1(x + \mathrm{Attn}(x)) \qquad x \leftarrow \mathrm{LN}_2(x + \mathrm{FFN}(x))"
             r"\qquad \text{(post-norm: Add \& Norm)}")  # fmt: skip
act = r"\mathrm{ReLU}" if cfg.activation == "relu" else r"\mathrm{GELU}"
st.latex(
    r"\mathrm{LN}(x) = w \odot \frac{x - \mu}{\sqrt{\sigma^2 + \epsilon}} + b \qquad "
    rf"\mathrm{{FFN}}(x) = {act}(x W_{{in}} + b_{{in}})\, W_{{out}} + b_{{out}}"
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
st.subheader("The residual stream through the blocks")
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
        title="How much each sublayer writes into the stream (norm of its output)"),
    width="stretch",
)  # fmt: skip

# ---------------------------------------------------------------- LayerNorm
st.subheader(f"LayerNorm in block {layer}")
norms = dict(res.layer_norms(cfg))
ln_names = ["ln1", "ln2", "ln_final"] if pre else ["ln1", "ln2"]
state.keep_valid("resid_ln", ln_names)  # a post-norm model has no ln_final
which = st.segmented_control("LayerNorm", ln_names, default="ln1", key="resid_ln") or "ln1"
prefix = which if which == "ln_final" else f"blocks.{layer}.{which}"
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
                          title=f"Before {prefix}"),
    width="stretch",
where=c1)  # fmt: skip
vega.draw(
    charts.matrix_heatmap(ln_out, labels, x_title="d_model dimension", value_title="LN output",
                          title=f"After {prefix} (hook_out)"),
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
zero_note = (
    "ReLU sets every negative pre-activation to exactly 0: those neurons are off."
    if cfg.activation == "relu"
    else "GELU is never exactly 0 (negative inputs give small negative outputs): 'active' here means > 0."
)
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
c3.caption(f"Top {TOP_K} neurons at {fmt.code(run.labels[answer_at])} (position {answer_at}).")
