"""Train: train a new model in the background, watch its curves and heads form, then open it in every page."""

import time
from types import MappingProxyType

import altair as alt
import numpy as np
import pandas as pd
import streamlit as st

from explainer import charts, links, live_charts, state, vega
from explainer import format as fmt
from explainer.charts import attention as attention_charts
from explainer.charts.training import mechanism_over_training, weight_change_bars
from model_core import CheckpointError, ModelConfig, store
from model_core.analysis.attention import strongest_attention
from model_core.config import ConfigError, TrainConfig
from model_core.interp import probe
from model_core.params import param_shapes
from model_core.presets import DEFAULT_LR, train_page_defaults
from model_core.task import OPERATIONS, TaskConfig, TaskError, task_text
from model_core.training import formulas
from model_core.training import job as tj
from model_core.training.watchers import WATCHERS

JOB = state.TRAIN_JOB  # this session's TrainingJob (at most one)
ADDED = state.TRAIN_ADDED  # {job id: the name it has in the sidebar}
UPLOAD_RESULT = "train_upload_result"  # ("success" | "error", message) of the last upload
SETTINGS = "train_settings"  # the settings' values, kept while the user is on other pages
BARS_TITLE = "Validation accuracy per operation"  # its subtitle: at the latest evaluation (a longer title was cut)
LIVE_EVERY_S = 0.4  # while training, the progress, curves and bars refresh this often
QUEUED_EVERY_S = 2.0  # and while the run waits in line, its place and wait this often (a class's queued runs add up)
DYNAMICS_EVERY_S = 3.0  # and the mechanism chart and the attention snapshots this often
PLAY_EVERY_S = 0.5  # after it, "Play" shows the next snapshot this often
PLAYING = "train_playing"  # True while the snapshots play
PLAYED_AT = "train_played_at"  # when play last moved on (time.monotonic)
PLAY_TIMER = "train_play_timer"  # whether the app's last run gave the snapshots' fragment the play timer
PLAY_PRESSED = "train_play_pressed"  # Play was pressed in this run: it shows the snapshot it starts from first

_PRESET = train_page_defaults()  # the one source of the recipe (model_core/presets.py)
_MODEL, _TRAIN = ModelConfig(**_PRESET.model), _PRESET.train
DEFAULTS = MappingProxyType({
    "train_max_value": _PRESET.task.max_value, "train_ops": tuple(_PRESET.task.operations),
    "train_n_args": _PRESET.task.n_args, "train_vary": _PRESET.task.variable_length,
    "train_nested": _PRESET.task.nested,
    "train_layers": _MODEL.n_layers, "train_heads": _MODEL.n_heads, "train_d_model": _MODEL.d_model,
    "train_d_ff": _MODEL.d_ff, "train_causal": "causal" if _MODEL.causal else "bidirectional",
    "train_norm": _MODEL.norm,
    "train_optimizer": _TRAIN.optimizer, "train_lr": _TRAIN.lr, "train_batch": _TRAIN.batch_size,
    "train_steps": _TRAIN.steps, "train_seed": _TRAIN.seed, "train_warmup": _TRAIN.warmup_steps,
    "train_clip": _TRAIN.grad_clip, "train_eval_every": _TRAIN.eval_every,
    "train_stop_at": _TRAIN.stop_at_accuracy is not None, "train_size": "all",
})  # fmt: skip
BATCH_SIZES = sorted({16, 32, 64, 128, 256, tj.MAX_BATCH, _TRAIN.batch_size})  # the recipe's batch among them
OPERATION_CHOICES = list(OPERATIONS)  # every operation in the registry; the preset's are the default
SHORTEST = 2  # with "shorter lists too", lists have this many values or more (Second needs two)
TRAIN_SIZES = ["all" if n is None else n for n in tj.TRAIN_SIZES]  # the training expressions to use ("all")
OPTIMIZERS = formulas.OPTIMIZER_NAMES
ATTENTION = {"bidirectional": "bidirectional (encoder)", "causal": "causal (GPT-style decoder)"}
NORMS = {"post": "post-norm (original)", "pre": "pre-norm (GPT-2)"}
GOOD_HELD_OUT = 0.99  # a run that ends below this held-out accuracy is shown as a warning, not a success
STATUS_BOX = {"finished": st.success, "reached_target": st.success, "stopped": st.info, "diverged": st.error,
              "failed": st.error, "running": st.info, "pending": st.info, "queued": st.info}  # fmt: skip

ss = st.session_state


def _job() -> tj.TrainingJob | None:
    return ss.get(JOB)


def _running() -> bool:
    job = _job()
    return job is not None and not job.done


def _settings() -> tuple[dict, dict, dict]:
    """The task, training and model options the settings' widgets hold (TrainingJob's arguments, in its order)."""
    s = {k: ss[k] for k in DEFAULTS}
    task = {"max_value": s["train_max_value"], "operations": list(s["train_ops"]), "n_args": s["train_n_args"],
            "min_args": SHORTEST if s["train_vary"] else s["train_n_args"],
            "max_depth": 2 if s["train_nested"] else 1}  # fmt: skip
    model = {"n_layers": s["train_layers"], "n_heads": s["train_heads"], "d_model": s["train_d_model"],
             "d_ff": s["train_d_ff"], "causal": s["train_causal"] == "causal", "norm": s["train_norm"],
             "seed": s["train_seed"]}  # fmt: skip
    train = {"optimizer": s["train_optimizer"], "lr": float(s["train_lr"]), "batch_size": s["train_batch"],
             "steps": s["train_steps"], "seed": s["train_seed"], "warmup_steps": s["train_warmup"],
             "grad_clip": float(s["train_clip"]), "eval_every": s["train_eval_every"],
             "stop_at_accuracy": 1.0 if s["train_stop_at"] else None,
             # the recipe's parts without a widget: its hard cases (drawn from the whole training split, so not with
             # a chosen few training expressions) and the schedule's floor
             "hard_fraction": _TRAIN.hard_fraction if s["train_size"] == "all" else 0.0,
             "min_lr_ratio": _TRAIN.min_lr_ratio}  # fmt: skip
    model["qk_init"] = _MODEL.qk_init  # and its initialisation
    return task, train, model


def _recipe_extras() -> str:
    """The recipe's parts without a widget, in words (every run on this page uses them; the schedule's floor is
    in the schedule's formula above)."""
    parts = []
    if _TRAIN.hard_fraction:
        parts.append(f"draws {_TRAIN.hard_fraction:.0%} of each batch from hard cases (ties and near ties, and every "
                     "number of digits as common as any other; not when it trains on a chosen few expressions, "
                     "whose batches come from those alone)")  # fmt: skip
    if _MODEL.qk_init != 1.0:
        parts.append(f"starts W_Q and W_K at {_MODEL.qk_init:g}× the usual scale, so attention starts near uniform")
    text = ("Every run here also " + " and ".join(parts) + ".") if parts else ""
    if _TRAIN.hard_fraction and ss.train_nested:  # splits.sample_train's nested hard cases
        sums = ", and Sum is common inside and out" if "Sum" in ss.train_ops else ""
        text += (" With expressions inside expressions, every hard case holds one, most of its arguments are "
                 f"expressions{sums}.")  # fmt: skip
    return text


def _train_size() -> int | None:
    """How many training expressions the next run trains on (None: all of the training split)."""
    return None if ss.train_size == "all" else int(ss.train_size)


# ---------------------------------------------------------------- callbacks
def _on_optimizer() -> None:
    """A learning rate left at one optimiser's default follows the optimiser to its own default."""
    if ss.train_lr in DEFAULT_LR.values():
        ss.train_lr = DEFAULT_LR[ss.train_optimizer]


def _on_start() -> None:
    if _running():  # one job per session
        return
    job = tj.TrainingJob(*_settings(), probe=ss.get("example"), train_size=_train_size())
    state.watch_job(job)  # in the URL too: a reload finds the run again
    ss[PLAYING] = False
    job.start()  # a refused job ("failed") does not start; a job beyond the server's limit waits "queued"


def _on_stop() -> None:
    if _job() is not None:
        _job().stop()


def _on_upload() -> None:
    file = ss.get("train_upload")
    if file is None:
        return
    try:
        model = store.from_checkpoint(file.getvalue(), name=None)
    except CheckpointError as err:
        ss[UPLOAD_RESULT] = ("error", f"{file.name} was not loaded: {err}")
        return
    except Exception as err:  # the loader should raise nothing else; if it does, a message, never a traceback
        ss[UPLOAD_RESULT] = ("error", f"{file.name} was not loaded: could not load this file: {type(err).__name__}")
        return
    for array in model.transformer.params.values():
        array.setflags(write=False)
    shown, dropped = state.add_session_model(f"uploaded: {model.name or file.name.rsplit('.', 1)[0]}", model)
    # the note (which names the removed model) comes first: `_upload_message` bolds the last `**shown**`
    note = f"{state.room_note(dropped)} " if dropped else ""
    ss[UPLOAD_RESULT] = ("success", f"{note}Loaded {file.name}: **{shown}** is now in the sidebar's model list.")


def _upload_message(kind: str, text: str) -> str:
    """The last upload's message (`_on_upload` writes it) as Markdown: all of it literal, for it holds the file's
    name and a model name from the checkpoint's metadata, or an error that may quote them; in a success, the
    model's name (the sidebar's, `**name**` in the message) stays bold."""
    if kind == "success":
        for name in reversed(ss.get(state.SESSION_MODELS, {})):
            before, bold, after = text.rpartition(f"**{name}**")
            if bold:
                return f"{fmt.literal(before)}**{fmt.literal(name)}**{fmt.literal(after)}"
    return fmt.literal(text)


def _checkpoint_bytes(job: tj.TrainingJob) -> bytes:
    """The trained model's checkpoint, made once per job."""
    cached = ss.get("train_checkpoint")
    if cached is None or cached[0] != job.id:
        cached = ss["train_checkpoint"] = (job.id, store.to_bytes(job.model))
    return cached[1]


# ---------------------------------------------------------------- the page
job = _job()  # the sidebar took up the run of the page's link, if any, and watches it (explainer/state.py)
if job is not None and state.adopt_finished_job(job):
    st.rerun()  # the sidebar was drawn before the model existed
running = _running()
queued = running and job is not None and job.status == "queued"  # waiting in line: its view refreshes less often

st.title("Train your own model")
st.markdown(
    "Training repeats one step thousands of times: draw a batch of $B$ expressions, run the model, score it "
    "with the cross-entropy of the right answer, backpropagate, and let the optimiser move every weight a "
    "little downhill. Every few steps the model answers the held-back **validation** expressions, and the "
    "probe example's attention patterns are saved, so you can watch the heads form. At the same snapshots a fixed "
    "**probe set** measures the mechanism: where each head looks from `=`, which head or MLP the answers depend "
    "on most, and the accuracy per operation, all on one time axis."
)
step_formulas = st.container()  # filled once the settings below are drawn: the formulas are theirs
st.caption(f"Limits on this shared machine: {tj.limits_text()}. Training runs in the background: you can "
           "switch pages and come back, and the page's address names the run, so a reload (or the link, opened "
           f"on this server) finds it again. A run nobody watches for {WATCHERS.grace_s:.0f} s is "
           "stopped.")  # fmt: skip

# ---------------------------------------------------------------- settings
# A page's widgets forget their values when the user leaves the page: restore them from SETTINGS. The
# multiselect and the slider get theirs as their default instead: the browser loads those two widgets' code
# lazily, and one that mounts after a later run (a setting changed at once on a slow machine) takes its own
# default from that run's message and sends it back; a value set through session state travels only with the
# run that set it, so that default would be the empty list and the minimum.
LAZY_WIDGETS = ("train_ops", "train_n_args")


def _bind_settings() -> None:
    """Every setting in the page's address (those at their default left out), each checked like its widget."""
    d = DEFAULTS
    links.bind("tmax", "train_max_value", d["train_max_value"], options=[9, 99])
    links.bind("tops", "train_ops", list(d["train_ops"]), options=OPERATION_CHOICES, check=bool)
    links.bind("targs", "train_n_args", d["train_n_args"], low=2, high=tj.MAX_ARGS)  # and at most the range's cap
    links.bind("tvary", "train_vary", d["train_vary"])
    links.bind("tnest", "train_nested", d["train_nested"])
    for param, key, high in (("tlayers", "train_layers", tj.MAX_LAYERS), ("theads", "train_heads", tj.MAX_HEADS),
                             ("tdmodel", "train_d_model", tj.MAX_D_MODEL), ("tdff", "train_d_ff", tj.MAX_D_FF),
                             ("tsteps", "train_steps", tj.MAX_STEPS), ("twarmup", "train_warmup", tj.MAX_STEPS),
                             ("teval", "train_eval_every", 5000), ("tseed", "train_seed", 2**31 - 1)):  # fmt: skip
        low = {"train_d_model": 4, "train_d_ff": 4, "train_steps": 10, "train_warmup": 0, "train_eval_every": 10,
               "train_seed": 0}.get(key, 1)  # fmt: skip
        links.bind(param, key, d[key], low=low, high=high)
    links.bind("tattn", "train_causal", d["train_causal"], options=list(ATTENTION))
    links.bind("tnorm", "train_norm", d["train_norm"], options=list(NORMS))
    links.bind("topt", "train_optimizer", d["train_optimizer"], options=list(OPTIMIZERS))
    links.bind("tlr", "train_lr", float(d["train_lr"]), low=0.0001, high=10.0)
    links.bind("tbatch", "train_batch", d["train_batch"], options=BATCH_SIZES)
    links.bind("tclip", "train_clip", float(d["train_clip"]), low=0.0, high=100.0)
    links.bind("tstop", "train_stop_at", d["train_stop_at"])
    links.bind_choice("tsize", "train_size", TRAIN_SIZES)
saved = ss.get(SETTINGS, DEFAULTS)
for key, value in saved.items():
    if key not in LAZY_WIDGETS:
        ss.setdefault(key, value)
_bind_settings()  # a link's recipe (explainer.links): a teacher can send "train this"
lazy_values = {key: ss.get(key, saved[key]) for key in LAZY_WIDGETS}  # this run's value, else the saved one
left, middle, right = st.columns(3)
with left.container(border=True):
    st.markdown("**Task**")
    st.selectbox("Values from 0 to", [9, 99], key="train_max_value")
    chosen_ops = st.multiselect("Operations", OPERATION_CHOICES, default=list(lazy_values["train_ops"]),
                                key="train_ops", help="Sum answers with more than one digit: it needs a causal model.")
    # answers of more than one digit are written digit by digit, by a causal model: values above 9, or an operation
    # whose answers pass the largest value (a Sum; `Operation.largest`, which the task's answer width comes from)
    wider = [op for op in chosen_ops
             if OPERATIONS[op].largest(lazy_values["train_n_args"], ss.train_max_value) > ss.train_max_value]
    multi_digit = ["Values above 9"] * (ss.train_max_value > 9) + [f"A {op}" for op in wider]
    if multi_digit:
        ss.train_causal = "causal"  # before the radio below is drawn
    # longer lists of two-digit values would be the heaviest jobs; nested ones, too many to index
    most = tj.max_args(ss.train_max_value, ss.train_nested)
    if lazy_values["train_n_args"] > most:
        lazy_values["train_n_args"] = most
        ss.pop("train_n_args", None)  # the slider takes the capped value as its default
    count_help = (f"At most {tj.MAX_ARGS} values in 0-9, {tj.MAX_ARGS_WIDE} in 0-99; nested, {tj.MAX_ARGS_NESTED} "
                  f"and {tj.MAX_ARGS_NESTED_WIDE}.")  # fmt: skip
    if most > SHORTEST:
        st.slider("Most values" if ss.train_vary else "Number of values", SHORTEST, most,
                  value=lazy_values["train_n_args"], key="train_n_args", help=count_help)  # fmt: skip
    else:  # one choice (nested two-digit values): a slider cannot have it as both ends
        st.number_input("Number of values", SHORTEST, SHORTEST, value=SHORTEST, key="train_n_args", disabled=True,
                        help=count_help)  # fmt: skip
    st.checkbox(f"Shorter lists too (from {SHORTEST} values)", key="train_vary",
                help="Every length from 2 values to the most, each as common as any other in training: then "
                     "Second and Last depend on where the list ends.")  # fmt: skip
    st.checkbox("Expressions inside expressions", key="train_nested",
                help="A value may be an expression of values itself, e.g. Max ( First ( 2 8 ) 7 ): the model must "
                     "work out the inner answer first. Half of each batch has such an argument (one or more), the "
                     "other half numbers only.")  # fmt: skip
with middle.container(border=True):
    st.markdown("**Model**")
    a, b = st.columns(2)
    a.number_input("Blocks", 1, tj.MAX_LAYERS, key="train_layers")
    b.number_input("Heads", 1, tj.MAX_HEADS, key="train_heads")
    a.number_input("d_model", 4, tj.MAX_D_MODEL, step=4, key="train_d_model",
                   help="Must be a multiple of the number of heads.")  # fmt: skip
    b.number_input("FFN width", 4, tj.MAX_D_FF, step=16, key="train_d_ff")
    st.radio("Attention", list(ATTENTION), format_func=ATTENTION.get, key="train_causal", horizontal=True,
             disabled=bool(multi_digit))  # fmt: skip
    if multi_digit:
        who = " and ".join([multi_digit[0]] + [w.lower() for w in multi_digit[1:]])
        verb = "needs" if len(multi_digit) == 1 and wider else "need"  # "Values above 9 need", "A Sum needs"
        st.caption(f"{who} {verb} a **causal** model: it writes the answer digit by digit.")
    st.radio("LayerNorm", list(NORMS), format_func=NORMS.get, key="train_norm", horizontal=True)
with right.container(border=True):
    st.markdown("**Optimiser**")
    a, b = st.columns(2)
    a.selectbox("Optimiser", list(OPTIMIZERS), format_func=OPTIMIZERS.get, key="train_optimizer",
                on_change=_on_optimizer, help="Changing it sets the learning rate to its default, unless you changed "
                "that yourself.")  # fmt: skip
    b.number_input("Learning rate", 0.0001, 10.0, step=0.001, format="%.4f", key="train_lr")
    a.selectbox("Batch size", BATCH_SIZES, key="train_batch")
    b.number_input("Steps", 10, tj.MAX_STEPS, step=100, key="train_steps")
    a.number_input("Seed", 0, 2**31 - 1, key="train_seed",
                   help="Initial weights and batches: the same settings and seed give the same model.")  # fmt: skip
    with st.expander("More"):
        st.number_input("Warm-up steps", 0, tj.MAX_STEPS, step=10, key="train_warmup")
        st.number_input("Gradient clipping (0 = off)", 0.0, 100.0, step=0.5, key="train_clip")
        st.number_input("Evaluate every … steps", 10, 5000, step=10, key="train_eval_every")
        st.checkbox("Stop at 100% validation accuracy", key="train_stop_at")
        st.selectbox("Training expressions", TRAIN_SIZES, key="train_size",
                     format_func=lambda n: "all of the training split" if n == "all" else f"the first {n:,}",
                     help="Draw every batch from only this many training expressions (a seeded choice, the same "
                          "for every operation). With few, the model can memorise them: after the run, compare "
                          "its accuracy on them with its held-out accuracy. The validation and held-out "
                          "expressions stay the same.")  # fmt: skip
ss[SETTINGS] = {k: ss[k] for k in DEFAULTS}


def _step_formulas(task: dict, train: dict, model: dict) -> None:
    """The loss, the update, the schedule and clipping, each as the code computes it with these settings."""
    try:
        cfg, model_cfg = TrainConfig.from_dict(train), tj.model_config(model)
    except (ConfigError, TypeError, ValueError) as err:  # the Start button reports it in full
        st.caption(f"The formulas for these settings cannot be written: {fmt.literal(str(err))}")
        return
    st.latex(formulas.loss_latex(model_cfg.causal))
    st.caption(formulas.loss_caption(model_cfg.causal))
    with st.expander(f"The update ({formulas.OPTIMIZER_NAMES[cfg.optimizer]}), the learning-rate schedule and "
                     "gradient clipping, as the code runs them with the settings below"):  # fmt: skip
        st.latex(formulas.update_latex(cfg))
        st.caption(formulas.update_caption(cfg, list(param_shapes(model_cfg))))
        st.latex(formulas.schedule_latex(cfg))
        st.caption(formulas.schedule_caption(cfg))
        clip = formulas.clipping_latex(cfg)
        if clip is not None:
            st.latex(clip)
        st.caption(formulas.clipping_caption(cfg))


with step_formulas:
    _step_formulas(*_settings())

with st.container(horizontal=True):  # each button as wide as its label (columns cut "Start training" short)
    st.button("Start training", key="train_start", on_click=_on_start, disabled=running, type="primary",
              icon=":material/play_arrow:")  # fmt: skip
    st.button("Stop", key="train_stop", on_click=_on_stop, disabled=not running, icon=":material/stop:")


def _duration_text(task: dict, train: dict, model: dict) -> str:
    """How long these settings should train here ("" when they are not valid: Start says why)."""
    try:
        return tj.duration_text(TaskConfig.from_dict(task), tj.model_config(model), TrainConfig.from_dict(train))
    except (ConfigError, TaskError, TypeError, ValueError):
        return ""


st.caption(" ".join(filter(None, ["One run at a time per session; settings changed during a run apply to the next "
                                  "one. " + _duration_text(*_settings()), _recipe_extras()])))  # fmt: skip


def _curves_frame(snap: tj.JobSnapshot | None) -> pd.DataFrame:
    """The run's curves (none before its first step), their metrics and splits as categories: see `live`."""
    c = snap.curves() if snap is not None and snap.steps_done else {"step": [], "value": [], "metric": [], "split": []}
    return pd.DataFrame({"step": np.asarray(c["step"], dtype=np.int64), "value": np.asarray(c["value"], dtype=float),
                         "metric": pd.Categorical(c["metric"], categories=tj.CURVE_METRICS),
                         "split": pd.Categorical(c["split"], categories=tj.CURVE_SPLITS)})  # fmt: skip


def _op_frame(snap: tj.JobSnapshot | None) -> pd.DataFrame:
    """The latest evaluation's accuracy per operation (none before it), the operations as categories."""
    data = snap.op_accuracy() if snap is not None else {"operation": [], "accuracy": []}
    operations = snap.operations if snap is not None else ss.train_ops  # the next run's
    return pd.DataFrame({"operation": pd.Categorical(data["operation"], categories=operations),
                         "accuracy": np.asarray(data["accuracy"], dtype=float)})  # fmt: skip


# The same elements in the same places before, during and after a run: the browser then keeps its charts and
# swaps in their data, where a chart it has to build (and, on a new tab, its chart library) would cost it most
# (on the machine that trains, if the browser runs there). The charts' columns are categories for the same
# reason: the specs are the same from the empty charts to the last update.
@st.fragment(run_every=(QUEUED_EVERY_S if queued else LIVE_EVERY_S) if running else None)
def live() -> None:
    job = _job()
    snap = job.snapshot() if job is not None else None
    if queued and snap is not None and not snap.queued:
        st.rerun(scope="app")  # it left the line: the page again, refreshing at the pace of a running job
    if snap is None:
        # the claim is the defaults' (benchmarks/train_time.py), whatever is chosen now: so it names them
        st.info(f"Choose the settings and press **Start training**. The page's defaults (the original "
                f"{_MODEL.n_layers}-block model, on {task_text(_PRESET.task)}) reach 100% validation accuracy in a "
                "few hundred steps.")  # fmt: skip
    else:
        if state.adopt_finished_job(job):
            st.rerun(scope="app")  # once: the sidebar picks up the new model
        added = ss.get(ADDED, {}).get(job.id)
        note = f" It is in the sidebar's model list as **{fmt.literal(added)}**." if added else ""
        if snap.status == "diverged":
            note = " The model is not added to the model list."
        text = fmt.literal(snap.message) + note  # a failure's message may quote a value
        if snap.queued:  # waiting for the server's trainer: its place in line and about how long (refreshed)
            text = fmt.literal(tj.place_text(snap.queue_position, snap.wait_s)) + " **Stop** takes it out of the line."
        box = STATUS_BOX[snap.status]
        weak = snap.held_out_accuracy is not None and snap.held_out_accuracy < GOOD_HELD_OUT
        if snap.status in ("finished", "reached_target") and weak:  # ended as asked, but not a model to trust
            box = st.warning
            text += (f" That is below {GOOD_HELD_OUT:.0%}: the model still gets about "
                     f"{round((1 - snap.held_out_accuracy) * 100)} in 100 new expressions wrong. Train for longer, "
                     "or change the settings.")  # fmt: skip
        box(text)
        if snap.status == "failed":
            return
    steps = snap.steps_done if snap is not None else 0
    if snap is None:
        st.progress(0.0, text="Not started")
    elif snap.queued:
        st.progress(0.0, text=f"{fmt.literal(job.name)}: waiting in line, {snap.total_steps:,} steps to train")
    else:
        st.progress(snap.progress, text=f"{fmt.literal(job.name)}: step {steps:,} of {snap.total_steps:,} · "
                                        f"{snap.elapsed_s:.1f} s · {snap.steps_per_s:.0f} steps/s")  # fmt: skip
    ev = snap.latest_eval if snap is not None else None
    c = st.columns(3)
    c[0].metric("Training loss", f"{snap.loss[-1]:.4f}" if steps else "–", help="The last batch's cross-entropy.")
    c[1].metric("Training accuracy", f"{snap.accuracy[-1]:.1%}" if steps else "–",
                help="Exact answers on the last batch.")  # fmt: skip
    c[2].metric(
        "Validation accuracy",
        f"{ev.accuracy:.1%}" if ev else "–",
        help=f"Exact answers on the held-back validation expressions, at step {ev.step if ev else 0}.",
    )
    left, right = st.columns([3, 2])
    with left:
        curves = lambda df: charts.training_curves(df, title="Loss and accuracy", splits=tj.CURVE_SPLITS_OF)  # noqa: E731
        live_charts.draw("curves", curves, _curves_frame(snap))
    with right:
        bars_title = alt.TitleParams(BARS_TITLE, subtitle="at the latest evaluation")
        live_charts.draw("op_bars", lambda df: charts.op_accuracy_bars(df, title=bars_title), _op_frame(snap))
    if ev is None:
        st.caption("The curves fill in as the model trains: training loss and accuracy at every step, "
                   "validation loss and accuracy at every evaluation.")  # fmt: skip
        return
    shown = f"all {steps:,} training steps" if steps <= tj.MAX_POINTS else \
        f"{tj.MAX_POINTS} of the {steps:,} training steps (evenly spread)"  # fmt: skip
    st.caption(f"Curves show {shown}; validation loss (the mean cross-entropy of every answer token of the "
               f"{snap.validation_n:,} validation expressions) and accuracy at every evaluation, with their values "
               f"on hover (the bars: step {ev.step}). {_hardest_text(ev.per_op)}")  # fmt: skip
    history = [(e.step, e.per_op) for e in snap.validations]
    st.markdown(tj.learned_order_text(tj.learned_order(history), ev.step, ended=snap.done))
    if snap.done:
        verdict = tj.memorisation_text(snap.train_n, snap.train_accuracy, snap.held_out_accuracy, snap.held_out_n,
                                       restricted=snap.train_size is not None and snap.train_n == snap.train_size)
        if verdict is not None:
            (st.warning if verdict.kind == "memorised" else st.markdown)(verdict.text)
        st.caption(formulas.clipping_sentence(snap.grad_norm, job.train.grad_clip if job.train else 0.0))


def _hardest_text(per_op: dict[str, float]) -> str:
    """The operation the model finds hardest, or that none is harder than the others."""
    worst, best = min(per_op.values()), max(per_op.values())
    if worst == best:
        return f"Every operation at {fmt.percent(worst)}."
    hardest = [op for op, acc in per_op.items() if acc == worst]
    return f"Hardest: **{' and '.join(hardest)}** ({fmt.percent(worst)}; best {fmt.percent(best)})."


# The history of the run: it changes once per snapshot, and every chart redrawn in the live view costs
# the browser (on this page's machine, the same cores as training) about 0.1 s, so while training it
# refreshes every few seconds rather than with the curves. After the run it follows the snapshot scrubber,
# and while the scrubber plays it reruns every PLAY_EVERY_S to show the next snapshot.
def _mechanism_frame(snap: tj.JobSnapshot, shown: int | None) -> pd.DataFrame:
    """The mechanism chart's one dataset (`JobSnapshot.mechanism_columns`), its panels and series as categories."""
    c = snap.mechanism_columns(shown=shown)
    df = pd.DataFrame(c)
    df["panel"] = pd.Categorical(c["panel"], categories=[*tj.MECHANISM_PANELS, tj.SHOWN])
    df["series"] = pd.Categorical(c["series"], categories=list(snap.mechanism_series()))
    return df


def _draw_mechanism(snap: tj.JobSnapshot, shown: int) -> None:
    ops, heads = list(snap.operations), list(snap.heads)
    components = list(snap.components)
    live_charts.draw(f"mechanism {len(ops)} ops {len(heads)} heads",
                     lambda df: mechanism_over_training(df, panels=tj.MECHANISM_PANELS, shown=tj.SHOWN, operations=ops,
                                                        heads=heads, components=components),
                     _mechanism_frame(snap, shown))  # fmt: skip


def _step_to(offset: int, steps: list[int]) -> None:
    """Callback of the previous / next buttons: the snapshot `offset` places away (clamped to the run's); it
    pauses play."""
    ss[PLAYING] = False
    i = steps.index(ss.train_snapshot) if ss.get("train_snapshot") in steps else len(steps) - 1
    ss.train_snapshot = steps[min(max(i + offset, 0), len(steps) - 1)]


def _set_play(on: bool, steps: list[int]) -> None:
    """Callback of Play / Pause: play (from the first snapshot if the last is shown) or pause. A callback, so that
    a pause takes effect before the rerun could advance; it sets the state the button showed rather than
    toggling, so that a click delivered twice (the fragment's run, then the app's run it asks for) is one click."""
    if on and not ss.get(PLAYING) and ss.get("train_snapshot") == steps[-1]:
        ss.train_snapshot = steps[0]
    if on != bool(ss.get(PLAYING)):
        ss[PLAYING], ss[PLAYED_AT] = on, time.monotonic()
        ss[PLAY_PRESSED] = on


def _advance(steps: list[int]) -> None:
    """While playing: the next snapshot, at most once per PLAY_EVERY_S; at the last one, stop playing."""
    now = time.monotonic()
    if ss.pop(PLAY_PRESSED, False):  # the run Play started (however long it took) shows the first snapshot
        ss[PLAYED_AT] = now
        return
    if now - ss.get(PLAYED_AT, 0.0) < 0.8 * PLAY_EVERY_S:  # another rerun in between (a click, the sidebar)
        return
    ss[PLAYED_AT] = now
    i = steps.index(ss.train_snapshot)
    if i + 1 < len(steps):
        ss.train_snapshot = steps[i + 1]
    if i + 2 >= len(steps):  # the last snapshot is shown: stop (an app rerun drops the fragment's timer)
        ss[PLAYING] = False
        st.rerun(scope="app")


def _snapshot_controls(snap: tj.JobSnapshot, steps: list[int]) -> int:
    """The layer, previous / play or pause / next, and the scrubber; returns the step shown. The buttons come
    first (play may move the scrubber, which can only be set before it is drawn)."""
    playing = bool(ss.get(PLAYING))
    row = st.container(horizontal=True, vertical_alignment="bottom")  # one row, on a phone too
    with row:
        n_layers = snap.evals[0].attention.shape[0]
        state.keep_valid("train_layer", range(n_layers))  # the run before may have had more blocks
        st.selectbox("Layer", range(n_layers), key="train_layer", format_func=lambda i: f"layer {i}", width=110)
        st.button("Previous", key="train_prev", on_click=_step_to, args=(-1, steps), icon=":material/skip_previous:",
                  disabled=ss.train_snapshot == steps[0], help="The snapshot before.")  # fmt: skip
        st.button("Pause" if playing else "Play", key="train_play", type="primary", on_click=_set_play,
                  args=(not playing, steps), icon=":material/pause:" if playing else ":material/play_arrow:",
                  help=f"Show each snapshot in turn, one every {PLAY_EVERY_S} s.")  # fmt: skip
        st.button("Next", key="train_next", on_click=_step_to, args=(1, steps), icon=":material/skip_next:",
                  disabled=ss.train_snapshot == steps[-1], help="The snapshot after.")  # fmt: skip
    return st.select_slider("Snapshot (training step)", steps, key="train_snapshot",
                            help="Scrub through training: the probe's attention and the mechanism at each snapshot.")


def _mechanism_notes(snap: tj.JobSnapshot) -> None:
    if not snap.mechanism:
        if snap.mechanism_error:
            st.warning(f"The mechanism could not be measured on this run: {fmt.literal(snap.mechanism_error)}")
        return
    steps, metrics = zip(*snap.mechanism, strict=True)
    every, until = tj.EARLY_SNAPSHOTS
    st.caption(f"Snapshots every {every} steps up to step {until}, then every {snap.eval_every} (validation "
               f"accuracy only at those). Probe set: {snap.probe_set_text}. Dashed line: the snapshot shown below. "
               "Hover for each operation's values.")  # fmt: skip
    lines = probe.describe_history(steps, metrics)
    st.markdown("**What the curves show** (computed from these snapshots)\n\n" + "\n".join(f"- {t}" for t in lines))


def _probe_answers(snap: tj.JobSnapshot) -> None:
    """The model's answer on the probe and its confidence at every snapshot, and when it became right."""
    history = [(e.step, e.probe_answer) for e in snap.evals if e.probe_answer is not None]
    if not history:
        return
    st.markdown(f"**The answer on the probe {fmt.code(snap.probe_text)} at each snapshot** (the right answer: "
                f"{fmt.code(snap.probe_right)}; confidence: the probability of its whole answer)")  # fmt: skip
    st.dataframe(pd.DataFrame({"step": [s for s, _ in history], "answer": [a.written for _, a in history],
                               "right": [a.correct for _, a in history],
                               "confidence": [a.confidence for _, a in history]}),
                 hide_index=True, height=min(36 + 35 * len(history), 250), key="train_probe_answers",
                 column_config={"confidence": st.column_config.NumberColumn(format="percent")})  # fmt: skip
    st.markdown(tj.probe_answer_text(history, snap.probe_text, snap.probe_right, percent=fmt.percent))


def _weight_changes(snap: tj.JobSnapshot) -> None:
    """After a run: how far each kind of weight moved from its initial value, and each parameter in a table."""
    if not snap.weight_change:
        return
    st.subheader("Which weights moved")
    st.markdown(tj.weight_change_text(snap.weight_change))
    df = pd.DataFrame({"name": [c.name for c in snap.weight_change],
                       "relative": [c.relative for c in snap.weight_change],
                       "start_norm": [c.start_norm for c in snap.weight_change],
                       "change_norm": [c.change_norm for c in snap.weight_change]})  # fmt: skip
    st.altair_chart(weight_change_bars(df, title="How far each kind of weight moved in training"), width="stretch",
                    key="train_weight_change")  # fmt: skip
    st.caption("Each bar: the norm of the change over the whole run, ‖W_end − W_start‖, over the norm of the "
               "initial weights, ‖W_start‖, with all of that kind's parameters (weights and biases) taken together.")
    with st.expander("Each parameter"):
        each = snap.param_change
        st.dataframe(pd.DataFrame({"parameter": [c.name for c in each], "‖W_start‖": [c.start_norm for c in each],
                                   "‖W_end − W_start‖": [c.change_norm for c in each],
                                   "relative": [c.relative if c.start_norm > 0 else None for c in each]}),
                     hide_index=True, key="train_param_change",
                     column_config={"relative": st.column_config.NumberColumn(format="percent")})  # fmt: skip
        st.caption("The relative change is blank for parameters that start at zero (the biases).")


def _shown_answer_text(snap: tj.JobSnapshot, at_step: int) -> str:
    a = snap.evals[[e.step for e in snap.evals].index(at_step)].probe_answer
    if a is None:
        return ""
    verdict = "right" if a.correct else f"wrong: the answer is {fmt.code(snap.probe_right)}"
    return f" At this step the model answers {fmt.code(a.written)} ({verdict}; confidence {fmt.percent(a.confidence)})."


def _shown_mechanism_text(snap: tj.JobSnapshot, at_step: int) -> str:
    m = snap.evals[[e.step for e in snap.evals].index(at_step)].mechanism
    if m is None:
        return ""
    ops = ", ".join(f"{op} {v:.0%}" for op, v in m.per_op.items())
    top = (f"zeroing **{m.top_component}** costs the most: {m.accuracy:.0%} → {m.ablated_accuracy[m.top]:.0%}"
           if m.top_drop > 0 else "zeroing any one head or MLP costs no accuracy")  # fmt: skip
    return f" On the probe set at this step: accuracy {m.accuracy:.0%} ({ops}); {top}."


ss[PLAY_TIMER] = bool(ss.get(PLAYING))


@st.fragment(run_every=PLAY_EVERY_S if ss[PLAY_TIMER] else DYNAMICS_EVERY_S if running else None)
def dynamics() -> None:
    if ss.get(PLAY_TIMER) != bool(ss.get(PLAYING)):  # played or paused in here: the app run sets or drops the timer
        st.rerun(scope="app")
    job = _job()
    snap = job.snapshot() if job is not None else None
    if snap is None or not snap.evals or snap.status == "failed":
        return
    st.subheader("How the model learned")
    steps = [e.step for e in snap.evals]
    if snap.done:
        ss.setdefault("train_snapshot", steps[-1])
        state.keep_valid("train_snapshot", steps, default=steps[-1])  # a step of another run: the last one
        if ss.get(PLAYING):
            _advance(steps)  # before anything that shows the snapshot
        shown = ss.train_snapshot
    else:
        shown = steps[-1]
    if snap.mechanism:
        _draw_mechanism(snap, shown)
    _mechanism_notes(snap)
    _probe_answers(snap)
    if snap.done:
        at_step = _snapshot_controls(snap, steps)
    else:
        ss[PLAYING] = False
        n_layers = snap.evals[0].attention.shape[0]
        state.keep_valid("train_layer", range(n_layers))
        st.selectbox("Layer", range(n_layers), key="train_layer", format_func=lambda i: f"layer {i}", width=110)
        at_step = shown
        st.caption(f"Live: the latest snapshot (step {at_step}), refreshed every {DYNAMICS_EVERY_S:.0f} s. "
                  "Scrub through all of them, or play them, when training ends.")  # fmt: skip
    layer = ss.train_layer
    pattern = snap.evals[steps.index(at_step)].attention[layer]  # [head, q_pos, k_pos]
    tokens = list(snap.probe_tokens)
    # One panel per head, up to four in a row (on a phone the columns stack). A panel's frame's categories are
    # the probe's tokens; its spec also depends on the layer and the head (its title), hence the name.
    per_row = min(len(pattern), 4)
    for start in range(0, len(pattern), per_row):
        for h, col in zip(range(start, min(start + per_row, len(pattern))), st.columns(per_row), strict=False):
            with col:
                live_charts.draw(f"head panel L{layer} H{h}",
                                 lambda _, h=h: attention_charts.head_panel(pattern[h], tokens, layer=layer, head=h),
                                 charts.heads_frame(pattern[h : h + 1], tokens).assign(head=h))  # fmt: skip
    query = snap.probe_tokens.index("=")
    head, key, weight = strongest_attention(pattern, query)
    head0, key0, weight0 = strongest_attention(snap.evals[0].attention[layer], query)
    st.info(
        f"What to notice: on the probe **{snap.probe_text}** at step {at_step}, the strongest attention from `=` "
        f"in layer {layer} is head {head}'s **{weight:.2f}** on `{snap.probe_tokens[key]}` (position {key}); "
        f"before training (step 0) it was head {head0}'s {weight0:.2f} on `{snap.probe_tokens[key0]}` "
        f"(position {key0})." + _shown_answer_text(snap, at_step) + _shown_mechanism_text(snap, at_step)
        + " Scrub or play through the snapshots and compare with the curves above.",
        icon=":material/lightbulb:",
    )
    if snap.done:
        _weight_changes(snap)


live()
dynamics()

# ---------------------------------------------------------------- this session's runs, overlaid
def session_runs() -> None:
    """Every run this session ended, on one pair of axes: validation accuracy and loss against step."""
    runs = ss.get(state.RUNS, [])
    if len(runs) < 2:
        return
    st.subheader("This session's runs")
    names = [r["name"] for r in runs]
    rows = [(step, value, metric, r["name"]) for r in runs
            for metric, values in (("accuracy", r["accuracy"]), ("loss", r["loss"]))
            for step, value in zip(r["step"], values, strict=True) if value is not None]  # fmt: skip
    df = pd.DataFrame(rows, columns=["step", "value", "metric", "split"])
    for metric, log_y in (("accuracy", False), ("loss", True)):
        # Streamlit fits the axes and the legend (one run a line, below) inside the height: room for both
        vega.draw(charts.metric_curve(df, metric, log_y=log_y, title=f"Validation {metric} of each run",
                                      splits=names, legend_title="run", height=360 + 26 * len(names)),
                  width="stretch")  # fmt: skip
    st.markdown(tj.runs_text(runs, name=lambda n: f"**{fmt.literal(n)}**", pct=fmt.percent))
    st.dataframe(pd.DataFrame({"run": names, "status": [r["status"] for r in runs],
                               "steps": [r["steps"] for r in runs],
                               "held-out accuracy": [fmt.percent(r["held_out"]) if r["held_out"] is not None
                                                     else "—" for r in runs]}),  # fmt: skip
                 hide_index=True)


session_runs()

# ---------------------------------------------------------------- save and load
st.subheader("Save or load a model")
job = _job()
left, right = st.columns(2)
with left:
    if job is not None and ss.get(ADDED, {}).get(job.id):
        st.download_button("Download the trained model (.safetensors)", data=_checkpoint_bytes(job),
                           file_name=tj.file_name(job.name),
                           mime="application/octet-stream", key="train_download", on_click="ignore",
                           icon=":material/download:")  # fmt: skip
    else:
        st.caption("When a run ends, its checkpoint can be downloaded here.")
with right:
    st.file_uploader("Load a checkpoint", type=["safetensors"], key="train_upload", on_change=_on_upload,
                     help="A .safetensors checkpoint saved by this app or `python -m model_core train`. "
                          "It is validated before use; nothing in it is ever executed. "
                          f"Models of {tj.model_limits_text()} load.")  # fmt: skip
    if ss.get(UPLOAD_RESULT):
        kind, text = ss[UPLOAD_RESULT]
        (st.success if kind == "success" else st.error)(_upload_message(kind, text))
