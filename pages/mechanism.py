"""How it answers: who writes the answer, what breaks without each part, where the information flows,
a claim tested by steering, and the story those numbers tell, for the current example and model."""

import numpy as np
import pandas as pd
import streamlit as st

from explainer import format as fmt
from explainer import links, state, vega
from explainer.charts import mechanism as mc
from model_core import ParseError, interp
from model_core.analysis import output as ao
from model_core.interp import story
from model_core.interp.inputs import slot_key

cur = state.current()
model, run, net = cur.model, cur.run, cur.model.transformer
cfg, vocab = net.cfg, model.vocab
ss = st.session_state


@st.cache_resource(show_spinner=False, max_entries=8)
def roles_of(model_key: str, _model, _space):
    return interp.input_space.head_roles(_model, run=_space)


@st.cache_resource(show_spinner=False, max_entries=128)
def explanation(model_key: str, text: str, _model, _space) -> story.Explanation:
    return story.explain(_model, text, _space, roles_of(model_key, _model, _space))


@st.cache_resource(show_spinner=False, max_entries=256)
def step_views(model_key: str, text: str, position: int, _model, _tokens):
    """Attribution and every single-component ablation (zero, mean) at one answer position."""
    sweep = interp.every_component(_model.transformer)
    return (interp.attribute(_model.transformer, _tokens[None], [position]),
            interp.ablate(_model, _tokens[None], [position], sweep),
            interp.ablate(_model, _tokens[None], [position], sweep, mean=True))  # fmt: skip


@st.cache_resource(show_spinner=False, max_entries=256)
def sweep_of(model_key: str, clean: str, corrupt: str, _model):
    return interp.patch_sweep(_model, clean, corrupt)


@st.cache_resource(show_spinner=False, max_entries=256)
def follow(model_key: str, heads: tuple[str, ...], slot: int, _model, _exprs):
    return interp.steering.follow_rate(_model, _exprs, list(heads), slot)


def tok(i) -> str:
    return vocab.decode([int(i)])[0]


def hook_label(hook: str) -> str:
    """`blocks.1.hook_attn_out` -> "L1 attention out": short enough for an axis."""
    layer, name = hook.split(".")[1], hook.split(".")[-1]
    words = {"hook_resid_pre": "input", "hook_attn_out": "attention out", "hook_mlp_out": "MLP out",
             "hook_resid_post": "output", "hook_resid_mid": "middle"}  # fmt: skip
    return f"L{layer} {words.get(name, name)}"


def flow_sentence(sweep) -> str:
    """The path of the difference through the hooks: at each, the position whose patch alone recovers the most
    (kept where it recovers half or more), runs of hooks at one position merged."""
    path: list[tuple[int, list[str], float]] = []  # (position, hooks, best recovery)
    for h, row in zip(sweep.hooks, sweep.grid, strict=True):
        t = int(np.argmax(row))
        if row[t] < 0.5:
            continue
        if path and path[-1][0] == t:
            path[-1][1].append(h)
            path[-1] = (t, path[-1][1], max(path[-1][2], float(row[t])))
        else:
            path.append((t, [h], float(row[t])))
    if not path:
        return "No single position's patch recovers half of the difference at any hook: it is spread out."
    steps = [f"`{sweep.roles[t]}` (position {t}) at {hook_label(hs[0])}" + (f" to {hook_label(hs[-1])}" if len(hs) > 1
             else "") + f", recovering up to {best:.2f}" for t, hs, best in path]  # fmt: skip
    end = ("" if path[-1][0] == len(sweep.roles) - 1 else
           " It never gathers at `=` in one position: several carry it together.")  # fmt: skip
    return "The difference travels: " + " → ".join(steps) + "." + end


with st.spinner("Measuring every head over the whole input space (once per model)..."):
    space = state.cached_space_run(cur.model_key, model)
ex = explanation(cur.model_key, cur.text, model, space)

st.title("How it answers")
st.caption(
    f"**{cur.text}** on **{fmt.literal(cur.model_name)}**. Four experiments on this example, then the story they tell. "
    f"Claims about all inputs use the {len(space.exprs):,} expressions of the Heads page"
    + (" (every one)." if len(space.exprs) == model.task.space_size else " (a sample of held-out ones).")
)

# ---------------------------------------------------------------- which answer step
positions = ao.answer_positions(len(run.tokens), run.answer_pos, cfg.causal)
if cfg.causal and len(positions) > 1:
    names = [f"step {k + 1}: reading {fmt.literal(run.labels[p])}" for k, p in enumerate(positions)]  # Markdown
    state.keep_valid("mech_step", names)
    links.bind_choice("step", "mech_step", names)
    picked = st.segmented_control("Answer step", names, default=names[0], key="mech_step") or names[0]
    position = positions[names.index(picked)]
else:
    position = run.answer_pos
att, zero, mean = step_views(cur.model_key, cur.text, position, model, run.tokens)
answer, wrong = tok(att.answer[0]), tok(att.wrong[0])
total = float(att.diff_total[0])

# ---------------------------------------------------------------- 1 · who writes the answer
st.subheader("1 · Who writes the answer")
st.markdown(
    f"At position {position} ({fmt.code(run.labels[position])}) the model's top token is **{fmt.code(answer)}**, "
    f"**{fmt.logit(total)}** logits above the strongest other token {fmt.code(wrong)}. That logit difference is "
    "a sum: every component writes a vector into the residual stream, and the unembedding reads each one's share "
    "directly."
)
def what_it_is(name: str) -> str:
    fixed = {"embed": "token embedding", "pos_embed": "positional embedding", "b_U": "unembedding bias"}
    if name in fixed:
        return fixed[name]
    if ".ln" in name:
        return "LayerNorm bias"
    return "attention output bias" if name.endswith("b_O") else "a head's write" if "H" in name else "an MLP's output"


rows = [{"component": n.replace("blocks.", "L"), "value": float(v), "what": what_it_is(n)}
        for n, v in zip(att.names, att.diff[0], strict=True)]  # fmt: skip
rows.append({"component": "total", "value": total, "what": "the real logit difference"})
vega.draw(mc.attribution_bars(pd.DataFrame(rows), value_title=f"contribution to logit({answer}) − logit({wrong})",
                                    title=f"Direct contributions at {run.labels[position]}, summing to "
                                          f"{fmt.logit(total)}"), width="stretch")  # fmt: skip
st.caption(f"{att.note} Sum of the parts − real value: {att.diff[0].sum() - total:+.1e}.")

# ---------------------------------------------------------------- 2 · what breaks without it
st.subheader("2 · What breaks without it")
links.bind_choice("ablate", "mech_ablation", ["zeroing", "the mean over other inputs"])
how = st.segmented_control("Switch off by", ["zeroing", "the mean over other inputs"], default="zeroing",
                           key="mech_ablation") or "zeroing"  # fmt: skip
res = zero if how == "zeroing" else mean
effect = pd.DataFrame({"component": res.labels, "value": res.delta_logit_diff[:, 0],
                       "logprob": res.delta_logprob[:, 0], "flipped": res.flipped[:, 0],
                       "answer": [tok(t) for t in res.top[:, 0]]})  # fmt: skip
vega.draw(mc.ranked_effect_bars(effect, value_title=f"change in logit({answer}) − strongest other",
                                      title="Each head and MLP switched off alone", select_name="comp"),
                width="stretch", on_select="rerun", key="mech_ablation_click")  # fmt: skip
worst = effect.sort_values("value", kind="stable").iloc[0]
flips = list(effect.loc[effect["flipped"], "component"])
st.markdown(
    (f"Switching off **{worst['component']}** costs the most: {fmt.signed(worst['value'])} of {fmt.logit(total)} "
     f"(log-probability of {fmt.code(answer)} {fmt.signed_log_prob(worst['logprob'])}). " if worst["value"] < 0 else
     "No single component's removal lowers the logit difference. ")
    + (f"Removing any one of **{', '.join(flips)}** flips the answer (orange)." if flips else
       "No single removal flips the answer.")
    + " Click a head's bar to open it switched off on the Attention page."
)  # fmt: skip
event = ss.get("mech_ablation_click") or {}
clicked = [p.get("component") for p in (event.get("selection") or {}).get("comp", [])]
if clicked and clicked[0] in res.labels:
    c = interp.parse_component(net, clicked[0])
    if c.kind == "head":
        state.open_view("attention.py", heads_off=[(c.layer, c.index)], layer=c.layer, head=c.index)
    k = res.labels.index(clicked[0])
    st.info(f"Without {clicked[0]} the model's top token here is {fmt.code(tok(res.top[k, 0]))} "
            f"(logit difference of {fmt.code(answer)} {res.logit_diff[k, 0]:+.2f}).")  # fmt: skip

# ---------------------------------------------------------------- 3 · where the information flows
st.subheader("3 · Where the information flows")
st.markdown(
    "Run a **corrupted** input, then copy one activation from this (**clean**) example into it. If the answer "
    "comes back, that activation carried what makes the difference. Recovery 1 restores the clean logit "
    "difference between the two answers, 0 changes nothing. Measured at `=`"
    + (", the first answer token." if cfg.causal else ".")
)
generated = {k: v.text for k, v in interp.counterfactuals(model, cur.text).items()}
if cur.compare_text is not None and cur.compare_text != cur.text:  # the sidebar's second example comes first
    generated = {"the second example": cur.compare_text, **generated}
choices = [f"{k}: {v}" for k, v in generated.items()] + ["type one"]
# An example with no generated input (`Second ( 5 5 5 )`: every other operation gives 5 too) leaves "type one" as
# the only choice. That was not the reader's choice: the next example with generated inputs starts from them again.
if not generated and ss.get("mech_cf") != "type one":
    ss.mech_cf_forced = True
elif generated and ss.pop("mech_cf_forced", False) and ss.get("mech_cf") == "type one":
    ss.mech_cf = choices[0]
state.keep_valid("mech_cf", choices)
links.bind_choice("cf", "mech_cf", choices)
links.bind("cft", "mech_cf_text", "")
choice = st.radio("Corrupted input", choices, key="mech_cf", horizontal=True)
if choice == "type one":
    typed = st.text_input("Corrupted input", key="mech_cf_text", placeholder="e.g. Min ( 7 2 9 )")
    if typed:
        try:
            ss.mech_cf_last = model.parse(typed).text
        except ParseError as err:
            st.error(f"{fmt.literal(err)} Still using {ss.get('mech_cf_last') or 'nothing yet'}.",  # err quotes it
                     icon=":material/error:")  # fmt: skip
    corrupt = ss.get("mech_cf_last")
else:
    corrupt = generated[choice.split(": ", 1)[0]]
sweep = None
if corrupt:
    try:
        sweep = sweep_of(cur.model_key, cur.text, corrupt, model)
    except interp.PatchError as err:
        st.warning(f"{corrupt}: {fmt.literal(err)}", icon=":material/info:")
if sweep is not None:
    cols = [f"{t} {r}" for t, r in enumerate(sweep.roles)]
    vega.draw(mc.recovery_heatmap(sweep.grid, [hook_label(h) for h in sweep.hooks], cols,
                                        x_title="position (role)", y_title=None,
                                        title=f"Patching {cur.text} into {corrupt}", select_name="cell"),
                    width="stretch", on_select="rerun", key="mech_patch_click")  # fmt: skip
    vega.draw(mc.recovery_heatmap(sweep.heads, [f"layer {i}" for i in range(cfg.n_layers)],
                                        [f"H{h}" for h in range(cfg.n_heads)], x_title="head", y_title=None,
                                        title="Each head's z patched (all positions)"),
                    width="stretch")  # fmt: skip
    st.markdown(f"Unpatched, {corrupt} answers {fmt.code(tok(sweep.corrupt_answer))}, {-sweep.corrupt_diff:.2f} "
                f"logits above {fmt.code(tok(sweep.clean_answer))}. " + flow_sentence(sweep)
                + " Click a cell to see that patched run's answer.")  # fmt: skip
    cell = ((ss.get("mech_patch_click") or {}).get("selection") or {}).get("cell", [])
    if cell and 0 <= int(cell[0]["row"]) < len(sweep.hooks) and 0 <= int(cell[0]["col"]) < len(sweep.roles):
        h, t = sweep.hooks[int(cell[0]["row"])], int(cell[0]["col"])
        pr = interp.patched_logits(model, cur.text, corrupt, [interp.Patch(h, t)])
        probs = np.exp(pr.logits - pr.logits.max())
        probs /= probs.sum()
        top = int(pr.logits.argmax())
        st.info(f"Patching {h} at position {t} ({sweep.roles[t]}): the corrupted run now answers {fmt.code(tok(top))} "
                f"with probability {fmt.with_log(probs[top])}; recovery {pr.recovery:.2f}.",
                icon=":material/healing:")  # fmt: skip
        toks = list(dict.fromkeys([sweep.clean_answer, sweep.corrupt_answer, top]))
        vega.draw(mc.probability_compare(pd.DataFrame([{"token": tok(i), "run": f"patched {h} @ {t}",
                        "probability": float(probs[i]), "logprob": float(np.log(probs[i]))} for i in toks])),
                        width="stretch")  # fmt: skip

# ---------------------------------------------------------------- 4 · test a claim: steering
st.subheader("4 · Test a claim: steer a head")
st.markdown(
    "If a head selects a slot and copies its value, forcing it to look at another slot should change the answer "
    "to that slot's value. Pick heads and a slot; at `=` their attention is set to 1 on the slot's first digit"
    + (" (an inner expression's closing `)`, and the answer should follow its answer)" if model.task.nested else "")
    + "."
)
head_names = [f"L{i}H{h}" for i in range(cfg.n_layers) for h in range(cfg.n_heads)]
options = [f"all of layer {i}" for i in range(cfg.n_layers)] + head_names
default_heads = options[cfg.n_layers - 1]  # the last layer's heads: copying may be spread over them
state.keep_valid("mech_steer_heads", options, default=default_heads)
ss.setdefault("mech_steer_heads", default_heads)
links.bind("steer", "mech_steer_heads", default_heads, options=options)
picked = st.selectbox("Heads", options, key="mech_steer_heads")
heads = [f"L{picked.split()[-1]}H{h}" for h in range(cfg.n_heads)] if picked.startswith("all") else [picked]
expr = model.parse(cur.text)
args = model.expressions([expr]).values[0].tolist()  # each slot's value: an inner expression's answer, nested
shown = [getattr(v, "text", str(v)) for v in expr.values]  # a number, or an inner expression's text
slot_names = [f"slot {j + 1}: {v}" for j, v in enumerate(shown)]
other_slot = next((s for j, s in enumerate(slot_names) if j + 1 not in ex.answer_slots), slot_names[0])
state.keep_valid("mech_steer_slot", slot_names, default=other_slot)
ss.setdefault("mech_steer_slot", other_slot)
links.bind_choice("slot", "mech_steer_slot", slot_names, default=other_slot)
slot_label = st.segmented_control("Attend to", slot_names, key="mech_steer_slot") or slot_names[0]
slot = slot_names.index(slot_label) + 1
key = slot_key(ex.roles, slot)  # the slot's first digit; an inner expression's closing `)`
logits = interp.steered_logits(model, run.tokens[None], [run.answer_pos], heads, [key])[0].astype(float)
p = np.exp(logits - logits.max())
p /= p.sum()
new = int(logits.argmax())
target = str(args[slot - 1])[0]
follows = tok(new) == target
holds = f"holds `{args[slot - 1]}`" if shown[slot - 1] == str(args[slot - 1]) else \
    f"is `{shown[slot - 1]}`, whose answer is `{args[slot - 1]}`"  # fmt: skip
rate, n_used = follow(cur.model_key, tuple(heads), slot, model, space.exprs.subset(np.arange(0, len(space.exprs), 10)))
st.markdown(
    f"Steered, the model's top token at `=` is **{fmt.code(tok(new))}** (probability {fmt.with_log(p[new])}); "
    f"slot {slot} {holds}: the answer **{'follows' if follows else 'does not follow'}**"
    + (" (it was that token already)." if tok(new) == answer and follows else ".")
    + (f" Across {n_used:,} inputs{f' of {slot} or more values' if slot > model.task.min_args else ''} whose "
       f"answer does not already start with slot {slot}'s digit, steering "
       f"{', '.join(heads)} there makes the answer follow on **{fmt.percent(rate)}**." if n_used else "")
)

# ---------------------------------------------------------------- 5 · the story
st.subheader("5 · The story these numbers tell")
if cfg.causal:
    st.caption("For the first answer token, read at `=`.")
for c in ex.claims:
    st.markdown(f"- {c.text}" + (f"  \n  *{c.across}*" if c.across else ""))
