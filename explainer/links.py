"""What the user is looking at, in the page's address: every view is a link.

The URL holds the selection (model, example, and each page's own choices that matter) as query parameters,
e.g. `/attention?model=digits-0-99&example=Max+(+47+82+19+)&layer=1&head=2&off=L0H3`. Each run:

1. `take()` (the sidebar, before any widget): if the address is not the one this session last wrote, it came
   from outside (a shared link, a reload, Back or Forward): its parameters are kept for this run as *incoming*.
2. `bind(param, key, default, ...)` (a page, just before drawing the widget with that `key`): an incoming value
   for `param` that is valid becomes the widget's value; one that is not is named in one short message. It also
   registers the widget, so `write` knows what to put in the address.
3. `write()` (the entry script, after the page): the address becomes the current selection. A value equal to
   its default is left out, so links stay short and a page switch rarely changes the address.

Parameters another page binds are ignored without a word: Streamlit keeps the query string when the user
switches pages, so a page sees the previous page's parameters on its first run.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from urllib.parse import urlencode

import streamlit as st

from explainer import format as fmt

INCOMING = "_url_incoming"  # {param: text} of an address this session did not write, for this run only
WRITTEN = "_url_written"  # {param: text}: the address this session last wrote
BOUND = "_url_bound"  # {param: () -> text or None (the default: left out)}: what this run puts in the address
NOTES = "_url_notes"  # [param=value]: incoming values that could not be used
KEEP = ("job",)  # parameters other code owns (state.JOB_PARAM: a training run); kept as they are
MAX_CHARS = 300  # longer values are refused before anything parses them


def _params() -> dict[str, str]:
    return {k: st.query_params[k] for k in st.query_params.keys() if k not in KEEP}


def take() -> None:
    """Start a run: keep the address's parameters as incoming if this session did not write them."""
    ss = st.session_state
    ss[BOUND], ss[NOTES] = {}, []
    params = _params()
    ss[INCOMING] = params if params != ss.get(WRITTEN) else {}


def incoming(param: str) -> str | None:
    """The address's value for `param` in this run, if it came from outside (None otherwise)."""
    return st.session_state.get(INCOMING, {}).get(param)


def refuse(param: str, text: str) -> None:
    """Say (once per run, with the others) that the address's `param=text` could not be used."""
    shown = text if len(text) <= 40 else text[:37] + "..."
    st.session_state.setdefault(NOTES, []).append(f"{param}={shown}")


def register(param: str, value: Callable[[], str | None]) -> None:
    """Put `param` in this run's address: `value()` at the end of the run (None: the default, left out)."""
    st.session_state.setdefault(BOUND, {})[param] = value


# ---------------------------------------------------------------- values as text
def encode(value) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, list | tuple):
        return ",".join(encode(v) for v in value)
    return str(value)


def decode(text: str, like):
    """`text` as a value of the type of `like` (bool, int, float, str, or a list of one of those); ValueError if
    it is not one (non-finite floats and over-long text included)."""
    if len(text) > MAX_CHARS:
        raise ValueError("too long")
    if isinstance(like, bool):
        if text not in ("0", "1"):
            raise ValueError("not 0 or 1")
        return text == "1"
    if isinstance(like, int):
        return int(text)
    if isinstance(like, float):
        value = float(text)
        if not math.isfinite(value):
            raise ValueError("not finite")
        return value
    if isinstance(like, list | tuple):
        item = like[0] if like else ""
        return [decode(part, item) for part in text.split(",")] if text else []
    return text


def _is_option(value, options: Sequence) -> bool:
    # by type and value: "1" is not 1, and True is not 1
    return any(type(value) is type(option) and value == option for option in options)


def bind(param: str, key: str, default, *, options: Sequence | None = None, low: float | None = None,
         high: float | None = None, check: Callable[[object], bool] | None = None) -> None:  # fmt: skip
    """Tie the widget with session key `key` to the address's `param`. Call it just before the widget.

    `default` is the widget's default (its type is the value's type). A value from the address is used only if
    it is one of `options` (every item, for a list), within [`low`, `high`], and passes `check`; otherwise it is
    named in the run's message and the widget keeps its value."""
    ss = st.session_state
    always = param in ALWAYS
    register(param, lambda: encode(ss[key]) if key in ss and (always or ss[key] != default) else None)
    text = incoming(param)
    if text is None:
        return
    try:
        value = decode(text, default)
    except ValueError:
        refuse(param, text)
        return
    items = value if isinstance(value, list) else [value]
    ok = (options is None or all(_is_option(v, options) for v in items)) \
        and (low is None or all(v >= low for v in items)) and (high is None or all(v <= high for v in items)) \
        and (check is None or check(value))  # fmt: skip
    if ok:
        ss[key] = value
    else:
        refuse(param, text)


def bind_choice(param: str, key: str, options: Sequence, default=None) -> None:
    """`bind` for a choice whose labels depend on the example (e.g. "slot 2: 47"): the address holds its number
    among `options`, from 1 (`default`, the first option if None: left out). Call it after `state.keep_valid`."""
    ss = st.session_state
    options = list(options)
    first = options[0] if default is None else default

    def value() -> str | None:
        chosen = ss.get(key, first)
        return str(options.index(chosen) + 1) if chosen in options and chosen != first else None

    register(param, value)
    text = incoming(param)
    if text is None:
        return
    if text.isdigit() and 1 <= int(text) <= len(options):
        ss[key] = options[int(text) - 1]
    else:
        refuse(param, text)


def bind_heads_off(param: str, key: str, n_layers: int, n_heads: int) -> None:
    """Tie the heads' on/off toggles (session keys `key.format(layer=, head=)`, True = on) to `param`, a list
    like "L0H3,L1H2" of the heads switched off (every head on: left out). Call it before the toggles."""
    ss = st.session_state
    keys = {(lay, h): key.format(layer=lay, head=h) for lay in range(n_layers) for h in range(n_heads)}
    names = {f"L{lay}H{h}": lh for lh, _ in keys.items() for lay, h in [lh]}
    register(param, lambda: ",".join(n for n, lh in names.items() if not ss.get(keys[lh], True)) or None)
    text = incoming(param)
    if text is None:
        return
    wanted = text.split(",") if text else []
    if len(text) > MAX_CHARS or not all(name in names for name in wanted):
        refuse(param, text)
        return
    for name, lh in names.items():
        ss[keys[lh]] = name not in wanted


# ---------------------------------------------------------------- writing the address
def selection() -> dict[str, str]:
    """This run's selection as query parameters: each bound widget's value, defaults left out."""
    out = {}
    for param, value in st.session_state.get(BOUND, {}).items():
        text = value()
        if text is not None:
            out[param] = text
    return out


ALWAYS = ("model", "example")  # in every link, so a link does not depend on which model is the default


def write() -> None:
    """End a run: the address shows the selection (one history entry when it changed), and the message about
    parameters that could not be used, if any."""
    ss = st.session_state
    params = selection()
    if params != _params():
        kept = {k: st.query_params[k] for k in KEEP if k in st.query_params}
        st.query_params.from_dict({**params, **kept})
    notes = ss.pop(NOTES, [])
    if notes:
        kept = "keep their values" if ss.get(WRITTEN) is not None else "are at their defaults"
        st.toast(f"Part of this link could not be used, so those settings {kept}: "
                 + ", ".join(fmt.literal(n) for n in notes) + ".", icon=":material/link_off:")  # fmt: skip
    ss[WRITTEN], ss[INCOMING] = params, {}


def link() -> str:
    """The address of this view: the page's URL (if the browser reported it) and the selection."""
    base = st.context.url or ""
    query = urlencode(selection())
    return f"{base}?{query}" if query else base


def share_popover(session_model: str | None = None) -> None:
    """The "Copy link" control: this view's address, with a copy button (the code block's), and what it reproduces.
    `session_model`: the open model's name when it exists only in this session (a link cannot carry it)."""
    with st.popover("Copy link", icon=":material/link:", width="stretch", key="links_share"):
        st.code(link(), language=None, wrap_lines=True)
        if session_model is None:
            st.caption("The button at the right of the address copies it. The link opens this page with the same "
                       "model, example and settings, in any browser.")
        else:
            st.caption(f"The button at the right of the address copies it. **{fmt.literal(session_model)}** exists "
                       "only in this session: someone opening the link gets the first shipped model instead, and a "
                       "message says so. To share the model, download its checkpoint from the Train page.")
