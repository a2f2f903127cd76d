"""End-to-end: every view is a link. A shared address opens the same view in another browser, Copy link gives
that address, and Back / Forward go through the views the address held.

    python -m pytest tests/browser/test_browser_links.py -q
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit

import numpy as np
import pytest

from tests.browser import browser_helpers as bh
from tests.browser.test_browser import app_url, assert_clean, expected_pattern, heatmap_weights  # noqa: F401
from tests.browser.test_browser_attention import choose_in_sidebar

try:
    from playwright.sync_api import sync_playwright
except ImportError:  # the test fails with a message below, rather than being skipped
    sync_playwright = None

pytestmark = pytest.mark.browser

LINK = {"model": "digits-0-99", "example": "Max ( 47 82 19 )", "layer": "1", "head": "2", "off": "L0H3"}


@pytest.fixture(scope="module")
def playwright():
    if sync_playwright is None:
        pytest.fail("Python playwright is missing: run `bash tests/run.sh` (it installs the dev requirements).")
    if not Path(bh.CHROMIUM).exists():
        pytest.fail(bh.MISSING_CHROMIUM)
    with sync_playwright() as pw:
        yield pw


def query(page) -> dict[str, str]:
    return dict(parse_qsl(urlsplit(page.url).query))


def pattern_weights(page, layer: int, head: int) -> dict[tuple[int, int], float]:
    chart = bh.chart_with_title(page, f"Attention pattern, L{layer} H{head}")
    chart.locator(bh.RECT_MARKS).first.wait_for(state="attached")
    return heatmap_weights(bh.mark_labels(chart))


def head_switch(page, layer: int, head: int):
    return page.locator(f".st-key-attn_on_{layer}_{head} input[type='checkbox']")


def test_a_shared_link_opens_the_same_view_in_another_browser(playwright, app_url):  # noqa: F811
    from model_core import load_model

    path = f"attention?{urlencode(LINK)}"
    seen = []
    for _ in range(2):  # two browsers, each with its own profile: nothing is shared but the address
        with bh.chromium_context(playwright, width=1280, height=900) as ctx:
            page = ctx.new_page()
            bh.open_app(page, app_url, path)
            assert_clean(page, "Attention from a link")
            assert bh.select_value(page, "Model") == "digits-0-99"
            assert bh.example_box(page).input_value() == "Max ( 47 82 19 )"
            assert (bh.select_value(page, "Layer"), bh.select_value(page, "Head")) == ("1", "2")
            assert not head_switch(page, 0, 3).is_checked() and head_switch(page, 0, 2).is_checked()
            seen.append(pattern_weights(page, 1, 2))
            assert query(page) == LINK
    assert seen[0] == seen[1]
    want = expected_pattern(load_model("digits-0-99"), "Max ( 47 82 19 )", 1, 2)
    assert len(seen[0]) == want.size
    np.testing.assert_allclose([seen[0][q, k] for q, k in np.ndindex(want.shape)], want.ravel(), atol=6e-5)


def test_copy_link_gives_the_address_and_back_and_forward_go_through_the_views(playwright, app_url):  # noqa: F811
    with bh.chromium_context(playwright, width=1280, height=900) as ctx:
        ctx.grant_permissions(["clipboard-read", "clipboard-write"], origin=app_url)
        page = ctx.new_page()
        bh.open_app(page, app_url, f"attention?{urlencode(LINK)}")
        choose_in_sidebar(page, "Head", "3")
        page.wait_for_function("() => new URLSearchParams(location.search).get('head') === '3'")
        assert query(page) == {**LINK, "head": "3"}

        page.locator(".st-key-links_share button").first.click()
        code = page.locator("[data-testid='stPopoverBody'] [data-testid='stCode'] code")
        code.wait_for()
        shown = code.inner_text().strip()
        assert shown == page.url
        code.hover()
        page.locator("[data-testid='stPopoverBody'] [data-testid='stCode'] button").first.click()
        assert page.evaluate("() => navigator.clipboard.readText()").strip() == page.url
        page.keyboard.press("Escape")

        bh.watch_for_run(page)
        page.go_back()
        bh.wait_run_finished(page)
        page.wait_for_function("() => new URLSearchParams(location.search).get('head') === '2'")
        bh.wait_idle(page)
        assert bh.select_value(page, "Head") == "2"
        assert pattern_weights(page, 1, 2)

        bh.watch_for_run(page)
        page.go_forward()
        bh.wait_run_finished(page)
        page.wait_for_function("() => new URLSearchParams(location.search).get('head') === '3'")
        bh.wait_idle(page)
        assert bh.select_value(page, "Head") == "3"
        assert_clean(page, "after Back and Forward")


COMPARE = {"model": "digits-0-9", "example": "Max ( 7 2 9 )", "compare": "Max ( 7 2 8 )"}
STAGE_CHARTS = {"tokens": ("Block 0's input (token + position)", "tokens_compare"),
                "attention": ("Attention pattern L0 H0", "attn_compare"),
                "residual": ("Stream norms", "resid_compare"),
                "backprop": ("Gradient norms", "bp_compare")}  # fmt: skip


def test_compare_mode_on_every_stage_page(playwright, app_url):  # noqa: F811
    with bh.chromium_context(playwright, width=1280, height=900) as ctx:
        page = ctx.new_page()
        for path, (title, key) in STAGE_CHARTS.items():
            bh.open_app(page, app_url, f"{path}?{urlencode(COMPARE)}")
            assert_clean(page, path)
            for text in ("Max ( 7 2 9 )", "Max ( 7 2 8 )"):  # side by side: one chart per run, both drawn
                chart = bh.chart_with_title(page, f"{title}: {text}")
                chart.locator(bh.RECT_MARKS).first.wait_for(state="attached")
            bh.watch_for_run(page)
            page.locator(f".st-key-{key} button").filter(has_text="difference").click()
            bh.wait_run_finished(page)
            diff = bh.chart_with_title(page, f"{title}: first minus second")
            diff.locator(bh.RECT_MARKS).first.wait_for(state="attached")
            assert query(page)["cmp"] == "2"
        bh.open_app(page, app_url, f"output?{urlencode(COMPARE)}")
        bars = bh.chart_with_title(page, "Next-token probabilities of the two runs")
        bars.locator(bh.MARKS).first.wait_for(state="attached")
        assert len(bh.mark_labels(bars)) >= 4
        bh.open_app(page, app_url, f"?{urlencode(COMPARE)}")
        bh.chart_with_title(page, "How far apart the two residual streams are").wait_for()
        assert "first part noticeably" in page.locator("[data-testid='stMain']").inner_text()
