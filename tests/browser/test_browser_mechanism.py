"""The "How it answers" page in a real Chromium: click a patching cell, steer the last layer, click a bar."""

from __future__ import annotations

import re
from urllib.parse import quote

import browser_helpers as bh
from test_browser import app_url, browser, new_tab  # noqa: F401  (the shared server, browser and tab fixtures)

from model_core import interp, load_model

EXAMPLE = "Max ( 7 2 9 )"  # the app's default on digits-0-9


def main_text(page) -> str:
    return page.locator("[data-testid='stMain']").inner_text()


def test_click_a_patching_cell_then_steer_then_open_a_head_switched_off(new_tab, app_url):  # noqa: F811
    model = load_model("digits-0-9")
    page = new_tab()
    bh.open_app(page, app_url, "mechanism")
    grid = bh.chart_with_title(page, f"Patching {EXAMPLE} into")
    grid.locator(bh.RECT_MARKS).first.wait_for(state="attached")
    cf = interp.counterfactuals(model, EXAMPLE)["other operation"]
    sweep = interp.patch_sweep(model, EXAMPLE, cf)
    row, col = 4, len(sweep.roles) - 1  # L1 attention out at `=`
    cells = grid.locator(bh.RECT_MARKS)
    assert cells.count() == sweep.grid.size
    bh.watch_for_run(page)
    cells.nth(row * len(sweep.roles) + col).click()
    bh.wait_run_finished(page)
    pr = interp.patched_logits(model, EXAMPLE, cf, [interp.Patch(sweep.hooks[row], col)])
    top = model.vocab.decode([int(pr.logits.argmax())])[0]
    page.get_by_text(re.compile(r"the corrupted run now answers")).wait_for()
    assert f"now answers {top}" in main_text(page).replace("`", "")

    bh.watch_for_run(page)
    page.locator(".st-key-mech_steer_slot button", has_text="slot 2: 2").click()
    bh.wait_run_finished(page)
    b = interp.batch(model, [EXAMPLE])
    steered = model.vocab.decode([int(interp.steer(model, b.tokens, b.answer_pos, [f"L1H{h}" for h in range(4)],
                                                   [4])[0])])[0]  # fmt: skip
    page.get_by_text(re.compile(r"Steered, the model's top token")).wait_for()
    assert re.search(rf"Steered, the model's top token at\s*=\s*is\s*{steered}", main_text(page))

    bars = bh.chart_with_title(page, "Each head and MLP switched off alone")
    labels = bh.mark_labels(bars)
    first_head = next(i for i, lab in enumerate(labels) if re.search(r"component: L\dH\d", lab))
    head = re.search(r"component: (L\dH\d)", labels[first_head]).group(1)
    bh.watch_for_run(page)
    bars.locator(bh.MARKS).nth(first_head).click()
    page.wait_for_url(re.compile(r"/attention"), timeout=30_000)
    bh.wait_idle(page)
    toggle = page.locator(f".st-key-attn_on_{head[1]}_{head[3]} input")
    toggle.wait_for(state="attached")
    assert not toggle.is_checked(), f"{head} should be switched off on the Attention page"
    assert page.locator(bh.EXCEPTION).count() == 0
    bh.screenshot(page, "mechanism-opened-attention")


def test_a_nested_patching_grid_gives_every_row_room_beside_its_long_role_labels(new_tab, app_url):  # noqa: F811
    """The grid's height holds its upright role labels ("17 arg3.inner.v2") and legend too: every row drawn tall
    enough to read (squeezed, Vega dropped every other row label and the cells were slivers)."""
    text = "Sum ( Max ( 5 3 9 ) 7 Min ( 2 8 ) )"
    model = load_model("nested-0-9")
    sweep = interp.patch_sweep(model, text, interp.counterfactuals(model, text)["other operation"])
    page = new_tab()
    bh.open_app(page, app_url, "mechanism?model=nested-0-9&example=" + quote(text), timeout=240_000)
    grid = bh.chart_with_title(page, f"Patching {text} into")
    cells = grid.locator(bh.RECT_MARKS)
    cells.first.wait_for(state="attached")
    assert cells.count() == sweep.grid.size and max(map(len, sweep.roles)) > 12
    first_of_each_row = [cells.nth(r * len(sweep.roles)).bounding_box() for r in range(len(sweep.hooks))]
    assert min(box["height"] for box in first_of_each_row) >= 20, first_of_each_row
