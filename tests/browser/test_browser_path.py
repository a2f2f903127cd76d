"""End-to-end: the path through the course (explainer/path.py) in a real headless Chromium: answer and reveal the
Tokens page's question, follow its Next link to Attention, and the example is still the one typed; the question
and the Previous / Next row fit a 390 px phone screen.

    python -m pytest tests/browser/test_browser_path.py -q

Reuses tests/browser/test_browser.py's fixtures (one app server for this module, one tab per test); waits are
conditions, never sleeps. Screenshots: tests/artifacts/path-tokens-1280.png, path-tokens-390.png,
path-attention-390.png.
"""

from __future__ import annotations

import re

import pytest

from tests.browser import browser_helpers as bh
from tests.browser.test_browser import app_url, assert_clean, browser, model, new_tab  # noqa: F401 (fixtures)

pytestmark = pytest.mark.browser

TEXT = "Min ( 4 8 1 )"  # not the default: the example that must survive the link

_OVERFLOW_JS = """(sel) => [...document.querySelectorAll(sel)].map(e => {
    const r = e.getBoundingClientRect();
    return {right: r.right, width: document.documentElement.clientWidth, scroll: e.scrollWidth, client: e.clientWidth};
})"""


def assert_fits(page, selector: str, what: str, slack: float = 1) -> None:
    """Every element matching `selector` is inside the viewport's width and has nothing cut off inside it (by more
    than `slack` px)."""
    boxes = page.evaluate(_OVERFLOW_JS, selector)
    assert boxes, f"{what}: nothing matches {selector}"
    for box in boxes:
        assert box["right"] <= box["width"] + 0.5 and box["scroll"] <= box["client"] + slack, (what, box)


def test_answer_reveal_and_follow_next_with_the_same_example(new_tab, app_url, model):  # noqa: F811
    from model_core.analysis import run_example

    n = run_example(model, TEXT).answer_pos + 1  # the tokens up to `=`: the right prediction
    page = new_tab()
    page.set_viewport_size({"width": 1280, "height": 1000})
    bh.open_app(page, app_url, "tokens")
    box = bh.example_box(page)
    bh.watch_for_run(page)
    box.fill(TEXT)
    box.press("Enter")
    bh.wait_run_finished(page)

    quiz = page.locator(".st-key-quiz_box_tokens")
    quiz.get_by_text(f"How many tokens does {TEXT} become").wait_for()
    reveal = quiz.get_by_role("button", name="Reveal")
    assert reveal.is_disabled(), "Reveal before any choice"
    bh.watch_for_run(page)
    quiz.locator("[data-testid='stRadio'] label").filter(has_text=re.compile(rf"^\s*{n}\s*$")).click()
    bh.wait_run_finished(page)
    bh.watch_for_run(page)
    reveal.click()
    bh.wait_run_finished(page)
    said = quiz.locator("[data-testid='stAlertContentSuccess']").inner_text().split("\n")  # the icon, then the text
    assert said[-1].strip() == f"Right: {n}."
    assert f"becomes {n} tokens" in quiz.inner_text()
    assert_clean(page, "Tokens after the reveal")
    bh.screenshot(page, "path-tokens-1280")

    page.set_viewport_size({"width": 390, "height": 900})
    bh.wait_idle(page)
    assert_fits(page, ".st-key-quiz_box_tokens", "the question at 390 px")
    assert_fits(page, ".st-key-path_prev_next", "Previous / Next at 390 px")
    assert_fits(page, ".st-key-path_prev_next a", "a Previous / Next link at 390 px")
    bh.screenshot(page, "path-tokens-390")

    nxt = page.locator(".st-key-path_prev_next a").filter(has_text="Next: Attention →")
    nxt.scroll_into_view_if_needed()
    nxt.click()
    page.wait_for_function("() => location.pathname.endsWith('/attention')")
    bh.wait_idle(page)
    page.locator("[data-testid='stMain'] h1", has_text="Attention").wait_for()
    assert bh.example_box(page).input_value() == TEXT, "the link lost the example"
    attention_quiz = page.locator(".st-key-quiz_box_attention")
    attention_quiz.get_by_text("which position will = (position 8) attend to most with head 0").wait_for()
    assert f"on {TEXT}" in page.locator("[data-testid='stMain'] [data-testid='stCaptionContainer']").first.inner_text()
    assert_clean(page, "Attention after Next")
    assert_fits(page, ".st-key-quiz_box_attention", "the attention question at 390 px")
    bh.screenshot(page, "path-attention-390")


def test_the_training_formulas_fit_a_phone(new_tab, app_url):  # noqa: F811
    """At 390 px every formula of the Train page's update, schedule and clipping fits the width (no scrolling)."""
    page = new_tab()
    page.set_viewport_size({"width": 390, "height": 900})
    bh.open_app(page, app_url, "train")
    expander = page.locator("[data-testid='stExpander']").filter(has_text="The update (").first
    expander.locator("summary").click()
    expander.locator(".katex-display").first.wait_for()
    assert expander.locator(".katex-display").count() >= 3  # the update, the schedule, clipping
    # KaTeX's display boxes measure 2 px wider inside than out even for a one-symbol formula: 3 px of slack
    assert_fits(page, "[data-testid='stExpander'] .katex-display", "a training formula at 390 px", slack=3)
