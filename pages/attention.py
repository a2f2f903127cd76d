"""Attention: one head's queries, keys, scores, mask, pattern and output; every head; head ablation."""

import altair as alt
import numpy as np
import pandas as pd
import streamlit as st

from explainer import charts, compare, links, path, state, vega
from explainer import format as fmt
from explainer.charts import attention as attention_charts
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
path.quiz_here()  # predict, then reveal
st.caption(
    f"Layer **{layer}**, head **{head}** of {cfg.n_heads} (choose them in the sidebar) on **{cur.text}**: "
    f"{T} positions, d_model {cfg.d_model}, d_head {dh}."
)

# ---------------------------------------------------------------- the lesson
st.markdown(
    "Attention is how a position reads from the others. Each head turns every position's vector $x$ into a "
    "**query** (what am I looking for?), a **key** (what do I contain?) and a **value** (what do I pass on?); "
    f"here {aa.qkv_input_text(cfg.norm, layer)}. A query's dot product with every key, divided by "
    "$\\sqrt{d_{head}}$, says how well they match; the mask removes the keys it may not see; a softmax turns the "
    "scores into weights that sum to 1; the head's output $z$ is the weighted mix of the values. $W_O$ projects it "
    "back into the residual stream."
)
# one short formula a line, so that each fits a phone's width
st.latex(
    r"\begin{gathered} Q_h = xW_Q^h + b_Q^h,\quad K_h = xW_K^h + b_K^h,\\ V_h = xW_V^h + b_V^h, \\ "
    r"z_h = \mathrm{softmax}\!\left(\frac{Q_h K_h^\top}{\sqrt{d_{head}}} + M\right) V_h \end{gathered}"
)
st.latex(
    r"\begin{gathered} \mathrm{attn\_out} = \sum_h z_h W_O^h + b_O \\ "
    r"(M_{qk} = 0 \text{ if allowed}, -\infty \text{ if masked}) \end{gathered}"
)


def key_name(k: int) -> str:
    return f"{fmt.code(run.labels[k])} (position {k})"


def plural(n: int, noun: str, many: str | None = None) -> str:
    return f"{n} {noun if n == 1 else many or noun + 's'}"


focus = aa.attention_focus(pattern[answer_at], run.labels)
others = "Compare the other heads of the layer below, and switch" if cfg.n_heads > 1 else "Switch"
st.info(
    f"What to notice: in L{layer} H{head} the answer position {fmt.code(run.labels[answer_at])} ({answer_at}) "
    f"{aa.focus_text(focus, key_name)}. Its largest scaled score is {scores[answer_at, focus.keys[0]]:.3f}, on "
    f"{key_name(focus.keys[0])}. {others} "
    + ("heads off at the bottom of the page to see which ones the answer needs." if cfg.n_layers * cfg.n_heads > 1
       else "the head off at the bottom of the page to see whether the answer needs it."),
    icon=":material/lightbulb:",
)

if compare.on(cur):
    compare.header(cur)
    other = cur.compare_run
    rows_a, rows_b = labels, charts.position_labels(other.labels)
    compare.heatmaps(cur, f"Attention pattern L{layer} H{head}", pattern, other.cache[attn + "hook_pattern"][0, head],
                     rows_a, rows_b, rows_a, rows_b, x_title="key position", y_title="query position",
                     value_title="weight", kind="probability", key="attn_compare")  # fmt: skip

# ---------------------------------------------------------------- step 1: Q, K, V
st.subheader("1 · Queries, keys and values")
st.markdown(f"Each is [positions × d_head] = [{T} × {dh}] for this head, computed from $x$, "
            f"{aa.qkv_input_text(cfg.norm, layer, short=True)}.")  # fmt: skip
# required: clicking the selected option again keeps it (without it the control would return None); a None that
# still arrives (a value set through the session state) keeps the last choice
links.bind("qkv", "attn_qkv", "Q", options=["Q", "K", "V"])
shown = st.segmented_control("Show", ["Q", "K", "V"], default="Q", required=True, key="attn_qkv") or \
    st.session_state.get("attn_qkv_last", "Q")
st.session_state["attn_qkv_last"] = shown
vega.draw(
    charts.matrix_heatmap(cache[attn + f"hook_{shown.lower()}"][0, :, head], labels, x_title="d_head dimension",
                          value_title=shown, title=f"{shown} of L{layer} H{head}"),
    width="stretch",
)  # fmt: skip

# ---------------------------------------------------------------- step 2: scores and mask
st.subheader("2 · Scores Q·Kᵀ/√d_head and the mask")
n_masked = int(masked.sum())
if n_masked:
    why = "every key after the query (causal: no peeking at the future)" if cfg.causal else "padding keys"
    masking = (f"{n_masked} of {T * T} cells {'is' if n_masked == 1 else 'are'} masked: {why}. "
               f"{'Its' if n_masked == 1 else 'Their'} score is −∞, so {'its' if n_masked == 1 else 'their'} weight "
               "is exactly 0.")  # fmt: skip
else:
    masking = f"Bidirectional model, no padding: nothing is masked, every query may read all {T} keys."
st.markdown(f"{aa.scaling_text(dh)}. {masking}")
c1, c2 = st.columns([3, 2])
vega.draw(
    charts.attention_scores_heatmap(scores, run.labels, title=f"Scaled scores, L{layer} H{head}"),
    width="stretch",
where=c1)
vega.draw(
    # its legend below: at its right it left a long list's 24 key positions a sliver of the column
    charts.matrix_heatmap((~masked).astype(float), labels, labels, kind="probability", x_title="key position",
                          y_title="query position", value_title="may attend (1) / masked (0)",
                          title="Mask (read from the −∞ scores)").configure_legend(orient="bottom"),
    width="stretch",
where=c2)  # fmt: skip

# ---------------------------------------------------------------- step 3: softmax pattern
st.subheader("3 · Softmax: the attention pattern")
st.markdown("Each row sums to 1. **Click a row** to see that query's attention as bars.")
event = st.session_state.get("attn_pattern_click") or {}
picked = [int(p["query_pos"]) for p in (event.get("selection") or {}).get("query", []) if "query_pos" in p]
picked = [q for q in picked if 0 <= q < T]  # a selection can outlive an edit of the example
query = picked[0] if picked else answer_at
c1, c2 = st.columns([3, 2])
vega.draw(
    charts.attention_heatmap(pattern, run.labels, title=f"Attention pattern, L{layer} H{head}", selected_query=query,
                             masked=masked if n_masked else None),
    width="stretch", on_select="rerun", key="attn_pattern_click",
where=c1)  # fmt: skip
vega.draw(charts.attention_bars(pattern[query], run.labels, query_label=labels[query]), width="stretch", where=c2)
c2.caption(
    f"Query {fmt.literal(labels[query])}{' (the answer position)' if query == answer_at else ''} "
    f"{aa.focus_text(aa.attention_focus(pattern[query], run.labels), key_name, digits=4)}."
)

if cfg.n_heads == 1:
    st.subheader(f"The one head of layer {layer}")
    st.markdown("The same pattern, on the same 0-1 blues: this layer has no other head to compare it with.")
else:
    st.subheader(f"All {cfg.n_heads} heads of layer {layer}")
    st.markdown(f"The same pattern for every head of layer {layer}, on the same 0-1 blues. **Click a head** to "
                "inspect it on this page.")  # fmt: skip
# A click is acted on once: the panels then get new keys (empty selections), so a selection left over from
# before a sidebar change, another layer or another model never moves the head again.
click_gen = st.session_state.setdefault("attn_heads_click_gen", 0)


def panel_key(h: int, gen: int) -> str:
    return f"attn_head_click_{h}" + (f"_{gen}" if gen else "")


clicked = []
for h in range(cfg.n_heads):
    event = st.session_state.get(panel_key(h, click_gen)) or {}
    picked = [p.get("head") for p in (event.get("selection") or {}).get("head", []) if isinstance(p, dict)]
    clicked += [int(v) for v in picked
                if isinstance(v, int | float) and float(v).is_integer() and 0 <= v < cfg.n_heads]  # fmt: skip
if clicked:
    click_gen += 1
    st.session_state["attn_heads_click_gen"] = click_gen
    if clicked[0] != head:
        state.open_view(head=clicked[0])  # reruns with the sidebar's head changed
patterns = cache[attn + "hook_pattern"][0]  # [head, q_pos, k_pos]
per_row = min(cfg.n_heads, 4)
for start in range(0, cfg.n_heads, per_row):
    for h, col in zip(range(start, min(start + per_row, cfg.n_heads)), st.columns(per_row), strict=False):
        vega.draw(
            attention_charts.head_panel(patterns[h], run.labels, layer=layer, head=h, highlight=h == head,
                                        masked=masked if n_masked else None, selection_name="head"),
            width="stretch", on_select="rerun", key=panel_key(h, click_gen),
        where=col)  # fmt: skip

# ---------------------------------------------------------------- step 4: output
st.subheader("4 · The head's output and what it writes into the stream")
write = cache[attn + "hook_result"][0, :, head]  # [pos, d_model]: z_h @ W_O[h]
st.markdown(
    f"$z_h$ = pattern × V: each position's mix of values, [{T} × {dh}]. Multiplied by $W_O^h$ "
    f"[{dh} × {cfg.d_model}] it becomes what this head adds to the residual stream, [{T} × {cfg.d_model}]. "
    + (f"The {cfg.n_heads} heads' writes plus $b_O$ are" if cfg.n_heads > 1 else "The head's write plus $b_O$ is")
    + " exactly the layer's attention output."
)
c1, c2 = st.columns([1, 2])
vega.draw(
    charts.matrix_heatmap(cache[attn + "hook_z"][0, :, head], labels, x_title="d_head dimension", value_title="z",
                          title=f"z, L{layer} H{head}"),
    width="stretch",
where=c1)  # fmt: skip
vega.draw(
    charts.matrix_heatmap(write, labels, x_title="d_model dimension", value_title="z·W_O",
                          title=alt.TitleParams(f"What L{layer} H{head} writes into the stream, z·W_O",
                                                subtitle=attn + "hook_result")),
    width="stretch",
where=c2)  # fmt: skip

# ---------------------------------------------------------------- ablation
st.subheader("Switch heads off")
st.markdown(
    "A switched-off head writes nothing into the residual stream: its write $z_h W_O^h$ (`hook_result`) is set to "
    "zero, while $b_O$, shared by the heads, stays. The model is run again on the same tokens"
    + (" (including the answer it wrote, so each answer position is compared on the same input)" if cfg.causal
       else "")
    + ". A confident model's probability hardly moves, so what a head is worth is measured on the **logit "
    "difference** (the prediction's logit minus the strongest other token's: the margin it wins by; below 0 "
    "another token wins) and on the prediction's **log-probability**."
)  # fmt: skip
links.bind_heads_off("off", "attn_on_{layer}_{head}", cfg.n_layers, cfg.n_heads)
off = []
for lay in range(cfg.n_layers):
    cols = st.columns(cfg.n_heads + 1)
    cols[0].markdown(f"**Layer {lay}**")
    for h in range(cfg.n_heads):
        key = f"attn_on_{lay}_{h}"
        st.session_state.setdefault(key, True)  # another page may have set it (state.open_view): no value=
        if not cols[h + 1].toggle(f"L{lay} H{h}", key=key):
            off.append((lay, h))
vocab = model.vocab


def tok(token_id) -> str:
    return vocab.decode([int(token_id)])[0]


def true_next(pos: int) -> str | None:
    """The true next token at `pos`, when `pos` read the same tokens as the true answer's sequence."""
    targets = run.train_targets
    if pos < len(targets) and targets[pos] >= 0 and ao.same_context(run.tokens, run.train_tokens, pos, cfg.causal):
        return tok(targets[pos])
    return None


def at_position(pos: int) -> str:
    return f"position {pos} ({fmt.code(run.labels[pos])})"


positions = ao.answer_positions(T, answer_at, cfg.causal)
off_names = [f"L{a}H{b}" for a, b in off]
res = state.answer_ablation(cur, [off_names] if off else [])  # model_core.interp.ablate, one row per position
rows = []
for i, p in enumerate(positions):
    row = {"position": labels[p], "all heads predict": tok(res.answer[i])}
    if off:
        row |= {"heads off predict": tok(res.top[0, i]), "Δ logit diff": float(res.delta_logit_diff[0, i]),
                "Δ log-prob": float(res.delta_logprob[0, i])}  # fmt: skip
    row["logit diff"] = float(res.clean_logit_diff[i])
    if off:
        row["logit diff, heads off"] = float(res.logit_diff[0, i])
    row["log-prob"] = float(res.clean_logprob[i])
    if off:
        row["log-prob, heads off"] = float(res.logprob[0, i])
    row["probability"] = fmt.percent(np.exp(res.clean_logprob[i]))
    if off:
        row["probability, heads off"] = fmt.percent(np.exp(res.logprob[0, i]))
    rows.append(row)
number = {
    "Δ logit diff": st.column_config.NumberColumn(format="%+.2f", help="logit difference with the heads off, "
                                                  "minus with all heads on"),
    "Δ log-prob": st.column_config.NumberColumn(format="%+.3g", help="log-probability of the all-heads "
                                                "prediction with the heads off, minus with all heads on"),
    "logit diff": st.column_config.NumberColumn(format=fmt.LOGIT_COLUMN, help="the prediction's logit minus the "
                                                "strongest other token's"),
    "logit diff, heads off": st.column_config.NumberColumn(format=fmt.LOGIT_COLUMN, help="the same for the "
                                                           "all-heads prediction, with the heads off"),
    "log-prob": st.column_config.NumberColumn(format=fmt.LOG_PROB_COLUMN),
    "log-prob, heads off": st.column_config.NumberColumn(format=fmt.LOG_PROB_COLUMN, help="of the all-heads "
                                                         "prediction"),
    "probability, heads off": st.column_config.TextColumn(help="of the all-heads prediction"),
}  # fmt: skip
st.dataframe(pd.DataFrame(rows), hide_index=True, column_config={k: v for k, v in number.items() if k in rows[0]})
where = "each answer position" if cfg.causal else f"position {answer_at} (=)"  # the chart's title
if not off:
    st.caption("All heads are on. Switch one off to see what the answer loses without it.")
else:
    without = f"without {', '.join(off_names)}"
    both = [{"position_label": labels[p], "run": name, "logit_diff": float(v)} for i, p in enumerate(positions)
            for name, v in (("all heads", res.clean_logit_diff[i]), (without, res.logit_diff[0, i]))]  # fmt: skip
    vega.draw(
        attention_charts.logit_diff_before_after(
            pd.DataFrame(both), title=f"Logit difference at {where}"),
        width="stretch",
    )  # fmt: skip
    flipped = res.flipped[0]
    if flipped.any():
        changes = []
        for i in np.flatnonzero(flipped):
            p, new, was, behind = positions[i], tok(res.top[0, i]), tok(res.answer[i]), -float(res.logit_diff[0, i])
            right = " (the true next token)" if new == true_next(p) else ""
            gap = "is tied with it" if behind == 0 else f"is now {fmt.logit(behind)} logits behind it"
            changes.append(f"at {at_position(p)} the model now predicts {fmt.code(new)}{right}; {fmt.code(was)} {gap} "
                           f"(log-prob {fmt.log_prob(res.logprob[0, i])}, "
                           f"probability {fmt.percent(np.exp(res.logprob[0, i]))})")
        st.warning("The answer changes: " + "; ".join(changes) + ".", icon=":material/swap_horiz:")
    else:
        kept = [
            (f"{fmt.code(tok(res.answer[i]))} at {at_position(p)}: " if cfg.causal else "")
            + f"logit difference {fmt.logit(res.clean_logit_diff[i])} → "
            f"{fmt.logit(res.logit_diff[0, i])} ({fmt.signed(res.delta_logit_diff[0, i])}), log-prob "
            f"{fmt.log_prob(res.clean_logprob[i])} → {fmt.log_prob(res.logprob[0, i])}, probability "
            f"{fmt.percent(np.exp(res.clean_logprob[i]))} → {fmt.percent(np.exp(res.logprob[0, i]))}"
            + (" (tied with the strongest other token)" if res.logit_diff[0, i] == 0 else "")
            for i, p in enumerate(positions)
        ]  # fmt: skip
        first = ("every answer position still predicts the same token. " if cfg.causal
                 else f"{fmt.code(tok(res.answer[0]))} still comes first at "
                      f"{fmt.code(run.labels[answer_at])}: ")  # fmt: skip
        st.success(f"The answer survives: {first}" + "; ".join(kept) + ".", icon=":material/check:")

# ---------------------------------------------------------------- every head alone
SMALL_SHARE = 0.1  # no head moving the margin by more than this share of it: "it hangs on no one head"


def most_important_head(every, n_pos: int) -> str:
    """The hint: the head whose removal alone moves an answer position's logit difference most, and the flips."""
    d = every.delta_logit_diff  # [heads, positions]
    k, i = (int(v) for v in np.unravel_index(int(np.argmax(np.abs(d))), d.shape))
    name, delta, margin = every.labels[k], float(d[k, i]), float(every.clean_logit_diff[i])
    at = f" at {at_position(positions[i])}" if n_pos > 1 else ""
    what = f"{fmt.code(tok(every.answer[i]))}{at}"
    flips = [(every.labels[h], int(j)) for h, j in zip(*np.nonzero(every.flipped), strict=True)]
    if delta == 0:
        text = f"No single head changes {what}'s logit difference ({fmt.logit(margin)}) at all."
    elif not flips and abs(delta) <= SMALL_SHARE * margin:
        text = (f"No single head moves {what}'s {fmt.logit(margin)} logit margin by more than "
                f"{fmt.logit(abs(delta))} (switching off {name}): this answer hangs on no one head.")  # fmt: skip
    elif every.flipped[k, i]:
        text = (f"Switching off {name} alone costs {what} {fmt.logit(-delta)} logits, more than its "
                f"{fmt.logit(margin)} logit margin: the model then predicts {fmt.code(tok(every.top[k, i]))} "
                "there.")  # fmt: skip
    elif delta < 0:
        text = (f"Switching off {name} alone costs {what} {fmt.logit(-delta)} of its {fmt.logit(margin)} logit "
                f"margin (log-prob {fmt.log_prob(every.clean_logprob[i])} → {fmt.log_prob(every.logprob[k, i])}).")
    else:
        text = (f"The head that moves {what} most works against it: switching off {name} alone raises its logit "
                f"margin by {fmt.logit(delta)}, from {fmt.logit(margin)} to {fmt.logit(margin + delta)}.")  # fmt: skip
    if margin == 0:
        text += (f" With all heads on, {what} is tied with the strongest other token: it comes first only by its "
                 "place in the vocabulary.")  # fmt: skip
    it = "any answer token" if n_pos > 1 else "it"
    if not flips:
        text += f" No single head flips {it}."
    elif flips == [(name, i)]:
        text += f" No other head flips {it} on its own."
    elif n_pos == 1:
        text += " Heads that flip it on their own: " + ", ".join(h for h, _ in flips) + "."
    else:
        at_positions = {}  # head -> the positions where it flips the prediction, in order
        for h, j in flips:
            at_positions.setdefault(h, []).append(str(positions[j]))
        text += " Heads that flip an answer token on their own: " + ", ".join(
            f"{h} (at position{'s' if len(ps) > 1 else ''} {', '.join(ps)})" for h, ps in at_positions.items()) + "."
    if not run.answer.correct:
        text += (f" The model's answer is wrong here (the true answer is {run.answer.expression.answer}): these are "
                 "the margins of what it predicts.")  # fmt: skip
    return text


st.subheader("Every head switched off alone")
n_heads_all = cfg.n_layers * cfg.n_heads
n_copies = n_heads_all * len(positions)
st.markdown(
    (f"Each of the {n_heads_all} heads switched off on its own, the others on" if n_heads_all > 1
     else "The model's one head switched off")
    + f" ({plural(n_copies, 'copy', 'copies')} of the example in one batched run), ranked by what it costs the "
    "prediction's logit difference"
    + (" at each answer position" if cfg.causal else "")
    + ". Hover a bar for the change in log-probability."
)
every = state.answer_ablation(cur, [[f"L{a}H{b}"] for a in range(cfg.n_layers) for b in range(cfg.n_heads)])
hint = most_important_head(every, len(positions))
st.info(f"What to notice: {hint[0].lower()}{hint[1:]}", icon=":material/lightbulb:")
domain = attention_charts.change_domain(every.delta_logit_diff)  # one x range for every position's chart
for i, p in enumerate(positions):
    predicts = tok(every.answer[i])
    frame = pd.DataFrame({
        "head": every.labels, "position_label": labels[p], "predicts": predicts,
        "delta_logit_diff": every.delta_logit_diff[:, i], "delta_logprob": every.delta_logprob[:, i],
        "logit_diff": every.logit_diff[:, i], "top": [tok(t) for t in every.top[:, i]],
        "flipped": every.flipped[:, i],
    })  # fmt: skip
    vega.draw(
        attention_charts.head_ablation_bars(
            frame, x_domain=domain,
            title=alt.TitleParams(f"Each head off alone, at {labels[p]}",
                                  subtitle=f"all heads predict {predicts}, logit difference "
                                           f"{fmt.logit(every.clean_logit_diff[i])}")),
        width="stretch",
    )  # fmt: skip
