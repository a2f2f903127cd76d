"""Heads across all inputs: where each head attends, what it scores, what the answers need, where they appear."""

import numpy as np
import pandas as pd
import streamlit as st

from explainer import format as fmt
from explainer import state, vega
from explainer.charts import heads as head_charts
from model_core.interp import input_space as isp
from model_core.interp.ablation import parse_component

K = 10  # mistakes and least confident answers listed
ss = st.session_state
cur = state.current()
model, task = cur.model, cur.model.task
cfg = model.transformer.cfg
with st.spinner("Running the model over its input space (once per model)…"):
    space = state.cached_space_run(cur.model_key, model)


@state.model_cache(max_entries=8, session_entries=1)  # it holds the space run: a session model's stays in its session
def views(model_key: str, _model, _space):
    """Every view of this page but the per-head scores, from the one cached pass (keyed by the model)."""
    roles = isp.head_roles(_model, run=_space)
    tables = {h: isp.score_by_digit(_model, *divmod(i, _model.transformer.cfg.n_heads), run=_space)
              for i, h in enumerate(roles.heads)}  # fmt: skip
    return {"roles": roles, "matrix": isp.ablation_matrix(_model, run=_space),
            "lens": isp.lens_by_operation(_model, run=_space), "hard": isp.hard_cases(_model, run=_space, k=K),
            "margin": isp.answer_margin(_space), "scores": tables,
            "trends": {h: isp.score_trend(t) for h, (t, _) in tables.items()},
            "texts": [_space.exprs.expression(i).text for i in range(len(_space.exprs))], "space": _space}  # fmt: skip


@st.cache_resource(show_spinner=False, max_entries=8)
def charts(model_key: str, _v: dict, _task):
    """The specs of the page's charts that depend only on the model (built once: Altair takes most of a rerun)."""
    roles, matrix, (stages, ops, lens) = _v["roles"], _v["matrix"], _v["lens"]
    out = {}
    for j, (name, values) in enumerate(PANELS):
        table = getattr(roles, values)
        out[name] = head_charts.table_heatmap(
            head_charts.table_frame(table, roles.heads, roles.operations), rows=roles.heads, cols=roles.operations,
            title=f"Attention {name}" if j < 3 else "Entropy of the attention from =",
            kind="magnitude" if j == 3 else "probability", value_title="entropy (nats)" if j == 3 else "mean attention")
    rows = ["nothing off"] + matrix.components
    out["matrix"] = head_charts.table_heatmap(
        head_charts.table_frame(np.vstack([matrix.clean, matrix.accuracy]), rows, ops, fmt=fmt.percent), rows=rows,
        cols=ops, row_title="switched off", title="Accuracy with one component switched off", value_title="accuracy",
        selection="cell")
    out["lens"] = head_charts.table_heatmap(
        head_charts.table_frame(lens, stages, ops, fmt=fmt.percent), rows=stages, cols=ops, row_title="after",
        title="Answer already the top token", value_title="share of inputs")
    sp = _v["space"]
    if has_map(_task, len(sp.exprs)):
        frame = head_charts.map_frame(sp.exprs.ops, sp.exprs.values - _task.min_value, _task.n_values, _v["margin"],
                                      sp.right, _v["texts"])
        out["map"] = head_charts.accuracy_map(frame, operations=ops, n_values=_task.n_values, min_value=_task.min_value,
                                              blocks=_task.n_values if _task.n_args == 3 else 1, selection="expr",
                                              title=f"Right or wrong, all {len(sp.exprs):,} expressions")
    return {name: vega.spec_of(chart) for name, chart in out.items()}


@st.cache_resource(show_spinner=False, max_entries=64)
def score_charts(model_key: str, pick: str, _v: dict, _task) -> list:
    table, _ = _v["scores"][pick]
    finite = table[np.isfinite(table)]
    domain = (float(finite.min()), float(finite.max())) if finite.size else None
    slots = [f"slot {j + 1}" for j in range(_task.n_args)]
    return [vega.spec_of(head_charts.score_lines(
        pd.DataFrame([{"value": _task.min_value + x, "slot": slots[j], "score": table[k, j, x]}
                      for j in range(_task.n_args) for x in range(table.shape[2])]),  # the arguments' values
        slots=slots, title=f"{op} · {pick}", y_domain=domain)) for k, op in enumerate(_task.operations)]


def has_map(task, n: int) -> bool:
    """The map of every expression: for a whole (enumerated) space of up to three values, all of one length (its
    grid has one axis per slot: a shorter list has no cell there)."""
    return n == task.space_size and task.n_args <= 3 and not task.variable_length


PANELS = [("to the operation token", "to_op"), ("to the answer's slot", "to_answer_slot"),
          ("to the other slots", "to_other_slots"), ("entropy (nats)", "entropy")]  # fmt: skip
v = views(cur.model_key, model, space)
MAP = has_map(task, len(space.exprs))
drawn = charts(cur.model_key, v, task)
roles, matrix, (stages, ops, lens), (wrong, weak) = v["roles"], v["matrix"], v["lens"], v["hard"]
n, whole = len(space.exprs), len(space.exprs) == task.space_size
over = f"every expression of the task ({n:,})" if whole else \
    f"a sample of {n:,} held-out expressions (of {task.space_size:,})"  # fmt: skip
answer = "the answer's first token" if task.max_answer_digits > 1 else "the answer"


def by_op(pairs: list[tuple[str, str]]) -> str:
    """'First, Last: x; Max: y' from [(operation, what)], operations with the same `what` grouped."""
    groups: dict[str, list[str]] = {}
    for op, what in pairs:
        groups.setdefault(what, []).append(op)
    return "; ".join(f"{', '.join(o)}: {what}" for what, o in groups.items())


st.title("Heads across all inputs")
st.caption(f"**{fmt.literal(cur.model_name)}** over {over}: one pass of the model, computed when the page first "
           f"opened for this model and kept. Clean accuracy {fmt.percent(float(space.right.mean()))}.")  # fmt: skip
st.markdown("The other pages follow one example. This one asks what each part of the model does **on every input**: "
            "where a head looks from the answer position `=`, which parts the answers cannot do without, and at "
            "which stage the answer is already there.")  # fmt: skip

# ---------------------------------------------------------------- 1: where `=` attends
st.subheader("1 · Where the answer position attends")
pos = np.arange(space.tokens.shape[1])
seen = ((space.tokens != model.vocab.pad_id) & np.logical_or(not cfg.causal, pos <= space.answer_pos[:, None])).sum(1)
even = " to ".join(dict.fromkeys(f"ln {k} = {np.log(k):.2f}" for k in (seen.min(), seen.max())))
st.markdown("Each head's mean attention from `=` over the expressions of each operation: to the operation token, "
            "to the **answer's slot** (every digit of the value the answer copies"
            + (", or all of the inner expression whose answer it is" if task.nested else "") +
            f"), to the other slots. Entropy "
            f"is in nats: 0 is all on one position, {even} is spread evenly over the positions `=` may "
            "see.")  # fmt: skip
for j, (name, _) in enumerate(PANELS):
    if j % 2 == 0:
        cols = st.columns(2)
    vega.draw(drawn[name], where=cols[j % 2])
said = {h: isp.head_role(roles, h) for h in roles.heads}
st.markdown(f"**What the numbers say each head does** (a head *attends to X* for an operation when X gets at least "
            f"{isp.ROLE_THRESHOLD:.2f} of its attention on average):\n\n" +
            "\n".join(f"- **{h}** {r}" if r else f"- **{h}**: no clear role from where it attends"
                      for h, r in said.items()))  # fmt: skip

# ---------------------------------------------------------------- 2: score by digit
st.subheader("2 · Score by digit")
names = [f"L{lay}H{h}" for lay in range(cfg.n_layers) for h in range(cfg.n_heads)]


def _pick() -> None:  # the page's head is the sidebar's layer and head
    ss.layer, ss.head = divmod(names.index(ss.heads_pick), cfg.n_heads)


ss.heads_pick = f"L{cur.layer}H{cur.head}"
pick = st.selectbox("Head", names, key="heads_pick", on_change=_pick,
                    help="The same as the sidebar's layer and head: changing one changes the other.")  # fmt: skip
table, explained = v["scores"][pick]
inner = (" (for an inner expression, its closing `)`)", " (an inner expression's answer)") if task.nested else ("", "")
st.markdown(f"The mean **scaled score** (Q·K/√d_head, before the softmax) from `=` to each slot's last digit{inner[0]} "
            f"in **{pick}**, by operation and by the value in that slot{inner[1]}. A head that picks the largest value "
            "scores it higher the larger it is (a line rising with the digit, for Max) and the opposite for "
            "Min.")  # fmt: skip
for k, chart in enumerate(score_charts(cur.model_key, pick, v, task)):
    if k % 3 == 0:  # rows of three, so that a narrow screen stacks them in order
        cols = st.columns(3)
    vega.draw(chart, where=cols[k % 3])


def trend(r: np.ndarray) -> str | None:
    """'rises with the value for Max and falls for Min' where the score follows the value in every slot."""
    up = [op for k, op in enumerate(ops) if np.isfinite(r[k]).all() and r[k].min() >= TREND]
    down = [op for k, op in enumerate(ops) if np.isfinite(r[k]).all() and r[k].max() <= -TREND]
    parts = ([f"rises with the value for {', '.join(up)}"] if up else []) + \
        ([f"falls{'' if up else ' with the value'} for {', '.join(down)}"] if down else [])  # fmt: skip
    return " and ".join(parts) or None


TREND = 0.7  # |correlation| of the mean score with the value, in every slot, to call it rising or falling
how = "almost only" if explained >= 0.9 else "mostly" if explained >= 0.5 else "only in part"
mine = trend(v["trends"][pick])
share = "all (to float precision)" if explained > 1 - 1e-9 else fmt.percent(explained)
st.markdown(f"Operation, slot and the slot's value explain **{share}** of the variance of {pick}'s "
            f"score over the {n:,} expressions: the score depends {how} on them. " +
            (f"It {mine}, in every slot (correlation beyond ±{TREND})." if mine else "In no operation does it "
             f"rise or fall with the value in every slot (correlation beyond ±{TREND})."))  # fmt: skip
others = [f"{h} ({t})" for h in names if h != pick and (t := trend(v["trends"][h]))]
if others:
    st.caption("Heads whose score does follow the value: " + "; ".join(others) + ".")

# ---------------------------------------------------------------- 3: ablation matrix
st.subheader("3 · What the answers need: the ablation matrix")
st.markdown(f"Accuracy per operation with one head or MLP **switched off** (its output set to zero at every "
            f"position), over {over}. The top row is the model with everything on. **Click a cell** to open that "
            "ablation on an example whose answer it changes.")  # fmt: skip
event = ss.get("heads_ablation_click") or {}
cells = [c for c in (event.get("selection") or {}).get("cell", [])
         if c.get("row") in matrix.components and c.get("operation") in ops]  # fmt: skip
vega.draw(drawn["matrix"], on_select="rerun", key="heads_ablation_click")
needed = []
for k, op in enumerate(ops):
    i = int(np.argmin(np.nan_to_num(matrix.accuracy[:, k], nan=np.inf)))  # (NaN: no expression of op)
    low = matrix.accuracy[i, k]
    needed.append((op, f"{matrix.components[i]} ({fmt.percent(low)})" if low < matrix.clean[k] else "none"))
idle = [c for c, a in zip(matrix.components, matrix.accuracy, strict=True) if np.array_equal(a, matrix.clean)]
st.markdown("**Most needed** (the lowest accuracy without it, per operation): " + by_op(needed) + "."
            + (f" Switching off {', '.join(idle)} leaves every operation's accuracy as it is." if idle else ""))
if not cells:
    ss.pop("_heads_opened", None)
else:
    comp, op = cells[0]["row"], cells[0]["operation"]
    i = isp.example_where_ablation_flips(space, comp, ops.index(op))
    if i is None:
        st.info(f"Switching off **{comp}** changes no {op} answer from right to wrong over {over}, so there is no "
                "example to open.", icon=":material/info:")  # fmt: skip
    elif ss.get("_heads_opened") != (comp, op):  # (once per click: a kept selection must not re-open it)
        ss["_heads_opened"] = (comp, op)
        text, c = space.exprs.expression(i).text, parse_component(model.transformer, comp)
        if c.kind == "head":
            state.open_view("attention.py", example=text, heads_off=[(c.layer, c.index)], layer=c.layer,
                            head=c.index)  # fmt: skip
        state.open_view("mechanism.py", example=text)

# ---------------------------------------------------------------- 4: logit lens
st.subheader("4 · Where the answer appears")
st.markdown(f"The stream at `=` after each stage, decoded as the output does (the logit lens): the share of "
            f"inputs for which {answer} is already the top token.")  # fmt: skip
vega.draw(drawn["lens"])

def reached(k: int) -> str:
    """The first stage where the answer is the top token for half, and for all, of operation k's inputs."""
    half, done = np.flatnonzero(lens[:, k] >= 0.5), np.flatnonzero(lens[:, k] == 1.0)
    most = f"at most {fmt.percent(lens[:, k].max())}"
    if not half.size:
        return f"never for half of the inputs ({most})"
    return f"half of the inputs at **{stages[half[0]]}**, " + \
        (f"all at **{stages[done[0]]}**" if done.size else f"never all ({most})")  # fmt: skip


st.markdown(f"The first stage at which {answer} is the top token, per operation: "
            + by_op([(op, reached(k)) for k, op in enumerate(ops)]) + ".")  # fmt: skip
if cfg.n_layers > 1:  # stacking blocks: what the blocks after the first add, read off the same table
    first_out = stages.index("block 0 out")
    added = [(op, f"{fmt.percent(lens[first_out, k])} after block 0, {fmt.percent(lens[-1, k])} at the end")
             for k, op in enumerate(ops)]  # fmt: skip
    needs = [op for k, op in enumerate(ops) if lens[-1, k] - lens[first_out, k] >= 0.5]
    st.markdown("**What stacking blocks adds.** The share of inputs with " + answer + " on top after block 0 and "
                "after the last block: " + by_op(added) + ". "
                + (f"{', '.join(needs)} {'needs' if len(needs) == 1 else 'need'} the later blocks: block 0 alone "
                   "gets most of them wrong. " if needs else "Block 0 alone already puts it on top for most inputs "
                   "of every operation; the later blocks make it surer or fix the rest. ")
                + "Section 1 shows where each block's heads look from `=`.")  # fmt: skip
    st.markdown("What each block's heads read at `=`, from section 1:\n\n" + "\n".join(
        f"- **Block {lay}**: " + ("; ".join(f"{h} {said[h]}" for h in hs if said[h])
                                 or "no head shows a clear role from where it attends")
        + (f" ({len([h for h in hs if not said[h]])} more with no clear role)"
           if any(said[h] for h in hs) and not all(said[h] for h in hs) else "") + "."
        for lay in range(cfg.n_layers) for hs in [[h for h in roles.heads if h.startswith(f"L{lay}H")]])
        )  # fmt: skip
    st.page_link("../pages/mechanism.py", label="How it answers: follow the sidebar's example through the blocks "
                 "(patching shows which position carries the difference after each one)",
                 icon=":material/psychology:")  # fmt: skip

# ---------------------------------------------------------------- 5: mistakes, least confident
st.subheader("5 · Mistakes and least confident answers")
st.markdown(f"Over {over}. The margin is the logit of {answer} minus the strongest other token's, at `=`. "
            "Click one to open it on the Overview.")  # fmt: skip
left, right = st.columns(2)
with left:
    if wrong:
        st.markdown(f"It gets **{len(wrong):,}** of {n:,} wrong ({fmt.percent(len(wrong) / n)})"
                    + (f"; the first {K}:" if len(wrong) > K else ":"))  # fmt: skip
    else:
        st.success(f"It makes no mistakes over the {n:,} expressions{'' if whole else ' of the sample'}.",
                   icon=":material/check:")
    with st.container(horizontal=True):
        for j, text in enumerate(wrong[:K]):
            if st.button(text, key=f"heads_wrong_{j}", icon=":material/close:"):
                state.open_view("overview.py", example=text)
with right:
    st.markdown(f"Its {len(weak)} least confident right answers:" if weak else "It gets no answer right.")
    with st.container(horizontal=True):
        for j, (text, margin) in enumerate(weak):
            if st.button(f"{text} · margin {head_charts.margin(margin)}", key=f"heads_weak_{j}"):
                state.open_view("overview.py", example=text)

if MAP:
    top = float(v["margin"][space.right].max()) if space.right.any() else 0.0
    st.markdown(f"**Every expression at once.** Each cell is one expression: blue where the model is right (from white "
                f"at margin 0 to the darkest at {fmt.logit(top)}), orange where it is wrong. Hover for the expression; "
                "click a cell to open it on the Overview.")  # fmt: skip
    vega.draw(drawn["map"], on_select="rerun", key="heads_map_click")
    picked = (ss.get("heads_map_click") or {}).get("selection", {}).get("expr", [])
    picked = [p["expression"] for p in picked if p.get("expression") in v["texts"]]
    if picked and ss.get("_heads_map_opened") != picked[0]:
        ss["_heads_map_opened"] = picked[0]
        state.open_view("overview.py", example=picked[0])
    elif not picked:
        ss.pop("_heads_map_opened", None)
else:
    why = (f"this task has {task.space_size:,} of them, too many to draw one cell each" if task.space_size > n or
           task.n_args > 3 else "its lists have several lengths, and the map's grid has one axis per value")
    st.caption(f"No map of every expression: {why}{'' if whole else f'; the views above use a sample of {n:,}'}.")
