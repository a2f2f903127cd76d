"""The training loop: one step of the real trainer on one real batch, three optimisers' first steps side by side,
and the learning rate and gradient norm over a run."""

import altair as alt
import numpy as np
import pandas as pd
import streamlit as st

from explainer import format as fmt
from explainer import links, state, vega
from model_core.presets import train_page_defaults
from model_core.training import formulas
from model_core.training import job as tj
from model_core.training import walkthrough as wt
from model_core.training.optim import lr_at

ss = st.session_state
cur = state.current()
model, run = cur.model, cur.run
cfg = model.train_config or train_page_defaults().train  # the recipe the model was trained with, if it says
BATCH_SIZES = sorted({8, 16, 32, 64, 128, 256, cfg.batch_size})
HEIGHT = 280  # a chart's whole height in Streamlit: title, axes and legend included
ETAS = [1e-4, 3e-4, 1e-3, 3e-3, 0.01, 0.03, 0.1, 0.3, 1.0]


@state.model_cache(max_entries=16, session_entries=2)
def cached_step(model_key: str, seed: int, batch_size: int, step: int, _model, _cfg) -> wt.OneStep:
    """One pass of the trainer's loop body (`walkthrough.one_step`), once per model, seed, batch size and step."""
    return wt.one_step(_model, _cfg, seed, batch_size, step)


def lr_curve(steps, lrs, title: str) -> alt.Chart:
    """The learning rate against the step: [n] steps (counted from 0, as `lr_at` counts them) and [n] rates."""
    frame = pd.DataFrame({"step": np.asarray(steps), "learning rate": np.asarray(lrs, dtype=float)})
    return alt.Chart(frame).mark_line().encode(
        x=alt.X("step:Q", title="step t"), y=alt.Y("learning rate:Q", title="η_t"),
        tooltip=["step:Q", alt.Tooltip("learning rate:Q", format=".4g")],
    ).properties(title=title, height=HEIGHT)  # fmt: skip


st.title("The training loop")
recipe = (f"{formulas.OPTIMIZER_NAMES[cfg.optimizer]}, η = {cfg.lr:g}, batch {cfg.batch_size}, {cfg.steps:,} steps, "
          f"{cfg.warmup_steps:,} warm-up, clipping at {cfg.grad_clip:g}")  # fmt: skip
st.caption(
    f"Model **{fmt.literal(cur.model_name)}**. "
    + (f"Its training recipe: {recipe}." if model.train_config is not None else
       f"Its file records no training recipe, so this page uses the Train page's defaults: {recipe}.")
    + " Every number below is computed here by the trainer's own functions, on a copy of the model's weights: the "
    "model itself never changes."
)  # fmt: skip

# ---------------------------------------------------------------- 1. the loop
st.header("1. The loop, as the code runs it")
st.markdown(
    f"`Trainer.run` ({fmt.code('model_core/training/trainer.py')}) repeats these steps {cfg.steps:,} times:\n\n"
    + wt.loop_markdown(fmt.code, model.task)
)
if model.metrics.get("train_size"):  # trained on a subset (the Train page's setting): its batches came from it
    st.caption(f"This model was trained on only {model.metrics['train_size']:,} training expressions, its batches "
               "drawn from those; the batch below is drawn from the whole training split.")  # fmt: skip
st.latex(formulas.loss_latex(model.causal))
st.caption(formulas.loss_caption(model.causal))

st.subheader("One step on one real batch")
if ss.get("loop_model") != cur.model_key:  # another model: start from its recipe's step 0, seed and batch size
    ss.update(loop_model=cur.model_key, loop_step=0, loop_seed=cfg.seed, loop_batch=cfg.batch_size)
links.bind("step", "loop_step", 0, low=0, high=cfg.steps)
links.bind("seed", "loop_seed", cfg.seed, low=0, high=2**31 - 1)
links.bind("batch", "loop_batch", cfg.batch_size, options=BATCH_SIZES)
left, middle, right = st.columns([2, 1, 1])
t = left.slider("Step t (its learning rate)", 0, cfg.steps, key="loop_step",
                help="The step of the schedule whose learning rate this update uses (counted from 0).")  # fmt: skip
seed = middle.number_input("Batch seed", 0, 2**31 - 1, key="loop_seed",
                           help=f"The rng the batch is drawn with. With {cfg.seed}, the recipe's seed, it is the "
                                "first batch a run of this recipe draws.")  # fmt: skip
batch_size = right.selectbox("Batch size", BATCH_SIZES, key="loop_batch")
step = cached_step(cur.model_key, int(seed), int(batch_size), int(t), model, cfg)

m1, m2, m3, m4 = st.columns(4)
m1.metric("Batch loss", f"{step.loss:.4g}", help="As Transformer.loss_and_grads returned it (float32).")
m2.metric("Gradient norm", f"{step.grad_norm:.4g}", help="Before clipping, as clip_grad_norm returned it.")
m3.metric("After clipping", f"{step.clipped_norm:.4g}")
m4.metric("η_t", f"{step.lr:.4g}", help="lr_at(t, cfg)")
st.info(
    "\n".join(f"- {text}" for text in (wt.batch_sentence(step), wt.op_sentence(step, model.task),
                                       wt.clip_sentence(step), wt.lr_sentence(step.step, cfg),
                                       wt.update_sentence(step)))  # fmt: skip
    , icon=":material/lightbulb:",
)

order = np.argsort(-step.example_losses, kind="stable")  # highest loss first
table = pd.DataFrame({
    "expression": [step.texts[i] for i in order],
    "operation": [step.ops[i] for i in order],
    "answer tokens": [" ".join(step.answer_tokens[i]) for i in order],
    "loss": step.example_losses[order],
})  # fmt: skip
st.dataframe(table, hide_index=True, height=280,
             column_config={"loss": st.column_config.NumberColumn(
                 "loss (mean over its answer tokens)", format="%.4e")})  # fmt: skip
st.caption(f"The batch's {step.batch_size} expressions, highest loss first. Each loss is minus the mean log "
           "probability of the expression's answer tokens, recomputed in float64 from the logits the step computed.")

groups = pd.DataFrame({
    "parameters": [g.name for g in step.groups], "weights": [g.n for g in step.groups],
    "‖Δ‖": [g.norm for g in step.groups], "RMS Δ": [g.rms for g in step.groups],
    "max |Δ|": [g.max_abs for g in step.groups], "RMS Δ / η_t": [g.rms / step.lr for g in step.groups],
})  # fmt: skip
st.dataframe(groups, hide_index=True, column_config={
    c: st.column_config.NumberColumn(format="%.3e") for c in ("‖Δ‖", "RMS Δ", "max |Δ|")
} | {"RMS Δ / η_t": st.column_config.NumberColumn(format="%.3f")})  # fmt: skip
st.caption("The update's size per group of parameters: Δ is each weight after the step minus before it "
           "(float32, as the trainer stores them).")

# ---------------------------------------------------------------- 2. three optimisers
st.header("2. One step, three optimisers")
st.markdown(
    f"On the sidebar's example **{fmt.literal(run.answer.expression.text)}** (teacher-forced with its true answer, "
    f"as on the Backprop page), one first step from the model's weights (float64 copies) with plain SGD (momentum "
    f"0), SGD with momentum {cfg.momentum:g} and Adam (β1 = {cfg.beta1:g}, β2 = {cfg.beta2:g}), all at the same η."
)
links.bind("eta", "loop_eta", 3e-3, options=ETAS)
eta = st.select_slider("Learning rate η", ETAS, value=3e-3, key="loop_eta", format_func=lambda x: f"{x:g}")
three = wt.three_optimizers(model, run.train_tokens, run.train_targets, float(eta), cfg)
rows = []
for s in three.steps:
    q = wt.ratio_quantiles(s, three.lr)
    rows.append({"optimiser": s.name, "loss before": s.loss_before, "loss after": s.loss_after, "max |Δ|": s.max_abs,
                 "RMS Δ": s.rms, "median |Δ|/η": q.get(0.5), "99% |Δ|/η": q.get(0.99),
                 "within 1% of η": fmt.percent(wt.near_lr_share(s, three.lr))})  # fmt: skip
numbers = {c: st.column_config.NumberColumn(format="%.4e") for c in ("loss before", "loss after", "max |Δ|", "RMS Δ",
                                                                     "median |Δ|/η", "99% |Δ|/η")}  # fmt: skip
st.dataframe(pd.DataFrame(rows), hide_index=True, column_config=numbers)
st.caption("|Δ|/η quantiles and the share within 1% of η are over the weights with a nonzero gradient; max |Δ| and "
           "RMS Δ over all weights.")

hist = []
for s in three.steps:
    centres, counts = wt.ratio_histogram(s, three.lr)
    hist += [{"optimiser": s.name, "log10 |Δ|/η": c, "weights": int(n)} for c, n in zip(centres, counts, strict=True)]
names = [s.name for s in three.steps]
hist = pd.DataFrame(hist)
filled = hist.groupby("log10 |Δ|/η")["weights"].sum()
filled = filled[filled > 0].index  # keep the bins from the lowest to the highest that holds any weight
hist = hist[hist["log10 |Δ|/η"].between(filled.min() - 0.5, filled.max() + 0.5)]
chart = (
    alt.Chart(hist)
    .mark_line(interpolate="step")
    .encode(
        x=alt.X("log10 |Δ|/η:Q", title="log₁₀ (|Δ| / η)"),
        y=alt.Y("weights:Q", title="weights"),
        color=alt.Color("optimiser:N", sort=names, title=None, legend=alt.Legend(orient="top", columns=1)),
        strokeDash=alt.StrokeDash("optimiser:N", sort=names, legend=None,
                                  scale=alt.Scale(domain=names, range=[[1, 0], [6, 4], [1, 0]])),
        tooltip=["optimiser:N", alt.Tooltip("log10 |Δ|/η:Q", format=".2f"), "weights:Q"],
    )
    .properties(title="|Δ| / η of the weights that moved", height=340)
)
vega.draw(chart, width="stretch")
st.caption(f"Bins of half a decade; the leftmost one also counts anything below 10^{wt.HIST_EDGES[0]:g}. Plain SGD "
           "(solid) and momentum (dashed) lie on top of each other when they make the same step.")
st.info(
    "\n".join(f"- {text}" for text in (wt.same_first_step_sentence(three), wt.adam_sentence(three),
                                       wt.compare_sentence(three), wt.loss_change_sentence(three)))  # fmt: skip
    , icon=":material/lightbulb:",
)

# ---------------------------------------------------------------- 3. over a run
st.header("3. Learning rate and gradient norm over a run")
job = ss.get(state.TRAIN_JOB)
snap = job.snapshot() if job is not None else None
if snap is not None and snap.done and snap.steps_done > 0:
    run_cfg = job.train
    idx = tj.thin_indices(snap.steps_done)  # at most a few hundred points: the chart re-sends all its data
    st.markdown(f"This session's training run **{fmt.literal(job.name)}**: {fmt.literal(snap.message)}")
    t_run = snap.step - 1  # StepMetrics counts steps done (1 after the first update); t, as lr_at counts, from 0
    vega.draw(lr_curve(t_run[idx], snap.lr[idx], "Learning rate η_t at each step"), width="stretch")
    norms = pd.DataFrame({"step": t_run[idx], "gradient norm": snap.grad_norm[idx]})
    positive = bool((snap.grad_norm > 0).all())
    line = alt.Chart(norms).mark_line().encode(
        x=alt.X("step:Q", title="step t"),
        y=alt.Y("gradient norm:Q", scale=alt.Scale(type="log") if positive else alt.Scale(zero=True),
                title="gradient norm before clipping" + (" (log scale)" if positive else "")),
        tooltip=["step:Q", alt.Tooltip("gradient norm:Q", format=".4g")],
    )  # fmt: skip
    layers = [line]
    if run_cfg.grad_clip > 0:
        rule = pd.DataFrame({"threshold": [run_cfg.grad_clip]})
        layers.append(alt.Chart(rule).mark_rule(strokeDash=[4, 3], color="#d62728").encode(
            y="threshold:Q", tooltip=[alt.Tooltip("threshold:Q", title="clipping threshold")]))  # fmt: skip
    vega.draw(alt.layer(*layers).properties(title="Gradient norm at each step, and the clipping threshold",
                                            height=HEIGHT), width="stretch")  # fmt: skip
    st.info(formulas.clipping_sentence(snap.grad_norm, run_cfg.grad_clip) + " " + formulas.schedule_caption(run_cfg),
            icon=":material/lightbulb:")
else:
    defaults = train_page_defaults().train
    steps = np.arange(defaults.steps)
    vega.draw(lr_curve(steps, [lr_at(int(s), defaults) for s in steps], "The Train page's default schedule: η_t"),
              width="stretch")  # fmt: skip
    waiting = (f"This session's training run is {snap.status} ({snap.steps_done:,} steps so far): its curves appear "
               "here once it ends. " if snap is not None and not snap.done else "")  # fmt: skip
    st.info(waiting + formulas.schedule_caption(defaults) + " A run on the Train page will add its learning rate and "
            "gradient norm at every step here, and how often clipping acted.", icon=":material/lightbulb:")
