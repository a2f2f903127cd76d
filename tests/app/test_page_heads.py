"""AppTest tests of the Heads page (pages/heads.py): whole-input-space views of whichever model is open.

Every chart's data and every sentence is checked against `model_core.interp.input_space` run here, in the
test, on the same model; the clicks (a matrix cell, a mistake, a least confident answer, a map cell) are checked
to open an example that really behaves as the page says (via model_core, not via the page).
"""

from __future__ import annotations

import re
import statistics
import time

import numpy as np
import pytest
from app_helpers import charts, open_app, set_example, shown_text

from explainer import format as fmt
from explainer.charts.heads import fraction, margin
from model_core import TaskConfig, TaskModel, TrainConfig, Trainer, load_model
from model_core.interp import ablation_hooks
from model_core.interp import input_space as isp

PAGE = "../pages/heads.py"
MATRIX = "heads_ablation_click"
TITLE = "Heads across all inputs"


@pytest.fixture(scope="module")
def spaces():
    """{model name: (model, its SpaceRun)} computed here, independently of the app's cache."""
    out = {}
    for name in ("digits-0-9", "digits-0-99"):
        m = load_model(name)
        out[name] = (m, isp.space_run(m))
    return out


@pytest.fixture(scope="module")
def tiny():
    """A model trained for a few steps, as the Train page would add it: half-trained, with mistakes."""
    model = TaskModel.new(TaskConfig(operations=("First", "Max")), "tiny", n_layers=1, n_heads=2, d_model=16,
                          d_ff=32, seed=0)  # fmt: skip
    trainer = Trainer(model, TrainConfig(steps=40, batch_size=32, lr=1e-2, warmup_steps=5, eval_every=40))
    for _ in trainer.run():
        pass
    return model, isp.space_run(model)


def heads_page(name: str = "digits-0-9", session_model: TaskModel | None = None):
    at = open_app()
    if session_model is not None:
        at.session_state["session_models"] = {name: (f"session:test-heads-{name}", session_model)}
        at.run()
    if name != "digits-0-9":
        at.selectbox(key="model_name").select(name).run()
    at.switch_page(PAGE).run()
    assert not at.exception, at.exception
    assert at.title[0].value == TITLE
    return at


def chart(at, title: str):
    """(spec, first dataset) of the chart whose title is `title`."""
    for spec, frames in charts(at):
        t = spec.get("title")
        if (t.get("text") if isinstance(t, dict) else t) == title:
            return spec, frames[0]
    raise AssertionError(f"no chart titled {title!r}")


def texts(at) -> str:
    return "\n".join(str(e.value) for kind in ("markdown", "caption", "info", "success") for e in getattr(at, kind))


def role_lines(at) -> list[str]:
    (md,) = [m.value for m in at.markdown if m.value.startswith("**What the numbers say each head does**")]
    return [line[2:] for line in md.splitlines() if line.startswith("- ")]


def expected_role_lines(model, run) -> list[str]:
    roles = isp.head_roles(model, run=run)
    return [f"**{h}** {isp.head_role(roles, h)}" if isp.head_role(roles, h) else
            f"**{h}**: no clear role from where it attends" for h in roles.heads]  # fmt: skip


# ---------------------------------------------------------------- the views are model_core's numbers
@pytest.mark.parametrize("name", ["digits-0-9", "digits-0-99"])
def test_every_chart_is_the_input_space_views(name, spaces):
    model, run = spaces[name]
    at = heads_page(name)
    roles = isp.head_roles(model, run=run)
    for title, table in (("Attention to the operation token", roles.to_op),
                         ("Attention to the answer's slot", roles.to_answer_slot),
                         ("Attention to the other slots", roles.to_other_slots),
                         ("Entropy of the attention from =", roles.entropy)):  # fmt: skip
        _, df = chart(at, title)
        assert list(df["row"]) == [h for h in roles.heads for _ in roles.operations]
        np.testing.assert_allclose(df["value"], table.ravel(), rtol=1e-5, atol=1e-6, err_msg=title)
        assert list(df["text"]) == [fraction(x) for x in df["value"]]
    matrix = isp.ablation_matrix(model, run=run)
    spec, df = chart(at, "Accuracy with one component switched off")
    params = spec.get("params", []) + [q for u in spec.get("layer", []) for q in u.get("params", [])]
    assert "cell" in [q["name"] for q in params]  # the click selection the page reads
    np.testing.assert_array_equal(df["value"].to_numpy().reshape(-1, len(matrix.operations)),
                                  np.vstack([matrix.clean, matrix.accuracy]))  # fmt: skip
    assert list(df["text"]) == [fmt.percent(x) for x in df["value"]]
    stages, ops, share = isp.lens_by_operation(model, run=run)
    _, df = chart(at, "Answer already the top token")
    assert list(dict.fromkeys(df["row"])) == stages
    np.testing.assert_allclose(df["value"].to_numpy().reshape(len(stages), len(ops)), share)
    # the score by digit of the sidebar's head (layer 0, head 0 by default)
    table, explained = isp.score_by_digit(model, 0, 0, run=run)
    for k, op in enumerate(ops):
        _, df = chart(at, f"{op} · L0H0")
        got = df.pivot(index="slot", columns="value", values="score").to_numpy()  # [slot, value]
        np.testing.assert_allclose(got, table[k], rtol=1e-5, atol=1e-6)
    # no cell reads "100.0%" or "1.00" unless it is exactly all
    for _, frames in charts(at):
        if "text" in frames[0]:
            for v, t in zip(frames[0]["value"], frames[0]["text"], strict=True):
                assert t not in ("100.0%", "100%", "1.00") or v == 1.0, (v, t)
    page = texts(at)
    n = len(run.exprs)
    if name == "digits-0-9":
        assert f"every expression of the task ({n:,})" in page and n == 5000
        margin = isp.answer_margin(run)
        _, df = chart(at, "Right or wrong, all 5,000 expressions")
        np.testing.assert_allclose(df["margin"], margin, rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(df["right"], run.right)
    else:
        assert f"a sample of {n:,} held-out expressions (of 5,000,000)" in page
        assert "No map of every expression: this task has 5,000,000 of them" in page
        assert "Right or wrong" not in " ".join(str(s.get("title")) for s, _ in charts(at))
    # the sentences are computed from the same numbers
    for k, op in enumerate(ops):
        i = int(np.argmin(matrix.accuracy[:, k]))
        low = matrix.accuracy[i, k]
        what = f"{matrix.components[i]} ({fmt.percent(low)})" if low < matrix.clean[k] else "none"
        assert re.search(rf"\b{op}(, [A-Za-z]+)*: {re.escape(what)}", page), (op, what)
        first_half = stages[int(np.flatnonzero(share[:, k] >= 0.5)[0])]
        assert re.search(rf"{op}[^;]*: half of the inputs at \*\*{re.escape(first_half)}\*\*", page), (op, page)
    wrong, _ = isp.hard_cases(model, run=run)
    assert (f"It makes no mistakes over the {n:,} expressions" in page) == (not wrong)


def test_the_role_text_is_model_cores_and_changes_with_the_model(spaces):
    lines = {}
    for name, (model, run) in spaces.items():
        lines[name] = role_lines(heads_page(name))
        assert lines[name] == expected_role_lines(model, run)
    assert lines["digits-0-9"] != lines["digits-0-99"]


def test_the_picked_head_is_the_sidebars_and_its_sentence_is_its_numbers(spaces):
    model, run = spaces["digits-0-9"]
    ops = list(model.task.operations)

    def follows(r):  # the operations whose score rises (falls) with the value in every slot, computed here
        return ([op for k, op in enumerate(ops) if r[k].min() >= 0.7],
                [op for k, op in enumerate(ops) if r[k].max() <= -0.7])

    # the layer-1 head whose score follows the value for the most operations (found, not assumed)
    trends = {h: isp.score_trend(isp.score_by_digit(model, 1, h, run=run)[0]) for h in range(4)}
    head = max(trends, key=lambda h: sum(map(len, follows(trends[h]))))
    at = heads_page()
    at.selectbox(key="heads_pick").select(f"L1H{head}").run()
    assert not at.exception, at.exception
    assert (at.session_state["layer"], at.session_state["head"]) == (1, head)  # the sidebar follows
    table, explained = isp.score_by_digit(model, 1, head, run=run)
    _, df = chart(at, f"Max · L1H{head}")
    np.testing.assert_allclose(df.pivot(index="slot", columns="value", values="score").to_numpy(), table[3],
                               rtol=1e-5, atol=1e-6)  # fmt: skip
    up, down = follows(isp.score_trend(table))
    (md,) = [m.value for m in at.markdown if f"of the variance of L1H{head}'s score" in m.value]
    assert f"explain **{fmt.percent(explained)}**" in md
    assert up or down, "some layer-1 head's score should follow the value for some operation"
    if up:
        assert f"rises with the value for {', '.join(up)}" in md
    if down:
        assert f"falls{'' if up else ' with the value'} for {', '.join(down)}" in md
    # and the other way: the sidebar's head sets the page's
    at.selectbox(key="layer").select(0).run()
    at.selectbox(key="head").select(3).run()
    assert at.selectbox(key="heads_pick").value == "L0H3"
    chart(at, "Max · L0H3")


# ---------------------------------------------------------------- clicks open a view that is what it says
def flips(model, text: str, component: str) -> bool:
    """Does zeroing `component` turn the model's right answer on `text` into a wrong one? (whole model, hooks)"""
    one = model.expressions([model.parse(text)])
    return model.evaluate(one)["accuracy"] == 1.0 and \
        model.evaluate(one, fwd_hooks=ablation_hooks(model, [component]))["accuracy"] == 0.0  # fmt: skip


@pytest.mark.parametrize("name", ["digits-0-9", "digits-0-99"])  # a link keeps the open model
def test_clicking_a_head_cell_opens_the_attention_page_with_the_head_off_on_an_example_it_flips(name, spaces):
    model, run = spaces[name]
    matrix = isp.ablation_matrix(model, run=run)
    heads = [i for i, c in enumerate(matrix.components) if "mlp" not in c]
    i, k = np.unravel_index(np.argmin(matrix.accuracy[heads]), (len(heads), len(matrix.operations)))
    comp, op = matrix.components[heads[i]], matrix.operations[k]
    layer, head = int(comp[1]), int(comp[3])
    at = heads_page(name)
    at.session_state[MATRIX] = {"selection": {"cell": [{"row": comp, "operation": op}]}}
    at.run()
    assert not at.exception, at.exception
    assert at.title[0].value == "Attention"
    assert at.session_state["model_name"] == name, "the link switched the model"
    text = at.session_state["example"]
    assert text.startswith(op + " ") and flips(model, text, comp), (comp, text)
    assert (at.session_state["layer"], at.session_state["head"]) == (layer, head)
    cfg = model.transformer.cfg
    ss = at.session_state
    off = [(la, h) for la in range(cfg.n_layers) for h in range(cfg.n_heads) if not ss[f"attn_on_{la}_{h}"]]
    assert off == [(layer, head)]
    # the Attention page agrees: the answer changes without that head
    assert any("The answer changes" in w.value for w in at.warning)
    # coming back does not re-open it
    at.switch_page(PAGE).run()
    assert at.title[0].value == TITLE and not at.exception


def test_clicking_an_mlp_cell_opens_how_it_answers_and_a_cell_that_flips_nothing_says_so(spaces):
    model, run = spaces["digits-0-9"]
    matrix = isp.ablation_matrix(model, run=run)
    mlps = [c for c in matrix.components if "mlp" in c]
    acc = {(c, op): matrix.accuracy[matrix.components.index(c), k] for c in mlps
           for k, op in enumerate(matrix.operations)}  # fmt: skip
    comp, op = min(acc, key=acc.get)
    assert acc[comp, op] < 1  # some MLP matters on the shipped model
    at = heads_page()
    at.session_state[MATRIX] = {"selection": {"cell": [{"row": comp, "operation": op}]}}
    at.run()
    assert not at.exception, at.exception
    assert at.title[0].value == "How it answers"
    assert flips(model, at.session_state["example"], comp)
    # a cell whose component changes no answer of that operation: a sentence, no page switch
    none = [(c, op) for c in matrix.components for k, op in enumerate(matrix.operations)
            if isp.example_where_ablation_flips(run, c, k) is None]  # fmt: skip
    assert none, "every component flips some answer of every operation"
    c, op = none[0]
    at = heads_page()
    before = at.session_state["example"]
    at.session_state[MATRIX] = {"selection": {"cell": [{"row": c, "operation": op}]}}
    at.run()
    assert at.title[0].value == TITLE and at.session_state["example"] == before
    assert any(f"Switching off **{c}** changes no {op} answer from right to wrong" in i.value for i in at.info)
    # the "nothing off" row and a stale cell are ignored
    at.session_state[MATRIX] = {"selection": {"cell": [{"row": "nothing off", "operation": op}]}}
    at.run()
    assert at.title[0].value == TITLE and not at.info


def test_a_least_confident_answer_and_a_map_cell_open_on_the_overview(spaces):
    model, run = spaces["digits-0-9"]
    _, weak = isp.hard_cases(model, run=run, k=10)
    at = heads_page()
    labels = [b.label for b in at.button if b.key and b.key.startswith("heads_weak_")]
    assert labels == [f"{t} · margin {margin(m)}" for t, m in weak]
    at.button(key="heads_weak_0").click().run()
    assert not at.exception and at.title[0].value == "Inside a transformer"
    assert at.session_state["example"] == weak[0][0]
    at.switch_page(PAGE).run()
    text = run.exprs.expression(1234).text
    at.session_state["heads_map_click"] = {"selection": {"expr": [{"expression": text}]}}
    at.run()
    assert not at.exception and at.title[0].value == "Inside a transformer"
    assert at.session_state["example"] == text


# ---------------------------------------------------------------- a model trained a minute ago
def test_a_page_trained_model_renders_with_true_text_and_its_mistakes_open(tiny):
    model, run = tiny
    at = heads_page("tiny", session_model=model)
    page = texts(at)
    wrong, weak = isp.hard_cases(model, run=run, k=10)
    n = len(run.exprs)
    assert n == 2000 and 0 < len(wrong) < n, "the half-trained model should make some mistakes"
    assert f"It gets **{len(wrong):,}** of {n:,} wrong ({fmt.percent(len(wrong) / n)})" in page
    assert role_lines(at) == expected_role_lines(model, run)
    assert f"Clean accuracy {fmt.percent(float(run.right.mean()))}" in page
    matrix = isp.ablation_matrix(model, run=run)
    _, df = chart(at, "Accuracy with one component switched off")
    np.testing.assert_array_equal(df["value"].to_numpy().reshape(-1, 2), np.vstack([matrix.clean, matrix.accuracy]))
    _, df = chart(at, "Right or wrong, all 2,000 expressions")
    assert (~df["right"]).sum() == len(wrong)
    buttons = [b for b in at.button if b.key and b.key.startswith("heads_wrong_")]
    assert [b.label for b in buttons] == wrong[:10]
    e = model.parse(wrong[0])
    assert model.answer(wrong[0]).value != e.answer  # it really gets it wrong


def test_a_mistake_opens_on_the_overview_with_the_same_model(tiny):
    model, run = tiny
    wrong, _ = isp.hard_cases(model, run=run, k=10)
    at = heads_page("tiny", session_model=model)
    at.button(key="heads_wrong_0").click().run()
    assert not at.exception and at.title[0].value == "Inside a transformer"
    assert at.session_state["example"] == wrong[0]
    assert at.session_state["model_name"] == "tiny", "the link switched the model"


def test_rerun_after_an_edit_is_fast_once_the_space_is_cached():
    """The page reads cached views and cached charts: an edit of the example (which this page does not show)
    reruns it quickly. A loose bound (a shared, loaded machine); the measured figure is printed."""
    at = heads_page()
    times = []
    for text in ["Min ( 4 8 1 )", "Max ( 7 2 9 )"] * 3:
        start = time.perf_counter()
        set_example(at, text)
        times.append(time.perf_counter() - start)
        assert not at.exception
    print(f"heads page rerun after an edit: median {statistics.median(times):.3f} s of {times}")
    assert statistics.median(times) < 2.0


def test_what_stacking_blocks_adds_reads_the_lens_after_block_0_and_at_the_end():
    from model_core.interp import input_space as isp

    at = open_app(PAGE)
    model = load_model("digits-0-9")
    stages, ops, lens = isp.lens_by_operation(model, run=isp.space_run(model))
    text = " ".join(shown_text(m.value) for m in at.main.markdown)
    assert "What stacking blocks adds." in text
    after0 = stages.index("block 0 out")
    for k, op in enumerate(ops):
        assert f"{fmt.percent(lens[after0, k])} after block 0, {fmt.percent(lens[-1, k])} at the end" in text, op
    needs = [op for k, op in enumerate(ops) if lens[-1, k] - lens[after0, k] >= 0.5]
    assert (f"{', '.join(needs)} need" in text) if needs else ("Block 0 alone already" in text)


@pytest.mark.parametrize("name", ["digits-0-9", "digits-0-99"])
def test_stacking_blocks_says_what_each_blocks_heads_read(spaces, name):
    """One line per block; each head that shows a role is named under its own block with that role, computed
    here from the head-role table over the same space."""
    model, space = spaces[name]
    roles = isp.head_roles(model, run=space)
    at = heads_page(name)
    [text] = [m.value for m in at.markdown if "What each block's heads read" in m.value]
    lines = [ln for ln in text.splitlines() if ln.startswith("- **Block")]
    assert len(lines) == model.transformer.cfg.n_layers
    for h in roles.heads:
        role = isp.head_role(roles, h)
        line = lines[int(h[1])]
        assert (f"{h} {role}" in line) == bool(role), (h, line)
        assert all(f"{h} " not in other for k, other in enumerate(lines) if k != int(h[1]))
