"""The app's shared state: which model, which example, which layer and head.

The entry script calls `sidebar()` on every run, so its widgets (and their values)
live in the entry script and survive page switches. Pages call `current()` to get
the model and the cached run of the current example. Shipped models are loaded
once for all sessions (read-only); models a session trains or uploads live in
that session's `st.session_state` only.
"""

from __future__ import annotations

import functools
import inspect
import uuid
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import streamlit as st
from threadpoolctl import threadpool_limits

from explainer import format as fmt
from explainer import links
from model_core import ParseError, TaskModel, load_model, shipped_names
from model_core.analysis import ExampleRun, run_example
from model_core.interp.input_space import SpaceRun, hard_cases, space_run
from model_core.task import count_text, nested, task_text
from model_core.training.watchers import WATCHERS

# One BLAS thread for the whole server: several sessions (and their training threads) share
# two cores, and OpenBLAS's spinning worker threads made a step many times slower under that
# load, while one thread costs little on an idle machine. Process-wide, set once at import.
threadpool_limits(limits=1, user_api="blas")

DEFAULT_EXAMPLES = {9: "Max ( 7 2 9 )", 99: "Max ( 47 82 19 )"}
SESSION_MODELS = "session_models"  # {display name: (model key, TaskModel)}
TRAIN_JOB = "train_job"  # this session's TrainingJob (the Train page starts it; at most one)
TRAIN_ADDED = "train_added"  # {job id: the name its model has in the sidebar, or None}
SESSION_CACHES = "_session_caches"  # {cached function: LRU} of this session's models' results (`model_cache`)
MODEL_NOTE = "model_note"  # a note for the sidebar: a session model was removed to make room

# Memory one session can hold (issue 16, item 6), measured by benchmarks/session_cache_sizes.py. A user model has at
# most 2M float32 parameters (8 MB); one cached run of the largest the limits allow is about 16 MB (8 MB of it the
# parameters' gradients), a shipped model's about 1 MB. Budget: under 64 MB of runs per session; a run is made
# again in about 60 ms, so a small LRU costs little.
MAX_SESSION_MODELS = 5  # trained + uploaded; one more drops the oldest one not selected
SESSION_RUNS = 3  # cached runs of session models, per session: 3 x 16 MB
SESSION_ANSWER_ABLATIONS = 32  # a few kB each
SESSION_SPACE_RUNS = 1  # at most 75 MB: 5,000 expressions of the largest model (input_space samples larger spaces)


@dataclass(frozen=True)
class Current:
    model_name: str
    model_key: str  # identifies the model's weights in caches
    model: TaskModel
    text: str  # the current valid example, canonical text
    run: ExampleRun
    layer: int
    head: int
    compare_text: str | None = None  # the second example, when comparing (valid for this model)
    compare_run: ExampleRun | None = None


@st.cache_resource(show_spinner=False)
def shipped_model(name: str) -> TaskModel:
    """A shipped model, shared by every session: its arrays are made read-only."""
    model = load_model(name)
    for array in model.transformer.params.values():
        array.setflags(write=False)
    return model


class LRU:
    """At most `size` results: `get` makes one the newest, and adding one past `size` drops the oldest."""

    def __init__(self, size: int):
        self.size, self.entries = size, OrderedDict()

    def __len__(self) -> int:
        return len(self.entries)

    def get(self, key, make: Callable[[], object]):
        """The result stored under `key`, made by `make()` (and stored) if there is none."""
        if key in self.entries:
            self.entries.move_to_end(key)
            return self.entries[key]
        value = self.entries[key] = make()
        while len(self.entries) > self.size:
            self.entries.popitem(last=False)
        return value

    def drop_model(self, model_key: str) -> None:
        """Forget every result of one model (keys start with its model key)."""
        for key in [k for k in self.entries if k[0] == model_key]:
            del self.entries[key]


def model_cache(max_entries: int, session_entries: int):
    """`st.cache_resource` for a function of (model_key, ...): a shipped model's results are shared by every
    session (at most `max_entries`); a session model's ("session:..." keys) go to an LRU of `session_entries` in
    that session's state instead. So one user's models never fill, or evict from, the process-wide cache, what
    they cache is bounded per session, and it goes when the session (or the model, `drop_session_model`) does.
    Keyed like `st.cache_resource`: by the arguments whose names do not start with "_"."""

    def decorate(fn):
        shared = st.cache_resource(show_spinner=False, max_entries=max_entries)(fn)
        signature = inspect.signature(fn)
        name = f"{fn.__module__}.{fn.__qualname__}"

        @functools.wraps(fn)
        def cached(model_key: str, *args, **kwargs):
            if not model_key.startswith("session:"):
                return shared(model_key, *args, **kwargs)
            bound = signature.bind(model_key, *args, **kwargs).arguments
            key = tuple(value for arg, value in bound.items() if not arg.startswith("_"))  # model_key first
            lru = st.session_state.setdefault(SESSION_CACHES, {}).setdefault(name, LRU(session_entries))
            return lru.get(key, lambda: fn(model_key, *args, **kwargs))

        cached.clear = shared.clear
        return cached

    return decorate


@model_cache(max_entries=256, session_entries=SESSION_RUNS)
def cached_run(model_key: str, text: str, _model: TaskModel) -> ExampleRun:
    """One example's full run; keyed by the model's identity and the example's text."""
    return run_example(_model, text)


@model_cache(max_entries=8, session_entries=SESSION_SPACE_RUNS)
def cached_space_run(model_key: str, _model: TaskModel) -> SpaceRun:
    """The whole-input-space pass of a model (every 0-9 input, or a stated sample), once per model."""
    return space_run(_model)


def add_session_model(name: str, model: TaskModel) -> tuple[str, str | None]:
    """Make a trained or uploaded model selectable in this session: (its display name, the name of the model
    removed to make room, or None).

    A session keeps at most MAX_SESSION_MODELS. One more drops the oldest one that is not selected, rather than
    refusing: a learner who trains six models in a row is not blocked, and needs no "remove" control first."""
    models = st.session_state.setdefault(SESSION_MODELS, {})
    display = name
    n = 2
    while display in models or display in shipped_names():  # before any drop: a new name is never an old one's
        display, n = f"{name} ({n})", n + 1
    dropped = None
    if len(models) >= MAX_SESSION_MODELS:
        dropped = next(m for m in models if m != st.session_state.get("model_name"))  # dicts keep insertion order
        drop_session_model(dropped)
    models[display] = (f"session:{uuid.uuid4().hex}", model)
    return display, dropped


def drop_session_model(name: str) -> None:
    """Remove a session model from the list, and its results from this session's caches."""
    key, _ = st.session_state[SESSION_MODELS].pop(name)
    for lru in st.session_state.get(SESSION_CACHES, {}).values():
        lru.drop_model(key)


def room_note(dropped: str) -> str:
    """Why `dropped` left the model list (plain text: the name may come from an uploaded file)."""
    return (f"This session keeps at most {MAX_SESSION_MODELS} trained or uploaded models, so the oldest one "
            f"not selected, {dropped}, was removed from the model list.")  # fmt: skip


RUNS = "train_runs"  # this session's ended training runs, oldest first (`remember_run`)
MAX_RUNS_KEPT = 8  # a few kB each: the validation curve only


def remember_run(job, name: str) -> None:
    """Keep an ended run's validation curve and result for the Train page's overlay of this session's runs."""
    snap = job.snapshot()
    vals = snap.validations
    runs = st.session_state.setdefault(RUNS, [])
    runs.append({"name": name, "status": snap.status, "steps": snap.steps_done,
                 "step": [e.step for e in vals], "accuracy": [e.accuracy for e in vals],
                 "loss": [e.loss for e in vals], "held_out": snap.held_out_accuracy})  # fmt: skip
    del runs[:-MAX_RUNS_KEPT]


def adopt_finished_job(job) -> bool:
    """Once a training job has ended, put its model in the sidebar's list (once). True if this call did it.

    The sidebar calls this on every run, so a model that finishes while the user is on
    another page joins the list there too.
    """
    added = st.session_state.setdefault(TRAIN_ADDED, {})
    if not job.done or job.id in added:
        return False
    keep = job.model is not None and job.status in ("finished", "reached_target", "stopped")
    added[job.id], dropped = add_session_model(job.name, job.model) if keep else (None, None)
    remember_run(job, added[job.id] or job.name)
    if dropped:
        st.session_state[MODEL_NOTE] = room_note(dropped)  # the sidebar shows it
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
    """A random example: each operation, and (for lists of several lengths) each length, equally likely; for a
    nested task each depth too, drawn as training draws it (model_core.task.nested.draw)."""
    task = model.task
    op = task.operations[int(rng.integers(len(task.operations)))]
    n = int(rng.integers(task.min_args, task.n_args + 1))  # n_args itself for a task of one length
    if task.nested:
        depth = int(rng.integers(1, task.max_depth + 1))
        drawn = nested.draw(task, np.array([task.operations.index(op)]), np.array([n]), np.array([depth]), rng)
        return drawn.expression(0).text
    values = rng.integers(task.min_value, task.max_value + 1, n)
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
VALUES_PER_ROW = 5  # value widgets side by side in the sidebar; more would cut their numbers short
SLOTS = "_example_slots"  # every slot's last value (a plain key: the widgets of slots not shown lose theirs)


def _set_example(text: str) -> None:
    """Make `text` (already valid) the example, and mirror it into every example widget."""
    ss = st.session_state
    ss.example = ss.example_text = ss[PHONE_EXAMPLE] = text
    ss.example_error = None
    if text.count("(") > 1:  # a nested expression: typed only (no value widgets for it)
        return
    op, rest = text.split(" ( ")
    ss.example_op = op
    values = [int(v) for v in rest.rstrip(" )").split()]
    ss.example_n = len(values)  # drawn for lists of several lengths only
    ss[SLOTS] = values + ss.get(SLOTS, [])[len(values):]  # a longer list later starts from these values
    for j, v in enumerate(values):
        ss[f"example_v{j}"] = v


def value_rows(n: int) -> list[range]:
    """The slots of `n` value widgets in rows of at most VALUES_PER_ROW, as even as can be (7: 4 + 3)."""
    rows = -(-n // VALUES_PER_ROW)
    width = -(-n // rows)
    return [range(start, min(start + width, n)) for start in range(0, n, width)]


def example_help(task) -> str:
    """The example box's help: what the task takes, with two examples it reads (Max ( 7 2 9 ) or min(4, 8, 1)
    for three values in 0-9)."""
    long, short = max(task.min_args, min(task.n_args, 4)), task.min_args

    def vals(pool: tuple[int, ...], k: int) -> list[str]:
        return [str(task.min_value + v % task.n_values) for v in pool[:k]]

    ops = task.operations  # the task's own (a model trained on some operations only reads those)
    first, second = "Max" if "Max" in ops else ops[0], ("Min" if "Min" in ops else ops[-1]).lower()
    text = (f"An operation and {count_text(task)} in {task.min_value}-{task.max_value}, e.g. "
            f"{first} ( {' '.join(vals((7, 2, 9, 1, 8, 3, 6, 4, 5, 0), long))} ) or "
            f"{second}({', '.join(vals((4, 8, 1, 6, 3, 9, 2, 7, 0, 5), short))}).")  # fmt: skip
    if task.nested:
        text += f" A value may be an expression of values itself, e.g. {nested_example(task)}."
    return text


def nested_example(task) -> str:
    """An expression with an expression inside, in the task's own operations, counts and range."""
    ops = task.operations
    outer, inner = ("Max" if "Max" in ops else ops[0]), ("First" if "First" in ops else ops[-1])
    k = max(task.min_args, min(task.n_args, 2))
    vals = [str(task.min_value + v % task.n_values) for v in (2, 8, 7, 5, 1, 3, 9, 4, 6, 0)]
    args = [f"{inner} ( {' '.join(vals[:k])} )"] + vals[k : k + max(task.min_args, 2) - 1]
    return f"{outer} ( {' '.join(args)} )"


def _on_text(key: str = "example_text") -> None:
    """An example typed in the sidebar's box (or the phone's, `key`): the new example, or why it is not one."""
    _, model = _resolve(st.session_state.model_name)
    typed = st.session_state[key]
    try:
        _set_example(model.parse(typed).text)
    except ParseError as err:
        st.session_state.example_error = str(err) + _readers_note(typed)
        # the last valid example stays on screen


PHONE_EXAMPLE = "example_text_phone"  # the example's box above each page, shown on narrow screens only
# Below 768 px Streamlit folds the sidebar away; there the box above the page is the way to edit the example.
# Formulas a little smaller there too, so that most fit the width (a wider one still scrolls).
_PHONE_ONLY_CSS = ("<style>.st-key-phone_example{display:none}"
                   "@media (max-width: 767px){.st-key-phone_example{display:block}"
                   ".katex-display{font-size:0.85em}}"
                   # and on every screen: a metric's value, a page link's or a button's label wraps at its spaces
                   # rather than end in "…" where it is wider than its column (≈100% (1 − 1.1e-7), an expression)
                   "[data-testid='stMetricValue'] *,[data-testid^='stPageLink'] *,.stButton button *"
                   "{white-space:normal !important;overflow:visible !important;text-overflow:clip !important}"
                   "</style>")  # fmt: skip


def phone_example() -> None:
    """The example's text box above the page, for screens too narrow to show the sidebar (hidden elsewhere)."""
    ss = st.session_state
    st.html(_PHONE_ONLY_CSS)
    with st.container(key="phone_example"):
        if not ss.get("example_error"):
            ss[PHONE_EXAMPLE] = ss.example  # follow edits made in the sidebar
        st.text_input("Example", key=PHONE_EXAMPLE, on_change=_on_text, args=(PHONE_EXAMPLE,),
                      help="The same example as in the sidebar (open it with the » at the top left for the rest).")
        if ss.get("example_error"):
            st.error(fmt.literal(ss.example_error), icon=":material/error:")


def _readers_note(text: str) -> str:
    """When another selectable model reads `text` (e.g. values above 9 typed for digits-0-9), say which."""
    readers = []
    for name, _ in _models().items():
        if name == st.session_state.model_name:
            continue
        try:
            _resolve(name)[1].parse(text)
        except ParseError:
            continue
        readers.append(name)
    if not readers:
        return ""
    return f" {' and '.join(readers)} can read it: choose {'it' if len(readers) == 1 else 'one'} under Model."


def _on_widgets() -> None:
    """The operation, the number of values or a value changed: the example they make."""
    ss = st.session_state
    _, model = _resolve(ss.model_name)
    task = model.task
    n = int(ss.get("example_n", task.n_args)) if task.variable_length else task.n_args
    kept = ss.get(SLOTS, [])
    # a slot just added by "Number of values" has no widget yet: its last value, else the smallest value
    values = [ss.get(f"example_v{j}", kept[j] if j < len(kept) else task.min_value) for j in range(n)]
    _set_example(model.parse(f"{ss.example_op} ( {' '.join(str(int(v)) for v in values)} )").text)


def _on_random() -> None:
    _, model = _resolve(st.session_state.model_name)
    rng = np.random.default_rng()
    _set_example(model.parse(_random_text(model, rng)).text)


HARD = "hard_example"  # (model key, index of the last hard case shown)


def hard_examples(key: str, model: TaskModel) -> tuple[list[str], list[tuple[str, float]], int]:
    """(the model's wrong answers, its least confident right ones with their margins, expressions looked at)
    over its input space (or its stated sample): the Heads page's pass, cached per model."""
    run = cached_space_run(key, model)
    wrong, unsure = hard_cases(model, run=run)
    return wrong, unsure, len(run.exprs)


def _on_hard() -> None:
    """The next hard case: the mistakes first, then the least confident right answers; round again at the end."""
    ss = st.session_state
    key, model = _resolve(ss.model_name)
    wrong, unsure, n = hard_examples(key, model)
    cases = wrong + [text for text, _ in unsure]
    last = ss[HARD][1] if ss.get(HARD) and ss[HARD][0] == key else -1
    i = (last + 1) % len(cases)
    ss[HARD] = (key, i)
    _set_example(model.parse(cases[i]).text)
    where = "every input" if n == model.task.space_size else f"a sample of {n:,} inputs"
    if i < len(wrong):
        ss.example_note = (f"Hard example {i + 1} of {len(cases)}: one of the {len(wrong)} answers it gets wrong "
                           f"on {where}.")  # fmt: skip
    else:
        margin = unsure[i - len(wrong)][1]
        ss.example_note = (f"Hard example {i + 1} of {len(cases)}: "
                           + ("it makes no mistake on " + where + ", and " if not wrong else "")
                           + f"this is one of its least confident right answers (the true first token leads the "
                           f"next by {margin:.2f} logits).")  # fmt: skip


def _model_card(model: TaskModel) -> None:
    """The open model's held-out accuracy per operation, as its checkpoint recorded it."""
    cfg, task = model.transformer.cfg, model.task
    st.markdown(f"**{fmt.literal(model.name or 'this model')}**: {'causal' if cfg.causal else 'bidirectional'}, "
                f"{cfg.n_layers} block{'s' if cfg.n_layers != 1 else ''} × {cfg.n_heads} head"
                f"{'s' if cfg.n_heads != 1 else ''}, d_model {cfg.d_model}; {task_text(task)}.")  # fmt: skip
    per_op, n = model.metrics.get("heldout_per_op"), model.metrics.get("heldout_n")
    if not per_op:
        st.markdown("Its checkpoint records no held-out accuracy.")  # not a caption: those are the example's
    else:
        st.markdown(f"Held-out accuracy on {n:,} expressions it never trained on: "
                    + ", ".join(f"{op} {fmt.percent(acc)}" for op, acc in per_op.items()) + ".")  # fmt: skip
    per_length = model.metrics.get("heldout_per_length")  # {"2": accuracy, ...}: lists of several lengths
    if per_length:
        st.markdown("By number of values: "
                    + ", ".join(f"{k} values {fmt.percent(acc)}" for k, acc in per_length.items()) + ".")  # fmt: skip
    per_depth = model.metrics.get("heldout_per_depth")  # {"1": accuracy, "2": accuracy}: a nested task
    if per_depth:
        said = {"1": "numbers only", "2": "an expression inside"}
        st.markdown("By depth: " + ", ".join(f"{said.get(k, f'depth {k}')} {fmt.percent(acc)}"
                                             for k, acc in per_depth.items()) + ".")  # fmt: skip
    st.markdown(":small[**Hard example** (below the values) shows where it fails or is least sure; Heads across "
                "all inputs lists every mistake.]")  # fmt: skip


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


# ---------------------------------------------------------------- the training job in the URL
JOB_PARAM = "job"  # ?job=<id>: the training run this session watches (a reload or a shared link finds it again)


def _session_id() -> str:
    return st.session_state.setdefault("_watcher_id", uuid.uuid4().hex)


def _leave(handle: tuple[str, str]) -> None:
    WATCHERS.leave(*handle)


@st.cache_resource(scope="session", on_release=_leave, show_spinner=False)
def _watch(job_id: str, session: str, _job) -> tuple[str, str]:
    """This session watches the job until the session ends (a closed tab or a reload); then the job runs on
    for watchers.GRACE_S, long enough for the reload to find it."""
    WATCHERS.watch(_job, session)
    return job_id, session


def watch_job(job) -> None:
    """Make `job` this session's training run (the Train page calls it when it starts one)."""
    st.session_state[TRAIN_JOB] = job
    _watch(job.id, _session_id(), job)
    st.query_params[JOB_PARAM] = job.id


def follow_training_job() -> None:
    """Keep the session's run in the URL on every page, and take up the run a URL names (a reload or a link)."""
    ss = st.session_state
    job, wanted = ss.get(TRAIN_JOB), st.query_params.get(JOB_PARAM)
    if wanted is not None and (job is None or job.id != wanted):
        found = WATCHERS.find(wanted)
        if found is None:
            st.toast("The training run in this page's link is no longer on this server: it ended, or nobody "
                     f"watched it for {WATCHERS.grace_s:.0f} s, or it runs on another of the server's processes.",
                     icon=":material/warning:")  # fmt: skip
        elif job is not None and not job.done:
            st.toast("This session is training another model; the run in the link was not opened.",
                     icon=":material/warning:")  # fmt: skip
        else:
            st.toast(f"Back to the training run {fmt.literal(found.name)}: it "
                     + ("is still running." if not found.done else "has ended (its result is on the Train page)."),
                     icon=":material/model_training:")  # fmt: skip
            job = found
            ss["train_playing"] = False
    if job is None:
        st.query_params.pop(JOB_PARAM, None)
        return
    watch_job(job)


# ---------------------------------------------------------------- a second example to compare with
COMPARE_ON = "compare_on"  # the sidebar's toggle
COMPARE_KINDS = {"other operation": "Same values, other operation", "answer value changed": "Change the answer's value"}


def _counterfactual(model: TaskModel, kind: str) -> str | None:
    """The current example changed in one way (`interp.counterfactuals`), or None if there is no such input."""
    from model_core.interp import counterfactuals

    found = counterfactuals(model, st.session_state.example).get(kind)
    return found.text if found is not None else None


def _set_compare(text: str) -> None:
    st.session_state.compare = st.session_state.compare_text = text
    st.session_state.compare_error = None


def _on_compare_on() -> None:
    """Switched on: start from the example under another operation (or any other input) if none is kept."""
    ss = st.session_state
    if ss.get(COMPARE_ON) and not ss.get("compare"):
        _, model = _resolve(ss.model_name)
        _set_compare(_counterfactual(model, "other operation") or _random_text(model, np.random.default_rng()))


def _on_compare_text() -> None:
    _, model = _resolve(st.session_state.model_name)
    typed = st.session_state.compare_text
    try:
        _set_compare(model.parse(typed).text)
    except ParseError as err:
        st.session_state.compare_error = str(err)


def _on_compare_kind(kind: str) -> None:
    _, model = _resolve(st.session_state.model_name)
    text = _counterfactual(model, kind)
    if text is not None:
        _set_compare(text)


def _compare_controls(model: TaskModel) -> None:
    """The toggle, the second example and its one-click changes; the second example in every link."""
    ss = st.session_state
    text = _example_in_link("compare", model)
    if text is not None:
        _set_compare(text)
        ss[COMPARE_ON] = True
    links.register("compare", lambda: ss.compare if ss.get(COMPARE_ON) and ss.get("compare") else None)
    if ss.get("compare"):
        try:  # another model (or a link's) may not read the kept second example
            ss.compare = model.parse(ss.compare).text
        except ParseError:
            ss.compare = None
            if ss.get(COMPARE_ON):
                _on_compare_on()
    st.toggle("Compare with a second example", key=COMPARE_ON, on_change=_on_compare_on,
              help="Every stage page then shows the two runs side by side or as a difference.")  # fmt: skip
    if not ss.get(COMPARE_ON):
        return
    if not ss.get("compare_error"):
        ss.compare_text = ss.compare
    st.text_input("Second example", key="compare_text", on_change=_on_compare_text)
    if ss.get("compare_error"):
        st.error(fmt.literal(ss.compare_error), icon=":material/error:")
        st.caption(f"Still comparing with **{fmt.literal(ss.compare)}**")
    from model_core.interp import counterfactuals

    found = counterfactuals(model, ss.example)  # once for both buttons
    with st.container(horizontal=True):
        for kind, label in COMPARE_KINDS.items():
            st.button(label, key=f"compare_{kind.replace(' ', '_')}", on_click=_on_compare_kind, args=(kind,),
                      disabled=kind not in found)  # fmt: skip


# ---------------------------------------------------------------- the sidebar
def _example_in_link(param: str, model: TaskModel) -> str | None:
    """The canonical text of the address's `param` if it came from outside and `model` reads it (one it cannot
    read is named in the link's message); None otherwise."""
    text = links.incoming(param)
    if text is None:
        return None
    try:
        if len(text) > links.MAX_CHARS:
            raise ParseError("too long")
        return model.parse(text).text
    except ParseError:
        links.refuse(param, text)
        return None


def _example_from_link(model: TaskModel) -> None:
    """The address's example, if it came from outside and the model reads it; and the example in every link."""
    text = _example_in_link("example", model)
    if text is not None:
        _set_example(text)
    links.register("example", lambda: st.session_state.example)


SELECTOR_HELP = {"layer": "The block this page shows.", "head": "The head this page shows."}


def sidebar(selectors: Sequence[str] = ("layer", "head")) -> Current:
    """Draw the sidebar (model, example, and the layer and head when the page uses them: `selectors`) and
    return the current selection. A selector the page does not use is not drawn; its value is kept for the
    pages that do (a widget not drawn in a run loses its state, so it is mirrored in `_kept_<name>`)."""
    ss = st.session_state
    follow_training_job()
    if ss.get(TRAIN_JOB) is not None:
        adopt_finished_job(ss[TRAIN_JOB])
    models = _models()
    if ss.get(PENDING) and ss[PENDING].get("model_name") in models:
        ss.model_name = ss[PENDING]["model_name"]
    if ss.get("model_name") not in models:
        ss.model_name = next(iter(models))
        ss.pop("example", None)
    links.take()  # a shared link, a reload, Back or Forward: the address's selection applies to this run
    before = ss.model_name
    links.bind("model", "model_name", next(iter(models)), options=list(models))
    if ss.model_name != before and "example" in ss:
        try:  # keep the example if the link's model reads it (the link's own example, if any, comes next)
            _set_example(_resolve(ss.model_name)[1].parse(ss.example).text)
        except ParseError:
            ss.pop("example")
    with st.sidebar:
        st.selectbox("Model", list(models), key="model_name", on_change=_on_model,
                     help="The shipped models, and any model trained or uploaded in this session.")  # fmt: skip
        key, model = _resolve(ss.model_name)
        with st.popover("About this model", icon=":material/info:"):
            _model_card(model)
        if "example" not in ss:
            _set_example(_default_example(model))
        _apply_pending(model)
        _example_from_link(model)
        task = model.task
        st.text_input("Example", key="example_text", on_change=_on_text, help=example_help(task))
        if ss.get("example_error"):
            st.error(fmt.literal(ss.example_error), icon=":material/error:")  # it may quote what was typed
            st.caption(f"Still showing the last valid example: **{ss.example}**")
        if ss.get("example_note"):
            st.info(fmt.literal(ss.pop("example_note")))
        if ss.get(MODEL_NOTE):
            st.info(fmt.literal(ss.pop(MODEL_NOTE)))
        _value_widgets(task)
        with st.container(horizontal=True):
            st.button("Random example", key="random_example", on_click=_on_random, icon=":material/casino:")
            st.button("Hard example", key="hard_example_button", on_click=_on_hard, icon=":material/psychology_alt:",
                      help="The model's mistakes, then its least confident right answers, one per click.")  # fmt: skip
        _compare_controls(model)
        cfg = model.transformer.cfg
        chosen = {}
        for name, label, n in (("layer", "Layer", cfg.n_layers), ("head", "Head", cfg.n_heads)):
            if name not in ss:
                ss[name] = ss.get(f"_kept_{name}", 0)
            keep_valid(name, range(n))
            if name in selectors:
                links.bind(name, name, 0, options=range(n))
                chosen[name] = st.selectbox(label, range(n), key=name, help=SELECTOR_HELP[name])
            else:
                chosen[name] = ss[name]
                ss[name] = chosen[name]  # written back: a value the widget left behind goes when the run ends
            ss[f"_kept_{name}"] = chosen[name]
        layer, head = chosen["layer"], chosen["head"]
    other = ss.compare if ss.get(COMPARE_ON) else None
    current = Current(ss.model_name, key, model, ss.example, cached_run(key, ss.example, model), layer, head,
                      other, cached_run(key, other, model) if other else None)  # fmt: skip
    ss["_current"] = current
    return current


def current() -> Current:
    """The selection the sidebar made in this run."""
    return st.session_state["_current"]


def _value_widgets(task) -> None:
    """The operation and one number box per value (and, for lists of several lengths, how many values)."""
    ss = st.session_state
    if task.nested:  # an argument may be an expression: the box above says it best
        st.caption("This model reads expressions inside expressions: type one in the box above, e.g. "
                   f"**{nested_example(task)}**.")  # fmt: skip
        return
    if not task.variable_length:
        st.selectbox("Operation", task.operations, key="example_op", on_change=_on_widgets)
        for j, col in enumerate(st.columns(task.n_args)):
            col.number_input(f"value {j + 1}", min_value=task.min_value, max_value=task.max_value, step=1,
                             key=f"example_v{j}", on_change=_on_widgets)  # fmt: skip
        return
    # Rows of fixed-width boxes in horizontal containers, not st.columns: below 640 px columns stack one box a
    # line, though the sidebar (an overlay there) is as wide as on a desktop; and "v10" fits a narrow box where
    # "value 10" broke over two lines.
    values = ss.example.split(" ( ")[1].rstrip(" )").split()
    if ss.get("example_n") != len(values):  # the count's widget was not drawn (another model's run): from the example
        ss.example_n = len(values)
        for j, v in enumerate(values):
            ss[f"example_v{j}"] = int(v)
    with st.container(horizontal=True, gap="xsmall"):
        st.selectbox("Operation", task.operations, key="example_op", on_change=_on_widgets, width=OP_WIDTH)
        st.number_input("Number of values", min_value=task.min_args, max_value=task.n_args, step=1,
                        key="example_n", on_change=_on_widgets, width=COUNT_WIDTH)  # fmt: skip
    for row in value_rows(int(ss.example_n)):
        with st.container(horizontal=True, gap="xsmall"):
            for j in row:
                st.number_input(f"v{j + 1}", min_value=task.min_value, max_value=task.max_value, step=1,
                                key=f"example_v{j}", on_change=_on_widgets, width=VALUE_WIDTH)  # fmt: skip


# px, for the sidebar's content width of about 240 px (Streamlit's default sidebar): the operation and the count
# side by side; five value boxes and their 8 px gaps in a row (a box this narrow hides its - and + buttons).
OP_WIDTH, COUNT_WIDTH = 118, 114
VALUE_WIDTH = 40


# ---------------------------------------------------------------- ablations read at the answer positions
@model_cache(max_entries=256, session_entries=SESSION_ANSWER_ABLATIONS)
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
