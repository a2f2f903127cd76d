"""A minimal Streamlit 1.67 client: one browser session over the websocket, without a browser.

    async with StreamlitSession("http://127.0.0.1:8501") as s:
        first = await s.connect()                  # the app's first run (its default page)
        run = await s.switch_page("attention")     # a page by its URL path
        run = await s.set_widget("example_text", "Max ( 3 8 1 )")
        run.elapsed_s, run.exceptions, run.texts   # BackMsg sent -> script_finished; what the run drew

What it does, as the frontend does (read from streamlit/web/server/starlette/starlette_websocket.py and
streamlit/runtime/app_session.py):
  - HTTP first: GET / and /_stcore/health with one cookie jar per session. The health route sets the XSRF cookie
    (`_streamlit_xsrf`) when `server.enableXsrfProtection` is on; behind deploy/serve.py, nginx's first response
    sets the affinity cookie `stlb`, and every later request of the session (the websocket too) must carry it.
  - the websocket `/_stcore/stream` with `Sec-WebSocket-Protocol: streamlit, <xsrf cookie value>` (the server
    takes entry 0 as the subprotocol, entry 1 as the XSRF token it compares with the cookie, entry 2 as a session
    id to reconnect to, unused here), an Origin equal to the URL (same-origin), and the cookies.
  - every action is a BackMsg `rerun_script` (a ClientState: page_script_hash, widget_states, fragment_id);
    the server answers with ForwardMsgs: `new_session` (a run started; its app pages come in `navigation`),
    `delta`s (elements), `auto_rerun` (a fragment with run_every: the *frontend* keeps the timer), then
    `script_finished`. A run that calls st.rerun() finishes FINISHED_EARLY_FOR_RERUN and another run follows;
    `RunResult` covers the whole chain up to the first other status.

Widgets are found by their user key: an element id is "$$ID-<hash>-<user key>". Like the frontend, a session
keeps the value of every mounted widget (the one the server set, else its default, else the one the client set)
and sends them all with every rerun: a page switch drops the server-side state of every widget the message leaves
out (the sidebar's model too, which resets the example), and an unchanged value fires no callback. The cache
handshake is skipped: with no `cached_message_hashes`, the server sends every message in full.
"""

from __future__ import annotations

import asyncio
import http.cookiejar
import re
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass, field

from streamlit.proto.BackMsg_pb2 import BackMsg
from streamlit.proto.ForwardMsg_pb2 import ForwardMsg
from streamlit.proto.WidgetStates_pb2 import WidgetState
from websockets.asyncio.client import connect as ws_connect

XSRF_COOKIE = "_streamlit_xsrf"
FINAL = {
    ForwardMsg.FINISHED_SUCCESSFULLY: "finished",
    ForwardMsg.FINISHED_WITH_COMPILE_ERROR: "compile error",
    ForwardMsg.FINISHED_FRAGMENT_RUN_SUCCESSFULLY: "fragment finished",
}
TEXT_ELEMENTS = ("markdown", "heading", "alert", "text", "caption", "code")  # their `body` is text a user reads


class ProtocolError(RuntimeError):
    """The server closed the socket, or an expected message did not come in time."""


@dataclass
class Widget:
    id: str
    kind: str  # the Element oneof: "text_input", "number_input", "button", "selectbox", ...
    proto: object  # that element's proto (label, options, data_type, value ...)


@dataclass
class RunResult:
    """One action: from the BackMsg sent to the final script_finished (through any st.rerun chain)."""

    elapsed_s: float
    status: str  # "finished", "fragment finished", "compile error"
    page: str  # the URL path of the page that ran
    reruns: int = 0  # runs that ended FINISHED_EARLY_FOR_RERUN on the way
    exceptions: list[str] = field(default_factory=list)  # exception elements' "Type: message"
    errors: list[str] = field(default_factory=list)  # page_not_found, compile errors
    texts: list[str] = field(default_factory=list)  # markdown/heading/alert... bodies and "label: value" of metrics
    alerts: list[str] = field(default_factory=list)  # st.info/success/warning/error bodies (also in `texts`)
    progress: list[str] = field(default_factory=list)  # st.progress texts
    elements: int = 0

    @property
    def ok(self) -> bool:
        return not self.exceptions and not self.errors


class StreamlitSession:
    """One simulated browser tab. Not thread-safe; one action at a time (each awaits its script_finished)."""

    def __init__(self, url: str, *, timeout: float = 120.0):
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.jar = http.cookiejar.CookieJar()
        self.ws = None
        self.session_id = ""
        self.pages: dict[str, str] = {}  # URL path ("overview" and "" for the default page) -> page_script_hash
        self.page_names: dict[str, str] = {}  # page_script_hash -> URL path
        self.page = ""  # URL path of the page the last run showed
        self.page_hash = ""
        self.widgets: dict[str, Widget] = {}  # user key -> the latest element drawn with that key
        self.values: dict[str, WidgetState] = {}  # widget id -> the value the frontend holds (every mounted widget)
        self.auto_reruns: dict[str, float] = {}  # fragment id -> interval (s) the server asked for
        self.script_running = False  # the server's last session_status_changed
        self.bytes_in = 0
        self._reader: asyncio.Task | None = None
        self._inbox: asyncio.Queue = asyncio.Queue()

    # ------------------------------------------------------------ connection
    def _http_get(self, path: str) -> None:
        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar))
        with opener.open(f"{self.url}{path}", timeout=30) as r:
            r.read()

    def cookie(self, name: str) -> str | None:
        return next((c.value for c in self.jar if c.name == name), None)

    async def open(self) -> None:
        """The HTTP requests a page load makes (for cookies), then the websocket."""
        for path in ("/", "/_stcore/health", "/_stcore/host-config"):
            await asyncio.to_thread(self._http_get, path)
        parts = urllib.parse.urlsplit(self.url)
        ws_url = urllib.parse.urlunsplit(("wss" if parts.scheme == "https" else "ws", parts.netloc,
                                          parts.path + "/_stcore/stream", "", ""))  # fmt: skip
        xsrf = self.cookie(XSRF_COOKIE)
        cookies = "; ".join(f"{c.name}={c.value}" for c in self.jar)
        self.ws = await ws_connect(
            ws_url, origin=f"{parts.scheme}://{parts.netloc}", subprotocols=["streamlit", *([xsrf] if xsrf else [])],
            additional_headers={"Cookie": cookies} if cookies else None, max_size=None, open_timeout=30,
            compression=None,  # as with a browser: Streamlit's server.enableWebsocketCompression is off by default
        )  # fmt: skip
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        try:
            async for data in self.ws:
                self.bytes_in += len(data)
                msg = ForwardMsg()
                msg.ParseFromString(data)
                self._inbox.put_nowait(msg)
        except Exception as err:  # noqa: BLE001 - reported to whoever waits
            self._inbox.put_nowait(err)
        self._inbox.put_nowait(ProtocolError("the server closed the websocket"))

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()
        if self._reader is not None:
            await asyncio.gather(self._reader, return_exceptions=True)

    async def __aenter__(self) -> StreamlitSession:
        await self.open()
        return self

    async def __aexit__(self, *_) -> None:
        await self.close()

    # ------------------------------------------------------------ actions
    async def connect(self, page: str = "") -> RunResult:
        """The first run, as a page load of `/<page>` asks for it (the page by name: no hashes known yet)."""
        return await self.rerun(page_name=page)

    async def switch_page(self, page: str) -> RunResult:
        """Open a page by its URL path ("attention"), as a click on its sidebar link does."""
        if page not in self.pages:
            raise KeyError(f"no page {page!r}; the app's pages: {sorted(self.pages)}")
        return await self.rerun(page_script_hash=self.pages[page])

    async def set_widget(self, key: str, value) -> RunResult:
        return await self.rerun(widget_states=[self.widget_state(key, value)])

    async def click(self, key: str) -> RunResult:
        return await self.rerun(widget_states=[self.widget_state(key, True)])

    async def run_fragment(self, fragment_id: str) -> RunResult:
        """The rerun the frontend's timer sends for a fragment with run_every."""
        return await self.rerun(fragment_id=fragment_id, is_auto_rerun=True)

    def widget_state(self, key: str, value) -> WidgetState:
        """The WidgetState the frontend would send for the widget with user key `key` set to `value`."""
        w = self.widgets.get(key)
        if w is None:
            raise KeyError(f"no widget with key {key!r} on {self.page or 'the default page'}; "
                           f"keys seen: {sorted(self.widgets)}")  # fmt: skip
        if w.kind in ("button", "download_button"):
            return WidgetState(id=w.id, trigger_value=True)
        state = _state(w.id, w.kind, value)
        if state is None:
            raise NotImplementedError(f"setting a {w.kind} is not implemented")
        return state

    async def rerun(self, *, page_script_hash: str | None = None, page_name: str = "",
                    widget_states: list[WidgetState] = (), fragment_id: str = "",
                    is_auto_rerun: bool = False) -> RunResult:  # fmt: skip
        """Send one rerun_script BackMsg and read until its script_finished; returns what the run did."""
        back = BackMsg()
        cs = back.rerun_script
        cs.page_script_hash = self.page_hash if page_script_hash is None else page_script_hash
        cs.page_name = page_name
        cs.fragment_id = fragment_id
        cs.is_auto_rerun = is_auto_rerun
        # Every mounted widget's value, as the frontend sends it: the server drops the state of any widget a page
        # switch does not mention (the sidebar's too), and a widget whose value did not change fires no callback.
        changes = {w.id: w for w in widget_states}
        self.values.update({i: w for i, w in changes.items() if not w.HasField("trigger_value")})
        cs.widget_states.widgets.extend({**self.values, **changes}.values())
        cs.context_info.timezone = "UTC"
        cs.context_info.locale = "en-US"
        cs.context_info.url = f"{self.url}/{self.page}"
        t0 = time.perf_counter()
        await self.ws.send(back.SerializeToString())
        return await self._until_finished(t0)

    async def _until_finished(self, t0: float) -> RunResult:
        result = RunResult(0.0, "", self.page)
        drawn: set[str] = set()  # widget ids this run drew
        deadline = t0 + self.timeout
        while True:
            try:
                msg = await asyncio.wait_for(self._inbox.get(), max(0.0, deadline - time.perf_counter()))
            except TimeoutError:
                raise ProtocolError(f"no script_finished within {self.timeout:.0f} s") from None
            if isinstance(msg, Exception):
                raise ProtocolError(str(msg)) from msg
            kind = msg.WhichOneof("type")
            if kind == "new_session":
                self._on_new_session(msg)
                result.page = self.page
            elif kind == "navigation":  # st.navigation's pages, and the page this run shows
                self._on_pages(msg.navigation.app_pages, msg.navigation.page_script_hash)
                result.page = self.page
            elif kind == "delta":
                self._on_delta(msg, result, drawn)
            elif kind == "auto_rerun":
                self.auto_reruns[msg.auto_rerun.fragment_id] = msg.auto_rerun.interval
            elif kind == "session_status_changed":
                self.script_running = msg.session_status_changed.script_is_running
            elif kind == "stop_auto_rerun":
                for fid in msg.stop_auto_rerun.fragment_ids:
                    self.auto_reruns.pop(fid, None)
            elif kind == "page_not_found":
                result.errors.append(f"page not found: {msg.page_not_found.page_name!r}")
            elif kind == "session_event" and msg.session_event.HasField("script_compilation_exception"):
                e = msg.session_event.script_compilation_exception
                result.errors.append(f"compile error: {e.type}: {e.message}")
            elif kind == "script_finished":
                if msg.script_finished == ForwardMsg.FINISHED_EARLY_FOR_RERUN:
                    result.reruns += 1
                    continue
                if msg.script_finished == ForwardMsg.FINISHED_SUCCESSFULLY:  # unmounted widgets leave the frontend
                    self.values = {i: v for i, v in self.values.items() if i in drawn}
                result.status = FINAL.get(msg.script_finished, str(msg.script_finished))
                if msg.script_finished == ForwardMsg.FINISHED_WITH_COMPILE_ERROR and not result.errors:
                    result.errors.append("compile error")
                result.elapsed_s = time.perf_counter() - t0
                return result
            # page_info_changed, page_config_changed, logo,
            # ref_hash (never sent: no cached hashes are claimed), heartbeat_ack: nothing to do

    def _on_new_session(self, msg: ForwardMsg) -> None:
        ns = msg.new_session
        if ns.initialize.session_id:
            self.session_id = ns.initialize.session_id
        if not msg.metadata.run.fragment_ids:  # a full run: the frontend drops every fragment timer
            self.auto_reruns.clear()
        # (its app_pages are not the navigation's: the pages come in the `navigation` message that follows)
        if ns.page_script_hash in self.page_names:
            self.page_hash, self.page = ns.page_script_hash, self.page_names[ns.page_script_hash]

    def _on_pages(self, app_pages, page_hash: str) -> None:
        for p in app_pages:
            path = p.url_pathname or re.sub(r"\W+", "_", p.page_name.lower())  # the default page's is "": "overview"
            self.pages[path] = p.page_script_hash
            self.page_names[p.page_script_hash] = path
            if p.is_default:
                self.pages[""] = p.page_script_hash
        if page_hash and page_hash in self.page_names:
            self.page_hash, self.page = page_hash, self.page_names[page_hash]

    def _on_delta(self, msg: ForwardMsg, result: RunResult, drawn: set[str]) -> None:
        if not msg.delta.HasField("new_element"):
            return
        el = msg.delta.new_element
        kind = el.WhichOneof("type")
        result.elements += 1
        if kind is None:
            return
        body = getattr(el, kind)
        if kind == "exception":
            result.exceptions.append(f"{body.type}: {body.message}".strip(": "))
        elif kind in TEXT_ELEMENTS and hasattr(body, "body"):
            result.texts.append(body.body)
            if kind == "alert":
                result.alerts.append(body.body)
        elif kind == "metric":
            result.texts.append(f"{body.label}: {body.body}")
        elif kind == "progress":
            result.progress.append(body.text)
        wid = getattr(body, "id", "")
        if isinstance(wid, str) and wid.startswith("$$ID-"):
            key = wid.split("-", 2)[2] if wid.count("-") >= 2 else ""
            if key:
                self.widgets[key] = Widget(wid, kind, body)
            drawn.add(wid)
            if getattr(body, "set_value", False) or wid not in self.values:  # the server set it, or it is new
                shown = _shown_value(wid, kind, body)
                if shown is not None:
                    self.values[wid] = shown


def _state(wid: str, kind: str, value) -> WidgetState | None:
    """A widget's value as the frontend sends it (the serde's value_type of each widget)."""
    ws = WidgetState(id=wid)
    if kind in ("text_input", "text_area", "selectbox", "radio"):
        ws.string_value = str(value)  # a selectbox or radio sends its option as shown
    elif kind == "number_input":
        ws.double_value = float(value)
    elif kind == "checkbox":
        ws.bool_value = bool(value)
    elif kind == "multiselect" or (kind == "slider" and isinstance(value, list) and value
                                   and isinstance(value[0], str)):  # fmt: skip
        ws.string_array_value.data.extend(str(v) for v in value)  # a select_slider's options too
    elif kind == "slider":
        ws.double_array_value.data.extend(float(v) for v in (value if isinstance(value, list | tuple) else [value]))
    else:
        return None
    return ws


def _shown_value(wid: str, kind: str, el) -> WidgetState | None:
    """The value a freshly drawn widget holds in the frontend: the one the server set, else its default."""
    set_value = getattr(el, "set_value", False)
    if kind in ("text_input", "text_area", "number_input"):
        field_name = "value" if set_value and el.HasField("value") else "default"
        return _state(wid, kind, getattr(el, field_name)) if el.HasField(field_name) else None
    if kind in ("selectbox", "radio"):
        if set_value and el.HasField("raw_value"):
            return _state(wid, kind, el.raw_value)
        return _state(wid, kind, el.options[el.default]) if el.HasField("default") and el.options else None
    if kind == "checkbox":
        return _state(wid, kind, el.value if set_value else el.default)
    if kind == "multiselect":
        return _state(wid, kind, list(el.raw_values) if set_value else [el.options[i] for i in el.default])
    if kind == "slider":
        if el.options:  # a select_slider
            return _state(wid, kind, list(el.raw_value) if set_value else [el.options[int(i)] for i in el.default])
        return _state(wid, kind, list(el.value) if set_value else list(el.default))
    return None  # buttons (triggers), file uploaders, charts' selections: nothing until the user acts
