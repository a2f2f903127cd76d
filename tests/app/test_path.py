"""The path through the course (explainer/path.py, drawn by explainer/app.py around every page): Previous / Next
in course order, the Overview's cards for every page, the Predict-then-reveal question of each stage page, and
the glossary.

AppTest cannot click an `st.page_link` (the browser follows it); a click is simulated by switching to the page
the link names, as the browser does (tests/browser/test_browser_path.py clicks the real link).
"""

from __future__ import annotations

import numpy as np
import pytest

from explainer import format as fmt
from explainer.glossary import TERMS
from model_core import load_model
from model_core.analysis import run_example
from model_core.config import TrainConfig
from tests.app.app_helpers import open_app, render_markdown, select_imperfect_99, set_example, shown_text
from tests.fixtures import cases

# (url path, title, file) in course order: the order of the sidebar's navigation
COURSE = [("", "Overview", "overview"), ("tokens", "Tokens & embeddings", "tokens"),
          ("attention", "Attention", "attention"), ("residual", "Residual, LayerNorm & FFN", "residual"),
          ("output", "Output & softmax", "output"), ("backprop", "Backprop", "backprop"),
          ("mechanism", "How it answers", "mechanism"), ("heads", "Heads across all inputs", "heads"),
          ("loop", "The training loop", "loop"), ("train", "Train", "train")]  # fmt: skip
FILE = {url: f"../pages/{file}.py" for url, _, file in COURSE}
BRIEF_TERMS = ["d_model", "d_head", "residual stream", "LayerNorm (pre/post-norm)", "GELU", "attention pattern",
               "query / key / value", "logit", "softmax", "temperature", "cross-entropy", "teacher forcing",
               "held-out", "validation", "AdamW", "momentum", "warm-up", "gradient clipping", "weight decay",
               "ablation", "activation patching", "logit lens", "direct logit attribution"]  # fmt: skip


def path_links(at) -> dict[str, tuple[str, str]]:
    """{"previous" | "next": (label, url path)} of the page's Previous / Next links."""
    out = {}
    for link in at.get("page_link"):
        if link.label.startswith("← Previous: "):
            out["previous"] = (link.label, link.proto.page)
        elif link.label.startswith("Next: "):
            out["next"] = (link.label, link.proto.page)
    return out


def quiz_radio(at):
    found = [r for r in at.radio if r.key and r.key.startswith("quiz_")]
    assert len(found) == 1, [r.key for r in at.radio]
    return found[0]


def reveal_button(at):
    found = [b for b in at.button if b.key and b.key.startswith("quiz_") and b.key.endswith("_reveal")]
    return found[0] if found else None


# ---------------------------------------------------------------- Previous / Next
def test_every_page_links_to_its_neighbours_in_course_order():
    at = open_app()
    for i, (url, title, _) in enumerate(COURSE):
        if i:
            at.switch_page(FILE[url]).run()
        assert not at.exception, (title, at.exception)
        links = path_links(at)
        want = {}
        if i > 0:
            want["previous"] = (f"← Previous: {COURSE[i - 1][1]}", COURSE[i - 1][0])
        if i + 1 < len(COURSE):
            want["next"] = (f"Next: {COURSE[i + 1][1]} →", COURSE[i + 1][0])
        assert links == want, title


@pytest.mark.parametrize("model_name,text", [("digits-0-9", "Min ( 4 8 1 )"), ("digits-0-99", "Max ( 3 0 0 )")])
def test_following_next_keeps_the_model_the_example_and_the_head(model_name, text):
    at = open_app("../pages/attention.py")
    if model_name != "digits-0-9":
        at.selectbox(key="model_name").select(model_name).run()
    set_example(at, text)
    at.selectbox(key="head").select(2).run()
    for _ in range(3):  # Attention -> Residual -> Output (neither shows the head selector) -> Backprop (it does)
        _, url = path_links(at)["next"]
        at.switch_page(FILE[url]).run()
        assert not at.exception, at.exception
        assert at.session_state["model_name"] == model_name
        assert at.session_state["example"] == text and at.text_input(key="example_text").value == text
        assert at.session_state["head"] == 2
    assert at.title[0].value == "Backprop" and at.selectbox(key="head").value == 2  # kept while not shown


def test_the_overview_has_a_card_for_every_page():
    at = open_app()
    cards = [(link.label, link.proto.page) for link in at.get("page_link") if "·" in link.label]
    assert cards == [(f"{i} · {title}", url) for i, (url, title, _) in enumerate(COURSE[1:], start=1)]


# ---------------------------------------------------------------- Predict, then reveal
def test_the_question_waits_for_a_choice_and_a_wrong_choice_is_told_so():
    model = load_model("digits-0-9")
    n = run_example(model, "Max ( 7 2 9 )").answer_pos + 1  # the tokens up to `=`
    at = open_app("../pages/tokens.py")
    radio = quiz_radio(at)
    assert radio.value is None and reveal_button(at).disabled  # no preselection; nothing to reveal yet
    assert "How many tokens does `Max ( 7 2 9 )` become" in at.markdown[0].value
    wrong = next(o for o in radio.options if o != str(n))
    radio.set_value(radio.options.index(wrong)).run()
    assert not reveal_button(at).disabled and not at.success and not at.error
    reveal_button(at).click().run()
    assert not at.exception, at.exception
    assert [e.value for e in at.error] == [f"Not quite: you chose {wrong}; the right choice is {n}."]
    assert any(f"becomes {n} tokens" in m.value for m in at.markdown)
    assert quiz_radio(at).disabled and reveal_button(at) is None


def test_the_attention_question_accepts_either_value_of_a_tie():
    model = load_model("digits-0-9")
    text, layer, head = cases.same_token_tie(model, tolerance=0.05, total=0.5)  # e.g. both fives of Max ( 5 5 2 )
    run = run_example(model, text)
    row = run.cache[f"blocks.{layer}.attn.hook_pattern"][0, head, run.answer_pos]
    second = int(np.argsort(-row, kind="stable")[1])  # the smaller of the two: right too
    at = open_app("../pages/attention.py")
    set_example(at, text)
    at.selectbox(key="layer").select(layer).run()
    at.selectbox(key="head").select(head).run()
    radio = quiz_radio(at)
    assert (f"In layer {layer}, which position will `=` (position {run.answer_pos}) attend to most with head "
            f"{head}?") in at.markdown[0].value
    option = f"`{run.labels[second]}` (position {second})"
    radio.set_value(radio.options.index(option)).run()
    reveal_button(at).click().run()
    assert [s.value for s in at.success] == [f"Right: {option}."]
    assert any("so both count as the answer" in m.value for m in at.markdown)
    # another head: a new question, nothing chosen or revealed
    at.selectbox(key="head").select((head + 1) % model.transformer.cfg.n_heads).run()
    assert quiz_radio(at).value is None and not at.success and reveal_button(at) is not None


def test_a_wrong_model_answer_is_the_right_prediction_and_the_page_says_it_is_wrong():
    at = select_imperfect_99(open_app("../pages/output.py"))  # a model with real mistakes
    set_example(at, "Max ( 3 0 0 )")
    radio = quiz_radio(at)
    radio.set_value(radio.options.index("`0`")).run()
    reveal_button(at).click().run()
    assert not at.exception, at.exception
    assert [s.value for s in at.success] == ["Right: `0`."]
    said = next(shown_text(m.value) for m in at.markdown if "The model puts" in m.value)
    assert "It is wrong on this example: the answer is 3, its runner-up." in said


def test_changing_the_example_resets_the_question_and_coming_back_keeps_a_revealed_one():
    at = open_app("../pages/residual.py")
    radio = quiz_radio(at)
    radio.set_value(0).run()
    reveal_button(at).click().run()
    assert at.success or at.error
    at.switch_page("../pages/backprop.py").run()  # away and back: the revealed answer stays
    at.switch_page("../pages/residual.py").run()
    assert quiz_radio(at).value == 0 and (at.success or at.error)
    set_example(at, "Min ( 4 8 1 )")
    assert quiz_radio(at).value is None and not at.success and not at.error and reveal_button(at) is not None
    assert "quiz_revealed" in at.session_state and "residual" not in at.session_state["quiz_revealed"]
    # another model on the same example: a new question too
    quiz_radio(at).set_value(1).run()
    reveal_button(at).click().run()
    assert at.success or at.error
    at.selectbox(key="model_name").select("digits-0-99").run()
    assert at.session_state["example"] == "Min ( 4 8 1 )"  # the new model reads it: it stays
    assert quiz_radio(at).value is None and not at.success and not at.error and reveal_button(at) is not None


def test_backprop_question_names_the_part_with_the_largest_gradient():
    model = load_model("digits-0-9")
    run = run_example(model, "Max ( 7 2 9 )")
    g = run.grad_cache.param_grads
    w_u = np.sqrt(sum(np.square(g[n].astype(np.float64)).sum() for n in g if n.startswith("unembed.")))
    at = open_app("../pages/backprop.py")
    radio = quiz_radio(at)
    radio.set_value(radio.options.index("the unembedding")).run()
    reveal_button(at).click().run()
    assert [s.value for s in at.success] == ["Right: the unembedding."]
    assert any(f"gets the largest gradient, norm {w_u:#.3g}" in m.value for m in at.markdown)


# ---------------------------------------------------------------- the glossary
def glossary(at) -> list[str]:
    block = next(b for b in at.sidebar.get("popover") if b.proto.popover.label == "Glossary")
    return [c.value for c in block.children.values()]


@pytest.mark.parametrize("page", ["../pages/overview.py", "../pages/attention.py", "../pages/train.py"])
def test_the_glossary_is_on_every_page_and_defines_every_term(page):
    at = open_app(page)
    entries = glossary(at)
    terms = [e.split("**")[1] for e in entries]
    assert set(BRIEF_TERMS) <= set(terms) and terms == list(TERMS)
    for entry in entries:
        shown = render_markdown(entry)
        assert "em" not in shown.tags, entry  # no underscore or star turned into emphasis


def test_the_glossary_says_what_the_model_on_screen_does_and_quotes_the_code_defaults():
    at = open_app()
    text = {e.split("**")[1]: shown_text(e) for e in glossary(at)}
    assert text["d_head"].endswith("64 / 4 = 16 in digits-0-9.")
    assert text["LayerNorm (pre/post-norm)"].endswith("digits-0-9 is post-norm.")
    assert text["GELU"].endswith("digits-0-9 uses ReLU.")
    at.selectbox(key="model_name").select("digits-0-99").run()
    text = {e.split("**")[1]: shown_text(e) for e in glossary(at)}
    assert text["LayerNorm (pre/post-norm)"].endswith("digits-0-99 is pre-norm.")
    assert text["GELU"].endswith("digits-0-99 uses GELU.") and "0.044715" in text["GELU"]
    assert text["positional encoding"].endswith("digits-0-99 uses learned positions.")
    t = TrainConfig()
    assert f"lr {t.lr:g}, β1 {t.beta1:g}, β2 {t.beta2:g}, ε 1e-08, weight decay {t.weight_decay:g}" in text["AdamW"]
    assert f"(default {t.warmup_steps})" in text["warm-up"]
    assert f"(default {t.grad_clip:g})" in text["gradient clipping"]
    assert "the test split, 20% of the input space" in text["held-out"] and "10% by default" in text["validation"]
    assert fmt.literal("digits-0-99") in glossary(at)[0]  # the model's name is escaped
