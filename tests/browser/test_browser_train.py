"""End-to-end: the Train page's mechanism view in a real headless Chromium (a short run, then Play).

Uses the fixtures of tests/browser/test_browser.py (a server for this module, one tab per test) and waits on
conditions only (tests/browser/browser_helpers.py). Screenshots go to tests/artifacts/.
"""

from __future__ import annotations

import time
from dataclasses import replace

import pytest

from model_core.presets import train_page_defaults
from model_core.training.trainer import snapshot_steps
from model_core.training.worker import EARLY_SNAPSHOTS
from tests.browser import browser_helpers as bh
from tests.browser.test_browser import DONE_NOTE, app_url, assert_clean, browser, new_tab  # noqa: F401

pytestmark = pytest.mark.browser

MECHANISM = "Accuracy per operation on the probe set"  # the mechanism chart's first panel (title)
PANELS = ["Attention from = to the operation token", "Attention from = to the answer's slot",
          "Accuracy lost when the most important", "Learning rate", "Gradient norm"]  # fmt: skip
SHORT_RUN = (("train_steps", 60),)  # the default model, 60 steps: a second or two (one setting: one rerun)
# a 60-step run of the page's recipe: every 10 steps early on, and at each evaluation
SNAPSHOTS = [str(s) for s in snapshot_steps(replace(train_page_defaults().train, steps=60), EARLY_SNAPSHOTS)]
STARTED_JS = """() => !!document.querySelector("[data-testid='stMain'] .st-key-train_start button[disabled]")
    || [...document.querySelectorAll("[data-testid='stProgress']")].some(p => p.innerText.includes(" step "))"""
SLIDER_VALUE_JS = """() => document.querySelector(".st-key-train_snapshot input[type='range']")
    ?.getAttribute("aria-valuetext") ?? null"""
# Records every value the snapshot slider shows (MutationObserver: no polling of the page from here).
WATCH_SLIDER_JS = """() => {
    window.__shown = [];
    const read = () => {
        const v = document.querySelector(".st-key-train_snapshot input[type='range']")?.getAttribute("aria-valuetext");
        if (v != null && window.__shown[window.__shown.length - 1] !== v) window.__shown.push(v);
    };
    read();
    new MutationObserver(read).observe(document, {subtree: true, childList: true, attributes: true,
                                                   attributeFilter: ["aria-valuetext"]});
}"""


# True once the chart titled arg[0] has a mark whose label (its tooltip text) contains arg[1].
HAS_LABEL_JS = """([title, text]) => [...document.querySelectorAll("[data-testid='stVegaLiteChart']")]
    .filter(c => !c.closest("[data-stale='true']") && [...c.querySelectorAll("[aria-roledescription='title']")]
        .some(e => e.textContent.startsWith(title)))
    .some(c => [...c.querySelectorAll("[role='graphics-symbol']")]
        .some(m => (m.getAttribute("aria-label") || "").includes(text)))"""


def wait_label(page, title: str, text: str, timeout: float = 30_000) -> None:
    """Wait until the chart titled `title` draws a mark labelled with `text` (charts render after a run ends)."""
    page.wait_for_function(HAS_LABEL_JS, arg=[title, text], timeout=timeout)


def task_settings(page) -> tuple[list[str], str]:
    """The operations the Train page's multiselect shows chosen, and its number-of-values slider's value (both
    widgets' code loads lazily: this waits until they are drawn)."""
    slider = page.locator(".st-key-train_n_args [aria-valuetext]")
    slider.wait_for()
    chips = page.locator(".st-key-train_ops [aria-label='Selected values'] [aria-label^='Remove ']")
    names = [c.get_attribute("aria-label").removeprefix("Remove ") for c in chips.locator("visible=true").all()]
    return names, slider.get_attribute("aria-valuetext")


def window_shown(page) -> list[str]:
    return page.evaluate("window.__shown")


def visible_button(page, key: str):
    """A keyed button (a button with help is drawn twice: keep the one on screen)."""
    return page.locator(f".st-key-{key} button").locator("visible=true")


def set_number(page, key: str, value: int) -> None:
    box = page.locator(f".st-key-{key} input")
    bh.watch_for_run(page)
    box.fill(str(value))
    box.press("Enter")
    try:
        bh.wait_run_finished(page, 20_000)
    except bh.PlaywrightTimeout:  # a short rerun can slip past the watcher (as in bh.choose): then be idle
        bh.wait_idle(page)
    assert box.input_value() == str(value), (key, box.input_value())


def test_a_short_run_draws_the_mechanism_and_plays_its_snapshots(new_tab, app_url):  # noqa: F811
    page = new_tab()
    bh.open_app(page, app_url, "train")
    assert_clean(page, "Train")
    for key, value in SHORT_RUN:
        set_number(page, key, value)
    bh.wait_idle(page)
    assert [page.locator(f".st-key-{k} input").input_value() for k, _ in SHORT_RUN] == [str(v) for _, v in SHORT_RUN]
    task = train_page_defaults().task  # a setting changed at once leaves the others at the page's defaults
    assert task_settings(page) == (list(task.operations), str(task.n_args))
    for _ in range(3):  # a click that lands while a rerun is still on its way can be lost: then click again
        page.locator(".st-key-train_start button").click()
        try:
            page.wait_for_function(STARTED_JS, timeout=15_000)
            break
        except bh.PlaywrightTimeout:
            bh.wait_idle(page)
    note = page.locator("[data-testid='stMain'] [data-testid='stAlertContainer']").filter(has_text=DONE_NOTE)
    try:
        note.wait_for(timeout=90_000)
    except bh.PlaywrightTimeout:
        bh.screenshot(page, "train-mechanism-timeout")
        progress = page.locator("[data-testid='stProgress']").all_inner_texts()
        alerts = page.locator("[data-testid='stMain'] [data-testid='stAlertContainer']").all_inner_texts()
        pytest.fail(f"the run did not end with its note: progress {progress}, alerts {alerts}")
    bh.wait_idle(page)
    assert_clean(page, "Train after the run")

    # the mechanism chart: every panel on one step axis, with data, the last snapshot marked
    chart = bh.chart_with_title(page, MECHANISM)
    chart.locator("[aria-roledescription='line mark']").first.wait_for(state="attached")
    titles = bh.chart_titles(page)
    assert all(any(t.startswith(p) for t in titles) for p in PANELS), titles
    wait_label(page, MECHANISM, "snapshot shown: 60")  # the last snapshot is marked
    labels = bh.mark_labels(chart)
    assert any("operation: First" in lab and "probe accuracy" in lab for lab in labels), labels[:5]
    assert page.get_by_text("What the curves show").count() == 1
    assert page.evaluate(SLIDER_VALUE_JS) == "60"
    bh.screenshot(page, "train-mechanism")

    # Play: from the first snapshot, one every ~0.5 s, to the last; then the button says Play again
    page.evaluate(WATCH_SLIDER_JS)
    bh.wait_idle(page)
    started = time.monotonic()
    for attempt in range(3):  # a click that lands while a rerun is still on its way can be lost: then click again
        visible_button(page, "train_play").click()
        try:
            page.wait_for_function("() => window.__shown.includes('10')", timeout=20_000)
            break
        except bh.PlaywrightTimeout:
            lost = window_shown(page) == ["60"] and visible_button(page, "train_play").inner_text().strip() == "Play"
            if attempt == 2 or not lost:
                raise  # it started (a stalled play is a bug, not a lost click)
            bh.wait_idle(page)
            page.evaluate(WATCH_SLIDER_JS)
            started = time.monotonic()
    label = visible_button(page, "train_play").inner_text().strip()
    assert label == "Pause" or page.evaluate("window.__shown.includes('60')"), label  # playing (unless ended)
    bh.screenshot(page, "train-playing")
    page.wait_for_function("() => window.__shown[window.__shown.length - 1] === '60'", timeout=60_000)
    visible_button(page, "train_play").filter(has_text="Play").wait_for(timeout=30_000)
    took = time.monotonic() - started
    shown = page.evaluate("window.__shown")
    assert shown[shown.index("0"):] == SNAPSHOTS, shown  # every snapshot in turn, none skipped
    assert took > 0.4 * (len(SNAPSHOTS) - 1), f"played {len(SNAPSHOTS)} snapshots in {took:.1f} s"
    # the chart followed: its marked snapshot is the last one again
    wait_label(page, MECHANISM, "snapshot shown: 60")
    assert_clean(page, "Train after playing")

    # a reload is a new session: the run's id in the address brings its result back
    assert "job=" in page.url, page.url
    page.reload()
    page.locator("[data-testid='stToast']").filter(has_text="Back to the training run").wait_for(timeout=60_000)
    note.wait_for(timeout=60_000)  # the same run's ending, on the new session's page
    bh.wait_idle(page)
    assert_clean(page, "Train after a reload")
    bh.screenshot(page, "train-reloaded")
