"""Tokens & embeddings: text -> token ids -> token vectors + position vectors -> the residual stream."""

import pandas as pd
import streamlit as st

from explainer import charts, state, vega
from explainer import format as fmt
from model_core.analysis import embeddings as emb


# Charts that depend on the model (not on the example) are built once per model.
@st.cache_resource(show_spinner=False, max_entries=64)
def _sinusoid_chart(model_key: str, dims: tuple[int, ...], n_used: int, _net):
    table = _net.positional_table()
    return charts.sinusoid_lines(table, dims, title=f"Sinusoids of the model's positional table, positions "
                                 f"0-{len(table) - 1} (this example uses 0-{n_used - 1})")  # fmt: skip


@st.cache_resource(show_spinner=False, max_entries=8)
def _learned_table_chart(model_key: str, _net):
    table = _net.positional_table()
    return charts.matrix_heatmap(table, [f"pos {p}" for p in range(len(table))], value_title="W_pos",
                                 title=f"The learned table pos_embed.W_pos: all {len(table)} positions")  # fmt: skip


@st.cache_resource(show_spinner=False, max_entries=256)
def _embedding_pca(model_key: str, highlight: tuple[str, ...], _model):
    """The scatter of W_E's rows on their top two principal components, and the digit-order read-out."""
    vocab = _model.vocab
    points, var = emb.pca_2d(_model.transformer.params["embed.W_E"])
    chart = charts.embedding_scatter(
        points, vocab.to_list(), groups=emb.token_groups(vocab), highlight=highlight,
        x_title=f"PC 1 ({var[0]:.0%} of variance)", y_title=f"PC 2 ({var[1]:.0%} of variance)",
        title="Token embeddings W_E projected on their top two principal components",
    )  # fmt: skip
    return chart, emb.digit_order(points, vocab)


cur = state.current()
model, run = cur.model, cur.run
net, cfg, vocab = model.transformer, model.transformer.cfg, model.vocab
cache, labels = run.cache, run.labels
rows = charts.position_labels(labels)
T, D = len(labels), cfg.d_model

st.title("Tokens & embeddings")
st.markdown(
    f"Before any attention, the text becomes numbers in three steps: it is cut into **tokens**, each token id "
    f"picks a row of the learned embedding table $W_E$ (a vector of {D} numbers), and a **positional** vector "
    "is added so the model can tell the first value from the last. Their sum is where the residual stream begins."
)

# ---------------------------------------------------------------- 1. tokenisation
st.subheader("1 · Tokenisation")
st.markdown(
    f"`{run.answer.expression.text}` becomes **{T} tokens** from a vocabulary of {len(vocab)}. "
    "Each value is written digit by digit (47 → `4` `7`), values are separated by `,`, and `=` marks "
    "where the answer begins."
    + (" A causal model also reads the answer tokens it has written so far." if model.causal else "")
)
table = pd.DataFrame([labels, [str(int(t)) for t in run.tokens]], index=["token", "id"],
                     columns=[str(i) for i in range(T)])  # fmt: skip
st.dataframe(table)

# ---------------------------------------------------------------- 2. token embeddings
st.subheader("2 · Token embeddings")
st.latex(rf"\text{{embed}}_t = W_E[\,\text{{id}}_t\,] \qquad W_E \in \mathbb{{R}}^{{{len(vocab)} \times {D}}}")
vega.draw(
    charts.matrix_heatmap(cache["hook_embed"][0], rows, title="Token embeddings (hook_embed): one row per token",
                          value_title="embedding"),
    width="stretch",
)  # fmt: skip
repeated = sorted({t for t in labels if labels.count(t) > 1}, key=labels.index)
if repeated:
    where = ", ".join(str(i) for i, t in enumerate(labels) if t == repeated[0])
    st.info(
        f"What to notice: {fmt.code(repeated[0])} sits at positions {where} and its rows are identical: the embedding "
        "knows *what* a token is, not *where* it is.",
        icon=":material/lightbulb:",
    )

# ---------------------------------------------------------------- 3. positions
st.subheader("3 · Positional encoding")
if cfg.positional == "sinusoidal":
    st.markdown("This model uses the fixed sinusoidal encoding: each pair of dimensions is a clock at its own speed.")
    st.latex(r"PE_{(p,\,2i)} = \sin\!\left(p / 10000^{2i/d}\right), \qquad "
             r"PE_{(p,\,2i+1)} = \cos\!\left(p / 10000^{2i/d}\right)")  # fmt: skip
else:
    st.markdown("This model **learned** its positional vectors: one row of `pos_embed.W_pos` per position, "
                "trained like any other weight.")  # fmt: skip
    st.latex(r"\text{pos}_p = W_{pos}[\,p\,]")
vega.draw(
    charts.matrix_heatmap(cache["hook_pos_embed"][0], rows, value_title="encoding",
                          title=f"Positional encoding (hook_pos_embed) for positions 0-{T - 1}"),
    width="stretch",
)  # fmt: skip
if cfg.positional == "sinusoidal":
    default = [d for d in (0, 1, 10, 11, 30) if d < D]
    state.keep_valid_many("tokens_dims", list(range(D)), default)  # another model may be narrower
    dims = st.multiselect("Dimensions to plot", list(range(D)), default=default, key="tokens_dims",
                          help="Low dimensions oscillate fast, high ones slowly.")  # fmt: skip
    if dims:
        vega.draw(_sinusoid_chart(cur.model_key, tuple(dims), T, net), width="stretch")
else:
    vega.draw(_learned_table_chart(cur.model_key, net), width="stretch")

# ---------------------------------------------------------------- 4. the sum
st.subheader("4 · Their sum: the start of the residual stream")
st.latex(r"x^{(0)}_t = \text{embed}_t + \text{pos}_t")
vega.draw(
    charts.matrix_heatmap(cache["blocks.0.hook_resid_pre"][0], rows, value_title="value",
                          title="Residual stream before block 0 (blocks.0.hook_resid_pre)"),
    width="stretch",
)  # fmt: skip
summary = emb.embedding_summary(cache)
st.info(
    f"What to notice: this is exactly the sum of the two heatmaps above (largest difference "
    f"{summary['sum_error']:.1g}). Token rows have a mean length of {summary['embed_norm']:.2f}, position "
    f"rows {summary['pos_norm']:.2f}: "
    + ("the token's identity dominates the mix." if summary["embed_norm"] > 1.5 * summary["pos_norm"]
       else "position weighs about as much as identity." if summary["embed_norm"] > summary["pos_norm"] / 1.5
       else "position dominates the mix.")
    + (f" The repeated {fmt.code(repeated[0])} rows now differ: position tells them apart." if repeated else ""),
    icon=":material/lightbulb:",
)  # fmt: skip

# ---------------------------------------------------------------- 5. geometry
st.subheader("5 · Geometry of the learned token embeddings")
st.markdown(
    f"Each of the {len(vocab)} rows of $W_E$ is a point in {D} dimensions. PCA finds the two directions along "
    "which the rows spread most and projects every token onto them. The tokens of this example are in bold."
)
scatter, (rho1, rho2) = _embedding_pca(cur.model_key, tuple(sorted(set(labels))), model)
vega.draw(scatter, width="stretch")
best, rho = (1, rho1) if abs(rho1) >= abs(rho2) else (2, rho2)
st.info(
    f"What to notice: the rank agreement (Spearman's ρ) between a digit's value and its place along PC 1 is "
    f"**{rho1:+.2f}**, along PC 2 **{rho2:+.2f}**. "
    + (f"|ρ| = {abs(rho):.2f} along PC {best}: the digits lie roughly in numerical order."
       if abs(rho) >= 0.7 else "Neither of the top two directions puts the digits in numerical order.")
    + " (The sign of a principal component is arbitrary, so ρ = -1 is as ordered as +1.)",
    icon=":material/lightbulb:",
)  # fmt: skip
