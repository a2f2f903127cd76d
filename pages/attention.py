"""Attention: one head's queries, keys, scores, mask, pattern and output; every head; head ablation."""

import pandas as pd
import streamlit as st

from explainer import charts, state
from model_core.analysis import attention as aa
from model_core.analysis import output as ao

cur = state.current()
model, run, layer, head = cur.model, cur.run, cur.layer, cur.head
cfg, params, cache = model.transformer.cfg, model.transformer.params, run.cache
labels = charts.position_labels(run.labels)
T, dh = len(run.tokens), cfg.d_head
attn = f"blocks.{layer}.attn."
scores = cache[attn + "hook_attn_scores"][0, head]  # [q_pos, k_pos]
pattern = cache[attn + "hook_pattern"][0, head]  # [q_pos, k_pos]
masked = aa.masked_keys(scores)
answer_at = run.answer_pos

st.title("Attention")
st.caption(
    f"Layer **{layer}**, head **{head}** of {cfg.n_heads} (choose them in the sidebar) on **{cur.text}**: "
    f"{T} positions, d_model {cfg.d_model}, d_head {dh}."
)

# ---------------------------------------------------------------- the lesson
st.markdown(
    "Attention is how a position reads from the others. Each head turns every position's vector $x$ into a "
    "**query** (what am I looking for?), a **key** (what do I contain?) and a **value** (what do I pass on?). "
    "A query's dot product with every key, scaled by $\\sqrt{d_{head}}$, says how well they match; the mask "
    "removes the keys it may not see; a softmax turns the scores into weights that sum to 1; the head's output "
    "$z$ is the weighted mix of the values. $W_O$ projects it back into the residual stream."
)
st.latex(
    r"Q_h = xW_Q^h + b_Q^h,\; K_h = xW_K^h + b_K^h,\; V_h = xW_V^h + b_V^h \qquad "
    r"z_h = \mathrm{softmax}\!\left(\frac{Q_h K_h^\top}{\sqrt{d_{head}}} + M\right) V_h"
)
st.latex(
    r"\mathrm{attn\_out} = \sum_h z_h W_O^h + b_O \qquad (M_{qk} = 0 \text{ if allowed}, -\infty \text{ if masked})"
)

top_key, top_weight = aa.strongest_key(pattern[answer_at])
st.info(
    f"What to notice: in L{layer} H{head} the answer position `{run.labels[answer_at]}` ({answer_at}) puts "
    f"**{top_weight:.2f}** of its attention on `{run.labels[top_key]}` (position {top_key}); its largest scaled "
    f"score is {scores[answer_at, top_key]:.3f}. Compare the other heads of the layer below, and switch heads "
    "off at the bottom of the page to see which ones the answer needs.",
    icon=":material/lightbulb:",
)

# ---------------------------------------------------------------- step 1: Q, K, V
st.subheader("1 · Queries, keys and values")
st.markdown(f"Each is [positions × d_head] = [{T} × {dh}] for this head, computed from the block's input.")
shown = st.segmented_control("Show", ["Q", "K", "V"], default="Q", key="attn_qkv") or "Q"
st.altair_chart(
    charts.matrix_heatmap(cache[attn + f"hook_{shown.lower()}"][0, :, head], labels, x_title="d_head dimension",
                          value_title=shown, title=f"{shown} of L{layer} H{head}"),
    width="stretch",
)  # fmt: skip

# ---------------------------------------------------------------- step 2: scores and mask
st.subheader("2 · Scores Q·Kᵀ/√d_head and the mask")
n_masked = int(masked.sum())
if n_masked:
    why = "every key after the query (causal: no peeking at the future)" if cfg.causal else "padding keys"
    masking = f"{n_masked} of {T * T} cells are masked: {why}. Their score is −∞, so their weight is exactly 0."
else:
    masking = f"Bidirectional model, no padding: nothing is masked, every query may read all {T} keys."
st.markdown(f"Dividing by √{dh} = {dh**0.5:.4g} keeps the scores from growing with d_head. {masking}")
c1, c2 = st.columns([3, 2])
c1.altair_chart(
    charts.attention_scores_heatmap(scores, run.labels, title=f"Scaled scores, L{layer} H{head}"),
    width="stretch",
)
c2.altair_chart(
    charts.matrix_heatmap((~masked).astype(float), labels, labels, kind="probability", x_title="key position",
                          y_title="query position", value_title="may attend (1) / masked (0)",
                          title="Mask (read from the −∞ scores)"),
    width="stretch",
)  # fmt: skip

# ---------------------------------------------------------------- step 3: softmax pattern
st.subheader("3 · Softmax: the attention pattern")
st.markdown("Each row sums to 1. **Click a row** to see that query's attention as bars.")
event = st.session_state.get("attn_pattern_click") or {}
picked = [int(p["query_pos"]) for p in (event.get("selection") or {}).get("query", []) if "query_pos" in p]
picked = [q for q in picked if 0 <= q < T]  # a selection can outlive an edit of the example
query = picked[0] if picked else answer_at
c1, c2 = st.columns([3, 2])
c1.altair_chart(
    charts.attention_heatmap(pattern, run.labels, title=f"Attention pattern, L{layer} H{head}", selected_query=query,
                             masked=masked if n_masked else None),
    width="stretch", on_select="rerun", key="attn_pattern_click",
)  # fmt: skip
c2.altair_chart(charts.attention_bars(pattern[query], run.labels, query_label=labels[query]), width="stretch")
q_key, q_weight = aa.strongest_key(pattern[query])
c2.caption(
    f"Query {labels[query]}{' (the answer position)' if query == answer_at else ''}: "
    f"most attention ({q_weight:.4f}) on {labels[q_key]}."
)

st.subheader(f"All {cfg.n_heads} heads of layer {layer}")
st.altair_chart(
    charts.heads_small_multiples(cache[attn + "hook_pattern"][0], run.labels, layer=layer, highlight_head=head,
                                 masked=masked if n_masked else None),
    width="stretch",
)  # fmt: skip

# ---------------------------------------------------------------- step 4: output
st.subheader("4 · The head's output and what it writes into the stream")
write = cache[attn + "hook_result"][0, :, head]  # [pos, d_model]: z_h @ W_O[h]
st.markdown(
    f"$z_h$ = pattern × V: each position's mix of values, [{T} × {dh}]. Multiplied by $W_O^h$ "
    f"[{dh} × {cfg.d_model}] it becomes what this head adds to the residual stream, [{T} × {cfg.d_model}]. "
    f"The {cfg.n_heads} heads' writes plus $b_O$ are exactly the layer's attention output."
)
c1, c2 = st.columns([1, 2])
c1.altair_chart(
    charts.matrix_heatmap(cache[attn + "hook_z"][0, :, head], labels, x_title="d_head dimension", value_title="z",
                          title=f"z, L{layer} H{head}"),
    width="stretch",
)  # fmt: skip
c2.altair_chart(
    charts.matrix_heatmap(write, labels, x_title="d_model dimension", value_title="z·W_O",
                          title=f"Written into the stream: z·W_O (hook_result), L{layer} H{head}"),
    width="stretch",
)  # fmt: skip

# ---------------------------------------------------------------- ablation
st.subheader("Switch heads off")
st.markdown(
    "A switched-off head's output $z_h$ is set to zero, so it writes nothing into the stream. The model is run "
    "again on the same tokens" + (" (including the answer it wrote, so each answer position is compared on the "
                                  "same input)" if cfg.causal else "") + "."
)  # fmt: skip
off = []
for lay in range(cfg.n_layers):
    cols = st.columns(cfg.n_heads + 1)
    cols[0].markdown(f"**Layer {lay}**")
    for h in range(cfg.n_heads):
        if not cols[h + 1].toggle(f"L{lay} H{h}", value=True, key=f"attn_on_{lay}_{h}"):
            off.append((lay, h))
positions = ao.answer_positions(T, answer_at, cfg.causal)
before = ao.predictions_at(cache["hook_logits"][0], positions)
after = None
if off:
    logits, _ = state.cached_ablation(cur.model_key, cur.text, tuple(off), cur.model, run.tokens)
    after = ao.predictions_at(logits[0], positions)
vocab = model.vocab
rows = []
for i, b in enumerate(before):
    row = {"position": labels[b.position], "all heads predict": vocab.decode([b.token])[0], "probability": b.prob}
    if after is not None:
        a = after[i]
        row |= {"heads off predict": vocab.decode([a.token])[0], "probability (heads off)": a.prob,
                "P(all-heads prediction), heads off": float(a.probs[b.token])}  # fmt: skip
    rows.append(row)
bar = st.column_config.ProgressColumn(format="%.4f", min_value=0, max_value=1)
st.dataframe(pd.DataFrame(rows), hide_index=True,
             column_config={k: bar for k in rows[0] if k.startswith(("prob", "P("))})  # fmt: skip
b0, tok = before[0], vocab.decode([before[0].token])[0]
if after is None:
    st.caption("All heads are on. Switch one off to see what the answer loses without it.")
else:
    a0 = after[0]
    st.columns([2, 3])[0].altair_chart(
        charts.before_after_bars(
            pd.DataFrame({"label": ["all heads", f"without {', '.join(f'L{a}H{b}' for a, b in off)}"],
                          "value": [b0.prob, float(a0.probs[b0.token])]}),
            value_title=f"P({tok})", title=f'Probability of "{tok}" at position {answer_at} (=)'),
        width="stretch",
    )  # fmt: skip
    changed = [a for b, a in zip(before, after, strict=True) if a.token != b.token]
    if changed:
        st.warning(
            "The answer changes: " + "; ".join(
                f"at {labels[a.position]} the model now predicts `{vocab.decode([a.token])[0]}` ({a.prob:.2%})"
                for a in changed),
            icon=":material/swap_horiz:",
        )  # fmt: skip
    else:
        st.success(
            f"The answer survives: `{tok}` still wins at `=`, with probability {a0.probs[b0.token]:.6f} "
            f"instead of {b0.prob:.6f}.",
            icon=":material/check:",
        )
