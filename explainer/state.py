"""The app's shared state: which model, which example, which layer and head.

The entry script calls `sidebar()` on every run, so its widgets (and their values)
live in the entry script and survive page switches. Pages call `current()` to get
the model and the cached run of the current example. Shipped models are loaded
once for all sessions (read-only); models a session trains or uploads live in
that session's `st.session_state` only.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import streamlit as st
from threadpoolctl import threadpool_limits

from explainer import format as fmt
from model_core import ParseError, TaskModel, load_model, shipped_names
from model_core.analysis import ExampleRun, ablate_heads, run_example
from model_core.interp.input_space import SpaceRun, space_run

# One BLAS thread for the whole server: several sessions (and their training threads) share
# two cores, and OpenBLAS's spinning worker threads made a step many times slower under that
# load, while one thread costs little on an idle machine. Process-wide, set once at import.
threadpool_limits(limits=1, user_api="blas")

DEFAULT_EXAMPLES = {9: "Max ( 7 2 9 )", 99: "Max ( 47 82 19 )"}
SESSION_MODELS = "session_models"  # {display name: (model key, TaskModel)}
TRAIN_JOB = "train_job"  # this session's TrainingJob (the Train page starts it; at most one)
TRAIN_ADDED = "train_added"  # {job id: the name its model has in the sidebar, or None}


@dataclass(frozen=True)
class Current:
    model_name: str
    model_key: str  # identifies the model's weights in caches
    model: TaskModel
    text: str  # the current valid example, canonical text
    run: ExampleRun
    layer: int
    head: int


@st.cache_resource(show_spinner=False)
def shipped_model(name: str) -> TaskModel:
    """A shipped model, shared by every session: its arrays are made read-only."""
    model = load_model(name)
    for array in model.transformer.params.values():
        array.setflags(write=False)
    return model


@st.cache_resource(show_spinner=False, max_entries=256)
def cached_run(model_key: str, text: str, _model: TaskModel) -> ExampleRun:
    """One example's full run; keyed by the model's identity and the example's text."""
    return run_example(_model, text)


@st.cache_resource(show_spinner=False, max_entries=8)
def cached_space_run(model_key: str, _model: TaskModel) -> SpaceRun:
    """The whole-input-space pass of a model (every 0-9 input, or a stated sample), once per model."""
    return space_run(_model)


@st.cache_resource(show_spinner=False, max_entries=256)
def cached_ablation(model_key: str, text: str, heads: tuple[tuple[int, int], ...], _model: TaskModel,
                    _tokens: np.ndarray):  # fmt: skip
    return ablate_heads(_model, _tokens, list(heads))


def add_session_model(name: str, model: TaskModel) -> str:
    """Make a trained or uploaded model selectable in this session; returns its display name."""
    models = st.session_state.setdefault(SESSION_MODELS, {})
    display = name
    n = 2
    while display in models or display in shipped_names():
        display, n = f"{name} ({n})", n + 1
    models[display] = (f"session:{uuid.uuid4().hex}", model)
    return display


def adopt_finished_job(job) -> bool:
    """Once a training job has ended, put its model in the sidebar's list (once). True if this call did it.

    The sidebar calls this on every run, so a model that finishes while the user is on
    another page joins the list there too.
    """
    added = st.session_state.setdefault(TRAIN_ADDED, {})
    if not job.done or job.id in added:
        return False
    keep = job.model is not None and job.status in ("finished", "reached_target", "stopped")
    added[job.id] = add_session_model(job.name, job.model) if keep else None
    return keep


def _models() -> dict[str, tuple[str, TaskModel | None]]:
    """Every selectable model: shipped ones (loaded lazily) and this session's."""
    out: dict[str, tuple[str, TaskModel | None]] = {name: (f"shipped:{name}", None) for name in shipped_names()}
    out.update(st.session_state.get(SESSION_MODELS, {}))
    return out


def _resolve(name: str) -> tuple[str, TaskModel]:
    key, model = _models()[name]
    return key, (model if model is not None else shipped_model(name))


def _default_example(model: TaskModel) -> str:
    task = model.task
    text = DEFAULT_EXAMPLES.get(task.max_value)
    try:
        return model.parse(text).text if text else _random_text(model, np.random.default_rng(0))
    except ParseError:
        return _random_text(model, np.random.default_rng(0))


def _random_text(model: TaskModel, rng: np.random.Generator) -> str:
    task = model.task
    op = task.operations[int(rng.integers(len(task.operations)))]
    values = rng.integers(task.min_value, task.max_value + 1, task.n_args)
    return f"{op} ( {' '.join(str(int(v)) for v in values)} )"


# ---------------------------------------------------------------- widgets whose options change
def keep_valid(key: str, options: Sequence, default=None) -> None:
    """Call before drawing a widget whose options depend on the model, the example or a run.

    Its stored value may no longer be an option: a layer the new model lacks, an answer step the new
    example does not have, a snapshot of another run. Worse, when a selectbox's labels change, the
    browser later sends back a label that matches no option, and Streamlit stores that label as a raw
    string. Either way the value quietly falls back to `default` (the first option if None), so the page
    never reads a stale or mistyped value.
    """
    ss = st.session_state
    if key in ss and not _is_option(ss[key], options):
        ss[key] = options[0] if default is None else default


def keep_valid_many(key: str, options: Sequence, default: Sequence = ()) -> None:
    """`keep_valid` for a multiselect: drop stored values that are no longer options (all gone: `default`)."""
    ss = st.session_state
    if key not in ss:
        return
    stored = ss[key]
    kept = [v for v in stored if _is_option(v, options)] if isinstance(stored, list | tuple) else []
    if not isinstance(stored, list) or kept != stored:
        ss[key] = kept or [v for v in default if _is_option(v, options)]


def _is_option(value, options: Sequence) -> bool:
    # by type and value: "1" is not 1, and True is not 1
    return any(type(value) is type(option) and value == option for option in options)


# ---------------------------------------------------------------- widget callbacks
def _set_example(text: str) -> None:
    """Make `text` (already valid) the example, and mirror it into every example widget."""
    st.session_state.example = text
    st.session_state.example_text = text
    st.session_state.example_error = None
    op, rest = text.split(" ( ")
    st.session_state.example_op = op
    for j, v in enumerate(rest.rstrip(" )").split()):
        st.session_state[f"example_v{j}"] = int(v)


def _on_text() -> None:
    _, model = _resolve(st.session_state.model_name)
    try:
        _set_example(model.parse(st.session_state.example_text).text)
    except ParseError as err:
        st.session_state.example_error = str(err)  # the last valid example stays on screen


def _on_widgets() -> None:
    _, model = _resolve(st.session_state.model_name)
    values = " ".join(str(st.session_state[f"example_v{j}"]) for j in range(model.task.n_args))
    _set_example(model.parse(f"{st.session_state.example_op} ( {values} )").text)


def _on_random() -> None:
    _, model = _resolve(st.session_state.model_name)
    rng = np.random.default_rng()
    _set_example(model.parse(_random_text(model, rng)).text)


def _on_model() -> None:
    """Keep the example if the new model can read it; otherwise switch to its default."""
    _, model = _resolve(st.session_state.model_name)
    try:
        _set_example(model.parse(st.session_state.get("example", "")).text)
    except ParseError:
        _set_example(_default_example(model))
        st.session_state.example_note = "The example was changed: the previous one is outside this model's task."


# ---------------------------------------------------------------- opening a view from a click
PENDING = "_pending_view"  # what a click asked for, applied by the next run's sidebar before its widgets
PAGE_FILES = Path(__file__).resolve().parent.parent / "pages"


def open_view(page: str | None = None, *, example: str | None = None,
              heads_off: Sequence[tuple[int, int]] | None = None, layer: int | None = None,
              head: int | None = None) -> None:  # fmt: skip
    """Show `example` (valid text for the current model), with `heads_off` switched off on the Attention
    page (the others on) and the sidebar's layer and head, on `page` (a file in pages/, e.g. "attention.py";
    None: this page). Call it from a page after a click: it ends this run and starts the next one."""
    ss = st.session_state
    # st.switch_page clears every widget's state (the sidebar's too): carry what the sidebar shows
    ss[PENDING] = {"model_name": ss.get("model_name"), "example": example or ss.get("example"),
                   "heads_off": None if heads_off is None else list(heads_off),
                   "layer": ss.get("layer") if layer is None else layer,
                   "head": ss.get("head") if head is None else head}  # fmt: skip
    if page is None:
        st.rerun()
    st.switch_page(PAGE_FILES / page)


def _apply_pending(model: TaskModel) -> None:
    """Apply `open_view`'s request before the widgets it changes are drawn."""
    ss = st.session_state
    want = ss.pop(PENDING, None)
    if not want:
        return
    if want["example"] is not None:
        try:
            _set_example(model.parse(want["example"]).text)
        except ParseError as err:
            ss.example_note = f"Could not open {want['example']!r}: {err}"
    cfg = model.transformer.cfg
    if want["heads_off"] is not None:
        off = {tuple(h) for h in want["heads_off"]}
        for lay in range(cfg.n_layers):
            for h in range(cfg.n_heads):
                ss[f"attn_on_{lay}_{h}"] = (lay, h) not in off
    if want["layer"] is not None and 0 <= want["layer"] < cfg.n_layers:
        ss.layer = want["layer"]
    if want["head"] is not None and 0 <= want["head"] < cfg.n_heads:
        ss.head = want["head"]


# ---------------------------------------------------------------- the sidebar
def sidebar() -> Current:
    """Draw the sidebar (model, example, layer, head) and return the current selection."""
    ss = st.session_state
    if ss.get(TRAIN_JOB) is not None:
        adopt_finished_job(ss[TRAIN_JOB])
    models = _models()
    if ss.get(PENDING) and ss[PENDING].get("model_name") in models:
        ss.model_name = ss[PENDING]["model_name"]
    if ss.get("model_name") not in models:
        ss.model_name = next(iter(models))
        ss.pop("example", None)
    with st.sidebar:
        st.selectbox("Model", list(models), key="model_name", on_change=_on_model,
                     help="The shipped models, and any model trained or uploaded in this session.")  # fmt: skip
        key, model = _resolve(ss.model_name)
        if "example" not in ss:
            _set_example(_default_example(model))
        _apply_pending(model)
        task = model.task
        st.text_input("Example", key="example_text", on_change=_on_text,
                      help=f"An operation and {task.n_args} values in {task.min_value}-{task.max_value}, "
                           "e.g. Max ( 7 2 9 ) or min(4, 8, 1).")  # fmt: skip
        if ss.get("example_error"):
            st.error(fmt.literal(ss.example_error), icon=":material/error:")  # it may quote what was typed
            st.caption(f"Still showing the last valid example: **{ss.example}**")
        if ss.get("example_note"):
            st.info(fmt.literal(ss.pop("example_note")))
        st.selectbox("Operation", task.operations, key="example_op", on_change=_on_widgets)
        cols = st.columns(task.n_args)
        for j, col in enumerate(cols):
            col.number_input(f"value {j + 1}", min_value=task.min_value, max_value=task.max_value, step=1,
                             key=f"example_v{j}", on_change=_on_widgets)  # fmt: skip
        st.button("Random example", key="random_example", on_click=_on_random, icon=":material/casino:")
        cfg = model.transformer.cfg
        keep_valid("layer", range(cfg.n_layers))
        keep_valid("head", range(cfg.n_heads))
        layer = st.selectbox("Layer", range(cfg.n_layers), key="layer", help="Used by the attention pages.")
        head = st.selectbox("Head", range(cfg.n_heads), key="head")
    current = Current(ss.model_name, key, model, ss.example, cached_run(key, ss.example, model), layer, head)
    ss["_current"] = current
    return current


def current() -> Current:
    """The selection the sidebar made in this run."""
    return st.session_state["_current"]


# ---------------------------------------------------------------- ablations read at the answer positions
@st.cache_resource(show_spinner=False, max_entries=256)
def cached_answer_ablation(model_key: str, text: str, ablations: tuple[tuple[str, ...], ...], _model: TaskModel,
                           _run: ExampleRun):  # fmt: skip
    """`model_core.interp.ablate` of one example, read at each of its answer positions (one pass for all)."""
    from model_core.analysis.output import answer_positions
    from model_core.interp import ablate

    positions = answer_positions(len(_run.tokens), _run.answer_pos, _model.causal)
    tokens = np.tile(_run.tokens, (len(positions), 1))  # one row per answer position, each read at its own
    return ablate(_model, tokens, positions, [list(a) for a in ablations])


def answer_ablation(cur: Current, ablations: Sequence[Sequence[str]]):
    """The current example with each ablation (a list of component names, e.g. ["L0H3", "L1H2"]) applied: an
    `AblationResult` whose n axis is the answer positions (`=`, and for a causal model each answer token it
    wrote, on the same tokens as the clean run). No ablations: the clean measures only."""
    return cached_answer_ablation(cur.model_key, cur.text, tuple(tuple(a) for a in ablations), cur.model, cur.run)
