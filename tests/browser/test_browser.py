"""End-to-end tests: the explainer served by Streamlit, driven in a real headless Chromium.

    python -m pytest tests/browser -q          (`-m "not browser"` leaves them out; `bash tests/run.sh`
                                                        installs Chromium)

The app runs once for the module (`python -m streamlit run explainer/app.py` on a free port); every test opens
its own tab, i.e. its own Streamlit session. What the browser shows is checked against the model run in this
process (`model_core`), so a page that drew stale or different numbers would fail. Waits are conditions (see
tests/browser/browser_helpers.py), never sleeps. Screenshots go to tests/artifacts/ (git-ignored). About 1.5-2 minutes
on a loaded 2-core machine, most of it the training run (bounded by TRAIN_BUDGET_S, then Stop).
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import numpy as np
import pytest

from tests.browser import browser_helpers as bh

pytestmark = pytest.mark.browser

try:
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    from playwright.sync_api import sync_playwright
except ImportError:  # pragma: no cover - the dev requirements install it
    sync_playwright = PlaywrightTimeout = None

MODEL = "digits-0-9"  # the first shipped model: the sidebar's default
CAUSAL_MODEL = "digits-0-99"  # shipped too: a causal pre-norm decoder
DEFAULT = "Max ( 7 2 9 )"
EDITED = "Min ( 4 8 1 )"
INVALID = "Mx ( 1 2 3 )"
BARS = "First answer token"  # the Overview's probability bars (title)
HEATMAP = "Attention pattern"  # the Attention page's softmax heatmap (title)
PAGES = {  # sidebar title -> does the page draw charts (before anything is clicked)?
    "Overview": True,
    "Tokens & embeddings": True,
    "Attention": True,
    "Residual, LayerNorm & FFN": True,
    "Output & softmax": True,
    "Backprop": True,
    "How it answers": True,
    "Heads across all inputs": True,
    "The training loop": True,
    "Train": False,
}


# ---------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def app_url():
    with bh.running_app() as url:
        yield url


class _Browser:
    """Launches Chromium lazily, inside the first test that needs it, so that a missing browser is a test FAILURE."""

    def __init__(self):
        self._pw = self._pw_cm = self.context = None

    def new_page(self):
        if sync_playwright is None:
            pytest.fail("Python playwright is missing: run `bash tests/run.sh` (it installs the dev requirements).")
        if not Path(bh.CHROMIUM).exists():
            pytest.fail(bh.MISSING_CHROMIUM)
        if self.context is None:
            self._pw_cm = sync_playwright()
            self._pw = self._pw_cm.__enter__()
            self._ctx_cm = bh.chromium_context(self._pw)
            self.context = self._ctx_cm.__enter__()
        return self.context.new_page()

    def close(self):
        if self.context is not None:
            self._ctx_cm.__exit__(None, None, None)
            self._pw_cm.__exit__(None, None, None)


@pytest.fixture(scope="module")
def browser():
    b = _Browser()
    try:
        yield b
    finally:
        b.close()


@pytest.fixture
def new_tab(browser, app_url):
    """Opens a tab (a new Streamlit session) when the test calls it, so that a missing Chromium fails the test."""
    tabs = []

    def open_tab():
        tabs.append(browser.new_page())
        return tabs[-1]

    try:
        yield open_tab
    finally:
        for tab in tabs:
            tab.close()


@pytest.fixture(scope="module")
def model():
    from model_core import load_model

    return load_model(MODEL)


def expected_answer(model, text: str) -> str:
    """What the Overview's "Model's answer" metric must show for `text`: computed here, by the model itself."""
    from model_core.analysis import run_example

    answer = run_example(model, text).answer
    return str(answer.value) if answer.value is not None else " ".join(answer.answer_tokens)


def expected_pattern(model, text: str, layer: int = 0, head: int = 0) -> np.ndarray:
    from model_core.analysis import run_example

    return run_example(model, text).cache[f"blocks.{layer}.attn.hook_pattern"][0, head]


def heatmap_weights(labels: list[str]) -> dict[tuple[int, int], float]:
    """{(query position, key position): weight} read from the attention heatmap's mark labels (its tooltips)."""
    out = {}
    for label in labels:
        fields = dict(part.split(": ", 1) for part in label.split("; ") if ": " in part)
        if {"query position", "key position", "weight"} <= fields.keys():
            out[int(fields["query position"]), int(fields["key position"])] = float(fields["weight"])
    return out


def assert_clean(page, where: str) -> None:
    errors = page.locator(bh.EXCEPTION)
    assert errors.count() == 0, f"{where}: exception on the page:\n" + "\n---\n".join(errors.all_inner_texts())


# ---------------------------------------------------------------- the explainer
def test_overview_follows_the_example_and_keeps_it_on_a_bad_edit(new_tab, app_url, model):
    """Default prediction; a typed example changes it (and the bars); an invalid one shows an error, keeps both."""
    page = new_tab()
    bh.open_app(page, app_url)
    assert bh.select_value(page, "Model") == MODEL, "the sidebar's default model changed"
    bh.wait_metric(page, "Example", DEFAULT)
    assert bh.metric(page, "Model's answer") == expected_answer(model, DEFAULT)
    bars = bh.chart_with_title(page, BARS)
    bars.locator(bh.MARKS).first.wait_for(state="attached")
    bars_before = bh.mark_labels(bars)
    assert_clean(page, "Overview")

    bh.type_example(page, EDITED)
    bh.wait_metric(page, "Example", EDITED)
    bh.wait_idle(page)
    new_answer = bh.metric(page, "Model's answer")
    assert new_answer == expected_answer(model, EDITED)
    assert new_answer != expected_answer(model, DEFAULT), "the two examples should have different answers"
    bh.wait_chart_changed(page, BARS, bars_before)
    bars = bh.chart_with_title(page, BARS)
    bars_after = bh.mark_labels(bars)
    assert bars_after != bars_before, "the probability bars did not change with the example"
    bh.screenshot(page, "overview-edited")

    bh.type_example(page, INVALID)
    error = page.locator("[data-testid='stSidebar'] [data-testid='stAlertContentError']")
    error.wait_for()
    bh.wait_idle(page)
    assert error.inner_text().strip(), "the error message is empty"
    assert bh.metric(page, "Example") == EDITED, "the last valid example must stay on screen"
    assert bh.metric(page, "Model's answer") == new_answer
    assert bh.mark_labels(bh.chart_with_title(page, BARS)) == bars_after, "the chart changed on an invalid example"
    assert_clean(page, "Overview after an invalid example")
    bh.screenshot(page, "overview-invalid")


def test_every_page_renders_from_the_sidebar(new_tab, app_url):
    """Each sidebar page opens without an exception and draws chart marks (Train: none before a run)."""
    page = new_tab()
    bh.open_app(page, app_url)
    titles = bh.nav_titles(page)
    assert titles == list(PAGES), f"the sidebar navigation changed: {titles}"
    for title, has_charts in PAGES.items():
        bh.go_to(page, title)
        assert_clean(page, title)
        heading = " / ".join(page.locator("[data-testid='stMain'] h1").all_inner_texts())
        if has_charts:
            try:
                page.wait_for_selector(f"[data-testid='stMain'] {bh.MARKS}", state="attached", timeout=20_000)
            except Exception:  # noqa: BLE001 - re-raised as a readable failure
                bh.screenshot(page, f"page-{_slug(title)}-no-chart")
                pytest.fail(f"page {title!r} (heading {heading!r}) shows no chart marks; "
                            f"chart titles: {bh.chart_titles(page)}")
        bh.screenshot(page, f"page-{_slug(title)}")


def test_attention_heatmap_follows_the_example(new_tab, app_url, model):
    """The heatmap's cells are the model's L0 H0 pattern, before and after typing a new example."""
    page = new_tab()
    bh.open_app(page, app_url, "attention")
    heatmap = bh.chart_with_title(page, HEATMAP)
    heatmap.locator(bh.RECT_MARKS).first.wait_for(state="attached")
    before = bh.mark_labels(heatmap)
    weights = heatmap_weights(before)
    want = expected_pattern(model, DEFAULT)
    assert len(weights) == want.size, f"{len(weights)} heatmap cells for a {want.shape} pattern"
    np.testing.assert_allclose([weights[q, k] for q, k in np.ndindex(want.shape)], want.ravel(), atol=6e-5)

    bh.type_example(page, EDITED)
    bh.wait_chart_changed(page, HEATMAP, before)
    bh.wait_idle(page)
    assert_clean(page, "Attention after an edit")
    after = bh.mark_labels(bh.chart_with_title(page, HEATMAP))
    weights = heatmap_weights(after)
    want = expected_pattern(model, EDITED)
    assert len(weights) == want.size
    np.testing.assert_allclose([weights[q, k] for q, k in np.ndindex(want.shape)], want.ravel(), atol=6e-5,
                               err_msg="the heatmap does not show the edited example's pattern")  # fmt: skip
    bh.screenshot(page, "attention-edited")


def test_the_causal_model_in_every_page(new_tab, app_url):
    """Switch to the shipped causal pre-norm model (0-99): the example is kept, every page renders on it."""
    from model_core import load_model

    causal = load_model(CAUSAL_MODEL)
    page = new_tab()
    bh.open_app(page, app_url)
    bh.choose(page, "Model", CAUSAL_MODEL)
    caption = page.locator("[data-testid='stMain'] [data-testid='stCaptionContainer']").filter(has_text=CAUSAL_MODEL)
    assert "causal" in caption.first.inner_text(), "the Overview does not describe the causal model"
    bh.wait_metric(page, "Model's answer", expected_answer(causal, DEFAULT))
    assert bh.metric(page, "Example") == DEFAULT, "the example should survive the switch (valid for both models)"
    for title, has_charts in PAGES.items():
        if title == "Train":
            continue
        bh.go_to(page, title)
        assert bh.select_value(page, "Model") == CAUSAL_MODEL
        assert_clean(page, f"{title} on {CAUSAL_MODEL}")
        if has_charts:
            page.wait_for_selector(f"[data-testid='stMain'] {bh.MARKS}", state="attached", timeout=20_000)
        if title == "Attention":  # causal: a triangle of weights, read off the model's own run
            weights = heatmap_weights(bh.mark_labels(bh.chart_with_title(page, HEATMAP)))
            want = expected_pattern(causal, DEFAULT)
            assert len(weights) == want.size, f"{len(weights)} heatmap cells for a {want.shape} pattern"
            np.testing.assert_allclose([weights[q, k] for q, k in np.ndindex(want.shape)], want.ravel(), atol=6e-5)
        bh.screenshot(page, f"causal-{_slug(title)}")


# ---------------------------------------------------------------- many edits in a row, on every page
EDITS = {  # model -> the two examples typed one after the other (answers of different lengths for 0-99)
    MODEL: ("Last ( 3 1 4 )", "Min ( 4 8 1 )"),
    CAUSAL_MODEL: ("Min ( 5 63 8 )", "Max ( 12 3 99 )"),
}


def press_random(page) -> None:
    """Press Random and wait for its rerun: seen starting, or seen in its result (the example box changed)."""
    before = bh.example_box(page).input_value()
    bh.watch_for_run(page)
    page.locator(".st-key-random_example button").click()
    page.wait_for_function(
        """before => window.__runSeen === true || document.querySelector(
               "[data-testid='stSidebar'] input[aria-label='Example']")?.value !== before""",
        arg=before, timeout=60_000)  # fmt: skip
    bh.wait_idle(page)


def edit(page, text: str) -> None:
    """Type `text` (canonical, e.g. "Max ( 12 3 99 )") as the example and wait for the rerun it causes to end.

    The rerun is seen starting, or seen in its result: the sidebar's value boxes, which the app fills from
    the example it accepted, hold the new values (a fast rerun can slip past the watcher on a loaded machine).
    """
    values = [v for v in text.split("(")[1].rstrip(" )").split()]
    bh.watch_for_run(page)
    bh.type_example(page, text)
    page.wait_for_function(
        """values => window.__runSeen === true || values.every((v, i) => document.querySelector(
               `[data-testid='stSidebar'] input[aria-label='value ${i + 1}']`)?.value === v)""",
        arg=values, timeout=60_000)  # fmt: skip
    bh.wait_idle(page)


def stable_marks(page, timeout: float = 20.0) -> list[str]:
    """The main area's marks once the charts have finished drawing: the same twice, half a second apart."""
    deadline = time.monotonic() + timeout
    before = main_marks(page)
    while time.monotonic() < deadline:
        page.wait_for_timeout(500)
        now = main_marks(page)
        if now and now == before:
            return now
        before = now
    return before


def main_marks(page) -> list[str]:
    """Every chart mark's label (its tooltip text) in the page's main area, sorted.

    Sorted: Vega keeps the marks it already drew when a chart's data changes and adds new ones after them,
    so the document order after edits differs from a fresh drawing of the same data.
    """
    return sorted(bh.mark_labels(page.locator("[data-testid='stMain']")))


@pytest.mark.parametrize("model_name", list(EDITS))
def test_random_three_times_then_two_edits_on_every_page(new_tab, app_url, model_name):
    """On each page: Random x3, then two typed examples. No exception, and the charts show the last example:
    the same marks as a fresh session that typed only that example."""
    first, last = EDITS[model_name]
    page, fresh = new_tab(), new_tab()
    # Chromium stops drawing a tab in the background, so each tab is brought to the front before it is used.
    for tab in (page, fresh):
        tab.bring_to_front()
        bh.open_app(tab, app_url)
        if model_name != MODEL:
            bh.choose(tab, "Model", model_name)
    edit(fresh, last)
    for title, has_charts in PAGES.items():
        page.bring_to_front()
        bh.go_to(page, title)
        for i in range(3):
            press_random(page)
            assert_clean(page, f"{title} on {model_name} after Random #{i + 1}")
        for text in (first, last):
            edit(page, text)
            assert_clean(page, f"{title} on {model_name} after typing {text!r}")
        if not has_charts:
            continue
        fresh.bring_to_front()
        bh.go_to(fresh, title)
        want = stable_marks(fresh)
        page.bring_to_front()
        try:
            page.wait_for_function(f"want => ({_MARKS_JS})() === want", arg="\n".join(want), timeout=15_000)
        except PlaywrightTimeout:
            bh.screenshot(page, f"edits-{_slug(model_name)}-{_slug(title)}")
            got = main_marks(page)
            diff = [(a, b) for a, b in zip(got, want, strict=False) if a != b][:3]
            pytest.fail(f"{title} on {model_name}: the charts do not show {last!r} ({len(got)} marks, "
                        f"{len(want)} expected; first differences: {diff})")
        assert want, f"{title} on {model_name}: no chart marks"


_MARKS_JS = f"""() => [...document.querySelectorAll("[data-testid='stMain'] {bh.MARKS}")]
    .map(e => e.getAttribute("aria-label") || "").sort().join("\\n")"""


# ---------------------------------------------------------------- training a model, then inspecting it
CURVE = "Loss and accuracy"  # the Train page's live curves (title)
TRAIN_BUDGET_S = 40  # from pressing Start to the end of the run; then the test presses Stop
DONE_NOTE = re.compile(r"It is in the sidebar's model list as (.+?)\.\s*$")

# Records the number of marks (line points) of the live curve each time the chart is redrawn.
_WATCH_CURVE_JS = """([title, marks]) => {
    window.__curve = [];
    const count = () => {
        const chart = [...document.querySelectorAll("[data-testid='stVegaLiteChart']")].find(c =>
            !c.closest("[data-stale='true']") && [...c.querySelectorAll("[aria-roledescription='title']")]
                .some(e => e.textContent.toLowerCase().includes(title)));
        return chart ? chart.querySelectorAll(marks).length : 0;
    };
    new MutationObserver(() => {
        const n = count(), seen = window.__curve;
        if (n > 0 && n !== seen[seen.length - 1]) seen.push(n);
    }).observe(document, {subtree: true, childList: true});
}"""


def test_train_then_inspect_the_new_model(new_tab, app_url):
    """Start training with the defaults, watch the curve grow, get the model, open Attention on it."""
    page = new_tab()
    bh.open_app(page, app_url, "train")
    assert_clean(page, "Train")
    shipped = bh.select_options(page, "Model")
    page.evaluate(_WATCH_CURVE_JS, [CURVE.lower(), bh.MARKS])
    start = page.locator(".st-key-train_start button")
    start.click()
    started = time.monotonic()

    # the curve grows while training: two looks, the second with more points
    page.wait_for_function("() => window.__curve.length >= 1", timeout=60_000)
    first = page.evaluate("window.__curve[0]")
    page.wait_for_function("n => window.__curve.some(c => c > n)", arg=first, timeout=60_000)
    bh.screenshot(page, "train-running")

    # the run ends: by itself (defaults: it stops at 100% validation accuracy), or, if this (shared, perhaps
    # loaded) machine has not got there within the budget, by pressing Stop: either way the page then names
    # the new model, which is in the sidebar's list
    note = page.locator("[data-testid='stMain'] [data-testid='stAlertContainer']").filter(has_text=DONE_NOTE)
    remaining = TRAIN_BUDGET_S - (time.monotonic() - started)
    try:
        note.wait_for(timeout=max(remaining, 1) * 1000)
        how = "ended by itself"
    except PlaywrightTimeout:
        try:
            page.locator(".st-key-train_stop button").click(timeout=5_000)
            how = f"stopped after {TRAIN_BUDGET_S} s"
        except PlaywrightTimeout:  # it ended (Stop disabled) just as the budget ran out
            how = "ended by itself, at the budget"
        note.wait_for(timeout=30_000)
    bh.wait_idle(page)
    progress = page.locator("[data-testid='stMain'] [data-testid='stProgress']").filter(has_text="step")
    print(f"training {how}: {' | '.join(progress.all_inner_texts())}")
    assert_clean(page, "Train after the run")
    curve = page.evaluate("window.__curve")
    assert curve[-1] > curve[0], f"the curve did not grow: point counts seen {curve}"
    new = DONE_NOTE.search(note.inner_text().strip()).group(1).strip()
    options = bh.select_options(page, "Model")
    assert new in options and new not in shipped, f"{new!r} is not a new option of the Model select: {options}"
    bh.screenshot(page, "train-done")

    bh.choose(page, "Model", new)
    bh.go_to(page, "Attention")
    assert bh.select_value(page, "Model") == new
    assert_clean(page, f"Attention on {new}")
    heatmap = bh.chart_with_title(page, HEATMAP)
    heatmap.locator(bh.RECT_MARKS).first.wait_for(state="attached")
    assert heatmap_weights(bh.mark_labels(heatmap)), "no attention heatmap for the trained model"
    bh.screenshot(page, "attention-trained-model")


def _slug(title: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")


def _luminance(css_colour: str) -> float:
    """Relative luminance (0 black .. 1 white) of an "rgb(r, g, b)" / "rgba(...)" colour."""
    r, g, b = (int(v) / 255 for v in re.findall(r"\d+", css_colour)[:3])
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def test_dark_mode_follows_the_browser_and_chart_text_stays_readable(new_tab, app_url):
    """With the browser asking for dark, the app is dark and a chart's title and subtitle stay light enough."""
    page = new_tab()
    page.emulate_media(color_scheme="dark")
    bh.open_app(page, app_url)
    background = page.evaluate("getComputedStyle(document.querySelector('[data-testid=stApp]')).backgroundColor")
    assert _luminance(background) < 0.2, background
    chart = page.locator("[data-testid='stVegaLiteChart']").first
    chart.locator("[aria-roledescription='title']").first.wait_for(state="attached")
    fills = chart.evaluate("""c => [...c.querySelectorAll("text")].map(t => getComputedStyle(t).fill)
                              .filter(f => f && f.startsWith('rgb'))""")
    assert fills and min(_luminance(f) for f in fills) > 0.3, fills  # no dark text on the dark page
    page.emulate_media(color_scheme="light")
    page.wait_for_function("() => { const c = getComputedStyle(document.querySelector('[data-testid=stApp]'))"
                           ".backgroundColor; return c.includes('255, 255, 255'); }", timeout=10_000)
    bh.screenshot(page, "overview-light-after-dark")


def test_on_a_phone_the_example_is_edited_above_the_page(browser, app_url, model):  # noqa: F811
    """At 390 px Streamlit folds the sidebar away: the box above the page edits the example; at 1280 px it is hidden."""
    page = browser.new_page()
    try:
        page.set_viewport_size({"width": 390, "height": 900})
        bh.open_app(page, app_url)
        box = page.locator(".st-key-phone_example input")
        assert box.is_visible() and not page.locator("[data-testid='stSidebarUserContent']").is_visible()
        bh.watch_for_run(page)
        box.fill("Min ( 4 8 1 )")
        box.press("Enter")
        bh.wait_run_finished(page)
        bh.wait_idle(page)
        assert bh.metric(page, "Model's answer") == expected_answer(model, "Min ( 4 8 1 )")
        bh.screenshot(page, "overview-390-phone-example")
        page.set_viewport_size({"width": 1280, "height": 900})
        page.wait_for_function("() => !document.querySelector('.st-key-phone_example input')?.checkVisibility()")
    finally:
        page.close()


@pytest.mark.parametrize("width", [1280, 390])
def test_no_text_is_cut_short_on_long_examples_and_near_certain_answers(browser, app_url, width):  # noqa: F811
    """A near-certain answer's probability ("≈100% (1 − 2.2e-8)"), a long example, a long page link and a long
    expression on a button show whole: nothing is wider than the box that clips it, nor ends in Streamlit's "…"
    (what they say is checked in the AppTests)."""
    from urllib.parse import quote

    page = browser.new_page()
    try:
        page.set_viewport_size({"width": width, "height": 900})
        for name, text in [("lists-0-9", "Last ( 4 1 8 2 5 6 7 3 9 0 )"),
                           ("nested-0-9", "Sum ( Max ( 5 3 9 ) 7 Min ( 2 8 ) )")]:  # fmt: skip
            for path in ("", "output", "heads"):
                bh.open_app(page, app_url, f"{path}?model={name}&example={quote(text)}", timeout=240_000)
                page.wait_for_function("() => !document.querySelector(\"[data-testid='stSkeleton']\")")
                if path == "" and name == "lists-0-9":
                    assert bh.metric(page, "Confidence").startswith("≈100% (1 − "), "expected a near-certain answer"
                assert not bh.cut_texts(page), (name, path or "overview", width, bh.cut_texts(page))
    finally:
        page.close()
