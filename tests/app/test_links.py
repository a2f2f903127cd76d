"""Every view is a link: the address holds the selection, a fresh session opened with it shows the same view,
and a link's bad or stale parts fall back with one message and never an exception."""

from __future__ import annotations

import pytest
from app_helpers import APP, set_example
from streamlit.testing.v1 import AppTest

from model_core import load_model


def open_link(page: str, params: dict[str, str]) -> AppTest:
    """A fresh session (a new browser) whose first run is `page` opened with the address's `params`."""
    at = AppTest.from_file(APP, default_timeout=60)
    at.query_params.update(params)
    at.switch_page(page)
    at.run()
    assert not at.exception, at.exception
    return at


def toasts(at: AppTest) -> list[str]:
    return [t.value for t in at.toast]


# One link per page, every field the page binds set away from its default.
LINKS = {
    "../pages/overview.py": {"model": "digits-0-99", "example": "Min ( 3 21 9 )", "compare": "Max ( 3 21 9 )"},
    "../pages/attention.py": {"model": "digits-0-99", "example": "Max ( 47 82 19 )", "layer": "1", "head": "2",
                              "qkv": "K", "off": "L0H3,L1H0"},
    "../pages/residual.py": {"model": "digits-0-9", "example": "Last ( 3 1 4 )", "layer": "1", "ln": "ln2"},
    "../pages/output.py": {"model": "digits-0-99", "example": "Max ( 47 82 19 )", "step": "2", "temp": "2.5"},
    "../pages/backprop.py": {"model": "digits-0-9", "example": "Second ( 4 0 8 )", "head": "3", "log": "0",
                             "act": "blocks.1.hook_resid_mid", "param": "blocks.0.attn.W_Q", "lr": "0.25"},
    "../pages/tokens.py": {"model": "digits-0-9", "example": "Min ( 5 5 4 )", "dims": "2,7", "nopos": "1",
                           "view": "2"},
    "../pages/mechanism.py": {"model": "digits-0-99", "example": "Min ( 4 96 6 )", "step": "2", "ablate": "2",
                              "cf": "2", "steer": "L1H1", "slot": "3"},
    "../pages/heads.py": {"model": "digits-0-99", "example": "Max ( 6 54 1 )", "layer": "1", "head": "3"},
    "../pages/loop.py": {"model": "digits-0-99", "example": "Max ( 47 82 19 )", "step": "250", "seed": "3",
                         "batch": "32", "eta": "0.03"},
    "../pages/train.py": {"model": "digits-0-9", "example": "Max ( 7 2 9 )", "tops": "Max,Min", "targs": "4",
                          "tlayers": "1", "theads": "2", "tdmodel": "32", "tnorm": "pre", "topt": "sgd", "tlr": "0.05",
                          "tbatch": "32", "tsteps": "300", "tseed": "7", "tstop": "0", "tsize": "3"},
}
# What each link's fields mean in the session (a sample: the widgets' own keys).
STATE = {
    "../pages/attention.py": {"model_name": "digits-0-99", "example": "Max ( 47 82 19 )", "layer": 1, "head": 2,
                              "attn_qkv": "K", "attn_on_0_3": False, "attn_on_1_0": False, "attn_on_0_0": True},
    "../pages/residual.py": {"layer": 1, "resid_ln": "ln2"},
    "../pages/output.py": {"out_step": 1, "out_temperature": 2.5},
    "../pages/backprop.py": {"head": 3, "bp_log": False, "bp_activation": "blocks.1.hook_resid_mid",
                             "bp_param": "blocks.0.attn.W_Q", "bp_lr": 0.25},
    "../pages/tokens.py": {"tokens_dims": [2, 7], "tokens_no_pos": True},
    "../pages/mechanism.py": {"mech_ablation": "the mean over other inputs", "mech_steer_heads": "L1H1"},
    "../pages/loop.py": {"loop_step": 250, "loop_seed": 3, "loop_batch": 32, "loop_eta": 0.03},
    "../pages/train.py": {"train_ops": ["Max", "Min"], "train_n_args": 4, "train_layers": 1, "train_d_model": 32,
                          "train_optimizer": "sgd", "train_lr": 0.05, "train_stop_at": False, "train_size": 300},
}


@pytest.mark.parametrize("page", list(LINKS))
def test_a_link_opens_the_same_view_in_a_fresh_session_and_stays_the_address(page):
    params = LINKS[page]
    at = open_link(page, params)
    assert toasts(at) == []
    for key, value in STATE.get(page, {}).items():
        assert at.session_state[key] == value, key
    assert at.query_params == params  # every field was used, and the address still says so


def test_changing_a_setting_changes_the_address_and_that_address_reproduces_it():
    at = open_link("../pages/attention.py", {"model": "digits-0-9", "example": "Max ( 7 2 9 )"})
    assert at.query_params == {"model": "digits-0-9", "example": "Max ( 7 2 9 )"}  # defaults are left out
    at.selectbox(key="layer").select(1).run()
    at.selectbox(key="head").select(3).run()
    at.toggle(key="attn_on_0_2").set_value(False).run()
    set_example(at, "min(4, 8, 1)")
    assert at.query_params == {"model": "digits-0-9", "example": "Min ( 4 8 1 )", "layer": "1", "head": "3",
                               "off": "L0H2"}
    again = open_link("../pages/attention.py", dict(at.query_params))
    for key in ("example", "layer", "head", "attn_on_0_2", "attn_on_1_1"):
        assert again.session_state[key] == at.session_state[key], key
    # the page draws the same numbers: the heads-off table and every chart's data
    assert again.dataframe[0].value.equals(at.dataframe[0].value)
    assert [m.value for m in again.markdown] == [m.value for m in at.markdown]


def test_back_to_an_earlier_address_in_the_same_session_restores_it():
    """Back and Forward rerun the page with the older address: the session takes it up again."""
    at = open_link("../pages/attention.py", {"model": "digits-0-9", "example": "Max ( 7 2 9 )", "head": "1"})
    earlier = dict(at.query_params)
    at.selectbox(key="head").select(2).run()
    set_example(at, "First ( 1 2 3 )")
    assert at.query_params["head"] == "2"
    at.query_params.clear()
    at.query_params.update(earlier)  # what the browser sends on Back
    at.run()
    assert (at.session_state["example"], at.session_state["head"]) == ("Max ( 7 2 9 )", 1)
    assert at.query_params == earlier
    assert toasts(at) == []


def test_switching_pages_keeps_the_selection_and_drops_the_last_pages_own_choices():
    at = open_link("../pages/attention.py", LINKS["../pages/attention.py"])
    at.switch_page("../pages/output.py").run()  # the browser keeps the query string on a page switch
    assert not at.exception
    assert toasts(at) == []
    assert at.query_params == {"model": "digits-0-99", "example": "Max ( 47 82 19 )"}


HOSTILE = ["x" * 5000, "Ünïcødé ☃ 𝔘", "<script>alert(1)</script>", "-1", "99999999999999999999999", "nan", "inf",
           "1e309", "L9H9", "' OR 1=1 --", "%00", "\x00", "../../etc/passwd"]


@pytest.mark.parametrize("value", HOSTILE)
def test_hostile_values_fall_back_with_one_message(value):
    fields = ["model", "example", "layer", "head", "qkv", "off", "compare"]
    at = open_link("../pages/attention.py", dict.fromkeys(fields, value))
    assert at.session_state["model_name"] == "digits-0-9"
    assert at.session_state["example"] == "Max ( 7 2 9 )"
    assert (at.session_state["layer"], at.session_state["head"], at.session_state["attn_qkv"]) == (0, 0, "Q")
    assert all(at.session_state[f"attn_on_{lay}_{h}"] for lay in range(2) for h in range(4))
    assert not at.session_state["compare_on"]
    [message] = toasts(at)
    assert "could not be used" in message and "are at their defaults" in message
    for field in fields:
        assert f"{field}\\=" in message  # each field named once (Markdown-escaped)
    assert at.query_params == {"model": "digits-0-9", "example": "Max ( 7 2 9 )"}


def test_a_layer_beyond_the_model_and_an_example_it_cannot_read():
    at = open_link("../pages/attention.py", {"model": "digits-0-9", "example": "Max ( 47 82 19 )", "layer": "5",
                                             "head": "3"})  # fmt: skip
    assert (at.session_state["layer"], at.session_state["head"]) == (0, 3)
    [message] = toasts(at)
    assert "example\\=" in message and "layer\\=5" in message and "head" not in message


def test_a_model_trained_in_another_session_is_not_on_a_fresh_server():
    at = open_link("../pages/overview.py", {"model": "my model (2)", "example": "Max ( 1 2 3 )"})
    assert at.session_state["model_name"] == "digits-0-9"
    assert at.session_state["example"] == "Max ( 1 2 3 )"  # the shipped model reads the example, so it stays
    [message] = toasts(at)
    assert "model\\=my model \\(2\\)" in message


def test_a_session_model_is_in_the_link_and_the_copy_link_says_it_cannot_travel():
    from explainer import state

    at = open_link("../pages/overview.py", {})
    model = load_model("digits-0-9")
    at.session_state[state.SESSION_MODELS] = {"tiny run": ("session:test", model)}
    at.run()
    at.selectbox(key="model_name").select("tiny run").run()
    assert not at.exception
    assert at.query_params["model"] == "tiny run"
    share = " ".join(c.value for c in at.caption)
    assert "exists only in this session" in share


def test_the_copy_link_holds_the_address():
    at = open_link("../pages/attention.py", LINKS["../pages/attention.py"])
    [code] = [c.value for c in at.code if "model=" in c.value]
    query = code.split("?", 1)[1]
    from urllib.parse import parse_qsl

    assert dict(parse_qsl(query)) == LINKS["../pages/attention.py"]


def test_a_recipe_in_a_link_is_what_start_training_trains():
    """A teacher's link: the Train page's settings are the ones the run is started with."""
    from explainer import state

    at = open_link("../pages/train.py", LINKS["../pages/train.py"])
    assert at.multiselect(key="train_ops").value == ["Max", "Min"] and at.slider(key="train_n_args").value == 4
    at.button(key="train_start").click().run()
    job = at.session_state[state.TRAIN_JOB]
    job.stop()
    cfg, task = job.model_config, job.task
    assert (cfg.n_layers, cfg.n_heads, cfg.d_model, cfg.norm) == (1, 2, 32, "pre")
    assert (task.operations, task.n_args) == (("Max", "Min"), 4)
    assert (job.train.optimizer, job.train.lr, job.train.batch_size, job.train_size) == ("sgd", 0.05, 32, 300)
