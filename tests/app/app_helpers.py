"""Helpers for the AppTest tests of the explainer's pages."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pyarrow as pa
from markdown_it import MarkdownIt
from streamlit.testing.v1 import AppTest

APP = str(Path(__file__).resolve().parents[2] / "explainer" / "app.py")


def open_app(page: str | None = None, query_params: dict[str, str] | None = None) -> AppTest:
    """The app after its first run, optionally switched to `page`, opened with the URL's `query_params`.

    `page` is a path relative to the entry script, e.g. "../pages/attention.py".
    """
    at = AppTest.from_file(APP, default_timeout=60)
    for key, value in (query_params or {}).items():
        at.query_params[key] = value
    at.run()
    if page is not None:
        at.switch_page(page).run()
    assert not at.exception, at.exception
    return at


def set_example(at: AppTest, text: str) -> AppTest:
    at.text_input(key="example_text").input(text).run()
    return at


def charts(at: AppTest) -> list[tuple[dict, list[pd.DataFrame]]]:
    """Every Altair chart on the page: (Vega-Lite spec, its datasets as DataFrames)."""
    out = []
    for el in at.get("vega_lite_chart"):
        spec = json.loads(el.proto.spec)
        frames = [pa.ipc.open_stream(io.BytesIO(d.data.data)).read_all().to_pandas() for d in el.proto.datasets]
        out.append((spec, frames))
    return out


def titles_and_subtitles(at: AppTest) -> list[tuple[str, str]]:
    """(title, subtitle) of every chart and sub-chart on the page that has a title."""
    out = []

    def join(x) -> str:
        return x if isinstance(x, str) else " ".join(x)

    def walk(spec):
        title = spec.get("title")
        if title:
            text, sub = (title.get("text", ""), title.get("subtitle", "")) if isinstance(title, dict) else (title, "")
            out.append((join(text), join(sub)))
        for key in ("hconcat", "vconcat", "concat", "layer"):
            for part in spec.get(key, []):
                walk(part)

    for spec, _ in charts(at):
        walk(spec)
    return out


def chart_titles(at: AppTest) -> list[str]:
    """The titles of the page's charts (concatenated charts contribute their sub-titles)."""
    return [text for text, _ in titles_and_subtitles(at) if text]


# ---------------------------------------------------------------- what Markdown shows
# CommonMark with GFM's strikethrough and tables, as Streamlit's renderer has them (it adds GFM autolinks, math,
# emoji and directives in the browser; tests/app/test_markdown_escaping.py checks those on the source).
MARKDOWN = MarkdownIt("commonmark").enable(["strikethrough", "table"])


@dataclass
class Rendered:
    """A Markdown source rendered to HTML: its tags (in order), its visible text and the text of each <code>."""

    html: str
    tags: list[str] = field(default_factory=list)
    text: str = ""  # every text node, character references decoded
    prose: str = ""  # the text outside <code>
    code: list[str] = field(default_factory=list)


class _Collect(HTMLParser):
    def __init__(self, out: Rendered):
        super().__init__(convert_charrefs=True)
        self.out, self.in_code = out, 0

    def handle_starttag(self, tag, attrs):
        self.out.tags.append(tag)
        if tag == "code":
            self.in_code += 1
            self.out.code.append("")

    def handle_endtag(self, tag):
        if tag == "code":
            self.in_code -= 1

    def handle_data(self, data):
        self.out.text += data
        if self.in_code:
            self.out.code[-1] += data
        else:
            self.out.prose += data


def render_markdown(source: str) -> Rendered:
    out = Rendered(MARKDOWN.render(source))
    _Collect(out).feed(out.html)
    return out


def shown_text(source: str) -> str:
    """What a reader sees of a Markdown source (an element's `.value`): its text, less invisible word joiners."""
    return render_markdown(source).text.replace("\u2060", "").strip()


IMPERFECT = "digits-0-99 (imperfect)"  # the sidebar's name for tests/fixtures' model with real mistakes


def select_imperfect_99(at: AppTest) -> AppTest:
    """Add the digits-0-99 model with real mistakes (tests/fixtures; the shipped one makes none) to the session's
    models, as an upload would, and open it."""
    from tests.fixtures import IMPERFECT_99

    return select_session_model(at, IMPERFECT, "session:imperfect-0-99", IMPERFECT_99)


def select_session_model(at: AppTest, label: str, key: str, path) -> AppTest:
    """Add the checkpoint at `path` to the session's models under `label`, as an upload would, and open it."""
    from explainer import state
    from model_core import load_model

    models = dict(at.session_state[state.SESSION_MODELS]) if state.SESSION_MODELS in at.session_state else {}
    models[label] = (key, load_model(path))
    at.session_state[state.SESSION_MODELS] = models
    at.run()
    at.selectbox(key="model_name").select(label).run()
    assert not at.exception, at.exception
    return at
