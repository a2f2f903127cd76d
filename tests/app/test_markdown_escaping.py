"""Text that users control is shown literally wherever Streamlit renders Markdown (issue 16, item 7).

Streamlit renders Markdown in the browser (its markdown, alerts, captions, widget labels and help, radio,
segmented-control and select-slider options, metric labels and values, progress text): an example typed in the
sidebar that a parse error echoes, a counterfactual typed on "How it answers", a model's name from an uploaded
checkpoint's metadata (or its file name), a checkpoint error quoting its metadata, a token of an uploaded
vocabulary. Each must show as typed, never as an image (which every viewer's browser would fetch), a link,
emphasis, code, math, HTML, an emoji or a colour.

`explainer.format.literal` and `code` are checked on any text (hypothesis) with markdown-it (CommonMark, like
Streamlit's renderer), plus, on the Markdown source, what Streamlit adds and markdown-it lacks: GFM autolink
literals, `$` math, `:emoji:` shortcodes and `:color[...]` / `:material/...:` directives. Then every entry point is
driven through AppTest and the Markdown of what the pages show is checked the same way.
"""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import safetensors.numpy
from app_helpers import open_app, render_markdown, set_example, shown_text
from hypothesis import example, given, settings
from hypothesis import strategies as st
from markdown_it import MarkdownIt

from explainer import format as fmt
from model_core import ModelConfig, ParseError, load_model
from model_core.checkpoint import META_KEY, save_checkpoint
from model_core.model import Transformer

WJ = fmt.WORD_JOINER
# Streamlit 1.67's renderer (streamlit/static/static/js/StreamlitMarkdown.*.js) turns these into links in the text
# after escapes are decoded (mdast-util-gfm-autolink-literal); JavaScript's \w is ASCII.
GFM_URL = re.compile(r"(https?://|www(?=\.))[-.\w]+", re.IGNORECASE | re.ASCII)
GFM_EMAIL = re.compile(r"[-.\w+]+@[-\w]+(?:\.[-\w]+)+", re.ASCII)
# ... and loads its emoji plugin when the source holds a shortcode; `:material/` becomes an icon
EMOJI_SOURCE = re.compile(r":(?!material/|streamlit:)[\w+-][\w+-]*:")
# markdown-it without `text_join`: a backslash escape stays a token of its own (`text_special`), so what is left in
# `text` tokens is what Markdown reads as syntax: `$` (math) or a `:` that starts a directive there is unescaped.
RAW = MarkdownIt("commonmark").enable(["strikethrough", "table"]).disable("text_join")
ALLOWED = {"p", "strong", "em", "code", "br"}  # the pages' own inline Markdown around user text

HOSTILE = [
    "Max ( 1 2 3 )![](//127.1:8739/e)",  # the example: an image the browser would fetch
    "![x](http://example.com/pixel.png)",
    "**bold** _it_ ~~strike~~ [link](javascript:alert(1)) <b>tag</b> &amp;",
    "`code` ``two`` $x^2$ $$y$$ :smile: :red[red] :material/error: \\(",
    "Max ( 1 2 3 ) http://example.com/a www.example.com a@example.com <http://example.com/b>",
]


def unescaped(source: str) -> str:
    """The characters of `source` that Markdown reads as they are: its text tokens, less escapes and code."""
    out = []
    for block in RAW.parse(source):
        for child in block.children or []:
            if child.type == "text":
                out.append(child.content)
    return "".join(out)


def assert_literal_markdown(source: str, *texts: str, allowed: set[str] = ALLOWED) -> None:
    """`source` renders with no image, link, block or markup beyond `allowed`, shows each of `texts` as it is,
    and holds nothing that Streamlit's renderer would make into a link, math, an emoji or a directive."""
    r = render_markdown(source)
    assert set(r.tags) <= allowed, (source, r.html)
    for text in texts:
        assert " ".join(text.split()) in " ".join(r.text.replace(WJ, "").split()), (text, r.text)
    assert not GFM_URL.search(r.prose) and not GFM_EMAIL.search(r.prose), r.prose
    assert not EMOJI_SOURCE.search(source) and ":material/" not in source, source
    raw = unescaped(source)
    assert "$" not in raw and not re.search(r":[\w-]", raw), raw


def one_line(text: str) -> str:
    """What `literal` and `code` show of `text`: line endings as spaces, control characters but tab as U+FFFD."""
    text = re.sub(r"\r\n|\r|\n", " ", text)
    return re.sub(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]", "\ufffd", text)


# ================================================================ the functions
MARKDOWNISH = st.sampled_from([
    "![x](http://e.co/p.png)", "[l](javascript:alert(1))", "*", "**", "_", "`", "``", "```", "$", "$$", ":smile:",
    ":red[", ":material/error:", "[", "]", "(", ")", "<b>", "</b>", "<http://a.b>", "&amp;", "&#32;", "\\", "\n",
    "\r\n", "\r", "    ", "\t", " ", "# ", "- ", "+ ", "1. ", "1) ", "> ", "|", "---", "===", "~~", "www.", "http://",
    "https://", "a@b.co", "@", ":", ".", "\x00", "\x1c", "\x85", "\u2028", "\xa0", "\ufeff", WJ, "e", "7",
])  # fmt: skip
TEXT = st.lists(MARKDOWNISH | st.text(max_size=6), max_size=14).map("".join)


@settings(max_examples=400, deadline=None)
@given(TEXT)
@example("Max ( 1 2 3 )![](//127.1:8739/e)")
@example("    indented")
@example("  ")
@example("")
def test_literal_renders_as_the_text_itself_in_one_paragraph(text):
    source = fmt.literal(text)
    r = render_markdown(source)
    shown = one_line(text)
    if not shown:
        assert r.html == ""
        return
    assert r.tags == ["p"], (source, r.html)
    assert r.text.replace(WJ, "") == shown.replace(WJ, "") + "\n"
    assert "\n" not in source and "\r" not in source
    assert_literal_markdown(source, allowed={"p"})


@settings(max_examples=200, deadline=None)
@given(TEXT)
def test_literal_stays_literal_inside_the_pages_own_markdown(text):
    source = f"Model **{fmt.literal(text)}** on `=`: *done*."
    r = render_markdown(source)
    assert r.tags[0] == "p" and set(r.tags) <= {"p", "strong", "code", "em"}
    assert r.code == ["="] and r.text.replace(WJ, "").startswith("Model ")
    assert one_line(text).replace(WJ, "").strip() in r.text.replace(WJ, "")
    assert not GFM_URL.search(r.prose) and not GFM_EMAIL.search(r.prose)


@settings(max_examples=400, deadline=None)
@given(TEXT)
@example("a`b")
@example("`")
@example(" ` ")
@example(" ")
@example("")
def test_code_is_one_code_span_of_the_text(text):
    source = fmt.code(text)
    r = render_markdown(source)
    assert r.tags == ["p", "code"], (source, r.html)
    assert r.code == [one_line(text) or " "]
    assert render_markdown(f"on {source} here").tags == ["p", "code"]


def test_ordinary_text_reads_as_before():
    assert fmt.literal("Max ( 7 2 9 )") == r"Max \( 7 2 9 \)"
    assert shown_text(fmt.literal("Max ( 7 2 9 )")) == "Max ( 7 2 9 )"
    assert fmt.literal("uploaded: tiny-upload") == r"uploaded\: tiny\-upload"
    assert fmt.code("=") == "`=`" and fmt.code("<eos>") == "`<eos>`"
    assert fmt.code("a`b") == "``a`b``" and fmt.code("`") == "`` ` ``"


# ================================================================ canonical examples need no escaping
@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from(["max", "Min", "FIRST", "(", ")", ",", " ", "1", "7", "42", "**", "!", "[", "]",
                                 "`", "$", ":", "<", "http://", "\n"]), max_size=12).map("".join))  # fmt: skip
def test_an_example_that_parses_is_shown_as_its_canonical_text_which_holds_no_markdown(text):
    """The sidebar and the pages show the current example (`Current.text`) as it is: only text that parses gets
    there, and its canonical form is an operation, parentheses and numbers."""
    model = load_model("digits-0-99")
    try:
        canonical = model.parse(text).text
    except ParseError:
        return
    assert re.fullmatch(r"[A-Z][a-z]+ \( (\d+ )+\)", canonical)
    assert shown_text(f"**{canonical}**") == canonical and render_markdown(canonical).tags == ["p"]


# ================================================================ the sidebar's example box
@pytest.mark.parametrize("typed", HOSTILE)
def test_a_hostile_example_is_echoed_literally_by_the_sidebar(typed):
    at = open_app()
    set_example(at, typed)
    assert not at.exception
    with pytest.raises(ParseError) as err:
        load_model("digits-0-9").parse(typed)
    (error,) = at.sidebar.error
    assert_literal_markdown(error.value)
    assert shown_text(error.value) == " ".join(str(err.value).split())
    assert shown_text(at.sidebar.caption[0].value) == "Still showing the last valid example: Max ( 7 2 9 )"


# ================================================================ the counterfactual box
@pytest.mark.parametrize("typed", HOSTILE)
def test_a_hostile_counterfactual_is_echoed_literally(typed):
    at = open_app("../pages/mechanism.py")
    at.radio(key="mech_cf").set_value("type one").run()
    at.text_input(key="mech_cf_text").input(typed).run()
    assert not at.exception
    with pytest.raises(ParseError) as err:
        load_model("digits-0-9").parse(typed)
    (error,) = at.error
    assert_literal_markdown(error.value)
    assert shown_text(error.value) == " ".join(f"{err.value} Still using nothing yet.".split())


# ================================================================ uploaded checkpoints
NAME = "![x](http://example.com/pixel.png) **b** `c` $d$ :red[e] :smile: www.example.com <i>"
FILE = "[f](javascript:alert(1)) ![g](http://example.com/g.png).safetensors"


def markdown_of(at) -> list[str]:
    """The Markdown source of everything the page shows that Streamlit renders as Markdown."""
    out = [e.value for kind in ("markdown", "caption", "info", "warning", "error", "success") for e in at.get(kind)]
    out += [t for kind in ("title", "subheader", "header") for t in (e.value for e in at.get(kind))]
    for m in at.metric:
        out += [m.label, m.value, m.proto.help]
    for kind in ("radio", "segmented_control", "select_slider", "selectbox", "text_input", "button", "toggle",
                 "slider", "number_input", "multiselect", "checkbox"):  # fmt: skip
        for w in at.get(kind):
            out += [w.label, w.help or ""]
            if kind in ("radio", "segmented_control", "select_slider"):  # selectbox options are plain text
                out += list(w.options)
    out += [p.proto.text for p in at.get("progress")]
    return [s for s in out if s]


def assert_every_markdown_safe(at) -> None:
    for source in markdown_of(at):
        r = render_markdown(source)
        assert not {"img", "a", "script"} & set(r.tags), (source, r.html)
        assert not GFM_URL.search(r.prose) and not GFM_EMAIL.search(r.prose), source


@pytest.fixture(scope="module")
def hostile_checkpoint() -> bytes:
    m = load_model("digits-0-9")
    return save_checkpoint(m.transformer, vocab_tokens=m.vocab.to_list(), task=m.task.to_dict(), name=NAME)


def test_an_uploaded_models_hostile_name_is_literal_on_every_page(hostile_checkpoint):
    at = open_app("../pages/train.py")
    at.file_uploader(key="train_upload").set_value((FILE, hostile_checkpoint, "application/octet-stream")).run()
    assert not at.exception and not at.error
    shown = f"uploaded: {NAME}"
    (success,) = at.success
    assert_literal_markdown(success.value, FILE, shown)
    assert shown_text(success.value) == f"Loaded {FILE}: {shown} is now in the sidebar's model list."
    assert render_markdown(success.value).tags == ["p", "strong"]  # the model's name stays bold
    assert shown in at.selectbox(key="model_name").options  # plain text there (checked in a browser)
    at.selectbox(key="model_name").select(shown).run()
    for page in ("overview.py", "residual.py", "mechanism.py", "heads.py"):
        at.switch_page(f"../pages/{page}").run()
        assert not at.exception, (page, at.exception)
        with_name = [c.value for c in at.caption if fmt.literal(shown) in c.value]
        # the sidebar's Copy link and Export this run name it too
        sidebar = [c for c in with_name if c.startswith("The button") or "keep its checkpoint next" in c]
        assert len(sidebar) == 2 and len(with_name) == 3, page
        for caption in with_name:
            assert_literal_markdown(caption, shown)
        assert_every_markdown_safe(at)


def test_a_checkpoint_error_quoting_hostile_metadata_is_literal():
    metadata = {META_KEY: json.dumps({"format": "![x](http://example.com/e.png) **f**"})}
    data = safetensors.numpy.save({"embed.W_E": np.zeros((2, 2), np.float32)}, metadata=metadata)
    at = open_app("../pages/train.py")
    at.file_uploader(key="train_upload").set_value((FILE, data, "application/octet-stream")).run()
    assert not at.exception and not at.success
    (error,) = at.error
    assert_literal_markdown(error.value, FILE, "'![x](http://example.com/e.png) **f**'")


# ================================================================ an uploaded vocabulary's tokens
TOKEN = "x` ![t](http://example.com/t.png) `y"  # would close a one-backtick code span and show an image


@pytest.fixture(scope="module")
def hostile_vocab_checkpoint() -> bytes:
    """The shipped 0-9 model with one more token, TOKEN, that it predicts everywhere (a large unembedding bias)."""
    m = load_model("digits-0-9")
    cfg = m.transformer.cfg
    params = {k: v.copy() for k, v in m.transformer.params.items()}
    params["embed.W_E"] = np.vstack([params["embed.W_E"], np.zeros((1, cfg.d_model), np.float32)])
    params["unembed.W_U"] = np.hstack([params["unembed.W_U"], np.zeros((cfg.d_model, 1), np.float32)])
    params["unembed.b_U"] = np.append(params["unembed.b_U"], np.float32(100.0))
    net = Transformer(ModelConfig(**{**cfg.to_dict(), "vocab_size": cfg.vocab_size + 1}), params)
    return save_checkpoint(net, vocab_tokens=[*m.vocab.to_list(), TOKEN], task=m.task.to_dict(), name="vocab")


def test_an_uploaded_vocabulary_with_a_token_no_task_uses_is_refused_and_quoted_literally(hostile_vocab_checkpoint):
    # Refused at load (model_core.task.vocab: only specials, operation names and digits), so no page ever shows
    # such a token; the refusal quotes it, literally.
    at = open_app("../pages/train.py")
    file = ("vocab.safetensors", hostile_vocab_checkpoint, "application/octet-stream")
    at.file_uploader(key="train_upload").set_value(file).run()
    assert not at.exception and not at.success
    (error,) = at.error
    assert "no task uses" in error.value
    assert_literal_markdown(error.value, "vocab.safetensors", repr(TOKEN))
    assert "uploaded: vocab" not in at.selectbox(key="model_name").options
