"""The "How it answers" page: its charts show the model_core.interp results for the current example, its
clicks open what they promise, and its text follows the model and the example (a page-trained one too)."""

from __future__ import annotations

import numpy as np
import pytest
from app_helpers import charts, open_app, set_example

from model_core import TaskConfig, TaskModel, TrainConfig, interp, load_model
from model_core.training.trainer import Trainer

PAGE = "../pages/mechanism.py"


def chart_data(at, title_start: str):
    for spec, frames in charts(at):
        title = spec.get("title")
        title = title.get("text") if isinstance(title, dict) else title
        if title and str(title).startswith(title_start):
            return frames[0]
    raise AssertionError(f"no chart titled {title_start!r}")


def page_text(at) -> str:
    return "\n".join(m.value for m in at.markdown) + "\n".join(i.value for i in at.info)


@pytest.fixture(scope="module")
def m9():
    return load_model("digits-0-9")


def test_the_attribution_bars_are_the_direct_logit_attribution_and_sum_to_the_real_value(m9):
    at = open_app(PAGE)
    set_example(at, "First ( 3 5 6 )")
    df = chart_data(at, "Direct contributions")
    b = interp.batch(m9, ["First ( 3 5 6 )"])
    att = interp.attribute(m9.transformer, b.tokens, b.answer_pos)
    parts = df[df["component"] != "total"]
    assert list(parts["component"]) == [n.replace("blocks.", "L") for n in att.names]  # L0.ln1.b: shorter
    np.testing.assert_allclose(parts["value"], att.diff[0], rtol=1e-6)
    total = float(df.loc[df["component"] == "total", "value"].iloc[0])
    assert total == pytest.approx(att.diff_total[0], rel=1e-6)
    assert total == pytest.approx(parts["value"].sum(), abs=1e-4)


@pytest.mark.parametrize("how,mean", [("zeroing", False), ("the mean over other inputs", True)])
def test_the_ranked_ablations_are_every_component_switched_off_alone(m9, how, mean):
    at = open_app(PAGE)
    set_example(at, "Max ( 1 8 2 )")
    at.segmented_control(key="mech_ablation").set_value(how).run()
    df = chart_data(at, "Each head and MLP switched off alone")
    b = interp.batch(m9, ["Max ( 1 8 2 )"])
    for _, row in df.iterrows():  # one ablation at a time: the page batched them all in one pass
        one = interp.ablate(m9, b.tokens, b.answer_pos, [[row["component"]]], mean=mean)
        assert row["value"] == pytest.approx(one.delta_logit_diff[0, 0], abs=1e-5)
        assert bool(row["flipped"]) == bool(one.flipped[0, 0])


def test_first_on_0_9_names_the_head_whose_removal_flips_it(m9):
    at = open_app(PAGE)
    set_example(at, "First ( 3 5 6 )")
    df = chart_data(at, "Each head and MLP switched off alone")
    worst = df.sort_values("value").iloc[0]
    assert f"Switching off **{worst['component']}** costs the most" in page_text(at)
    if worst["flipped"]:
        assert "flips the answer" in page_text(at)


def test_clicking_a_heads_bar_opens_it_switched_off_on_the_attention_page(m9):
    at = open_app(PAGE)
    set_example(at, "First ( 3 5 6 )")
    at.session_state["mech_ablation_click"] = {"selection": {"comp": [{"component": "L0H3"}]}}
    at.run()
    assert not at.exception
    assert at.session_state["attn_on_0_3"] is False and at.session_state["attn_on_0_0"] is True
    assert at.session_state["layer"] == 0 and at.session_state["head"] == 3
    assert any("Switch heads off" in s.value for s in at.subheader)  # the Attention page is showing


def test_the_patching_grid_is_the_sweep_and_a_clicked_cell_shows_that_patched_run(m9):
    at = open_app(PAGE)
    set_example(at, "Max ( 7 2 9 )")
    cf = interp.counterfactuals(m9, "Max ( 7 2 9 )")
    at.radio(key="mech_cf").set_value(f"other operation: {cf['other operation'].text}").run()
    df = chart_data(at, "Patching Max ( 7 2 9 ) into")
    sweep = interp.patch_sweep(m9, "Max ( 7 2 9 )", cf["other operation"])
    np.testing.assert_allclose(df["value"].to_numpy().reshape(sweep.grid.shape), sweep.grid, atol=1e-6)
    row, col = 4, len(sweep.roles) - 1  # L1 attention out at `=`
    at.session_state["mech_patch_click"] = {"selection": {"cell": [{"row": row, "col": col}]}}
    at.run()
    pr = interp.patched_logits(m9, "Max ( 7 2 9 )", cf["other operation"], [interp.Patch(sweep.hooks[row], col)])
    top = m9.vocab.decode([int(pr.logits.argmax())])[0]
    assert f"now answers `{top}`" in page_text(at) and f"recovery {pr.recovery:.2f}" in page_text(at)


def test_a_typed_counterfactual_that_does_not_parse_keeps_the_last_valid_one():
    at = open_app(PAGE)
    at.radio(key="mech_cf").set_value("type one").run()
    at.text_input(key="mech_cf_text").input("Min ( 7 2 9 )").run()
    assert any(t.startswith("Patching Max ( 7 2 9 ) into Min ( 7 2 9 )") for t in chart_titles_of(at))
    at.text_input(key="mech_cf_text").input("Min ( 7 2").run()
    assert not at.exception and at.error and "Still using Min ( 7 2 9 )" in at.error[0].value
    assert any(t.startswith("Patching Max ( 7 2 9 ) into Min ( 7 2 9 )") for t in chart_titles_of(at))
    at.text_input(key="mech_cf_text").input("Last ( 7 2 9 )").run()  # the same answer: nothing to recover
    assert not at.exception and any("same answer" in w.value for w in at.warning)


def test_an_example_with_no_generated_input_does_not_leave_the_next_one_on_type_one(m9):
    """`Second ( 5 5 5 )`: no other operation or value changes the answer, so "type one" is the only choice; the
    next example's generated input is chosen again (it had stuck on "type one", with an empty box and no grid),
    while "type one" chosen by the reader stays chosen."""
    assert not interp.counterfactuals(m9, "Second ( 5 5 5 )")  # the model's own: none changes its answer
    at = open_app(PAGE)
    set_example(at, "Second ( 5 5 5 )")
    assert at.radio(key="mech_cf").options == ["type one"] and not at.exception
    set_example(at, "Min ( 4 8 1 )")
    cf = interp.counterfactuals(m9, "Min ( 4 8 1 )")
    first = next(iter(cf))
    assert at.radio(key="mech_cf").value == f"{first}: {cf[first].text}"
    assert any(t.startswith(f"Patching Min ( 4 8 1 ) into {cf[first].text}") for t in chart_titles_of(at))
    at.radio(key="mech_cf").set_value("type one").run()  # chosen, not forced: it stays
    set_example(at, "Second ( 5 5 5 )")
    set_example(at, "Max ( 7 2 9 )")
    assert at.radio(key="mech_cf").value == "type one"


def chart_titles_of(at) -> list[str]:
    out = []
    for spec, _ in charts(at):
        t = spec.get("title")
        out.append(t.get("text") if isinstance(t, dict) else str(t))
    return out


def test_steering_says_whether_the_answer_follows_as_the_model_does(m9):
    at = open_app(PAGE)
    set_example(at, "Max ( 7 2 9 )")
    at.selectbox(key="mech_steer_heads").select("all of layer 1").run()
    at.segmented_control(key="mech_steer_slot").set_value("slot 2: 2").run()
    b = interp.batch(m9, ["Max ( 7 2 9 )"])
    top = m9.vocab.decode([int(interp.steer(m9, b.tokens, b.answer_pos, [f"L1H{h}" for h in range(4)], [4])[0])])[0]
    text = page_text(at)
    assert f"top token at `=` is **`{top}`**" in text
    assert ("**follows**" in text) == (top == "2")


def test_the_story_changes_with_the_example_and_the_model():
    at = open_app(PAGE)
    first = page_text(at)
    set_example(at, "First ( 3 5 6 )")
    second = page_text(at)
    at.selectbox(key="model_name").select("digits-0-99").run()
    third = page_text(at)
    assert not at.exception and len({first, second, third}) == 3
    assert at.segmented_control(key="mech_step")  # a causal model: one view per answer step
    steps = at.segmented_control(key="mech_step").options
    at.segmented_control(key="mech_step").set_value(steps[1]).run()
    assert not at.exception and any(t.startswith("Direct contributions at ") for t in chart_titles_of(at))


def test_a_page_trained_model_renders_with_a_true_story():
    model = TaskModel.new(TaskConfig(), "trained here", n_layers=2, n_heads=2, d_model=32, d_ff=64)
    for _ in Trainer(model, TrainConfig(steps=30, eval_every=30, warmup_steps=5)).run():
        pass
    at = open_app(PAGE)
    at.session_state["session_models"] = {"trained here": ("session:trained-here", model)}
    at.run()
    at.selectbox(key="model_name").select("trained here").run()
    assert not at.exception
    top = model.answer("Max ( 7 2 9 )")
    first = model.vocab.decode([int(top.tokens[top.answer_pos + 1])])[0]
    assert f"the model's top token is `{first}`" in page_text(at)
    assert ("this is right" in page_text(at)) == (first == "9")
