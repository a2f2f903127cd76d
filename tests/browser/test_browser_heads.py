"""The "Heads across all inputs" page in a real Chromium: click an ablation-matrix cell, a least confident answer
and a cell of the accuracy map, and check what opens against model_core run here."""

from __future__ import annotations

import re

import browser_helpers as bh
import numpy as np
import pytest
from test_browser import app_url, browser, new_tab  # noqa: F401  (the shared server, browser and tab fixtures)

from model_core import load_model
from model_core.interp import input_space as isp

pytestmark = pytest.mark.browser
MATRIX = "Accuracy with one component switched off"
MAP = "Right or wrong, all 5,000 expressions"


@pytest.fixture(scope="module")
def shipped():
    model = load_model("digits-0-9")
    return model, isp.space_run(model)


def main_text(page) -> str:
    return page.locator("[data-testid='stMain']").inner_text()


def assert_clean(page, where: str) -> None:
    errors = page.locator(bh.EXCEPTION)
    assert errors.count() == 0, f"{where}: " + "\n".join(errors.all_inner_texts())


def click_mark(page, chart_title: str, label_part: str) -> None:
    """Click the rect mark of the chart titled `chart_title` whose label (tooltip text) contains `label_part`."""
    chart = bh.chart_with_title(page, chart_title)
    chart.locator(bh.RECT_MARKS).first.wait_for(state="attached")
    quoted = '"' + label_part.replace("\\", "\\\\").replace('"', '\\"') + '"'
    mark = chart.locator(f"{bh.RECT_MARKS}[aria-label*={quoted}]").first
    mark.scroll_into_view_if_needed()
    box = mark.bounding_box()  # a click where a user would click: the middle, where a cell prints its value
    bh.watch_for_run(page)
    page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)


def test_a_matrix_cell_opens_attention_with_that_head_off_on_an_example_it_flips(new_tab, app_url, shipped):  # noqa: F811
    model, run = shipped
    matrix = isp.ablation_matrix(model, run=run)
    heads = [i for i, c in enumerate(matrix.components) if "mlp" not in c]
    i, k = np.unravel_index(np.argmin(matrix.accuracy[heads]), (len(heads), len(matrix.operations)))
    comp, op = matrix.components[heads[i]], matrix.operations[k]
    layer, head = int(comp[1]), int(comp[3])
    expected = run.exprs.expression(isp.example_where_ablation_flips(run, comp, int(k))).text

    page = new_tab()
    bh.open_app(page, app_url, "heads")
    assert_clean(page, "Heads")
    page.get_by_text(re.compile(rf"Most needed.*{op}: {comp}")).wait_for()
    click_mark(page, MATRIX, f"operation: {op}; switched off: {comp};")
    page.wait_for_url(re.compile(r"/attention"), timeout=60_000)
    bh.wait_idle(page)
    assert_clean(page, "Attention opened from the matrix")
    assert bh.example_box(page).input_value() == expected
    cfg = model.transformer.cfg
    for lay in range(cfg.n_layers):
        for h in range(cfg.n_heads):
            toggle = page.locator(f".st-key-attn_on_{lay}_{h} input")
            toggle.wait_for(state="attached")
            assert toggle.is_checked() == ((lay, h) != (layer, head)), (lay, h)
    assert bh.select_value(page, "Layer") == str(layer) and bh.select_value(page, "Head") == str(head)
    page.get_by_text("The answer changes").wait_for()
    bh.screenshot(page, "heads-opened-attention")


def test_a_least_confident_answer_and_a_map_cell_open_on_the_overview(new_tab, app_url, shipped):  # noqa: F811
    model, run = shipped
    _, weak = isp.hard_cases(model, run=run, k=10)
    page = new_tab()
    bh.open_app(page, app_url, "heads")
    button = page.locator(".st-key-heads_weak_0 button")
    assert button.inner_text().strip().startswith(weak[0][0])
    bh.screenshot(page, "heads-page")
    button.click()
    page.wait_for_function("() => location.pathname === '/'", timeout=60_000)
    bh.wait_metric(page, "Example", weak[0][0])
    assert bh.metric(page, "Model's answer") == str(model.answer(weak[0][0]).value)
    assert_clean(page, "Overview opened from a least confident answer")

    bh.go_to(page, "Heads across all inputs")
    text = weak[3][0]
    click_mark(page, MAP, f"expression: {text};")
    page.wait_for_function("() => location.pathname === '/'", timeout=60_000)
    bh.wait_metric(page, "Example", text)
    assert_clean(page, "Overview opened from the map")
