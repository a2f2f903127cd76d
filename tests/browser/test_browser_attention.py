"""End-to-end: the Attention page's head toggles and "All heads" clicks, in a real headless Chromium.

    python -m pytest tests/browser/test_browser_attention.py -q

Reuses tests/browser/test_browser.py's fixtures (one app server for this module, one tab per test) and the
helpers of tests/browser/browser_helpers.py; waits are conditions, never sleeps. What the browser shows is
checked against `model_core.interp.ablate` run in this process.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

from explainer import format as fmt
from tests.browser import browser_helpers as bh
from tests.browser.test_browser import DEFAULT, app_url, browser, model, new_tab  # noqa: F401 (fixtures)

pytestmark = pytest.mark.browser


def head_toggle(page, layer: int, head: int):
    return page.locator(f".st-key-attn_on_{layer}_{head} label").first


def choose_in_sidebar(page, label: str, option: str) -> None:
    """Pick `option` in the sidebar select `label` and wait for the rerun it starts.

    Opened from the keyboard (focus, ArrowDown): on this machine a click on the box's "Open" button (what
    `bh.choose` does) left the list closed in about half of the tries, on a freshly loaded page too."""
    box = bh.sidebar_select(page, label).locator("input[role='combobox']")
    listbox = page.locator(f"[role='listbox'][aria-label='{label}']")
    item = listbox.locator("[role='option']").filter(has_text=re.compile(rf"^\s*{re.escape(option)}\s*$"))
    for attempt in range(3):  # a key press that lands while the page redraws can be lost: then press again
        box.focus()
        page.keyboard.press("ArrowDown")
        try:
            item.wait_for(timeout=10_000)
            break
        except bh.PlaywrightTimeout:
            if attempt == 2:
                raise
            page.keyboard.press("Escape")
            bh.wait_idle(page)
    bh.watch_for_run(page)
    item.click()
    listbox.wait_for(state="detached")
    bh.wait_run_finished(page)


def alert_text(page, kind: str) -> str:
    """The text of the main area's first alert of `kind` ("Success", "Warning", "Info")."""
    return page.locator(f"[data-testid='stMain'] [data-testid='stAlertContent{kind}']").first.inner_text()


def test_switching_a_head_off_shows_the_logit_difference_change(new_tab, app_url, model):  # noqa: F811
    from model_core import interp
    from model_core.analysis import run_example

    run = run_example(model, DEFAULT)
    res = interp.ablate(model, run.tokens[None], [run.answer_pos], [["L1H3"]])
    before, after = fmt.logit(res.clean_logit_diff[0]), fmt.logit(res.logit_diff[0, 0])
    assert before != after

    page = new_tab()
    bh.open_app(page, app_url, "attention")
    assert page.locator("[data-testid='stMain'] [data-testid='stAlertContentSuccess']").count() == 0
    toggle = head_toggle(page, 1, 3)
    toggle.scroll_into_view_if_needed()
    bh.watch_for_run(page)
    toggle.click()
    bh.wait_run_finished(page)
    page.locator("[data-testid='stMain'] [data-testid='stAlertContentSuccess']").first.wait_for()
    text = alert_text(page, "Success")
    assert f"logit difference {before} → {after} ({fmt.signed(res.delta_logit_diff[0, 0])})" in text, text
    assert "100.0%" not in text
    # the before/after chart draws the same two logit differences (its bars' tooltips)
    chart = bh.chart_with_title(page, f"Logit difference at position {run.answer_pos}")
    chart.locator(bh.MARKS).first.wait_for(state="attached")
    drawn = sorted(
        float(part.split(": ", 1)[1])
        for label in bh.mark_labels(chart)
        for part in label.split("; ")
        if part.startswith("logit difference: ")
    )
    np.testing.assert_allclose(drawn, sorted([res.clean_logit_diff[0], res.logit_diff[0, 0]]), atol=1e-3)
    # the hint names the head that matters most, computed the same way
    heads = [c for c in interp.every_component(model.transformer) if "H" in c[0]]  # the heads, not the MLPs
    every = interp.ablate(model, run.tokens[None], [run.answer_pos], heads)
    top = every.labels[int(np.argmax(np.abs(every.delta_logit_diff[:, 0])))]
    assert f"switching off {top} alone" in page.locator("[data-testid='stMain']").inner_text()
    bh.screenshot(page, "attention-head-off")

    # on again: the message goes
    bh.watch_for_run(page)
    head_toggle(page, 1, 3).click()
    bh.wait_run_finished(page)
    assert page.locator("[data-testid='stMain'] [data-testid='stAlertContentSuccess']").count() == 0
    assert not page.locator(bh.EXCEPTION).count()


def test_clicking_a_head_in_all_heads_selects_it_in_the_sidebar(new_tab, app_url):  # noqa: F811
    page = new_tab()
    bh.open_app(page, app_url, "attention")
    assert bh.select_value(page, "Head") == "0"
    panel = bh.chart_with_title(page, "L0 H2")
    panel.scroll_into_view_if_needed()
    cells = panel.locator(bh.RECT_MARKS)
    cells.first.wait_for(state="attached")
    bh.watch_for_run(page)
    cells.nth(cells.count() // 2).click()
    bh.wait_run_finished(page)
    page.wait_for_function(
        """() => [...document.querySelectorAll("[data-testid='stSidebar'] input[role='combobox']")]
                 .some(e => e.getAttribute('aria-label') === 'Head' && e.value === '2')""",
        timeout=30_000,
    )
    bh.wait_idle(page)
    assert bh.select_value(page, "Head") == "2"
    bh.chart_with_title(page, "Attention pattern, L0 H2").wait_for()
    assert not page.locator(bh.EXCEPTION).count()
    # the click was used once: choosing another head in the sidebar keeps it
    choose_in_sidebar(page, "Head", "1")
    assert bh.select_value(page, "Head") == "1"
    bh.chart_with_title(page, "Attention pattern, L0 H1").wait_for()
    bh.screenshot(page, "attention-head-clicked")
