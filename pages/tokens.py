"""Tokens & embeddings: text -> token ids -> token vectors + position vectors -> the residual stream."""

import altair as alt
import numpy as np
import pandas as pd
import streamlit as st

from explainer import charts, compare, links, path, state, vega
from explainer import format as fmt
from model_core.analysis import embeddings as emb
from model_core.interp.input_space import SAMPLE
from model_core.interp.positions import WithoutPositions, accuracy_without_positions


def _titled(chart, words: str, name: str):
    """A chart titled in words for the reader, with the array's name in the model as a smaller second line."""
    return chart.properties(title=alt.TitleParams(words, subtitle=name, anchor="start"))


# Charts that depend on the model (not on the example) are built once per model.
@st.cache_resource(show_spinner=False, max_entries=64)
def _sinusoid_chart(model_key: str, dims: tuple[int, ...], n_used: int, _net):
    table = _net.positional_table()
    return _titled(charts.sinusoid_lines(table, dims), f"Sinusoids of the table at positions 0-{len(table) - 1}",
                   f"this example uses positions 0-{n_used - 1}")  # fmt: skip


@state.model_cache(max_entries=8, session_entries=1)
def _without_positions(model_key: str, _model) -> WithoutPositions:
    """Accuracy per operation with and without the positional encoding, over the input space (once per model)."""
    return accuracy_without_positions(_model)


@state.model_cache(max_entries=8, session_entries=2)
def _embedding_change(model_key: str, _model) -> emb.EmbeddingChange:
    """W_E against its initialisation from the recorded seed, once per model."""
    return emb.embedding_change(_model)


@state.model_cache(max_entries=8, session_entries=2)
def _learned_table_chart(model_key: str, _net, _change: emb.EmbeddingChange):
    table = _net.positional_table()  # [max_len, d_model]
    n, total = _change.n_positions, len(table)
    rows = [f"pos {p}" if p < n else f"pos {p} (unused)" for p in range(total)]
    words = f"Learned positions: {total} rows, {n}-{total - 1} unused" if n < total else \
        f"Learned positions: all {total} rows"  # fmt: skip
    return _titled(charts.matrix_heatmap(table, rows, value_title="W_pos"), words, "pos_embed.W_pos")


CHANGE, AS_IS = "What training changed (W_E − W_E⁰)", "W_E as it is"


@state.model_cache(max_entries=256, session_entries=4)
def _embedding_pca(model_key: str, view: str, highlight: tuple[str, ...], _model, _change: emb.EmbeddingChange):
    """The scatter of W_E's rows (or of their change since initialisation) on their top two principal
    components, and the digit-order sentence for it."""
    vocab = _model.vocab
    if view == CHANGE:  # the rows training can reach: no gradient reaches the others
        rows = [int(i) for i in np.flatnonzero(_change.trained)]
        vectors = _change.delta[rows]  # [trained tokens, d_model]
        words = "What training changed in W_E"
        name = f"embed.W_E minus its seed-{_change.check.seed} initialisation"
    else:
        rows = list(range(len(vocab)))
        vectors = _model.transformer.params["embed.W_E"]  # [vocab, d_model]
        words, name = "W_E as it is", "embed.W_E"
    points, var = emb.pca_2d(vectors)
    chart = charts.embedding_scatter(
        points, [vocab.tokens[i] for i in rows], groups=[emb.token_groups(vocab)[i] for i in rows],
        highlight=highlight, x_title=f"PC 1 ({var[0]:.0%} of variance)", y_title=f"PC 2 ({var[1]:.0%} of variance)",
    )  # fmt: skip
    rho = emb.digit_order(points, vocab, rows)
    if view == CHANGE:
        text = emb.digit_order_text(rho, of=" of the change")
    else:  # beside the same read-out of the random start, when the start is known
        start = emb.digit_order(emb.pca_2d(_change.init)[0], vocab) if _change.check.reproduced else None
        text = emb.digit_order_text(rho, start=start)
    return _titled(chart, words, name), text, rho


cur = state.current()
model, run = cur.model, cur.run
net, cfg, vocab = model.transformer, model.transformer.cfg, model.vocab
cache, labels = run.cache, run.labels
rows = charts.position_labels(labels)
T, D = len(labels), cfg.d_model

st.title("Tokens & embeddings")
path.quiz_here()  # predict, then reveal
st.markdown(
    f"Before any attention, the text becomes numbers in three steps: it is cut into **tokens**, each token id "
    f"picks a row of the learned embedding table $W_E$ (a vector of {D} numbers), and a **positional** vector "
    "is added so the model can tell the first value from the last. Their sum is where the residual stream begins."
)

if compare.on(cur):
    compare.header(cur)
    other = cur.compare_run
    compare.heatmaps(cur, "Block 0's input (token + position)", cache["blocks.0.hook_resid_pre"][0],
                     other.cache["blocks.0.hook_resid_pre"][0], charts.position_labels(labels),
                     charts.position_labels(other.labels), x_title="dimension", key="tokens_compare")  # fmt: skip

# ---------------------------------------------------------------- 1. tokenisation
st.subheader("1 · Tokenisation")
st.markdown(
    f"`{run.answer.expression.text}` becomes **{T} tokens** from a vocabulary of {len(vocab)}. "
    + emb.value_writing(model.task, run.answer.expression.values)
    + ", values are separated by `,`, and `=` marks where the answer begins."
    + (" A causal model also reads the answer tokens it has written so far." if model.causal else "")
)
table = pd.DataFrame([labels, [str(int(t)) for t in run.tokens]], index=["token", "id"],
                     columns=[str(i) for i in range(T)])  # fmt: skip
st.dataframe(table)

# ---------------------------------------------------------------- 2. token embeddings
st.subheader("2 · Token embeddings")
st.latex(rf"\text{{embed}}_t = W_E[\,\text{{id}}_t\,] \qquad W_E \in \mathbb{{R}}^{{{len(vocab)} \times {D}}}")
vega.draw(
    _titled(charts.matrix_heatmap(cache["hook_embed"][0], rows, value_title="embedding"),
            "Token embeddings: one row of W_E per token", "hook_embed"),
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
                "trained like any other weight wherever training reads it.")  # fmt: skip
    st.latex(r"\text{pos}_p = W_{pos}[\,p\,]")
vega.draw(
    _titled(charts.matrix_heatmap(cache["hook_pos_embed"][0], rows, value_title="encoding"),
            f"Positional encoding added at positions 0-{T - 1}", "hook_pos_embed"),
    width="stretch",
)  # fmt: skip
if cfg.positional == "sinusoidal":
    default = [d for d in (0, 1, 10, 11, 30) if d < D]
    state.keep_valid_many("tokens_dims", list(range(D)), default)  # another model may be narrower
    links.bind("dims", "tokens_dims", default, options=list(range(D)))
    dims = st.multiselect("Dimensions to plot", list(range(D)), default=default, key="tokens_dims",
                          help="Low dimensions oscillate fast, high ones slowly.")  # fmt: skip
    if dims:
        vega.draw(_sinusoid_chart(cur.model_key, tuple(dims), T, net), width="stretch")
else:
    change = _embedding_change(cur.model_key, model)
    vega.draw(_learned_table_chart(cur.model_key, net, change), width="stretch")
    st.info(emb.positions_text(change), icon=":material/lightbulb:")

# a large space (0-99, lists of several lengths) is scored on the stated sample input_space draws
inputs = "every input" if model.task.space_size <= SAMPLE else "a sample of held-out inputs"
st.markdown("**Why position matters.** Switch the positional encoding off (zero `hook_pos_embed` at every "
            f"position) and score the model again on {inputs}:")  # fmt: skip
links.bind("nopos", "tokens_no_pos", False)
if st.toggle(f"Positional encoding off, on {inputs}", key="tokens_no_pos"):
    wp = _without_positions(cur.model_key, model)
    st.dataframe(
        pd.DataFrame({"operation": wp.operations, "as trained": wp.accuracy, "positions off": wp.without,
                      "shuffling the values changes the answer": wp.order_matters}),
        hide_index=True,
        column_config={c: st.column_config.ProgressColumn(c, format="percent", min_value=0.0, max_value=1.0)
                       for c in ("as trained", "positions off")},
    )  # fmt: skip
    st.caption(f"Exact match on {wp.n:,} expressions ({'every input' if wp.n == model.task.space_size else 'a sample'}"
               " of the task), with each answer token read given the right ones before it.")  # fmt: skip
    st.info(" ".join(wp.sentences()), icon=":material/lightbulb:")

# ---------------------------------------------------------------- 4. the sum
st.subheader("4 · Their sum: the start of the residual stream")
st.latex(r"x^{(0)}_t = \text{embed}_t + \text{pos}_t")
vega.draw(
    _titled(charts.matrix_heatmap(cache["blocks.0.hook_resid_pre"][0], rows, value_title="value"),
            "The residual stream entering block 0", "blocks.0.hook_resid_pre"),
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
st.subheader("5 · Geometry of the token embeddings, and what training changed")
st.markdown(
    f"Each of the {len(vocab)} rows of $W_E$ is a point in {D} dimensions. Training does not choose these points "
    "from nothing: it starts from random ones and moves them a little at every step. PCA finds the two directions "
    "along which the rows spread most and projects every token onto them. The tokens of this example are in bold."
)
change = _embedding_change(cur.model_key, model)
st.info(emb.start_text(change), icon=":material/info:")
views = [AS_IS]
if change.check.reproduced:
    st.info(emb.movement_text(change), icon=":material/lightbulb:")
    if np.any(change.delta):
        views = [CHANGE, AS_IS]
        with st.expander("How far each token's row moved"):
            st.dataframe(pd.DataFrame({
                "token": list(change.tokens), "moved (‖ΔW_E‖ / ‖W_E⁰‖)": change.row_change,
                "cosine with its initial row": change.cosine, "gets a gradient in training": change.trained,
            }), hide_index=True, column_config={
                "moved (‖ΔW_E‖ / ‖W_E⁰‖)": st.column_config.NumberColumn(format="%.4f"),
                "cosine with its initial row": st.column_config.NumberColumn(format="%.4f"),
            })  # fmt: skip
state.keep_valid("tokens_pca_view", views)  # another model may have no change to show
links.bind_choice("view", "tokens_pca_view", views)
view = st.radio("Show", views, key="tokens_pca_view", horizontal=True) if len(views) > 1 else AS_IS
scatter, order_text, _ = _embedding_pca(cur.model_key, view, tuple(sorted(set(labels))), model, change)
vega.draw(scatter, width="stretch")
if view == CHANGE and change.untouched:
    st.caption(f"Left out: {', '.join(fmt.code(t) for t in change.untouched)}, whose rows no gradient reaches "
               "(see above).")  # fmt: skip
st.info(order_text, icon=":material/lightbulb:")
